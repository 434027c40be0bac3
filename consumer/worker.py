"""The worker lifecycle: claim with a lease, heartbeat, time limit, ack or retry, drain.

    run()   heartbeat loop  (every heartbeat_s: renew leases, flush progress, record alive,
                             cancel tasks an operator cancelled)
            claim loop      (BLMOVE while a slot is free; stop claiming on shutdown)
            upkeep loop     (promote due retries, reap dead consumers' tasks and expired
                             leases, reconcile SQL against Redis every reconcile_interval_s)
    handle(task_id)
            mark_started -> fetch source -> analyse -> complete -> ack
            retryable error: backoff through the delayed set, dead letter after max_retries
            permanent error: failed at once, dead letter
            a task reaped more than max_retries times (it keeps killing consumers) fails
            with `lease_lost` instead of running again
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
import time
import uuid
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from app import logs, metrics
from app.config import Settings
from app.errors import InternalError, LeaseLost, StageTimeout, VttError
from app.media.download import Downloader
from app.media.netguard import Policy
from app.pipeline import Progress, analyse_file
from app.providers import Provider, get_provider
from app.runtime import Runtime
from app.search.outbox import run_outbox_drainer
from app.sources import fetch_source, keep_in_cache, tmp_path, upload_path
from app.store import Store

log = logging.getLogger("consumer")
T = TypeVar("T")


def retry_delay_s(attempt: int, *, base: float = 2.0, cap: float = 300.0, rand: float | None = None) -> float:
    """Full-jitter exponential backoff: uniform in [0, min(cap, base * 2**attempt)]."""
    r = random.random() if rand is None else rand
    return float(r * min(cap, base * (2 ** attempt)))


@dataclass
class InFlight:
    task_id: str
    job: asyncio.Task[None] | None = None
    progress: Progress = field(default_factory=Progress)
    flushed_version: int = -1
    cancelled_by_operator: bool = False


async def _stage(name: str, timeout_s: float, work: Awaitable[T]) -> T:
    """Run one stage under its own time limit; expiry is a retryable `timeout`."""
    try:
        return await asyncio.wait_for(work, timeout_s)
    except TimeoutError:
        raise StageTimeout(f"the {name} stage did not finish within {timeout_s:.0f} s") from None


class Worker:
    def __init__(self, runtime: Runtime, *, provider: Provider | None = None, concurrency: int | None = None,
                 worker_id: str | None = None, heartbeat_s: float = 2.0, upkeep_s: float = 5.0) -> None:
        self.rt = runtime
        self.settings: Settings = runtime.settings
        self.store: Store = runtime.store
        self.queue = runtime.queue()
        self.provider = provider or get_provider(self.settings.tagger, self.settings)
        self.concurrency = concurrency or self.settings.consumer_concurrency
        self.worker_id = worker_id or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.heartbeat_s = heartbeat_s
        self.upkeep_s = upkeep_s
        s = self.settings
        self.downloader = Downloader(
            policy=Policy(s.allowed_hostnames, s.allowed_networks), max_bytes=s.max_video_bytes,
            concurrency=s.download_concurrency, per_host=s.download_per_host,
            connect_timeout_s=s.download_connect_timeout_s, read_timeout_s=s.download_read_timeout_s,
            retries=s.download_retries,
        )
        self.inflight: dict[str, InFlight] = {}
        self.stopping = asyncio.Event()  # stop claiming; in-flight tasks drain
        self.closed = asyncio.Event()    # drained: heartbeat and upkeep end
        self.processed = 0
        metrics.track_worker(self)  # type: ignore[arg-type]  # dict[str, InFlight] is a Mapping[str, Any]

    # --- lifecycle -----------------------------------------------------------------
    async def run(self) -> None:
        await self.queue.renew(self.worker_id, [])
        log.info("consumer %s started (concurrency %d, provider %s)", self.worker_id, self.concurrency, self.provider.name)
        running: set[asyncio.Task[None]] = set()
        background = [asyncio.create_task(self._heartbeat()), asyncio.create_task(self._upkeep()),
                      asyncio.create_task(run_outbox_drainer(self.rt, self.closed))]
        stop_wait = asyncio.create_task(self.stopping.wait())
        try:
            while not self.stopping.is_set():
                if len(running) >= self.concurrency:  # every slot busy: wait for one, or for a stop
                    await asyncio.wait(running | {stop_wait}, return_when=asyncio.FIRST_COMPLETED)
                    continue
                try:
                    task_id = await self.queue.claim(self.worker_id, timeout_s=1.0)
                except Exception as exc:  # Redis down: wait and try again, never die
                    log.warning("claim failed: %s", exc)
                    await self._sleep(1.0)
                    continue
                if task_id is None:
                    continue
                job = asyncio.create_task(self._run_one(task_id))
                running.add(job)
                job.add_done_callback(running.discard)
        finally:
            stop_wait.cancel()
            await self._drain(running)
            # Loops end on `closed`, not on cancel(): a client library may turn a
            # CancelledError into its own error, which the loops survive by design.
            self.closed.set()
            _done, stuck = await asyncio.wait(background, timeout=self.heartbeat_s + self.upkeep_s + 5)
            for b in stuck:
                b.cancel()
            await self.downloader.close()
            await self.provider.close()
            with contextlib.suppress(Exception):
                await self.queue.unregister(self.worker_id)
            log.info("consumer %s stopped after %d tasks", self.worker_id, self.processed)

    def stop(self) -> None:
        self.stopping.set()

    async def _sleep(self, seconds: float, until: asyncio.Event | None = None) -> None:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for((until or self.stopping).wait(), seconds)

    async def _drain(self, running: set[asyncio.Task[None]]) -> None:
        if not running:
            return
        log.info("draining %d in-flight task(s) for up to %.0f s", len(running), self.settings.shutdown_grace_s)
        _done, pending = await asyncio.wait(running, timeout=self.settings.shutdown_grace_s)
        for job in pending:
            job.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    async def _run_one(self, task_id: str) -> None:
        try:
            await self.handle(task_id)
        except Exception:  # handle() records its own failures; this is a last resort, never a dead worker
            log.exception("task %s: unhandled error in the worker", task_id)

    async def _heartbeat(self) -> None:
        while not self.closed.is_set():
            try:
                await self.queue.renew(self.worker_id, list(self.inflight))
                for task_id in await self.queue.cancelled(list(self.inflight)):
                    item = self.inflight.get(task_id)
                    if item is not None and item.job is not None:
                        if not item.cancelled_by_operator:
                            log.info("task %s: cancelled by an operator", task_id)
                        item.cancelled_by_operator = True
                        # Again on every beat until the task is gone: Python 3.11's wait_for can
                        # drop a cancellation that races its inner awaitable finishing.
                        item.job.cancel()
                for item in list(self.inflight.values()):
                    await self._flush_progress(item)
            except Exception as exc:
                log.warning("heartbeat failed: %s", exc)
            await self._sleep(self.heartbeat_s, self.closed)

    async def _upkeep(self) -> None:
        next_reconcile = 0.0
        while not self.closed.is_set():
            try:
                now = time.time()
                await self.queue.promote_due(now)
                reaped = await self.queue.reap_dead(now, exclude=self.worker_id)
                reaped += await self.queue.reap_expired_leases()
                if reaped:
                    log.warning("returned %d task(s) with lost leases to the queue", len(reaped))
                if now >= next_reconcile:
                    next_reconcile = now + self.settings.reconcile_interval_s
                    if await self.queue.try_lock_reconcile(self.worker_id, int(self.settings.reconcile_interval_s)):
                        await self.reconcile(now)
            except Exception as exc:
                log.warning("upkeep failed: %s", exc)
            await self._sleep(self.upkeep_s, self.closed)

    async def reconcile(self, now: float) -> list[str]:
        """Re-enqueue what SQL says is unfinished but Redis no longer holds; restore the key pool.

        Redis keeps nothing on disk on our machines, so a restart empties it: SQL is the
        record, and this puts the queue back together from it.
        """
        import datetime as dt

        cutoff = dt.datetime.fromtimestamp(now - self.settings.reconcile_grace_s, dt.UTC).replace(tzinfo=None)
        candidates = await asyncio.to_thread(self.store.unfinished, cutoff)
        held = await self.queue.held_ids() if candidates else set()
        missing = [task_id for task_id, _status in candidates if task_id not in held]
        for task_id in missing:
            await self.queue.enqueue(task_id, {"status": "pending", "created_at": f"{now:.3f}", "reconciled": 1})
        if missing:
            log.warning("reconciled %d unfinished task(s) missing from Redis back into the queue", len(missing))
        await self._restore_account_pool()
        return missing

    async def _restore_account_pool(self) -> None:
        from app.accounts import AccountPool, load_accounts, restore_pool

        pool = AccountPool(self.rt.redis())
        if await pool.is_empty() and len(await asyncio.to_thread(load_accounts, self.store.sessions)) > 0:
            restored = await restore_pool(pool, self.store.sessions)
            log.warning("restored %d account(s) of the key pool from SQL", restored)

    async def _flush_progress(self, item: InFlight) -> None:
        stage, fraction, timings, version = item.progress.snapshot()
        if version == item.flushed_version:
            return
        item.flushed_version = version
        await asyncio.to_thread(self.store.set_progress, item.task_id, stage, fraction, timings)
        await self.queue.update_info(item.task_id, stage=stage, progress=fraction)

    # --- one task ------------------------------------------------------------------
    async def handle(self, task_id: str) -> None:
        logs.bind(task_id=task_id)
        try:
            info = await self.queue.info(task_id)
            redis_attempt = int(info.get("retry_count") or 0)
            task = await asyncio.to_thread(self.store.mark_started, task_id, self.worker_id, redis_attempt)
        except Exception as exc:  # SQL (or Redis) down: not an attempt; try again shortly
            log.warning("task %s: could not start (%s); back to the queue in %.0f s", task_id, exc, self.upkeep_s * 2)
            with contextlib.suppress(Exception):  # if Redis is down too, the lease lapses and the reaper returns it
                await self.queue.retry_later(self.worker_id, task_id, time.time() + self.upkeep_s * 2)
            return
        if task is None:  # already terminal (a duplicate delivery, a cancel) or unknown: just drop it
            await self.queue.ack(self.worker_id, task_id, status="completed")
            return
        attempt = task.retry_count
        item = InFlight(task_id, job=asyncio.current_task())
        self.inflight[task_id] = item
        try:
            if attempt > self.settings.max_retries:
                raise LeaseLost(f"the consumers running this task stopped {attempt} times (crash, kill or "
                                f"out of memory); not trying again")
            await self.queue.update_info(task_id, status="processing", worker=self.worker_id)
            await asyncio.wait_for(self._process(task.id, task.source, task.url, task.dimensions, item.progress),
                                   self.settings.task_timeout_s)
        except TimeoutError:
            await self._failed(task_id, attempt, StageTimeout(
                f"the task did not finish within {self.settings.task_timeout_s:.0f} s (stage {item.progress.stage})"), item)
        except asyncio.CancelledError:
            if item.cancelled_by_operator:  # SQL already says failed/cancelled; just release the claim
                with contextlib.suppress(Exception):
                    await asyncio.shield(self.queue.ack(self.worker_id, task_id, status="failed"))
                return
            # Shutdown: hand the task back untouched; its retry count does not move.
            with contextlib.suppress(Exception):
                await asyncio.shield(self._give_back(task_id))
            raise
        except VttError as exc:
            await self._failed(task_id, attempt, exc, item)
        except Exception as exc:
            log.exception("task %s: unexpected error", task_id)
            await self._failed(task_id, attempt, InternalError(f"internal error: {type(exc).__name__}"), item)
        else:
            with contextlib.suppress(Exception):  # a lost ack only means a harmless re-run
                await self.queue.ack(self.worker_id, task_id)
            total = sum(item.progress.timings.values())
            log.info("task %s completed in %.2f s", task_id, total, extra={"stage": "completed", "duration_s": total})
        finally:
            self.inflight.pop(task_id, None)
            self.processed += 1

    async def _give_back(self, task_id: str) -> None:
        await asyncio.to_thread(self.store.mark_requeued, task_id)
        await self.queue.give_back(self.worker_id, task_id)

    async def _process(self, task_id: str, source: str, url: str, dimensions: str, progress: Progress) -> None:
        progress("downloading", 0.05)
        try:
            got = await _stage("download", self.settings.download_timeout_s,
                               fetch_source(self.settings, self.downloader, task_id, source, url))
            metrics.source_bytes(source, got.size)
            reused = await self._reuse(task_id, got.sha256, dimensions)
            if reused is not None:
                document = reused
            else:
                analysis = await _stage("analysis", self.settings.analysis_timeout_s, analyse_file(
                    got.path, task_id=task_id, sha256=got.sha256, size=got.size, container=got.container,
                    dimensions=dimensions, settings=self.settings, provider=self.provider, progress=progress))
                document = analysis.document
            cached = await asyncio.to_thread(keep_in_cache, self.settings, got)
            video = await asyncio.to_thread(
                self.store.upsert_video, sha256=got.sha256, size_bytes=got.size, container=got.container,
                probe=document["video"] if reused is None else None, cache_path=str(cached))
            progress("storing", 0.95)
            timings = progress.finish()
            document["timings"] = timings
            stored = await asyncio.to_thread(self.store.complete, task_id, video=video, provider=self.provider.name,
                                             document=document, tags=document["tags"], timings=timings)
            if not stored:
                log.info("task %s was cancelled while running; its result is dropped", task_id)
                metrics.task_finished("failed", "cancelled", timings)
                return
            metrics.task_finished("completed", None, timings, provider=self.provider.name,
                                  usage=document.get("usage"), reused=reused is not None)
            await self.queue.update_info(task_id, stage="completed", progress=1.0)
        finally:
            # No temp file outlives an attempt; an upload stays until the task is final.
            tmp_path(self.settings, task_id).unlink(missing_ok=True)

    async def _reuse(self, task_id: str, sha256: str, dimensions: str) -> dict[str, Any] | None:
        if self.settings.dedup_ttl_s <= 0:
            return None
        import datetime as dt

        since = dt.datetime.now(dt.UTC).replace(tzinfo=None) - dt.timedelta(seconds=self.settings.dedup_ttl_s)
        doc = await asyncio.to_thread(self.store.reusable_result, sha256, self.provider.name, dimensions, since)
        if doc is None:
            return None
        doc["reused_from"] = doc.get("reused_from") or doc.get("task_id")
        doc["task_id"] = task_id
        return doc

    async def _failed(self, task_id: str, attempt: int, exc: VttError, item: InFlight) -> None:
        """Record a failure: retry later (retryable, budget left) or fail for good and dead-letter.

        SQL is written first; if it is unreachable the Redis side still moves (a retry is
        scheduled and SQL catches up on the next attempt). If Redis is unreachable too, the
        claim stays in this worker's list, its lease lapses and the reaper returns it.
        """
        timings = item.progress.snapshot()[2]
        retry = exc.retryable and attempt < self.settings.max_retries
        try:
            if retry:
                await asyncio.to_thread(self.store.set_retry, task_id, attempt + 1, exc.code, exc.message)
            else:
                await asyncio.to_thread(self.store.mark_failed, task_id, exc.code, exc.message, timings)
        except Exception as db_exc:
            log.warning("task %s: could not record %s in SQL (%s)", task_id, exc.code, db_exc)
            retry = True  # never dead-letter what SQL does not say failed
        try:
            if retry:
                delay = exc.retry_after if exc.retry_after is not None else retry_delay_s(attempt)
                log.warning("task %s: %s (%s); retry %d in %.1f s", task_id, exc.code, exc.message, attempt + 1, delay)
                await self.queue.update_info(task_id, retry_count=attempt + 1, error_code=exc.code)
                await self.queue.retry_later(self.worker_id, task_id, time.time() + delay)
                metrics.task_finished("retried", exc.code, timings)
                return
            log.warning("task %s failed: %s (%s)", task_id, exc.code, exc.message)
            await self.queue.update_info(task_id, error_code=exc.code, stage="failed")
            await self.queue.dead_letter(self.worker_id, task_id)
            metrics.task_finished("failed", exc.code, timings)
        except Exception as redis_exc:
            log.warning("task %s: could not update the queue (%s); left for the reaper", task_id, redis_exc)
            return
        upload_path(self.settings, task_id).unlink(missing_ok=True)
