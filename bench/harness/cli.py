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
import sys
from pathlib import Path

from vw.benchmark.runner import DEFAULT_PATH_CONNECTIONS, Config, expand_servers, run
from vw.benchmark.servers import FILE_SERVERS, STATIC_SERVERS
from vw.benchmark.tools import BenchError
from vw.benchmark.wrk import MODES

from .apps import APP_PATHS, APP_SERVERS, BENCH
from .servers import RepoServers

COMMAND = ["python", "bench/run.py"]
DEFAULT_OUT = BENCH / "results"
STATIC_PATHS = ("/1b",)
SERVERS = RepoServers()


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


def default_paths(servers: list[str]) -> list[str]:
    """/ and /json when only app servers (and the floor) run, else /1b."""
    if any(s in APP_SERVERS for s in servers) and all(
            s in APP_SERVERS or s == "floor" for s in servers):
        return list(APP_PATHS)
    return list(STATIC_PATHS)


def parse_args(argv: list[str]) -> Config:
    default_path_connections = ",".join(f"{p}={n}" for p, n in DEFAULT_PATH_CONNECTIONS.items())
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--servers", type=csv_choice(SERVERS.names + tuple(SERVERS.groups)),
                   default=None,
                   help="comma list of " + ",".join(SERVERS.names) + ", or the groups "
                   "static (" + ",".join(STATIC_SERVERS) + "), files (" + ",".join(FILE_SERVERS) + ") "
                   "apps (floor and every app server), uring (the floors and vw on both "
                   "backends) and apps-uring (floor and each vw interface on both backends); "
                   "default: static. Servers "
                   "named one by one must be installed, groups skip what is missing")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--duration", type=float, default=10.0, help="seconds per run")
    p.add_argument("--connections", type=int, default=300,
                   help="wrk connections (default 300)")
    p.add_argument("--path-connections", type=parse_path_connections,
                   default=parse_path_connections(default_path_connections),
                   metavar="PATH=N,...",
                   help="connections for some paths instead of --connections "
                   f"(default {default_path_connections}: 4 MiB answers to 300 "
                   "connections wait over wrk's 2 s timeout; '' for none)")
    p.add_argument("--modes", type=csv_choice(MODES), default=list(MODES))
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
    args.servers, args.explicit = expand_servers(args.servers, SERVERS.groups)
    if args.paths is None:
        args.paths = default_paths(args.servers)
    try:
        return Config(**vars(args))
    except ValueError as exc:
        p.error(str(exc))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        run(parse_args(argv), SERVERS, [*COMMAND, *argv])
    except BenchError as exc:
        print(f"bench: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("bench: interrupted", file=sys.stderr)
        return 130
    return 0
