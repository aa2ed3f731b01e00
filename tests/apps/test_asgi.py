"""ASGI 3 over real sockets: the protocol, lifespan, streaming both ways, backpressure, errors,
and FastAPI unmodified."""

from __future__ import annotations

import hashlib
import re
import json
import os
import socket
import struct
import time

import pytest

from conftest import Reader, check_100_mib_upload, connect, get, peak_rss_kib, post_form, read_to_end, run_app


@pytest.fixture(scope="module")
def asgi():
    srv = run_app("asgi_app:app")
    yield srv
    assert srv.stop() == 0


def test_hello_and_detection(asgi):
    assert any("(asgi)" in line for line in asgi.lines)
    r = get(asgi.port, "/")
    assert (r.status, r.body) == (200, b"Hello, world!")
    assert r.header("Content-Length") == "13" and r.header("Server") == "vw" and r.header("Date")


def test_scope_and_lifespan_state(asgi):
    r = get(asgi.port, "/scope?x=%20y", method="POST", body=b"payload",
            headers="Host: example\r\nX-Multi: 1\r\nX-Multi: 2\r\n")
    s = json.loads(r.body)
    assert s["http_version"] == "1.1" and s["method"] == "POST" and s["scheme"] == "http"
    assert s["path"] == "/scope" and s["raw_path"] == "/scope" and s["query_string"] == "x=%20y"
    assert ["host", "example"] in s["headers"] and ["x-multi", "1"] in s["headers"] and ["x-multi", "2"] in s["headers"]
    assert s["client_host"] == "127.0.0.1" and s["server"][1] == asgi.port
    assert s["state"] == "hello from lifespan" and s["body"] == "payload" and s["root_path"] == ""


def test_100_mib_upload_arrives_byte_exact_without_filling_memory(asgi):
    check_100_mib_upload(asgi)


def test_chunked_upload_streamed_to_the_app(asgi):
    data = os.urandom(5 * 1024 * 1024 + 3)
    with connect(asgi.port, timeout=30) as s:
        s.sendall(b"POST /upload HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n")
        for i in range(0, len(data), 1 << 20):
            piece = data[i:i + (1 << 20)]
            s.sendall(b"%x\r\n" % len(piece) + piece + b"\r\n")
        s.sendall(b"0\r\n\r\n")
        r = Reader(s).response()
    assert r.body.decode() == f"{len(data)} {hashlib.sha256(data).hexdigest()}"


def test_pathsend_and_trailers(asgi, tmp_path):
    f = tmp_path / "data.bin"
    f.write_bytes(os.urandom(300_000))
    assert json.loads(get(asgi.port, "/extensions").body) == ["http.response.pathsend"]
    assert json.loads(get(asgi.port, "/extensions", headers="Host: t\r\nTE: trailers\r\n").body) == \
        ["http.response.pathsend", "http.response.trailers"]
    r = get(asgi.port, f"/pathsend?{f}")
    assert r.status == 200 and r.header("Content-Length") == "300000" and r.body == f.read_bytes()
    with connect(asgi.port) as s:
        s.sendall(b"GET /trailers HTTP/1.1\r\nHost: t\r\nTE: trailers\r\n\r\nGET /trailers HTTP/1.1\r\nHost: t\r\n\r\n")
        data = b""
        while data.count(b"0\r\n") < 2 or not data.endswith(b"\r\n\r\n"):
            data += s.recv(65536)
    with_trailers, without = data.split(b"HTTP/1.1 200 OK")[1:]
    assert b"Transfer-Encoding: chunked" in with_trailers
    assert with_trailers.endswith(b"5\r\nhello\r\n6\r\n world\r\n0\r\nx-checksum: 5eb63bbb\r\n\r\n"), with_trailers
    assert without.endswith(b"6\r\n world\r\n0\r\n\r\n") and b"x-checksum: 5eb" not in without, "no TE: trailers, no trailers"


def test_receive_gives_the_body_as_it_arrives(asgi):
    with connect(asgi.port) as s:
        rd = Reader(s)
        s.sendall(b"POST /first HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nhello")
        assert rd.response().body == b"5 True", "the first 5 bytes, more to come, before the rest is sent"
        s.sendall(b"world")  # drained: the connection goes on
        s.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        assert rd.response().status == 200


def test_streaming_response_is_chunked(asgi):
    with connect(asgi.port) as s:
        s.sendall(b"GET /stream HTTP/1.1\r\nHost: t\r\n\r\n")
        raw = b""
        while not raw.endswith(b"0\r\n\r\n"):
            chunk = s.recv(65536)
            assert chunk, raw
            raw += chunk
    head, body = raw.split(b"\r\n\r\n", 1)
    assert b"Transfer-Encoding: chunked" in head
    assert body == b"".join(b"7\r\npart %d\n\r\n" % i for i in range(5)) + b"0\r\n\r\n"
    with connect(asgi.port) as s:  # HTTP/1.0 has no chunked coding: the body ends with the connection
        s.sendall(b"GET /stream HTTP/1.0\r\n\r\n")
        data = read_to_end(s)
    assert data.endswith(b"part 4\n") and b"chunked" not in data


def _tcp_queues(local_port: int, remote_port: int) -> tuple[int, int]:
    """(send queue, receive queue) in bytes of the IPv4 socket local_port -> remote_port, from
    /proc/net/tcp: what the kernel holds for it, unsent or unacknowledged, and unread."""
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            local, remote = fields[1].split(":")[1], fields[2].split(":")[1]
            if int(local, 16) == local_port and int(remote, 16) == remote_port:
                tx, rx = fields[4].split(":")
                return int(tx, 16), int(rx, 16)
    raise AssertionError(f"no socket {local_port} -> {remote_port} in /proc/net/tcp")


HIGH_WATER, LOW_WATER, BLOCK = 256 * 1024, 64 * 1024, 65536  # the design's marks; /big's send size


def test_large_response_with_backpressure(asgi):
    """While the client reads nothing, what vw holds in memory for the connection (what the app
    handed to send() minus what the kernel holds on both sides) stays under the 256 KiB mark:
    send() waits once more than 256 KiB is queued (the message it waits on is not counted in
    `sent`), and is let go again only when less than 64 KiB is left. Where between the marks it
    stops depends on how much the kernel took with the last write, so the lower bound is the low
    mark: an app waiting while vw holds less would be a lost wake-up."""
    size = 48 * 1024 * 1024
    with connect(asgi.port, timeout=30) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        s.sendall(b"GET /big?%d HTTP/1.1\r\nHost: t\r\n\r\nGET / HTTP/1.1\r\nHost: t\r\n\r\n" % size)
        time.sleep(0.5)  # read nothing for a while: the app must wait, not buffer 48 MiB
        sent = json.loads(get(asgi.port, "/progress").body)["big"]
        client = s.getsockname()[1]
        server_tx, _ = _tcp_queues(asgi.port, client)
        _, client_rx = _tcp_queues(client, asgi.port)
        held = sent - server_tx - client_rx  # (the response head, ~60 bytes, is left out)
        # send() returned for `sent` bytes; the message it waits on (one BLOCK) is queued too.
        # The margin: 4 KiB for the head and for a write under way while the queues were read.
        # Counting that message, vw holds more than the low mark, or the app would run again.
        assert LOW_WATER - 4096 < held + BLOCK and held <= HIGH_WATER + 4096, (
            f"vw holds {held} bytes (app sent {sent}, kernel {server_tx} + {client_rx})")
        assert sent < 8 << 20, f"the app got {sent} bytes out of 48 MiB past a client reading nothing"
        rd = Reader(s)
        r = rd.response()
        assert len(r.body) == size
        assert rd.response().body == b"Hello, world!", "the pipelined request waited its turn"
    assert json.loads(get(asgi.port, "/progress").body)["big"] == size, "the app resumed once read"


def test_client_closing_is_a_disconnect(asgi):
    import socket

    with connect(asgi.port) as s:
        s.sendall(b"GET /wait-disconnect HTTP/1.1\r\nHost: t\r\n\r\n")
        assert s.recv(4096).startswith(b"HTTP/1.1 200")
        s.shutdown(socket.SHUT_WR)
        time.sleep(0.3)
    deadline = time.monotonic() + 5
    while "http.disconnect" not in json.loads(get(asgi.port, "/events").body):
        assert time.monotonic() < deadline, "the application never saw http.disconnect"
        time.sleep(0.1)


def test_the_event_loop_is_uvloop(asgi):
    """uvloop is a test dependency, so the path production takes when it is installed is the one
    tested (the README: "uvloop when installed")."""
    import importlib.util

    assert importlib.util.find_spec("uvloop"), "uvloop is not installed: pip install -e '.[test]' installs it"
    assert get(asgi.port, "/loop").body.startswith(b"uvloop"), get(asgi.port, "/loop").body


def test_interim_status_from_the_app_is_refused(asgi):
    assert get(asgi.port, "/early-hints").status == 500


def test_no_memory_kept_per_request(asgi):
    import shutil
    import subprocess

    wrk = shutil.which("wrk")
    assert wrk, "wrk is needed (make test installs it)"
    pid = asgi.workers[0][0]
    url = f"http://127.0.0.1:{asgi.port}/"
    subprocess.run([wrk, "-t1", "-c20", "-d1s", url], capture_output=True, check=True)  # warm up

    def rss() -> int:
        with open(f"/proc/{pid}/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))

    before = rss()
    out = subprocess.run([wrk, "-t1", "-c20", "-d3s", url], capture_output=True, text=True, check=True).stdout
    requests = int(next(line.split()[0] for line in out.splitlines() if "requests in" in line))
    grew = rss() - before
    assert requests > 20_000, out
    assert grew * 1024 < requests * 20, f"{grew} KiB more after {requests} requests"


def test_pipelined_requests_keep_their_order(asgi):
    with connect(asgi.port) as s:
        s.sendall(b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\nGET / HTTP/1.1\r\nHost: t\r\n\r\n" * 3)
        rd = Reader(s)
        assert [rd.response().body for _ in range(6)] == [b"slow", b"Hello, world!"] * 3


def test_errors(asgi):
    r = get(asgi.port, "/boom")
    assert r.status == 500
    assert get(asgi.port, "/inject").status == 500
    with connect(asgi.port) as s:
        s.sendall(b"GET /boom-late HTTP/1.1\r\nHost: t\r\n\r\n")
        data = read_to_end(s)
    assert data.startswith(b"HTTP/1.1 200") and b"0\r\n\r\n" not in data, "cut, never completed"
    asgi.wait_for(re.compile("late kaboom"), timeout=5)  # logged (stderr is read by a thread)
    assert get(asgi.port, "/").status == 200


def test_each_request_has_its_own_task_and_context(asgi):
    for i in range(3):
        assert json.loads(get(asgi.port, f"/task?{i}").body) == {"task": True, "same": True, "leaked": None}


def test_an_app_returning_an_awaitable():
    srv = run_app("asgi_app:awaitable_app", "--interface", "asgi")
    try:
        assert get(srv.port, "/").body == b"awaitable"
    finally:
        assert srv.stop() == 0


def test_head(asgi):
    r = get(asgi.port, "/", method="HEAD")
    assert r.status == 200 and r.header("Content-Length") == "13" and r.body == b""


def test_fastapi():
    srv = run_app("fastapi_app:app")
    try:
        assert json.loads(get(srv.port, "/").body) == {"hello": "fastapi"}
        assert json.loads(get(srv.port, "/items/5?q=x").body) == {"item_id": 5, "q": "x"}
        assert get(srv.port, "/items/nope").status == 422
        r = get(srv.port, "/items", method="POST", body=b'{"name": "pen", "price": 10}',
                headers="Host: t\r\nContent-Type: application/json\r\n")
        assert json.loads(r.body) == {"name": "pen", "price_with_tax": 12.0}
        r = post_form(srv.port, "/form", "vw", "f.bin", b"\x01" * 70000)
        assert json.loads(r.body) == {"name": "vw", "filename": "f.bin", "size": 70000}
        r = get(srv.port, "/stream")
        assert r.status == 200  # chunked: the reader below checks the framing
        with connect(srv.port) as s:
            s.sendall(b"GET /stream HTTP/1.1\r\nHost: t\r\n\r\n")
            raw = b""
            while not raw.endswith(b"0\r\n\r\n"):
                raw += s.recv(65536)
        assert b"chunk 0\n" in raw and b"chunk 2\n" in raw
        # FileResponse takes the pathsend extension: the file goes out from the core.
        r = get(srv.port, "/file")
        assert r.status == 200 and r.body == open(__file__, "rb").read()
        assert r.header("Content-Length") == str(len(r.body)) and r.header("ETag")
        # request.stream() yields the body as it comes: three pieces sent 0.2 s apart.
        with connect(srv.port) as s:
            s.sendall(b"POST /count HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n")
            for _ in range(3):
                s.sendall(b"4\r\nabcd\r\n")
                time.sleep(0.2)
            s.sendall(b"0\r\n\r\n")
            got = json.loads(Reader(s).response().body)
        assert got["sizes"] == [4, 4, 4] and got["spread"] >= 0.3, got
        assert json.loads(get(srv.port, "/background", method="POST").body) == {"scheduled": True}
        deadline = time.monotonic() + 5
        while json.loads(get(srv.port, "/background").body) != {"done": ["ran"]}:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        assert srv.stop() == 0


def test_access_log_of_an_asgi_worker_keeps_its_last_lines(tmp_path):
    """The ASGI worker is driven by asyncio and exits without being dropped: the lines it holds
    are written when it stops."""
    log = tmp_path / "access.log"
    srv = run_app("asgi_app:app", "--access-log", str(log), "--access-log-format", "json")
    try:
        for i in range(5):
            assert get(srv.port, f"/?n={i}").status == 200
    finally:
        assert srv.stop() == 0
    lines = [json.loads(x) for x in log.read_text().splitlines()]
    assert [x["target"] for x in lines] == [f"/?n={i}" for i in range(5)]
    assert all(x["status"] == 200 and x["duration_us"] >= 0 for x in lines)


def test_a_response_the_client_left_is_logged(tmp_path):
    """A client that goes before the application answers is logged with 499 (as nginx does);
    one that goes during a streamed response, with the status that was sent."""
    log = tmp_path / "access.log"
    srv = run_app("asgi_app:app", "--access-log", str(log), "--access-log-format", "json")
    try:
        with connect(srv.port) as s:  # reset (not a half-close) while the app is still working
            s.sendall(b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\n")
            time.sleep(0.05)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        with connect(srv.port) as s:
            s.sendall(b"GET /wait-disconnect HTTP/1.1\r\nHost: t\r\n\r\n")
            assert s.recv(100).startswith(b"HTTP/1.1 200")
        time.sleep(0.5)
        assert get(srv.port, "/").status == 200
    finally:
        assert srv.stop() == 0
    lines = {x["target"]: x for x in map(json.loads, log.read_text().splitlines())}
    assert lines["/slow"]["status"] == 499
    assert lines["/wait-disconnect"]["status"] == 200 and lines["/wait-disconnect"]["bytes"] > 0
