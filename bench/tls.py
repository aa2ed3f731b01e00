#!/usr/bin/env python3
"""HTTPS/1.1: vw beside nginx (static files, `listen ssl`) and, for the application hello, vw's
ASGI beside granian's (`--ssl-certificate`), all with the same ECDSA P-256 certificate. Each
server one worker pinned to CPU 0, wrk pinned to CPU 1, servers interleaved in each round.

Scenarios: keep-alive GETs of /1b, /4k and /64k (wrk -c50), and full handshakes: wrk with
`Connection: close`, so every request is a new connection and a new handshake (wrk does not
resume sessions). Reported per server: requests/s, server CPU µs per request (its process tree,
from /proc) and the ratio to nginx's (or granian's) in the same round; medians over rounds.

    python bench/tls.py --rounds 3 --duration 5 --out docs/bench/2026-12-01-tls.json

`--h2` runs h2load -c100 -m10 over TLS on static files (vw, nginx `listen ssl http2`, granian's
static mount); `--h2-apps` the same on applications: the hello and a view that waits 10 ms (a
database), vw's ASGI and WSGI beside granian's (`--http 2`).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PEERS_PY = HERE / ".peers-venv" / "bin" / "python"
sys.path.insert(0, str(ROOT / "python"))
sys.path.insert(0, str(HERE))
from vw.benchmark.cpu import tree_cpu_seconds  # noqa: E402
from wait import free_port, stop  # noqa: E402

STATIC = {"ka-1b": "/1b", "ka-4k": "/4k", "ka-64k": "/64k", "handshake": "/1b"}
APP = {"app-ka": "/", "app-handshake": "/"}
# --h2: h2load -c100 -m10 (100 connections, 10 streams in flight on each) over TLS
H2 = {"h2-1b": "/1b", "h2-4k": "/4k", "h2-64k": "/64k"}
# --h2-apps: the same on applications
H2_APPS = {"h2-hello": "/", "h2-wait": "/wait"}

NGINX_CONF = """user root; daemon off; master_process on; worker_processes 1;
pid {prefix}/nginx.pid; error_log {prefix}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off; sendfile on; tcp_nopush on; tcp_nodelay on; server_tokens off;
    keepalive_timeout 120s; keepalive_requests 1000000;
    default_type application/octet-stream;
    client_body_temp_path {prefix}/cb; proxy_temp_path {prefix}/px; fastcgi_temp_path {prefix}/fc;
    uwsgi_temp_path {prefix}/uw; scgi_temp_path {prefix}/sc;
    server {{
        listen 127.0.0.1:{port} ssl{http2};
        ssl_certificate {cert}; ssl_certificate_key {key};
        ssl_protocols TLSv1.2 TLSv1.3;
        root {docroot};
    }}
}}
"""


def make_cert(folder: Path) -> tuple[Path, Path]:
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-keyout", str(key), "-out", str(cert), "-days", "30", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"], check=True, capture_output=True)
    return cert, key


def make_docroot(folder: Path) -> Path:
    root = folder / "www"
    root.mkdir()
    (root / "1b").write_bytes(b"x")
    (root / "4k").write_bytes(os.urandom(4096))
    (root / "64k").write_bytes(os.urandom(65536))
    return root


def commands(port: int, cert: Path, key: Path, docroot: Path, prefix: Path, h2: bool = False) -> dict[str, list[str]]:
    vw = [sys.executable, "-m", "vw"]
    tls = ["--tls-cert", str(cert), "--tls-key", str(key)]
    conf = prefix / "nginx.conf"
    conf.write_text(NGINX_CONF.format(prefix=prefix, port=port, cert=cert, key=key, docroot=docroot,
                                      http2=" http2" if h2 else ""))
    return {
        "vw": [*vw, "serve", str(docroot), "--workers", "1", "--port", str(port), *tls],
        "nginx": [shutil.which("nginx") or "/usr/sbin/nginx", "-c", str(conf), "-p", str(prefix)],
        "vw-asgi": [*vw, "run", "asgi:app", "--interface", "asgi", "--workers", "1", "--port", str(port), *tls],
        "granian-asgi": [str(PEERS_PY), "-m", "granian", "--interface", "asgi", "asgi:app", "--workers", "1",
                         "--port", str(port), "--no-access-log", "--log-level", "warning",
                         "--ssl-certificate", str(cert), "--ssl-keyfile", str(key), *(["--http", "2"] if h2 else [])],
        "vw-wsgi": [*vw, "run", "wsgi:app", "--interface", "wsgi", "--workers", "1", "--port", str(port), *tls],
        "granian-wsgi": [str(PEERS_PY), "-m", "granian", "--interface", "wsgi", "wsgi:app", "--workers", "1",
                         "--port", str(port), "--no-access-log", "--log-level", "warning",
                         "--ssl-certificate", str(cert), "--ssl-keyfile", str(key), *(["--http", "2"] if h2 else [])],
        # granian's own static files (under /static) beside the same app, HTTP/2 only
        "granian-static": [str(PEERS_PY), "-m", "granian", "--interface", "asgi", "asgi:app", "--workers", "1",
                           "--port", str(port), "--no-access-log", "--log-level", "warning", "--http", "2",
                           "--static-path-mount", str(docroot), "--static-path-route", "/static",
                           "--ssl-certificate", str(cert), "--ssl-keyfile", str(key)],
    }


def start(cmd: list[str], port: int, cafile: Path, h2: bool = False) -> subprocess.Popen:
    import ssl
    import socket

    env = dict(os.environ, PYTHONPATH=str(ROOT / "python"))
    proc = subprocess.Popen(["taskset", "-c", "0", *cmd], cwd=HERE / "apps", env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    ctx = ssl.create_default_context(cafile=str(cafile))
    if h2:
        ctx.set_alpn_protocols(["h2"])  # a server that speaks HTTP/2 only: a handshake shows it listens
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            with ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=0.5), server_hostname="localhost") as s:
                if not h2:
                    s.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
                if h2 or s.recv(100).startswith(b"HTTP/1.1"):
                    time.sleep(0.5)
                    return proc
        except OSError:
            time.sleep(0.1)
    stop(proc)
    raise SystemExit(f"{cmd[:3]} did not start on port {port}")


def run_wrk(port: int, path: str, duration: int, close: bool) -> dict:
    cmd = ["taskset", "-c", "1", "wrk", "-t1", "-c50", f"-d{duration}s", "--latency"]
    if close:
        cmd += ["-H", "Connection: close"]
    out = subprocess.run([*cmd, f"https://localhost:{port}{path}"], capture_output=True, text=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    total = int(re.search(r"(\d+) requests in", out).group(1))
    errors = sum(int(x) for x in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    p99_ms = float(p99.group(1)) * {"us": 0.001, "ms": 1, "s": 1000}[p99.group(2)] if p99 else None
    return {"rps": rps, "requests": total, "errors": errors, "p99_ms": p99_ms}


def run_h2load(port: int, path: str, duration: int) -> dict:
    out = subprocess.run(["taskset", "-c", "1", "h2load", "-c100", "-m10", f"-D{duration}", "-t1",
                          f"https://localhost:{port}{path}"], capture_output=True, text=True).stdout
    rps = float(re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", out).group(1))
    m = re.search(r"requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored", out)
    done, ok, failed, errored = map(int, m.groups())
    return {"rps": rps, "requests": ok, "errors": failed + errored + (done - ok), "p99_ms": None}


def measure(proc: subprocess.Popen, port: int, path: str, duration: int, close: bool, h2: bool = False) -> dict:
    before = tree_cpu_seconds(proc.pid)
    r = run_h2load(port, path, duration) if h2 else run_wrk(port, path, duration, close)
    r["cpu_us"] = (tree_cpu_seconds(proc.pid) - before) * 1e6 / max(r["requests"], 1)
    return r


def write(out: Path, names: list[str], rounds: int, duration: int, results: dict, summary: dict) -> None:
    """The shape bench/tables.py reads: a summary row per (server, scenario)."""
    git = lambda *a: subprocess.run(["git", *a], cwd=ROOT, capture_output=True, text=True).stdout.strip()  # noqa: E731
    rows = [{"server": name, "path": scen, "mode": "tls", **m} for name, scens in summary.items() for scen, m in scens.items()]
    out.write_text(json.dumps({
        "command": "python bench/tls.py " + " ".join(sys.argv[1:]),
        "commit": {"sha": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))},
        "date": datetime.date.today().isoformat(),
        "config": {"servers": names, "rounds": rounds, "duration": duration},
        "summary": rows, "runs": results}, indent=1) + "\n")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--servers", default="vw,nginx,vw-asgi,granian-asgi")
    ap.add_argument("--out", default=None)
    ap.add_argument("--h2", action="store_true",
                    help="HTTP/2 with h2load -c100 -m10 instead (servers vw, nginx, granian-static)")
    ap.add_argument("--h2-apps", action="store_true",
                    help="HTTP/2 with h2load -c100 -m10 on applications (vw-asgi, granian-asgi, vw-wsgi, granian-wsgi)")
    args = ap.parse_args()
    if args.h2 and args.servers == ap.get_default("servers"):
        args.servers = "vw,nginx,granian-static"
    if args.h2_apps and args.servers == ap.get_default("servers"):
        args.servers = "vw-asgi,granian-asgi,vw-wsgi,granian-wsgi"
    h2 = args.h2 or args.h2_apps
    names = [s for s in args.servers.split(",") if s]
    tmp = Path(tempfile.mkdtemp(prefix="vw-tls-bench-"))
    cert, key = make_cert(tmp)
    docroot = make_docroot(tmp)
    results: dict[str, dict[str, list[dict]]] = {n: {} for n in names}
    for rnd in range(args.rounds):
        order = names if rnd % 2 == 0 else names[::-1]
        for name in order:
            port = free_port()
            prefix = tmp / f"nginx-{rnd}-{port}"
            prefix.mkdir()
            cmd = commands(port, cert, key, docroot, prefix, h2=h2)[name]
            if name.startswith("granian") and not PEERS_PY.exists():
                continue
            proc = start(cmd, port, cert, h2=name.startswith("granian") and h2)
            try:
                scenarios = H2_APPS if args.h2_apps else H2 if args.h2 else APP if name.endswith("asgi") else STATIC
                for scen, path in scenarios.items():
                    if name == "granian-static":
                        path = "/static" + path
                    r = measure(proc, port, path, args.duration, close=scen.endswith("handshake"), h2=h2)
                    results[name].setdefault(scen, []).append(r)
                    print(f"round {rnd + 1} {name:13} {scen:14} {r['rps']:10.0f} req/s {r['cpu_us']:8.2f} µs/req "
                          f"p99 {r['p99_ms']} ms errors {r['errors']}", flush=True)
            finally:
                stop(proc)
    summary: dict[str, dict[str, dict]] = {}
    for name, scens in results.items():
        for scen, runs in scens.items():
            summary.setdefault(name, {})[scen] = {k: statistics.median(r[k] for r in runs) for k in ("rps", "cpu_us")}
            summary[name][scen]["errors"] = sum(r["errors"] for r in runs)
    print()
    print(f"{'server':14} {'scenario':14} {'req/s':>10} {'µs/req':>8} {'÷ peer':>7}")
    for name, scens in summary.items():
        peer = "nginx" if name in ("vw", "nginx", "granian-static") else "granian-wsgi" if name.endswith("wsgi") else "granian-asgi"
        for scen, m in scens.items():
            base = summary.get(peer, {}).get(scen)
            ratio = f"{m['cpu_us'] / base['cpu_us']:.2f}" if base else "-"
            m["cpu_ratio_to_peer"] = float(ratio) if base else None
            print(f"{name:14} {scen:14} {m['rps']:10.0f} {m['cpu_us']:8.2f} {ratio:>7}")
    if args.out:
        write(Path(args.out), names, args.rounds, args.duration, results, summary)
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
