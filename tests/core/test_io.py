"""`--io`: choosing the backend, and what only the io_uring one can get wrong (its provided
buffers running out, input it received but has not read, sends staged in user space)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import pytest

from conftest import Server, connect, get, rss_kib


# every test here runs on each backend (--io epoll, --io uring): see `backend` in tests/conftest.py
pytestmark = pytest.mark.usefixtures("backend")


def test_the_start_line_names_the_backend(docroot, backend):
    srv = Server([str(docroot)])
    try:
        name = {"epoll": "epoll", "uring": "io_uring"}[backend]
        assert f"pinned, {name};" in srv.lines[0], srv.lines[0]
        assert get(srv.port, "/1b").body == b"x"
    finally:
        assert srv.stop() == 0


def test_a_thousand_connections_sending_at_once_are_all_answered(server):
    """More connections than the ring has provided buffers (512), each sending pipelined requests
    in the same moment: a recv that finds no buffer ends (ENOBUFS) and must start again."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 4096)), hard))
    socks = [connect(server.port, timeout=10) for _ in range(1000)]
    try:
        burst = b"GET /1b HTTP/1.1\r\nHost: t\r\n\r\n" * 3
        for s in socks:
            s.sendall(burst)
        for s in socks:
            got = b""
            while got.count(b"HTTP/1.1 200 OK") < 3:
                data = s.recv(65536)
                assert data, "the connection closed before its three answers"
                got += data
    finally:
        for s in socks:
            s.close()
    assert get(server.port, "/1b").body == b"x"


def test_a_client_that_sends_without_reading_is_held_by_the_socket_not_by_memory(server):
    """Pipelined requests sent for ever, answers never read: the worker stops receiving (TCP's
    window closes) instead of keeping what comes; its memory stays bounded."""
    pid = server.workers[0][0]
    before = rss_kib(pid)
    s = connect(server.port)
    s.setblocking(False)
    burst = b"GET /100.html HTTP/1.1\r\nHost: t\r\n\r\n" * 1000
    sent, deadline = 0, time.monotonic() + 3
    while time.monotonic() < deadline:
        try:
            sent += s.send(burst)
        except BlockingIOError:
            time.sleep(0.01)
    grew = rss_kib(pid) - before
    s.close()
    assert sent < 64 << 20, f"{sent} bytes went in: the server kept reading"
    assert grew < 16 * 1024, f"the worker grew by {grew} KiB"
    assert get(server.port, "/1b").body == b"x"


def test_a_stop_under_load_answers_what_it_took(docroot):
    """Stopping cancels the ring's accept and recvs: requests already taken are answered, and the
    worker exits 0 within the shutdown timeout."""
    srv = Server([str(docroot)])
    wrk = subprocess.Popen(["wrk", "-t1", "-c20", "-d3", f"http://127.0.0.1:{srv.port}/1b"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    time.sleep(1)
    t0 = time.monotonic()
    assert srv.stop() == 0
    assert time.monotonic() - t0 < 4
    out, _ = wrk.communicate(timeout=20)
    assert "requests in" in out, out
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", srv.port), timeout=1)
