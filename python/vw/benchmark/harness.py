"""Benchmark harness: vw against the "kernel floor" (floor.c), nginx, h2o and Python app servers.

Each server runs pinned to one CPU, wrk to another. Per run we measure the
CPU time the server's whole process tree spent (from /proc) and divide it by
the requests wrk completed. Rounds interleave the servers; the report gives
medians over rounds, ratios to the floor and, when nginx runs, to nginx.

    vw bench                                  # the seed experiment on vw (vw/benchmark/command.py)
    python bench/run.py [--servers floor,vw,nginx] [--rounds 3] [--duration 10]
                        [--connections 300] [--path-connections /4m=10]
                        [--modes plain,pipelined] [--paths /1b]
                        [--out DIR] [--docroot DIR]
    python bench/run.py --servers files --paths /100b,/4k,/64k,/4m   # file sizes
    python bench/run.py --servers apps --paths /,/json    # app benchmarks

Python 3.11 standard library only. See bench/README.md.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import importlib.util
import json
import os
import platform
import random
import re
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent  # the harness and its files, inside the vw package
FLOOR_SRC = HERE / "floor.c"
PIPELINE_LUA = HERE / "pipeline.lua"
NGINX_TEMPLATE = HERE / "nginx.conf.tmpl"
H2O_TEMPLATE = HERE / "h2o.conf.tmpl"
# Where results, the floor binary, the app benchmarks and the peers' venv are: the repository's
# bench/ when run from there (bench/run.py calls use_repo), else the current folder and a cache.
BUILD_DIR = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "vw" / "bench"
DEFAULT_OUT = Path("vw-bench")
APPS_DIR = Path("bench") / "apps"          # the app servers run here (module:app specs)
PEERS_VENV = Path("bench") / ".peers-venv"  # made by install-peers.sh
COMMAND = ["python", "bench/run.py"]


def use_repo(bench_dir: Path) -> None:
    """Run from the repository: results, build, apps and peers live in its bench/ folder."""
    global BUILD_DIR, DEFAULT_OUT, APPS_DIR, PEERS_VENV
    BUILD_DIR, DEFAULT_OUT = bench_dir / "build", bench_dir / "results"
    APPS_DIR, PEERS_VENV = bench_dir / "apps", bench_dir / ".peers-venv"

STATIC_SERVERS = ("floor", "vw", "nginx")
FILE_SERVERS = (*STATIC_SERVERS, "nginx-nosendfile", "h2o")
NGINX_SERVERS = {"nginx": True, "nginx-nosendfile": False}  # name: sendfile on?
VW_APP_SERVERS = ("vw-native", "vw-wsgi", "vw-asgi")
GRANIAN_FLAGS = ("--workers", "1", "--runtime-mode", "st", "--runtime-threads", "1",
                 "--runtime-blocking-threads", "1", "--blocking-threads", "1",
                 "--http", "1", "--no-ws", "--no-access-log", "--log-level", "warning")


@dataclass(frozen=True)
class Peer:
    """An app server from PyPI: the modules it needs, and its arguments after
    `python`. PORT in args is replaced by the port."""
    modules: tuple[str, ...]
    args: tuple[str, ...]


PEERS = {
    **{f"granian-{i}": Peer(("granian",), (
        "-m", "granian", "--interface", i, f"{i}:app", "--host", "127.0.0.1",
        "--port", "PORT", *GRANIAN_FLAGS)) for i in ("rsgi", "asgi", "wsgi")},
    "uvicorn": Peer(("uvicorn", "httptools", "uvloop"), (
        "-m", "uvicorn", "asgi:app", "--host", "127.0.0.1", "--port", "PORT",
        "--workers", "1", "--http", "httptools", "--loop", "uvloop",
        "--no-access-log", "--log-level", "warning")),
    "bjoern": Peer(("bjoern",), ("bjoern_run.py", "PORT")),
    **{name: Peer(("socketify",), (
        "-m", "socketify", f"{i}:app", "--host", "127.0.0.1", "--port", "PORT",
        "--workers", "1", "--interface", i, "--disable-listen-log", "true"))
       for name, i in (("socketify", "wsgi"), ("socketify-asgi", "asgi"))},
}
APP_SERVERS = VW_APP_SERVERS + tuple(PEERS)
ALL_SERVERS = FILE_SERVERS + APP_SERVERS
SERVER_GROUPS = {"static": STATIC_SERVERS, "files": FILE_SERVERS,
                 "apps": ("floor", *APP_SERVERS)}
STATIC_PATHS = ("/1b",)
# The docroot's files by size (name: bytes), for --paths /100b,/4k,/64k,/4m.
SIZED_FILES = {"100b": 100, "4k": 4096, "64k": 65536, "4m": 4 << 20}
DOCROOT_SEED = 5  # the sized files are bytes of random.Random(DOCROOT_SEED)
# Fewer connections for large files: 4 MiB answers to 300 connections (or 50
# pipelining 16 each) keep responses waiting over wrk's 2 s timeout, which
# wrk counts as errors.
DEFAULT_PATH_CONNECTIONS = "/4m=10"
APP_PATHS = ("/", "/json")
ALL_MODES = ("plain", "pipelined")
START_TIMEOUT_S = 10.0
STOP_GRACE_S = 5.0
SETTLE_S = 0.25  # idle pause around the measured run, so closes are counted


class BenchError(Exception):
    """A problem reported to the user as one line, without a traceback."""


# --------------------------------------------------------------------------
# wrk output


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


# --------------------------------------------------------------------------
# CPU accounting from /proc


@dataclass
class ProcStat:
    pid: int
    ppid: int
    cpu_ticks: int        # utime + stime: all threads, live and exited
    children_ticks: int   # cutime + cstime: children already waited for


def parse_proc_stat(text: str) -> ProcStat:
    """Parse the one line of /proc/PID/stat (see proc(5))."""
    head, sep, tail = text.rpartition(")")  # the command name may hold ') '
    if not sep:
        raise ValueError("not a /proc/PID/stat line")
    pid = int(head.split("(", 1)[0])
    fields = tail.split()  # fields[0] is field 3 (state) in proc(5) numbering
    field = lambda n: int(fields[n - 3])  # noqa: E731
    return ProcStat(pid=pid, ppid=field(4),
                    cpu_ticks=field(14) + field(15),
                    children_ticks=field(16) + field(17))


def read_proc_stat(pid: int) -> ProcStat | None:
    """The stat of a live process, or None if it is gone."""
    try:
        return parse_proc_stat(Path(f"/proc/{pid}/stat").read_text())
    except (FileNotFoundError, ProcessLookupError):
        return None


def all_proc_stats() -> dict[int, ProcStat]:
    stats = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            stat = read_proc_stat(int(entry.name))
            if stat is not None:
                stats[stat.pid] = stat
    return stats


def tree_stats(root: int, stats: dict[int, ProcStat]) -> list[ProcStat]:
    """root and all its descendants, found through the ppid links."""
    children: dict[int, list[int]] = {}
    for st in stats.values():
        children.setdefault(st.ppid, []).append(st.pid)
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        if pid in stats:
            found.append(stats[pid])
            todo.extend(children.get(pid, ()))
    return found


def tree_cpu_seconds(root: int) -> float:
    """CPU time (user+system, all threads) of a process and its descendants.

    Children that already exited and were reaped within the tree are counted
    through their parent's cutime/cstime, so a snapshot difference stays right.
    """
    ticks = sum(st.cpu_ticks + st.children_ticks
                for st in tree_stats(root, all_proc_stats()))
    return ticks / os.sysconf("SC_CLK_TCK")


def parse_cpu_line(line: str) -> tuple[int, int]:
    """(busy, total) jiffies from one 'cpuN ...' line of /proc/stat."""
    fields = [int(x) for x in line.split()[1:9]]  # user .. steal; guest is in user
    idle = fields[3] + fields[4]                   # idle + iowait
    return sum(fields) - idle, sum(fields)


def read_core_times(cpu: int) -> tuple[int, int]:
    prefix = f"cpu{cpu} "
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith(prefix):
            return parse_cpu_line(line)
    raise BenchError(f"CPU {cpu} not in /proc/stat")


def busy_percent(before: tuple[int, int], after: tuple[int, int]) -> float:
    total = after[1] - before[1]
    return 100.0 * (after[0] - before[0]) / total if total else 0.0


# --------------------------------------------------------------------------
# tools and servers


def require_tool(name: str, package: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise BenchError(f"{name} not found on PATH: apt-get install {package}")
    return path


def build_floor(build_dir: Path | None = None) -> Path:
    """Compile floor.c (when missing or stale) and return the binary's path."""
    build_dir = BUILD_DIR if build_dir is None else build_dir
    binary = build_dir / "floor"
    if binary.exists() and binary.stat().st_mtime >= FLOOR_SRC.stat().st_mtime:
        return binary
    gcc = require_tool("gcc", "gcc")
    build_dir.mkdir(parents=True, exist_ok=True)
    res = subprocess.run([gcc, "-O2", "-Wall", "-o", str(binary), str(FLOOR_SRC)],
                         capture_output=True, text=True)
    if res.returncode != 0:
        raise BenchError(f"building floor.c failed: {res.stderr.strip()}")
    return binary


def sized_file_bytes(size: int) -> bytes:
    """size bytes of a seeded PRNG: the same every run, and not compressible."""
    return random.Random(DOCROOT_SEED).randbytes(size)


def make_docroot(parent: Path) -> Path:
    """/1b (the byte x), /100.html, and SIZED_FILES: names without an
    extension, so every server sends them as application/octet-stream."""
    docroot = parent / "docroot"
    docroot.mkdir()
    (docroot / "1b").write_bytes(b"x")
    page = b"<!doctype html><title>vw</title><p>"
    (docroot / "100.html").write_bytes(page + b"x" * (99 - len(page)) + b"\n")
    for name, size in SIZED_FILES.items():
        (docroot / name).write_bytes(sized_file_bytes(size))
    docroot.chmod(0o755)
    return docroot


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def peer_pythons() -> list[str]:
    """Interpreters that may hold the peers: the peers' venv first, then PATH."""
    found = [str(PEERS_VENV / "bin" / "python"), shutil.which("python3"),
             shutil.which("python"), sys.executable]
    return [p for p in dict.fromkeys(found) if p and os.access(p, os.X_OK)]


_IMPORT_CHECK = """\
import importlib, importlib.metadata as md, sys
for m in sys.argv[1:]:
    importlib.import_module(m)
try:
    print(md.version(sys.argv[1]))
except md.PackageNotFoundError:
    print("?")
"""


def find_python(modules: tuple[str, ...],
                candidates: list[str] | None = None) -> tuple[str, str] | None:
    """(interpreter, version of modules[0]) for the first candidate that imports
    all of modules, or None. Importing (not just finding) catches a package
    whose native library does not load (socketify without libuv1)."""
    for python in peer_pythons() if candidates is None else candidates:
        try:
            res = subprocess.run([python, "-c", _IMPORT_CHECK, *modules],
                                 capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if res.returncode == 0:
            return python, res.stdout.strip()
    return None


def vw_command() -> list[str] | None:
    """How to start vw, or None if it is not installed."""
    exe = shutil.which("vw")
    if exe:
        return [exe]
    if importlib.util.find_spec("vw") is not None:
        return [sys.executable, "-m", "vw"]
    return None


def render_template(template: Path, values: dict[str, object]) -> str:
    """The template's text with each @KEY@ replaced; an error if one is left."""
    text = template.read_text()
    for key, value in values.items():
        text = text.replace(f"@{key}@", str(value))
    left = re.search(r"@[A-Z_]+@", text)
    if left:
        raise ValueError(f"{template.name}: {left.group()} not filled in")
    return text


def write_nginx_conf(prefix: Path, port: int, docroot: Path,
                     sendfile: bool = True) -> Path:
    conf = prefix / "nginx.conf"
    conf.write_text(render_template(NGINX_TEMPLATE, {
        "PREFIX": prefix, "PORT": port, "DOCROOT": docroot,
        "SENDFILE": "on" if sendfile else "off"}))
    return conf


def write_h2o_conf(prefix: Path, port: int, docroot: Path) -> Path:
    conf = prefix / "h2o.conf"
    conf.write_text(render_template(H2O_TEMPLATE, {
        "PREFIX": prefix, "PORT": port, "DOCROOT": docroot,
        "USER": "user: root" if os.getuid() == 0 else ""}))
    return conf


def find_sbin(name: str) -> str | None:
    """name on PATH, or in /usr/sbin (not on a plain user's PATH)."""
    return shutil.which(name) or (
        f"/usr/sbin/{name}" if os.access(f"/usr/sbin/{name}", os.X_OK) else None)


@dataclass
class Context:
    workdir: Path
    docroot: Path
    floor_bin: Path | None = None
    vw_cmd: list[str] | None = None
    nginx_bin: str | None = None
    h2o_bin: str | None = None
    peer_python: dict[str, str] = dataclasses.field(default_factory=dict)
    versions: dict[str, str] = dataclasses.field(default_factory=dict)


def server_cwd(name: str, ctx: Context) -> Path:
    return APPS_DIR if name in APP_SERVERS else ctx.workdir


def floor_body_bytes(path: str) -> int:
    """The floor answers every request with the same reply: as long as the file the path names
    (so /64k against the floor is the kernel's cost of those bytes), else 1 byte."""
    return SIZED_FILES.get(path.strip("/"), 1)


def server_command(name: str, port: int, ctx: Context, path: str = "/1b") -> list[str]:
    if name == "floor":
        return [str(ctx.floor_bin), str(port), str(floor_body_bytes(path))]
    if name == "vw":
        return [*ctx.vw_cmd, "serve", str(ctx.docroot), "--port", str(port),
                "--workers", "1"]
    if name in NGINX_SERVERS:
        prefix = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=ctx.workdir))
        conf = write_nginx_conf(prefix, port, ctx.docroot, NGINX_SERVERS[name])
        return [ctx.nginx_bin, "-c", str(conf), "-p", str(prefix),
                "-e", str(prefix / "error.log")]
    if name == "h2o":
        prefix = Path(tempfile.mkdtemp(prefix="h2o-", dir=ctx.workdir))
        return [ctx.h2o_bin, "-c", str(write_h2o_conf(prefix, port, ctx.docroot))]
    if name in VW_APP_SERVERS:
        interface = name.removeprefix("vw-")
        return [*ctx.vw_cmd, "run", f"{interface}:app", "--interface", interface,
                "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    if name in PEERS:
        return [ctx.peer_python[name],
                *(str(port) if a == "PORT" else a for a in PEERS[name].args)]
    raise ValueError(name)


def log_tail(path: Path, lines: int = 3) -> str:
    try:
        tail = path.read_text(errors="replace").strip().splitlines()[-lines:]
    except FileNotFoundError:
        return ""
    return " | ".join(tail)


def wait_until_accepting(proc: subprocess.Popen, port: int, log: Path, name: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"{name} exited with status {proc.returncode} at start"
                             f" (log {log}): {log_tail(log)}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise BenchError(f"{name} did not accept on port {port} within "
                     f"{START_TIMEOUT_S:.0f} s (log {log}): {log_tail(log)}")


def start_server(name: str, cpu: int, ctx: Context, log: Path, path: str = "/1b") -> tuple[subprocess.Popen, int]:
    port = free_port()
    cmd = ["taskset", "-c", str(cpu), *server_command(name, port, ctx, path)]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, cwd=server_cwd(name, ctx),
                                start_new_session=True)
    try:
        wait_until_accepting(proc, port, log, name)
    except BaseException:
        stop_server(proc)
        raise
    return proc, port


def stop_server(proc: subprocess.Popen) -> None:
    """SIGTERM, then after STOP_GRACE_S SIGKILL to the whole session we made.

    The exited root is left unreaped (WNOWAIT) until the group is killed, so
    its pid, which is the group's id, cannot be reused meanwhile.
    """
    try:
        proc.send_signal(signal.SIGTERM)
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + STOP_GRACE_S
    while time.monotonic() < deadline:
        flags = os.WEXITED | os.WNOHANG | os.WNOWAIT
        if proc.returncode is not None or os.waitid(os.P_PID, proc.pid, flags):
            break
        time.sleep(0.02)
    if proc.returncode is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # stragglers, or a stuck root
        except ProcessLookupError:
            pass
    proc.wait()


def probe_status(port: int, path: str) -> str:
    """The status line the server gives for one GET of path."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        data = b""
        while b"\r\n" not in data:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    return data.split(b"\r\n", 1)[0].decode("latin-1")


def check_2xx(name: str, port: int, path: str) -> None:
    """A benchmarked path must answer 2xx. wrk counts only 4xx and 5xx answers as errors ("Non-2xx
    or 3xx responses"), so a redirect would pass for a success: it is an error here."""
    status = probe_status(port, path)
    if not re.match(r"HTTP/1\.[01] 2\d\d", status):
        raise BenchError(f"{name} answers {status!r} for {path}: a benchmarked path must answer "
                         "2xx (wrk would count a 3xx as a success)")


# --------------------------------------------------------------------------
# wrk


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


# --------------------------------------------------------------------------
# runs and report


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


def connections_for(path: str, args: argparse.Namespace) -> int:
    """wrk's connection count for path: --path-connections, else --connections."""
    return args.path_connections.get(path, args.connections)


def measure(name: str, path: str, mode: str, rnd: int, args: argparse.Namespace,
            ctx: Context) -> RunResult:
    conns = connections_for(path, args)
    slug = re.sub(r"[^A-Za-z0-9]+", "_", path).strip("_") or "root"
    log = ctx.workdir / f"{name}-{slug}-{mode}-r{rnd}.log"
    proc, port = start_server(name, args.server_cpu, ctx, log, path)
    try:
        check_2xx(name, port, path)
        warm = min(1.0, args.duration)
        run_wrk(wrk_command(port, path, mode, warm, conns, args.wrk_cpu), warm)
        time.sleep(SETTLE_S)
        cpu0 = tree_cpu_seconds(proc.pid)
        cores0 = read_core_times(args.server_cpu), read_core_times(args.wrk_cpu)
        wrk, _ = run_wrk(wrk_command(port, path, mode, args.duration,
                                     conns, args.wrk_cpu), args.duration)
        cores1 = read_core_times(args.server_cpu), read_core_times(args.wrk_cpu)
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


# --------------------------------------------------------------------------
# command line


def csv_choice(allowed: tuple[str, ...]):
    def parse(text: str) -> list[str]:
        items = [s.strip() for s in text.split(",") if s.strip()]
        bad = [s for s in items if s not in allowed]
        if bad or not items:
            raise argparse.ArgumentTypeError(
                f"choose from {','.join(allowed)} (got {text!r})")
        return list(dict.fromkeys(items))
    return parse


def parse_path_connections(text: str) -> dict[str, int]:
    """'/4m=10,/64k=100' -> {'/4m': 10, '/64k': 100}; '' -> {}."""
    counts = {}
    for item in (s.strip() for s in text.split(",")):
        if not item:
            continue
        path, sep, n = item.rpartition("=")
        if not sep or not path.startswith("/") or not n.isdigit() or int(n) < 1:
            raise argparse.ArgumentTypeError(
                f"expected PATH=N, N a positive count (got {item!r})")
        counts[path] = int(n)
    return counts


def parse_paths(text: str) -> list[str]:
    paths = [s.strip() for s in text.split(",") if s.strip()]
    if not paths or any(not s.startswith("/") for s in paths):
        raise argparse.ArgumentTypeError(f"paths must start with / (got {text!r})")
    return list(dict.fromkeys(paths))


def expand_servers(items: list[str] | None) -> tuple[list[str], set[str]]:
    """The servers to run and those named one by one (explicit: an error if
    missing). Groups (static, apps) and the default only skip what is missing."""
    if items is None:
        return list(STATIC_SERVERS), set()
    servers = [s for item in items for s in SERVER_GROUPS.get(item, (item,))]
    return list(dict.fromkeys(servers)), {s for s in items if s not in SERVER_GROUPS}


def default_paths(servers: list[str]) -> list[str]:
    """/ and /json when only app servers (and the floor) run, else /1b."""
    if any(s in APP_SERVERS for s in servers) and all(
            s in APP_SERVERS or s == "floor" for s in servers):
        return list(APP_PATHS)
    return list(STATIC_PATHS)


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--servers", type=csv_choice(ALL_SERVERS + tuple(SERVER_GROUPS)),
                   default=None,
                   help="comma list of " + ",".join(ALL_SERVERS) + ", or the groups "
                   "static (floor,vw,nginx), files (" + ",".join(FILE_SERVERS) + ") "
                   "and apps (floor and every app server); default: static. Servers "
                   "named one by one must be installed, groups skip what is missing")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--duration", type=float, default=10.0, help="seconds per run")
    p.add_argument("--connections", type=int, default=300,
                   help="wrk connections (default 300)")
    p.add_argument("--path-connections", type=parse_path_connections,
                   default=parse_path_connections(DEFAULT_PATH_CONNECTIONS),
                   metavar="PATH=N,...",
                   help="connections for some paths instead of --connections "
                   f"(default {DEFAULT_PATH_CONNECTIONS}: 4 MiB answers to 300 "
                   "connections wait over wrk's 2 s timeout; '' for none)")
    p.add_argument("--modes", type=csv_choice(ALL_MODES), default=list(ALL_MODES))
    p.add_argument("--paths", "--path", dest="paths", type=parse_paths, default=None,
                   help="comma list of URL paths, each run in turn (default: /,/json "
                   "for app servers only, else /1b). The generated docroot also holds "
                   "/100b, /4k, /64k and /4m (100 B, 4 KiB, 64 KiB, 4 MiB of "
                   "application/octet-stream): `--servers files --paths "
                   "/100b,/4k,/64k,/4m` is the file-size run (the floor answers each "
                   "with a body of that size, any other path with 1 byte)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    p.add_argument("--docroot", type=Path, default=None,
                   help="serve this directory instead of a generated one")
    p.add_argument("--server-cpu", type=int, default=0)
    p.add_argument("--wrk-cpu", type=int, default=1)
    args = p.parse_args(argv)
    if args.rounds < 1 or args.duration <= 0 or args.connections < 1:
        p.error("--rounds, --duration and --connections must be positive")
    args.servers, args.explicit = expand_servers(args.servers)
    if args.paths is None:
        args.paths = default_paths(args.servers)
    return args


def prepare(args: argparse.Namespace, workdir: Path) -> tuple[list[str], Context]:
    """Check tools, build the floor, pick the servers; fail with one line."""
    require_tool("wrk", "wrk")
    require_tool("taskset", "util-linux")
    usable = os.sched_getaffinity(0)
    for cpu in (args.server_cpu, args.wrk_cpu):
        if cpu not in usable:
            raise BenchError(f"CPU {cpu} is not available (usable: {sorted(usable)})")
    if args.server_cpu == args.wrk_cpu:
        raise BenchError("--server-cpu and --wrk-cpu must differ")

    servers = args.servers
    if args.docroot is not None:
        if not args.docroot.is_dir():
            raise BenchError(f"--docroot {args.docroot} is not a directory")
        docroot = args.docroot.resolve()
    else:
        docroot = make_docroot(workdir)
    ctx = Context(workdir=workdir, docroot=docroot)
    chosen = []
    found: dict[tuple[str, ...], tuple[str, str] | None] = {}
    for name in servers:
        msg = None
        if name == "floor":
            ctx.floor_bin = build_floor()
        elif name == "vw" or name in VW_APP_SERVERS:
            ctx.vw_cmd = ctx.vw_cmd or vw_command()
            if ctx.vw_cmd is None:
                msg = "vw is not installed (no `vw` on PATH, `import vw` fails)"
        elif name in NGINX_SERVERS:
            ctx.nginx_bin = find_sbin("nginx")
            if ctx.nginx_bin is None:
                msg = "nginx not found: apt-get install nginx-light"
        elif name == "h2o":
            ctx.h2o_bin = find_sbin("h2o")
            if ctx.h2o_bin is None:
                msg = "h2o not found: apt-get install h2o"
        elif name in PEERS:
            modules = PEERS[name].modules
            if modules not in found:
                found[modules] = find_python(modules)
            if found[modules] is None:
                msg = (f"no Python here imports {', '.join(modules)} "
                       f"(tried {', '.join(peer_pythons())}): bash bench/install-peers.sh")
            else:
                ctx.peer_python[name], ctx.versions[modules[0]] = found[modules]
        if msg is not None:
            if name in args.explicit:
                raise BenchError(f"{name}: {msg}")
            print(f"skipping {name}: {msg}", file=sys.stderr)
            continue
        chosen.append(name)
    if not chosen:
        raise BenchError("none of the servers asked for is installed")
    return chosen, ctx


def describe(r: RunResult) -> str:
    p99 = "n/a" if r.p99_ms is None else f"{r.p99_ms:.2f} ms"
    return (f"{r.requests_per_s:,.0f} req/s, {r.cpu_us_per_request:.2f} µs CPU/req, "
            f"p99 {p99}, {r.errors} errors, cores busy {r.server_core_busy:.0f}% "
            f"(server) {r.wrk_core_busy:.0f}% (wrk)")


def command_line(argv: list[str]) -> str:
    return shlex.join([*COMMAND, *argv])


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


def run_seconds(args: argparse.Namespace) -> float:
    """About how long one measured run takes: start, warm-up, the run, pauses, stop."""
    return 1.5 + min(1.0, args.duration) + args.duration + 2 * SETTLE_S


def run(argv: list[str], on_run=None, command: list[str] | None = None) -> list[Summary]:
    """Run the benchmark and write its report. `on_run(done, total, label, args)` is called
    before each measured run (vw bench draws its progress bar with it). `command`: the command
    line that reruns this (default: COMMAND followed by argv), recorded with the results."""
    args = parse_args(argv)
    command = [*COMMAND, *argv] if command is None else command
    started = datetime.datetime.now(datetime.timezone.utc)
    with tempfile.TemporaryDirectory(prefix="vw-bench-") as tmp:
        servers, ctx = prepare(args, Path(tmp))
        runs = []
        width = max(len(s) for s in servers)
        total = args.rounds * len(args.paths) * len(args.modes) * len(servers)
        for rnd in range(1, args.rounds + 1):
            for path in args.paths:
                for mode in args.modes:
                    for name in rotated(servers, rnd - 1):
                        if on_run is not None:
                            on_run(len(runs), total, f"{name} {path} {mode} (round {rnd}/{args.rounds})", args)
                        r = measure(name, path, mode, rnd, args, ctx)
                        if on_run is None:
                            print(f"round {rnd}/{args.rounds} {path} {mode:9} "
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
        "config": {"servers": servers, "modes": args.modes, "rounds": args.rounds,
                   "duration": args.duration, "connections": args.connections,
                   "path_connections": args.path_connections,
                   "paths": args.paths, "server_cpu": args.server_cpu,
                   "wrk_cpu": args.wrk_cpu,
                   "docroot": str(args.docroot) if args.docroot else None},
    }
    write_results(args.out, meta, runs, rows)
    if on_run is not None:
        on_run(total, total, "done", args)
    print(summary_table(rows))
    print(f"\nwrote {args.out / 'results.md'} and {args.out / 'results.json'}")
    return rows


def main(argv: list[str] | None = None) -> int:
    try:
        run(sys.argv[1:] if argv is None else argv)
    except BenchError as exc:
        print(f"bench: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("bench: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
