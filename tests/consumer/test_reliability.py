"""Issue 4: no accepted task is lost or stuck, duplicates are harmless, failures say why."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis as redis_sync
from sqlalchemy import func, select

from app import keys
from app.models import Result, Tag
from consumer.worker import retry_delay_s
from tests.conftest import MYSQL_URL, ROOT, MediaServer, make_settings, wait_for
from tests.e2e.harness import Service, running_service

TINY = "corpus/hostile/tiny_valid_1frame_64x36.mp4"


@pytest.mark.parametrize("attempt,rand,expect", [
    (0, 1.0, 2.0), (1, 1.0, 4.0), (2, 0.5, 4.0), (3, 0.25, 4.0), (7, 1.0, 256.0), (8, 1.0, 300.0), (20, 1.0, 300.0),
    (4, 0.0, 0.0),
])
def test_retry_backoff_schedule(attempt: int, rand: float, expect: float) -> None:
    assert retry_delay_s(attempt, rand=rand) == expect


def test_backoff_is_full_jitter() -> None:
    delays = [retry_delay_s(3) for _ in range(500)]
    assert 0 <= min(delays) < 2 and 14 < max(delays) <= 16


@pytest.fixture
async def service(tmp_path: Path, redis_url: str, mysql_store, model_dir: Path):
    settings = make_settings(tmp_path, database_url=MYSQL_URL, redis_url=redis_url, model_dir=model_dir,
                             max_retries=2, download_retries=0, reconcile_grace_s=0, reconcile_interval_s=3600)
    async with running_service(settings) as svc:
        yield svc


def sync_redis(svc: Service) -> redis_sync.Redis:
    return redis_sync.Redis.from_url(svc.settings.redis_url or "")


async def test_expired_lease_of_a_live_consumer_is_reaped_once(service: Service, media_server: MediaServer) -> None:
    r = sync_redis(service)
    worker = service.workers[0]
    worker.stop()  # keep the real worker from claiming while we stage a stalled claim
    await asyncio.sleep(1.5)
    task_id = await service.submit(media_server.url(TINY))
    q = service.runtime.queue()
    await q.renew("stalled", [])
    assert await q.claim("stalled", timeout_s=1) == task_id
    r.delete(keys.task_lock(task_id))  # the stalled consumer's lease expired; it still heartbeats
    assert await q.reap_expired_leases() == []  # first sighting: could be the claim instant
    assert await q.reap_expired_leases() == [task_id]
    assert await q.reap_expired_leases() == []  # exactly once
    assert r.lrange(keys.TASK_QUEUE, 0, -1) == [task_id.encode()]
    assert r.hget(keys.task_info(task_id), "retry_count") == b"1"


async def test_dead_consumers_tasks_complete_elsewhere(service: Service, media_server: MediaServer) -> None:
    r = sync_redis(service)
    service.workers[0].stop()
    await asyncio.sleep(1.5)
    q = service.runtime.queue()
    ids = [await service.submit(media_server.url(TINY), uid=i) for i in range(2)]
    await q.renew("doomed", [])
    for _ in ids:
        await q.claim("doomed", timeout_s=1)
    r.zadd(keys.CONSUMERS, {"doomed": time.time() - 3600})  # SIGKILLed long ago: no heartbeat since
    for i in ids:
        r.delete(keys.task_lock(i))
    from consumer.worker import Worker

    worker = Worker(service.runtime, heartbeat_s=0.3, upkeep_s=0.3)
    job = asyncio.create_task(worker.run())
    try:
        for task_id in ids:
            data = await service.wait(task_id)
            assert data["status"] == "completed" and data["retry_count"] == 1
    finally:
        worker.stop()
        await job
    assert r.exists(keys.processing("doomed")) == 0 and r.zscore(keys.CONSUMERS, "doomed") is None


async def test_a_task_that_keeps_killing_consumers_is_dead_lettered(service: Service, media_server: MediaServer) -> None:
    r = sync_redis(service)
    service.workers[0].stop()
    await asyncio.sleep(1.5)
    task_id = await service.submit(media_server.url(TINY))
    r.hset(keys.task_info(task_id), "retry_count", 3)  # reaped three times: over MAX_RETRIES=2
    from consumer.worker import Worker

    worker = Worker(service.runtime, heartbeat_s=0.3, upkeep_s=0.3)
    job = asyncio.create_task(worker.run())
    try:
        data = await service.wait(task_id)
    finally:
        worker.stop()
        await job
    assert data["status"] == "failed" and data["error"]["code"] == "lease_lost" and data["retry_count"] == 3
    assert task_id.encode() in r.lrange(keys.TASK_QUEUE_FAILED, 0, -1)
    assert media_server.hits.get("/" + TINY, 0) == 0  # it was not run a fourth time


async def test_retryable_failures_dead_letter_after_max_retries(service: Service, media_server: MediaServer) -> None:
    data = await service.wait(await service.submit(media_server.url("status/502")), timeout=60)
    assert data["status"] == "failed" and data["error"]["code"] == "download_failed" and data["retry_count"] == 2
    assert media_server.hits["/status/502"] == 3  # first try + MAX_RETRIES


async def test_duplicate_execution_leaves_one_result(service: Service, media_server: MediaServer) -> None:
    task_id = await service.submit(media_server.url("corpus/containers/bbb_clip.mp4"), dimensions="vision")
    first = await service.wait(task_id)
    # A reaped lease delivers the same task again: run it once more, by hand, as a consumer would.
    store = service.runtime.store
    with store.sessions.begin() as s:
        from app.models import Task

        s.get(Task, task_id).status = "processing"
    q = service.runtime.queue()
    await q.enqueue(task_id, {"status": "pending"})
    again = await service.wait(task_id)
    assert again["status"] == "completed"
    with store.sessions() as s:
        assert s.scalar(select(func.count()).select_from(Result).where(Result.task_id == task_id)) == 1
        names = list(s.scalars(select(Tag.name).where(Tag.task_id == task_id)))
    assert len(names) == len(set(names)) == len(first["result"]["tags"])
    assert sync_redis(service).hget(keys.task_info(task_id), "status") == b"completed"


async def test_reconciliation_after_redis_loss(service: Service, media_server: MediaServer, redis_url: str) -> None:
    from app.accounts import AccountPool, AccountSpec, save_accounts

    r = sync_redis(service)
    worker = service.workers[0]
    worker.stop()
    await asyncio.sleep(1.5)
    ids = [await service.submit(media_server.url(TINY), uid=i) for i in range(3)]
    spec = AccountSpec(api_key="AIzaReconcileTestKey0123456789abcdefghij", daily_limit=100, minute_limit=5,
                       username="u", password="p", phone="1", email="ops@example.com")
    await asyncio.to_thread(save_accounts, service.runtime.store.sessions, [spec])
    r.flushdb()  # the machines' Redis keeps nothing on disk: a restart looks like this
    assert r.llen(keys.TASK_QUEUE) == 0
    from consumer.worker import Worker

    worker = Worker(service.runtime, heartbeat_s=0.3, upkeep_s=0.3)
    assert sorted(await worker.reconcile(time.time())) == sorted(ids)
    assert sorted(x.decode() for x in r.lrange(keys.TASK_QUEUE, 0, -1)) == sorted(ids)
    assert await worker.reconcile(time.time()) == []  # held now: nothing enqueued twice
    assert not await AccountPool(service.runtime.redis()).is_empty()
    job = asyncio.create_task(worker.run())
    try:
        for task_id in ids:
            assert (await service.wait(task_id))["status"] == "completed"
    finally:
        worker.stop()
        await job


async def test_operator_cancel_retry_and_stats(service: Service, media_server: MediaServer) -> None:
    c = service.client
    service.workers[0].stop()
    await asyncio.sleep(1.5)
    waiting = await service.submit(media_server.url(TINY))
    stats = (await c.get("/api/v1/queue/stats")).json()["data"]
    assert stats["queued"] == 1 and stats["oldest_age_s"] is not None and stats["in_flight"] == 0
    r = await c.post(f"/api/v1/task/{waiting}/cancel")
    assert r.status_code == 200 and r.json()["data"]["was"] == "pending"
    task = (await c.get(f"/api/v1/task/{waiting}")).json()["data"]
    assert task["status"] == "failed" and task["error"]["code"] == "cancelled"
    assert (await c.get("/api/v1/queue/stats")).json()["data"]["queued"] == 0
    assert (await c.post(f"/api/v1/task/{waiting}/cancel")).status_code == 409
    r = await c.post(f"/api/v1/task/{waiting}/retry")
    assert r.status_code == 200
    assert (await c.post(f"/api/v1/task/{waiting}/retry")).status_code == 409  # pending now
    assert (await c.post(f"/api/v1/task/{'f' * 32}/retry")).status_code == 404
    from consumer.worker import Worker

    worker = Worker(service.runtime, heartbeat_s=0.3, upkeep_s=0.3)
    job = asyncio.create_task(worker.run())
    try:
        done = await service.wait(waiting)
        assert done["status"] == "completed" and done["retry_count"] == 0
        stats = (await c.get("/api/v1/queue/stats")).json()["data"]
        assert stats["consumers_alive"] >= 1 and stats["queued"] == 0 and stats["failed"] == 0
        # Cancel a running task: a long video, cancelled once it is being processed.
        running = await service.submit(media_server.url("corpus/real/big_buck_bunny_0_30_moviepy.webm"))

        async def processing() -> bool:
            return (await c.get(f"/api/v1/task/{running}")).json()["data"]["status"] == "processing"

        await wait_for(processing, timeout=30, interval=0.05)
        assert (await c.post(f"/api/v1/task/{running}/cancel")).json()["data"]["was"] == "processing"
        await wait_for(lambda: _no_inflight(worker), timeout=30)
        task = (await c.get(f"/api/v1/task/{running}")).json()["data"]
        assert task["status"] == "failed" and task["error"]["code"] == "cancelled" and task["result"] is None
    finally:
        worker.stop()
        await job


async def _no_inflight(worker: object) -> bool:
    return not worker.inflight


def _consumer(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "consumer", "--concurrency", "1"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


@pytest.mark.parametrize("grace,outcome", [("60", "completed"), ("0", "requeued")])
async def test_sigterm_drains_or_returns_in_flight_work(tmp_path: Path, redis_url: str, mysql_store, model_dir: Path,
                                                       media_server: MediaServer, grace: str, outcome: str) -> None:
    settings = make_settings(tmp_path, database_url=MYSQL_URL, redis_url=redis_url, model_dir=model_dir)
    env = dict(os.environ, DATABASE_URL=MYSQL_URL, REDIS_URL=redis_url, DATA_DIR=str(settings.data_dir),
               MODEL_DIR=str(model_dir), DOWNLOAD_ALLOWED_HOSTS="127.0.0.1", SHUTDOWN_GRACE_S=grace, LOG_LEVEL="INFO",
               MAX_FRAMES="120", FRAME_INTERVAL_S="0.25")  # ~120 frames of OCR: seconds of work to interrupt
    async with running_service(settings, consumers=0) as svc:
        task_id = await svc.submit(media_server.url("corpus/real/big_buck_bunny_0_30_moviepy.webm"))
        proc = _consumer(env)
        try:
            async def processing() -> bool:
                data = (await svc.client.get(f"/api/v1/task/{task_id}")).json()["data"]
                return data["status"] == "processing" and data["progress"]["stage"] not in ("queued", "downloading")

            await wait_for(processing, timeout=60, interval=0.05)
            proc.send_signal(signal.SIGTERM)
            out = (await asyncio.to_thread(proc.communicate, timeout=90))[0].decode()
        finally:
            if proc.poll() is None:
                proc.kill()
        assert proc.returncode == 0, out
        data = (await svc.client.get(f"/api/v1/task/{task_id}")).json()["data"]
        r = sync_redis(svc)
        if outcome == "completed":
            assert data["status"] == "completed"
        else:
            assert data["status"] == "pending" and data["retry_count"] == 0, out
            assert r.lrange(keys.TASK_QUEUE, 0, -1) == [task_id.encode()]  # back at the head of the queue
        assert [k for k in r.scan_iter(match=keys.PROCESSING_PREFIX + "*")] == []
        assert r.zcard(keys.CONSUMERS) == 0
