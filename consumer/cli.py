"""Consumer process entry: parse arguments, connect, run the worker, drain on signals."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import threading
import time
from collections.abc import Awaitable, Callable

from app import metrics
from app.config import Settings
from app.logs import setup_logging
from app.readiness import wait_for_services
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
    # Not asyncio.run(): it waits for the default executor, i.e. for an analysis thread whose
    # task the drain has already handed back; loop.close() does not wait.
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        loop.run_until_complete(run(rt, args.concurrency, args.worker_id))
        loop.run_until_complete(loop.shutdown_asyncgens())
    finally:
        loop.close()
        rt.shutdown()
    deadline = time.monotonic() + 3.0  # idle executor threads exit at once after loop.close()
    for t in threading.enumerate():
        if t is not threading.main_thread() and not t.daemon:
            t.join(max(0.0, deadline - time.monotonic()))
    busy = [t for t in threading.enumerate() if t is not threading.main_thread() and t.is_alive() and not t.daemon]
    if busy:
        # Interpreter exit would join these threads (minutes of abandoned CPU work); their
        # tasks are back in the queue and every write is done, so leave now.
        log.warning("leaving %d busy worker thread(s) behind; their tasks were returned to the queue", len(busy))
        logging.shutdown()
        os._exit(0)
    return 0


def start_in_process(rt: Runtime) -> Callable[[], Awaitable[None]]:
    """Start a consumer on the running event loop (embedded mode); returns its stopper."""
    worker = Worker(rt)
    job = asyncio.get_running_loop().create_task(worker.run())

    async def stop() -> None:
        worker.stop()
        await job

    return stop
