"""Static files to nginx's feature level: validators and preconditions (RFC 9110 §13), ranges
(§14), content codings (§12.5.3), Cache-Control, the 404 page and the MIME table."""

from __future__ import annotations

import gzip
import os
import time
from email.utils import formatdate

import pytest

from conftest import Reader, Server, connect, get


# every test here runs on each backend (--io epoll, --io uring): see `backend` in tests/conftest.py
pytestmark = pytest.mark.usefixtures("backend")


def hdrs(**fields: str) -> str:
    return "Host: t\r\n" + "".join(f"{k.replace('_', '-')}: {v}\r\n" for k, v in fields.items())


def http_date(t: float) -> str:
    return formatdate(t, usegmt=True)


@pytest.fixture
def site(docroot):
    (docroot / "data.bin").write_bytes(bytes(range(256)) * 4)  # 1 KiB, held in memory
    (docroot / "big.bin").write_bytes(os.urandom(600_000))  # above inline_max: mapped
    (docroot / "app.css").write_text("body { color: red; }\n" * 40)
    (docroot / "app.css.gz").write_bytes(gzip.compress((docroot / "app.css").read_bytes()))
    (docroot / "app.css.br").write_bytes(b"pretend-brotli")
    (docroot / "404.html").write_text("<h1>custom missing page</h1>\n")
    os.utime(docroot / "data.bin", (1_700_000_000, 1_700_000_000))
    return docroot


@pytest.fixture
def srv(site):
    s = Server([str(site), "--cache-control", "/=no-cache", "--cache-control", "/sub/=max-age=60",
                "--not-found-page", str(site / "404.html")])
    yield s
    s.stop()


def test_validators_on_every_file(srv):
    for path in ("/1b", "/data.bin", "/big.bin", "/", "/sub/"):
        r = get(srv.port, path)
        etag = r.header("ETag")
        assert r.status == 200 and etag and etag.startswith('"') and etag.endswith('"'), path
        assert r.header("Last-Modified") and r.header("Accept-Ranges") == "bytes", path
    assert get(srv.port, "/data.bin").header("Last-Modified") == "Tue, 14 Nov 2023 22:13:20 GMT"


def test_if_none_match(srv):
    etag = get(srv.port, "/data.bin").header("ETag")
    for value in (etag, f'"nope", {etag}', f"W/{etag}", "*"):
        r = get(srv.port, "/data.bin", headers=hdrs(If_None_Match=value))
        assert (r.status, r.body) == (304, b""), value
        assert r.header("ETag") == etag and r.header("Cache-Control") == "no-cache" and r.header("Date")
        assert r.header("Content-Length") is None
    assert get(srv.port, "/data.bin", headers=hdrs(If_None_Match='"other"')).status == 200
    # If-None-Match wins over If-Modified-Since (§13.2.2): a changed tag means 200 whatever the date.
    r = get(srv.port, "/data.bin", headers=hdrs(If_None_Match='"other"', If_Modified_Since=http_date(time.time())))
    assert r.status == 200 and len(r.body) == 1024
    r = get(srv.port, "/data.bin", method="HEAD", headers=hdrs(If_None_Match=etag))
    assert r.status == 304


def test_if_modified_since(srv):
    lm = 1_700_000_000
    assert get(srv.port, "/data.bin", headers=hdrs(If_Modified_Since=http_date(lm))).status == 304
    assert get(srv.port, "/data.bin", headers=hdrs(If_Modified_Since=http_date(lm + 100))).status == 304
    assert get(srv.port, "/data.bin", headers=hdrs(If_Modified_Since=http_date(lm - 1))).status == 200
    # the two obsolete date forms a recipient must accept
    assert get(srv.port, "/data.bin", headers=hdrs(If_Modified_Since="Tuesday, 14-Nov-23 22:13:20 GMT")).status == 304
    assert get(srv.port, "/data.bin", headers=hdrs(If_Modified_Since="Tue Nov 14 22:13:20 2023")).status == 304
    assert get(srv.port, "/data.bin", headers=hdrs(If_Modified_Since="not a date")).status == 200


def test_if_match_and_if_unmodified_since_give_412(srv):
    etag = get(srv.port, "/data.bin").header("ETag")
    assert get(srv.port, "/data.bin", headers=hdrs(If_Match=etag)).status == 200
    assert get(srv.port, "/data.bin", headers=hdrs(If_Match="*")).status == 200
    r = get(srv.port, "/data.bin", headers=hdrs(If_Match='"other"'))
    assert r.status == 412
    assert get(srv.port, "/data.bin", headers=hdrs(If_Match=f"W/{etag}")).status == 412, "strong comparison"
    assert get(srv.port, "/data.bin", headers=hdrs(If_Unmodified_Since=http_date(1_600_000_000))).status == 412
    assert get(srv.port, "/data.bin", headers=hdrs(If_Unmodified_Since=http_date(1_700_000_000))).status == 200
    # If-Match is evaluated first, and when present If-Unmodified-Since is not.
    r = get(srv.port, "/data.bin", headers=hdrs(If_Match=etag, If_Unmodified_Since=http_date(1_600_000_000)))
    assert r.status == 200
    # A failed If-Match wins over a matching If-None-Match.
    assert get(srv.port, "/data.bin", headers=hdrs(If_Match='"x"', If_None_Match=etag)).status == 412


def test_single_ranges(srv, site):
    data = (site / "data.bin").read_bytes()
    for spec, first, last in (("0-5", 0, 5), ("-7", 1017, 1023), ("10-", 10, 1023), ("1000-5000", 1000, 1023)):
        r = get(srv.port, "/data.bin", headers=hdrs(Range=f"bytes={spec}"))
        assert r.status == 206, spec
        assert r.header("Content-Range") == f"bytes {first}-{last}/1024", spec
        assert r.body == data[first:last + 1] and r.header("Content-Length") == str(last - first + 1)
        assert r.header("ETag") and r.header("Content-Type") == "application/octet-stream"


def test_ranges_of_a_large_file(srv, site):
    data = (site / "big.bin").read_bytes()
    r = get(srv.port, "/big.bin", headers=hdrs(Range="bytes=300000-300099"))
    assert r.status == 206 and r.body == data[300000:300100]
    r = get(srv.port, "/big.bin", headers=hdrs(Range="bytes=-10"))
    assert r.body == data[-10:] and r.header("Content-Range") == f"bytes {len(data) - 10}-{len(data) - 1}/{len(data)}"
    # keep-alive goes on after a ranged response
    with connect(srv.port) as s:
        s.sendall(b"GET /big.bin HTTP/1.1\r\nHost: t\r\nRange: bytes=5-9\r\n\r\nGET /1b HTTP/1.1\r\nHost: t\r\n\r\n")
        rd = Reader(s)
        assert rd.response().body == data[5:10]
        assert rd.response().body == b"x"


def test_head_ignores_range(srv):
    """Range is defined for GET only (RFC 9110 §14.2): a HEAD with one gets the 200 head."""
    r = get(srv.port, "/data.bin", method="HEAD", headers=hdrs(Range="bytes=0-5"))
    assert r.status == 200 and r.header("Content-Length") == "1024" and r.header("Content-Range") is None


def test_unsatisfiable_and_other_ranges(srv):
    r = get(srv.port, "/data.bin", headers=hdrs(Range="bytes=5000-"))
    assert r.status == 416 and r.header("Content-Range") == "bytes */1024"
    # several ranges: the whole file (documented), never multipart
    r = get(srv.port, "/data.bin", headers=hdrs(Range="bytes=0-1,5-6"))
    assert r.status == 200 and len(r.body) == 1024
    for bad in ("bytes=5-1", "items=0-1", "bytes=x-"):
        assert get(srv.port, "/data.bin", headers=hdrs(Range=bad)).status == 200, bad


def test_if_range(srv):
    r0 = get(srv.port, "/data.bin")
    etag, lm = r0.header("ETag"), r0.header("Last-Modified")
    assert get(srv.port, "/data.bin", headers=hdrs(Range="bytes=0-1", If_Range=etag)).status == 206
    assert get(srv.port, "/data.bin", headers=hdrs(Range="bytes=0-1", If_Range=lm)).status == 206
    r = get(srv.port, "/data.bin", headers=hdrs(Range="bytes=0-1", If_Range='"changed"'))
    assert r.status == 200 and len(r.body) == 1024
    assert get(srv.port, "/data.bin", headers=hdrs(Range="bytes=0-1", If_Range=http_date(1_600_000_000))).status == 200


def test_precompressed_siblings_by_accept_encoding(srv, site):
    plain = (site / "app.css").read_bytes()
    r = get(srv.port, "/app.css")
    assert r.body == plain and r.header("Content-Encoding") is None and r.header("Vary") == "Accept-Encoding"
    r = get(srv.port, "/app.css", headers=hdrs(Accept_Encoding="gzip, deflate, br"))
    assert r.header("Content-Encoding") == "br" and r.body == b"pretend-brotli"
    assert r.header("Content-Type") == "text/css; charset=utf-8" and r.header("Vary") == "Accept-Encoding"
    r = get(srv.port, "/app.css", headers=hdrs(Accept_Encoding="gzip"))
    assert r.header("Content-Encoding") == "gzip" and gzip.decompress(r.body) == plain
    gz_etag = r.header("ETag")
    assert gz_etag != get(srv.port, "/app.css").header("ETag"), "each coding has its own tag"
    r = get(srv.port, "/app.css", headers=hdrs(Accept_Encoding="br;q=0.1, gzip;q=0.9"))
    assert r.header("Content-Encoding") == "gzip"
    r = get(srv.port, "/app.css", headers=hdrs(Accept_Encoding="gzip;q=0, br;q=0"))
    assert r.header("Content-Encoding") is None and r.body == plain
    r = get(srv.port, "/app.css", headers=hdrs(Accept_Encoding="gzip;q=0.5, identity;q=0"))
    assert r.header("Content-Encoding") == "gzip"
    r = get(srv.port, "/1b", headers=hdrs(Accept_Encoding="identity;q=0"))
    assert r.status == 406, "nothing acceptable"
    # conditional requests work per representation
    assert get(srv.port, "/app.css", headers=hdrs(Accept_Encoding="gzip", If_None_Match=gz_etag)).status == 304
    assert get(srv.port, "/app.css", headers=hdrs(If_None_Match=gz_etag)).status == 200


def test_compress_at_load(site):
    (site / "page.html").write_text("<p>compress me</p>\n" * 100)
    s = Server([str(site), "--compress"])
    try:
        r = get(s.port, "/page.html", headers=hdrs(Accept_Encoding="gzip"))
        assert r.header("Content-Encoding") == "gzip" and r.header("Vary") == "Accept-Encoding"
        assert gzip.decompress(r.body) == (site / "page.html").read_bytes() and len(r.body) < 200
        assert get(s.port, "/page.html").header("Content-Encoding") is None
        # not worth it, or not compressible: sent as is
        assert get(s.port, "/1b", headers=hdrs(Accept_Encoding="gzip")).header("Content-Encoding") is None
        assert get(s.port, "/data.bin", headers=hdrs(Accept_Encoding="gzip")).header("Content-Encoding") is None
    finally:
        s.stop()


def test_cache_control_by_prefix_and_404_page(srv):
    assert get(srv.port, "/1b").header("Cache-Control") == "no-cache"
    assert get(srv.port, "/sub/").header("Cache-Control") == "max-age=60", "the longest prefix wins"
    r = get(srv.port, "/missing.html")
    assert r.status == 404 and r.body == b"<h1>custom missing page</h1>\n"
    assert r.header("Content-Type") == "text/html; charset=utf-8"
    r = get(srv.port, "/missing.html", method="HEAD")
    assert r.status == 404 and r.header("Content-Length") == "29"


def test_directory_redirect_and_dotfiles(srv, site):
    (site / "docs").mkdir()
    (site / "docs" / "index.html").write_text("docs\n")
    r = get(srv.port, "/docs")
    assert r.status == 301 and r.header("Location") == "/docs/"
    (site / ".env").write_text("SECRET=1\n")
    (site / ".well").mkdir()
    (site / ".well" / "x").write_text("x\n")
    for path in ("/.env", "/.well/x", "/docs/../.env"):  # dot names: 404 (the README)
        assert get(srv.port, path).status == 404, path


def test_mime_table(tmp_path):
    from vw.static import content_types

    t = content_types()
    assert t["woff2"] == "font/woff2" and t["wasm"] == "application/wasm"
    assert t["js"] == "text/javascript; charset=utf-8" and t["svg"] == "image/svg+xml; charset=utf-8"
    assert t["png"] == "image/png" and t["pdf"] == "application/pdf" and t["webp"] == "image/webp"
    assert len(t) > 500, "the system's maintained table is read, not only a hand list"


def test_sibling_appearing_is_picked_up(srv, site):
    (site / "late.js").write_text("let x = 1;\n" * 50)
    assert get(srv.port, "/late.js", headers=hdrs(Accept_Encoding="gzip")).header("Content-Encoding") is None
    (site / "late.js.gz").write_bytes(gzip.compress((site / "late.js").read_bytes()))
    deadline = time.time() + 5
    while get(srv.port, "/late.js", headers=hdrs(Accept_Encoding="gzip")).header("Content-Encoding") != "gzip":
        assert time.time() < deadline, "the new .gz sibling was never used"
        time.sleep(0.2)
