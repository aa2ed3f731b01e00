"""The report of a run: each measured run and the medians over rounds with their ratios to the
floor and to nginx, as tables, results.md and results.json (with the machine and the commit)."""
from __future__ import annotations

import dataclasses
import json
import os
import platform
import statistics
import subprocess
from dataclasses import dataclass
from pathlib import Path

from vw.benchmark.servers import FILE_SERVERS
from vw.benchmark.tools import find_sbin

HERE = Path(__file__).resolve().parent


@dataclass
class RunResult:
    server: str
    path: str
    mode: str
    round: int
    requests: int
    requests_per_s: float
    cpu_s: float
    cpu_us_per_request: float
    p99_ms: float | None
    socket_errors: int
    non_2xx_3xx: int
    server_core_busy: float = 0.0  # % of the server's core in use, whoever used it
    wrk_core_busy: float = 0.0     # % of wrk's core in use
    connections: int = 0           # wrk's -c for this run

    @property
    def errors(self) -> int:
        return self.socket_errors + self.non_2xx_3xx


@dataclass
class Summary:
    server: str
    path: str
    mode: str
    rounds: int
    requests_per_s: float
    cpu_us_per_request: float
    p99_ms: float | None
    errors: int
    cpu_ratio: float | None = None   # CPU/request divided by the floor's
    rps_ratio: float | None = None   # req/s divided by the floor's
    p99_ratio: float | None = None   # p99 divided by the floor's
    # The same against nginx (sendfile on), as Debian ships it; None when
    # nginx is not in the run.
    nginx_cpu_ratio: float | None = None
    nginx_rps_ratio: float | None = None


def median_or_none(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def summarize(runs: list[RunResult]) -> list[Summary]:
    """Medians per (path, mode, server); ratios to the floor's and to nginx's
    run of the same path and mode."""
    groups: dict[tuple[str, str, str], list[RunResult]] = {}
    for r in runs:
        groups.setdefault((r.path, r.mode, r.server), []).append(r)
    rows = {}
    for (path, mode, server), rs in groups.items():
        rows[path, mode, server] = Summary(
            server=server, path=path, mode=mode, rounds=len(rs),
            requests_per_s=statistics.median(r.requests_per_s for r in rs),
            cpu_us_per_request=statistics.median(r.cpu_us_per_request for r in rs),
            p99_ms=median_or_none([r.p99_ms for r in rs]),
            errors=sum(r.errors for r in rs))
    for (path, mode, _), row in rows.items():
        floor = rows.get((path, mode, "floor"))
        if floor:
            row.cpu_ratio = ratio(row.cpu_us_per_request, floor.cpu_us_per_request)
            row.rps_ratio = ratio(row.requests_per_s, floor.requests_per_s)
            row.p99_ratio = ratio(row.p99_ms, floor.p99_ms)
        nginx = rows.get((path, mode, "nginx"))
        if nginx:
            row.nginx_cpu_ratio = ratio(row.cpu_us_per_request, nginx.cpu_us_per_request)
            row.nginx_rps_ratio = ratio(row.requests_per_s, nginx.requests_per_s)
    return list(rows.values())


def fmt(value: float | None, digits: int) -> str:
    return "–" if value is None else f"{value:,.{digits}f}"


def summary_table(rows: list[Summary]) -> str:
    """The medians; the columns against nginx only when nginx is in the run."""
    with_nginx = any(r.server == "nginx" for r in rows)
    lines = ["| path | mode | server | req/s | CPU µs/req | p99 ms | errors "
             "| CPU/req ÷ floor | req/s ÷ floor | p99 ÷ floor |"
             + (" CPU/req ÷ nginx | req/s ÷ nginx |" if with_nginx else ""),
             "|---|---|---|--:|--:|--:|--:|--:|--:|--:|" + ("--:|--:|" if with_nginx else "")]
    for r in rows:
        lines.append(
            f"| {r.path} | {r.mode} | {r.server} | {fmt(r.requests_per_s, 0)} "
            f"| {fmt(r.cpu_us_per_request, 2)} | {fmt(r.p99_ms, 2)} | {r.errors} "
            f"| {fmt(r.cpu_ratio, 2)} | {fmt(r.rps_ratio, 2)} | {fmt(r.p99_ratio, 2)} |"
            + (f" {fmt(r.nginx_cpu_ratio, 2)} | {fmt(r.nginx_rps_ratio, 2)} |"
               if with_nginx else ""))
    return "\n".join(lines)


def runs_table(runs: list[RunResult]) -> str:
    lines = ["| round | path | mode | server | connections | requests | req/s | CPU s "
             "| CPU µs/req | p99 ms | socket errors | non-2xx/3xx | server core busy % "
             "| wrk core busy % |",
             "|--:|---|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|"]
    for r in runs:
        lines.append(
            f"| {r.round} | {r.path} | {r.mode} | {r.server} | {r.connections} "
            f"| {r.requests:,} "
            f"| {fmt(r.requests_per_s, 0)} | {r.cpu_s:.2f} "
            f"| {fmt(r.cpu_us_per_request, 2)} | {fmt(r.p99_ms, 2)} "
            f"| {r.socket_errors} | {r.non_2xx_3xx} "
            f"| {r.server_core_busy:.0f} | {r.wrk_core_busy:.0f} |")
    return "\n".join(lines)


def first_line(cmd: list[str]) -> str | None:
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    out = (res.stdout + res.stderr).strip()
    return out.splitlines()[0] if out else None


def machine_info() -> dict[str, object]:
    cpu_model = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "kernel": platform.release(),
        "cpu": cpu_model,
        "python": platform.python_version(),
        "wrk": (first_line(["wrk", "-v"]) or "").split(" [")[0] or None,
        "nginx": first_line([find_sbin("nginx"), "-v"]) if find_sbin("nginx") else None,
        "h2o": first_line([find_sbin("h2o"), "-v"]) if find_sbin("h2o") else None,
    }


def git_commit(where: Path = HERE) -> dict[str, object] | None:
    """The commit of the checkout the harness runs from, and whether tracked files differ from it
    (then the figures measured code that no commit holds); None outside a git checkout."""
    try:
        sha = subprocess.run(["git", "-C", str(where), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=10)
        if sha.returncode != 0:
            return None
        status = subprocess.run(["git", "-C", str(where), "status", "--porcelain", "--untracked-files=no"],
                                capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return {"sha": sha.stdout.strip(), "dirty": bool(status.stdout.strip())}


def connections_text(cfg: dict) -> str:
    """'300 connections', with the per-path counts that apply to this run."""
    special = {p: n for p, n in cfg.get("path_connections", {}).items()
               if p in cfg["paths"]}
    return f"{cfg['connections']} connections" + "".join(
        f", {n} for {p}" for p, n in special.items())


def render_markdown(meta: dict, runs: list[RunResult], rows: list[Summary]) -> str:
    m = meta["machine"]
    cfg = meta["config"]
    files = (any(p != "/1b" for p in cfg["paths"])
             and any(s in FILE_SERVERS[1:] for s in cfg.get("servers", ())))
    return "\n".join([
        "# vw benchmark",
        "",
        f"- date: {meta['date']}",
        f"- command: `{meta['command']}`",
        *([f"- commit: {meta['commit']['sha']}"
           + (" with changes not committed" if meta["commit"].get("dirty") else "")]
          if meta.get("commit") else []),
        f"- machine: {m['nproc']} CPUs ({m['cpu']}), kernel {m['kernel']}, "
        f"Python {m['python']}, {m['wrk']}" + "".join(
            f", {m[k]}" for k in ("nginx", "h2o") if m.get(k)),
        *(["- versions: " + ", ".join(f"{k} {v}" for k, v in meta["versions"].items())]
          if meta.get("versions") else []),
        f"- method: server pinned to CPU {cfg['server_cpu']}, wrk (1 thread, "
        f"{connections_text(cfg)}, {cfg['duration']:g} s) to CPU "
        f"{cfg['wrk_cpu']}; URL paths {', '.join(cfg['paths'])}; CPU = user+system time of the "
        f"server's process tree from /proc; medians over {cfg['rounds']} "
        "interleaved round(s); errors = socket errors + 4xx/5xx answers (wrk's "
        "\"non-2xx or 3xx\"), summed; every path was checked to answer 2xx before "
        "and after each run (wrk takes a 3xx for a success)."
        + (" The floor answers each path with a body as long as the file it names "
           "(1 byte for a path that names none of them), from memory: CPU/req ÷ floor "
           "is the cost over the kernel's own for those bytes." if "floor" in cfg.get("servers", ()) else "")
        + (" CPU/req ÷ nginx compares with nginx (sendfile on), as Debian ships it."
           if files else ""),
        "",
        "## Medians",
        "",
        summary_table(rows),
        "",
        "## Every run",
        "",
        runs_table(runs),
        "",
    ])


def write_results(out: Path, meta: dict, runs: list[RunResult],
                  rows: list[Summary]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.md").write_text(render_markdown(meta, runs, rows))
    data = {**meta, "runs": [dataclasses.asdict(r) for r in runs],
            "summary": [dataclasses.asdict(r) for r in rows]}
    (out / "results.json").write_text(json.dumps(data, indent=2) + "\n")
