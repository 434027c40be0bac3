"""Consumer process entry: parse arguments, connect, run the worker, drain on signals."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable

from app import metrics
from app.config import Settings
from app.readiness import wait_for_services
from app.logs import setup_logging
from app.runtime import Runtime, build_runtime
from consumer.worker import Worker

log = logging.getLogger("consumer")


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m consumer", description="Run a consumer: claim and process tasks.")
    p.add_argument("--concurrency", type=int, help="tasks in flight in this process (default CONSUMER_CONCURRENCY)")
    p.add_argument("--worker-id", help="stable id for this consumer (default host-pid-random)")
    return p.parse_args(argv)


async def run(rt: Runtime, concurrency: int | None, worker_id: str | None) -> None:
    worker = Worker(rt, concurrency=concurrency, worker_id=worker_id)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, worker.stop)
    try:
        await worker.run()
    finally:
        await rt.aclose()


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    setup_logging()
    settings = Settings()
    if settings.embedded:
        log.error("python -m consumer needs DATABASE_URL and REDIS_URL; in the embedded mode `python main.py` "
                  "runs its own consumer")
        return 2
    wait_for_services(settings)
    metrics.serve(settings.metrics_port, settings.metrics_host)
    rt = build_runtime(settings)
    try:
        asyncio.run(run(rt, args.concurrency, args.worker_id))
    finally:
        rt.shutdown()
    return 0


def start_in_process(rt: Runtime) -> Callable[[], Awaitable[None]]:
    """Start a consumer on the running event loop (embedded mode); returns its stopper."""
    worker = Worker(rt)
    job = asyncio.get_running_loop().create_task(worker.run())

    async def stop() -> None:
        worker.stop()
        await job

    return stop
