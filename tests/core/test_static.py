"""Static files through the core: types, directories, traversal, large files, freshness."""

from __future__ import annotations

import pytest
import hashlib
import os
import socket
import subprocess
import time

from conftest import Reader, connect, get, peak_rss_kib


# every test here runs on each backend (--io epoll, --io uring): see `backend` in tests/conftest.py
pytestmark = pytest.mark.usefixtures("backend")


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
    os.symlink("../outside.txt", docroot / "relescape")
    os.symlink("1b", docroot / "inside")
    # The README: a path that climbs above the docroot (after percent-decoding once and resolving
    # dot segments) is a 400, as is one that decodes to a NUL; a name starting with a dot and a
    # symlink leading out of the docroot are 404.
    attempts = {
        "/../outside.txt": 400, "/%2e%2e/outside.txt": 400, "/%2E%2E%2Foutside.txt": 400,
        "/sub/../../outside.txt": 400, "/sub/%2e%2e/%2e%2e/outside.txt": 400, "/..%2foutside.txt": 400,
        "/.%2e/outside.txt": 400, "//../outside.txt": 400, "/..": 400, "/1b%00": 400, "/1b%zz": 400,
        "/escape": 404, "/relescape": 404,
        "/.secret": 404, "/sub/../.secret": 404, "/%2esecret": 404,
    }
    for path, status in attempts.items():
        with connect(server.port) as s:
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
            r = Reader(s).response()
        assert r.status == status, (path, r.status)
        assert b"SECRET" not in r.body and b"hidden" not in r.body, path
    assert get(server.port, "/inside").body == b"x"  # a symlink inside the docroot is followed
    assert get(server.port, "/sub/%2e%2e/1b").body == b"x"  # dot segments that stay inside are fine


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


def test_10_gib_sparse_file_is_served_without_being_held(server, docroot):
    size = 10 << 30
    with open(docroot / "huge.img", "wb") as f:
        f.truncate(size)  # sparse: no disk used
        f.seek(size - 5)
        f.write(b"tail!")
    pid = server.workers[0][0]
    before = peak_rss_kib(pid)
    r = get(server.port, "/huge.img", method="HEAD")
    assert r.status == 200 and r.header("Content-Length") == str(size)
    r = get(server.port, "/huge.img", headers=f"Host: t\r\nRange: bytes={size - 5}-\r\n")
    assert r.status == 206 and r.body == b"tail!" and r.header("Content-Range") == f"bytes {size - 5}-{size - 1}/{size}"
    # 1.5 GiB across the 4 GiB mark, through curl: every byte arrives (one long sendfile whose
    # offsets pass 2^32; the whole 10 GiB took 30 s of the suite and proved nothing more)
    first, last = (7 << 29), (10 << 29) - 1
    out = subprocess.run(["curl", "-s", "-o", "/dev/null", "-r", f"{first}-{last}", "-w", "%{http_code} %{size_download}",
                          f"http://127.0.0.1:{server.port}/huge.img"], capture_output=True, text=True, timeout=120)
    assert out.stdout == f"206 {last - first + 1}"
    assert peak_rss_kib(pid) - before < 32 * 1024, "a large file is never read into memory"


def test_changes_additions_deletions_under_load(server, docroot):
    """wrk keeps the worker busy on /1b while files change; each change shows within ~1 s."""
    wrk = subprocess.Popen(["wrk", "-t1", "-c50", "-d6", f"http://127.0.0.1:{server.port}/1b"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        time.sleep(1)

        def eventually(path: str, check, what: str) -> None:
            deadline = time.monotonic() + 3
            while not check(get(server.port, path)):
                assert time.monotonic() < deadline, what
                time.sleep(0.05)

        (docroot / "1b").write_bytes(b"z")
        eventually("/1b", lambda r: r.body == b"z", "change of a hot file under load")
        (docroot / "added.txt").write_text("added\n")
        eventually("/added.txt", lambda r: r.body == b"added\n", "addition under load")
        (docroot / "100.html").unlink()
        eventually("/100.html", lambda r: r.status == 404, "deletion under load")
        assert wrk.poll() is None, "the load was still running during the changes"
    finally:
        out, _ = wrk.communicate(timeout=20)
    assert "requests in" in out and "Non-2xx" not in out and "Socket errors" not in out, out


def _pipes(pid: int) -> int:
    """The process's open pipes (a descriptor closed between the listing and its readlink is
    not one any more: the worker closes pipes while it serves)."""
    n = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            n += os.readlink(f"/proc/{pid}/fd/{fd}").startswith("pipe:")
        except FileNotFoundError:
            pass
    return n


def _written(pid: int) -> int:
    """Bytes the process passed to write(2)-like calls: splice and sendmsg are not counted."""
    return int(dict(line.split(": ") for line in open(f"/proc/{pid}/io").read().splitlines())["wchar"])


def test_mid_size_bodies_leave_by_reference_and_arrive_whole(server, docroot):
    """Bodies of 32 KiB up to inline_max go out with tee+splice from a pipe (src/tee.rs), not
    with write(2). A slow reader with a small receive buffer makes some go out in part: the rest
    is sent from memory, and every body arrives whole and in order."""
    files = {name: os.urandom(size) for name, size in
             (("a.bin", 20_000), ("b.bin", 40_000), ("c.bin", 100_000), ("d.bin", 256 * 1024))}
    for name, data in files.items():
        (docroot / name).write_bytes(data)
    pid = server.workers[0][0]
    before = _pipes(pid)
    for _ in range(2):  # the first answer loads the file; the second, from the cache, fills its pipe
        assert get(server.port, "/c.bin").body == files["c.bin"]
    assert _pipes(pid) > before, "a 100 KB body is held in a pipe"
    written = _written(pid)
    for _ in range(10):
        assert get(server.port, "/c.bin").body == files["c.bin"]
    assert _written(pid) - written < 100_000, "the bodies went out with write(2), not splice"
    order = ["a.bin", "b.bin", "c.bin", "d.bin", "d.bin"] * 12  # 8 MB: more than the socket holds
    with connect(server.port, timeout=20) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        s.sendall(b"".join(f"GET /{n} HTTP/1.1\r\nHost: t\r\n\r\n".encode() for n in order))
        time.sleep(0.3)  # the server fills the socket and stops part way
        reader = Reader(s)
        for n in order:
            r = reader.response()
            assert r.status == 200 and r.body == files[n], n
    # a body changed: the new one is served (and piped) from the next second on
    new_d = os.urandom(256 * 1024)
    (docroot / "d.bin").write_bytes(new_d)
    time.sleep(1.1)
    for _ in range(3):
        assert get(server.port, "/d.bin").body == new_d


def test_large_files_are_mapped_and_let_go_once_deleted(server, docroot):
    """Files above inline_max (up to 64 MiB) are written from a mapping (src/response.rs,
    Mapping). A deleted one is unmapped within the sweep's 5 s although nobody asks for it
    again, so its space is freed; a replaced one is served anew."""
    path = docroot / "m.bin"
    data = os.urandom(2 << 20)
    path.write_bytes(data)
    pid = server.workers[0][0]
    assert get(server.port, "/m.bin").body == data
    maps = lambda: open(f"/proc/{pid}/maps").read()  # noqa: E731
    assert str(path) in maps(), "a 2 MiB file is mapped"
    rng = get(server.port, "/m.bin", headers="Host: t\r\nRange: bytes=1000000-1000009\r\n")
    assert rng.status == 206 and rng.body == data[1000000:1000010]
    # rewritten in place (same inode): the next answer has the new length and bytes, at once
    grown = os.urandom(2 << 20) + b"more"
    path.write_bytes(grown)
    r = get(server.port, "/m.bin")
    assert r.header("Content-Length") == str(len(grown)) and r.body == grown
    path.unlink()
    deadline = time.monotonic() + 7
    while str(path) in maps():
        assert time.monotonic() < deadline, "a deleted file stays mapped"
        time.sleep(0.2)
    assert get(server.port, "/m.bin").status == 404
    new = os.urandom(3 << 20)
    path.write_bytes(new)
    assert get(server.port, "/m.bin").body == new


def test_cache_max_bytes_empties_the_cache_when_a_file_would_pass_it(tmp_path):
    """Within a second of its last check a cached file is served from memory, unchanged on disk or
    not. So a file rewritten in that second shows whether it was still cached: after two files
    that fit under --cache-max-bytes it still is; after one that would pass it, the cache was
    emptied and the file is read anew."""
    from conftest import Server

    root = tmp_path / "www"
    root.mkdir()
    srv = Server([str(root), "--cache-max-bytes", "100000"])
    try:
        def still_cached(first: str, second: str, size: int) -> bool | None:
            """GET first; rewrite it (same size); GET it (cached: the old bytes, else None: the
            second turned, try again); GET second; whether first is still the old bytes."""
            (root / first).write_bytes(b"a" * size)
            (root / second).write_bytes(b"b" * size)
            t0 = time.monotonic()
            assert get(srv.port, f"/{first}").body == b"a" * size
            (root / first).write_bytes(b"c" * size)
            if get(srv.port, f"/{first}").body != b"a" * size:
                return None
            assert get(srv.port, f"/{second}").body == b"b" * size
            body = get(srv.port, f"/{first}").body
            if time.monotonic() - t0 > 0.5:
                return None  # too slow to be sure it all happened within one second
            return body == b"a" * size

        # (three tries of two 12,000-byte files still fit: a retry does not empty the cache itself)
        for n, (size, kept) in enumerate([(12_000, True), (60_000, False)]):
            for attempt in range(3):
                seen = still_cached(f"f{n}-{attempt}", f"g{n}-{attempt}", size)
                if seen is not None:
                    break
            assert seen is kept, f"two {size}-byte files under a 100,000-byte cache: kept {seen}"
    finally:
        srv.stop()
