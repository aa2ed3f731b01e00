"""Static files checked by real clients: curl (-z, -r, --compressed), REDbot (no BAD finding on an
HTML page, a CSS file and a large binary) and headless Chromium (the demo page with its CSS and
image, then a reload answered with 304s). `make deps` installs the three."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess

import pytest

from conftest import Server
from vw.config import default_docroot


# every test here runs on each backend (--io epoll, --io uring): see `backend` in tests/conftest.py
pytestmark = pytest.mark.usefixtures("backend")


def curl(*args: str) -> subprocess.CompletedProcess:
    assert shutil.which("curl"), "curl is not installed (make deps installs it)"
    return subprocess.run(["curl", "-s", *args], capture_output=True, timeout=30)


@pytest.fixture
def site(docroot):
    (docroot / "app.css").write_text("body { color: #333; margin: 0 auto; }\n" * 50)
    (docroot / "app.css.gz").write_bytes(gzip.compress((docroot / "app.css").read_bytes(), mtime=0))
    (docroot / "big.bin").write_bytes(os.urandom(3 << 20))
    return docroot


@pytest.fixture
def srv(site):
    s = Server([str(site), "--cache-control", "/=max-age=60"])
    yield s
    s.stop()


def test_curl_time_condition(srv, site):
    url = f"http://127.0.0.1:{srv.port}/100.html"
    r = curl("-o", "/dev/null", "-w", "%{http_code}", "-z", str(site / "100.html"), url)
    assert r.stdout == b"304"
    r = curl("-o", "/dev/null", "-w", "%{http_code}", "-z", "Jan 1 2000", url)
    assert r.stdout == b"200"


def test_curl_ranges(srv, site):
    r = curl("-r", "0-4", "-w", "\n%{http_code}", f"http://127.0.0.1:{srv.port}/big.bin")
    body, code = r.stdout.rsplit(b"\n", 1)
    assert code == b"206" and body == (site / "big.bin").read_bytes()[:5]
    r = curl("-r", "-100", f"http://127.0.0.1:{srv.port}/big.bin")
    assert r.stdout == (site / "big.bin").read_bytes()[-100:]


def test_curl_compressed(srv, site):
    r = curl("--compressed", "-D", "-", f"http://127.0.0.1:{srv.port}/app.css")
    head, body = r.stdout.split(b"\r\n\r\n", 1)
    assert b"content-encoding: gzip" in head.lower() and b"vary: accept-encoding" in head.lower()
    assert body == (site / "app.css").read_bytes()


def redbot_findings(url: str) -> list[tuple[int, str, str]]:
    exe = shutil.which("redbot")
    assert exe, "redbot is not installed (pip install -e '.[test]' installs it)"
    out = subprocess.run([exe, "-o", "har", url], capture_output=True, text=True, timeout=120, check=True).stdout
    entries = json.loads(out)["log"]["entries"]
    assert entries, f"REDbot reached nothing at {url}"
    return [(e["response"]["status"], m["level"], f'{m["note_id"]}: {m["summary"]}')
            for e in entries for m in e.get("_red_messages", [])]


@pytest.mark.parametrize("path", ["/index.html", "/app.css", "/big.bin"])
def test_redbot_finds_nothing_bad(srv, path):
    found = redbot_findings(f"http://127.0.0.1:{srv.port}{path}")
    assert found and found[0][0] == 200
    assert [f for f in found if f[1] == "BAD"] == [], found
    notes = {f[2].split(":")[0] for f in found}
    # what REDbot checked and found right
    assert {"INM_304", "IMS_304"} <= notes, notes
    if path == "/big.bin":
        assert "RANGE_CORRECT" in notes, notes
    if path == "/app.css":
        assert "CONNEG_GZIP_GOOD" in notes, notes


def test_chromium_loads_the_demo_and_revalidates_it_on_reload():
    from browser import load_and_reload

    s = Server([str(default_docroot()), "--cache-control", "/=no-cache"])
    try:
        first, again = load_and_reload(f"http://127.0.0.1:{s.port}/")
    finally:
        s.stop()
    by_name = lambda responses: {r["url"].rsplit("/", 1)[1] or "/": r for r in responses}  # noqa: E731
    load = by_name(first)
    for name in ("/", "style.css", "vw.png"):
        assert load[name]["wire_status"] == 200, first
    reload = by_name(again)
    for name in ("/", "style.css", "vw.png"):
        assert reload[name]["wire_status"] == 304, again
        assert "if-none-match" in reload[name]["conditional"], again
