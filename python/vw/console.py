"""Lines to standard error that several processes can write at once."""

from __future__ import annotations

import os
import sys


def log(msg: str) -> None:
    """One line to stderr in one write(2), so lines from several workers never interleave."""
    sys.stderr.flush()
    data = (msg + "\n").encode("utf-8", "replace")
    while data:
        data = data[os.write(2, data):]
