"""vw.App handlers over real sockets: routing, conversions, errors, header safety."""

from __future__ import annotations

import json
import re

import pytest

from conftest import Reader, connect, first_then_whole, get, run_app


@pytest.fixture(scope="module")
def native():
    srv = run_app("native_app:app")
    yield srv
    srv.stop()


def test_text_bytes_json(native):
    r = get(native.port, "/")
    assert (r.status, r.body) == (200, b"Hello, world!")
    assert r.header("Content-Type") == "text/plain; charset=utf-8"
    assert r.header("Server") == "vw" and r.header("Date")
    r = get(native.port, "/bytes")
    assert r.body == b"\x00\x01binary" and r.header("Content-Type") == "application/octet-stream"
    r = get(native.port, "/json")
    assert r.header("Content-Type") == "application/json"
    assert json.loads(r.body) == {"message": "Hello, world!", "list": [1, 2.5, None, True, False],
                                  "text": "é\"\n", "nested": {"a": []}}


def test_path_params_query_and_decoding(native):
    r = get(native.port, "/items/book/4%202?x=1&y=%20")
    assert json.loads(r.body) == {"params": {"kind": "book", "id": "4 2"}, "query": "x=1&y=%20",
                                  "path": "/items/book/4 2", "method": "GET"}
    assert get(native.port, "/items/book").status == 404
    assert get(native.port, "/items/book/1/extra").status == 404


def test_methods_body_and_response_object(native):
    r = get(native.port, "/echo", method="POST", body=b"payload")
    assert (r.status, r.body, r.header("X-Length")) == (201, b"payload", "7")
    r = get(native.port, "/echo", method="DELETE")
    assert r.status == 405 and r.header("Allow") == "POST, PUT"
    r = get(native.port, "/json-in", method="POST", body=b'{"a": [1]}',
            headers="Host: t\r\nContent-Type: application/json\r\n")
    assert json.loads(r.body) == {"got": {"a": [1]}, "type": "application/json"}
    r = get(native.port, "/", method="HEAD")
    assert r.status == 200 and r.body == b"" and r.header("Content-Length") == "13"


def test_headers_none_and_status(native):
    r = get(native.port, "/headers", headers="Host: t\r\nX-A: 1\r\nX-A: 2\r\nUser-Agent: probe\r\n")
    h = json.loads(r.body)
    assert h["x-a"] == "1, 2" and h["user-agent"] == "probe" and h["host"] == "t"
    r = get(native.port, "/none")
    assert r.status == 204 and r.header("Content-Length") is None
    assert get(native.port, "/status/418").status == 418


def test_exceptions_give_500_and_the_worker_keeps_serving(native):
    for path in ("/boom", "/bad-type", "/inject"):
        r = get(native.port, path)
        assert r.status == 500, path
        assert "pwned" not in r.raw_head.decode("latin-1")
    native.wait_for(re.compile("RuntimeError: kaboom"), timeout=5)  # the traceback is logged
    assert get(native.port, "/").status == 200


def test_async_handler(native):
    r = get(native.port, "/async")
    assert json.loads(r.body)["async"] is True


def test_pipelined_app_requests_answered_in_order(native):
    paths = ["/", "/json", "/items/a/1", "/nope"]
    with connect(native.port) as s:
        s.sendall(b"".join(f"GET {paths[i % 4]} HTTP/1.1\r\nHost: t\r\n\r\n".encode() for i in range(60)))
        rd = Reader(s)
        got = [rd.response() for _ in range(60)]
    assert [r.status for r in got] == [200, 200, 200, 404] * 15
    assert all(got[i].body == b"Hello, world!" for i in range(0, 60, 4))


def test_sync_handlers_that_wait_do_not_stall_the_worker(native):
    import threading
    import time

    results = []
    ts = [threading.Thread(target=lambda: results.append(get(native.port, "/sleep").body)) for _ in range(6)]
    t0 = time.monotonic()
    for t in ts:
        t.start()
    time.sleep(0.05)
    quick = time.monotonic()
    assert get(native.port, "/").status == 200
    quick = time.monotonic() - quick
    for t in ts:
        t.join(10)
    assert results == [b"slept"] * 6
    assert time.monotonic() - t0 < 1.0, "six handlers that wait 0.3 s ran together"
    assert quick < 0.1, f"a quick request waited {quick * 1000:.0f} ms behind the sleeping ones"


def test_async_handlers_run_concurrently(native):
    import threading
    import time

    results = []
    ts = [threading.Thread(target=lambda i=i: results.append(get(native.port, f"/async-wait?{i}").body)) for i in range(16)]
    t0 = time.monotonic()
    for t in ts:
        t.start()
    for t in ts:
        t.join(10)
    assert sorted(json.loads(b)["waited"] for b in results) == sorted(str(i) for i in range(16))
    assert time.monotonic() - t0 < 1.2, "sixteen async handlers that await 0.3 s ran together"


def test_an_iterator_body_streams(native):
    first, r = first_then_whole(native.port, "/gen", b"first")
    assert first < 0.3 and r.body == b"first second"
    assert r.header("Transfer-Encoding") == "chunked" and r.header("Content-Type") == "application/octet-stream"
    r = get(native.port, "/events")
    assert r.header("Content-Type") == "text/event-stream" and r.header("Cache-Control") == "no-cache"
    assert r.body == b"data: 0\n\ndata: 1\n\ndata: 2\n\n"


def test_an_async_iterator_body_streams_as_it_is_produced(native):
    """An async def handler's async generator: each piece goes out as it comes (the first after
    ~0 s, the whole after the generator's two 0.2 s waits), chunked, and the generator is
    closed at its end; a plain iterator from an async handler streams too."""
    closed = json.loads(get(native.port, "/state").body)["agen_closed"]
    first, r = first_then_whole(native.port, "/agen", b"part 0;")
    assert first < 0.2, f"the first piece came after {first:.2f} s"
    assert r.body == b"part 0;part 1;part 2;" and r.header("Transfer-Encoding") == "chunked"
    assert r.header("Content-Type") == "text/plain"
    assert json.loads(get(native.port, "/state").body)["agen_closed"] == closed + 1
    assert get(native.port, "/agen-sync").body == b"abc"


def test_an_async_iterator_waits_for_a_slow_client(native):
    """While the client reads nothing, the generator is not run ahead (backpressure without
    blocking the event loop: another async handler answers meanwhile); once read, the whole
    body arrives."""
    import socket
    import time
    size = 48 * 1024 * 1024
    with connect(native.port, timeout=30) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        s.sendall(b"GET /agen-big?%d HTTP/1.1\r\nHost: t\r\n\r\n" % size)
        time.sleep(0.5)
        produced = json.loads(get(native.port, "/state").body)["big_produced"]
        assert 0 < produced < 12 << 20, f"{produced} bytes made for a client that reads nothing"
        t0 = time.monotonic()
        assert json.loads(get(native.port, "/async-wait?x").body) == {"waited": "x"}
        assert time.monotonic() - t0 < 1.0, "the event loop was blocked by the waiting stream"
        r = Reader(s).response()
        assert len(r.body) == size and r.body.count(b"y") == size


def test_an_async_iterator_that_fails_or_loses_its_client(native):
    """A generator that raises mid-body: what was sent stays sent and the connection closes
    (the chunked body never ends, so the client knows it is cut). A client that leaves
    mid-stream: the generator is closed (its finally runs) and the worker goes on."""
    import time
    with connect(native.port) as s:
        s.sendall(b"GET /agen-raise HTTP/1.1\r\nHost: t\r\n\r\n")
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    assert b"before " in data and not data.endswith(b"0\r\n\r\n"), data
    closed = json.loads(get(native.port, "/state").body)["agen_closed"]
    with connect(native.port) as s:
        s.sendall(b"GET /agen-forever HTTP/1.1\r\nHost: t\r\n\r\n")
        assert b"tick" in s.recv(65536)
    deadline = time.monotonic() + 5
    while json.loads(get(native.port, "/state").body)["agen_closed"] == closed:
        assert time.monotonic() < deadline, "the generator of a client that left was never closed"
        time.sleep(0.05)
    assert get(native.port, "/").body == b"Hello, world!"
