"""wrk: the command of one run (plain, or pipelined 16 deep by pipeline.lua beside this file), run
pinned to its CPU, and what it prints, parsed."""
from __future__ import annotations

import re
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path

from vw.benchmark.tools import BenchError

PIPELINE_LUA = Path(__file__).resolve().parent / "pipeline.lua"
MODES = ("plain", "pipelined")


@dataclass
class WrkResult:
    requests: int
    duration_s: float
    requests_per_s: float
    p99_ms: float | None
    socket_errors: dict[str, int]
    non_2xx_3xx: int

    @property
    def errors(self) -> int:
        return sum(self.socket_errors.values()) + self.non_2xx_3xx


_TIME_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}


def time_to_ms(value: str, unit: str) -> float:
    """Convert one of wrk's time figures (e.g. '812.33', 'us') to milliseconds."""
    try:
        return float(value) * _TIME_UNITS_MS[unit]
    except KeyError:
        raise ValueError(f"unknown wrk time unit {unit!r}") from None


_TIME = r"([\d.]+)(us|ms|s|m|h)"
_RE_TOTAL = re.compile(r"^\s*(\d+) requests in " + _TIME + r",", re.M)
_RE_RPS = re.compile(r"^Requests/sec:\s+([\d.]+)", re.M)
_RE_P99 = re.compile(r"^\s*99(?:\.0+)?%\s+" + _TIME + r"\s*$", re.M)
_RE_SOCKET = re.compile(
    r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")
_RE_NON2XX = re.compile(r"Non-2xx or 3xx responses: (\d+)")


def parse_wrk(text: str) -> WrkResult:
    """Parse the text wrk prints (run with --latency for the p99).

    p99_ms is None when wrk gives no distribution, or gives 0: wrk 4.1 has a
    known bug that prints 0.00us for upper percentiles, mostly with pipelining.
    """
    total = _RE_TOTAL.search(text)
    rps = _RE_RPS.search(text)
    if not total or not rps:
        raise ValueError("not wrk output: no 'N requests in' / 'Requests/sec' lines")
    p99 = _RE_P99.search(text)
    sock = _RE_SOCKET.search(text)
    non2xx = _RE_NON2XX.search(text)
    kinds = ("connect", "read", "write", "timeout")
    return WrkResult(
        requests=int(total.group(1)),
        duration_s=time_to_ms(total.group(2), total.group(3)) / 1000.0,
        requests_per_s=float(rps.group(1)),
        p99_ms=(time_to_ms(p99.group(1), p99.group(2)) or None) if p99 else None,
        socket_errors={k: int(sock.group(i + 1)) if sock else 0
                       for i, k in enumerate(kinds)},
        non_2xx_3xx=int(non2xx.group(1)) if non2xx else 0,
    )


def wrk_command(port: int, path: str, mode: str, duration: float,
                connections: int, cpu: int) -> list[str]:
    cmd = ["taskset", "-c", str(cpu), "wrk", "-t1", f"-c{connections}",
           f"-d{duration:g}s", "--latency"]
    if mode == "pipelined":
        cmd += ["-s", str(PIPELINE_LUA)]
    return cmd + [f"http://127.0.0.1:{port}{path}"]


def run_wrk(cmd: list[str], duration: float) -> tuple[WrkResult, str]:
    try:
        res = subprocess.run(cmd, capture_output=True, text=True,
                             timeout=duration + 60)
    except subprocess.TimeoutExpired:
        raise BenchError(f"wrk did not finish: {shlex.join(cmd)}") from None
    if res.returncode != 0:
        raise BenchError(f"wrk failed ({res.returncode}): {res.stderr.strip() or res.stdout.strip()}")
    try:
        return parse_wrk(res.stdout), res.stdout
    except ValueError as exc:
        raise BenchError(f"{exc}; wrk printed: {res.stdout.strip()!r}") from None
