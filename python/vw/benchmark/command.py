"""`vw bench`: the seed experiment (keep-alive GETs of a 1-byte file from 300 connections, plain
and pipelined), run on this machine by the benchmark harness (vw.benchmark.runner, the same code
bench/run.py runs), with a progress bar, the table, a PNG chart (chart.py) and JSON."""

from __future__ import annotations

import shutil
import sys
import threading
import time
from pathlib import Path

from vw.benchmark.chart import chart
from vw.benchmark.runner import Config, expand_servers, run, run_seconds
from vw.benchmark.servers import Servers
from vw.benchmark.tools import BenchError


class Progress:
    """A one-line bar on stderr, advanced by the clock between the harness's calls."""

    def __init__(self, stream=sys.stderr, width: int = 30):
        self.stream, self.width = stream, width
        self.total_s = 0.0
        self.started = time.monotonic()
        self.label = "starting"
        self.done = self.total = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._tick, daemon=True)
        self.tty = stream.isatty()

    def on_run(self, done: int, total: int, label: str, cfg) -> None:
        if not self.thread.is_alive() and not self.stop.is_set():
            self.total_s = total * run_seconds(cfg)
            self.started = time.monotonic()
            self.thread.start()
        self.done, self.total, self.label = done, total, label
        if done >= total:
            self.stop.set()
            self.thread.join()
            self.draw(final=True)
        elif not self.tty:
            self.draw()  # a log, not a terminal: one line per run

    def _tick(self) -> None:
        while not self.stop.wait(0.5):
            if self.tty:
                self.draw()

    def line(self) -> str:
        elapsed = time.monotonic() - self.started
        frac = 1.0 if self.done >= self.total else min(0.99, elapsed / self.total_s) if self.total_s else 0.0
        filled = int(frac * self.width)
        left = max(0.0, self.total_s - elapsed)
        eta = "" if frac >= 1 else f", ~{left:.0f} s left"
        return (f"[{'#' * filled}{'.' * (self.width - filled)}] {frac * 100:3.0f}% "
                f"run {min(self.done + 1, self.total)}/{self.total}: {self.label}{eta}")

    def draw(self, final: bool = False) -> None:
        text = self.line()
        if self.tty:
            cols = shutil.get_terminal_size((100, 20)).columns
            self.stream.write("\r" + text[: cols - 1].ljust(cols - 1) + ("\n" if final else ""))
        else:
            self.stream.write(text + "\n")
        self.stream.flush()


def rerun_command(args) -> list[str]:
    """The `vw bench` command line that runs this again (recorded in results.json and .md)."""
    against = [s for s in (args.against or []) if s != "vw"]
    return ["vw", "bench", *(["--against", ",".join(against)] if against else []),
            "--rounds", str(args.rounds), "--duration", str(args.duration),
            "--connections", str(args.connections), "--out", str(args.out)]


def main(args) -> int:
    """Run from `vw bench` (vw.cli) with its parsed arguments."""
    if shutil.which("wrk") is None:
        print("vw bench: wrk is not installed: apt-get install wrk (or your system's wrk package)", file=sys.stderr)
        return 2
    against = [s for s in (args.against or []) if s != "vw"]
    catalog = Servers()
    known = (*catalog.names, *catalog.groups)
    unknown = [s for s in against if s not in known]
    out = Path(args.out)
    try:
        if unknown:
            raise ValueError(f"--against: choose from {','.join(known)} (got {','.join(unknown)!r})")
        servers, explicit = expand_servers(["vw", *against], catalog.groups)
        cfg = Config(servers=servers, explicit=explicit, rounds=int(args.rounds),
                     duration=float(args.duration), connections=int(args.connections),
                     paths=["/1b"], out=out)
    except ValueError as e:
        print(f"vw bench: error: {e}", file=sys.stderr)
        return 2
    progress = Progress()
    try:
        rows = run(cfg, catalog, rerun_command(args), on_run=progress.on_run)
    except BenchError as e:
        progress.stop.set()
        print(f"\nvw bench: {e}", file=sys.stderr)
        return 1
    png = chart(rows, out)
    if png is not None:
        print(f"chart: {png}")
    return 0
