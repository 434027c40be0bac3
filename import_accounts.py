"""Manage the Gemini account pool: `python import_accounts.py --file accounts.json` (see --help)."""

import sys

from app.cli.import_accounts import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
