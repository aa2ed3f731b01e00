"""Configurable limits: each answered with its status, and the connection closed."""

from __future__ import annotations

import pytest

from conftest import Reader, Server, connect, get, vw_cmd


# every test here runs on each backend (--io epoll, --io uring): see `backend` in tests/conftest.py
pytestmark = pytest.mark.usefixtures("backend")


@pytest.fixture
def tight(docroot):
    srv = Server([str(docroot), "--max-request-line", "100", "--max-head", "400", "--max-headers", "5",
                  "--max-body", "10", "--max-connections", "3"])
    yield srv
    srv.stop()


def _answer(port: int, raw: bytes):
    with connect(port) as s:
        s.sendall(raw)
        rd = Reader(s)
        r = rd.response()
        return r, rd.closed()


def test_request_line_head_and_field_limits(tight):
    r, closed = _answer(tight.port, b"GET /" + b"a" * 120 + b" HTTP/1.1\r\nHost: t\r\n\r\n")
    assert r.status == 414 and closed
    r, closed = _answer(tight.port, b"GET /1b HTTP/1.1\r\nHost: t\r\nX-Big: " + b"b" * 500 + b"\r\n\r\n")
    assert r.status == 431 and closed
    r, closed = _answer(tight.port, b"GET /1b HTTP/1.1\r\nHost: t\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(5)) + b"\r\n")
    assert r.status == 431 and closed
    r, closed = _answer(tight.port, b"GET /1b HTTP/1.1\r\nHost: t\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(4)) + b"\r\n")
    assert r.status == 200 and not closed, "within the limits"


def test_body_limit(tight):
    r, closed = _answer(tight.port, b"POST /1b HTTP/1.1\r\nHost: t\r\nContent-Length: 11\r\n\r\n" + b"x" * 11)
    assert r.status == 413 and closed


def test_connection_limit_refuses_new_connections_cleanly(tight):
    held = [connect(tight.port) for _ in range(3)]
    try:
        for s in held:
            s.sendall(b"GET /1b HTTP/1.1\r\nHost: t\r\n\r\n")
            assert Reader(s).response().body == b"x"
        r, closed = _answer(tight.port, b"GET /1b HTTP/1.1\r\nHost: t\r\n\r\n")
        assert r.status == 503 and r.header("Retry-After") == "1" and closed
        for s in held:  # the open connections keep working
            s.sendall(b"GET /1b HTTP/1.1\r\nHost: t\r\n\r\n")
            assert Reader(s).response().body == b"x"
    finally:
        for s in held:
            s.close()
    import time
    time.sleep(0.3)
    assert get(tight.port, "/1b").body == b"x", "room again once connections close"


def test_bad_limit_values_are_one_line():
    for args in (["--max-headers", "0"], ["--max-headers", "1000"], ["--max-head", "10"],
                 ["--max-request-line", "9000", "--max-head", "8000"]):
        r = vw_cmd("serve", *args)
        assert r.returncode == 2 and r.stderr.count("\n") == 1, (args, r.stderr)
