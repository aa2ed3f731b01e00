"""Tests for the benchmark harness: vw.benchmark (what `vw bench` runs, in the wheel), bench/harness
(what bench/run.py adds: the app servers, the file-size runs, its options) and the floor server
(vw/benchmark/floor.c).

The wrk texts below are real wrk 4.1.0 output captured on the dev machine
(floor, nginx, and two throwaway misbehaving servers for the error lines).
"""
from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import shlex
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
RUN_PY = REPO / "bench" / "run.py"


from vw.benchmark import cpu, process, report, runner, servers as vw_servers, tools, wrk  # noqa: E402
from vw.benchmark.floor import build_floor  # noqa: E402

sys.path.insert(0, str(REPO / "bench"))  # bench/harness/, as bench/run.py imports it
from harness import apps, cli, files  # noqa: E402
from harness.servers import Context, RepoServers  # noqa: E402

SERVERS = RepoServers()  # the servers bench/run.py runs

WRK_PLAIN = """\
Running 1s test @ http://127.0.0.1:18081/1b
  1 threads and 50 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   173.92us   81.63us   2.28ms   87.33%
    Req/Sec   164.83k     4.51k  168.07k    90.91%
  Latency Distribution
     50%  152.00us
     75%  174.00us
     90%  274.00us
     99%  459.00us
  180325 requests in 1.10s, 22.53MB read
Requests/sec: 163886.97
Transfer/sec:     20.47MB
"""

WRK_PIPELINED_FLOOR = """\
Running 1s test @ http://127.0.0.1:18081/1b
  1 threads and 50 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   125.61us   97.30us   1.94ms   52.62%
    Req/Sec     1.77M    32.60k    1.82M    80.00%
  Latency Distribution
     50%  217.00us
     75%    0.00us
     90%    0.00us
     99%    0.00us
  1756352 requests in 1.00s, 219.42MB read
Requests/sec: 1753994.63
Transfer/sec:    219.13MB
"""

WRK_PIPELINED_NGINX = """\
Running 1s test @ http://127.0.0.1:18090/1b
  1 threads and 300 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    26.11ms   13.69ms  92.79ms   59.87%
    Req/Sec   103.41k     7.55k  110.38k    90.00%
  Latency Distribution
     50%   25.89ms
     75%   37.64ms
     90%   43.92ms
     99%   58.12ms
  103111 requests in 1.02s, 23.96MB read
Requests/sec: 100627.81
Transfer/sec:     23.38MB
"""

WRK_ERRORS = """\
Running 2s test @ http://127.0.0.1:18095/x
  1 threads and 30 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   114.71us  251.32us  10.33ms   98.94%
    Req/Sec    97.77k     9.86k  120.93k    80.00%
  Latency Distribution
     50%   90.00us
     75%  122.00us
     90%  151.00us
     99%  418.00us
  194099 requests in 2.00s, 8.51MB read
  Socket errors: connect 0, read 14, write 0, timeout 0
  Non-2xx or 3xx responses: 194099
Requests/sec:  97027.52
Transfer/sec:      4.26MB
"""

WRK_SECONDS = """\
Running 5s test @ http://127.0.0.1:18096/
  1 threads and 10 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.50s   566.16us   1.50s    80.00%
    Req/Sec     3.00      0.00     3.00    100.00%
  Latency Distribution
     50%    1.50s 
     75%    1.50s 
     90%    1.50s 
     99%    1.50s 
  15 requests in 5.01s, 585.00B read
Requests/sec:      2.99
Transfer/sec:     116.77B
"""


# --------------------------------------------------------------------------
# wrk output


def test_parse_plain():
    r = wrk.parse_wrk(WRK_PLAIN)
    assert r.requests == 180325
    assert r.duration_s == pytest.approx(1.10)
    assert r.requests_per_s == pytest.approx(163886.97)
    assert r.p99_ms == pytest.approx(0.459)
    assert r.socket_errors == {"connect": 0, "read": 0, "write": 0, "timeout": 0}
    assert r.non_2xx_3xx == 0
    assert r.errors == 0


def test_parse_pipelined_with_millisecond_p99():
    r = wrk.parse_wrk(WRK_PIPELINED_NGINX)
    assert r.requests == 103111
    assert r.duration_s == pytest.approx(1.02)
    assert r.requests_per_s == pytest.approx(100627.81)
    assert r.p99_ms == pytest.approx(58.12)
    assert r.errors == 0


def test_parse_pipelined_zero_percentile_is_unknown():
    # wrk prints 0.00us for upper percentiles at times (mostly pipelined):
    # that is no latency, so the parser reports none rather than zero.
    r = wrk.parse_wrk(WRK_PIPELINED_FLOOR)
    assert r.requests == 1756352
    assert r.requests_per_s == pytest.approx(1753994.63)
    assert r.p99_ms is None


def test_parse_socket_errors_and_non_2xx():
    r = wrk.parse_wrk(WRK_ERRORS)
    assert r.requests == 194099
    assert r.socket_errors == {"connect": 0, "read": 14, "write": 0, "timeout": 0}
    assert r.non_2xx_3xx == 194099
    assert r.errors == 14 + 194099
    assert r.p99_ms == pytest.approx(0.418)


def test_parse_seconds_units():
    r = wrk.parse_wrk(WRK_SECONDS)
    assert r.requests == 15
    assert r.duration_s == pytest.approx(5.01)
    assert r.requests_per_s == pytest.approx(2.99)
    assert r.p99_ms == pytest.approx(1500.0)


@pytest.mark.parametrize("value, unit, ms", [
    ("459.00", "us", 0.459),
    ("58.12", "ms", 58.12),
    ("1.50", "s", 1500.0),
    ("2.00", "m", 120_000.0),
    ("1.00", "h", 3_600_000.0),
])
def test_time_units(value, unit, ms):
    assert wrk.time_to_ms(value, unit) == pytest.approx(ms)


def test_time_unit_unknown():
    with pytest.raises(ValueError):
        wrk.time_to_ms("1", "ns")


def test_parse_rejects_non_wrk_text():
    with pytest.raises(ValueError):
        wrk.parse_wrk("unable to connect to 127.0.0.1:18082 Connection refused\n")


def test_parse_without_latency_distribution():
    text = "\n".join(l for l in WRK_PLAIN.splitlines() if "%  " not in l)
    assert wrk.parse_wrk(text).p99_ms is None


# --------------------------------------------------------------------------
# /proc CPU accounting


def test_parse_proc_stat_odd_command_name():
    line = ("4242 (a) (b c) S 17 4242 4242 0 -1 4194560 100 0 0 0 "
            "250 50 7 3 20 0 3 0 1000 1000000 100 18446744073709551615\n")
    st = cpu.parse_proc_stat(line)
    assert (st.pid, st.ppid, st.cpu_ticks, st.children_ticks) == (4242, 17, 300, 10)


def test_read_proc_stat_of_this_process():
    st = cpu.read_proc_stat(os.getpid())
    assert st.pid == os.getpid()
    assert st.ppid == os.getppid()
    assert cpu.read_proc_stat(2**22 + 12345) is None  # above pid_max: no such pid


def test_tree_cpu_counts_this_process_and_children():
    before = cpu.tree_cpu_seconds(os.getpid())
    end = time.process_time() + 0.3
    while time.process_time() < end:
        pass
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        tree = cpu.tree_stats(os.getpid(), cpu.all_proc_stats())
        assert child.pid in {st.pid for st in tree}
    finally:
        child.kill()
        child.wait()
    assert cpu.tree_cpu_seconds(os.getpid()) - before >= 0.2


# --------------------------------------------------------------------------
# summary


def _run(server, mode, rnd, rps, cpu_us, p99, errors=0, path="/1b"):
    return report.RunResult(server=server, path=path, mode=mode, round=rnd, requests=1000,
                            requests_per_s=rps, cpu_s=cpu_us * 1000 / 1e6,
                            cpu_us_per_request=cpu_us, p99_ms=p99,
                            socket_errors=errors, non_2xx_3xx=0)


def test_summary_medians_and_floor_ratios():
    runs = [_run("floor", "plain", 1, 100, 2.0, 1.0),
            _run("floor", "plain", 2, 120, 4.0, 3.0),
            _run("floor", "plain", 3, 110, 3.0, 2.0),
            _run("vw", "plain", 1, 50, 6.0, 4.0, errors=1),
            _run("vw", "plain", 2, 55, 9.0, None),
            _run("vw", "plain", 3, 60, 7.5, 6.0, errors=2)]
    rows = {r.server: r for r in report.summarize(runs)}
    floor, vw = rows["floor"], rows["vw"]
    assert (floor.requests_per_s, floor.cpu_us_per_request, floor.p99_ms) == (110, 3.0, 2.0)
    assert floor.cpu_ratio == 1.0
    assert vw.cpu_us_per_request == 7.5 and vw.cpu_ratio == pytest.approx(2.5)
    assert vw.rps_ratio == pytest.approx(55 / 110)
    assert vw.p99_ms == 5.0 and vw.p99_ratio == pytest.approx(2.5)
    assert vw.errors == 3
    assert "| /1b | plain | vw |" in report.summary_table(list(rows.values()))


def test_summary_ratios_are_per_path():
    runs = [_run("floor", "plain", 1, 100, 2.0, 1.0, path="/"),
            _run("floor", "plain", 1, 100, 4.0, 1.0, path="/json"),
            _run("vw-native", "plain", 1, 50, 6.0, 2.0, path="/"),
            _run("vw-native", "plain", 1, 50, 6.0, 2.0, path="/json")]
    rows = {(r.path, r.server): r for r in report.summarize(runs)}
    assert rows["/", "vw-native"].cpu_ratio == pytest.approx(3.0)
    assert rows["/json", "vw-native"].cpu_ratio == pytest.approx(1.5)
    table = report.summary_table(list(rows.values()))
    assert "| /json | plain | vw-native |" in table


def test_summary_ratios_to_nginx():
    runs = [_run("floor", "plain", 1, 100, 2.0, 1.0, path="/4k"),
            _run("nginx", "plain", 1, 80, 8.0, 2.0, path="/4k"),
            _run("nginx-nosendfile", "plain", 1, 60, 10.0, 2.0, path="/4k"),
            _run("h2o", "plain", 1, 40, 6.0, 2.0, path="/4k"),
            _run("vw", "plain", 1, 120, 4.0, 2.0, path="/4k"),
            _run("vw", "pipelined", 1, 120, 4.0, None, path="/4k"),  # no nginx here
            _run("vw", "plain", 1, 120, 4.0, 2.0, path="/4m")]       # nor here
    rows = {(r.server, r.mode, r.path): r for r in report.summarize(runs)}
    vw = rows["vw", "plain", "/4k"]
    assert vw.nginx_cpu_ratio == pytest.approx(0.5)
    assert vw.nginx_rps_ratio == pytest.approx(1.5)
    assert vw.cpu_ratio == pytest.approx(2.0)  # the floor's columns stay
    assert rows["nginx", "plain", "/4k"].nginx_cpu_ratio == 1.0
    assert rows["nginx-nosendfile", "plain", "/4k"].nginx_cpu_ratio == pytest.approx(1.25)
    assert rows["h2o", "plain", "/4k"].nginx_cpu_ratio == pytest.approx(0.75)
    assert rows["vw", "pipelined", "/4k"].nginx_cpu_ratio is None
    assert rows["vw", "plain", "/4m"].nginx_cpu_ratio is None
    table = report.summary_table(list(rows.values())).splitlines()
    assert table[0].endswith("| p99 ÷ floor | CPU/req ÷ nginx | req/s ÷ nginx |")
    assert table[1].count("|") == table[0].count("|")
    line = next(l for l in table if l.startswith("| /4k | plain | vw |"))
    assert line.endswith("| 2.00 | 1.20 | 2.00 | 0.50 | 1.50 |")
    assert next(l for l in table if l.startswith("| /4m | plain | vw |")).endswith(
        "| – | – |")
    summary = {(r["server"], r["mode"], r["path"]): r
               for r in json.loads(json.dumps([dataclasses.asdict(r)
                                               for r in rows.values()]))}
    assert summary["h2o", "plain", "/4k"]["nginx_cpu_ratio"] == pytest.approx(0.75)
    assert summary["h2o", "plain", "/4k"]["nginx_rps_ratio"] == pytest.approx(0.5)


def test_summary_without_nginx_has_no_nginx_columns():
    rows = report.summarize([_run("floor", "plain", 1, 100, 2.0, 1.0),
                             _run("vw", "plain", 1, 50, 6.0, 4.0)])
    assert all(r.nginx_cpu_ratio is None for r in rows)
    assert "nginx" not in report.summary_table(rows)


def test_results_files_hold_the_nginx_ratio_and_connections(tmp_path):
    runs = [_run("nginx", "plain", 1, 80, 8.0, 2.0, path="/4m"),
            _run("h2o", "plain", 1, 40, 6.0, 2.0, path="/4m")]
    for r in runs:
        r.connections = 10
    meta = {"date": "d", "command": "c", "versions": {}, "commit": {"sha": "abc123", "dirty": True},
            "machine": {"nproc": 2, "cpu": "x", "kernel": "k", "python": "3",
                        "wrk": "wrk 4.1.0", "nginx": "nginx version: nginx/1.22.1",
                        "h2o": "h2o version 2.2.5"},
            "config": {"server_cpu": 0, "wrk_cpu": 1, "connections": 300,
                       "servers": ["nginx", "h2o"],
                       "path_connections": {"/4m": 10, "/other": 5},
                       "duration": 3, "paths": ["/100b", "/4m"], "rounds": 1}}
    report.write_results(tmp_path, meta, runs, report.summarize(runs))
    data = json.loads((tmp_path / "results.json").read_text())
    h2o = next(r for r in data["summary"] if r["server"] == "h2o")
    assert h2o["nginx_cpu_ratio"] == pytest.approx(0.75)
    assert {r["connections"] for r in data["runs"]} == {10}
    md = (tmp_path / "results.md").read_text()
    assert "CPU/req ÷ nginx" in md
    assert "300 connections, 10 for /4m," in md and "/other" not in md
    assert "nginx/1.22.1, h2o version 2.2.5" in md
    assert "- commit: abc123 with changes not committed" in md
    assert "CPU/req ÷ nginx compares with nginx (sendfile on)" in md
    assert "1-byte" not in md and "the floor" not in md.split("## Medians")[0], "no floor in this run"
    meta["config"]["servers"] = ["floor", "nginx"]
    report.write_results(tmp_path, meta, runs, report.summarize(runs))
    md = (tmp_path / "results.md").read_text()
    # since each sized file got its own floor, the floor's body is as long as the file
    assert ("The floor answers each path with a body as long as the file it names (1 byte for a "
            "path that names none of them)") in md
    assert "same 1-byte reply" not in md


def test_a_path_that_does_not_answer_2xx_is_an_error(monkeypatch, tmp_path):
    """wrk counts only 4xx/5xx as errors: a redirect must stop the run, before wrk measures it."""
    answers = {"/ok": b"200 OK", "/moved": b"301 Moved Permanently", "/gone": b"404 Not Found"}
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve():
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                path = conn.recv(4096).split(b" ")[1].decode()
                conn.sendall(b"HTTP/1.1 " + answers[path] + b"\r\nContent-Length: 0\r\n\r\n")

    threading.Thread(target=serve, daemon=True).start()
    try:
        process.check_2xx("x", port, "/ok")
        for path in ("/moved", "/gone"):
            with pytest.raises(tools.BenchError, match=f"^x answers 'HTTP/1.1 {answers[path][:3].decode()}"):
                process.check_2xx("x", port, path)
        # measure() checks before wrk runs: no wrk is started for a path that redirects
        monkeypatch.setattr(runner, "start_server", lambda *a, **k: (None, port))
        monkeypatch.setattr(runner, "stop_server", lambda proc: None)
        monkeypatch.setattr(runner, "run_wrk", lambda *a: pytest.fail("wrk ran against a redirect"))
        args = cli.parse_args(["--servers", "vw", "--paths", "/moved"])
        ctx = Context(workdir=tmp_path, docroot=tmp_path)
        with pytest.raises(tools.BenchError, match="must answer 2xx"):
            runner.measure("vw", "/moved", "plain", 1, args, ctx, SERVERS)
    finally:
        listener.close()


def test_results_record_the_commit_measured(tmp_path):
    commit = report.git_commit()
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True)
    assert head.returncode == 0, "the tests run from a git checkout"
    assert commit["sha"] == head.stdout.strip() and isinstance(commit["dirty"], bool)
    assert report.git_commit(tmp_path) is None, "not a checkout: no commit"


def test_rotation_interleaves_servers():
    servers = ["floor", "vw", "nginx"]
    firsts = [runner.rotated(servers, n)[0] for n in range(3)]
    assert firsts == servers


# --------------------------------------------------------------------------
# the floor server, over raw sockets


@pytest.fixture(scope="module")
def floor_port(tmp_path_factory):
    binary = build_floor(tmp_path_factory.mktemp("build"))
    port = process.free_port()
    proc = subprocess.Popen([str(binary), str(port)])
    try:
        deadline = time.monotonic() + 5
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.02)
        yield port
    finally:
        proc.kill()
        proc.wait()


REQUEST = b"GET /1b HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
REPLY = (b"HTTP/1.1 200 OK\r\nServer: fl\r\nDate: Thu, 26 Nov 2026 16:31:53 GMT\r\n"
         b"Content-Type: application/octet-stream\r\n"
         b"Last-Modified: Thu, 26 Nov 2026 16:31:53 GMT\r\nAccept-Ranges: bytes\r\n"
         b"ETag: \"18eba5c1dd0c42a9-1\"\r\nContent-Length: 1\r\n\r\nx")


def _read_exactly(sock, size):
    data = b""
    while len(data) < size:
        chunk = sock.recv(1 << 20)
        if not chunk:
            break
        data += chunk
    return data


def _assert_no_more(sock):
    sock.settimeout(0.3)
    with pytest.raises(socket.timeout):
        sock.recv(1)


def test_floor_answers_100_pipelined_requests_in_one_write(floor_port):
    with socket.create_connection(("127.0.0.1", floor_port), timeout=5) as s:
        s.sendall(REQUEST * 100)
        data = _read_exactly(s, 100 * len(REPLY))
        assert data == REPLY * 100
        _assert_no_more(s)


def test_floor_finds_terminators_split_across_reads(floor_port):
    with socket.create_connection(("127.0.0.1", floor_port), timeout=5) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        stream = REQUEST * 3
        cuts = [0, len(REQUEST) - 3, len(REQUEST) - 1, 2 * len(REQUEST) - 2, len(stream)]
        for a, b in zip(cuts, cuts[1:]):
            s.sendall(stream[a:b])
            time.sleep(0.05)  # let each piece be read on its own
        assert _read_exactly(s, 3 * len(REPLY)) == REPLY * 3
        _assert_no_more(s)


def test_floor_survives_replies_larger_than_the_socket_buffer(floor_port):
    count = 20000  # ~2.8 MB of replies: partial writes, then EPOLLOUT
    with socket.create_connection(("127.0.0.1", floor_port), timeout=10) as s:
        sender = threading.Thread(target=s.sendall, args=(REQUEST * count,))
        sender.start()
        data = _read_exactly(s, count * len(REPLY))
        sender.join()
        assert len(data) == count * len(REPLY)
        assert data == REPLY * count


def test_floor_with_a_body_size_answers_that_many_bytes(tmp_path):
    binary = build_floor(tmp_path / "build")
    port = process.free_port()
    proc = subprocess.Popen([str(binary), str(port), "65536"])
    try:
        deadline = time.monotonic() + 5
        while True:
            try:
                s = socket.create_connection(("127.0.0.1", port), timeout=5)
                break
            except OSError:
                assert time.monotonic() < deadline and proc.poll() is None
                time.sleep(0.02)
        with s:
            s.sendall(REQUEST * 2)
            head = REPLY[: REPLY.index(b"Content-Length")] + b"Content-Length: 65536\r\n\r\n"
            one = head + b"x" * 65536
            assert _read_exactly(s, 2 * len(one)) == one * 2
    finally:
        proc.kill()
        proc.wait()
    bad = subprocess.run([str(binary), "1", "-5"], capture_output=True, text=True)
    assert bad.returncode == 2 and "usage" in bad.stderr


# --------------------------------------------------------------------------
# the harness end to end


def _require_wrk():
    if shutil.which("wrk") is None:
        pytest.fail("wrk is not installed: apt-get install wrk (the benchmark "
                    "smoke test needs it; CI installs it)")


def test_harness_smoke(tmp_path):
    """The floor and nginx, end to end. nginx is part of what this names: missing, the test fails
    (make deps installs it) rather than quietly measuring the floor alone."""
    _require_wrk()
    assert tools.find_sbin("nginx"), "nginx is not installed: apt-get install nginx-light (make deps does)"
    servers = "floor,nginx"
    out = tmp_path / "results"
    res = subprocess.run(
        [sys.executable, str(RUN_PY), "--servers", servers, "--rounds", "1",
         "--duration", "1", "--modes", "plain,pipelined",
         "--out", str(out)],
        capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "| /1b | plain | floor |" in res.stdout
    data = json.loads((out / "results.json").read_text())
    assert (out / "results.md").read_text().startswith("# vw benchmark")
    runs = data["runs"]
    assert {(r["server"], r["mode"]) for r in runs} == {
        (s, m) for s in servers.split(",") for m in ("plain", "pipelined")}
    for r in runs:
        assert r["requests"] > 0, r
        assert r["socket_errors"] == 0 and r["non_2xx_3xx"] == 0, r
        assert r["cpu_us_per_request"] > 0, r
    assert data["machine"]["nproc"] == os.cpu_count()
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True)
    assert data["commit"]["sha"] == head.stdout.strip()
    assert data["argv"][:2] == ["python", "bench/run.py"] and data["command"] == shlex.join(data["argv"])
    assert cli.parse_args(data["argv"][2:]).servers == ["floor", "nginx"], "the command reruns it"


def test_harness_without_wrk_says_how_to_install(tmp_path):
    res = subprocess.run([sys.executable, str(RUN_PY), "--servers", "floor",
                          "--out", str(tmp_path)],
                         capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PATH": str(tmp_path)})
    assert res.returncode == 1
    assert res.stderr.strip() == ("bench: error: wrk not found on PATH: "
                                  "apt-get install wrk")


# --------------------------------------------------------------------------
# application servers: commands, choice of interpreter, groups and paths


GRANIAN = ["--host", "127.0.0.1", "--port", "8123", "--workers", "1",
           "--runtime-mode", "st", "--runtime-threads", "1",
           "--runtime-blocking-threads", "1", "--blocking-threads", "1",
           "--http", "1", "--no-ws", "--no-access-log", "--log-level", "warning"]

APP_COMMANDS = {
    **{f"vw-{i}-uring": ["vw", "run", f"{i}:app", "--interface", i, "--host", "127.0.0.1",
                         "--port", "8123", "--workers", "1", "--io", "uring"]
       for i in ("native", "wsgi", "asgi")},
    "vw-native": ["vw", "run", "native:app", "--interface", "native",
                  "--host", "127.0.0.1", "--port", "8123", "--workers", "1"],
    "vw-wsgi": ["vw", "run", "wsgi:app", "--interface", "wsgi",
                "--host", "127.0.0.1", "--port", "8123", "--workers", "1"],
    "vw-asgi": ["vw", "run", "asgi:app", "--interface", "asgi",
                "--host", "127.0.0.1", "--port", "8123", "--workers", "1"],
    "granian-rsgi": ["/py", "-m", "granian", "--interface", "rsgi", "rsgi:app", *GRANIAN],
    "granian-asgi": ["/py", "-m", "granian", "--interface", "asgi", "asgi:app", *GRANIAN],
    "granian-wsgi": ["/py", "-m", "granian", "--interface", "wsgi", "wsgi:app", *GRANIAN],
    "uvicorn": ["/py", "-m", "uvicorn", "asgi:app", "--host", "127.0.0.1",
                "--port", "8123", "--workers", "1", "--http", "httptools",
                "--loop", "uvloop", "--no-access-log", "--log-level", "warning"],
    "bjoern": ["/py", "bjoern_run.py", "8123"],
    "socketify": ["/py", "-m", "socketify", "wsgi:app", "--host", "127.0.0.1",
                  "--port", "8123", "--workers", "1", "--interface", "wsgi",
                  "--disable-listen-log", "true"],
    "socketify-asgi": ["/py", "-m", "socketify", "asgi:app", "--host", "127.0.0.1",
                       "--port", "8123", "--workers", "1", "--interface", "asgi",
                       "--disable-listen-log", "true"],
}


def test_every_app_server_has_a_command_test():
    assert set(APP_COMMANDS) == set(apps.APP_SERVERS)


@pytest.mark.parametrize("name", sorted(APP_COMMANDS))
def test_app_server_command(name, tmp_path):
    ctx = Context(workdir=tmp_path, docroot=tmp_path, vw_cmd=["vw"],
                  peer_python={p: "/py" for p in apps.PEERS})
    assert SERVERS.command(name, 8123, ctx) == APP_COMMANDS[name]
    assert SERVERS.cwd(name, ctx) == REPO / "bench" / "apps"
    spec = next(a for a in APP_COMMANDS[name] if a.endswith(":app") or a.endswith(".py"))
    module = spec.split(":")[0].removesuffix(".py")
    assert (REPO / "bench" / "apps" / f"{module}.py").is_file()


def test_docroot_files(tmp_path):
    docroot = SERVERS.docroot(tmp_path)
    sizes = {f.name: f.stat().st_size for f in docroot.iterdir()}
    assert sizes == {"1b": 1, "100.html": 100, "100b": 100, "4k": 4096,
                     "64k": 65536, "4m": 4 << 20}
    big = (docroot / "4m").read_bytes()
    assert big[:4096] == (docroot / "4k").read_bytes()  # one seeded stream
    assert big == files.sized_file_bytes(4 << 20)        # the same every run
    import zlib
    assert len(zlib.compress(big[:65536])) > 65000      # not compressible
    assert all("." not in name for name in files.SIZED_FILES)  # octet-stream


def _conf(tmp_path, name):
    ctx = Context(workdir=tmp_path, docroot=tmp_path / "docroot",
                  nginx_bin="/usr/sbin/nginx", h2o_bin="/usr/bin/h2o")
    cmd = SERVERS.command(name, 8123, ctx)
    conf = Path(cmd[cmd.index("-c") + 1])
    assert conf.parent.parent == tmp_path and conf.parent.name.startswith(name + "-")
    return cmd, conf.read_text()


@pytest.mark.parametrize("name, sendfile", [("nginx", "on"), ("nginx-nosendfile", "off")])
def test_nginx_config(name, sendfile, tmp_path):
    cmd, text = _conf(tmp_path, name)
    prefix = Path(cmd[cmd.index("-p") + 1])
    assert cmd == ["/usr/sbin/nginx", "-c", str(prefix / "nginx.conf"), "-p", str(prefix),
                   "-e", str(prefix / "error.log")]
    assert "@" not in text
    directives = [l.strip() for l in text.splitlines()
                  if l.strip() and not l.strip().startswith("#")]
    assert f"sendfile {sendfile};" in directives
    assert [d for d in directives if d.startswith("sendfile")] == [f"sendfile {sendfile};"]
    assert "listen 127.0.0.1:8123;" in directives
    assert f"root {tmp_path / 'docroot'};" in directives
    assert "worker_processes 1;" in directives and "access_log off;" in directives


def test_nginx_configs_differ_in_sendfile_only(tmp_path):
    (cmd_on, on), (cmd_off, off) = _conf(tmp_path, "nginx"), _conf(tmp_path, "nginx-nosendfile")
    prefix_on, prefix_off = cmd_on[cmd_on.index("-p") + 1], cmd_off[cmd_off.index("-p") + 1]
    on, off = on.replace(prefix_on, "PREFIX"), off.replace(prefix_off, "PREFIX")
    differ = [(a, b) for a, b in zip(on.splitlines(), off.splitlines()) if a != b]
    assert len(on.splitlines()) == len(off.splitlines())
    assert differ == [("    sendfile on;", "    sendfile off;")]


def test_h2o_config(tmp_path):
    cmd, text = _conf(tmp_path, "h2o")
    assert cmd[:2] == ["/usr/bin/h2o", "-c"] and len(cmd) == 3
    prefix = Path(cmd[2]).parent
    assert "@" not in text
    lines = [l for l in text.splitlines() if l.strip() and not l.lstrip().startswith("#")]
    assert "num-threads: 1" in lines
    assert ("user: root" in lines) == (os.getuid() == 0)
    assert f"error-log: {prefix / 'error.log'}" in lines
    assert not any("access-log" in l for l in lines)
    assert "  host: 127.0.0.1" in lines and "  port: 8123" in lines
    assert f"        file.dir: {tmp_path / 'docroot'}" in lines


def test_template_left_unfilled_is_an_error(tmp_path):
    template = tmp_path / "t.tmpl"
    template.write_text("port @PORT@; root @DOCROOT@;")
    assert vw_servers.render_template(template, {"PORT": 1, "DOCROOT": "/d"}) == "port 1; root /d;"
    with pytest.raises(ValueError, match="@DOCROOT@"):
        vw_servers.render_template(template, {"PORT": 1})


def test_files_group_and_path_connections():
    args = cli.parse_args(["--servers", "files"])
    assert args.servers == ["floor", "vw", "nginx", "nginx-nosendfile", "h2o"]
    assert args.explicit == set() and args.paths == ["/1b"]
    assert args.path_connections == {"/4m": 10}
    assert runner.connections_for("/4m", args) == 10
    assert runner.connections_for("/4k", args) == 300
    args = cli.parse_args(["--servers", "vw,h2o", "--paths", "/100b,/4m",
                          "--connections", "50", "--path-connections", "/4m=5,/64k=20"])
    assert args.explicit == {"vw", "h2o"}
    assert [runner.connections_for(p, args) for p in ("/100b", "/64k", "/4m")] == [50, 20, 5]
    assert cli.parse_args(["--path-connections", ""]).path_connections == {}
    for bad in ("/4m", "4m=3", "/4m=0", "/4m=x"):
        with pytest.raises(SystemExit):
            cli.parse_args(["--path-connections", bad])


def test_missing_h2o_is_skipped_in_a_group_and_an_error_by_name(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(runner, "require_tool", lambda name, package: name)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    monkeypatch.setattr(vw_servers, "build_floor", lambda build_dir: Path("/f"))
    monkeypatch.setattr(vw_servers, "vw_command", lambda: ["vw"])
    monkeypatch.setattr(vw_servers, "find_sbin", lambda name: None if name == "h2o" else f"/x/{name}")
    for d in "ab":
        (tmp_path / d).mkdir()
    chosen, ctx = runner.prepare(cli.parse_args(["--servers", "files"]), tmp_path / "a", SERVERS)
    assert chosen == ["floor", "vw", "nginx", "nginx-nosendfile"]
    assert ctx.nginx_bin == "/x/nginx"
    assert capsys.readouterr().err.strip() == (
        "skipping h2o: h2o not found: apt-get install h2o")
    with pytest.raises(tools.BenchError, match="^h2o: h2o not found"):
        runner.prepare(cli.parse_args(["--servers", "vw,h2o"]), tmp_path / "b", SERVERS)


def test_static_servers_run_in_the_workdir(tmp_path):
    ctx = Context(workdir=tmp_path, docroot=tmp_path, floor_bin=Path("/f"))
    assert SERVERS.command("floor", 8123, ctx) == ["/f", "8123", "1"]
    # against a sized file, the floor answers with a body of that size: the kernel's cost of it
    assert SERVERS.command("floor", 8123, ctx, "/64k") == ["/f", "8123", "65536"]
    assert SERVERS.command("floor", 8123, ctx, "/json") == ["/f", "8123", "1"]
    assert SERVERS.cwd("floor", ctx) == tmp_path


def test_find_python_takes_the_first_that_imports(tmp_path):
    missing = str(tmp_path / "no-python")
    assert apps.find_python(("json",), [missing, sys.executable]) == (sys.executable, "?")
    assert apps.find_python(("pytest",), [sys.executable]) == (sys.executable, pytest.__version__)
    assert apps.find_python(("json", "no_such_module_for_vw"), [sys.executable]) is None


def test_peer_pythons_start_with_the_peers_venv(tmp_path, monkeypatch):
    venv = tmp_path / ".peers-venv"
    monkeypatch.setattr(apps, "PEERS_VENV", venv)
    pythons = apps.peer_pythons()
    assert sys.executable in pythons and not any(p.startswith(str(venv)) for p in pythons), \
        "no venv: the interpreters on PATH and this one"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").symlink_to(sys.executable)
    pythons = apps.peer_pythons()
    assert pythons[0] == str(venv / "bin" / "python") and sys.executable in pythons


def test_server_groups_and_default_paths():
    args = cli.parse_args(["--servers", "apps"])
    assert args.servers == ["floor", *apps.VW_APP_SERVERS, *apps.PEERS] and args.explicit == set()
    assert args.paths == ["/", "/json"]
    args = cli.parse_args(["--servers", "apps-uring"])
    assert args.servers == ["floor", "vw-native", "vw-native-uring", "vw-wsgi", "vw-wsgi-uring",
                            "vw-asgi", "vw-asgi-uring"]
    assert args.paths == ["/", "/json"], "the app paths for vw's interfaces on the ring too"
    args = cli.parse_args(["--servers", "floor,vw-wsgi,uvicorn", "--paths", "/json"])
    assert args.explicit == {"floor", "vw-wsgi", "uvicorn"}
    assert args.paths == ["/json"]
    args = cli.parse_args([])
    assert (args.servers, args.explicit, args.paths) == (["floor", "vw", "nginx"], set(), ["/1b"])
    assert cli.parse_args(["--path", "/1b,/100.html"]).paths == ["/1b", "/100.html"]
    with pytest.raises(SystemExit):
        cli.parse_args(["--paths", "json"])
    with pytest.raises(SystemExit):
        cli.parse_args(["--servers", "gunicorn"])


def test_missing_peer_is_skipped_in_a_group_and_an_error_by_name(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(runner, "require_tool", lambda name, package: name)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    monkeypatch.setattr(vw_servers, "build_floor", lambda build_dir: Path("/f"))
    monkeypatch.setattr(vw_servers, "vw_command", lambda: ["vw"])
    monkeypatch.setattr(apps, "peer_pythons", lambda: [str(tmp_path / "no-python")])
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    chosen, _ = runner.prepare(cli.parse_args(["--servers", "apps"]), tmp_path / "a", SERVERS)
    assert chosen == ["floor", "vw-native", "vw-wsgi", "vw-asgi"]
    err = capsys.readouterr().err.splitlines()
    assert len(err) == len(apps.PEERS)
    assert err[0].startswith("skipping granian-rsgi: no Python here imports granian")
    with pytest.raises(tools.BenchError, match="^uvicorn: no Python here imports uvicorn, "
                                               "httptools, uvloop"):
        runner.prepare(cli.parse_args(["--servers", "floor,uvicorn"]), tmp_path / "b", SERVERS)


# --------------------------------------------------------------------------
# the apps answer alike in every interface (called in-process, no server)


def _load_app(name):
    spec = importlib.util.spec_from_file_location(
        f"vw_bench_app_{name}", REPO / "bench" / "apps" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.app


EXPECTED = {"/": (200, b"Hello, world!"),
            "/json": (200, b'{"message": "Hello, world!"}'),
            "/nope": (404, b"Not Found")}


@pytest.mark.parametrize("path", sorted(EXPECTED))
def test_wsgi_app(path):
    app, seen = _load_app("wsgi"), {}
    def start_response(status, headers):
        seen["status"], seen["headers"] = int(status.split()[0]), dict(headers)
    body = b"".join(app({"PATH_INFO": path, "REQUEST_METHOD": "GET"}, start_response))
    assert (seen["status"], body) == EXPECTED[path]
    assert seen["headers"]["Content-Length"] == str(len(body))


@pytest.mark.parametrize("path", sorted(EXPECTED))
def test_asgi_app(path):
    import asyncio
    app, sent = _load_app("asgi"), []
    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}
    async def send(message):
        sent.append(message)
    asyncio.run(app({"type": "http", "path": path, "method": "GET"}, receive, send))
    start, body = sent
    assert (start["status"], body["body"]) == EXPECTED[path]
    assert dict(start["headers"])[b"content-length"] == str(len(body["body"])).encode()


def test_asgi_app_lifespan():
    import asyncio
    app, sent = _load_app("asgi"), []
    events = iter([{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}])
    async def receive():
        return next(events)
    async def send(message):
        sent.append(message["type"])
    asyncio.run(app({"type": "lifespan"}, receive, send))
    assert sent == ["lifespan.startup.complete", "lifespan.shutdown.complete"]


@pytest.mark.parametrize("path", sorted(EXPECTED))
def test_rsgi_app(path):
    import asyncio
    import types
    app, sent = _load_app("rsgi"), []
    class Proto:
        def response_bytes(self, status, headers, body):
            sent.append((status, body))
    asyncio.run(app(types.SimpleNamespace(path=path, method="GET"), Proto()))
    assert sent == [EXPECTED[path]]


def test_vw_bench_runs_the_seed_experiment_with_progress_table_chart_and_json(tmp_path):
    out = tmp_path / "out"
    res = subprocess.run([sys.executable, "-m", "vw", "bench", "--duration", "2", "--out", str(out)],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "[" in res.stderr and "100%" in res.stderr and "run 1/2" in res.stderr, res.stderr  # the progress bar
    assert "| /1b | plain | vw |" in res.stdout and "| /1b | pipelined | vw |" in res.stdout, res.stdout
    data = json.loads((out / "results.json").read_text())
    assert {r["mode"] for r in data["summary"]} == {"plain", "pipelined"}
    assert all(r["requests"] > 0 for r in data["runs"])
    # the command recorded is one `vw bench` takes: it reruns this
    assert data["command"] == f"vw bench --rounds 1 --duration 2 --connections 300 --out {out}"
    from vw.cli import build_parser
    again = build_parser().parse_args(data["argv"][1:])
    assert (again.command, again.against, again.duration, again.out) == ("bench", [], 2, str(out))
    assert f"- command: `{data['command']}`" in (out / "results.md").read_text()
    png = (out / "results.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000


def test_vw_bench_against_what_is_missing_is_an_error(tmp_path, monkeypatch, capsys):
    """--against names servers to measure: one that is not installed stops the run, naming the
    package (its help says so), rather than being left out of the results."""
    from vw.benchmark import command
    from vw.cli import build_parser

    monkeypatch.setattr(vw_servers, "find_sbin", lambda name: None)
    monkeypatch.setattr(runner, "measure", lambda *a: pytest.fail("measured without nginx"))
    args = build_parser().parse_args(["bench", "--against", "nginx", "--out", str(tmp_path / "o")])
    assert command.main(args) == 1
    err = capsys.readouterr().err
    assert "vw bench: nginx: nginx not found: apt-get install nginx-light" in err, err
    assert not (tmp_path / "o").exists()
    assert command.rerun_command(args) == ["vw", "bench", "--against", "nginx", "--rounds", "1", "--duration",
                                           "10", "--connections", "300", "--out", str(tmp_path / "o")]
    help_text = " ".join(build_parser()._subparsers._group_actions[0].choices["bench"].format_help().split())
    assert "each must be installed" in help_text and "skipped" not in help_text


def test_vw_bench_without_wrk_says_what_to_install(tmp_path):
    env = dict(os.environ, PATH=str(tmp_path))  # no wrk anywhere
    res = subprocess.run([sys.executable, "-m", "vw", "bench", "--out", str(tmp_path / "o")],
                         capture_output=True, text=True, timeout=60, env=env)
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and "apt-get install wrk" in res.stderr
