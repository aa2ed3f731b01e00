#!/usr/bin/env python3
"""Write the README's benchmark tables from the committed runs in docs/bench/, so that every
figure they quote can be traced to the raw results of the run that measured it.

    python bench/tables.py            # rewrite each table between its markers in README.md
    python bench/tables.py --check    # change nothing; exit 1 if a table differs from its run

A table sits between two comments in README.md:

    <!-- bench-table KIND FILE -->
    ... written by this script from FILE ...
    <!-- /bench-table -->

KIND says which table (static, files, files-pipelined, apps, wait, ws, tls, uring, apps-uring); FILE is a results.json the harness
wrote (bench/run.py or vw bench), committed under docs/bench/, relative to the repository. A table
that no committed run backs yet is marked `<!-- bench-table KIND unbacked -->`: it is left as
written, must say so to the reader ("Not yet traceable"), and is listed by --check (--strict makes
it an error). Python 3.11 standard library only.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
MARKER = re.compile(r"<!-- bench-table (\S+) (\S+) -->\n(.*?)<!-- /bench-table -->", re.S)
UNBACKED = "unbacked"
UNBACKED_NOTE = "Not yet traceable"

FILE_LABELS = {"/100b": "100 B", "/4k": "4 KiB", "/64k": "64 KiB", "/4m": "4 MiB"}
MODE_LABELS = {"plain": "plain", "pipelined": "pipelined ×16"}
APP_COLUMNS = (("/", "plain"), ("/", "pipelined"), ("/json", "plain"), ("/json", "pipelined"))


class TableError(Exception):
    """A table cannot be made from its file (missing, or without the runs it needs)."""


def num(value: float | None, digits: int = 2) -> str:
    return "–" if value is None else f"{value:,.{digits}f}"


def rate(value: float) -> str:
    """req/s the way the README writes it in narrow columns: 166k, or 1,497 below 10,000."""
    return f"{value / 1000:.0f}k" if value >= 10_000 else f"{value:,.0f}"


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def bold(text: str, on: bool = True) -> str:
    return f"**{text}**" if on else text


def is_vw(server: str) -> bool:
    return server == "vw" or server.startswith("vw-")


class Run:
    """One results.json: its medians by (server, path, mode), and where it came from."""

    def __init__(self, path: Path, name: str):
        try:
            self.data = json.loads(path.read_text())
        except FileNotFoundError:
            raise TableError(f"{name}: no such file (commit the run's results.json there)") from None
        self.name = name
        self.rows = {(r["server"], r["path"], r["mode"]): r for r in self.data["summary"]}
        self.servers = list(dict.fromkeys(self.data["config"]["servers"]))

    def row(self, server: str, path: str, mode: str) -> dict:
        try:
            return self.rows[server, path, mode]
        except KeyError:
            raise TableError(f"{self.name}: no run of {server} on {path} ({mode})") from None

    def caption(self) -> str:
        cfg = self.data["config"]
        commit = self.data.get("commit")
        if commit:
            measured = f"commit {commit['sha'][:12]}" + (" with changes not committed" if commit.get("dirty") else "")
        else:
            measured = "commit " + self.data.get("commit_note", "not recorded")
        rounds = (f"one round of {cfg['duration']:g} s" if cfg["rounds"] == 1
                  else f"medians of {cfg['rounds']} interleaved rounds of {cfg['duration']:g} s")
        return (f"From [`{self.name}`]({self.name}) (`python bench/tables.py` writes this table from it): "
                f"`{self.data['command']}`, {self.data['date'][:10]}, {rounds}, {measured}.")


def static_table(run: Run) -> str:
    """The seed experiment: /1b, plain and pipelined, each server against the floor."""
    servers = ["floor", *[s for s in run.servers if s != "floor"]]
    lines = ["| mode | server | req/s | CPU µs/req | p99 ms | errors | CPU/req ÷ floor | req/s ÷ floor | p99 ÷ floor |",
             "|---|---|--:|--:|--:|--:|--:|--:|--:|"]
    for mode in ("plain", "pipelined"):
        for server in servers:
            r = run.row(server, "/1b", mode)
            vw = is_vw(server)
            lines.append(f"| {MODE_LABELS[mode]} | {bold(server, vw)} | {num(r['requests_per_s'], 0)} "
                         f"| {num(r['cpu_us_per_request'])} | {num(r['p99_ms'])} | {r['errors']} "
                         f"| {bold(num(r['cpu_ratio']), vw)} | {num(r['rps_ratio'])} | {num(r['p99_ratio'])} |")
    return "\n".join(lines)


def _file_paths(run: Run, mode: str) -> list[str]:
    return [p for p in run.data["config"]["paths"] if p in FILE_LABELS and (("floor", p, mode) in run.rows)]


def files_table(run: Run) -> str:
    """Server CPU µs per request by file size, plain mode, against nginx and the floor."""
    servers = ("floor", "vw", "nginx", "nginx-nosendfile", "h2o")
    lines = ["| file | floor | vw | nginx | nginx, sendfile off | h2o | **vw ÷ nginx** | vw ÷ floor "
             "| req/s vw / nginx / h2o |",
             "|---|--:|--:|--:|--:|--:|--:|--:|--:|"]
    for path in _file_paths(run, "plain"):
        r = {s: run.row(s, path, "plain") for s in servers}
        cpu = {s: r[s]["cpu_us_per_request"] for s in servers}
        lines.append(f"| {FILE_LABELS[path]} | " + " | ".join(num(cpu[s]) for s in servers)
                     + f" | {bold(num(ratio(cpu['vw'], cpu['nginx'])))} | {num(ratio(cpu['vw'], cpu['floor']))} | "
                     + " / ".join(rate(r[s]["requests_per_s"]) for s in ("vw", "nginx", "h2o")) + " |")
    return "\n".join(lines)


def files_pipelined_table(run: Run) -> str:
    """Server CPU µs per response, pipelined 16 deep, by file size."""
    servers = ("floor", "vw", "nginx", "h2o")
    lines = ["| file, pipelined ×16 | floor | vw | nginx | h2o | **vw ÷ nginx** |",
             "|---|--:|--:|--:|--:|--:|"]
    for path in _file_paths(run, "pipelined"):
        cpu = {s: run.row(s, path, "pipelined")["cpu_us_per_request"] for s in servers}
        lines.append(f"| {FILE_LABELS[path]} | " + " | ".join(num(cpu[s]) for s in servers)
                     + f" | {bold(num(ratio(cpu['vw'], cpu['nginx'])))} |")
    return "\n".join(lines)


def apps_table(run: Run) -> str:
    """The application servers: CPU µs per request (÷ floor) on / and /json, plain and pipelined."""
    lines = ["| server | `/` plain µs/req (÷ floor) | `/` pipelined ×16 | `/json` plain | `/json` pipelined "
             "| req/s `/` plain | errors |",
             "|---|--:|--:|--:|--:|--:|--:|"]
    servers = ["floor", *[s for s in run.servers if s != "floor"]]
    for server in servers:
        rows = [run.row(server, path, mode) for path, mode in APP_COLUMNS]
        vw = is_vw(server)
        cells = [f"{num(r['cpu_us_per_request'])} ({bold(num(r['cpu_ratio']), vw and i == 0)})"
                 for i, r in enumerate(rows)]
        lines.append(f"| {bold(server, vw)} | " + " | ".join(cells)
                     + f" | {num(rows[0]['requests_per_s'], 0)} | {sum(r['errors'] for r in rows)} |")
    return "\n".join(lines)


def wait_table(run: Run) -> str:
    """Applications that wait and stream (bench/wait.py): each server with 2 workers, defaults."""
    sync_peers = [s for s in ("granian-wsgi", "gunicorn-gthread") if (s, "/wait", "wait") in run.rows]
    async_peers = [s for s in ("granian-asgi", "uvicorn") if (s, "/wait", "wait") in run.rows]
    best = {kind: max((run.row(s, "/wait", "wait")["req_s"] for s in peers), default=None)
            for kind, peers in (("sync", sync_peers), ("async", async_peers))}
    lines = ["| server | view | 10 ms wait: req/s | p99 ms | ÷ best peer | SSE: first event | 200 MiB stream: RSS |",
             "|---|---|--:|--:|--:|--:|--:|"]
    for server in run.servers:
        for path, label, kind in (("/wait", "sync" if server not in ("vw-asgi", "granian-asgi", "uvicorn") else "async", None),
                                  ("/await", "async def", "async")):
            if (server, path, "wait") not in run.rows:
                continue
            kind = kind or label
            r = run.row(server, path, "wait")
            sse = run.rows.get((server, "/events", "sse"))
            stream = run.rows.get((server, "/big", "stream"))
            first = f"{sse['first_event_s']:.2f} s" if sse and path == "/wait" else "–"
            rss = f"+{stream['rss_growth_mib']:.0f} MiB" if stream and path == "/wait" else "–"
            vs = ratio(r["req_s"], best["async" if kind != "sync" else "sync"])
            req_s = f"{r['req_s']:,.0f}"
            lines.append(f"| {bold(server, is_vw(server))} | {label} | {bold(req_s, is_vw(server))} | "
                         f"{num(r.get('p99_ms'), 1)} | {num(vs)} | {first} | {rss} |")
    return "\n".join(lines)


def ws_table(run: Run) -> str:
    """WebSocket echo (bench/ws.py): server CPU µs per message (÷ the best peer's), msg/s, and the
    memory of idle WebSockets."""
    scenarios = [sc for sc in ("8x8x32", "100x2x32", "8x2x65536", "b1000x4x32") if any(k[1] == sc for k in run.rows)]
    idle = next((k[1] for k in run.rows if k[1].startswith("idle")), None)
    label = {"8x8x32": "32 B, 8 conns × 8 in flight", "100x2x32": "32 B, 100 conns × 2", "8x2x65536": "64 KiB, 8 conns × 2",
             "b1000x4x32": "32 B to 1,000 listeners, per delivery"}
    head = [f"{label[sc]}: µs/msg (÷ best peer), msg/s" for sc in scenarios]
    if idle:
        head.append(f"{int(idle[4:]):,} idle: bytes each")
    lines = ["| server | " + " | ".join(head) + " |", "|---|" + "--:|" * len(head)]
    best = {sc: min((r["cpu_us_per_msg"] for (s, p, _), r in run.rows.items() if p == sc and not is_vw(s)), default=None)
            for sc in scenarios}
    for server in run.servers:
        cells = []
        for sc in scenarios:
            r = run.rows.get((server, sc, "ws"))
            cells.append("–" if r is None else
                         f"{bold(num(r['cpu_us_per_msg']), is_vw(server))} ({num(ratio(r['cpu_us_per_msg'], best[sc]))}), {rate(r['msgs_per_s'])}")
        if idle:
            r = run.rows.get((server, idle, "ws"))
            cells.append("–" if r is None else bold(f"{r['bytes_per_socket']:,.0f}", is_vw(server)))
        lines.append(f"| {bold(server, is_vw(server))} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def tls_table(run: Run) -> str:
    """HTTPS/1.1 (bench/tls.py): server CPU µs per request (÷ the peer's: nginx for static files,
    granian for the applications) and req/s, keep-alive and with a full handshake per request;
    HTTP/2 (h2load) on static files and on applications."""
    label = {"ka-1b": "1 B keep-alive", "ka-4k": "4 KiB keep-alive", "ka-64k": "64 KiB keep-alive",
             "handshake": "1 B, new connection each", "app-ka": "hello keep-alive", "app-handshake": "hello, new connection each",
             "h2-1b": "1 B", "h2-4k": "4 KiB", "h2-64k": "64 KiB", "h2-hello": "hello", "h2-wait": "view waiting 10 ms"}
    lines = []
    for title, servers, peer, scenarios in (("static files", ("vw", "nginx"), "nginx", ("ka-1b", "ka-4k", "ka-64k", "handshake")),
                                            ("ASGI hello", ("vw-asgi", "granian-asgi"), "granian-asgi", ("app-ka", "app-handshake")),
                                            ("HTTP/2, h2load -c100 -m10", ("vw", "nginx", "granian-static"), "nginx", ("h2-1b", "h2-4k", "h2-64k")),
                                            ("ASGI over HTTP/2", ("vw-asgi", "granian-asgi"), "granian-asgi", ("h2-hello", "h2-wait")),
                                            ("WSGI over HTTP/2", ("vw-wsgi", "granian-wsgi"), "granian-wsgi", ("h2-hello", "h2-wait"))):
        servers = [s for s in servers if any((s, sc, "tls") in run.rows for sc in scenarios)]
        if not servers:
            continue
        head = [f"{label[sc]}: µs/req (÷ {peer}), req/s" for sc in scenarios]
        lines += ["", f"| {title} | " + " | ".join(head) + " |", "|---|" + "--:|" * len(head)]
        for server in servers:
            cells = []
            for sc in scenarios:
                r = run.rows.get((server, sc, "tls"))
                base = run.rows.get((peer, sc, "tls"))
                cells.append("–" if r is None else
                             f"{bold(num(r['cpu_us']), is_vw(server))} ({num(ratio(r['cpu_us'], base and base['cpu_us']))}), {rate(r['rps'])}")
            lines.append(f"| {bold(server, is_vw(server))} | " + " | ".join(cells) + " |")
    return "\n".join(lines[1:])


def uring_table(run: Run) -> str:
    """The io_uring backend (issue 14) on /1b: the two floors and vw on each backend, and the
    issue's two ratios (vw on the ring ÷ vw on epoll, ÷ the epoll floor)."""
    lines = ["| /1b | floor (epoll) | floor-uring | vw (epoll) | vw --io uring | **uring ÷ vw epoll** "
             "| **uring ÷ floor** | p99 ms vw / uring |",
             "|---|--:|--:|--:|--:|--:|--:|--:|"]
    for mode in ("plain", "pipelined"):
        r = {s: run.row(s, "/1b", mode) for s in ("floor", "floor-uring", "vw", "vw-uring")}
        cpu = {s: v["cpu_us_per_request"] for s, v in r.items()}
        lines.append(f"| {MODE_LABELS[mode]} | " + " | ".join(num(cpu[s]) for s in r)
                     + f" | {bold(num(ratio(cpu['vw-uring'], cpu['vw'])))} | {bold(num(ratio(cpu['vw-uring'], cpu['floor'])))} "
                     + f"| {num(r['vw']['p99_ms'])} / {num(r['vw-uring']['p99_ms'])} |")
    return "\n".join(lines)


def apps_uring_table(run: Run) -> str:
    """Each vw interface's hello (`/`) on epoll and on the ring: CPU µs per request and p99."""
    lines = ["| interface | plain: epoll | uring | **÷** | p99 ms epoll / uring | pipelined ×16: epoll | uring | **÷** |",
             "|---|--:|--:|--:|--:|--:|--:|--:|"]
    for server in [s for s in run.servers if is_vw(s) and not s.endswith("-uring")]:
        plain = [run.row(s, "/", "plain") for s in (server, f"{server}-uring")]
        piped = [run.row(s, "/", "pipelined") for s in (server, f"{server}-uring")]
        cells = []
        for pair in (plain, piped):
            a, b = (r["cpu_us_per_request"] for r in pair)
            cells.append(f"{num(a)} | {num(b)} | {bold(num(ratio(b, a)))}")
        lines.append(f"| {server.removeprefix('vw-')} | {cells[0]} | {num(plain[0]['p99_ms'])} / {num(plain[1]['p99_ms'])} | {cells[1]} |")
    return "\n".join(lines)


KINDS = {"tls": tls_table, "uring": uring_table, "apps-uring": apps_uring_table, "static": static_table, "files": files_table, "files-pipelined": files_pipelined_table,
         "apps": apps_table, "wait": wait_table, "ws": ws_table}


def block(kind: str, name: str, root: Path = ROOT) -> str:
    """What goes between the markers: where the figures come from, then the table."""
    if kind not in KINDS:
        raise TableError(f"unknown table kind {kind!r} (one of {', '.join(KINDS)})")
    run = Run(root / name, name)
    return f"{run.caption()}\n\n{KINDS[kind](run)}\n"


def process(text: str, root: Path = ROOT) -> tuple[str, list[str], list[str]]:
    """(the text with every backed table written anew, tables that differed, unbacked tables)."""
    differ, unbacked, problems = [], [], []

    def one(m: re.Match) -> str:
        kind, source, old = m.group(1), m.group(2), m.group(3)
        if source == UNBACKED:
            unbacked.append(kind)
            if UNBACKED_NOTE not in old:
                problems.append(f"{kind}: an unbacked table must say {UNBACKED_NOTE!r} to the reader")
            return m.group(0)
        try:
            new = block(kind, source, root)
        except TableError as e:
            problems.append(str(e))
            return m.group(0)
        if new != old:
            differ.append(f"{kind} ({source})")
        return f"<!-- bench-table {kind} {source} -->\n{new}<!-- /bench-table -->"

    out = MARKER.sub(one, text)
    if problems:
        raise TableError("; ".join(problems))
    return out, differ, unbacked


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--check", action="store_true", help="change nothing; exit 1 if a table differs")
    p.add_argument("--strict", action="store_true", help="with --check: a table with no committed run fails too")
    p.add_argument("--readme", type=Path, default=README, help="the file holding the tables (default README.md)")
    args = p.parse_args(argv)
    text = args.readme.read_text()
    try:
        new, differ, unbacked = process(text, args.readme.resolve().parent)
    except TableError as e:
        print(f"tables: error: {e}", file=sys.stderr)
        return 1
    if not MARKER.search(text):
        print(f"tables: error: no bench-table markers in {args.readme}", file=sys.stderr)
        return 1
    for kind in unbacked:
        print(f"unbacked: {kind} (no committed run yet)")
    if args.check:
        for what in differ:
            print(f"differs from its run: {what}", file=sys.stderr)
        if differ:
            print("tables: run python bench/tables.py to write them", file=sys.stderr)
        return 1 if differ or (args.strict and unbacked) else 0
    if new != text:
        args.readme.write_text(new)
    for what in differ:
        print(f"wrote {what}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
