"""`python main.py`: the API, plus an in-process consumer in the embedded mode.

Embedded (DATABASE_URL and REDIS_URL unset): SQLite and a private redis-server in
DATA_DIR, started here and stopped on exit, and one consumer in this process.
Production: only the API; consumers run as `python -m consumer`.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import uvicorn

from app.api.app import create_app
from app.config import Settings
from app.logs import setup_logging
from app.readiness import wait_for_services
from app.runtime import Runtime, build_runtime

log = logging.getLogger("serve")

# (runtime) -> a coroutine function that stops the consumer and waits for it
ConsumerStarter = Callable[[Runtime], Callable[[], Awaitable[None]]]


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="main.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", help="bind address (default HOST or 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (default PORT or 8000)")
    p.add_argument("--no-consumer", action="store_true", help="embedded mode: do not run the in-process consumer")
    return p.parse_args(argv)


def main(argv: list[str] | None = None, *, start_consumer: ConsumerStarter | None = None) -> int:
    args = parse(argv)
    setup_logging()
    settings = Settings()
    host, port = args.host or settings.host, args.port or settings.port
    def on_startup(rt: Runtime) -> Any:
        if settings.embedded and start_consumer is not None and not args.no_consumer:
            return start_consumer(rt)
        return None

    app = create_app(lambda: build_runtime(settings), on_startup=on_startup)
    mode = "embedded (SQLite + private redis-server in %s)" % settings.data_dir if settings.embedded else "production"
    log.info("starting API on http://%s:%d in %s mode; docs at /docs", host, port, mode)
    wait_for_services(settings)
    # log_config=None: uvicorn's own lines go through our handlers (JSON, secret masking)
    uvicorn.run(app, host=host, port=port, log_level="info", proxy_headers=False, log_config=None)
    return 0

