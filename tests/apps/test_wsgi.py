"""WSGI (PEP 3333) over real sockets."""

from __future__ import annotations

import json
import os

import pytest

from conftest import Reader, check_100_mib_upload, connect, first_then_whole, get, read_to_end, run_app


@pytest.fixture(scope="module")
def marker(tmp_path_factory):
    path = tmp_path_factory.mktemp("wsgi") / "closed"
    os.environ["VW_TEST_CLOSE_MARKER"] = str(path)
    return path


@pytest.fixture(scope="module")
def big_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("wsgi") / "big.bin"
    path.write_bytes(os.urandom(3 * 1024 * 1024 + 7))
    os.environ["VW_TEST_FILE"] = str(path)
    return path


@pytest.fixture(scope="module")
def wsgi(marker, big_file):
    srv = run_app("wsgi_app:app", "--max-body", str(200 * 1024 * 1024))
    yield srv
    srv.stop()


def test_environ(wsgi):
    r = get(wsgi.port, "/environ?a=1&b=%20", method="POST", body=b"hi",
            headers="Host: example:1\r\nX-Multi: 1\r\nX-Multi: 2\r\nCookie: a=1\r\nCookie: b=2\r\n"
                    "X_Under_Score: spoof\r\nContent-Type: text/plain\r\n")
    env = json.loads(r.body)
    assert env["REQUEST_METHOD"] == "POST" and env["PATH_INFO"] == "/environ"
    assert env["SCRIPT_NAME"] == "" and env["QUERY_STRING"] == "a=1&b=%20"
    assert env["SERVER_PROTOCOL"] == "HTTP/1.1" and env["REMOTE_ADDR"] == "127.0.0.1"
    assert env["SERVER_PORT"] == str(wsgi.port)
    assert env["CONTENT_TYPE"] == "text/plain" and env["CONTENT_LENGTH"] == "2" and env["body"] == "hi"
    assert env["HTTP_HOST"] == "example:1" and env["HTTP_X_MULTI"] == "1, 2" and env["HTTP_COOKIE"] == "a=1; b=2"
    assert env["HTTP_X_UNDER_SCORE"] is None, "header names with _ are dropped, never aliased"
    assert env["wsgi.version"] == [1, 0] and env["wsgi.url_scheme"] == "http" and env["errors_has_write"]
    assert env["wsgi.multithread"] is True and env["wsgi.run_once"] is False
    assert env["REQUEST_URI"] == "/environ?a=1&b=%20"
    assert json.loads(get(wsgi.port, "/environ/%C3%A9").body)["PATH_INFO"] == "/environ/é".encode().decode("latin-1")


def test_chunked_request_body_is_decoded(wsgi):
    with connect(wsgi.port) as s:
        s.sendall(b"POST /environ HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                  b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: 1\r\n\r\n")
        env = json.loads(Reader(s).response().body)
    # Streamed as it arrives: its length is not known when the application starts, so there is
    # no CONTENT_LENGTH; wsgi.input ends where the body does (wsgi.input_terminated).
    assert env["body"] == "hello world" and env["CONTENT_LENGTH"] is None


def test_expect_100_continue(wsgi):
    with connect(wsgi.port) as s:
        s.sendall(b"POST /environ HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n")
        rd = Reader(s)
        interim = rd.response()
        assert interim.status == 100
        s.sendall(b"data")
        assert json.loads(rd.response().body)["body"] == "data"


def test_100_mib_upload_arrives_byte_exact_without_filling_memory(wsgi):
    check_100_mib_upload(wsgi)


def test_body_limit_413(wsgi):
    with connect(wsgi.port) as s:
        s.sendall(b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % (300 * 1024 * 1024))
        rd = Reader(s)
        assert rd.response().status == 413
        assert rd.closed()


def test_write_callable_and_iterables(wsgi, marker):
    assert get(wsgi.port, "/write").body == b"written then returned"
    before = marker.read_text().count("closed") if marker.exists() else 0
    assert get(wsgi.port, "/generator").body == b"abc"
    # An iterable that fails after its first item: the item has gone out (streamed), so the
    # response can only be cut: no last chunk, and the connection closes.
    with connect(wsgi.port) as s:
        s.sendall(b"GET /fail-midway HTTP/1.1\r\nHost: t\r\n\r\n")
        raw = read_to_end(s)
    assert raw.startswith(b"HTTP/1.1 200 OK\r\n") and b"Transfer-Encoding: chunked\r\n" in raw, raw
    assert raw.endswith(b"\r\n\r\n1\r\na\r\n"), f"cut after the first chunk, without the last one: {raw!r}"
    assert marker.read_text().count("closed") == before + 2, "close() is called, even after an error"


def test_exc_info_and_errors(wsgi):
    r = get(wsgi.port, "/exc-info")
    assert (r.status, r.body) == (500, b"recovered")
    assert get(wsgi.port, "/twice").status == 500
    assert get(wsgi.port, "/boom").status == 500
    r = get(wsgi.port, "/inject")
    assert r.status == 500 and "pwned" not in r.raw_head.decode("latin-1")
    assert get(wsgi.port, "/write").status == 200, "the worker keeps serving"


def test_exc_info_after_write_cuts_the_response(wsgi):
    # write() sent the head and its bytes: start_response(exc_info) re-raises (PEP 3333), and
    # the response can only be cut (no last chunk, the connection closes).
    with connect(wsgi.port) as s:
        s.sendall(b"GET /write-then-error HTTP/1.1\r\nHost: t\r\n\r\n")
        raw = read_to_end(s)
    assert raw.startswith(b"HTTP/1.1 200 OK\r\n") and raw.endswith(b"8\r\npartial \r\n"), raw


def test_write_sends_at_once(wsgi):
    first, r = first_then_whole(wsgi.port, "/write-stream", b"first")
    assert r.body == b"first second"
    assert first < 0.3, f"write()'s bytes came after {first:.2f} s, with the rest"


def test_file_wrapper_is_sent_whole(wsgi, big_file):
    with connect(wsgi.port, timeout=20) as s:
        s.sendall(b"GET /file HTTP/1.1\r\nHost: t\r\n\r\nGET /write HTTP/1.1\r\nHost: t\r\n\r\n")
        rd = Reader(s)
        r = rd.response()
        assert rd.response().body == b"written then returned"
    assert r.body == big_file.read_bytes()


def test_head_keeps_the_length(wsgi):
    r = get(wsgi.port, "/head-length", method="HEAD")
    assert r.status == 200 and r.header("Content-Length") == "5" and r.body == b""


def test_pipelined_wsgi(wsgi):
    with connect(wsgi.port) as s:
        s.sendall(b"GET /write HTTP/1.1\r\nHost: t\r\n\r\n" * 50)
        rd = Reader(s)
        assert all(rd.response().body == b"written then returned" for _ in range(50))
