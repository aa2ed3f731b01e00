"""Applications over HTTP/2 (issue 13 item 3): ASGI streams run concurrently on one connection,
WSGI and vw.App handlers on the handler threads, request bodies under HTTP/2 flow control,
responses streamed, trailers, resets, limits and timeouts, the access log and metrics; over TLS
(ALPN) and h2c. Clients: the h2 package (tests/tls/h2client.py), httpx with http2 (FastAPI: tests/tls/test_tls.py), curl, h2load."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import time

import pytest

from conftest import peak_rss_kib, run_app
from h2client import H2Client
from tlsutil import certs, curl  # noqa: F401 (certs: a fixture)

CANCEL, INTERNAL_ERROR = 8, 2


@pytest.fixture(scope="module")
def asgi(certs):
    s = run_app("asgi_app:app", *certs.args())
    yield s
    assert s.stop() == 0


@pytest.fixture(scope="module")
def asgi_h2c():
    s = run_app("asgi_app:app", "--http2-cleartext")
    yield s
    assert s.stop() == 0


@pytest.fixture(scope="module")
def wsgi_h2c():
    s = run_app("waiting_app:app", "--interface", "wsgi", "--http2-cleartext", "--keepalive-timeout", "1",
                "--body-timeout", "2")
    yield s
    assert s.stop() == 0


def at_once(c: H2Client, path: str, n: int) -> tuple[list, float]:
    """`n` streams to `path` opened together on one connection: their answers, and how long all took."""
    t0 = time.monotonic()
    rs = c.wait(*[c.request(path) for _ in range(n)])
    return rs, time.monotonic() - t0


def test_applications_are_offered_h2_by_alpn(asgi, certs):
    assert any("ALPN h2, http/1.1;" in line for line in asgi.lines), asgi.lines
    r = curl("--cacert", str(certs.folder / "ca.pem"), "--http2", "-w", "|%{http_version}", f"https://localhost:{asgi.port}/")
    assert r.stdout == b"Hello, world!|2", r
    r = curl("--cacert", str(certs.folder / "ca.pem"), "--http1.1", "-w", "|%{http_version}", f"https://localhost:{asgi.port}/")
    assert r.stdout == b"Hello, world!|1.1", r


def test_asgi_scope_body_head_and_errors_over_h2(asgi, certs):
    with H2Client(asgi.port, certs.context()) as c:
        r = c.get("/scope?a=1", method="POST", headers=[("content-type", "text/plain"), ("cookie", "a=1"), ("cookie", "b=2")],
                  body=b"hello body")
        assert r.status == 200, r
        scope = json.loads(r.body)
        assert (scope["http_version"], scope["scheme"], scope["method"], scope["query_string"]) == ("2", "https", "POST", "a=1")
        assert scope["body"] == "hello body"
        headers = dict(scope["headers"])
        assert headers["host"] == f"localhost:{asgi.port}" and headers["cookie"] == "a=1; b=2", headers  # RFC 9113 §8.2.3
        assert not any(k.startswith(":") for k in headers), headers
        r = c.get("/extensions")
        assert "tls" in json.loads(r.body), r.body
        r = c.get("/", method="HEAD")
        assert (r.status, r.headers.get("content-length"), r.body) == (200, "13", b""), r
        assert "connection" not in r.headers and r.headers["server"] == "vw" and "date" in r.headers, r.headers
        r = c.get("/nothing-here")
        assert (r.status, r.body) == (404, b"not found"), r
        r = c.get("/boom")
        assert r.status == 500, r
        r = c.get("/boom-late")  # the body started: the stream is reset, never ended as if whole
        assert r.body == b"partial" and r.reset == INTERNAL_ERROR and not r.ended, r
        r = c.get("/inject")  # a header value with CR LF is refused by the interface, as over HTTP/1.1
        assert r.status == 500 and "set-cookie" not in r.headers, r
        assert c.get("/").body == b"Hello, world!"  # the connection serves on


def test_asgi_streams_run_concurrently_on_one_connection(asgi_h2c):
    # 20 requests that each sleep 0.2 s, all on one connection: together, not in turn (4 s).
    with H2Client(asgi_h2c.port) as c:
        rs, elapsed = at_once(c, "/slow", 20)
    assert [(r.status, r.body) for r in rs] == [(200, b"slow")] * 20
    assert elapsed < 1.5, f"20 streams of 0.2 s took {elapsed:.2f} s on one connection"


def test_asgi_streamed_response_and_trailers(asgi_h2c):
    with H2Client(asgi_h2c.port) as c:
        r = c.get("/stream")
        assert (r.status, r.body) == (200, b"".join(f"part {i}\n".encode() for i in range(5))), r
        assert "content-length" not in r.headers and len(r.pieces) >= 2, r  # sent as produced
        r = c.get("/trailers", headers=[("te", "trailers")])
        assert (r.body, r.trailers) == (b"hello world", {"x-checksum": "5eb63bbb"}), r
        r = c.get(f"/big?{3 << 20}")
        assert len(r.body) == 3 << 20 and r.headers["content-length"] == str(3 << 20), r.headers


def test_a_client_reset_tells_the_application_and_the_connection_serves_on(asgi_h2c):
    with H2Client(asgi_h2c.port) as c:
        sid = c.request("/firehose")
        c.read_until(sid, 200_000)
        c.reset(sid, CANCEL)
        deadline = time.monotonic() + 5
        while True:
            events = json.loads(c.get("/events").body)
            if "firehose cut" in events:
                break
            assert time.monotonic() < deadline, events
            time.sleep(0.1)
        assert c.get("/").body == b"Hello, world!"


def test_a_request_body_follows_flow_control(asgi_h2c):
    # /first answers after the first body message: the rest of a large body is never asked
    # for, so the server must not take it (its window stays shut) and the stream is reset
    # (NO_ERROR) once the answer is out; the connection goes on.
    with H2Client(asgi_h2c.port) as c:
        sid = c.request("/first", method="POST", end=False)
        c.send(sid, b"a" * 1000)
        sent = c.send(sid, b"b" * (4 << 20), end=True, timeout=10)  # returns when the stream is over
        r = c.wait(sid)[0]
        assert r.status == 200 and r.body.split()[1] == b"True", r
        assert sent < 1 << 20, f"the server took {sent} bytes of a body nobody read"
        assert c.get("/").body == b"Hello, world!"


def test_a_body_nobody_reads_yet_does_not_hold_up_the_other_streams(wsgi_h2c):
    # Stream A's view waits 2 s before it reads its body: A's window closes once its inbox is
    # full. Stream B's upload on the same connection must not wait for A.
    with H2Client(wsgi_h2c.port) as c:
        a = c.request("/read-later?s=2", method="POST", headers=[("content-length", "400000")], end=False)
        t0 = time.monotonic()
        assert c.send(a, b"a" * 400_000) == 400_000
        b = c.request("/read-or-count", method="POST", headers=[("content-length", str(2 << 20))], end=False)
        c.send(b, b"b" * (2 << 20), end=True)
        rb = c.wait(b)[0]
        assert (rb.status, rb.body) == (200, b"ok") and time.monotonic() - t0 < 1.5, (rb, time.monotonic() - t0)
        assert not c.streams[a].over, "A answered before its view even read"
        c.send(a, b"", end=True)
        ra = c.wait(a)[0]
        assert (ra.status, ra.body) == (200, b"400000"), ra


def test_100_mib_upload_over_h2_and_tls_byte_exact_in_bounded_memory(asgi, certs):
    pid = asgi.workers[0][0]
    before = peak_rss_kib(pid)
    block = os.urandom(1 << 20)
    h = hashlib.sha256()
    with H2Client(asgi.port, certs.context(), timeout=60) as c:
        sid = c.request("/upload", method="POST", headers=[("content-length", str(100 << 20))], end=False)
        for i in range(100):
            piece = bytes([i]) + block[1:]
            h.update(piece)
            c.send(sid, piece, end=i == 99)
        r = c.wait(sid, timeout=60)[0]
    assert r.body.decode() == f"{100 << 20} {h.hexdigest()}", r
    grew = peak_rss_kib(pid) - before
    assert grew < 24 * 1024, f"the worker's peak memory grew by {grew} KiB for a 100 MiB upload over HTTP/2"


def test_wsgi_handlers_that_wait_run_on_threads_and_outlive_the_idle_timeout(wsgi_h2c):
    # 12 views that wait 0.4 s, on one connection: on the handler threads together (4.8 s in
    # turn); one that waits 2.5 s outlives --keepalive-timeout 1 (the application has no clock).
    with H2Client(wsgi_h2c.port) as c:
        long = c.request("/wait?s=2.5")
        rs, elapsed = at_once(c, "/wait?s=0.4", 12)
        assert [(r.status, r.body) for r in rs] == [(200, b"done")] * 12
        assert elapsed < 2.0, f"12 waits of 0.4 s took {elapsed:.2f} s on one connection"
        quick = c.get("/quick")
        assert quick.body == b"quick" and not c.streams[long].over, "a quick view waited behind the long one"
        r = c.wait(long, timeout=10)[0]
        assert (r.status, r.body) == (200, b"done") and not c.closed, r


def state(c: H2Client) -> dict[str, int]:
    return {k: int(v) for k, v in (kv.split("=") for kv in c.get("/state").body.decode().split())}


def test_a_reset_stream_stops_the_wsgi_iterable(wsgi_h2c):
    # 2,000 pieces of 64 KiB (125 MiB): the client reads some, then resets the stream. The
    # handler is held back by the unread body, then told: it stops and closes its iterable.
    with H2Client(wsgi_h2c.port) as c:
        closed = state(c)["closed"]
        sid = c.request("/big?n=2000&size=65536")
        c.read_until(sid, 300_000)
        c.reset(sid, CANCEL)
        deadline = time.monotonic() + 5
        while state(c)["closed"] == closed:
            assert time.monotonic() < deadline, "the iterable was never closed"
            time.sleep(0.1)
        produced = state(c)["produced"]
        time.sleep(0.3)
        assert state(c)["produced"] == produced < 100, "the handler went on producing for nobody"


def test_a_slow_stream_to_a_client_with_large_windows_is_not_held_back(wsgi_h2c):
    # 400 pieces of 4 KiB, one a millisecond: each is framed as it comes, so nothing waits in
    # vw's queue; the handler's backpressure must still learn that what it posted went out.
    with H2Client(wsgi_h2c.port, window=16 << 20) as c:
        r = c.get("/big?n=400&size=4096&delay=0.001", timeout=15)
    assert r.status == 200 and len(r.body) == 400 * 4096, (r.status, len(r.body))


def test_hop_by_hop_fields_of_an_application_are_dropped(asgi_h2c):
    with H2Client(asgi_h2c.port) as c:
        r = c.get("/hop-by-hop")
    assert (r.status, r.body, r.headers.get("x-kept")) == (200, b"fields", "1"), r
    assert not {"te", "connection", "keep-alive", "upgrade"} & set(r.headers), r.headers


def test_streams_reset_while_their_application_runs_are_bounded(asgi_h2c):
    # 100 streams to a view that takes 0.2 s; once they are taken, RST_STREAM for each and 100
    # new ones. The reset streams' applications still run, so they keep their place until they
    # finish: past 128 the new streams are refused (REFUSED_STREAM) instead of piling up work.
    # (HEADERS and RST_STREAM in the same read are h2's own rapid-reset case: GOAWAY, tested in
    # test_h2_abuse.py.) Then the connection serves.
    from hyperframe.frame import GoAwayFrame, RstStreamFrame

    from test_h2_abuse import Raw

    raw = Raw(asgi_h2c.port)
    try:
        first = [1 + 2 * i for i in range(100)]
        then = [201 + 2 * i for i in range(100)]
        raw.send(b"".join(raw.headers(sid, "/slow") for sid in first))
        time.sleep(0.05)
        raw.send(b"".join(RstStreamFrame(sid, error_code=CANCEL).serialize() for sid in first)
                 + b"".join(raw.headers(sid, "/slow") for sid in then))
        frames = raw.frames(timeout=0.12)
        refused = {f.stream_id for f in frames if isinstance(f, RstStreamFrame) and f.error_code == 7}
        assert not any(isinstance(f, GoAwayFrame) for f in frames), frames
        assert len(refused) >= 50 and refused <= set(then), sorted(refused)
        time.sleep(0.4)  # the 0.2 s views finish
        raw.send(raw.headers(601, "/"))
        got = raw.frames(timeout=3, until=lambda f: f.stream_id == 601 and "END_STREAM" in f.flags)
        assert any(f.stream_id == 601 and f.type == 0 and f.data == b"Hello, world!" for f in got), got
    finally:
        raw.close()


def test_wsgi_stream_arrives_as_it_is_produced(wsgi_h2c):
    with H2Client(wsgi_h2c.port) as c:
        r = c.get("/events?every=0.3&n=3")
        assert r.status == 200 and r.body.count(b"data: ") == 3, r
        assert r.pieces[-1][0] - r.pieces[0][0] > 0.45, f"the events came together: {r.pieces}"


def test_a_stalled_upload_is_cut_at_the_body_timeout_and_the_handler_told(wsgi_h2c):
    with H2Client(wsgi_h2c.port) as c:
        cut_before = int(re.search(rb"cut=(\d+)", c.get("/state").body).group(1))
        sid = c.request("/read-or-count", method="POST", headers=[("content-length", "100000")], end=False)
        c.send(sid, b"x" * 1000)
        t0 = time.monotonic()
        while not c.closed and time.monotonic() - t0 < 8:
            c.pump(0.2)
        assert c.closed, "a stalled body was waited for past --body-timeout"
        assert 1.5 < time.monotonic() - t0 < 6
    with H2Client(wsgi_h2c.port) as c:
        deadline = time.monotonic() + 5
        while int(re.search(rb"cut=(\d+)", c.get("/state").body).group(1)) == cut_before:
            assert time.monotonic() < deadline, "the handler never learnt that its body was cut"
            time.sleep(0.1)


def test_native_app_over_h2():
    s = run_app("native_app:app", "--http2-cleartext")
    try:
        with H2Client(s.port) as c:
            r = c.get("/")
            assert (r.status, r.body) == (200, b"Hello, world!"), r
            r = c.get("/echo", method="POST", body=b"echo me " * 10000)
            assert (r.status, r.body, r.headers["x-length"]) == (201, b"echo me " * 10000, "80000"), r
            r = c.get("/gen")
            assert (r.status, r.body) == (200, b"first second"), r
            assert r.pieces[-1][0] - r.pieces[0][0] > 0.3, f"the pieces came together: {r.pieces}"
            rs, elapsed = at_once(c, "/sleep", 6)
            assert all(r.status == 200 for r in rs) and elapsed < 1.5, rs
    finally:
        assert s.stop() == 0


def test_request_body_spool_over_h2():
    s = run_app("asgi_app:app", "--http2-cleartext", "--request-body", "spool", "--max-body", "3000000")
    try:
        with H2Client(s.port) as c:
            body = os.urandom(2 << 20)
            sid = c.request("/spooled", method="POST", end=False)
            c.send(sid, body[:1 << 20])
            half = time.monotonic()
            time.sleep(0.5)
            c.send(sid, body[1 << 20:], end=True)
            got = json.loads(c.wait(sid)[0].body)
            assert (got["n"], got["sha256"]) == (len(body), hashlib.sha256(body).hexdigest()), got
            assert got["called"] > half + 0.4, got  # called once the whole body was in, not before
            r = c.get("/spooled", method="POST", headers=[("content-length", "5000000")], end=False)
            assert r.status == 413, r  # over --max-body by the length it declared
            sid = c.request("/spooled", method="POST", end=False)
            c.send(sid, b"z" * 3_100_000, end=True)
            assert c.wait(sid)[0].status == 413  # over --max-body by what it sent
            assert c.get("/").body == b"Hello, world!"
    finally:
        assert s.stop() == 0


def test_static_mounts_of_vw_run_over_h2_and_the_log_and_metrics(tmp_path):
    from prometheus_client.parser import text_string_to_metric_families

    from conftest import free_port

    (tmp_path / "static").mkdir()
    (tmp_path / "static" / "app.css").write_text("body{}\n" * 100)
    admin, log = free_port(), tmp_path / "access.log"
    s = run_app("asgi_app:app", "--http2-cleartext", "--static", f"/static={tmp_path / 'static'}",
                "--admin-port", str(admin), "--access-log", str(log))
    try:
        s.wait_for(re.compile(r"vw admin on"))
        with H2Client(s.port) as c:
            r = c.get("/static/app.css")
            assert (r.status, r.body) == (200, b"body{}\n" * 100), r
            assert c.get("/static/app.css", headers=[("if-none-match", r.headers["etag"])]).status == 304
            assert c.get("/").body == b"Hello, world!"
            assert c.get("/slow").body == b"slow"
        import urllib.request

        text = urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics", timeout=5).read().decode()
        fams = {f.name: f for f in text_string_to_metric_families(text)}
        by_proto = {x.labels["protocol"]: x.value for x in fams["vw_requests_by_protocol"].samples}
        assert by_proto.get("h2") == 4, by_proto
    finally:
        assert s.stop() == 0
    lines = log.read_text().splitlines()
    assert sum('"GET / HTTP/2.0" 200' in line for line in lines) == 1, lines
    assert sum('"GET /slow HTTP/2.0" 200' in line for line in lines) == 1, lines
    assert sum('"GET /static/app.css HTTP/2.0" 304' in line for line in lines) == 1, lines


def test_a_stopping_worker_lets_streams_in_flight_finish_and_says_goaway_first():
    # A worker that stops (SIGTERM, as a reload sends the old ones) begins with GOAWAY
    # (NO_ERROR, the largest id: open no new stream); the streams in flight finish; then the
    # last GOAWAY names the last stream taken.
    import os
    import signal

    from hyperframe.frame import DataFrame, GoAwayFrame

    from test_h2_abuse import Raw

    s = run_app("waiting_app:app", "--interface", "wsgi", "--http2-cleartext")
    try:
        raw = Raw(s.port)
        sids = [1, 3, 5, 7, 9]
        raw.send(b"".join(raw.headers(sid, "/wait?s=1") for sid in sids))
        time.sleep(0.2)
        os.kill(s.workers[0][0], signal.SIGTERM)
        frames = raw.frames(timeout=5, until=lambda f: isinstance(f, GoAwayFrame) and f.last_stream_id == 9)
        raw.close()
        goaways = [(f.last_stream_id, f.error_code) for f in frames if isinstance(f, GoAwayFrame)]
        assert goaways == [(2 ** 31 - 1, 0), (9, 0)], goaways
        done = {f.stream_id for f in frames if isinstance(f, DataFrame) and f.data == b"done"}
        assert done == set(sids), frames
        first_goaway = next(i for i, f in enumerate(frames) if isinstance(f, GoAwayFrame))
        assert not any(isinstance(f, DataFrame) and f.data for f in frames[:first_goaway]), "GOAWAY came late"
    finally:
        assert s.stop() == 0


def test_h2load_on_an_application(asgi, asgi_h2c):
    exe = shutil.which("h2load")
    assert exe, "h2load is needed (make test installs nghttp2-client)"
    r = subprocess.run([exe, "-c4", "-m10", "-n4000", f"https://localhost:{asgi.port}/"], capture_output=True, text=True, timeout=60)
    assert "4000 succeeded, 0 failed" in r.stdout and "status codes: 4000 2xx" in r.stdout, r.stdout
    r = subprocess.run([exe, "-c2", "-m20", "-n2000", f"http://127.0.0.1:{asgi_h2c.port}/stream"], capture_output=True, text=True, timeout=60)
    assert "2000 succeeded, 0 failed" in r.stdout, r.stdout


@pytest.fixture(scope="module", params=["wsgi", "asgi"])
def broken_body_h2c(request, tmp_path_factory):
    log = tmp_path_factory.mktemp("log") / "access.json"
    s = run_app(f"body_apps:{request.param}", "--interface", request.param, "--http2-cleartext", "--max-body", "64",
                "--access-log", str(log), "--access-log-format", "json")
    s.log_path = log
    yield s
    assert s.stop() == 0


def logged_statuses(srv, path: str, count: int) -> list[int]:
    """The statuses logged for `path`, once `count` of them are in the access log."""
    deadline = time.monotonic() + 10
    while True:
        text = srv.log_path.read_text() if srv.log_path.exists() else ""
        got = [e["status"] for e in map(json.loads, text.splitlines()) if e["target"] == path]
        if len(got) >= count or time.monotonic() > deadline:
            return got
        time.sleep(0.05)


@pytest.mark.parametrize("case", ["past-content-length", "short-of-content-length"])
def test_a_body_that_breaks_its_content_length_is_a_protocol_error_reset_counted_400(broken_body_h2c, case):
    """The same cases as HTTP/1.1's malformed bodies (issue 26): h2 resets the stream with
    PROTOCOL_ERROR; whatever the application makes of its cut body (raised, or caught and
    answered 200) is dropped, and the access log says 400. The connection serves on."""
    with H2Client(broken_body_h2c.port) as c:
        for path in (f"/raise-{case}", f"/catch-{case}"):
            sid = c.request(path, method="POST", headers=[("content-length", "8")], end=False)
            c.send(sid, b"x" * 4)
            c.send(sid, b"y" * (12 if case == "past-content-length" else 1), end=True)
            (s,) = c.wait(sid)
            assert s.reset == 1 and s.status == 0 and s.body == b"", s  # PROTOCOL_ERROR, no answer
        assert c.get("/ok").status == 200, "the connection serves on"
    assert logged_statuses(broken_body_h2c, f"/raise-{case}", 1) == [400]
    assert logged_statuses(broken_body_h2c, f"/catch-{case}", 1) == [400]


def test_a_streamed_body_past_max_body_is_413_over_h2(broken_body_h2c):
    with H2Client(broken_body_h2c.port) as c:
        sid = c.request("/big-h2", method="POST", end=False)
        c.send(sid, b"x" * 40)
        c.send(sid, b"x" * 40, end=True)
        (s,) = c.wait(sid)
        assert s.status == 413, s
    assert logged_statuses(broken_body_h2c, "/big-h2", 1) == [413]
