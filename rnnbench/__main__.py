"""``python -m rnnbench``: the same command as ``rnnbench``."""

import sys

from .cli import main

sys.exit(main())
