"""Real frameworks, unmodified: Flask and Django through vw's WSGI bridge, with static mounts."""

from __future__ import annotations

import json
import time

import pytest

from conftest import connect, get, post_form, run_app
from test_threads import in_threads


@pytest.fixture(scope="module")
def static_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("assets")
    (d / "app.css").write_text("body{}\n")
    return d


def test_flask(static_dir):
    srv = run_app("flask_app:app", "--static", f"/assets={static_dir}")
    try:
        assert any("(wsgi)" in line for line in srv.lines)
        r = get(srv.port, "/")
        assert (r.status, r.body) == (200, b"Hello from Flask")
        assert json.loads(get(srv.port, "/items/7?q=x").body) == {"id": 7, "q": "x"}
        assert get(srv.port, "/items/nope").status == 404
        body = b'{"k": [1, 2]}'
        r = get(srv.port, "/json", method="POST", body=body, headers="Host: t\r\nContent-Type: application/json\r\n")
        assert json.loads(r.body) == {"got": {"k": [1, 2]}}
        r = post_form(srv.port, "/form", "vw", "a.bin", b"\x00" * 5000)
        assert json.loads(r.body) == {"name": "vw", "file": "a.bin", "size": 5000}
        r = get(srv.port, "/assets/app.css")
        assert (r.status, r.body) == (200, b"body{}\n") and r.header("ETag"), "static mount served by the core"
        assert get(srv.port, "/assets").header("Location") == "/assets/"
    finally:
        assert srv.stop() == 0


def test_django():
    srv = run_app("django_app:application")
    try:
        r = get(srv.port, "/")
        assert (r.status, r.body) == (200, b"Hello from Django")
        r = get(srv.port, "/echo/vw/?q=1", method="PUT", body=b"data", headers="Host: example.org\r\n")
        assert json.loads(r.body) == {"name": "vw", "method": "PUT", "q": "1", "body": "data", "host": "example.org"}
        r = get(srv.port, "/echo/vw")  # CommonMiddleware adds the slash
        assert r.status == 301 and r.header("Location") == "/echo/vw/"
        assert get(srv.port, "/missing/").status == 404
    finally:
        assert srv.stop() == 0


def first_piece_after(port: int, path: str, marker: bytes) -> tuple[float, bytes]:
    """Seconds until `marker` arrives for GET path, and the whole (raw) response."""
    with connect(port) as s:
        t0 = time.monotonic()
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".encode())
        data, first = b"", None
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return first, data
            data += chunk
            if first is None and marker in data:
                first = time.monotonic() - t0


def test_flask_streams_and_waits():
    srv = run_app("flask_app:app")
    try:
        first, raw = first_piece_after(srv.port, "/events?who=vw", b"data: 0")
        assert first < 0.2, f"Flask's first event came after {first:.2f} s (the next one is 0.3 s later)"
        assert b"Transfer-Encoding: chunked" in raw and raw.endswith(b"0\r\n\r\n")
        assert raw.count(b"data: ") == 3 and b"data: 2 vw" in raw
        t0 = time.monotonic()
        results = in_threads(8, lambda: get(srv.port, "/wait"))
        assert [r.body for r in results] == [b"waited"] * 8
        assert time.monotonic() - t0 < 1.2, "eight views that wait 0.3 s ran together"
    finally:
        assert srv.stop() == 0


def test_django_streaming_response():
    srv = run_app("django_app:application")
    try:
        first, raw = first_piece_after(srv.port, "/stream/", b"row 0")
        assert first < 0.2, f"Django's first row came after {first:.2f} s"
        assert raw.endswith(b"0\r\n\r\n") and b"row 2" in raw
    finally:
        assert srv.stop() == 0
