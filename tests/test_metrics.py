"""Metrics: the pure helpers, the hooks, the cluster gauges from real Redis, and /metrics scraped
from a running API and a consumer's own port after real tasks (MariaDB, Redis, ffmpeg, corpus)."""

from __future__ import annotations

import asyncio
import inspect
import re
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY
from redis.asyncio import Redis

import consumer.worker
from app import keys, metrics
from app.accounts import AccountPool, AccountRecord
from app.runtime import build_runtime
from consumer.worker import Worker
from tests.conftest import MYSQL_URL, MediaServer, free_port, make_settings
from tests.e2e.harness import running_service


def value(name: str, **labels: str) -> float:
    v = REGISTRY.get_sample_value(name, labels)
    return 0.0 if v is None else v


def scraped(text: str, name: str, **labels: str) -> float:
    """A sample's value from an exposition text (0 when absent)."""
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        m = re.fullmatch(r"([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)", line)
        if m and m.group(1) == name:
            got = ",".join(sorted(p for p in (m.group(2) or "").split(",") if p))
            if got == want:
                return float(m.group(3))
    return 0.0


@pytest.mark.parametrize("timings,expected", [
    ({"downloading": 1.0, "probing": 0.2, "decoding": 0.5, "labelling": 2.0, "reading_text": 1.5, "merging": 0.1}, 3.5),
    ({"downloading": 1.0, "waiting_for_account": 4.0, "uploading": 2.0, "tagging": 3.0, "parsing": 0.5}, 5.5),
    ({"downloading": 1.0, "detecting_scenes": 2.0, "labelling_frames": 0.25}, 0.25),
    ({"downloading": 1.0}, 0.0),
    ({}, 0.0),
])
def test_provider_seconds(timings: dict[str, float], expected: float) -> None:
    skip = metrics.WORKER_STAGES | {"detecting_scenes"}
    assert metrics.provider_seconds(timings, skip) == pytest.approx(expected)


def test_the_pipelines_own_stages_are_not_the_providers() -> None:
    from app import pipeline

    own = getattr(pipeline, "PIPELINE_STAGES", frozenset({"probing"}))
    assert own and metrics.provider_seconds({s: 1.0 for s in own}) == 0.0
    assert metrics.provider_seconds({"labelling_frames": 1.0, "reading_text": 0.5}) == 1.5


@pytest.mark.parametrize("usage,expected", [
    ({"prompt_tokens": 100, "output_tokens": 20, "total_tokens": 120, "requests": 1}, {"prompt": 100, "output": 20,
                                                                                       "total": 120}),
    ({"prompt_tokens": 0, "total_tokens": True}, {}),
    ({}, {}),
    (None, {}),
])
def test_token_counts(usage: dict[str, Any] | None, expected: dict[str, int]) -> None:
    assert metrics.token_counts(usage) == expected


def test_task_finished_counts_by_outcome_and_code() -> None:
    before = {
        "completed": value("vtt_tasks_completed_total", provider="gemini"),
        "failed": value("vtt_tasks_failed_total", code="too_large"),
        "retried": value("vtt_task_retries_total", code="download_failed"),
        "tokens": value("vtt_provider_tokens_total", provider="gemini", kind="total"),
        "requests": value("vtt_provider_requests_total", provider="gemini"),
        "latency_n": value("vtt_provider_latency_seconds_count", provider="gemini"),
        "latency_sum": value("vtt_provider_latency_seconds_sum", provider="gemini"),
        "stage_n": value("vtt_stage_duration_seconds_count", stage="uploading"),
        "wait_n": value("vtt_account_pool_wait_seconds_count"),
    }
    usage = {"requests": 2, "prompt_tokens": 900, "output_tokens": 100, "total_tokens": 1000, "pool_wait_s": 1.5}
    metrics.task_finished("completed", None, {"downloading": 0.5, "uploading": 2.0, "tagging": 3.0},
                          provider="gemini", usage=usage)
    metrics.task_finished("completed", None, {"downloading": 0.5}, provider="gemini", usage=usage, reused=True)
    metrics.task_finished("failed", "too_large", {"downloading": 0.1})
    metrics.task_finished("retried", "download_failed", {"downloading": 9.0})
    assert value("vtt_tasks_completed_total", provider="gemini") - before["completed"] == 2
    assert value("vtt_tasks_failed_total", code="too_large") - before["failed"] == 1
    assert value("vtt_task_retries_total", code="download_failed") - before["retried"] == 1
    # a reused result did not call the provider: its usage is counted once, not twice
    assert value("vtt_provider_tokens_total", provider="gemini", kind="total") - before["tokens"] == 1000
    assert value("vtt_provider_requests_total", provider="gemini") - before["requests"] == 2
    assert value("vtt_provider_latency_seconds_count", provider="gemini") - before["latency_n"] == 1
    assert value("vtt_provider_latency_seconds_sum", provider="gemini") - before["latency_sum"] == pytest.approx(5.0)
    assert value("vtt_stage_duration_seconds_count", stage="uploading") - before["stage_n"] == 1
    assert value("vtt_account_pool_wait_seconds_count") - before["wait_n"] == 1
    with pytest.raises(ValueError):
        metrics.task_finished("exploded")


class _Busy:
    def __init__(self, n: int) -> None:
        self.inflight = {str(i): object() for i in range(n)}


def test_in_flight_sums_the_tracked_workers() -> None:
    base = value("vtt_consumer_tasks_in_flight")
    a, b = _Busy(2), _Busy(3)
    metrics.track_worker(a)
    metrics.track_worker(b)
    assert value("vtt_consumer_tasks_in_flight") - base == 5
    del a  # weakly held: a gone worker stops counting
    import gc

    gc.collect()
    assert value("vtt_consumer_tasks_in_flight") - base == 3


async def test_cluster_gauges_from_redis(redis_url: str) -> None:
    r = Redis.from_url(redis_url)
    now = time.time()
    await r.lpush(keys.TASK_QUEUE, "q1", "q2", "q3")
    await r.zadd(keys.TASK_QUEUE_DELAYED, {"d1": now + 60})
    await r.lpush(keys.TASK_QUEUE_FAILED, "f1", "f2")
    await r.lpush(keys.processing("w1"), "p1")
    await r.lpush(keys.processing("w2"), "p2", "p3")
    await r.zadd(keys.CONSUMERS, {"w1": now - 1, "w2": now - 2, "dead": now - 3600})
    pool = AccountPool(r)
    await pool.put([AccountRecord(id="0123456789ab", api_key="AIza" + "x" * 35, project=None, model=None,
                                  minute_limit=10, daily_limit=100, status="active", status_reason=None)])
    assert await metrics.refresh_cluster(r, now=now) is True
    assert {s: value("vtt_queue_depth", state=s) for s in ("queued", "delayed", "failed", "in_flight")} == \
        {"queued": 3, "delayed": 1, "failed": 2, "in_flight": 3}
    assert value("vtt_consumers_alive") == 2 and value("vtt_redis_up") == 1
    assert value("vtt_account_limit", account="0123456789ab", window="minute") == 10
    assert value("vtt_account_requests", account="0123456789ab", window="today") == 0
    assert value("vtt_account_status", account="0123456789ab", status="active") == 1
    assert value("vtt_account_pool_remaining", window="today") == 100
    text = metrics.generate_latest(REGISTRY).decode()
    assert "AIza" not in text  # accounts appear by id only
    await r.aclose()

    down = Redis.from_url(f"redis://127.0.0.1:{free_port()}/0")
    assert await metrics.refresh_cluster(down) is False
    assert value("vtt_redis_up") == 0 and REGISTRY.get_sample_value("vtt_queue_depth", {"state": "queued"}) is None
    await down.aclose()


def test_a_consumer_port_serves_the_metrics() -> None:
    assert metrics.serve(0) is None  # METRICS_PORT=0: off
    port = free_port()
    server = metrics.serve(port)
    try:
        r = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
        assert r.status_code == 200 and "vtt_tasks_completed_total" in r.text
    finally:
        server.shutdown()


# --- a running API and consumer, real tasks -----------------------------------------
# Until the worker calls the hooks itself (see README "Metrics"), this subclass places them
# where the hook lines go; once consumer/worker.py calls them, the plain Worker is used.
HOOKED = "metrics.task_finished" in inspect.getsource(consumer.worker)


class HookedWorker(Worker):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        metrics.track_worker(self)

    async def handle(self, task_id: str) -> None:
        await super().handle(task_id)
        task = await asyncio.to_thread(self.store.get_task, task_id)
        if task.status == "completed":
            doc = await asyncio.to_thread(self.store.get_result, task_id) or {}
            metrics.source_bytes(task.source, int(doc["video"]["size_bytes"]))
            metrics.task_finished("completed", None, task.timings, provider=self.provider.name,
                                  usage=doc.get("usage"), reused=bool(doc.get("reused_from")))
        elif task.status == "failed":
            metrics.task_finished("failed", task.error_code, task.timings)


async def test_metrics_after_real_tasks(tmp_path: Path, redis_url: str, mysql_store, media_server: MediaServer,
                                        corpus: Path) -> None:  # type: ignore[no-untyped-def]
    settings = make_settings(tmp_path, database_url=MYSQL_URL, redis_url=redis_url, max_retries=0,
                             metrics_token="scrape-token-0123456789")
    port = free_port()
    async with running_service(settings, consumers=0) as svc:
        rt = build_runtime(settings, start_embedded=False, run_migrations=False)
        worker = (Worker if HOOKED else HookedWorker)(rt, heartbeat_s=0.5, upkeep_s=0.5)
        server = metrics.serve(port)
        auth = {"Authorization": "Bearer scrape-token-0123456789"}
        try:
            assert (await svc.client.get("/metrics")).status_code == 401  # METRICS_TOKEN set
            before = (await svc.client.get("/metrics", headers=auth)).text
            # queued before any consumer runs: the API sees them in Redis
            ok = await svc.submit(media_server.url("corpus/containers/bbb_clip.mp4"), dimensions="audio")
            gone = await svc.submit(media_server.url("status/404"))
            queued = (await svc.client.get("/metrics", headers=auth)).text
            assert scraped(queued, "vtt_queue_depth", state="queued") == 2

            job = asyncio.create_task(worker.run())
            done = await svc.wait(ok)
            assert done["status"] == "completed"
            assert (await svc.wait(gone))["error"]["code"] == "source_gone"
            worker.stop()
            await job
            after = (await svc.client.get("/metrics", headers=auth)).text
            async with httpx.AsyncClient() as c:
                own = (await c.get(f"http://127.0.0.1:{port}/metrics")).text
        finally:
            worker.stop()
            server.shutdown()
            await rt.aclose()
            rt.shutdown()

    def delta(name: str, **labels: str) -> float:
        return scraped(after, name, **labels) - scraped(before, name, **labels)

    assert delta("vtt_tasks_accepted_total", source="url") == 2
    assert delta("vtt_tasks_completed_total", provider="local") == 1
    assert delta("vtt_tasks_failed_total", code="source_gone") == 1
    assert delta("vtt_download_bytes_total", source="url") == 200854  # bbb_clip.mp4
    assert {"downloading", "probing"} <= set(done["timings"])
    for stage in done["timings"]:  # every stage the task reported, once
        assert delta("vtt_stage_duration_seconds_count", stage=stage) == 1, stage
    assert delta("vtt_task_duration_seconds_count", outcome="completed") == 1
    assert delta("vtt_provider_latency_seconds_count", provider="local") == 1
    assert scraped(after, "vtt_queue_depth", state="queued") == 0
    assert scraped(after, "vtt_queue_depth", state="failed") == 1  # the dead letter
    assert scraped(after, "vtt_queue_depth", state="in_flight") == 0
    assert scraped(after, "vtt_consumer_tasks_in_flight") == 0 and scraped(after, "vtt_redis_up") == 1
    # the consumer's own port shows the same process counters
    assert scraped(own, "vtt_tasks_completed_total", provider="local") == \
        scraped(after, "vtt_tasks_completed_total", provider="local")
