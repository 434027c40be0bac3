"""Remove cached videos, frames and thumbnails: `python clean_videos.py --help` (see README, Operations)."""

import sys

from app.cli.clean_videos import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
