"""``python -m vw``: the same as the ``vw`` command."""

import sys

from vw.cli import main

sys.exit(main())
