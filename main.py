"""Run the service: `python main.py` (see README). Embedded mode also runs a consumer."""

import sys

from app.cli.serve import main
from consumer.cli import start_in_process

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], start_consumer=start_in_process))
