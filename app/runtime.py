"""Build the shared resources (SQL store, Redis, queue) from Settings, for API and consumers."""

from __future__ import annotations

from dataclasses import dataclass, field

from redis.asyncio import Redis

from app.config import Settings
from app.db import make_engine, make_sessionmaker, migrate
from app.embedded_redis import EmbeddedRedis
from app.queue import TaskQueue
from app.store import Store


@dataclass
class Runtime:
    settings: Settings
    store: Store
    redis_url: str
    embedded_redis: EmbeddedRedis | None = None
    _redis: Redis | None = field(default=None, repr=False)

    def redis(self) -> Redis:
        """One asyncio client per event loop user; created lazily."""
        if self._redis is None:
            self._redis = Redis.from_url(self.redis_url, decode_responses=False, health_check_interval=30)
        return self._redis

    def queue(self) -> TaskQueue:
        return TaskQueue(self.redis(), lease_s=self.settings.task_lease_s, info_ttl_s=self.settings.task_info_ttl_s)

    async def aclose(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None

    def shutdown(self) -> None:
        self.store.sessions.kw["bind"].dispose()
        if self.embedded_redis is not None:
            self.embedded_redis.stop()


def build_runtime(settings: Settings, *, start_embedded: bool = True, run_migrations: bool = True) -> Runtime:
    """Connect to SQL (migrating it) and Redis; in embedded mode start the private redis-server."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.effective_database_url)
    if run_migrations:
        migrate(engine)
    store = Store(make_sessionmaker(engine))
    embedded = None
    if settings.redis_url:
        redis_url = settings.redis_url
    elif start_embedded:
        embedded = EmbeddedRedis(settings.data_dir)
        redis_url = embedded.start()
    else:
        redis_url = EmbeddedRedis(settings.data_dir).url
    return Runtime(settings=settings, store=store, redis_url=redis_url, embedded_redis=embedded)
