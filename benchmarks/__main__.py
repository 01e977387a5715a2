"""``python -m benchmarks``: see :mod:`benchmarks.cli` for the options."""

import sys

from .cli import main

sys.exit(main())
