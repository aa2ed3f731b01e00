"""results.png, the chart `vw bench` draws of its medians (needs matplotlib: `pip install 'vw[bench]'`)."""
from __future__ import annotations

import sys
from pathlib import Path

from vw.benchmark.report import Summary
from vw.benchmark.wrk import MODES


def chart(rows: list[Summary], out: Path) -> Path | None:
    """results.png: CPU µs per request and requests per second of each server, by mode."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("vw bench: no chart: matplotlib is not installed (pip install matplotlib)", file=sys.stderr)
        return None
    modes = sorted({r.mode for r in rows}, key=MODES.index)
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
