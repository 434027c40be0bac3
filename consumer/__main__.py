"""`python -m consumer`: run one consumer process until SIGTERM/SIGINT."""

from __future__ import annotations

import sys

from consumer.cli import main

sys.exit(main(sys.argv[1:]))
