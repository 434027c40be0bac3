"""The Redis task-list protocol against the real Redis."""

import time

import pytest
from redis.asyncio import Redis

from app import keys
from app.queue import TaskQueue


@pytest.fixture
async def queue(redis_url: str):
    client = Redis.from_url(redis_url)
    yield TaskQueue(client, lease_s=30, info_ttl_s=3600)
    await client.aclose()


async def test_claim_moves_atomically_and_takes_a_lease(queue: TaskQueue) -> None:
    await queue.enqueue("t1", {"url": "http://x", "status": "pending"})
    await queue.enqueue("t2", {"url": "http://y", "status": "pending"})
    assert await queue.claim("w1", timeout_s=0.1) == "t1"  # FIFO
    r = queue.redis
    assert await r.lrange(keys.processing("w1"), 0, -1) == [b"t1"]
    assert await r.get(keys.task_lock("t1")) == b"w1"
    assert 0 < await r.ttl(keys.task_lock("t1")) <= 30
    assert 0 < await r.ttl(keys.task_info("t1")) <= 3600
    assert await r.lrange(keys.TASK_QUEUE, 0, -1) == [b"t2"]
    assert await queue.claim("w2", timeout_s=0.1) == "t2"
    assert await queue.claim("w2", timeout_s=0.1) is None


async def test_ack_dead_letter_and_delayed_retry(queue: TaskQueue) -> None:
    r = queue.redis
    for t in ("a", "b", "c"):
        await queue.enqueue(t, {"status": "pending"})
    for _ in range(3):
        await queue.claim("w", timeout_s=0.1)
    assert await queue.ack("w", "a")
    assert await queue.dead_letter("w", "b")
    assert await queue.retry_later("w", "c", due=time.time() + 100)
    assert await r.llen(keys.processing("w")) == 0
    assert await r.lrange(keys.TASK_QUEUE_FAILED, 0, -1) == [b"b"]
    assert (await queue.info("a"))["status"] == "completed" and (await queue.info("b"))["status"] == "failed"
    assert await r.get(keys.task_lock("a")) is None
    assert await queue.promote_due(time.time()) == 0  # not due yet
    assert await queue.promote_due(time.time() + 101) == 1
    assert await queue.claim("w", timeout_s=0.1) == "c"
    assert not await queue.ack("other-worker", "c")  # not in that worker's list: nothing happens
    assert await r.get(keys.task_lock("c")) == b"w"


async def test_reaper_returns_a_dead_workers_tasks_exactly_once(queue: TaskQueue) -> None:
    r = queue.redis
    for t in ("a", "b"):
        await queue.enqueue(t, {"status": "pending", "retry_count": 0})
    await queue.renew("dead", [])
    await queue.claim("dead", timeout_s=0.1)
    await queue.claim("dead", timeout_s=0.1)
    await queue.renew("alive", [])
    now = time.time()
    assert await queue.reap_dead(now) == []  # heartbeat is fresh
    await r.delete(keys.task_lock("a"), keys.task_lock("b"))  # the leases expired
    assert sorted(await queue.reap_dead(now + 31, exclude="alive")) == ["a", "b"]
    assert sorted(await queue.reap_dead(now + 31, exclude="alive")) == []  # exactly once
    assert sorted(await r.lrange(keys.TASK_QUEUE, 0, -1)) == [b"a", b"b"]
    assert (await queue.info("a"))["retry_count"] == "1"
    assert await r.zscore(keys.CONSUMERS, "dead") is None


async def test_orphaned_processing_list_is_reaped_but_a_reclaimed_task_is_not_duplicated(queue: TaskQueue) -> None:
    r = queue.redis
    await r.lpush(keys.processing("ghost"), "x", "y")
    await r.set(keys.task_lock("y"), "someone-else", ex=30)  # y was re-claimed by a live worker
    await queue.renew("someone-else", ["y"])
    assert await queue.reap_dead(time.time(), exclude="someone-else") == ["x"]
    assert await r.lrange(keys.TASK_QUEUE, 0, -1) == [b"x"]
