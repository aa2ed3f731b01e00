"""Slow and absent clients: every phase of a connection has a deadline."""

from __future__ import annotations

import os
import socket
import time

import pytest

from conftest import Reader, Server, connect


# every test here runs on each backend (--io epoll, --io uring): see `backend` in tests/conftest.py
pytestmark = pytest.mark.usefixtures("backend")


@pytest.fixture
def quick(docroot):
    (docroot / "large.bin").write_bytes(os.urandom(32 * 1024 * 1024))
    srv = Server([str(docroot), "--header-timeout", "2", "--body-timeout", "1", "--keepalive-timeout", "1",
                  "--write-timeout", "1"])
    yield srv
    srv.stop()


def _closed_within(s: socket.socket, seconds: float) -> tuple[bytes, float]:
    """Read until EOF; return what came and when EOF came (seconds from now)."""
    t0 = time.monotonic()
    s.settimeout(seconds)
    data = b""
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return data, time.monotonic() - t0
            data += chunk
    except ConnectionResetError:
        return data, time.monotonic() - t0


def test_slowloris_is_cut_off_from_the_first_byte(quick):
    s = connect(quick.port)
    head = b"GET /1b HTTP/1.1\r\nHost: t\r\nX-Slow: " + b"a" * 100
    t0 = time.monotonic()
    s.settimeout(0.3)
    got = b""
    for b in head:  # one byte every 0.25 s: each byte is progress, but the head never ends
        try:
            s.send(bytes([b]))
        except OSError:
            break
        try:
            chunk = s.recv(4096)
            if not chunk:
                break
            got += chunk
        except socket.timeout:
            pass
        if time.monotonic() - t0 > 6:
            break
    took = time.monotonic() - t0
    assert got.startswith(b"HTTP/1.1 408 "), got
    assert b"Connection: close" in got
    assert 2 <= took < 2 + 1 + 0.3, f"closed after {took:.1f}s (header timeout 2s)"


def test_silent_connection_is_closed(quick):
    with connect(quick.port) as s:
        data, took = _closed_within(s, 6)
    assert data == b"" and 1.9 < took < 3.3, "not before the timeout, at most a second after"


def test_idle_keep_alive_is_closed_without_a_response(quick):
    with connect(quick.port) as s:
        s.sendall(b"GET /1b HTTP/1.1\r\nHost: t\r\n\r\n")
        rd = Reader(s)
        assert rd.response().body == b"x"
        data, took = _closed_within(s, 6)
    assert bytes(rd.buf) + data == b"" and 0.9 < took < 2.3


def test_stalled_body_gets_408(docroot):
    """The body timeout (1 s) is its own deadline, not the keep-alive one (5 s here): a body that
    stops arriving gets a 408 with `Connection: close` after about a second, then the close."""
    srv = Server([str(docroot), "--body-timeout", "1", "--keepalive-timeout", "5", "--header-timeout", "5"])
    try:
        with connect(srv.port) as s:
            s.sendall(b"POST /1b HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabc")
            rd = Reader(s)
            assert rd.response().status == 405  # answered at the head; the body is still owed
            t0 = time.monotonic()
            s.settimeout(6)
            late = rd.response()
            took = time.monotonic() - t0
            assert late.status == 408 and late.header("Connection") == "close", late.raw_head
            assert 0.9 < took < 2.3, f"408 after {took:.1f}s (body timeout 1s, keep-alive 5s)"
            data, _ = _closed_within(s, 3)
        assert bytes(rd.buf) + data == b"", "nothing after the 408 but the close"
    finally:
        srv.stop()


def test_client_that_stops_reading_is_dropped(quick):
    with connect(quick.port) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.sendall(b"GET /large.bin HTTP/1.1\r\nHost: t\r\n\r\n")
        time.sleep(4)  # read nothing: the server's write makes no progress
        data, _ = _closed_within(s, 10)
    assert len(data) < 32 * 1024 * 1024, "the whole file could not have been written"


def test_active_connection_is_not_cut(quick):
    with connect(quick.port) as s:
        rd = Reader(s)
        for _ in range(6):  # 6 requests over ~4 s, each within the keep-alive timeout
            s.sendall(b"GET /1b HTTP/1.1\r\nHost: t\r\n\r\n")
            assert rd.response().body == b"x"
            time.sleep(0.6)


def test_bad_timeout_values_are_one_line():
    from conftest import vw_cmd

    r = vw_cmd("serve", "--header-timeout", "0")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "--header-timeout" in r.stderr


def test_write_timeout_counts_from_the_last_byte_the_client_took(tmp_path):
    """An application that keeps producing does not keep alive a client that stopped reading."""
    import json
    import re

    from conftest import get, run_app

    srv = run_app("asgi_app:app", "--write-timeout", "1")
    try:
        with connect(srv.port) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.sendall(b"GET /firehose HTTP/1.1\r\nHost: t\r\n\r\n")
            time.sleep(5)  # never read: the server's buffers fill, then no byte moves
            s.settimeout(10)  # a timeout here is a failure, not an end
            t0 = time.monotonic()
            try:
                while s.recv(1 << 20):  # what the kernel still holds, then the end
                    assert time.monotonic() - t0 < 10, "the connection was never cut"
            except ConnectionResetError:
                pass  # the reset the write timeout gives (unsent data dropped)
        # the application's send() raised once the connection was cut, and it saw why
        srv.wait_for(re.compile("OSError: the client has gone"), timeout=5)
        assert "firehose cut" in json.loads(get(srv.port, "/events").body)
    finally:
        srv.stop()
