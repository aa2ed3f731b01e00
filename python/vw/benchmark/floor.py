"""The floors: floor.c (beside this file), a C epoll server that only answers, so that what it
costs is mostly the kernel's work, and floor_uring.c, the same over an io_uring (liburing).
Compiled with gcc on first use, and again when the source is newer."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

from vw.benchmark.tools import BenchError, require_tool

FLOOR_SRC = Path(__file__).resolve().parent / "floor.c"
URING_FLOOR_SRC = Path(__file__).resolve().parent / "floor_uring.c"
# Where `vw bench` builds it; bench/run.py builds it in the repository's bench/build/.
BUILD_DIR = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "vw" / "bench"


def build_floor(build_dir: Path | None = None, uring: bool = False) -> Path:
    """Compile floor.c, or floor_uring.c (when missing or stale), and return the binary's path."""
    build_dir = BUILD_DIR if build_dir is None else build_dir
    src = URING_FLOOR_SRC if uring else FLOOR_SRC
    binary = build_dir / src.stem
    if binary.exists() and binary.stat().st_mtime >= src.stat().st_mtime:
        return binary
    gcc = require_tool("gcc", "gcc")
    build_dir.mkdir(parents=True, exist_ok=True)
    libs = ["-luring"] if uring else []
    res = subprocess.run([gcc, "-O2", "-Wall", "-o", str(binary), str(src), *libs],
                         capture_output=True, text=True)
    if res.returncode != 0:
        hint = " (apt-get install liburing-dev)" if uring and "liburing" in res.stderr else ""
        raise BenchError(f"building {src.name} failed{hint}: {res.stderr.strip()}")
    return binary
