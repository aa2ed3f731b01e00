"""The Rust core end to end over real sockets: framing, keep-alive, pipelining, errors."""

from __future__ import annotations

import pytest
import re
import socket
import time

from conftest import Reader, connect, get

# every test here runs on each backend (--io epoll, --io uring): see `backend` in tests/conftest.py
pytestmark = pytest.mark.usefixtures("backend")


DATE_RE = re.compile(r"^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} \d\d:\d\d:\d\d GMT$")


def test_get_headers(server):
    r = get(server.port, "/1b")
    assert r.status == 200
    assert r.body == b"x"
    assert r.header("Server") == "vw"
    assert DATE_RE.match(r.header("Date"))
    assert r.header("Content-Length") == "1"
    assert r.header("Content-Type") == "application/octet-stream"
    assert DATE_RE.match(r.header("Last-Modified"))
    assert re.match(r'^"[0-9a-f]+-[0-9a-f]+"$', r.header("ETag"))
    assert r.header("Connection") is None


def test_keep_alive_many_requests_one_connection(server):
    with connect(server.port) as s:
        rd = Reader(s)
        for path, body in [("/1b", b"x"), ("/style.css", b"body{}\n"), ("/1b", b"x")] * 5:
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
            r = rd.response()
            assert (r.status, r.body) == (200, body)


def test_100_pipelined_requests_in_one_write(server):
    paths = ["/1b", "/100.html", "/nope", "/style.css"]
    reqs = b"".join(f"GET {paths[i % 4]} HTTP/1.1\r\nHost: t\r\n\r\n".encode() for i in range(100))
    with connect(server.port) as s:
        s.sendall(reqs)
        rd = Reader(s)
        got = [rd.response() for _ in range(100)]
    for i, r in enumerate(got):
        want = {0: (200, 1), 1: (200, 100), 2: (404, None), 3: (200, 7)}[i % 4]
        assert r.status == want[0], i
        if want[1] is not None:
            assert len(r.body) == want[1], i


def test_request_sent_byte_by_byte(server):
    req = b"GET /100.html HTTP/1.1\r\nHost: t\r\nUser-Agent: slow\r\n\r\n"
    with connect(server.port) as s:
        for i in range(len(req)):
            s.send(req[i:i + 1])
            time.sleep(0.002)
        r = Reader(s).response()
    assert r.status == 200 and len(r.body) == 100


def test_head_has_headers_and_no_body(server):
    g = get(server.port, "/100.html")
    with connect(server.port) as s:
        s.sendall(b"HEAD /100.html HTTP/1.1\r\nHost: t\r\n\r\nGET /1b HTTP/1.1\r\nHost: t\r\n\r\n")
        rd = Reader(s)
        h = rd.response(head_request=True)
        after = rd.response()  # proves no body bytes followed the HEAD response
    assert h.status == 200 and h.body == b""
    assert h.header("Content-Length") == "100"
    assert h.header("ETag") == g.header("ETag")
    assert after.body == b"x"


def test_404_and_405(server):
    assert get(server.port, "/missing").status == 404
    r = get(server.port, "/1b", method="DELETE")
    assert r.status == 405
    assert r.header("Allow") == "GET, HEAD"


def test_405_reads_past_body_so_it_is_never_parsed_as_a_request(server):
    inner = b"GET /smuggled HTTP/1.1\r\nHost: t\r\n\r\n"
    req = b"POST /1b HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % len(inner) + inner
    req += b"POST /1b HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
    req += b"GET /1b HTTP/1.1\r\nHost: t\r\n\r\n"
    with connect(server.port) as s:
        s.sendall(req)
        rd = Reader(s)
        assert [rd.response().status for _ in range(3)] == [405, 405, 200]
        s.sendall(b"GET /1b HTTP/1.1\r\nHost: t\r\n\r\n")
        assert rd.response().status == 200


def _rejected(port: int, raw: bytes, status: int = 400) -> None:
    with connect(port) as s:
        s.sendall(raw)
        rd = Reader(s)
        r = rd.response()
        assert r.status == status, raw
        assert r.header("Connection") == "close"
        assert rd.closed(), f"connection left open after {raw!r}"


def test_smuggling_and_malformed_requests_get_400_and_close(server):
    tail = b"GET /1b HTTP/1.1\r\nHost: t\r\n\r\n"
    cases = [
        b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
        b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: +1\r\n\r\na",
        b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 0x1\r\n\r\na",
        b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: -1\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 184467440737095516160\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: xchunked\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: \r\n\r\n",
        b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"GET / HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost : t\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: t\r\nX: a\r\n folded\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: t\rX: y\r\n\r\n",
        b"GET / HTTP/1.1\nHost: t\n\n",
        b"GET / HTTP/1.1\r\nHost: t\r\nX: a\x00b\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: t\r\nX: a\x1bb\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: t\r\nBad[Name]: v\r\n\r\n",
        b"GET /\x01 HTTP/1.1\r\nHost: t\r\n\r\n",
    ]
    for raw in cases:
        _rejected(server.port, raw + tail)
    # the one framing rejection that is not a 400 (the README): a coding before chunked, which
    # vw cannot decode, in one field or in two
    _rejected(server.port, b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip, chunked\r\n\r\n" + tail, 501)
    _rejected(server.port, b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n"
              b"Transfer-Encoding: chunked\r\n\r\n" + tail, 501)
    _rejected(server.port, b"GET / HTTP/2.0\r\nHost: t\r\n\r\n", 505)
    _rejected(server.port, b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: t\r\n\r\n", 414)
    _rejected(server.port, b"GET / HTTP/1.1\r\nHost: t\r\n" + b"X-A: b\r\n" * 101 + b"\r\n", 431)


def test_request_targets_outside_rfc_3986_get_400_and_close(server):
    """RFC 9112 §3.2 (issue 26): a fragment, `*` for anything but OPTIONS, userinfo, and bytes
    that RFC 3986 has no place for and every client percent-encodes."""
    tail = b"GET /1b HTTP/1.1\r\nHost: t\r\n\r\n"
    for target in [b"/1b#frag", b"/#", b"*", b"http://user@t/1b", b"http://u:p@t/1b", b'/"1b"', b"/<1b>", b"/1b>",
                   b"/caf\xc3\xa9", b"/\x80", b"/a\x7fb", b"/a\x1fb"]:
        for method in (b"GET", b"HEAD", b"POST"):
            _rejected(server.port, method + b" " + target + b" HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n" + tail)
    # What browsers leave unencoded (the WHATWG URL Standard's percent-encode sets) is a target:
    # here a file that is not there (404), or the file with a query.
    for target in ["/a[1]", "/a|b", "/a^b", "/a\\b", "/a{b}", "/a`b"]:
        assert get(server.port, target).status == 404, target
    assert get(server.port, "/1b?q={x}|[y]^`").status == 200


def test_bad_chunk_closes_without_parsing_what_follows(server):
    with connect(server.port) as s:
        s.sendall(b"POST /1b HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                  b"5\r\nhelloXX0\r\n\r\nGET /1b HTTP/1.1\r\nHost: t\r\n\r\n")
        rd = Reader(s)
        assert rd.response().status == 405
        assert rd.closed()


def test_http10(server):
    with connect(server.port) as s:
        s.sendall(b"GET /1b HTTP/1.0\r\n\r\n")
        rd = Reader(s)
        r = rd.response()
        assert r.status == 200 and r.header("Connection") == "close"
        assert rd.closed()
    with connect(server.port) as s:
        s.sendall(b"GET /1b HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        rd = Reader(s)
        assert rd.response().header("Connection") == "keep-alive"
        s.sendall(b"GET /1b HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        assert rd.response().body == b"x"


def test_connection_close_and_half_close(server):
    with connect(server.port) as s:
        s.sendall(b"GET /1b HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\nGET /1b HTTP/1.1\r\nHost: t\r\n\r\n")
        rd = Reader(s)
        assert rd.response().header("Connection") == "close"
        assert rd.closed(), "nothing after a close response"
    # A client that sends its requests and shuts its side still gets every answer.
    with connect(server.port) as s:
        s.sendall(b"GET /1b HTTP/1.1\r\nHost: t\r\n\r\n" * 3)
        s.shutdown(socket.SHUT_WR)
        rd = Reader(s)
        assert [rd.response().body for _ in range(3)] == [b"x"] * 3
        assert rd.closed()


def test_absolute_form_and_query(server):
    r = get(server.port, "http://example.com/1b?cache=bust#frag".replace("#frag", ""))
    assert (r.status, r.body) == (200, b"x")
    assert get(server.port, "/1b?a=1&b=2").body == b"x"
    assert get(server.port, "/sub/a%20b.txt").body == b"space\n"


def test_closed_connections_do_not_take_new_ones_with_them(server):
    # Connection-per-request clients leave lingering closes behind; a later connection that gets
    # the same descriptor number must not be closed by their timers (they expire after ~2 s).
    for _ in range(30):
        with connect(server.port) as s:
            s.sendall(b"GET /1b HTTP/1.0\r\n\r\n")
            rd = Reader(s)
            assert rd.response().body == b"x"
            assert rd.closed()
    keep = [connect(server.port) for _ in range(5)]
    try:
        for s in keep:
            s.sendall(b"GET /1b HTTP/1.1\r\nHost: t\r\n\r\n")
        readers = [Reader(s) for s in keep]
        assert all(r.response().body == b"x" for r in readers)
        time.sleep(3.2)
        for s, r in zip(keep, readers):
            s.sendall(b"GET /1b HTTP/1.1\r\nHost: t\r\n\r\n")
            assert r.response().body == b"x"
    finally:
        for s in keep:
            s.close()
