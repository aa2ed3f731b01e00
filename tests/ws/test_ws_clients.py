"""WebSocket with independent clients from PyPI (websockets, which offers permessage-deflate by
default, and wsproto), FastAPI unmodified, a chat broadcast to 100 sockets, keepalive pings and
the 1001 of a graceful stop."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import time

import pytest
import websockets
import wsproto
import wsproto.events as wse

from conftest import get, rss_kib, run_app
from wsclient import WS, frame


@pytest.fixture(scope="module")
def srv():
    s = run_app("ws_app:app")
    yield s
    assert s.stop() == 0


def test_websockets_library_echo_with_deflate_and_subprotocol(srv):
    async def main():
        async with websockets.connect(f"ws://127.0.0.1:{srv.port}/scope?x=1", subprotocols=["a", "b"]) as ws:
            assert ws.subprotocol == "b"
            assert ws.response.headers["Sec-WebSocket-Extensions"].startswith("permessage-deflate")
            scope = json.loads(await ws.recv())
            assert scope["type"] == "websocket" and scope["scheme"] == "ws" and scope["path"] == "/scope"
            assert scope["asgi"] == {"version": "3.0", "spec_version": "2.4"} and scope["http_version"] == "1.1"
            assert scope["query_string"] == "x=1" and scope["subprotocols"] == ["a", "b"]
            assert not scope["has_method"] and scope["state"] == "yes"
            assert "websocket.http.response" in scope["extensions"]
            assert "sec-websocket-key" in scope["headers"]
            for msg in ("hello", b"\x00\xff" * 50000, "ü" * 100000, b""):
                await ws.send(msg)
                assert await ws.recv() == msg
            await ws.ping(b"are you there")
            await ws.send("close:4321:finished")
            with pytest.raises(websockets.ConnectionClosed) as e:
                await ws.recv()
            assert (e.value.rcvd.code, e.value.rcvd.reason) == (4321, "finished")

    asyncio.run(main())


def test_websockets_library_without_compression_and_many_messages_in_flight(srv):
    async def main():
        async with websockets.connect(f"ws://127.0.0.1:{srv.port}/echo", compression=None) as ws:
            assert "Sec-WebSocket-Extensions" not in ws.response.headers
            msgs = [f"message {i}" * (i % 7) for i in range(2000)]
            for m in msgs:
                await ws.send(m)
            assert [await ws.recv() for _ in msgs] == msgs

    asyncio.run(main())


def test_wsproto_client(srv):
    conn = wsproto.WSConnection(wsproto.ConnectionType.CLIENT)
    with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as s:
        s.sendall(conn.send(wse.Request(host="t", target="/echo", subprotocols=["proto"])))
        got: list = []

        def pump(until):
            while not any(isinstance(e, until) for e in got):
                conn.receive_data(s.recv(65536))
                got.extend(conn.events())

        pump(wse.AcceptConnection)
        accept = next(e for e in got if isinstance(e, wse.AcceptConnection))
        assert accept.subprotocol == "proto"
        s.sendall(conn.send(wse.TextMessage(data="über")) + conn.send(wse.BytesMessage(data=b"\x01\x02")))
        pump(wse.BytesMessage)
        assert [e.data for e in got if isinstance(e, (wse.TextMessage, wse.BytesMessage))] == ["über", b"\x01\x02"]
        s.sendall(conn.send(wse.Ping(payload=b"p")))
        pump(wse.Pong)
        assert next(e for e in got if isinstance(e, wse.Pong)).payload == b"p"
        s.sendall(conn.send(wse.CloseConnection(code=1000, reason="done")))
        pump(wse.CloseConnection)
        assert next(e for e in got if isinstance(e, wse.CloseConnection)).code == 1000
        assert s.recv(10) == b"", "the server ends the TCP connection after the close handshake"


def test_fastapi_websocket_routes_and_a_chat_broadcast_to_100_sockets():
    srv = run_app("fastapi_ws_app:app")
    try:
        async def main():
            async with websockets.connect(f"ws://127.0.0.1:{srv.port}/echo/ann") as ws:
                await ws.send("hi")
                assert await ws.recv() == "ann: hi"
            # A route FastAPI does not have: closed before the accept, so 403.
            with pytest.raises(websockets.InvalidStatus) as e:
                async with websockets.connect(f"ws://127.0.0.1:{srv.port}/nowhere"):
                    pass
            assert e.value.response.status_code == 403
            members = [await websockets.connect(f"ws://127.0.0.1:{srv.port}/chat") for _ in range(100)]
            while json.loads(get(srv.port, "/members").body) != 100:
                await asyncio.sleep(0.05)
            await members[0].send("to everyone")
            got = await asyncio.gather(*(asyncio.wait_for(m.recv(), 10) for m in members))
            assert got == ["to everyone"] * 100
            await asyncio.gather(*(m.close() for m in members))

        asyncio.run(main())
        # WebSocketDisconnect carried the client's code.
        deadline = time.monotonic() + 5
        while json.loads(get(srv.port, "/left").body) != [1000]:
            assert time.monotonic() < deadline, get(srv.port, "/left").body
            time.sleep(0.05)
    finally:
        assert srv.stop() == 0


def test_a_client_that_stops_answering_pings_is_dropped():
    srv = run_app("ws_app:app", "--ws-ping-interval", "1", "--ws-ping-timeout", "1")
    try:
        with WS(srv.port) as ws:
            t0 = time.monotonic()
            op, payload, _ = ws.recv()
            assert op == 0x80 | 0x9, "a quiet client is pinged"
            assert 0.5 < time.monotonic() - t0 < 3.5
            # No answer, no input at all: the server gives up with 1011.
            assert ws.close_code()[0] == 1011 and ws.eof(timeout=5)
        with WS(srv.port) as ws:  # a client that answers stays
            for _ in range(3):
                op, payload, _ = ws.recv()
                assert op == 0x80 | 0x9
                ws.send(frame(0xA, payload))
            ws.send(frame(0x1, b"still here"))
            assert ws.message() == (0x1, b"still here")
        found = json.loads(get(srv.port, "/events").body)
        assert ["/echo", 1006, ""] in found
        # /sleepy never receives: once its mailbox is full the client is not read, so its
        # silence says nothing and it is not dropped for it.
        with WS(srv.port, "/sleepy") as ws:
            ws.send(frame(0x2, b"x" * 60000) * 6)
            ws.sock.settimeout(4)
            with pytest.raises(socket.timeout):
                ws.recv()
    finally:
        assert srv.stop() == 0


def test_a_graceful_stop_closes_open_websockets_with_1001():
    srv = run_app("ws_app:app")
    socks = [WS(srv.port) for _ in range(3)]
    for ws in socks:
        ws.send(frame(0x1, b"x"))
        assert ws.message() == (0x1, b"x")
    srv.proc.send_signal(signal.SIGTERM)
    for ws in socks:
        assert ws.close_code()[0] == 1001
        ws.send(frame(0x8, b"\x03\xe9"))
        assert ws.eof()
        ws.close()
    assert srv.proc.wait(10) == 0


@pytest.mark.parametrize("spec,path", [("ws_app:app", "/echo"), ("native_ws_app:app", "/echo/idle")])
def test_idle_websockets_are_cheap(spec, path):
    """3,000 WebSockets that each echoed one message and then sit idle: at most 5 KiB each on
    the worker (the ASGI scope and task are most of it; no buffer stays per socket)."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 8000)), hard))
    srv = run_app(spec)
    socks = []
    try:
        pid = srv.workers[0][0]

        def opened() -> WS:
            ws = WS(srv.port, path)
            assert ws.status == 101
            ws.send(frame(0x2, b"hello"))
            assert ws.message()[1] == b"hello"
            return ws

        socks = [opened() for _ in range(50)]  # the worker's buffers and caches exist
        time.sleep(0.5)
        before = rss_kib(pid)
        socks += [opened() for _ in range(3000)]
        time.sleep(1)
        per_socket = (rss_kib(pid) - before) * 1024 / 3000
        assert per_socket < 5 * 1024, f"{per_socket:.0f} bytes per idle WebSocket"
    finally:
        for ws in socks:
            ws.close()
        assert srv.stop() == 0


def test_a_reload_closes_open_websockets_with_1001_and_new_ones_reach_the_new_workers():
    from conftest import WORKER_RE

    srv = run_app("ws_app:app", workers=2)
    try:
        old = [WS(srv.port) for _ in range(4)]
        for ws in old:
            ws.send(frame(0x1, b"before"))
            assert ws.message() == (0x1, b"before")
        seen = len(srv.lines)
        srv.proc.send_signal(signal.SIGHUP)
        srv.wait_for(WORKER_RE, timeout=10, start=seen)
        for ws in old:
            code, reason = ws.close_code()
            assert code == 1001, (code, reason)
            ws.send(frame(0x8, b"\x03\xe9"))
            assert ws.eof()
            ws.close()
        with WS(srv.port) as ws:  # the new workers take WebSockets
            ws.send(frame(0x1, b"after"))
            assert ws.message() == (0x1, b"after")
        assert srv.proc.poll() is None
    finally:
        assert srv.stop() == 0


def test_max_connections_counts_websockets():
    srv = run_app("ws_app:app", "--max-connections", "3")
    try:
        socks = [WS(srv.port) for _ in range(3)]
        assert all(ws.status == 101 for ws in socks)
        with WS(srv.port) as extra:
            assert extra.status == 503
        socks[0].close()
        time.sleep(0.3)
        with WS(srv.port) as again:
            assert again.status == 101
        for ws in socks[1:]:
            ws.close()
    finally:
        assert srv.stop() == 0
