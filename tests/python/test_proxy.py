"""Behind a proxy (issue 25): from a trusted peer, X-Forwarded-For, X-Forwarded-Proto and RFC 7239
Forwarded say who the client is and which scheme it used, for Django, Flask, FastAPI, vw.App and
the access log; from any other peer they change nothing and reach the application untouched.
nginx runs in front for real; clients connect from other loopback addresses (127.0.0.5), so the
address the application sees is the client's and not the proxy's."""

from __future__ import annotations

import json
import socket
import time

import pytest

from conftest import APPS, Server, free_port, read_to_end
from nginx import PROXY, Nginx


def fetch(port: int, path: str, src: str = "127.0.0.1", headers: str = "", host: str = "localhost") -> tuple[int, dict]:
    s = socket.socket()
    s.bind((src, 0))
    s.connect(("127.0.0.1", port))
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n{headers}Connection: close\r\n\r\n".encode())
    raw = read_to_end(s)
    s.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    status = int(head.split()[1])
    if b"chunked" in head.lower():
        out, rest = b"", body
        while True:
            size, _, rest = rest.partition(b"\r\n")
            n = int(size, 16)
            if n == 0:
                break
            out, rest = out + rest[:n], rest[n + 2:]
        body = out
    return status, json.loads(body) if body.startswith((b"{", b"[")) else {"raw": body.decode()}


@pytest.fixture
def proxied(tmp_path):
    """vw running SPEC (and ARGS) behind nginx, which says the client came over https."""
    made = []

    def start(spec: str, *args: str, proto: str = "https"):
        log = tmp_path / f"access-{len(made)}.json"
        srv = Server([spec, "--access-log", str(log), "--access-log-format", "json", *args], command="run", cwd=APPS)
        front = Nginx(tmp_path / f"n{len(made)}", f"location / {{ proxy_pass http://127.0.0.1:{srv.port}; {PROXY.format(proto=proto)} }}", free_port())
        srv.log_path = log
        made.append((srv, front))
        return srv, front

    yield start
    for srv, front in made:
        front.stop()
        assert srv.stop() == 0


def logged_remotes(srv, n: int) -> list[str]:
    deadline = time.monotonic() + 10
    while True:
        lines = srv.log_path.read_text().splitlines() if srv.log_path.exists() else []
        if len(lines) >= n or time.monotonic() > deadline:
            return [json.loads(l)["remote"] for l in lines]
        time.sleep(0.05)


def test_django_behind_nginx_is_secure_and_builds_https_urls(proxied):
    srv, front = proxied("django_app:application")
    status, got = fetch(front.port, "/whoami/", src="127.0.0.5")
    assert status == 200, got
    assert got["secure"] is True and got["absolute"] == "https://localhost/x/", got
    assert got["remote"] == "127.0.0.5" and got["xff"] == "127.0.0.5", got
    assert logged_remotes(srv, 1) == ["127.0.0.5"], "the access log names the client, not the proxy"


def test_flask_remote_addr_and_external_urls(proxied):
    srv, front = proxied("flask_app:app")
    status, got = fetch(front.port, "/whoami", src="127.0.0.5")
    assert (status, got) == (200, {"remote": "127.0.0.5", "external": "https://localhost/", "scheme": "https"})


def test_fastapi_and_vw_app_clients(proxied):
    _, front = proxied("fastapi_app:app")
    status, got = fetch(front.port, "/whoami", src="127.0.0.5")
    assert (status, got["client"], got["scheme"]) == (200, "127.0.0.5", "https"), got
    assert got["url"] == "https://localhost/"
    _, front = proxied("native_app:app", proto="http")
    status, got = fetch(front.port, "/whoami", src="127.0.0.5")
    assert (status, got) == (200, {"client": ["127.0.0.5", 0], "scheme": "http"})


def test_a_forged_header_from_an_untrusted_peer_changes_nothing():
    srv = Server(["django_app:application"], command="run", cwd=APPS)
    try:
        forged = "X-Forwarded-For: 6.6.6.6\r\nX-Forwarded-Proto: https\r\nForwarded: for=6.6.6.7;proto=https\r\n"
        status, got = fetch(srv.port, "/whoami/", src="127.0.0.9", headers=forged)  # not in 127.0.0.1,::1
        assert status == 200 and got["secure"] is False and got["remote"] == "127.0.0.9", got
        assert got["xff"] == "6.6.6.6", "the field reaches the application untouched"
        # The same from a trusted peer is believed (Forwarded first)...
        status, got = fetch(srv.port, "/whoami/", src="127.0.0.1", headers=forged)
        assert got["secure"] is True and got["remote"] == "6.6.6.7", got
        # ...and a malformed one changes nothing and fails nothing.
        status, got = fetch(srv.port, "/whoami/", headers="X-Forwarded-For: 6.6.6.6, banana\r\nX-Forwarded-Proto: gopher\r\n")
        assert status == 200 and got["secure"] is False and got["remote"] == "127.0.0.1", got
    finally:
        assert srv.stop() == 0


def test_forwarded_allow_ips_and_no_proxy_headers(proxied, monkeypatch):
    _, front = proxied("flask_app:app", "--no-proxy-headers")
    assert fetch(front.port, "/whoami", src="127.0.0.5")[1]["remote"] == "127.0.0.1", "off: the peer, nginx"
    _, front = proxied("flask_app:app", "--forwarded-allow-ips", "10.0.0.0/8")
    assert fetch(front.port, "/whoami", src="127.0.0.5")[1]["scheme"] == "http", "nginx is not in the list"
    monkeypatch.setenv("FORWARDED_ALLOW_IPS", "127.0.0.0/8")
    _, front = proxied("flask_app:app")
    assert fetch(front.port, "/whoami", src="127.0.0.5")[1]["remote"] == "127.0.0.5", "FORWARDED_ALLOW_IPS"
