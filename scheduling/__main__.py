"""``python -m scheduling``: the scheduling engine's command line (no server needed)."""

import sys

from scheduling.engine.cli import main

sys.exit(main())
