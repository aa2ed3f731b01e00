#!/usr/bin/env python3
"""The benchmark harness, run from the repository: results, the floor binary, the app benchmarks
and the peers' venv live in this folder. The harness is vw.benchmark (it ships with vw, so
`vw bench` runs the same code) with what only these benchmarks use, in bench/harness/ (the app
servers, the file-size runs, these options): `python bench/run.py --help`."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))  # vw from this checkout

from harness.cli import main  # noqa: E402  (bench/harness/, beside this file)

if __name__ == "__main__":
    sys.exit(main())
