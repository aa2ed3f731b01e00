"""HTTPS/1.1: rustls over vw's own loop. Static files (ranges, conditionals, large files read
with pread), the three app interfaces, SNI, session resumption across workers, client
certificates, the plain-HTTP-on-TLS 400, reload of certificates, and clear errors at start."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import ssl
import subprocess
import time

import pytest

from conftest import Reader, Server, WORKER_RE, check_100_mib_upload, connect, load_through_reload, read_to_end, run_app, vw_cmd
from tlsutil import certs, tls_connect  # noqa: F401 (a fixture)

# TLS over both backends (the ciphertext goes through the ring's transport with --io uring).
pytestmark = pytest.mark.usefixtures("backend")


@pytest.fixture(scope="module")
def www(tmp_path_factory):
    root = tmp_path_factory.mktemp("www")
    (root / "index.html").write_text("<h1>home</h1>\n")
    (root / "1b").write_bytes(b"x")
    (root / "big.bin").write_bytes(os.urandom(3 << 20) * 2)  # past --inline-max: read with pread over TLS
    return root


@pytest.fixture(scope="module")
def srv(certs, www):
    s = Server([str(www), *certs.args("site", "other", "wild")], workers=2)
    yield s
    assert s.stop() == 0


def request(sock, path: str, headers: str = "Host: localhost\r\n", method: str = "GET"):
    sock.sendall(f"{method} {path} HTTP/1.1\r\n{headers}\r\n".encode())
    return Reader(sock).response(head_request=method == "HEAD")


def test_start_line_says_https_and_how_records_are_encrypted(srv):
    assert any(re.search(r"on https://127\.0\.0\.1:\d+ ", line) for line in srv.lines), srv.lines
    listed = open("/proc/sys/net/ipv4/tcp_available_ulp").read().split()
    tls_line = next(line for line in srv.lines if line.startswith("vw TLS"))
    assert "3 certificates" in tls_line, tls_line
    # kTLS is detected, never switched on untested: this machine's kernel decides the wording
    assert ("this kernel has no kTLS" in tls_line) == ("tls" not in listed), (tls_line, listed)
    assert "records encrypted in user space" in tls_line


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2])
def test_static_over_tls_13_and_12_keep_alive(srv, certs, version):
    with tls_connect(srv.port, certs.context(max_version=version)) as s:
        assert s.version() == {ssl.TLSVersion.TLSv1_3: "TLSv1.3", ssl.TLSVersion.TLSv1_2: "TLSv1.2"}[version]
        for _ in range(3):  # keep-alive: several requests on one connection
            r = request(s, "/")
            assert r.status == 200 and r.body == b"<h1>home</h1>\n"
        r = request(s, "/index.html", "Host: localhost\r\nRange: bytes=1-2\r\n")
        assert r.status == 206 and r.body == b"h1"
        etag = request(s, "/index.html").header("ETag")
        assert request(s, "/index.html", f"Host: localhost\r\nIf-None-Match: {etag}\r\n").status == 304


def test_pipelined_requests_over_tls(srv, certs):
    with tls_connect(srv.port, certs.context()) as s:
        s.sendall(b"GET /1b HTTP/1.1\r\nHost: localhost\r\n\r\n" * 50)
        rd = Reader(s)
        assert all(rd.response().body == b"x" for _ in range(50))


def test_large_file_byte_exact_and_ranged(srv, certs, www):
    want = (www / "big.bin").read_bytes()
    with tls_connect(srv.port, certs.context(), timeout=30) as s:
        r = request(s, "/big.bin")
        assert r.status == 200 and len(r.body) == len(want) and r.body == want
        r = request(s, "/big.bin", f"Host: localhost\r\nRange: bytes={len(want) - 70000}-\r\n")
        assert r.status == 206 and r.body == want[-70000:]


def test_curl_http11_tls12_range_and_time_condition(srv, certs, www):
    curl = shutil.which("curl")
    assert curl, "curl is needed (make test installs it)"
    base = [curl, "-s", "--cacert", str(certs.folder / "ca.pem"), "--http1.1"]
    url = f"https://localhost:{srv.port}/index.html"
    out = subprocess.run([*base, "--tlsv1.2", "--tls-max", "1.2", "-r", "0-3", "-w", "|%{http_code}|%{ssl_verify_result}", url],
                         capture_output=True, text=True, timeout=10, env={**os.environ, "NO_PROXY": "*"})
    assert out.stdout == "<h1>|206|0", out
    later = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 3600))
    out = subprocess.run([*base, "-z", later, "-o", "/dev/null", "-w", "%{http_code}", url], capture_output=True, text=True, timeout=10)
    assert out.stdout == "304", out


def _peer_names(s: ssl.SSLSocket) -> set[str]:
    return {v for k, v in s.getpeercert().get("subjectAltName", ()) if k == "DNS"}


def test_sni_chooses_the_certificate_for_the_name(srv, certs):
    # each name verifies against its own certificate (the context checks the hostname)
    with tls_connect(srv.port, certs.context(), name="other.test") as s:
        assert _peer_names(s) == {"other.test"}
        assert request(s, "/1b", "Host: other.test\r\n").body == b"x"
    with tls_connect(srv.port, certs.context(), name="a.wild.test") as s:
        assert _peer_names(s) == {"*.wild.test"}
    with tls_connect(srv.port, certs.context(), name="localhost") as s:
        assert _peer_names(s) == {"localhost"}
    # a name no certificate is for gets the first one (which the client then refuses)
    ctx = certs.context()
    ctx.check_hostname = False
    with tls_connect(srv.port, ctx, name="unknown.test") as s:
        assert _peer_names(s) == {"localhost"}


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2])
def test_sessions_resume_on_every_worker(srv, certs, version):
    """Tickets are sealed with keys all workers derive from one secret: SO_REUSEPORT spreads the
    reconnections over both workers, and every one resumes."""
    ctx = certs.context(max_version=version)
    with tls_connect(srv.port, ctx) as s:
        assert request(s, "/1b").body == b"x"  # TLS 1.3 tickets come after the handshake
        session = s.session
    assert session is not None
    reused = []
    for _ in range(12):
        with tls_connect(srv.port, ctx, session=session) as s:
            assert request(s, "/1b").body == b"x"
            reused.append(s.session_reused)
    assert all(reused), reused


def test_plain_http_on_the_tls_port_gets_a_clear_400(srv):
    with connect(srv.port) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        data = read_to_end(s)
    assert data.startswith(b"HTTP/1.1 400 Bad Request\r\n"), data
    assert b"Connection: close\r\n" in data and data.endswith(b"This port speaks HTTPS: use an https:// address.\n")


def test_garbage_and_a_broken_handshake_close_without_harm(srv, certs):
    with connect(srv.port) as s:
        s.sendall(b"\x00\x01\x02\x03" * 10)
        assert read_to_end(s) == b""  # not TLS, not HTTP: closed, in order
    with connect(srv.port) as s:  # a record header that claims a handshake, then nonsense
        s.sendall(b"\x16\x03\x01\x00\x10" + b"\xff" * 16)
        data = read_to_end(s)
        assert data[:1] == b"\x15", data  # an alert, then the close
    with tls_connect(srv.port, certs.context()) as s:  # and the worker serves on
        assert request(s, "/1b").body == b"x"


def test_a_stalled_handshake_is_dropped_at_the_header_timeout(certs, www):
    s = Server([str(www), *certs.args(), "--header-timeout", "1", "--keepalive-timeout", "1"])
    try:
        with connect(s.port) as c:
            c.sendall(b"\x16\x03\x01\x02\x00\x01")  # the start of a ClientHello, never finished
            started = time.monotonic()
            data = read_to_end(c, timeout=6)
            assert time.monotonic() - started < 4
            assert data == b"" or data[:1] == b"\x15", data  # closed, maybe with a close_notify alert
    finally:
        assert s.stop() == 0


def test_client_certificates_required_when_a_ca_is_given(certs, www):
    s = run_app("asgi_tls_app:app", *certs.args(), "--tls-client-ca", str(certs.folder / "ca.pem"))
    try:
        with pytest.raises((ssl.SSLError, ConnectionResetError, BrokenPipeError)):
            with tls_connect(s.port, certs.context()) as c:
                request(c, "/tls")  # TLS 1.3: the refusal arrives after the client's Finished
        with tls_connect(s.port, certs.context(client_cert=True)) as c:
            r = request(c, "/tls")
        assert r.status == 200, r
        ext = json.loads(r.body)
        assert ext["scheme"] == "https"
        chain = ext["tls"]["client_cert_chain"]
        assert chain and chain[0] == certs.client.cert_chain_pems[0].bytes().decode()
        # the subject as RFC 4514 has it, as the cryptography package writes it
        from cryptography import x509

        subject = x509.load_pem_x509_certificate(certs.client.cert_chain_pems[0].bytes()).subject.rfc4514_string()
        assert ext["tls"]["client_cert_name"] == subject, (ext["tls"]["client_cert_name"], subject)
    finally:
        assert s.stop() == 0
    assert any("client certificates required" in line for line in s.lines), s.lines


def test_asgi_scope_has_https_and_the_tls_extension(certs):
    s = run_app("asgi_tls_app:app", *certs.args())
    try:
        with tls_connect(s.port, certs.context(max_version=ssl.TLSVersion.TLSv1_2)) as c:
            ext = json.loads(request(c, "/tls").body)
            cipher = c.cipher()[0]
        tls = ext["tls"]
        assert ext["scheme"] == "https"
        assert tls["tls_version"] == 0x0303 and tls["client_cert_chain"] == [] and tls["client_cert_name"] is None
        assert tls["server_cert"] == (certs.folder / "site.pem").read_text().split("-----END CERTIFICATE-----")[0] + "-----END CERTIFICATE-----\n"
        # the number of the suite the client says it got
        suites = {"ECDHE-ECDSA-AES256-GCM-SHA384": 0xC02C, "ECDHE-ECDSA-AES128-GCM-SHA256": 0xC02B,
                  "ECDHE-ECDSA-CHACHA20-POLY1305": 0xCCA9}
        assert tls["cipher_suite"] == suites[cipher], (cipher, tls["cipher_suite"])
    finally:
        assert s.stop() == 0


def test_wsgi_sees_https(certs):
    s = run_app("wsgi_app:app", *certs.args())
    try:
        with tls_connect(s.port, certs.context()) as c:
            env = json.loads(request(c, "/environ").body)
        assert env["wsgi.url_scheme"] == "https"
    finally:
        assert s.stop() == 0


def test_upload_100_mib_byte_exact_over_tls(certs):
    s = run_app("asgi_app:app", *certs.args())
    try:
        check_100_mib_upload(s, lambda: tls_connect(s.port, certs.context(), timeout=60))
    finally:
        assert s.stop() == 0


def test_download_100_mib_byte_exact_over_tls(certs, tmp_path):
    root = tmp_path / "dl"
    root.mkdir()
    block = os.urandom(1 << 20)
    with open(root / "100m.bin", "wb") as f:
        for i in range(100):
            f.write(bytes([i]) + block[1:])
    want = hashlib.sha256((root / "100m.bin").read_bytes()).hexdigest()
    s = Server([str(root), *certs.args()])
    try:
        with tls_connect(s.port, certs.context(), timeout=60) as c:
            c.sendall(b"GET /100m.bin HTTP/1.1\r\nHost: localhost\r\n\r\n")
            rd = Reader(c)
            r = rd.response()
        assert r.status == 200 and len(r.body) == 100 << 20
        assert hashlib.sha256(r.body).hexdigest() == want
    finally:
        assert s.stop() == 0


def test_wss_with_the_websockets_library(certs):
    import asyncio

    import websockets

    s = run_app("ws_app:app", *certs.args())
    try:
        async def main():
            async with websockets.connect(f"wss://localhost:{s.port}/scope", ssl=certs.context()) as ws:
                scope = json.loads(await ws.recv())
                assert scope["scheme"] == "wss"
            async with websockets.connect(f"wss://localhost:{s.port}/echo", ssl=certs.context()) as ws:
                for n in (1, 200, 70000):
                    await ws.send("é" * n)
                    assert await ws.recv() == "é" * n
        asyncio.run(main())
    finally:
        assert s.stop() == 0


def test_bad_certificate_or_key_is_one_line_at_start(certs, www, tmp_path):
    other_key = certs.folder / "other.key"
    cases = [
        (["--tls-cert", str(certs.folder / "site.pem"), "--tls-key", str(other_key)], "the private key does not belong to the certificate"),
        (["--tls-cert", str(certs.folder / "site.key"), "--tls-key", str(other_key)], "no certificate in it"),
        (["--tls-cert", str(tmp_path / "missing.pem")], "does not exist"),
        (["--tls-cert", str(certs.folder / "site.pem")], "no private key found"),  # key not in the file
        (["--tls-cert", str(certs.folder / "site.pem"), "--tls-key", str(certs.folder / "site.pem")], "no private key found"),
        (["--tls-key", str(other_key)], "--tls-key needs --tls-cert"),
        (certs.args("site", "other")[:6], "give one --tls-key per --tls-cert"),
    ]
    for args, message in cases:
        r = vw_cmd("serve", str(www), "--port", "0", *args)
        assert r.returncode == 2, (args, r.stderr)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("vw: error: ") and message in lines[0], (args, r.stderr)


def test_a_folder_of_certificates_and_a_combined_file(certs, www, tmp_path):
    folder = tmp_path / "certs"
    folder.mkdir()
    shutil.copy(certs.folder / "other.pem", folder / "other.pem")
    shutil.copy(certs.folder / "other.key", folder / "other.key")
    # a certificate with its key in the same file
    (folder / "site.crt").write_text((certs.folder / "site.key").read_text() + (certs.folder / "site.pem").read_text())
    s = Server([str(www), "--tls-cert", str(folder)])
    try:
        for name in ("localhost", "other.test"):
            with tls_connect(s.port, certs.context(), name=name) as c:
                assert name in _peer_names(c) and request(c, "/1b", f"Host: {name}\r\n").body == b"x"
    finally:
        assert s.stop() == 0


def test_config_file_tls_and_check_config(certs, www, tmp_path):
    conf = tmp_path / "vw.toml"
    conf.write_text(f'docroot = "{www}"\ntls_cert = ["{certs.folder / "site.pem"}"]\ntls_key = "{certs.folder / "site.key"}"\n')
    r = vw_cmd("check-config", str(conf))
    assert r.returncode == 0 and "TLS with 1 certificate" in r.stdout, r
    conf.write_text(f'docroot = "{www}"\ntls_cert = "{certs.folder / "site.pem"}"\ntls_key = "{certs.folder / "other.key"}"\n')
    r = vw_cmd("check-config", str(conf))
    assert r.returncode == 2 and "does not belong" in r.stderr, r


def test_reload_rereads_certificates_and_keeps_open_connections(certs, www, tmp_path):
    folder = tmp_path / "live"
    folder.mkdir()
    for ext in ("pem", "key"):
        shutil.copy(certs.folder / f"site.{ext}", folder / f"site.{ext}")
    s = Server([str(www), "--tls-cert", str(folder / "site.pem"), "--tls-key", str(folder / "site.key")])
    try:
        ctx = certs.context()
        ctx.check_hostname = False
        old_conn = tls_connect(s.port, ctx)
        assert request(old_conn, "/1b").body == b"x"
        # a broken key: the reload is refused and the old certificate serves on
        (folder / "site.key").write_text("not a key\n")
        seen = len(s.lines)
        s.proc.send_signal(signal.SIGHUP)
        s.wait_for(re.compile("not reloading: .*no private key"), timeout=10, start=seen)
        # a new certificate (other.test) under the same file names
        shutil.copy(certs.folder / "other.pem", folder / "site.pem")
        shutil.copy(certs.folder / "other.key", folder / "site.key")
        seen = len(s.lines)
        s.proc.send_signal(signal.SIGHUP)
        s.wait_for(WORKER_RE, timeout=15, start=seen)
        # until the old worker has stopped accepting (0.2 s after the new one is up), a new
        # connection may still reach it; after that every one gets the new certificate
        deadline = time.monotonic() + 5
        while True:
            with tls_connect(s.port, ctx, name="other.test") as c:
                names = _peer_names(c)
                assert request(c, "/1b").body == b"x"
            if names == {"other.test"}:
                break
            assert names == {"localhost"} and time.monotonic() < deadline, names
            time.sleep(0.1)
        # the connection from before the reload is answered (then closed by the draining worker)
        r = request(old_conn, "/1b")
        assert r.status == 200 and r.body == b"x"
        old_conn.close()
    finally:
        assert s.stop() == 0


def test_reload_under_load_over_tls_loses_nothing(certs, www):
    s = Server([str(www), *certs.args()], workers=2)
    try:
        assert load_through_reload(s, f"https://127.0.0.1:{s.port}/1b", 50) > 2_000, s.lines
    finally:
        assert s.stop() == 0


def test_chromium_loads_the_demo_over_https_with_h2(certs):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "core"))
    from browser import load_and_reload

    from vw.config import default_docroot

    s = Server([str(default_docroot()), *certs.args(), "--cache-control", "/=no-cache"])
    try:
        first, again = load_and_reload(f"https://localhost:{s.port}/", extra=("--ignore-certificate-errors",))
    finally:
        assert s.stop() == 0
    by_name = {r["url"].rsplit("/", 1)[1] or "/": r for r in first}
    for name in ("/", "style.css", "vw.png"):
        # vw serve offers h2 by ALPN, which Chromium takes
        assert by_name[name]["wire_status"] == 200 and by_name[name]["protocol"] == "h2", first
        assert by_name[name]["url"].startswith("https://"), first
    # on reload the files are revalidated (Chromium keeps no cached copy of the document itself
    # from a host whose certificate it was told to ignore, so "/" comes again whole)
    again_by_name = {r["url"].rsplit("/", 1)[1] or "/": r for r in again}
    for name in ("style.css", "vw.png"):
        assert again_by_name[name]["wire_status"] == 304 and "if-none-match" in again_by_name[name]["conditional"], again


@pytest.mark.parametrize("http2", [False, True], ids=["http1.1", "h2"])
def test_fastapi_over_https_with_httpx(certs, http2):
    import httpx

    version = "HTTP/2" if http2 else "HTTP/1.1"
    s = run_app("fastapi_app:app", *certs.args())
    try:
        with httpx.Client(http2=http2, verify=certs.context(), base_url=f"https://localhost:{s.port}") as c:
            r = c.get("/")
            assert r.status_code == 200 and r.http_version == version and r.json() == {"hello": "fastapi"}, r
            assert c.get("/items/5", params={"q": "x"}).json() == {"item_id": 5, "q": "x"}  # a sync endpoint
            assert c.post("/items", json={"name": "a", "price": 10}).json() == {"name": "a", "price_with_tax": 12.0}
            r = c.post("/form", data={"name": "n"}, files={"upload": ("f.bin", os.urandom(300_000))})
            assert r.json() == {"name": "n", "filename": "f.bin", "size": 300_000}
            r = c.get("/stream")
            assert r.http_version == version and r.text == "chunk 0\nchunk 1\nchunk 2\n", r
    finally:
        assert s.stop() == 0
