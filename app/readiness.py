"""Wait for the database and Redis at start-up, with retries, instead of dying on the first refusal.

    wait_for(check, attempts, delay_s)      call `check` until it returns without raising
    wait_for_async(check, attempts, delay_s)  the same for a coroutine function
    wait_for_services(settings)             SQL `SELECT 1` and Redis PING, each within
                                            STARTUP_WAIT_ATTEMPTS x STARTUP_WAIT_DELAY_S

Compose starts services in order (depends_on: service_healthy), but a database can still
restart under a running API, and supervisor or a plain shell has no ordering at all: every
process that needs SQL and Redis calls `wait_for_services` before it builds its runtime.
`sleep` is a parameter so tests count the waits instead of sleeping them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from app.config import Settings

log = logging.getLogger("readiness")
T = TypeVar("T")


class NotReady(RuntimeError):
    """A dependency did not answer within its attempts; the last error is the cause."""


def wait_for(check: Callable[[], T], attempts: int, delay_s: float, *, what: str = "dependency",
             sleep: Callable[[float], None] = time.sleep) -> T:
    """Call `check()` up to `attempts` times, `delay_s` apart; its value, or NotReady from the last error."""
    if attempts < 1:
        raise ValueError("attempts must be >= 1")
    for n in range(1, attempts + 1):
        try:
            return check()
        except Exception as exc:
            if n == attempts:
                raise NotReady(f"{what} not ready after {attempts} attempt(s): {type(exc).__name__}: {exc}") from exc
            log.warning("%s not ready (%s: %s); attempt %d/%d, next in %.1f s", what, type(exc).__name__,
                        exc, n, attempts, delay_s)
            sleep(delay_s)
    raise AssertionError("unreachable")


async def wait_for_async(check: Callable[[], Awaitable[T]], attempts: int, delay_s: float, *,
                         what: str = "dependency",
                         sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> T:
    """`wait_for` for a coroutine function (the API's lifespan, the consumer's loop)."""
    if attempts < 1:
        raise ValueError("attempts must be >= 1")
    for n in range(1, attempts + 1):
        try:
            return await check()
        except Exception as exc:
            if n == attempts:
                raise NotReady(f"{what} not ready after {attempts} attempt(s): {type(exc).__name__}: {exc}") from exc
            log.warning("%s not ready (%s: %s); attempt %d/%d, next in %.1f s", what, type(exc).__name__,
                        exc, n, attempts, delay_s)
            await sleep(delay_s)
    raise AssertionError("unreachable")


def ping_database(url: str) -> None:
    from sqlalchemy import text

    from app.db import make_engine

    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    finally:
        engine.dispose()


def ping_redis(url: str) -> None:
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=3)
    try:
        client.ping()
    finally:
        client.close()


def wait_for_services(settings: Settings, *, sleep: Callable[[float], None] = time.sleep) -> None:
    """Production: block until SQL and Redis answer (embedded mode: nothing external to wait for)."""
    if settings.embedded:
        return
    attempts, delay = settings.startup_wait_attempts, settings.startup_wait_delay_s
    url = settings.effective_database_url
    wait_for(lambda: ping_database(url), attempts, delay, what="database", sleep=sleep)
    assert settings.redis_url is not None
    redis_url = settings.redis_url
    wait_for(lambda: ping_redis(redis_url), attempts, delay, what="redis", sleep=sleep)
