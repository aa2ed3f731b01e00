"""Listening on a Unix socket (issue 25): nginx in front over the socket (static files, Flask,
FastAPI, a WebSocket), HTTP/2 over h2c on it, the socket's mode, a stale socket file replaced, a
live one refused, the file removed at exit and kept through a reload, and the client as the ASGI
spec has it for a Unix peer. On both backends."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import stat
import subprocess

import pytest
import websockets

from conftest import APPS, Server, free_port, read_to_end, vw_cmd
from nginx import PROXY, Nginx

pytestmark = pytest.mark.usefixtures("backend")


def over_unix(path: str, request: bytes) -> bytes:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.connect(path)
        s.sendall(request)
        return read_to_end(s)


def body_of(raw: bytes) -> bytes:
    return raw.partition(b"\r\n\r\n")[2]


def test_static_files_behind_nginx_over_a_unix_socket(docroot, tmp_path):
    sock = str(tmp_path / "vw.sock")
    srv = Server([str(docroot), "--uds", sock, "--uds-mode", "660"], workers=2)
    try:
        assert stat.S_IMODE(os.stat(sock).st_mode) == 0o660 and stat.S_ISSOCK(os.stat(sock).st_mode)
        front = Nginx(tmp_path, f"location / {{ proxy_pass http://unix:{sock}:; {PROXY.format(proto='http')} }}", free_port())
        with front:
            for _ in range(4):  # reaches both workers' accept
                out = subprocess.run(["curl", "-s", f"http://127.0.0.1:{front.port}/1b"], capture_output=True, timeout=10)
                assert out.stdout == b"x"
        assert body_of(over_unix(sock, b"GET /index.html HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")) == b"<h1>home</h1>\n"
    finally:
        assert srv.stop() == 0
    assert not os.path.exists(sock), "removed at exit"


def test_flask_fastapi_and_a_websocket_behind_nginx_over_a_unix_socket(tmp_path):
    for spec, path, want in (("flask_app:app", "/whoami", {"remote": "127.0.0.5", "scheme": "https"}),
                             ("fastapi_app:app", "/whoami", {"client": "127.0.0.5", "scheme": "https"})):
        sock = str(tmp_path / f"{spec.split(':')[0]}.sock")
        srv = Server([spec, "--uds", sock], command="run", cwd=APPS)
        try:
            with Nginx(tmp_path / spec, f"location / {{ proxy_pass http://unix:{sock}:; {PROXY.format(proto='https')} }}", free_port()) as front:
                c = socket.socket()
                c.bind(("127.0.0.5", 0))
                c.connect(("127.0.0.1", front.port))
                c.sendall(f"GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode())
                got = json.loads(body_of(read_to_end(c)))
                c.close()
                assert {k: got[k] for k in want} == want, got
        finally:
            assert srv.stop() == 0
    sock = str(tmp_path / "ws.sock")
    srv = Server(["ws_app:app", "--uds", sock], command="run", cwd=APPS)
    try:
        with Nginx(tmp_path / "ws", f"location / {{ proxy_pass http://unix:{sock}:; {PROXY.format(proto='http')} }}", free_port()) as front:
            async def main():
                async with websockets.connect(f"ws://127.0.0.1:{front.port}/echo") as ws:
                    for msg in ("over a unix socket", b"\x00\x01" * 40000):
                        await ws.send(msg)
                        assert await ws.recv() == msg
            asyncio.run(main())
    finally:
        assert srv.stop() == 0


def test_h2c_and_the_asgi_client_of_a_unix_peer(tmp_path):
    sock = str(tmp_path / "h2.sock")
    srv = Server(["fastapi_app:app", "--uds", sock, "--http2-cleartext"], command="run", cwd=APPS)
    try:
        out = subprocess.run(["curl", "-s", "--http2-prior-knowledge", "--unix-socket", sock, "-w", " %{http_version}",
                              "http://localhost/"], capture_output=True, text=True, timeout=10)
        assert out.stdout == '{"hello":"fastapi"} 2', out
    finally:
        assert srv.stop() == 0
    # A Unix peer has no address: the ASGI client is None (asgiref's spec) unless a proxy names it.
    srv = Server(["asgi_app:app", "--uds", sock], command="run", cwd=APPS)
    try:
        raw = over_unix(sock, b"GET /scope HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        scope = json.loads(body_of(raw))
        assert scope["client_host"] is None and scope["server"] == [sock, None], scope
    finally:
        assert srv.stop() == 0


def test_a_stale_socket_is_replaced_a_live_one_refused_and_a_reload_keeps_it(docroot, tmp_path):
    sock = str(tmp_path / "s.sock")
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(sock)
    stale.close()  # the file stays, nobody listens
    srv = Server([str(docroot), "--uds", sock])
    try:
        r = vw_cmd("serve", str(docroot), "--uds", sock)
        assert r.returncode == 2 and r.stderr.count("\n") == 1 and "a server is listening there" in r.stderr, r.stderr
        mark = len(srv.lines)
        srv.proc.send_signal(signal.SIGHUP)
        srv.wait_for(re.compile(r"^worker 0 pid"), start=mark + 1, timeout=20)
        assert os.path.exists(sock), "a reload keeps the socket"
        assert body_of(over_unix(sock, b"GET /1b HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")) == b"x"
    finally:
        assert srv.stop() == 0
    assert not os.path.exists(sock)
    (tmp_path / "file").write_text("not a socket")
    r = vw_cmd("serve", str(docroot), "--uds", str(tmp_path / "file"))
    assert r.returncode == 2 and "not a socket" in r.stderr, r.stderr
    r = vw_cmd("serve", str(docroot), "--bind", "unix:/a", "--bind", "127.0.0.1:0")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "one --bind" in r.stderr, r.stderr
