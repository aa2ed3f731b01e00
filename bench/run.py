#!/usr/bin/env python3
"""The benchmark harness, run from the repository: results, the floor binary, the app benchmarks
and the peers' venv live in this folder. The harness itself is vw.benchmark.harness (it ships
with vw, so `vw bench` runs the same code): `python bench/run.py --help`."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))  # vw from this checkout

from vw.benchmark import harness  # noqa: E402

harness.use_repo(Path(__file__).resolve().parent)

if __name__ == "__main__":
    sys.exit(harness.main())
