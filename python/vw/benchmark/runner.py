"""One benchmark run: what it measures (Config), the servers found and the docroot made (prepare),
each server measured in turn (measure: started pinned, warmed, its CPU taken from /proc around one
wrk run), rounds interleaving the servers, and the report written (run). `vw bench` and
bench/run.py both run it."""
from __future__ import annotations

import datetime
import os
import re
import shlex
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from vw.benchmark.cpu import busy_percent, read_core_times, tree_cpu_seconds
from vw.benchmark.process import check_2xx, start_server, stop_server
from vw.benchmark.report import (RunResult, Summary, git_commit, machine_info, summarize,
                                 summary_table, write_results)
from vw.benchmark.servers import Context, Servers
from vw.benchmark.tools import BenchError, require_tool
from vw.benchmark.wrk import MODES, run_wrk, wrk_command

# Fewer connections for large files: 4 MiB answers to 300 connections (or 50
# pipelining 16 each) keep responses waiting over wrk's 2 s timeout, which
# wrk counts as errors.
DEFAULT_PATH_CONNECTIONS = {"/4m": 10}
SETTLE_S = 0.25  # idle pause around the measured run, so closes are counted


@dataclass
class Config:
    """What a run measures: bench/run.py's options, or the ones `vw bench` sets."""
    servers: list[str]
    explicit: set[str]  # the servers named one by one: missing, they stop the run (a group skips them)
    rounds: int
    duration: float     # seconds per measured run
    connections: int
    paths: list[str]
    out: Path
    path_connections: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_PATH_CONNECTIONS))
    modes: list[str] = field(default_factory=lambda: list(MODES))
    docroot: Path | None = None  # serve this directory instead of a generated one
    server_cpu: int = 0
    wrk_cpu: int = 1

    def __post_init__(self) -> None:
        if self.rounds < 1 or self.duration <= 0 or self.connections < 1:
            raise ValueError("--rounds, --duration and --connections must be positive")


def expand_servers(items: list[str] | None,
                   groups: dict[str, tuple[str, ...]]) -> tuple[list[str], set[str]]:
    """The servers to run and those named one by one (explicit: an error if
    missing). Groups (static, apps) and the default only skip what is missing."""
    if items is None:
        return list(groups["static"]), set()
    servers = [s for item in items for s in groups.get(item, (item,))]
    return list(dict.fromkeys(servers)), {s for s in items if s not in groups}


def connections_for(path: str, cfg: Config) -> int:
    """wrk's connection count for path: --path-connections, else --connections."""
    return cfg.path_connections.get(path, cfg.connections)


def prepare(cfg: Config, workdir: Path, catalog: Servers) -> tuple[list[str], Context]:
    """Check tools, build the floor, pick the servers; fail with one line."""
    require_tool("wrk", "wrk")
    require_tool("taskset", "util-linux")
    usable = os.sched_getaffinity(0)
    for cpu in (cfg.server_cpu, cfg.wrk_cpu):
        if cpu not in usable:
            raise BenchError(f"CPU {cpu} is not available (usable: {sorted(usable)})")
    if cfg.server_cpu == cfg.wrk_cpu:
        raise BenchError("--server-cpu and --wrk-cpu must differ")

    if cfg.docroot is not None:
        if not cfg.docroot.is_dir():
            raise BenchError(f"--docroot {cfg.docroot} is not a directory")
        docroot = cfg.docroot.resolve()
    else:
        docroot = catalog.docroot(workdir)
    ctx = catalog.context(workdir=workdir, docroot=docroot)
    chosen = []
    for name in cfg.servers:
        msg = catalog.find(name, ctx)
        if msg is not None:
            if name in cfg.explicit:
                raise BenchError(f"{name}: {msg}")
            print(f"skipping {name}: {msg}", file=sys.stderr)
            continue
        chosen.append(name)
    if not chosen:
        raise BenchError("none of the servers asked for is installed")
    return chosen, ctx


def measure(name: str, path: str, mode: str, rnd: int, cfg: Config, ctx: Context,
            catalog: Servers) -> RunResult:
    conns = connections_for(path, cfg)
    slug = re.sub(r"[^A-Za-z0-9]+", "_", path).strip("_") or "root"
    log = ctx.workdir / f"{name}-{slug}-{mode}-r{rnd}.log"
    proc, port = start_server(name, lambda port: catalog.command(name, port, ctx, path),
                              cfg.server_cpu, catalog.cwd(name, ctx), log)
    try:
        check_2xx(name, port, path)
        warm = min(1.0, cfg.duration)
        run_wrk(wrk_command(port, path, mode, warm, conns, cfg.wrk_cpu), warm)
        time.sleep(SETTLE_S)
        cpu0 = tree_cpu_seconds(proc.pid)
        cores0 = read_core_times(cfg.server_cpu), read_core_times(cfg.wrk_cpu)
        wrk, _ = run_wrk(wrk_command(port, path, mode, cfg.duration,
                                     conns, cfg.wrk_cpu), cfg.duration)
        cores1 = read_core_times(cfg.server_cpu), read_core_times(cfg.wrk_cpu)
        time.sleep(SETTLE_S)
        cpu = tree_cpu_seconds(proc.pid) - cpu0
        check_2xx(name, port, path)
    finally:
        stop_server(proc)
    if wrk.requests == 0:
        raise BenchError(f"{name} ({path}, {mode}) completed no requests; see {log}")
    return RunResult(
        server=name, path=path, mode=mode, round=rnd, requests=wrk.requests,
        requests_per_s=wrk.requests_per_s, cpu_s=cpu,
        cpu_us_per_request=cpu * 1e6 / wrk.requests, p99_ms=wrk.p99_ms,
        socket_errors=sum(wrk.socket_errors.values()), non_2xx_3xx=wrk.non_2xx_3xx,
        server_core_busy=busy_percent(cores0[0], cores1[0]),
        wrk_core_busy=busy_percent(cores0[1], cores1[1]), connections=conns)


def rotated(items: list[str], n: int) -> list[str]:
    n %= len(items)
    return items[n:] + items[:n]


def describe(r: RunResult) -> str:
    p99 = "n/a" if r.p99_ms is None else f"{r.p99_ms:.2f} ms"
    return (f"{r.requests_per_s:,.0f} req/s, {r.cpu_us_per_request:.2f} µs CPU/req, "
            f"p99 {p99}, {r.errors} errors, cores busy {r.server_core_busy:.0f}% "
            f"(server) {r.wrk_core_busy:.0f}% (wrk)")


def run_seconds(cfg: Config) -> float:
    """About how long one measured run takes: start, warm-up, the run, pauses, stop."""
    return 1.5 + min(1.0, cfg.duration) + cfg.duration + 2 * SETTLE_S


def run(cfg: Config, catalog: Servers, command: list[str], on_run=None) -> list[Summary]:
    """Run the benchmark and write its report. `command`: the command line that reruns this,
    recorded with the results. `on_run(done, total, label, cfg)` is called before each measured
    run (vw bench draws its progress bar with it); without it, each run is told on stderr."""
    started = datetime.datetime.now(datetime.timezone.utc)
    with tempfile.TemporaryDirectory(prefix="vw-bench-") as tmp:
        servers, ctx = prepare(cfg, Path(tmp), catalog)
        runs = []
        width = max(len(s) for s in servers)
        total = cfg.rounds * len(cfg.paths) * len(cfg.modes) * len(servers)
        for rnd in range(1, cfg.rounds + 1):
            for path in cfg.paths:
                for mode in cfg.modes:
                    for name in rotated(servers, rnd - 1):
                        if on_run is not None:
                            on_run(len(runs), total, f"{name} {path} {mode} (round {rnd}/{cfg.rounds})", cfg)
                        r = measure(name, path, mode, rnd, cfg, ctx, catalog)
                        if on_run is None:
                            print(f"round {rnd}/{cfg.rounds} {path} {mode:9} "
                                  f"{name:{width}}: {describe(r)}",
                                  file=sys.stderr, flush=True)
                        runs.append(r)
    rows = summarize(runs)
    meta = {
        "date": started.isoformat(timespec="seconds"),
        "command": shlex.join(command),
        "argv": command,
        "commit": git_commit(),
        "machine": machine_info(),
        "versions": ctx.versions,
        "config": {"servers": servers, "modes": cfg.modes, "rounds": cfg.rounds,
                   "duration": cfg.duration, "connections": cfg.connections,
                   "path_connections": cfg.path_connections,
                   "paths": cfg.paths, "server_cpu": cfg.server_cpu,
                   "wrk_cpu": cfg.wrk_cpu,
                   "docroot": str(cfg.docroot) if cfg.docroot else None},
    }
    write_results(cfg.out, meta, runs, rows)
    if on_run is not None:
        on_run(total, total, "done", cfg)
    print(summary_table(rows))
    print(f"\nwrote {cfg.out / 'results.md'} and {cfg.out / 'results.json'}")
    return rows
