"""``python -m models_hub``: the compression engine's command line (no server needed)."""

import sys

from models_hub.compression.cli import main

sys.exit(main())
