"""Property: any stream of valid requests, split anywhere into reads, gets exactly the answers
the same stream gets in one piece (hypothesis chooses the requests and the split points)."""

from __future__ import annotations

import re
import socket
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import Server, connect

# every test here runs on each backend (--io epoll, --io uring): see `backend` in tests/conftest.py
pytestmark = pytest.mark.usefixtures("backend")


TOKEN = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-", min_size=1, max_size=12)
VALUE = st.text(alphabet=" !#$%&'()*+,-./0123456789:;<=>?@ABCXYZ[]^_`abcxyz{|}~", max_size=30).map(str.strip)
PATHS = st.sampled_from(["/1b", "/", "/100.html", "/sub/", "/sub", "/nope", "/1b?q=1", "/%31b", "//1b"])


@st.composite
def request(draw) -> bytes:
    method = draw(st.sampled_from(["GET", "GET", "HEAD", "POST", "DELETE"]))
    minor = draw(st.sampled_from([1, 1, 1, 0]))
    lines = [f"{method} {draw(PATHS)} HTTP/1.{minor}"]
    if minor == 1:
        lines.append("Host: example")
    elif draw(st.booleans()):
        lines.append("Connection: keep-alive")
    for name in draw(st.lists(TOKEN, max_size=4)):
        if name.lower() not in ("host", "content-length", "transfer-encoding", "connection", "expect"):
            lines.append(f"X-{name}: {draw(VALUE)}")
    body = b""
    if method == "POST":
        data = draw(st.binary(max_size=40))
        if minor == 1 and draw(st.booleans()):
            lines.append("Transfer-Encoding: chunked")
            body = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in (data[:10], data[10:]) if c) + b"0\r\n\r\n"
        else:
            lines.append(f"Content-Length: {len(data)}")
            body = data
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def exchange(port: int, pieces: list[bytes]) -> bytes:
    with connect(port, timeout=5) as s:
        for piece in pieces:
            if piece:
                s.sendall(piece)
                time.sleep(0.0005)  # separate reads on the server's side
        s.shutdown(socket.SHUT_WR)  # the server answers what it has, then closes
        out = b""
        while True:
            data = s.recv(65536)
            if not data:
                return re.sub(rb"Date: [^\r]*", b"Date: -", out)
            out += data


@pytest.fixture(scope="module")
def server(tmp_path_factory, backend):
    root = tmp_path_factory.mktemp("www")
    (root / "1b").write_bytes(b"x")
    (root / "100.html").write_bytes(b"a" * 100)
    (root / "sub").mkdir()
    (root / "sub" / "index.html").write_text("sub\n")
    srv = Server([str(root)])
    yield srv
    srv.stop()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(reqs=st.lists(request(), min_size=1, max_size=5), cuts=st.lists(st.integers(min_value=0), max_size=4))
def test_split_stream_is_answered_like_the_whole(server, reqs, cuts):
    stream = b"".join(reqs)
    points = sorted({c % (len(stream) + 1) for c in cuts})
    pieces = [stream[a:b] for a, b in zip([0, *points], [*points, len(stream)])]
    whole = exchange(server.port, [stream])
    assert whole.startswith(b"HTTP/1.1 ")
    assert exchange(server.port, pieces) == whole
