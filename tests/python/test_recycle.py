"""Worker recycling (issue 15): --max-requests (with jitter) and --max-rss replace a worker by a
new one on the same CPU and socket, then let the old one drain: nothing is lost under load, each
replacement is logged with its reason and counted in /metrics."""

from __future__ import annotations

import re
import shutil
import subprocess
import time

from prometheus_client.parser import text_string_to_metric_families

from conftest import free_port, get, run_app, vw_cmd

RECYCLED = re.compile(r"vw: worker 0 pid (\d+) (served (\d+) requests \(--max-requests (\d+)\)|uses (\d+) MiB \(--max-rss (\d+)\)); "
                      r"a new one takes its place, the old one drains")


def restarts(admin: int) -> dict[str, float]:
    import urllib.request

    text = urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics", timeout=5).read().decode()
    fams = {f.name: f for f in text_string_to_metric_families(text)}
    return {s.labels["reason"]: s.value for s in fams["vw_worker_restarts"].samples
            if s.name == "vw_worker_restarts_total" and s.labels["worker"] == "0"}


def test_max_requests_under_load_loses_nothing():
    wrk = shutil.which("wrk")
    assert wrk, "wrk is needed (make test installs it)"
    admin = free_port()
    s = run_app("leaky_app:app", "--max-requests", "1000", "--max-requests-jitter", "50", "--admin-port", str(admin))
    try:
        s.wait_for(re.compile(r"vw admin on"))
        out = subprocess.run([wrk, "-t1", "-c50", "-d4s", f"http://127.0.0.1:{s.port}/"], capture_output=True,
                             text=True, timeout=30).stdout
        assert "Socket errors" not in out and "Non-2xx" not in out, (out, s.lines[-5:])
        total = int(re.search(r"(\d+) requests in", out).group(1))
        deadline = time.monotonic() + 5
        while True:  # the log's lines reach us a little after the counter moves
            counted = restarts(admin)
            lines = [m for m in map(RECYCLED.search, s.lines) if m]
            if counted["max_requests"] == len(lines) or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert len(lines) >= 2, s.lines[-10:]
        for m in lines:
            assert 1000 <= int(m.group(4)) <= 1050 and int(m.group(3)) >= int(m.group(4)), m.group(0)
        assert len({m.group(1) for m in lines}) == len(lines), "each recycled once"
        assert counted["max_requests"] == len(lines) and counted["crash"] == 0 and counted["max_rss"] == 0, counted
        assert len(lines) <= total // 1000 + 1, (len(lines), total)
        assert get(s.port, "/").status == 200
    finally:
        assert s.stop() == 0


def test_max_rss_replaces_a_leaking_worker():
    admin = free_port()
    s = run_app("leaky_app:app", "--max-rss", "120", "--admin-port", str(admin))
    try:
        s.wait_for(re.compile(r"vw admin on"))
        first = get(s.port, "/").body.split()[0]
        for _ in range(150):  # 150 MiB kept
            r = get(s.port, "/leak")
            assert r.status == 200
        m = s.wait_for(RECYCLED, timeout=10)
        assert m.group(1) == first.decode() and int(m.group(5)) > 120, m.group(0)
        deadline = time.monotonic() + 5
        while True:  # the old one drains (it may answer a little longer); the new one answers
            pid, kept = get(s.port, "/").body.split()
            if pid != first:
                break
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert kept == b"0", "the new worker starts with nothing leaked"
        assert restarts(admin)["max_rss"] == 1
    finally:
        assert s.stop() == 0


def test_recycling_options_are_checked():
    r = vw_cmd("serve", "--max-requests-jitter", "10", "--port", "0")
    assert r.returncode == 2 and "--max-requests-jitter needs --max-requests" in r.stderr, r.stderr
    r = vw_cmd("serve", "--max-rss", "-1", "--port", "0")
    assert r.returncode == 2 and "--max-rss must be 0 (off) or more" in r.stderr, r.stderr
