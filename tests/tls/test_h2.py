"""HTTP/2 (RFC 9113) for static files: over TLS by ALPN, and h2c with prior knowledge
(--http2-cleartext). curl, h2load and the Python h2/httpx clients (headless Chromium over h2:
tests/tls/test_tls.py; applications: tests/tls/test_h2_apps.py)."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import time

import pytest

from conftest import Server
from tlsutil import certs, curl  # noqa: F401 (certs: a fixture)


@pytest.fixture(scope="module")
def www(tmp_path_factory):
    root = tmp_path_factory.mktemp("www")
    (root / "index.html").write_text("<h1>home</h1>\n")
    (root / "1b").write_bytes(b"x")
    (root / "style.css").write_text("body { color: red }\n" * 40)
    (root / "big.bin").write_bytes(os.urandom(5 << 20))  # past --inline-max: read with pread
    return root


@pytest.fixture(scope="module")
def srv(certs, www):
    s = Server([str(www), *certs.args()], workers=1)
    yield s
    assert s.stop() == 0


@pytest.fixture(scope="module")
def h2c(www):
    s = Server([str(www), "--http2-cleartext"], workers=1)
    yield s
    assert s.stop() == 0


def test_start_lines_name_h2(srv, h2c):
    assert any("ALPN h2, http/1.1" in line for line in srv.lines), srv.lines
    assert any("HTTP/2 without TLS too" in line for line in h2c.lines), h2c.lines


def test_curl_http2_over_tls_static_range_conditional_head_404(srv, certs, www):
    ca = ["--cacert", str(certs.folder / "ca.pem"), "--http2"]
    base = f"https://localhost:{srv.port}"
    r = curl(*ca, "-w", "|%{http_code}|%{http_version}", f"{base}/index.html")
    assert r.stdout == b"<h1>home</h1>\n|200|2", r
    r = curl(*ca, "-r", "1-2", "-w", "|%{http_code}|%{http_version}", f"{base}/index.html")
    assert r.stdout == b"h1|206|2", r
    later = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 3600))
    r = curl(*ca, "-z", later, "-o", "/dev/null", "-w", "%{http_code}", f"{base}/index.html")
    assert r.stdout == b"304", r
    r = curl(*ca, "-I", f"{base}/style.css")
    head = r.stdout.decode().lower()
    assert head.startswith("http/2 200") and "content-length: 800" in head and "connection:" not in head, head
    r = curl(*ca, "-w", "|%{http_code}", f"{base}/missing")
    assert r.stdout.endswith(b"|404"), r
    r = curl(*ca, "-H", "Accept-Encoding: gzip", "-o", "/dev/null", "-w", "%{http_code}", f"{base}/../../etc/passwd")
    assert r.stdout in (b"400", b"404"), r  # curl squashes the dots; the server never leaves the root


def test_curl_h2c_prior_knowledge(h2c, certs, www):
    r = curl("--http2-prior-knowledge", "-w", "|%{http_code}|%{http_version}", f"http://127.0.0.1:{h2c.port}/1b")
    assert r.stdout == b"x|200|2", r
    r = curl("-w", "|%{http_version}", f"http://127.0.0.1:{h2c.port}/1b")  # HTTP/1.1 still served
    assert r.stdout == b"x|1.1", r
    from conftest import vw_cmd

    r = vw_cmd("serve", str(www), "--http2-cleartext", *certs.args(), "--port", "0")
    assert r.returncode == 2 and "--http2-cleartext is for a port without TLS" in r.stderr, r


def test_h2c_needs_the_option(www):
    s = Server([str(www)])
    try:
        r = curl("--http2-prior-knowledge", "-o", "/dev/null", "-w", "%{http_code}|%{http_version}", f"http://127.0.0.1:{s.port}/1b")
        assert not r.stdout.endswith(b"|2"), r  # no HTTP/2 spoken
        r = curl("-w", "|%{http_version}", f"http://127.0.0.1:{s.port}/1b")
        assert r.stdout == b"x|1.1", r
    finally:
        assert s.stop() == 0


def test_large_file_byte_exact_over_h2_with_flow_control(srv, certs, www, tmp_path):
    out = tmp_path / "got.bin"
    r = curl("--cacert", str(certs.folder / "ca.pem"), "--http2", "-o", str(out), "-w", "%{http_code}|%{http_version}",
             f"https://localhost:{srv.port}/big.bin")
    assert r.stdout == b"200|2", r
    assert out.read_bytes() == (www / "big.bin").read_bytes()


def test_100_mib_download_byte_exact_over_h2(certs, tmp_path):
    root = tmp_path / "dl"
    root.mkdir()
    block = os.urandom(1 << 20)
    h = hashlib.sha256()
    with open(root / "100m.bin", "wb") as f:
        for i in range(100):
            piece = bytes([i]) + block[1:]
            f.write(piece)
            h.update(piece)
    s = Server([str(root), *certs.args()])
    try:
        out = tmp_path / "got.bin"
        r = curl("--cacert", str(certs.folder / "ca.pem"), "--http2", "-o", str(out), "-w", "%{http_code}|%{http_version}",
                 f"https://localhost:{s.port}/100m.bin", timeout=120)
        assert r.stdout == b"200|2", r
        assert out.stat().st_size == 100 << 20
        with open(out, "rb") as f:
            assert hashlib.file_digest(f, "sha256").hexdigest() == h.hexdigest()
    finally:
        assert s.stop() == 0


def test_h2load_many_streams_on_few_connections(srv, h2c, www):
    exe = shutil.which("h2load")
    assert exe, "h2load is needed (make test installs nghttp2-client)"
    r = subprocess.run([exe, "-c4", "-m20", "-n4000", f"https://localhost:{srv.port}/1b",
                        f"https://localhost:{srv.port}/style.css"], capture_output=True, text=True, timeout=60)
    assert re.search(r"requests: 4000 total, 4000 started, 4000 done, 4000 succeeded, 0 failed", r.stdout), r.stdout
    assert "status codes: 4000 2xx" in r.stdout, r.stdout
    r = subprocess.run([exe, "-c2", "-m10", "-n1000", f"http://127.0.0.1:{h2c.port}/1b"], capture_output=True, text=True, timeout=60)
    assert "1000 succeeded, 0 failed" in r.stdout, r.stdout  # h2c


def test_httpx_http2_concurrent_requests_on_one_connection(srv, certs, www):
    import asyncio

    import httpx

    async def main():
        async with httpx.AsyncClient(http2=True, verify=certs.context()) as c:
            rs = await asyncio.gather(*(c.get(f"https://localhost:{srv.port}/style.css") for _ in range(50)))
            assert all(r.status_code == 200 and r.http_version == "HTTP/2" for r in rs)
            assert all(r.content == (www / "style.css").read_bytes() for r in rs)
            # On the same connection: a conditional request with the ETag it was given is a
            # 304 without a body; with another ETag, the file.
            etag = rs[0].headers["etag"]
            assert len({r.headers["etag"] for r in rs}) == 1, "one representation, one ETag"
            same = await c.get(f"https://localhost:{srv.port}/style.css", headers={"If-None-Match": etag})
            other = await c.get(f"https://localhost:{srv.port}/style.css", headers={"If-None-Match": '"not-it"'})
            return same, other
    same, other = asyncio.run(main())
    assert (same.status_code, same.content, same.http_version) == (304, b"", "HTTP/2")
    assert (other.status_code, other.content) == (200, (www / "style.css").read_bytes())


def test_metrics_count_h2_and_tls_and_the_log_says_http2(certs, www, tmp_path):
    from prometheus_client.parser import text_string_to_metric_families

    from conftest import free_port

    admin = free_port()
    log = tmp_path / "access.log"
    s = Server([str(www), *certs.args(), "--admin-port", str(admin), "--access-log", str(log)])
    try:
        s.wait_for(re.compile(r"vw admin on"))
        ca = ["--cacert", str(certs.folder / "ca.pem")]
        for _ in range(3):
            assert curl(*ca, "--http2", "-o", "/dev/null", "-w", "%{http_version}", f"https://localhost:{s.port}/1b").stdout == b"2"
        assert curl(*ca, "--http1.1", "-o", "/dev/null", "-w", "%{http_version}", f"https://localhost:{s.port}/1b").stdout == b"1.1"
        import urllib.request

        text = urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics", timeout=5).read().decode()
        fams = {f.name: f for f in text_string_to_metric_families(text)}
        by_proto = {x.labels["protocol"]: x.value for x in fams["vw_requests_by_protocol"].samples}
        assert by_proto == {"h2": 3, "http/1.1": 1}, by_proto
        assert fams["vw_tls_handshakes"].samples[0].value == 4
    finally:
        assert s.stop() == 0
    lines = log.read_text().splitlines()
    assert sum('"GET /1b HTTP/2.0" 200' in line for line in lines) == 3, lines
    assert sum('"GET /1b HTTP/1.1" 200' in line for line in lines) == 1, lines
    assert all(line.startswith("127.0.0.1 ") for line in lines), lines
