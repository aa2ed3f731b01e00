"""Handlers that wait and responses that stream (WSGI on the worker's thread pool)."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from conftest import Reader, connect, first_then_whole, get, peak_rss_kib, read_to_end, run_app


@pytest.fixture(scope="module")
def srv():
    s = run_app("waiting_app:app", "--interface", "wsgi")
    yield s
    assert s.stop() == 0


def state(port: int) -> dict[str, int]:
    return {k: int(v) for k, v in (kv.split("=") for kv in get(port, "/state").body.decode().split())}


def in_threads(n: int, fn) -> list:
    out: list = [None] * n

    def run(i: int) -> None:
        out[i] = fn()

    ts = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(30)
    return out


def test_waiting_handlers_run_concurrently(srv):
    # One worker; 16 requests that each wait 0.3 s: together, not one after the other (4.8 s).
    t0 = time.monotonic()
    results = in_threads(16, lambda: get(srv.port, "/wait?s=0.3"))
    elapsed = time.monotonic() - t0
    assert [(r.status, r.body) for r in results] == [(200, b"done")] * 16
    assert elapsed < 1.5, f"16 waits of 0.3 s took {elapsed:.2f} s"
    assert state(srv.port)["most_running"] >= 8


def test_quick_requests_keep_their_latency_beside_waiting_ones(srv):
    waiting = threading.Thread(target=lambda: in_threads(4, lambda: get(srv.port, "/wait?s=1.5")))
    waiting.start()
    time.sleep(0.1)
    latencies = []
    with connect(srv.port) as s:
        rd = Reader(s)
        for _ in range(30):
            t = time.monotonic()
            s.sendall(b"GET /quick HTTP/1.1\r\nHost: t\r\n\r\n")
            assert rd.response().body == b"quick"
            latencies.append(time.monotonic() - t)
    assert state(srv.port)["running"] == 4, "the waiting handlers were still waiting"
    waiting.join(10)
    assert max(latencies) < 0.1, f"a quick request waited {max(latencies) * 1000:.0f} ms behind slow ones"


def test_server_sent_events_arrive_as_they_are_produced(srv):
    t0 = time.monotonic()
    first, r = first_then_whole(srv.port, "/events?every=0.4&n=3", b"data: 0")
    total = time.monotonic() - t0
    assert first < 0.25, f"the first event came after {first:.2f} s (the second is produced at 0.4 s)"
    assert r.header("Transfer-Encoding") == "chunked" and r.header("Content-Length") is None
    events = [e for e in r.body.decode().split("\n\n") if e]
    assert [e.split()[1] for e in events] == ["0", "1", "2"]
    assert total >= 0.8


def test_a_slow_reader_holds_the_generator_back(srv):
    """200 MiB generated in 64 KiB pieces for a client that does not read for a second: the
    generator waits (backpressure), and the worker's memory stays bounded."""
    pid = srv.workers[0][0]
    before = peak_rss_kib(pid)
    n, size = 3200, 65536
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    s.connect(("127.0.0.1", srv.port))
    s.sendall(f"GET /big?n={n}&size={size}&length=1 HTTP/1.1\r\nHost: t\r\n\r\n".encode())
    time.sleep(1.0)
    held = state(srv.port)["produced"]
    assert held * size < 16 << 20, f"{held} pieces were produced for a client that read nothing"
    got = 0
    s.settimeout(10)
    while got < n * size:
        chunk = s.recv(1 << 20)
        assert chunk
        got += len(chunk)
    s.close()
    head = 0  # the head is a few hundred bytes; the body is all that counts
    assert got - head >= n * size
    grew = peak_rss_kib(pid) - before
    assert grew < 32 * 1024, f"the worker's peak memory grew by {grew} KiB for a 200 MiB stream"


def test_a_client_that_leaves_mid_stream_stops_the_iteration(srv):
    closed = state(srv.port)["closed"]
    with connect(srv.port) as s:
        s.sendall(b"GET /big?n=100000&size=65536 HTTP/1.1\r\nHost: t\r\n\r\n")
        got = 0
        while got < 1 << 20:
            got += len(s.recv(65536))
    deadline = time.monotonic() + 5
    while state(srv.port)["closed"] == closed and time.monotonic() < deadline:
        time.sleep(0.05)
    st = state(srv.port)
    assert st["closed"] == closed + 1, "close() was called when the client left"
    time.sleep(0.3)
    assert state(srv.port)["produced"] == st["produced"] < 1000, "the iteration stopped"


def test_streamed_framing(srv):
    with connect(srv.port) as s:
        rd = Reader(s)
        # Content-Length given: honoured, not chunked; the connection stays usable.
        s.sendall(b"GET /big?n=4&size=1000&length=1 HTTP/1.1\r\nHost: t\r\n\r\n")
        r = rd.response()
        assert r.header("Content-Length") == "4000" and r.header("Transfer-Encoding") is None
        assert r.body == b"x" * 4000
        # No length: chunked.
        s.sendall(b"GET /big?n=3&size=10&delay=0.01 HTTP/1.1\r\nHost: t\r\n\r\n")
        r = rd.response()
        assert r.header("Transfer-Encoding") == "chunked" and r.body == b"x" * 30
        # HEAD: the length of the GET's body, no body.
        s.sendall(b"HEAD /big?n=3&size=10 HTTP/1.1\r\nHost: t\r\n\r\n")
        r = rd.response(head_request=True)
        assert r.header("Content-Length") == "30" and r.body == b""
        s.sendall(b"GET /quick HTTP/1.1\r\nHost: t\r\n\r\n")
        assert rd.response().body == b"quick"
    # HTTP/1.0 without a length: the body ends with the connection.
    with connect(srv.port) as s:
        s.sendall(b"GET /big?n=3&size=10&delay=0.01 HTTP/1.0\r\n\r\n")
        raw = read_to_end(s)
    head, body = raw.split(b"\r\n\r\n", 1)
    assert b"Connection: close" in head and b"Content-Length" not in head and b"chunked" not in head
    assert body == b"x" * 30


def test_pipelined_requests_to_waiting_handlers_answer_in_order(srv):
    with connect(srv.port) as s:
        s.sendall(b"GET /wait?s=0.05 HTTP/1.1\r\nHost: t\r\n\r\nGET /quick HTTP/1.1\r\nHost: t\r\n\r\n"
                  b"GET /events?every=0.01&n=2 HTTP/1.1\r\nHost: t\r\n\r\nGET /quick HTTP/1.1\r\nHost: t\r\n\r\n")
        rd = Reader(s)
        bodies = [rd.response().body for _ in range(4)]
    assert bodies[0] == b"done" and bodies[1] == b"quick" and bodies[3] == b"quick"
    assert bodies[2].count(b"data: ") == 2


def test_the_body_reaches_the_application_while_it_uploads(srv):
    with connect(srv.port) as s:
        rd = Reader(s)
        s.sendall(b"POST /first HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nhello\n\r\n")
        r = rd.response()  # answered before the rest of the body exists
        assert (r.status, r.body) == (200, b"hello\n")
        # The rest (short) is read and dropped; the connection goes on with the next request.
        s.sendall(b"5\r\nworld\r\n0\r\n\r\nGET /quick HTTP/1.1\r\nHost: t\r\n\r\n")
        assert rd.response().body == b"quick"


def test_an_early_answer_is_not_followed_by_the_body_parsed_as_a_request(srv):
    smuggled = b"GET /quick HTTP/1.1\r\nHost: t\r\n\r\n"
    with connect(srv.port) as s:
        s.sendall(b"POST /deny HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % len(smuggled) + smuggled
                  + b"GET /state HTTP/1.1\r\nHost: t\r\n\r\n")
        rd = Reader(s)
        assert (rd.response().status, rd.response().body[:8]) == (401, b"produced")
    # A long body behind an early answer: the connection closes after the answer.
    with connect(srv.port) as s:
        s.sendall(b"POST /deny HTTP/1.1\r\nHost: t\r\nContent-Length: 10000000\r\n\r\n" + b"x" * 100000)
        raw = read_to_end(s)
    assert raw.startswith(b"HTTP/1.1 401 ") and raw.endswith(b"denied") and raw.count(b"HTTP/1.1") == 1


def test_an_empty_body_is_complete_at_once(srv):
    # Content-Length: 0 as the last bytes read: nothing more will come, and wsgi.input ends.
    with connect(srv.port) as s:
        s.sendall(b"POST /read-later?s=0 HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n")
        assert Reader(s).response().body == b"0"


def test_continue_is_sent_when_the_application_reads(srv):
    with connect(srv.port) as s:
        t0 = time.monotonic()
        s.sendall(b"POST /read-later?s=0.4 HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        rd = Reader(s)
        r = rd.response()
        assert r.status == 100
        assert time.monotonic() - t0 >= 0.35, "100 Continue only once the application reads"
        s.sendall(b"hello")
        assert rd.response().body == b"5"
    with connect(srv.port) as s:
        s.sendall(b"POST /deny HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        raw = read_to_end(s)
    assert raw.startswith(b"HTTP/1.1 401 ") and b"100 Continue" not in raw, "no 100 for a body never read"


@pytest.mark.parametrize("reset", [False, True], ids=["closed", "reset"])
def test_a_handler_reading_a_body_the_client_abandons_is_told(srv, reset):
    import struct

    cut = state(srv.port)["cut"]
    with connect(srv.port) as s:
        s.sendall(b"POST /read-or-count HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n0123456789")
        time.sleep(0.2)
        if reset:  # an RST, not an end of stream: the worker closes the connection on the error
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    deadline = time.monotonic() + 5
    while state(srv.port)["cut"] == cut and time.monotonic() < deadline:
        time.sleep(0.05)
    assert state(srv.port)["cut"] == cut + 1, "wsgi.input raised OSError when the client left mid-body"


def test_one_thread_streams_two_responses_without_stalling():
    """--threads 1: a streamed response hands the loop over; a second one, on another
    connection, must not be run where nobody could take the loop from it (both would wait for
    room for ever). With one handler thread the second waits for the first, then streams."""
    one = run_app("waiting_app:app", "--interface", "wsgi", "--threads", "1")
    try:
        socks = []
        for _ in range(2):
            s = socket.create_connection(("127.0.0.1", one.port), timeout=10)
            s.sendall(b"GET /big?n=100&size=65536 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            socks.append(s)
        time.sleep(0.3)  # both are behind (neither client has read)
        got = [0, 0]

        def read(i: int) -> None:
            got[i] = len(read_to_end(socks[i], timeout=10))

        readers = [threading.Thread(target=read, args=(i,)) for i in range(2)]
        for t in readers:
            t.start()
        for t in readers:
            t.join(20)
        assert all(n > 100 * 65536 for n in got), got
        assert get(one.port, "/quick").body == b"quick", "the loop still serves"
        for s in socks:
            s.close()
    finally:
        assert one.stop() == 0


def test_one_thread_runs_every_request_of_a_route_marked_slow():
    """--threads 1: after a handler that waits has made its route slow (its next requests go
    to a thread, not inline), the only other thread is the watcher; a request for that route
    must still be run (the watcher leaves its watch for it), not wait for a thread that can
    never start."""
    one = run_app("waiting_app:app", "--interface", "wsgi", "--threads", "1")
    try:
        for i in range(4):
            t0 = time.monotonic()
            r = get(one.port, "/wait?s=0.05")
            assert r.body == b"done", f"request {i}"
            assert time.monotonic() - t0 < 3, f"request {i} waited {time.monotonic() - t0:.1f} s"
        assert get(one.port, "/quick").body == b"quick"
    finally:
        assert one.stop() == 0
