#!/usr/bin/env python3
"""WebSocket echo: vw (ASGI, and vw.App's @app.websocket) beside its peers (uvicorn with websockets, granian, socketify), each
one worker pinned to CPU 0, the load (bench/wsload, Rust, one thread per connection) pinned to
CPU 1, in one run with the servers interleaved. The same raw ASGI echo app (bench/apps/asgi.py)
on every server; binary messages, no compression offered.

Scenarios: CONNECTIONSxIN_FLIGHTxSIZE, e.g. 8x8x32 (8 connections, 8 messages in flight on each,
32 B each); bLISTENERSxIN_FLIGHTxSIZE broadcasts: one client sends to a room (bench/apps/asgi.py's
/room, which sends every message to every member) of LISTENERS others, keeping IN_FLIGHT
messages on their way; a message counts once for each listener it reached. Reported per server: messages/s and server CPU µs per message (the server's whole
process tree, /proc), medians over rounds, and each ratio to the best peer in the same run.

    bash bench/install-peers.sh
    python bench/ws.py --rounds 3 --duration 5 --out docs/bench/ws.json
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
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
sys.path.insert(0, str(ROOT / "python"))
sys.path.insert(0, str(HERE))
from vw.benchmark.cpu import tree_cpu_seconds  # noqa: E402
from wait import free_port, start, stop  # noqa: E402  (the same start and stop as the wait bench)

SCENARIOS = ["8x8x32", "100x2x32", "8x2x65536", "b1000x4x32"]


def servers(port: int) -> dict[str, list[str]]:
    peer = [str(PEERS_PY), "-m"]
    return {
        "vw-asgi": [sys.executable, "-m", "vw", "run", "asgi:app", "--interface", "asgi", "--workers", "1",
                    "--port", str(port)],
        "vw-native": [sys.executable, "-m", "vw", "run", "native:app", "--interface", "native", "--workers", "1",
                      "--port", str(port)],
        "uvicorn": [*peer, "uvicorn", "asgi:app", "--port", str(port), "--no-access-log", "--log-level", "warning"],
        "granian-asgi": [*peer, "granian", "--interface", "asgi", "asgi:app", "--workers", "1", "--port", str(port),
                         "--no-access-log", "--log-level", "warning"],
        "socketify-asgi": [*peer, "socketify", "asgi:app", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
                           "--interface", "asgi", "--disable-listen-log", "true"],
    }


def build_load() -> Path:
    subprocess.run(["cargo", "build", "--release", "-q"], cwd=HERE / "wsload", check=True)
    return HERE / "wsload" / "target" / "release" / "wsload"


def measure(load: Path, proc: subprocess.Popen, port: int, scenario: str, duration: float) -> dict:
    """One scenario: CONNSxIN_FLIGHTxSIZE echoes; bCONNSxIN_FLIGHTxSIZE broadcasts each message
    to CONNS listeners (a message counts once per listener it reached)."""
    broadcast = scenario.startswith("b")
    conns, in_flight, size = scenario.lstrip("b").split("x")
    cmd = [str(load), str(port), "/room" if broadcast else "/ws", conns, in_flight, size, str(duration)]
    p = subprocess.Popen(["taskset", "-c", "1", *cmd, *(["broadcast"] if broadcast else [])],
                         stdout=subprocess.PIPE, text=True)
    first = p.stdout.readline()
    if not first:  # the load gave up (the server refused its connections)
        p.wait(30)
        return {"msgs_per_s": 0.0, "cpu_us_per_msg": None, "server_cpu_percent": 0.0, "failed": int(conns)}
    assert json.loads(first)["event"] == "start"
    cpu0, t0 = tree_cpu_seconds(proc.pid), time.monotonic()
    result = json.loads(p.stdout.readline())
    cpu1, t1 = tree_cpu_seconds(proc.pid), time.monotonic()
    p.wait(30)
    n = result["messages"]
    return {"msgs_per_s": n / result["seconds"], "cpu_us_per_msg": (cpu1 - cpu0) * 1e6 / n if n else None,
            "server_cpu_percent": 100 * (cpu1 - cpu0) / (t1 - t0), "failed": result["failed"]}


def tree_rss_kib(root: int) -> int:
    """Resident memory of a process and all its descendants."""
    from vw.benchmark.cpu import all_proc_stats, tree_stats

    total = 0
    for st in tree_stats(root, all_proc_stats()):
        try:
            with open(f"/proc/{st.pid}/status") as f:
                total += next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
        except (OSError, StopIteration):
            pass
    return total


def idle(port: int, proc: subprocess.Popen, n: int) -> dict:
    """Open `n` WebSockets, each echoes one message, then all sit idle: the growth of the
    server's resident memory per socket."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, n + 1000)), hard))
    hello = (b"GET /ws HTTP/1.1\r\nHost: b\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
             b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
    frame = b"\x82\x85\x01\x02\x03\x04" + bytes(b ^ k for b, k in zip(b"hello", b"\x01\x02\x03\x04\x01"))

    def opened() -> socket.socket:
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.sendall(hello)
        got = b""
        while b"\r\n\r\n" not in got:
            got += s.recv(4096)
        assert got.startswith(b"HTTP/1.1 101"), got[:80]
        rest = got.split(b"\r\n\r\n", 1)[1]
        s.sendall(frame)
        while len(rest) < 7:
            rest += s.recv(4096)
        return s

    warm = [opened() for _ in range(50)]
    time.sleep(1)
    before = tree_rss_kib(proc.pid)
    socks = [opened() for _ in range(n)]
    time.sleep(2)
    after = tree_rss_kib(proc.pid)
    for s in warm + socks:
        s.close()
    return {"idle": n, "rss_kib_before": before, "rss_kib_after": after, "bytes_per_socket": (after - before) * 1024 / n}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=float, default=5)
    ap.add_argument("--servers", default="vw-asgi,vw-native,uvicorn,granian-asgi,socketify-asgi")
    ap.add_argument("--scenarios", default=",".join(SCENARIOS))
    ap.add_argument("--idle", type=int, default=10000, help="idle WebSockets for the memory figure (0: none)")
    ap.add_argument("--out")
    a = ap.parse_args()
    import resource

    # Servers and the load inherit the limit: 10,000 idle sockets, 1,000 listeners.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, a.idle + 2000)), hard))
    load = build_load()
    names, scenarios = a.servers.split(","), a.scenarios.split(",")
    runs: list[dict] = []
    for r in range(a.rounds):
        order = names if r % 2 == 0 else names[::-1]
        for name in order:
            port = free_port()
            proc = start(["taskset", "-c", "0", *servers(port)[name]], port)
            try:
                for sc in scenarios:
                    m = measure(load, proc, port, sc, a.duration)
                    runs.append({"round": r, "server": name, "scenario": sc, **m})
                    print(f"round {r} {name:13} {sc:10} {m['msgs_per_s']:>10,.0f} msg/s "
                          f"{m['cpu_us_per_msg'] or 0:7.2f} µs/msg  cpu {m['server_cpu_percent']:.0f}%", flush=True)
                if a.idle and r == 0:
                    m = idle(port, proc, a.idle)
                    runs.append({"round": r, "server": name, "scenario": f"idle{a.idle}", **m})
                    print(f"round {r} {name:13} {a.idle} idle WebSockets: +{(m['rss_kib_after'] - m['rss_kib_before']) / 1024:.1f} MiB, "
                          f"{m['bytes_per_socket']:,.0f} B each", flush=True)
            finally:
                stop(proc)
    medians: dict = {}
    for sc in scenarios:
        for name in names:
            rs = [x for x in runs if x["server"] == name and x["scenario"] == sc and x["cpu_us_per_msg"]]
            if rs:
                medians.setdefault(sc, {})[name] = {
                    "msgs_per_s": statistics.median(x["msgs_per_s"] for x in rs),
                    "cpu_us_per_msg": statistics.median(x["cpu_us_per_msg"] for x in rs)}
    for run in runs:
        if "idle" in run:
            medians.setdefault(run["scenario"], {})[run["server"]] = {"bytes_per_socket": run["bytes_per_socket"]}
    print("\nmedians (vw ÷ best peer: CPU per message, lower is better)")
    for sc, by in medians.items():
        if sc.startswith("idle"):
            print(f"{sc:10} " + "  ".join(f"{k} {v['bytes_per_socket']:,.0f} B" for k, v in by.items()))
            continue
        peers = [v["cpu_us_per_msg"] for k, v in by.items() if not k.startswith("vw")]
        best = min(peers) if peers else None
        for name, v in by.items():
            ratio = f"{v['cpu_us_per_msg'] / best:.2f}" if best else "-"
            print(f"{sc:10} {name:13} {v['msgs_per_s']:>10,.0f} msg/s {v['cpu_us_per_msg']:7.2f} µs/msg  ÷best peer {ratio}")
    if a.out:
        git = lambda *args: subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()  # noqa: E731
        # The shape bench/tables.py reads: a summary row per (server, scenario).
        summary = [{"server": name, "path": sc, "mode": "ws", **v} for sc, by in medians.items() for name, v in by.items()]
        Path(a.out).write_text(json.dumps({
            "command": "python bench/ws.py " + " ".join(sys.argv[1:]),
            "commit": {"sha": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))},
            "date": datetime.date.today().isoformat(),
            "config": {"servers": names, "rounds": a.rounds, "duration": a.duration},
            "summary": summary, "runs": runs}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
