"""bench/tables.py: the README's benchmark tables are written from committed results (docs/bench/),
and --check fails when a table and its results disagree."""
from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TABLES = REPO / "bench" / "tables.py"
spec = importlib.util.spec_from_file_location("vw_bench_tables", TABLES)
tables = importlib.util.module_from_spec(spec)
spec.loader.exec_module(tables)

# The README tables no committed run backs yet (docs/bench/README.md says which run each needs).
# Committing a run for one of them means taking it off this list.
BACKED = ["static", "files", "files-pipelined", "apps", "wait", "ws", "tls", "tls", "tls", "uring", "apps-uring"]
UNBACKED: list[str] = []


def check(readme: Path = REPO / "README.md", *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(TABLES), "--check", "--readme", str(readme), *extra],
                          capture_output=True, text=True, timeout=60)


def test_readme_tables_match_their_committed_runs():
    r = check()
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.splitlines() == [f"unbacked: {k} (no committed run yet)" for k in UNBACKED]
    text = (REPO / "README.md").read_text()
    backed = [m for m in tables.MARKER.finditer(text) if m.group(2) != tables.UNBACKED]
    assert [m.group(1) for m in backed] == BACKED
    for m in backed:  # each names a committed file, and says so to the reader
        assert (REPO / m.group(2)).is_file()
        tracked = subprocess.run(["git", "-C", str(REPO), "ls-files", "--error-unmatch", m.group(2)],
                                 capture_output=True, text=True)
        assert tracked.returncode == 0, f"{m.group(2)} is not committed"
        assert m.group(3).startswith(f"From [`{m.group(2)}`]")
    assert check(REPO / "README.md", "--strict").returncode == (1 if UNBACKED else 0), "--strict fails on unbacked tables only"


def _copy(tmp_path: Path) -> Path:
    shutil.copytree(REPO / "docs" / "bench", tmp_path / "docs" / "bench")
    shutil.copy(REPO / "README.md", tmp_path / "README.md")
    return tmp_path / "README.md"


def test_check_fails_when_a_figure_differs_and_the_script_writes_it_back(tmp_path):
    readme = _copy(tmp_path)
    text = readme.read_text()
    static = next(m for m in tables.MARKER.finditer(text) if m.group(1) == "static")
    row = next(line for line in static.group(3).splitlines() if line.startswith("| plain | **vw** |"))
    readme.write_text(text.replace(row, row.replace("| 5.23 |", "| 4.23 |")))
    r = check(readme)
    assert r.returncode == 1 and "differs from its run: static (docs/bench/results.json)" in r.stderr
    # a figure changed in the results is caught the same way
    readme.write_text(text)
    data = json.loads((tmp_path / "docs/bench/results.json").read_text())
    next(s for s in data["summary"] if s["server"] == "vw" and s["mode"] == "plain")["cpu_us_per_request"] = 6.0
    (tmp_path / "docs/bench/results.json").write_text(json.dumps(data))
    assert check(readme).returncode == 1
    w = subprocess.run([sys.executable, str(TABLES), "--readme", str(readme)], capture_output=True, text=True)
    assert w.returncode == 0 and "| plain | **vw** | 164,195 | 6.00 |" in readme.read_text()
    assert check(readme).returncode == 0


def test_a_missing_file_or_an_unmarked_unbacked_table_is_an_error(tmp_path):
    readme = _copy(tmp_path)
    text = readme.read_text()
    readme.write_text(text.replace("bench-table static docs/bench/results.json",
                                   "bench-table static docs/bench/nope.json"))
    r = check(readme)
    assert r.returncode == 1 and "docs/bench/nope.json: no such file" in r.stderr
    # a table marked unbacked that does not tell the reader so
    readme.write_text(text.replace("bench-table apps docs/bench/2026-12-01-apps.json", "bench-table apps unbacked", 1))
    r = check(readme)
    assert r.returncode == 1 and "must say 'Not yet traceable'" in r.stderr


# The generators write the hand-made tables exactly, so a committed run changes only figures.


def _block(kind: str) -> list[str]:
    text = (REPO / "README.md").read_text()
    m = next(m for m in tables.MARKER.finditer(text) if m.group(1) == kind)
    return [line for line in m.group(3).splitlines() if line.startswith("|")]


def _rate(text: str) -> float:
    return float(text[:-1]) * 1000 if text.endswith("k") else float(text.replace(",", ""))


def _run(tmp_path: Path, servers: list[str], paths: list[str], summary: list[dict]) -> "tables.Run":
    data = {"date": "2026-11-26T00:00:00+00:00", "command": "c", "summary": summary,
            "config": {"servers": servers, "paths": paths, "rounds": 3, "duration": 5}}
    (tmp_path / "r.json").write_text(json.dumps(data))
    return tables.Run(tmp_path / "r.json", "r.json")


def _row(server, path, mode, cpu, rps=1.0, ratio=None, errors=0, p99=None):
    return {"server": server, "path": path, "mode": mode, "cpu_us_per_request": cpu, "requests_per_s": rps,
            "cpu_ratio": ratio, "errors": errors, "p99_ms": p99, "rps_ratio": None, "p99_ratio": None}


def test_files_tables_are_written_as_the_readme_has_them(tmp_path):
    lines = _block("files")
    labels = {v: k for k, v in tables.FILE_LABELS.items()}
    servers = ["floor", "vw", "nginx", "nginx-nosendfile", "h2o"]
    summary = []
    for line in lines[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        path = labels[cells[0]]
        rps = dict(zip(("vw", "nginx", "h2o"), map(_rate, cells[8].split(" / "))))
        for server, cpu in zip(servers, cells[1:6]):
            summary.append(_row(server, path, "plain", float(cpu.replace(",", "")), rps.get(server, 1.0)))
    run = _run(tmp_path, servers, list(labels.values()), summary)
    assert tables.files_table(run).splitlines() == lines
    lines = _block("files-pipelined")
    summary = []
    for line in lines[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        for server, cpu in zip(("floor", "vw", "nginx", "h2o"), cells[1:5]):
            summary.append(_row(server, labels[cells[0]], "pipelined", float(cpu)))
    run = _run(tmp_path, ["floor", "vw", "nginx", "h2o"], ["/4k", "/64k"], summary)
    assert tables.files_pipelined_table(run).splitlines() == lines


def test_apps_table_is_written_as_the_readme_has_it(tmp_path):
    lines = _block("apps")
    servers, summary = [], []
    for line in lines[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        server = cells[0].strip("*")
        servers.append(server)
        for i, ((path, mode), cell) in enumerate(zip(tables.APP_COLUMNS, cells[1:5])):
            cpu, ratio = re.fullmatch(r"([\d.,]+) \(\**([\d.,]+)\**\)", cell).groups()
            summary.append(_row(server, path, mode, float(cpu), float(cells[5].replace(",", "")) if i == 0 else 1.0,
                                float(ratio), int(cells[6]) if i == 0 else 0))
    run = _run(tmp_path, servers, ["/", "/json"], summary)
    assert tables.apps_table(run).splitlines() == lines
