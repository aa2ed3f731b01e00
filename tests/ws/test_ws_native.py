"""WebSocket handlers of vw.App (`@app.websocket`): whole messages, implicit accept,
WebSocketClosed, async iteration, close codes, backpressure, and the framing rules still
enforced in the core."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
import websockets

import vw
from conftest import rss_kib, get, run_app
from wsclient import WS, frame


@pytest.fixture(scope="module")
def srv():
    s = run_app("native_ws_app:app")
    yield s
    assert s.stop() == 0


def wait_ended(port: int, item) -> None:
    deadline = time.monotonic() + 5
    while item not in json.loads(get(port, "/ended").body):
        assert time.monotonic() < deadline, get(port, "/ended").body
        time.sleep(0.05)


def test_echo_with_params_query_subprotocol_and_headers(srv):
    async def main():
        async with websockets.connect(f"ws://127.0.0.1:{srv.port}/echo/ann?x=1", subprotocols=["p1", "p2"]) as ws:
            assert ws.subprotocol == "p1" and ws.response.headers["x-room"] == "ann"
            assert ws.response.headers["Sec-WebSocket-Extensions"].startswith("permessage-deflate")
            await ws.send("hi")
            assert await ws.recv() == "ann: hi?x=1"
            await ws.send(b"\x00\x01" * 40000)
            assert await ws.recv() == b"\x00\x01" * 40000
            many = [f"m{i}" for i in range(500)]
            for m in many:
                await ws.send(m)
            assert [await ws.recv() for _ in many] == [f"ann: {m}?x=1" for m in many]
            await ws.send("close")
            with pytest.raises(websockets.ConnectionClosed) as e:
                await ws.recv()
            assert (e.value.rcvd.code, e.value.rcvd.reason) == (4002, "as asked")

    asyncio.run(main())
    wait_ended(srv.port, "ann")


def test_a_handler_that_raises_closes_with_1011_and_the_client_leaving_ends_the_iteration(srv):
    with WS(srv.port, "/echo/bob") as ws:
        assert ws.status == 101
        ws.send(frame(0x1, b"boom"))
        assert ws.close_code()[0] == 1011
    wait_ended(srv.port, "bob")
    with WS(srv.port, "/echo/cy") as ws:
        ws.send(frame(0x1, b"x"))
        assert ws.message() == (0x1, b"cy: x?")
    wait_ended(srv.port, "cy")  # the client vanished: async for ended, finally ran


def test_implicit_accept_and_websocketclosed_with_the_client_s_code(srv):
    with WS(srv.port, "/implicit") as ws:
        assert ws.status == 101
        assert ws.message() == (0x1, b"accepted by the first send")
        ws.send(frame(0x8, b"\x0f\xa0bye"))  # 4000
        assert ws.close_code()[0] == 4000 and ws.eof()
    wait_ended(srv.port, "closed 4000")


def test_routes_deny_and_plain_http(srv):
    with WS(srv.port, "/deny") as ws:
        assert ws.status == 403
    with WS(srv.port, "/nowhere") as ws:
        assert ws.status == 404, "no WebSocket route: the request is plain HTTP (and has no route)"
    assert get(srv.port, "/echo/x").status == 404, "a WebSocket route does not answer plain GETs"
    assert get(srv.port, "/").body == b"plain"


def test_a_rule_broken_by_the_client_reaches_the_handler_as_websocketclosed(srv):
    with WS(srv.port, "/echo/dee") as ws:
        ws.send(frame(0x1, b"\xff\xfe"))
        assert ws.close_code()[0] == 1007 and ws.eof()
    wait_ended(srv.port, "dee")


def test_send_waits_for_a_client_that_does_not_read(srv):
    pid = srv.workers[0][0]

    before = rss_kib(pid)
    with WS(srv.port, "/flood") as ws:
        time.sleep(1.5)
        assert rss_kib(pid) - before < 16 * 1024
        got = 0
        while got < 32 << 20:
            got += len(ws.recv()[1])


def test_a_websocket_handler_must_be_async():
    app = vw.App()
    with pytest.raises(TypeError):
        @app.websocket("/x")
        def sync_handler(ws):
            pass
