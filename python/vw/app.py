"""vw's own handler API.

    import vw
    app = vw.App()

    @app.get("/")
    def hello(request):
        return "Hello, world!"

    @app.get("/users/{id}")
    def user(request):
        return {"id": request.params["id"]}

A handler takes the request (``method``, ``path``, ``query``, ``headers``, ``body``, ``params``,
``json()``) and returns bytes, str (text/plain), a dict or list (JSON), None (204), or a
``vw.Response(body, status=200, headers=None, content_type=None)``. A body may also be an
iterator (a generator) of bytes or str, sent piece by piece as it is produced; an ``async def``
handler may give an async iterator too. Routing, header parsing and response assembly happen
in the Rust core; Python does only the handler call. ``async def`` handlers run on the
worker's asyncio event loop (uvloop when installed). ``@app.websocket(path)`` registers an
``async def handler(ws)`` for WebSockets (see ``vw.websocket``).
"""

from __future__ import annotations

import inspect
from typing import Callable, Iterable

from vw._core import Request, Response

__all__ = ["App", "Request", "Response"]


async def _pump(items, out) -> None:
    """The body of an ``async def`` handler's streamed response, on the event loop: each piece
    goes out as it comes (``out.send``), and while the client is behind the task waits
    (``out.room()``) instead of the loop. The iterator is closed however it ends."""
    async def sent(piece) -> bool:
        """Send one piece, then wait while the client is behind; False: the client left."""
        if not out.send(piece):
            return False
        wait = out.room()
        if wait is not None:
            await wait
        return True

    failed = None
    try:
        if hasattr(items, "__anext__"):
            async for piece in items:
                if not await sent(piece):
                    break
        else:
            for piece in items:
                if not await sent(piece):
                    break
    except Exception as e:  # noqa: BLE001 (reported, and the connection is closed)
        failed = e
    finally:
        close = getattr(items, "aclose", None)
        if close is not None:
            try:
                await close()
            except Exception:  # noqa: BLE001
                pass
        elif hasattr(items, "close"):
            items.close()
    if failed is None:
        out.end()
    else:
        from vw.console import app_exception

        app_exception("vw: a handler's streamed body raised an exception; closing the connection", failed)
        out.abort()


def _resolve(future) -> None:
    """Called on the loop's thread when the client has caught up: let ``_pump`` go on."""
    if not future.done():
        future.set_result(None)


class App:
    def __init__(self) -> None:
        self._routes: list[tuple[str, str, Callable, bool]] = []

    def route(self, path: str, methods: Iterable[str] = ("GET",)) -> Callable[[Callable], Callable]:
        """Register a handler for `path` (segments `{name}` capture into `request.params`)."""
        if not path.startswith("/"):
            raise ValueError(f"route {path!r} must start with '/'")

        def register(func: Callable) -> Callable:
            for method in methods:
                self._routes.append((method.upper(), path, func, inspect.iscoroutinefunction(func)))
            return func

        return register

    def get(self, path: str) -> Callable[[Callable], Callable]:
        return self.route(path, ("GET",))

    def post(self, path: str) -> Callable[[Callable], Callable]:
        return self.route(path, ("POST",))

    def put(self, path: str) -> Callable[[Callable], Callable]:
        return self.route(path, ("PUT",))

    def patch(self, path: str) -> Callable[[Callable], Callable]:
        return self.route(path, ("PATCH",))

    def delete(self, path: str) -> Callable[[Callable], Callable]:
        return self.route(path, ("DELETE",))

    def websocket(self, path: str) -> Callable[[Callable], Callable]:
        """Register an ``async def handler(ws)`` for WebSockets at `path` (see vw.websocket)."""
        def register(func: Callable) -> Callable:
            if not inspect.iscoroutinefunction(func):
                raise TypeError(f"WebSocket handler {getattr(func, '__name__', func)!r} must be an async def")
            return self.route(path, ("WEBSOCKET",))(func)

        return register

    def routes(self) -> list[tuple[str, str, Callable, bool]]:
        return list(self._routes)
