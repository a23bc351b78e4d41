"""``python -m rnnbench``: the same command as ``rnnbench``."""

import sys

from rnnbench.cli import main

sys.exit(main())
