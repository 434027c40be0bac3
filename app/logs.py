"""Logging set-up shared by the API and consumers."""

from __future__ import annotations

import logging
import os


def setup_logging(level: str | None = None) -> None:
    logging.basicConfig(
        level=(level or os.environ.get("LOG_LEVEL", "INFO")).upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # aiohttp/urllib3 access noise would echo full URLs with their query strings.
    logging.getLogger("httpx").setLevel(logging.WARNING)
