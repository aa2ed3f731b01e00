"""Static files through the core: types, directories, traversal, large files, freshness."""

from __future__ import annotations

import hashlib
import os
import time

from conftest import Reader, connect, get


def test_content_types(server):
    assert get(server.port, "/100.html").header("Content-Type") == "text/html; charset=utf-8"
    assert get(server.port, "/style.css").header("Content-Type") == "text/css; charset=utf-8"
    assert get(server.port, "/sub/a%20b.txt").header("Content-Type") == "text/plain; charset=utf-8"


def test_directories(server):
    r = get(server.port, "/")
    assert (r.status, r.body) == (200, b"<h1>home</h1>\n")
    assert get(server.port, "/sub/").body == b"sub index\n"
    r = get(server.port, "/sub")
    assert r.status == 301 and r.header("Location") == "/sub/"


def test_traversal_never_leaves_docroot(server, docroot):
    os.symlink(docroot.parent / "outside.txt", docroot / "escape")
    os.symlink("1b", docroot / "inside")
    attempts = [
        "/../outside.txt", "/%2e%2e/outside.txt", "/%2E%2E%2Foutside.txt", "/sub/../../outside.txt",
        "/sub/%2e%2e/%2e%2e/outside.txt", "/..%2foutside.txt", "/.%2e/outside.txt", "/escape",
        "/.secret", "/sub/../.secret", "/%2esecret", "/1b%00", "//../outside.txt",
    ]
    for path in attempts:
        with connect(server.port) as s:
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
            r = Reader(s).response()
        assert r.status in (400, 404), (path, r.status)
        assert b"SECRET" not in r.body and b"hidden" not in r.body, path
    assert get(server.port, "/inside").body == b"x"  # a symlink inside the docroot is followed


def test_multi_mib_file_intact(server, docroot):
    data = os.urandom(5 * 1024 * 1024 + 123)
    (docroot / "big.bin").write_bytes(data)
    with connect(server.port, timeout=20) as s:
        s.sendall(b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\nGET /1b HTTP/1.1\r\nHost: t\r\n\r\n")
        rd = Reader(s)
        r = rd.response()
        after = rd.response()
    assert r.header("Content-Length") == str(len(data))
    assert hashlib.sha256(r.body).hexdigest() == hashlib.sha256(data).hexdigest()
    assert after.body == b"x", "the pipelined request after a sendfile response is answered"


def test_changed_and_new_files_are_served_fresh(server, docroot):
    assert get(server.port, "/1b").body == b"x"
    (docroot / "1b").write_bytes(b"y")
    (docroot / "new.txt").write_text("new\n")
    assert get(server.port, "/new.txt").body == b"new\n"  # never cached: found at once
    deadline = time.monotonic() + 3
    while get(server.port, "/1b").body != b"y":  # cached entries are re-checked once a second
        assert time.monotonic() < deadline, "changed file not picked up"
        time.sleep(0.1)
    (docroot / "new.txt").unlink()
    deadline = time.monotonic() + 3
    while get(server.port, "/new.txt").status != 404:
        assert time.monotonic() < deadline, "deleted file still served"
        time.sleep(0.1)
