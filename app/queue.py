"""The task-list protocol over Redis (a reliable queue with leases).

enqueue: HSET task_info + LPUSH task_queue (one MULTI).
claim:   BLMOVE task_queue -> task_queue_processing:{worker}, then SET task_queue_lock:{id}
         = worker (EX lease). A worker that dies in between leaves the id in its own
         processing list, where the reaper finds it: nothing is lost.
finish:  one Lua script removes the id from the processing list, releases the lease and,
         by mode, dead-letters it, schedules a retry in the delayed set, or requeues it.
reap:    a consumer whose heartbeat is older than the lease is dead; its processing
         list goes back to the queue (Lua, so each id moves exactly once). A live
         consumer's claimed id whose lease expired (a stalled task, a lost renewal) is
         returned too, once it has been seen without a lease on two passes (the first
         pass may fall in the instant between BLMOVE and taking the lease).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from redis.asyncio import Redis
from redis.typing import EncodableT, FieldT

from app import keys

_LUA = Path(__file__).parent / "lua"


class TaskQueue:
    def __init__(self, redis: Redis, *, lease_s: int = 300, info_ttl_s: int = 7 * 24 * 3600) -> None:
        self.redis = redis
        self.lease_s = lease_s
        self.info_ttl_s = info_ttl_s
        self._finish = redis.register_script((_LUA / "finish.lua").read_text())
        self._promote = redis.register_script((_LUA / "promote.lua").read_text())
        self._reap = redis.register_script((_LUA / "reap.lua").read_text())
        self._requeue_unlocked = redis.register_script((_LUA / "requeue_unlocked.lua").read_text())
        self._unlocked_seen: set[tuple[str, str]] = set()

    async def enqueue(self, task_id: str, info: dict[str, Any]) -> None:
        fields: dict[FieldT, EncodableT] = {k: str(v) for k, v in info.items() if v is not None}
        async with self.redis.pipeline(transaction=True) as p:
            p.hset(keys.task_info(task_id), mapping=fields)
            p.expire(keys.task_info(task_id), self.info_ttl_s)
            p.lpush(keys.TASK_QUEUE, task_id)
            await p.execute()

    async def update_info(self, task_id: str, **fields: Any) -> None:
        mapping: dict[FieldT, EncodableT] = {k: str(v) for k, v in fields.items() if v is not None}
        async with self.redis.pipeline(transaction=True) as p:
            p.hset(keys.task_info(task_id), mapping=mapping)
            p.expire(keys.task_info(task_id), self.info_ttl_s)
            await p.execute()

    async def info(self, task_id: str) -> dict[str, str]:
        raw = await self.redis.hgetall(keys.task_info(task_id))
        return {_s(k): _s(v) for k, v in raw.items()}

    async def claim(self, worker_id: str, timeout_s: float) -> str | None:
        # redis-py types the timeout as int; the server takes a float (sub-second waits in tests)
        raw = await self.redis.blmove(keys.TASK_QUEUE, keys.processing(worker_id), timeout_s, "RIGHT", "LEFT")  # type: ignore[arg-type]
        if raw is None:
            return None
        task_id = _s(raw)
        await self.redis.set(keys.task_lock(task_id), worker_id, ex=self.lease_s)
        return task_id

    async def renew(self, worker_id: str, task_ids: list[str]) -> None:
        """Heartbeat: extend the leases this worker holds and record it alive."""
        async with self.redis.pipeline(transaction=False) as p:
            p.zadd(keys.CONSUMERS, {worker_id: time.time()})
            for task_id in task_ids:
                p.set(keys.task_lock(task_id), worker_id, ex=self.lease_s)
            await p.execute()

    async def unregister(self, worker_id: str) -> None:
        await self.redis.zrem(keys.CONSUMERS, worker_id)

    async def _finish_(self, worker_id: str, task_id: str, status: str, mode: str, dest: str, due: float = 0) -> bool:
        result = await self._finish(
            keys=[keys.processing(worker_id), keys.task_lock(task_id), keys.task_info(task_id), dest],
            args=[task_id, worker_id, status, mode, f"{due:.3f}", self.info_ttl_s],
        )
        return bool(result)

    async def ack(self, worker_id: str, task_id: str, status: str = "completed") -> bool:
        return await self._finish_(worker_id, task_id, status, "ack", keys.TASK_QUEUE_FAILED)

    async def dead_letter(self, worker_id: str, task_id: str) -> bool:
        return await self._finish_(worker_id, task_id, "failed", "fail", keys.TASK_QUEUE_FAILED)

    async def retry_later(self, worker_id: str, task_id: str, due: float) -> bool:
        return await self._finish_(worker_id, task_id, "pending", "delay", keys.TASK_QUEUE_DELAYED, due)

    async def give_back(self, worker_id: str, task_id: str) -> bool:
        """Return an unstarted or interrupted task to the head of the queue (shutdown)."""
        return await self._finish_(worker_id, task_id, "pending", "requeue", keys.TASK_QUEUE)

    async def promote_due(self, now: float, limit: int = 100) -> int:
        return int(await self._promote(keys=[keys.TASK_QUEUE_DELAYED, keys.TASK_QUEUE], args=[f"{now:.3f}", limit]))

    async def reap_dead(self, now: float, *, exclude: str | None = None) -> list[str]:
        """Return the tasks of consumers whose heartbeat is older than the lease."""
        moved: list[str] = []
        stale = await self.redis.zrangebyscore(keys.CONSUMERS, "-inf", now - self.lease_s)
        workers = {_s(w) for w in stale}
        async for raw in self.redis.scan_iter(match=keys.PROCESSING_PREFIX + "*", count=200):
            worker = _s(raw)[len(keys.PROCESSING_PREFIX):]
            score = await self.redis.zscore(keys.CONSUMERS, worker)
            if score is None:
                workers.add(worker)  # never heartbeated, or already removed: its list is orphaned
        workers.discard(exclude or "")
        for worker in workers:
            ids = await self._reap(keys=[keys.processing(worker), keys.TASK_QUEUE, keys.CONSUMERS],
                                   args=[worker, keys.TASK_LOCK_PREFIX, keys.TASK_INFO_PREFIX])
            moved.extend(_s(i) for i in ids)
        return moved

    async def reap_expired_leases(self) -> list[str]:
        """Return claimed ids without a lease (seen so on two consecutive calls) to the queue."""
        unlocked: set[tuple[str, str]] = set()
        async for raw in self.redis.scan_iter(match=keys.PROCESSING_PREFIX + "*", count=200):
            worker = _s(raw)[len(keys.PROCESSING_PREFIX):]
            ids = [_s(i) for i in await self.redis.lrange(keys.processing(worker), 0, -1)]
            if not ids:
                continue
            async with self.redis.pipeline(transaction=False) as p:
                for task_id in ids:
                    p.exists(keys.task_lock(task_id))
                held = await p.execute()
            unlocked.update((worker, t) for t, h in zip(ids, held, strict=True) if not h)
        due = unlocked & self._unlocked_seen
        self._unlocked_seen = unlocked - due
        moved: list[str] = []
        by_worker: dict[str, list[str]] = {}
        for worker, task_id in due:
            by_worker.setdefault(worker, []).append(task_id)
        for worker, ids in by_worker.items():
            got = await self._requeue_unlocked(keys=[keys.processing(worker), keys.TASK_QUEUE],
                                               args=[keys.TASK_LOCK_PREFIX, keys.TASK_INFO_PREFIX, *ids])
            moved.extend(_s(i) for i in got)
        return moved

    async def held_ids(self) -> set[str]:
        """Every task id Redis holds: queued, delayed, claimed or leased."""
        held = {_s(i) for i in await self.redis.lrange(keys.TASK_QUEUE, 0, -1)}
        held |= {_s(i) for i in await self.redis.zrange(keys.TASK_QUEUE_DELAYED, 0, -1)}
        async for raw in self.redis.scan_iter(match=keys.PROCESSING_PREFIX + "*", count=200):
            held |= {_s(i) for i in await self.redis.lrange(_s(raw), 0, -1)}
        async for raw in self.redis.scan_iter(match=keys.TASK_LOCK_PREFIX + "*", count=500):
            held.add(_s(raw)[len(keys.TASK_LOCK_PREFIX):])
        return held

    async def try_lock_reconcile(self, owner: str, ttl_s: int) -> bool:
        return bool(await self.redis.set(keys.RECONCILE_LOCK, owner, nx=True, ex=max(1, ttl_s)))

    async def cancel(self, task_id: str) -> None:
        """Drop a task from the waiting structures and flag it for a consumer that may hold it."""
        async with self.redis.pipeline(transaction=True) as p:
            p.lrem(keys.TASK_QUEUE, 0, task_id)
            p.zrem(keys.TASK_QUEUE_DELAYED, task_id)
            p.set(keys.task_cancel(task_id), "1", ex=self.info_ttl_s)
            p.hset(keys.task_info(task_id), mapping={"status": "failed", "error_code": "cancelled"})
            p.expire(keys.task_info(task_id), self.info_ttl_s)
            await p.execute()

    async def cancelled(self, task_ids: list[str]) -> list[str]:
        if not task_ids:
            return []
        flags = await self.redis.mget([keys.task_cancel(t) for t in task_ids])
        return [t for t, f in zip(task_ids, flags, strict=True) if f is not None]

    async def forget_failed(self, task_id: str) -> None:
        """An operator retry: the id leaves the dead-letter list."""
        async with self.redis.pipeline(transaction=True) as p:
            p.lrem(keys.TASK_QUEUE_FAILED, 0, task_id)
            p.delete(keys.task_cancel(task_id))
            await p.execute()

    async def stats(self, now: float, alive_within_s: float) -> dict[str, Any]:
        """Queue depth, in-flight count, dead letters, oldest waiting age and live consumers."""
        depth = await self.depth()
        in_flight = 0
        async for raw in self.redis.scan_iter(match=keys.PROCESSING_PREFIX + "*", count=200):
            in_flight += int(await self.redis.llen(_s(raw)))
        oldest = await self.redis.lindex(keys.TASK_QUEUE, -1)  # LPUSH in, BLMOVE RIGHT out
        oldest_age = None
        if oldest is not None:
            created = await self.redis.hget(keys.task_info(_s(oldest)), "created_at")
            if created is not None:
                oldest_age = round(max(0.0, now - float(_s(created))), 3)
        alive = await self.redis.zcount(keys.CONSUMERS, now - alive_within_s, "+inf")
        return {**depth, "in_flight": in_flight, "oldest_age_s": oldest_age, "consumers_alive": int(alive)}

    async def depth(self) -> dict[str, int]:
        async with self.redis.pipeline(transaction=False) as p:
            p.llen(keys.TASK_QUEUE)
            p.zcard(keys.TASK_QUEUE_DELAYED)
            p.llen(keys.TASK_QUEUE_FAILED)
            queued, delayed, failed = await p.execute()
        return {"queued": int(queued), "delayed": int(delayed), "failed": int(failed)}


def _s(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)
