"""What every provider that calls a remote model through the key pool shares.

The pool (Redis, restored from SQL when Redis lost it), the SQL sessions, recording a
refused key as inactive, one SDK client per key, closing them, and the per-task tally of
requests, tokens and waits. Subclasses say how to make and close a client.
"""

from __future__ import annotations

import asyncio
import logging
import time
from abc import abstractmethod
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from app.accounts import AccountPool, CallFailure, Lease, restore_pool, set_account_status
from app.config import Settings
from app.errors import ProviderRejected, ProviderUnavailable, QuotaExhausted, VttError
from app.providers.base import Provider

log = logging.getLogger("providers")
RESTORE_CHECK_S = 30.0  # how often a provider checks that Redis still holds the pool


def final_error(failure: CallFailure, service: str, retry_after: float | None = None) -> VttError:
    """The error a task fails with when a call's failure is final (or the attempts ran out)."""
    if failure.kind in ("quota_minute", "quota_day", "quota"):
        return QuotaExhausted(f"{service} quota exhausted: {failure.reason}", retry_after=retry_after)
    if failure.kind == "rejected":
        return ProviderRejected(f"{service} refused the request: {failure.reason}")
    return ProviderUnavailable(f"{service} is unavailable: {failure.reason}", retry_after=retry_after)


@dataclass
class Tally:
    """Requests, tokens, waits and accounts of one task's calls."""

    requests: int = 0
    prompt_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = 0
    waited_s: float = 0.0
    accounts: list[str] = field(default_factory=list)
    model: str | None = None

    def record(self, lease: Lease, prompt: int, output: int, total: int, model: str | None = None) -> None:
        self.requests += 1
        self.waited_s += lease.waited_s
        if model is not None:
            self.model = model
        if lease.account_id not in self.accounts:
            self.accounts.append(lease.account_id)
        self.prompt_tokens += prompt
        self.output_tokens += output
        self.total_tokens += total


class PooledProvider(Provider):
    def __init__(self, settings: Settings, *, pool: AccountPool | None = None,
                 sessions: sessionmaker[Session] | None = None) -> None:
        """`pool` / `sessions` default to the Redis and SQL named by `settings`, made on first use."""
        self.settings = settings
        self._pool = pool
        self._sessions = sessions
        self._redis: Any = None
        self._clients: dict[str, Any] = {}
        self._init_lock = asyncio.Lock()
        self._next_check = 0.0

    @abstractmethod
    def _make_client(self, lease: Lease) -> Any:
        """A new SDK client for this lease's key."""

    @abstractmethod
    async def _close_client(self, client: Any) -> None:
        """Close one SDK client."""

    async def pool(self) -> AccountPool:
        async with self._init_lock:
            if self._pool is None:
                from redis.asyncio import Redis

                from app.embedded_redis import EmbeddedRedis

                url = self.settings.redis_url or EmbeddedRedis(self.settings.data_dir).url
                self._redis = Redis.from_url(url, decode_responses=False, health_check_interval=30)
                self._pool = AccountPool(self._redis, window_margin_s=self.settings.gemini_window_margin_s,
                                         on_deactivate=self._persist_inactive)
            elif self._pool.on_deactivate is None:
                self._pool.on_deactivate = self._persist_inactive
            if time.monotonic() >= self._next_check:
                # Redis lost its pool (a restart without persistence): SQL is the record of truth.
                # Checked now and then (one SCARD), so a loss while running heals too.
                if await self._pool.is_empty():
                    await restore_pool(self._pool, self.sessions())
                self._next_check = time.monotonic() + RESTORE_CHECK_S
            return self._pool

    def sessions(self) -> sessionmaker[Session]:
        if self._sessions is None:
            from app.db import make_engine, make_sessionmaker

            self._sessions = make_sessionmaker(make_engine(self.settings.effective_database_url))
        return self._sessions

    async def _persist_inactive(self, acc_id: str, reason: str) -> None:
        try:
            await asyncio.to_thread(set_account_status, self.sessions(), acc_id, "inactive", reason)
        except Exception as exc:  # Redis already has it; SQL catches up on the next import
            log.warning("could not record account %s as inactive in SQL: %s", acc_id, type(exc).__name__)

    def client(self, lease: Lease) -> Any:
        """One client per key (WIRE.md: Gemini's files.upload ignores per-request key headers)."""
        c = self._clients.get(lease.account_id)
        if c is None:
            c = self._clients[lease.account_id] = self._make_client(lease)
        return c

    async def close(self) -> None:
        clients, self._clients = list(self._clients.values()), {}
        for c in clients:
            try:
                await self._close_client(c)
            except Exception:  # closing is best effort
                pass
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None
            self._pool = None
