"""Every Prometheus metric of the service, defined here and nowhere else.

Two kinds, both on the process's default registry:

  process metrics   counted where they happen (the API: accepted tasks, refused requests;
                    a consumer: finished tasks, stages, bytes, provider use), through the
                    hook functions below. Each process exposes its own: the API on its
                    `/metrics` route; a consumer on `http://METRICS_HOST:METRICS_PORT/metrics`
                    (`serve()`, a prometheus_client thread). Prometheus scrapes every
                    process (pull): nothing is pushed through Redis. In the embedded mode the
                    consumer runs inside the API process, so `/metrics` covers both.
  cluster gauges    the queue and the account pool as Redis sees them, read by the API at
                    scrape time (`refresh_cluster`), so one API scrape shows the whole queue.

    name                                   type       labels              where
    vtt_tasks_accepted_total               counter    source              API
    vtt_tasks_completed_total              counter    provider            consumer
    vtt_tasks_failed_total                 counter    code                consumer (API: enqueue failed)
    vtt_task_retries_total                 counter    code                consumer
    vtt_stage_duration_seconds             histogram  stage               consumer, per attempt
    vtt_task_duration_seconds              histogram  outcome             consumer, per attempt
    vtt_consumer_tasks_in_flight           gauge      -                   consumer (this process)
    vtt_download_bytes_total               counter    source              consumer (url | upload)
    vtt_provider_latency_seconds           histogram  provider            consumer (provider stages)
    vtt_provider_requests_total            counter    provider            consumer (from result usage)
    vtt_provider_tokens_total              counter    provider, kind      consumer (prompt|output|total)
    vtt_account_pool_wait_seconds          histogram  -                   consumer (Gemini pool)
    vtt_api_requests_refused_total         counter    reason              API (unauthorized | rate_limited)
    vtt_queue_depth                        gauge      state               API at scrape: queued, delayed,
                                                                          failed (dead letters), in_flight
    vtt_consumers_alive                    gauge      -                   API at scrape (heartbeat < 30 s)
    vtt_account_requests                   gauge      account, window     API at scrape (minute | today)
    vtt_account_limit                      gauge      account, window     API at scrape
    vtt_account_status                     gauge      account, status     API at scrape (1 = current)
    vtt_account_pool_remaining             gauge      window              API at scrape (usable capacity)
    vtt_redis_up                           gauge      -                   API at scrape (0: gauges cleared)

Accounts are labelled by their id (a fingerprint of the key, as in every log line), never by key.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import weakref
from collections.abc import Mapping
from typing import Any, Protocol

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
    start_http_server,
)
from redis.asyncio import Redis

from app import keys

log = logging.getLogger("metrics")

CONTENT_TYPE = CONTENT_TYPE_LATEST
disable_created_metrics()  # type: ignore[no-untyped-call]  # no `*_created` series: a counter's start is not worth a series per label set
ALIVE_S = 30.0  # a consumer heartbeats every 2 s; 30 s without one and it is not counted alive
# Stages that are not the provider's: the worker's own, the pool wait, and app/pipeline.py's
# PIPELINE_STAGES (its analysers). Any other stage a task reports was named by its provider
# (labelling_frames, reading_text, uploading, tagging, parsing, ...).
WORKER_STAGES = frozenset({"queued", "downloading", "probing", "decoding", "merging", "storing", "done",
                           "completed", "failed", "waiting_retry", "waiting_for_account"})
_SECONDS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0)

TASKS_ACCEPTED = Counter("vtt_tasks_accepted_total", "Tasks accepted by the API.", ["source"])
TASKS_COMPLETED = Counter("vtt_tasks_completed_total", "Tasks completed.", ["provider"])
TASKS_FAILED = Counter("vtt_tasks_failed_total", "Tasks failed for good, by error code.", ["code"])
TASK_RETRIES = Counter("vtt_task_retries_total", "Attempts that failed and were scheduled again, by error code.",
                       ["code"])
STAGE_SECONDS = Histogram("vtt_stage_duration_seconds", "Seconds spent in each stage of a task attempt.", ["stage"],
                          buckets=_SECONDS)
TASK_SECONDS = Histogram("vtt_task_duration_seconds", "Seconds of a task attempt (sum of its stages).", ["outcome"],
                         buckets=_SECONDS)
IN_FLIGHT = Gauge("vtt_consumer_tasks_in_flight", "Tasks this consumer process is running now.")
DOWNLOAD_BYTES = Counter("vtt_download_bytes_total", "Video bytes fetched for tasks.", ["source"])
PROVIDER_SECONDS = Histogram("vtt_provider_latency_seconds", "Seconds in the tagging provider per task.",
                             ["provider"], buckets=_SECONDS)
PROVIDER_REQUESTS = Counter("vtt_provider_requests_total", "Requests sent to the provider's API.", ["provider"])
PROVIDER_TOKENS = Counter("vtt_provider_tokens_total", "Provider tokens used.", ["provider", "kind"])
POOL_WAIT = Histogram("vtt_account_pool_wait_seconds", "Seconds a task waited for a free Gemini account.",
                      buckets=(0.0, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0))
REFUSED = Counter("vtt_api_requests_refused_total", "API requests refused before any route ran.", ["reason"])

QUEUE_DEPTH = Gauge("vtt_queue_depth", "Tasks by queue state, as Redis holds them.", ["state"])
CONSUMERS_ALIVE = Gauge("vtt_consumers_alive", "Consumers with a heartbeat in the last 30 s.")
ACCOUNT_REQUESTS = Gauge("vtt_account_requests", "Requests an account served in the window.", ["account", "window"])
ACCOUNT_LIMIT = Gauge("vtt_account_limit", "An account's request limit in the window.", ["account", "window"])
ACCOUNT_STATUS = Gauge("vtt_account_status", "1 for an account's current status.", ["account", "status"])
POOL_REMAINING = Gauge("vtt_account_pool_remaining", "Requests the usable accounts can still serve.", ["window"])
REDIS_UP = Gauge("vtt_redis_up", "1 when the last scrape could read the queue and pool from Redis.")

_ACCOUNT_GAUGES = (ACCOUNT_REQUESTS, ACCOUNT_LIMIT, ACCOUNT_STATUS)


# --- pure helpers --------------------------------------------------------------------
def not_provider_stages() -> frozenset[str]:
    from app import pipeline  # the worker has it loaded already; only its stage names are read

    return WORKER_STAGES | frozenset(getattr(pipeline, "PIPELINE_STAGES", ()))


def provider_seconds(timings: Mapping[str, float], not_provider: frozenset[str] | None = None) -> float:
    """Seconds of a task's stages that its provider named (not the pipeline's own, nor the pool wait)."""
    skip = not_provider_stages() if not_provider is None else not_provider
    return float(sum(v for k, v in timings.items() if k not in skip))


def token_counts(usage: Mapping[str, Any] | None) -> dict[str, int]:
    """prompt/output/total token counts from a result's `usage` (empty for the local provider)."""
    out: dict[str, int] = {}
    for kind in ("prompt", "output", "total"):
        v = (usage or {}).get(f"{kind}_tokens")
        if isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0:
            out[kind] = int(v)
    return out


# --- hooks: the API ------------------------------------------------------------------
def task_accepted(source: str) -> None:
    TASKS_ACCEPTED.labels(source=source).inc()


def request_refused(reason: str) -> None:
    REFUSED.labels(reason=reason).inc()


# --- hooks: a consumer ---------------------------------------------------------------
class _HasInFlight(Protocol):
    inflight: Mapping[str, Any]


_workers: weakref.WeakSet[Any] = weakref.WeakSet()
_workers_lock = threading.Lock()


def _in_flight() -> float:
    with _workers_lock:
        return float(sum(len(w.inflight) for w in list(_workers)))


IN_FLIGHT.set_function(_in_flight)


def track_worker(worker: _HasInFlight) -> None:
    """Count `worker.inflight` in vtt_consumer_tasks_in_flight (read at scrape; weakly held)."""
    with _workers_lock:
        _workers.add(worker)


def source_bytes(source: str, n: int) -> None:
    """Bytes of a task's video once fetched (`source` url | upload)."""
    if n > 0:
        DOWNLOAD_BYTES.labels(source=source).inc(n)


def task_finished(status: str, code: str | None = None, timings: Mapping[str, float] | None = None, *,
                  provider: str | None = None, usage: Mapping[str, Any] | None = None, reused: bool = False) -> None:
    """The end of one attempt: status completed | failed | retried; `code` the error code.

    `timings` (stage -> seconds) feed the stage histogram; on completion the provider's
    latency and usage (tokens, requests, pool wait) are counted unless the result was
    reused from an earlier analysis (the provider did not run).
    """
    stages = dict(timings or {})
    for stage, seconds in stages.items():
        if seconds >= 0:
            STAGE_SECONDS.labels(stage=stage).observe(seconds)
    if timings is not None:  # None: the task never ran (e.g. the API could not enqueue it)
        TASK_SECONDS.labels(outcome=status).observe(sum(v for v in stages.values() if v >= 0))
    if status == "completed":
        name = provider or "unknown"
        TASKS_COMPLETED.labels(provider=name).inc()
        if reused:
            return
        PROVIDER_SECONDS.labels(provider=name).observe(provider_seconds(stages))
        for kind, n in token_counts(usage).items():
            PROVIDER_TOKENS.labels(provider=name, kind=kind).inc(n)
        requests = (usage or {}).get("requests")
        if isinstance(requests, int) and requests > 0:
            PROVIDER_REQUESTS.labels(provider=name).inc(requests)
        wait = (usage or {}).get("pool_wait_s")
        if isinstance(wait, (int, float)) and wait >= 0:
            POOL_WAIT.observe(float(wait))
    elif status == "failed":
        TASKS_FAILED.labels(code=code or "internal_error").inc()
    elif status == "retried":
        TASK_RETRIES.labels(code=code or "internal_error").inc()
    else:
        raise ValueError(f"unknown task status {status!r}")


def serve(port: int, host: str = "127.0.0.1") -> Any:
    """A consumer's own /metrics on `port` (0 = off). Returns the server (`.shutdown()`) or None."""
    if port <= 0:
        return None
    server, _thread = start_http_server(port, addr=host)
    log.info("metrics on http://%s:%d/metrics", host, port)
    return server


# --- the API's scrape --------------------------------------------------------------
async def refresh_cluster(redis: Redis, *, now: float | None = None, timeout_s: float = 2.0) -> bool:
    """Set the queue and account-pool gauges from Redis. False (and those gauges cleared) when unreadable."""
    try:
        await asyncio.wait_for(_refresh(redis, time.time() if now is None else now), timeout_s)
    except Exception as exc:
        log.warning("metrics: cannot read the queue from Redis: %s", type(exc).__name__)
        QUEUE_DEPTH.clear()
        CONSUMERS_ALIVE.set(0)
        POOL_REMAINING.clear()
        for g in _ACCOUNT_GAUGES:
            g.clear()
        REDIS_UP.set(0)
        return False
    REDIS_UP.set(1)
    return True


async def _refresh(redis: Redis, now: float) -> None:
    from app.accounts import AccountPool  # the pool pulls in its Lua scripts; only the API scrapes

    async with redis.pipeline(transaction=False) as p:
        p.llen(keys.TASK_QUEUE)
        p.zcard(keys.TASK_QUEUE_DELAYED)
        p.llen(keys.TASK_QUEUE_FAILED)
        p.zcount(keys.CONSUMERS, now - ALIVE_S, "+inf")
        queued, delayed, failed, alive = await p.execute()
    lists = [k async for k in redis.scan_iter(match=keys.PROCESSING_PREFIX + "*", count=200)]
    in_flight = 0
    if lists:
        async with redis.pipeline(transaction=False) as p:
            for k in lists:
                p.llen(k)
            in_flight = sum(int(n) for n in await p.execute())
    snapshot = await AccountPool(redis).snapshot(now)

    QUEUE_DEPTH.labels(state="queued").set(int(queued))
    QUEUE_DEPTH.labels(state="delayed").set(int(delayed))
    QUEUE_DEPTH.labels(state="failed").set(int(failed))
    QUEUE_DEPTH.labels(state="in_flight").set(in_flight)
    CONSUMERS_ALIVE.set(int(alive))
    for g in _ACCOUNT_GAUGES:  # accounts removed since the last scrape disappear
        g.clear()
    for acc in snapshot["accounts"]:
        ACCOUNT_REQUESTS.labels(account=acc["id"], window="minute").set(acc["minute"]["used"])
        ACCOUNT_REQUESTS.labels(account=acc["id"], window="today").set(acc["today"]["used"])
        ACCOUNT_LIMIT.labels(account=acc["id"], window="minute").set(acc["minute"]["limit"])
        ACCOUNT_LIMIT.labels(account=acc["id"], window="today").set(acc["today"]["limit"])
        ACCOUNT_STATUS.labels(account=acc["id"], status=acc["status"]).set(1)
    POOL_REMAINING.labels(window="minute").set(snapshot["totals"]["remaining_minute"])
    POOL_REMAINING.labels(window="today").set(snapshot["totals"]["remaining_today"])


async def render(redis: Redis | None) -> bytes:
    """The API's exposition: refresh the cluster gauges (when Redis is given), then everything."""
    if redis is not None:
        await refresh_cluster(redis)
    return generate_latest(REGISTRY)
