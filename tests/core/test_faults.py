"""Faults: out of descriptors, many idle connections, a worker killed under load."""

from __future__ import annotations

import pytest
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import time

from conftest import WORKER_RE, Reader, Server, connect, get


# every test here runs on each backend (--io epoll, --io uring): see `backend` in tests/conftest.py
pytestmark = pytest.mark.usefixtures("backend")


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_out_of_descriptors_neither_spins_nor_crashes(docroot):
    srv = Server([str(docroot)], workers=1, prefix=["prlimit", "--nofile=48:48"])
    clients = []
    try:
        pid = srv.workers[0][0]
        for _ in range(80):  # more than the worker can hold: accept fails with EMFILE
            s = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
            clients.append(s)
        time.sleep(0.5)
        before = cpu_seconds(pid)
        time.sleep(2)
        assert cpu_seconds(pid) - before < 0.3, "the worker spins while out of descriptors"
        assert srv.proc.poll() is None and os.path.exists(f"/proc/{pid}")
    finally:
        for s in clients:
            s.close()
    time.sleep(1.5)
    assert get(srv.port, "/1b").body == b"x", "serving resumes once descriptors free up"
    assert srv.workers[0][0] == pid
    srv.stop()


def test_10k_idle_keepalive_connections(docroot):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert hard >= 10_300, f"this test needs 10,300 descriptors (hard limit {hard})"
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    srv = Server([str(docroot), "--keepalive-timeout", "60"], workers=1)
    conns = []
    try:
        pid = srv.workers[0][0]

        def rss() -> int:
            with open(f"/proc/{pid}/status") as f:
                return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))

        base = rss()
        for _ in range(10_000):
            s = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
            s.sendall(b"GET /1b HTTP/1.1\r\nHost: t\r\n\r\n")
            conns.append(s)
        for s in conns:  # each has been answered and is now an idle keep-alive connection
            assert s.recv(4096).endswith(b"\r\n\r\nx")
        grew = rss() - base
        t0 = time.monotonic()
        assert get(srv.port, "/1b").body == b"x"
        took = time.monotonic() - t0
        print(f"10,000 idle connections: +{grew} KiB RSS, a request meanwhile took {took * 1000:.1f} ms")
        assert grew < 20 * 1024, f"10,000 idle connections cost {grew} KiB"
        assert took < 0.1, f"a request took {took * 1000:.0f} ms with 10,000 idle connections"
    finally:
        for s in conns:
            s.close()
        srv.stop()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_worker_killed_under_load_is_replaced_fast(docroot):
    wrk = shutil.which("wrk")
    assert wrk, "wrk is needed (make test installs it)"
    srv = Server([str(docroot)], workers=2)
    try:
        victim, cpu = srv.workers[0]
        load = subprocess.Popen([wrk, "-t1", "-c100", "-d3s", f"http://127.0.0.1:{srv.port}/1b"],
                                stdout=subprocess.PIPE, text=True)
        time.sleep(1)
        seen = len(srv.lines)
        t0 = time.monotonic()
        os.kill(victim, signal.SIGKILL)
        m = srv.wait_for(WORKER_RE, timeout=5, start=seen)
        took = time.monotonic() - t0
        out, _ = load.communicate(timeout=30)
        print(f"killed worker replaced after {took * 1000:.0f} ms")
        assert took < 1.0, f"replaced after {took:.2f} s"
        assert int(m.group(1)) == 0 and int(m.group(3)) == cpu
        requests = int(re.search(r"(\d+) requests in", out).group(1))
        assert requests > 20_000, out  # the other worker kept serving throughout
        assert "Non-2xx" not in out, out
        for _ in range(10):
            assert get(srv.port, "/1b").body == b"x"
    finally:
        assert srv.stop() == 0


def _open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def test_clients_resetting_mid_response(docroot):
    import struct

    (docroot / "large.bin").write_bytes(os.urandom(16 * 1024 * 1024))
    srv = Server([str(docroot)], workers=1)
    try:
        pid = srv.workers[0][0]
        assert get(srv.port, "/1b").body == b"x"
        baseline = _open_fds(pid)
        for _ in range(20):
            s = connect(srv.port)
            s.sendall(b"GET /large.bin HTTP/1.1\r\nHost: t\r\n\r\n")
            assert s.recv(65536).startswith(b"HTTP/1.1 200")
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            s.close()  # a reset while the server is in the middle of sendfile
        assert get(srv.port, "/1b").body == b"x"
        deadline = time.monotonic() + 3
        while _open_fds(pid) > baseline:
            assert time.monotonic() < deadline, "descriptors leaked after resets"
            time.sleep(0.1)
        assert srv.workers[0][0] == pid and srv.proc.poll() is None
    finally:
        srv.stop()


def test_file_truncated_or_deleted_while_being_sent(docroot):
    data = os.urandom(48 * 1024 * 1024)
    (docroot / "shrinking.bin").write_bytes(data)
    (docroot / "vanishing.bin").write_bytes(data)
    srv = Server([str(docroot)], workers=1)
    try:
        # Deleted mid-transfer: the open file is still whole, so the response completes.
        with connect(srv.port, timeout=20) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
            s.sendall(b"GET /vanishing.bin HTTP/1.1\r\nHost: t\r\n\r\n")
            rd = Reader(s)
            rd.buf = bytearray(s.recv(65536))
            (docroot / "vanishing.bin").unlink()
            assert rd.response().body == data
        # Truncated mid-transfer: the promised length cannot be sent, so the connection is cut
        # (never padded, never left hanging).
        with connect(srv.port, timeout=20) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
            s.sendall(b"GET /shrinking.bin HTTP/1.1\r\nHost: t\r\n\r\n")
            got = s.recv(65536)
            with open(docroot / "shrinking.bin", "r+b") as f:
                f.truncate(1024 * 1024)
            while True:
                chunk = s.recv(1 << 20)
                if not chunk:
                    break
                got += chunk
        head, body = got.split(b"\r\n\r\n", 1)
        assert b"Content-Length: %d" % len(data) in head
        assert len(body) < len(data)
        time.sleep(1.1)  # the cache notices the change within a second
        r = get(srv.port, "/shrinking.bin")
        assert r.header("Content-Length") == str(1024 * 1024) and r.body == data[:1024 * 1024]
        assert get(srv.port, "/vanishing.bin").status == 404
    finally:
        srv.stop()
