"""A request body the client breaks is the client's error (issue 26): 400 for its framing, 413
past --max-body, 408 at --body-timeout, whatever the application did with the error it saw
(raised: its 500 is dropped; caught and answered 200: dropped too), counted and logged as that
4xx, and the connection closes. For WSGI and ASGI (which take bodies as they arrive) and vw.App
(which gets its body whole), on both backends."""

from __future__ import annotations

import json
import re
import socket
import time

import pytest

from conftest import read_to_end, run_app

HEAD = b"POST /%s HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
GOOD = b"5\r\nhello\r\n"
# Each malformed form, sent after a good chunk the application has read.
FORMS = {
    "bad-size": b"zz\r\nab\r\n",
    "size-leading-space": b" 3\r\nabc\r\n",
    "size-trailing-garbage": b"3x\r\nabc\r\n",
    "bad-extension": b"3;a=\"x\r\nabc\r\n",
    "extension-bare-cr": b"3;a\rb\r\nabc\r\n",
    "no-crlf-after-data": b"3\r\nabcX\r\n",
    "bare-lf-after-size": b"3\nabc\r\n",
    "bare-cr-after-size": b"3\rabc\r\n",
    "bare-lf-after-data": b"3\r\nabc\n0\r\n\r\n",
    "bad-terminator": b"0\r\nX",
    "bad-trailer": b"0\r\nno colon here\r\n\r\n",
    "size-overflow": b"fffffffffffffffffff\r\n",
}


@pytest.fixture(scope="module", params=["wsgi", "asgi", "native"])
def srv(request, backend, tmp_path_factory):
    log = tmp_path_factory.mktemp("log") / "access.json"
    s = run_app(f"body_apps:{request.param}", "--interface", request.param, "--max-body", "64",
                "--body-timeout", "1", "--access-log", str(log), "--access-log-format", "json")
    s.log_path, s.kind = log, request.param
    yield s
    assert s.stop() == 0


def exchange(port: int, data: bytes, then: bytes = b"") -> bytes:
    """Send `data`, maybe `then` once the server has read the first part, and read until the
    server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(data)
        if then:
            s.sendall(then)
        return read_to_end(s, timeout=10)


def status_of(reply: bytes) -> int:
    m = re.match(rb"HTTP/1\.1 (\d{3}) ", reply)
    assert m, reply[:200]
    return int(m.group(1))


def logged_statuses(srv, count: int) -> dict[str, list[int]]:
    """The statuses logged for each path, once `count` broken bodies are in the access log."""
    deadline = time.monotonic() + 10
    while True:
        lines = [json.loads(l) for l in srv.log_path.read_text().splitlines()] if srv.log_path.exists() else []
        got: dict[str, list[int]] = {}
        for e in lines:
            got.setdefault(e["target"], []).append(e["status"])
        if sum(len(v) for k, v in got.items() if k.startswith(("/raise", "/catch", "/big", "/slow"))) >= count \
                or time.monotonic() > deadline:
            return got
        time.sleep(0.05)


def test_every_broken_body_is_the_client_s_4xx_and_logged_so(srv):
    # A body that stalls (--body-timeout 1): opened first, answered while the others run.
    stalled = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
    stalled.sendall(HEAD % b"slow" + GOOD)
    start = time.monotonic()
    for form in sorted(FORMS):
        for path in (f"raise-{form}", f"catch-{form}"):
            reply = exchange(srv.port, HEAD % path.encode() + GOOD, FORMS[form] + b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            assert status_of(reply) == 400, (form, reply[:300])
            assert reply.count(b"HTTP/1.1") == 1, f"{form}: nothing after the 400: the connection closed"
            assert b"caught" not in reply, form
    # Past --max-body (64): 413.
    reply = exchange(srv.port, HEAD % b"big" + b"40\r\n" + b"x" * 64 + b"\r\n", b"1\r\nx\r\n0\r\n\r\n")
    assert status_of(reply) == 413, reply[:300]
    # A good body still reaches the application, and the connection goes on.
    reply = exchange(srv.port, HEAD % b"ok" + GOOD + b"0\r\n\r\n", b"GET /x HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    assert status_of(reply) == 200 and reply.split(b"\r\n\r\n", 1)[1].startswith(b"5"), reply[:300]
    reply = read_to_end(stalled, timeout=10)
    assert status_of(reply) == 408, reply[:300]
    assert time.monotonic() - start >= 0.9, "not before --body-timeout"
    stalled.close()
    # Each counted as the client's error in the access log, once.
    logged = logged_statuses(srv, 2 * len(FORMS) + 2)
    for form in FORMS:
        assert logged.get(f"/raise-{form}") == [400] and logged.get(f"/catch-{form}") == [400], (form, logged)
    assert (logged.get("/big"), logged.get("/slow")) == ([413], [408]), logged
