"""Real frameworks, unmodified: Flask and Django through vw's WSGI bridge, with static mounts."""

from __future__ import annotations

import json

import pytest

from conftest import get, post_form, run_app


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
