"""`vw bench`: the seed experiment (keep-alive GETs of a 1-byte file from 300 connections, plain
and pipelined), run on this machine by the benchmark harness (vw.benchmark.harness, the same code
as bench/run.py), with a progress bar, the table, a PNG chart and JSON."""

from __future__ import annotations

import shutil
import sys
import threading
import time
from pathlib import Path

from vw.benchmark import harness


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

    def on_run(self, done: int, total: int, label: str, args) -> None:
        if not self.thread.is_alive() and not self.stop.is_set():
            self.total_s = total * harness.run_seconds(args)
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


def chart(rows: list, out: Path) -> Path | None:
    """results.png: CPU µs per request and requests per second of each server, by mode."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("vw bench: no chart: matplotlib is not installed (pip install matplotlib)", file=sys.stderr)
        return None
    modes = sorted({r.mode for r in rows}, key=["plain", "pipelined"].index)
    servers = list(dict.fromkeys(r.server for r in rows))
    by = {(r.server, r.mode): r for r in rows}
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    width = 0.8 / max(1, len(modes))
    colors = ["#e8772e", "#3b6ea5", "#6a9f58", "#a05195", "#999999"]
    for k, (ax, metric, title) in enumerate((
            (axes[0], "cpu_us_per_request", "server CPU per request (µs, lower is better)"),
            (axes[1], "requests_per_s", "requests per second (higher is better)"))):
        for j, mode in enumerate(modes):
            values = [getattr(by[(s, mode)], metric) if (s, mode) in by else 0 for s in servers]
            xs = [i + (j - (len(modes) - 1) / 2) * width for i in range(len(servers))]
            bars = ax.bar(xs, values, width, label=mode, color=colors[j % len(colors)])
            ax.bar_label(bars, fmt="%.2f" if metric == "cpu_us_per_request" else "%.0f", fontsize=7)
        ax.set_xticks(range(len(servers)), servers)
        ax.set_title(title, fontsize=10)
        if k == 0:
            ax.legend(fontsize=8)
    path = rows[0].path if rows else "/1b"
    fig.suptitle(f"vw bench: GET {path}, keep-alive, server pinned to one CPU, wrk to another", fontsize=11)
    fig.tight_layout()
    target = out / "results.png"
    fig.savefig(target, dpi=110)
    plt.close(fig)
    return target


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
    servers = ["vw", *against]
    out = Path(args.out)
    argv = ["--servers", ",".join(servers), "--rounds", str(args.rounds), "--duration", str(args.duration),
            "--connections", str(args.connections), "--paths", "/1b", "--out", str(out)]
    progress = Progress()
    try:
        rows = harness.run(argv, on_run=progress.on_run, command=rerun_command(args))
    except harness.BenchError as e:
        progress.stop.set()
        print(f"\nvw bench: {e}", file=sys.stderr)
        return 1
    png = chart(rows, out)
    if png is not None:
        print(f"chart: {png}")
    return 0
