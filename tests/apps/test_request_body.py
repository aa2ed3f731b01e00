"""--request-body spool: a WSGI or ASGI application is called once its request body is read
whole (in memory up to 1 MiB, past it in an unnamed temporary file), so a client uploading
slowly holds no handler thread; the default, stream, calls it at the end of the head."""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time

import pytest

from conftest import Reader, check_100_mib_upload, connect, get, read_to_end, run_app

MIB = 1 << 20


@pytest.fixture(scope="module")
def spooled():
    srv = run_app("waiting_app:app", "--interface", "wsgi", "--request-body", "spool", "--max-body", str(2 * MIB))
    yield srv
    assert srv.stop() == 0


def slow_upload(port: int, size: int, seconds: float, out: dict) -> threading.Thread:
    """POST `size` bytes to /read-later?s=0 in 16 pieces over `seconds`, on a thread of its
    own; `out` gets when the last piece was sent and the answer."""

    def run() -> None:
        with connect(port, timeout=10) as s:
            s.sendall(b"POST /read-later?s=0 HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % size)
            for _ in range(16):
                time.sleep(seconds / 16)
                s.sendall(b"x" * (size // 16))
            out["sent"] = time.monotonic()
            out["body"] = Reader(s).response().body

    t = threading.Thread(target=run)
    t.start()
    return t


def quick_beside_a_slow_upload(port: int) -> tuple[float, bool]:
    """Seconds a GET /quick took while another connection uploads 1 MiB over 1 s, and whether
    it was answered before the upload's last piece was sent."""
    upload: dict = {}
    t = slow_upload(port, MIB, 1.0, upload)
    time.sleep(0.2)  # the upload is under way
    t0 = time.monotonic()
    assert get(port, "/quick").body == b"quick"
    done = time.monotonic()
    t.join(10)
    assert upload["body"] == str(MIB).encode()
    return done - t0, done < upload["sent"]


def test_a_slow_upload_holds_no_handler_thread_when_spooled():
    # Streamed (the default) with one handler thread: the handler reading the slow upload
    # holds it, and a quick request on another connection waits for the upload to end.
    streamed = run_app("waiting_app:app", "--interface", "wsgi", "--threads", "1")
    try:
        took, during = quick_beside_a_slow_upload(streamed.port)
    finally:
        assert streamed.stop() == 0
    assert took >= 0.5 and not during, f"streamed: the quick request took {took:.2f} s"
    # Spooled: the loop reads the upload; the one thread is free until the body is complete.
    spooled = run_app("waiting_app:app", "--interface", "wsgi", "--threads", "1", "--request-body", "spool")
    try:
        took, during = quick_beside_a_slow_upload(spooled.port)
    finally:
        assert spooled.stop() == 0
    assert took < 0.3 and during, f"spooled: the quick request took {took:.2f} s behind a slow upload"


def test_continue_is_sent_before_the_application_runs_and_413_stays(spooled):
    # The application is not called before the body is in: vw asks for it at once.
    with connect(spooled.port) as s:
        t0 = time.monotonic()
        s.sendall(b"POST /read-later?s=0.4 HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        rd = Reader(s)
        assert rd.response().status == 100
        assert time.monotonic() - t0 < 0.3, "100 Continue at once, not when the application reads"
        s.sendall(b"hello")
        assert rd.response().body == b"5"
    # Past --max-body (2 MiB here): 413, by Content-Length or as a chunked body arrives.
    with connect(spooled.port) as s:
        s.sendall(b"POST /read-later?s=0 HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % (3 * MIB))
        assert read_to_end(s).startswith(b"HTTP/1.1 413 ")
    with connect(spooled.port) as s:
        s.sendall(b"POST /read-later?s=0 HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n")
        piece = b"y" * (256 * 1024)
        try:
            for _ in range(12):
                s.sendall(b"%x\r\n" % len(piece) + piece + b"\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # answered and closed while sending
        raw = read_to_end(s)
    assert raw.startswith(b"HTTP/1.1 413 ") and raw.count(b"HTTP/1.1") == 1, raw[:200]


@pytest.mark.parametrize("spec", ["wsgi_app:app", "asgi_app:app"], ids=["wsgi", "asgi"])
def test_a_chunked_upload_reaches_the_application_whole(spec):
    srv = run_app(spec, "--request-body", "spool")
    try:
        # 3 MiB chunked, the last piece sent after a pause: the application is called after it.
        data = os.urandom(3 * MIB)
        with connect(srv.port, timeout=30) as s:
            s.sendall(b"POST /spooled HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n")
            for i in range(0, len(data), 512 * 1024):
                if i == len(data) - 512 * 1024:
                    time.sleep(0.3)
                    last_sent = time.monotonic()
                piece = data[i:i + 512 * 1024]
                s.sendall(b"%x\r\n" % len(piece) + piece + b"\r\n")
            s.sendall(b"0\r\n\r\n")
            got = json.loads(Reader(s).response().body)
        assert got["called"] >= last_sent, "the application was called before its body was complete"
        assert (got["n"], got["sha256"]) == (len(data), hashlib.sha256(data).hexdigest())
        if spec.startswith("wsgi"):
            # the decoded length; past 1 MiB wsgi.input is the spooled file
            assert got["content_length"] == "3145728" and got["in_file"]
        else:
            # read from the spooled file in pieces, never the whole body in one bytes object
            assert sum(got["messages"]) == len(data) and max(got["messages"]) <= MIB < len(data)
        # A small body stays in memory: ASGI gets it in one message, WSGI with its length.
        small = os.urandom(100_000)
        got = json.loads(get(srv.port, "/spooled", method="POST", body=small).body)
        assert (got["n"], got["sha256"]) == (len(small), hashlib.sha256(small).hexdigest())
        if spec.startswith("wsgi"):
            assert got["content_length"] == "100000" and not got["in_file"]
        else:
            assert got["messages"] == [len(small)]
        # 100 MiB spooled: the worker's memory does not grow by anything like the body.
        check_100_mib_upload(srv)
    finally:
        assert srv.stop() == 0
