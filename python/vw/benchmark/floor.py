"""The floor: floor.c (beside this file), a C epoll server that only answers, so that what it
costs is mostly the kernel's work. Compiled with gcc on first use, and again when floor.c is newer."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

from vw.benchmark.tools import BenchError, require_tool

FLOOR_SRC = Path(__file__).resolve().parent / "floor.c"
# Where `vw bench` builds it; bench/run.py builds it in the repository's bench/build/.
BUILD_DIR = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "vw" / "bench"


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
