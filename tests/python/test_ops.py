"""Running it for real: the access log (formats, batching, injection, reopen on SIGUSR1 with no
line lost) and the admin listener (/metrics read by prometheus_client's parser, /healthz, /readyz)."""

from __future__ import annotations

import json
import os
import signal
import socket
import time
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import Server, connect, get, Reader, free_port


def fetch(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def wait_lines(path, n: int, timeout: float = 5) -> list[str]:
    deadline = time.monotonic() + timeout
    while True:
        lines = path.read_text().splitlines() if path.exists() else []
        if len(lines) >= n or time.monotonic() > deadline:
            return lines
        time.sleep(0.05)


def test_json_access_log(docroot, tmp_path):
    log = tmp_path / "access.log"
    srv = Server([str(docroot), "--access-log", str(log), "--access-log-format", "json"])
    try:
        get(srv.port, "/1b", headers="Host: t\r\nUser-Agent: probe/1\r\nReferer: http://r/\r\n")
        get(srv.port, "/nope?q=1")
        with connect(srv.port) as s:  # a rejected request is logged too
            s.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n")
            assert Reader(s).response().status == 400
        lines = wait_lines(log, 3)
    finally:
        srv.stop()
    entries = [json.loads(line) for line in lines]
    ok = entries[0]
    assert ok["method"] == "GET" and ok["target"] == "/1b" and ok["status"] == 200 and ok["protocol"] == "HTTP/1.1"
    assert ok["user_agent"] == "probe/1" and ok["referer"] == "http://r/" and ok["remote"] == "127.0.0.1"
    assert ok["bytes"] > 1 and isinstance(ok["duration_us"], int) and ok["time"].endswith("Z")
    assert entries[1]["status"] == 404 and entries[1]["target"] == "/nope?q=1"
    assert entries[2]["status"] == 400


def test_combined_log_is_injection_safe(docroot, tmp_path):
    log = tmp_path / "access.log"
    srv = Server([str(docroot), "--access-log", str(log)])
    try:
        with connect(srv.port) as s:
            s.sendall(b'GET /1b HTTP/1.1\r\nHost: t\r\nUser-Agent: x" 200 1 \\ \xff\r\n\r\n')
            Reader(s).response()
        with connect(srv.port) as s:  # control bytes never get past the parser: 400, logged as "-"
            s.sendall(b"GET /1b HTTP/1.1\r\nHost: t\r\nUser-Agent: \x1b[2J\r\n\r\n")
            assert Reader(s).response().status == 400
        lines = wait_lines(log, 2)
    finally:
        srv.stop()
    assert len(lines) == 2, lines
    line = lines[0]
    assert line.startswith('127.0.0.1 - - [') and '"GET /1b HTTP/1.1" 200 ' in line
    assert '"x\\x22 200 1 \\x5c \\xff"' in line, line
    assert '"-" 400 ' in lines[1] and "\x1b" not in lines[1], lines[1]


def test_rename_and_sigusr1_lose_no_line(docroot, tmp_path):
    log = tmp_path / "access.log"
    srv = Server([str(docroot), "--access-log", str(log)], workers=2)
    total = 0
    try:
        with connect(srv.port) as s:
            rd = Reader(s)
            for i in range(3000):
                s.sendall(b"GET /1b HTTP/1.1\r\nHost: t\r\n\r\n")
                assert rd.response().status == 200
                total += 1
                if i == 1500:  # logrotate: rename, then tell vw
                    os.rename(log, tmp_path / "access.log.1")
                    os.kill(srv.proc.pid, signal.SIGUSR1)
                    time.sleep(0.3)
    finally:
        assert srv.stop() == 0  # workers flush at exit
    rotated = (tmp_path / "access.log.1").read_text().splitlines()
    fresh = log.read_text().splitlines()
    assert len(rotated) + len(fresh) == total, (len(rotated), len(fresh))
    assert rotated and fresh, "lines went to both files"


def test_metrics_health_and_readiness(docroot):
    admin = free_port()
    srv = Server([str(docroot), "--admin-port", str(admin)], workers=2)
    try:
        srv.wait_for(__import__("re").compile(r"vw admin on"))
        for _ in range(10):
            get(srv.port, "/1b")
        get(srv.port, "/missing")
        status, text = fetch(admin, "/metrics")
        assert status == 200
        families = {f.name: f for f in text_string_to_metric_families(text)}
        requests = {s.labels["class"]: s.value for s in families["vw_requests"].samples if s.name == "vw_requests_total"}
        assert requests["2xx"] >= 10 and requests["4xx"] >= 1
        hist = {s.labels.get("le"): s.value for s in families["vw_request_duration_seconds"].samples
                if s.name.endswith("_bucket")}
        assert hist["+Inf"] >= 11
        cpu = [s for s in families["vw_worker_cpu_seconds"].samples]
        assert sorted(s.labels["worker"] for s in cpu) == ["0", "1"] and all("cpu" in s.labels for s in cpu)
        assert families["vw_response_bytes"].samples[0].value > 0
        assert families["vw_workers"].samples[0].value == 2
        assert fetch(admin, "/healthz") == (200, "ok\n")
        assert fetch(admin, "/readyz")[0] == 200
        # a killed worker is counted as a restart
        pid = srv.workers[0][0]
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while True:
            families = {f.name: f for f in text_string_to_metric_families(fetch(admin, "/metrics")[1])}
            restarts = {s.labels["worker"]: s.value for s in families["vw_worker_restarts"].samples
                        if s.name == "vw_worker_restarts_total" and s.labels["reason"] == "crash"}
            if restarts.get("0") == 1:
                break
            assert time.monotonic() < deadline, restarts
            time.sleep(0.1)
        # the counters were not lost with the worker: a scrape never goes backwards
        requests_after = {s.labels["class"]: s.value for s in families["vw_requests"].samples if s.name == "vw_requests_total"}
        assert requests_after["2xx"] >= requests["2xx"]
    finally:
        srv.stop()


def test_admin_port_in_use_is_one_line(docroot):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        from conftest import vw_cmd

        r = vw_cmd("serve", str(docroot), "--port", "0", "--admin-port", str(port))
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "admin" in r.stderr, r.stderr


def test_readyz_is_503_while_draining(docroot):
    """From the stop signal on, /readyz says 503 (a load balancer stops sending) while /healthz
    still says 200 and the workers finish what is in flight."""
    (docroot / "large.bin").write_bytes(os.urandom(32 << 20))
    admin = free_port()
    srv = Server([str(docroot), "--admin-port", str(admin), "--shutdown-timeout", "3"])
    try:
        srv.wait_for(__import__("re").compile(r"vw admin on"))
        assert fetch(admin, "/readyz") == (200, "ready\n")
        with connect(srv.port, timeout=10) as s:  # a response in flight keeps the drain going
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
            s.sendall(b"GET /large.bin HTTP/1.1\r\nHost: t\r\n\r\n")
            assert s.recv(65536).startswith(b"HTTP/1.1 200")
            srv.proc.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + 1
            while (ready := fetch(admin, "/readyz")) != (503, "not ready\n"):
                assert ready == (200, "ready\n") and time.monotonic() < deadline, ready
                time.sleep(0.02)
            assert srv.proc.poll() is None, "still draining"
            assert fetch(admin, "/healthz") == (200, "ok\n")
    finally:
        assert srv.stop() == 0


def test_readyz_is_503_while_a_worker_is_missing(docroot):
    """The supervisor's own readiness, served by its admin listener: every worker slot must hold
    a worker (between a worker's death and its replacement one is missing) and no stop asked."""
    from vw import admin
    from vw.config import ServeConfig
    from vw.supervisor import Supervisor, WorkerProc

    sup = Supervisor(ServeConfig(docroot=docroot, workers=2).validate())
    server = admin.AdminServer("127.0.0.1", 0, sup.stats, sup.worker_infos, sup.ready)
    server.start()
    try:
        assert fetch(server.port, "/readyz") == (503, "not ready\n"), "no worker yet"
        sup.workers = {os.getpid(): WorkerProc(0, 0, os.getpid(), time.monotonic())}
        assert fetch(server.port, "/readyz")[0] == 503, "worker 1 is missing"
        sup.workers[os.getppid()] = WorkerProc(1, 1, os.getppid(), time.monotonic())
        assert fetch(server.port, "/readyz") == (200, "ready\n")
        del sup.workers[os.getpid()]
        assert fetch(server.port, "/readyz")[0] == 503, "worker 0 died, not yet replaced"
        sup.workers[os.getpid()] = WorkerProc(0, 0, os.getpid(), time.monotonic())
        sup.stopping = True
        assert fetch(server.port, "/readyz")[0] == 503, "draining"
        assert fetch(server.port, "/healthz") == (200, "ok\n")
    finally:
        server.close()


def test_admin_host(docroot):
    """--admin-host puts the admin listener on that address only."""
    admin = free_port()
    srv = Server([str(docroot), "--admin-port", str(admin), "--admin-host", "127.0.0.2"])
    try:
        srv.wait_for(__import__("re").compile(rf"vw admin on http://127\.0\.0\.2:{admin}/metrics"))
        with urllib.request.urlopen(f"http://127.0.0.2:{admin}/healthz", timeout=5) as r:
            assert (r.status, r.read()) == (200, b"ok\n")
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", admin), timeout=2).close()
    finally:
        assert srv.stop() == 0


def test_stdout_log_is_written_in_pieces_under_4_kib(docroot):
    """To standard output (maybe a pipe shared by the workers, where only writes up to 4096 bytes
    are atomic) a batch is cut at line ends into writes of at most 4096 bytes. Standard output is
    a SOCK_SEQPACKET socket here, so each write(2) arrives as one record."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    srv = Server([str(docroot), "--access-log", "-", "--access-log-format", "json"], stdout=theirs.fileno())
    theirs.close()
    count = 400
    try:
        with connect(srv.port) as s:  # ~200-byte lines, all within a second or two: one batch or a few
            s.sendall(b"".join(b"GET /1b?%s HTTP/1.1\r\nHost: t\r\n\r\n" % (b"%04d" % i + b"q" * 60)
                               for i in range(count)))
            rd = Reader(s)
            for _ in range(count):
                assert rd.response().status == 200
    finally:
        assert srv.stop() == 0
    ours.settimeout(2)
    records = []
    try:
        while record := ours.recv(1 << 20):
            records.append(record)
    except socket.timeout:
        pass
    ours.close()
    assert sum(map(len, records)) > 3 * 4096, "enough lines to need several writes"
    assert all(len(r) <= 4096 and r.endswith(b"\n") for r in records), [len(r) for r in records]
    assert max(map(len, records)) > 3000, "batched: many lines per write, not one"
    lines = b"".join(records).decode().splitlines()
    assert [json.loads(x)["target"][4:8] for x in lines] == [b"%04d".decode() % i for i in range(count)]
