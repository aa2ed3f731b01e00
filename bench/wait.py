#!/usr/bin/env python3
"""Applications that behave like real ones, vw beside its peers, each with 2 workers and its
default options (the way a user starts it), in one run:

- wait: a view that waits 10 ms (a database query: a blocking sleep for WSGI and sync vw.App,
  `await asyncio.sleep(0.01)` for ASGI and async vw.App), `wrk -t2 -c64`: req/s and p99;
- sse: time from the request to the first of five server-sent events made 0.2 s apart (WSGI);
- stream: a 200 MiB generated response read by a client at 40 MB/s: how much the server's
  processes grew (peak RSS of its process tree over its RSS before), WSGI.

    bash bench/install-peers.sh                         # granian, uvicorn, gunicorn in a venv
    python bench/wait.py --rounds 2 --duration 8 --out docs/bench/wait.json

Servers are not pinned (2 workers share the machine's 2 CPUs with wrk); rounds interleave the
servers. Writes a results JSON (command, commit, every run, medians) that bench/tables.py reads.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
APPS = HERE / "apps"
PEERS_PY = HERE / ".peers-venv" / "bin" / "python"


def servers(port: int) -> dict[str, tuple[list[str], list[str]]]:
    """name: (command, the wait paths it is measured on)."""
    vw = [sys.executable, "-m", "vw", "run"]
    peer = [str(PEERS_PY), "-m"]
    common = ["--host", "127.0.0.1", "--port", str(port), "--workers", "2"]
    return {
        "vw-wsgi": ([*vw, "wsgi:app", "--interface", "wsgi", *common], ["/wait"]),
        "vw-native": ([*vw, "native:app", "--interface", "native", *common], ["/wait", "/await"]),
        "vw-asgi": ([*vw, "asgi:app", "--interface", "asgi", *common], ["/wait"]),
        "granian-wsgi": ([*peer, "granian", "--interface", "wsgi", "wsgi:app", *common, "--no-access-log",
                          "--log-level", "warning"], ["/wait"]),
        "granian-asgi": ([*peer, "granian", "--interface", "asgi", "asgi:app", *common, "--no-access-log",
                          "--log-level", "warning"], ["/wait"]),
        "gunicorn-gthread": ([*peer, "gunicorn", "-w", "2", "-k", "gthread", "--threads", "16", "-b",
                              f"127.0.0.1:{port}", "--log-level", "warning", "wsgi:app"], ["/wait"]),
        "uvicorn": ([*peer, "uvicorn", "asgi:app", "--host", "127.0.0.1", "--port", str(port), "--workers", "2",
                     "--no-access-log", "--log-level", "warning"], ["/wait"]),
    }


WSGI = {"vw-wsgi", "granian-wsgi", "gunicorn-gthread"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(cmd: list[str], port: int) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT / "python"))  # vw from this checkout
    proc = subprocess.Popen(cmd, cwd=APPS, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
                s.sendall(b"GET / HTTP/1.1\r\nHost: b\r\n\r\n")
                if s.recv(100).startswith(b"HTTP/1.1 200"):
                    time.sleep(0.5)  # every worker up
                    return proc
        except OSError:
            time.sleep(0.1)
    stop(proc)
    raise SystemExit(f"{cmd[:4]} did not start on port {port}")


def stop(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(10)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()


def wrk(port: int, path: str, duration: float) -> dict:
    out = subprocess.run(["wrk", "-t2", "-c64", f"-d{duration:g}s", "--latency", f"http://127.0.0.1:{port}{path}"],
                         capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)\b", out)
    p99_ms = float(p99.group(1)) * {"us": 0.001, "ms": 1, "s": 1000}[p99.group(2)] if p99 else None
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errs = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    errors = (int(bad.group(1)) if bad else 0) + (sum(map(int, errs.groups())) if errs else 0)
    return {"req_s": rps, "p99_ms": p99_ms, "errors": errors}


def first_event(port: int) -> float:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        t0 = time.monotonic()
        s.sendall(b"GET /events HTTP/1.1\r\nHost: b\r\n\r\n")
        data = b""
        while b"data: 0" not in data:
            chunk = s.recv(65536)
            if not chunk:
                raise SystemExit("no event")
            data += chunk
        return time.monotonic() - t0


def tree_rss_kib(pid: int) -> int:
    """RSS of a process and all its descendants."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/status") as f:
                total += next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
            with open(f"/proc/{p}/task/{p}/children") as f:
                todo += [int(c) for c in f.read().split()]
        except (OSError, StopIteration):
            pass
    return total


def stream_growth(port: int, pid: int, rate: float = 40e6) -> tuple[float, int]:
    """(MiB the server grew while a 40 MB/s client read 200 MiB, bytes read)."""
    before = tree_rss_kib(pid)
    peak, got = before, 0
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 16)
        s.sendall(b"GET /big HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n")
        t0 = time.monotonic()
        while True:
            chunk = s.recv(1 << 16)
            if not chunk:
                break
            got += len(chunk)
            ahead = got / rate - (time.monotonic() - t0)
            if ahead > 0:
                time.sleep(ahead)
            if got % (4 << 20) < len(chunk):
                peak = max(peak, tree_rss_kib(pid))
    return (peak - before) / 1024, got


def commit() -> dict:
    sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                                capture_output=True, text=True).stdout.strip())
    return {"sha": sha, "dirty": dirty}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--duration", type=float, default=8)
    ap.add_argument("--servers", default=",".join(servers(0)))
    ap.add_argument("--out", default=str(HERE / "results" / "wait.json"))
    args = ap.parse_args()
    names = args.servers.split(",")
    if not PEERS_PY.exists() and any(not n.startswith("vw-") for n in names):
        raise SystemExit("the peers are not installed: bash bench/install-peers.sh")
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed (apt-get install wrk)")
    runs = []
    for rnd in range(1, args.rounds + 1):
        for name in names:
            port = free_port()
            cmd, paths = servers(port)[name]
            proc = start(cmd, port)
            try:
                for path in paths:
                    r = wrk(port, path, args.duration)
                    runs.append({"round": rnd, "server": name, "path": path, "mode": "wait", **r})
                    print(f"round {rnd} {name} {path}: {r['req_s']:,.0f} req/s, p99 {r['p99_ms']} ms", flush=True)
                if name in WSGI:
                    t = first_event(port)
                    runs.append({"round": rnd, "server": name, "path": "/events", "mode": "sse", "first_event_s": t})
                    grew, got = stream_growth(port, proc.pid)
                    runs.append({"round": rnd, "server": name, "path": "/big", "mode": "stream",
                                 "rss_growth_mib": grew, "bytes": got})
                    print(f"round {rnd} {name}: first event {t:.3f} s, 200 MiB stream +{grew:.1f} MiB", flush=True)
            finally:
                stop(proc)
    summary = []
    keys = {"wait": ("req_s", "p99_ms", "errors"), "sse": ("first_event_s",), "stream": ("rss_growth_mib", "bytes")}
    for key in dict.fromkeys((r["server"], r["path"], r["mode"]) for r in runs):
        rows = [r for r in runs if (r["server"], r["path"], r["mode"]) == key]
        med = {k: statistics.median(r[k] for r in rows if r.get(k) is not None) for k in keys[key[2]]
               if any(r.get(k) is not None for r in rows)}
        summary.append({"server": key[0], "path": key[1], "mode": key[2], **med})
    result = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "command": "python bench/wait.py " + " ".join(sys.argv[1:]), "argv": sys.argv, "commit": commit(),
              "config": {"servers": names, "rounds": args.rounds, "duration": args.duration, "workers": 2,
                         "connections": 64},
              "machine": f"{os.cpu_count()} CPUs, kernel {os.uname().release}, Python {sys.version.split()[0]}",
              "runs": runs, "summary": summary}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
