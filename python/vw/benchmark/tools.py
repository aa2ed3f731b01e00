"""What every part of the benchmark shares: BenchError (a problem told in one line) and finding the
programs a run needs."""
from __future__ import annotations

import os
import shutil


class BenchError(Exception):
    """A problem reported to the user as one line, without a traceback."""


def require_tool(name: str, package: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise BenchError(f"{name} not found on PATH: apt-get install {package}")
    return path


def find_sbin(name: str) -> str | None:
    """name on PATH, or in /usr/sbin (not on a plain user's PATH)."""
    return shutil.which(name) or (
        f"/usr/sbin/{name}" if os.access(f"/usr/sbin/{name}", os.X_OK) else None)
