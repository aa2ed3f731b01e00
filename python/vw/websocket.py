"""WebSocket handlers of vw.App.

    @app.websocket("/chat/{room}")
    async def chat(ws):
        async for message in ws:          # str (text) or bytes (binary), whole messages
            await ws.send(f"{ws.params['room']}: {message}")

``ws`` has ``params``, ``headers``, ``query``, ``path``, ``subprotocols``;
``await ws.accept(subprotocol=None, headers=None)`` (implicit on the first send or receive);
``await ws.receive()``, which raises ``vw.WebSocketClosed`` (``code``, ``reason``) once the
client has closed or gone (1006); ``await ws.send(str | bytes)``, which waits while the client
is behind; ``await ws.close(code=1000, reason="")``; and ``async for message in ws``.
Framing, permessage-deflate, ping/pong and the UTF-8 check are done in the Rust core; a handler
that returns closes with 1000, one that raises with 1011 (before an accept: 403, or 500).
"""

from __future__ import annotations



class WebSocketClosed(Exception):
    """The WebSocket has ended: ``code`` (1005: the client gave none; 1006: the connection was
    lost; 1001: the server is going away) and ``reason``."""

    def __init__(self, code: int = 1006, reason: str = ""):
        super().__init__(code, reason)
        self.code = code
        self.reason = reason


class WebSocket:
    def __init__(self, handle, request):
        self._handle = handle
        self._request = request
        self._accepted = False
        self._closed: tuple[int, str] | None = None

    @property
    def params(self) -> dict:
        return self._request.params

    @property
    def headers(self) -> dict:
        return self._request.headers

    @property
    def query(self) -> str:
        return self._request.query

    @property
    def path(self) -> str:
        return self._request.path

    @property
    def subprotocols(self) -> list[str]:
        return self._handle.subprotocols

    async def accept(self, subprotocol: str | None = None, headers: dict | None = None) -> None:
        if self._accepted:
            raise RuntimeError("the WebSocket is already accepted")
        if self._closed is not None:
            raise WebSocketClosed(*self._closed)
        self._handle.accept(subprotocol, list((headers or {}).items()))
        self._accepted = True

    async def receive(self) -> str | bytes:
        if not self._accepted:
            await self.accept()
        while True:
            if self._closed is not None:
                raise WebSocketClosed(*self._closed)
            m = self._handle.take()
            if m is None:
                wait = self._handle.wait()
                if wait is not None:
                    await wait
                continue
            if isinstance(m, tuple):
                self._closed = m
                raise WebSocketClosed(*m)
            return m

    async def send(self, message: str | bytes) -> None:
        if not self._accepted:
            await self.accept()
        if self._closed is not None or not self._handle.send(message):
            raise WebSocketClosed(*(self._closed or (1006, "")))
        wait = self._handle.room()
        if wait is not None:
            await wait

    async def close(self, code: int = 1000, reason: str = "") -> None:
        if self._closed is not None:
            return
        self._handle.close(code, reason)
        self._closed = (code, reason)

    def __aiter__(self):
        return self

    async def __anext__(self) -> str | bytes:
        try:
            return await self.receive()
        except WebSocketClosed:
            raise StopAsyncIteration from None


async def _session(handler, handle, request) -> None:
    """A handler's task on the worker's event loop; its end closes the WebSocket."""
    ws = WebSocket(handle, request)
    failed = False
    try:
        await handler(ws)
    except WebSocketClosed:
        pass  # the client left: the usual end
    except Exception as e:  # noqa: BLE001 (reported; the client gets 1011, or 500 before an accept)
        failed = True
        from vw.console import app_exception

        app_exception("vw: a WebSocket handler raised an exception", e)
    finally:
        handle.finish(ws._accepted, failed)
