"""The task record in SQL (MySQL in production, SQLite embedded). Synchronous; async
callers use `asyncio.to_thread`. MySQL is the record of truth: Redis only mirrors it.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from app.errors import Conflict, NotFound
from app.models import Result, Tag, Task, Video, utcnow
from app.search.outbox import enqueue as enqueue_index

TERMINAL = ("completed", "failed")
T = TypeVar("T")


def _is_race(exc: Exception) -> bool:
    """A duplicate key (MySQL 1062, SQLite UNIQUE) or a deadlock/lock wait (1213, 1205, SQLite busy)."""
    orig = getattr(exc, "orig", None)
    code = orig.args[0] if orig is not None and orig.args else None
    return code in (1062, 1213, 1205) or "UNIQUE constraint" in str(exc) or "database is locked" in str(exc)


def _retry_on_race(transaction: Callable[[], T], attempts: int = 5) -> T:
    """Run a transaction again when it lost a race (see `_is_race`); other errors pass through."""
    for attempt in range(attempts):
        try:
            return transaction()
        except (IntegrityError, OperationalError) as exc:
            if attempt == attempts - 1 or not _is_race(exc):
                raise
    raise AssertionError("unreachable")


def new_task_id() -> str:
    return uuid.uuid4().hex


@dataclass(frozen=True)
class NewTask:
    url: str
    platform: str
    source: str = "url"
    uid: int | None = None
    env: str | None = None
    dimensions: str = "all"
    task_id: str | None = None


class Store:
    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions

    def ping(self) -> None:
        with self.sessions() as s:
            s.execute(select(1))

    # --- tasks -------------------------------------------------------------------
    def create_task(self, new: NewTask) -> Task:
        task = Task(id=new.task_id or new_task_id(), source=new.source, url=new.url, platform=new.platform,
                    uid=new.uid, env=new.env, dimensions=new.dimensions, status="pending", progress=0.0,
                    retry_count=0, timings={})
        with self.sessions.begin() as s:
            s.add(task)
        return task

    def get_task(self, task_id: str) -> Task:
        with self.sessions() as s:
            task = s.get(Task, task_id)
            if task is None:
                raise NotFound(f"no task with id {task_id!r}")
            return task

    def list_tasks(self, *, status: str | None = None, platform: str | None = None, uid: int | None = None,
                   limit: int = 20, offset: int = 0) -> tuple[list[Task], int]:
        q = select(Task)
        if status:
            q = q.where(Task.status == status)
        if platform:
            q = q.where(Task.platform == platform)
        if uid is not None:
            q = q.where(Task.uid == uid)
        with self.sessions() as s:
            total = s.scalar(select(func.count()).select_from(q.subquery())) or 0
            rows = s.scalars(q.order_by(Task.created_at.desc(), Task.id).limit(limit).offset(offset)).all()
            return list(rows), int(total)

    def mark_started(self, task_id: str, worker_id: str, attempt: int = 0) -> Task | None:
        """pending/processing -> processing; None when the task is already terminal (a duplicate claim).

        `attempt` is the retry count Redis knows (the reaper counts lost leases there); the
        record keeps the larger of the two, so a Redis loss never resets it.
        """
        with self.sessions.begin() as s:
            task = s.get(Task, task_id, with_for_update=True)
            if task is None or task.status in TERMINAL:
                return None
            task.status, task.worker_id, task.stage, task.progress = "processing", worker_id, "queued", 0.0
            task.retry_count = max(task.retry_count, attempt)
            task.started_at = utcnow()
            return task

    def set_progress(self, task_id: str, stage: str, progress: float, timings: dict[str, float]) -> None:
        with self.sessions.begin() as s:
            s.execute(update(Task).where(Task.id == task_id, Task.status == "processing")
                      .values(stage=stage, progress=progress, timings=timings, updated_at=utcnow()))

    def set_retry(self, task_id: str, retry_count: int, error_code: str, message: str) -> None:
        with self.sessions.begin() as s:
            s.execute(update(Task).where(Task.id == task_id, Task.status.not_in(TERMINAL))
                      .values(status="pending", retry_count=retry_count, error_code=error_code,
                              error_message=message, stage="waiting_retry", updated_at=utcnow()))

    def mark_requeued(self, task_id: str) -> None:
        """An interrupted attempt (shutdown) goes back to pending without counting as a retry."""
        with self.sessions.begin() as s:
            s.execute(update(Task).where(Task.id == task_id, Task.status.not_in(TERMINAL))
                      .values(status="pending", stage="queued", progress=0.0, updated_at=utcnow()))

    def mark_failed(self, task_id: str, code: str, message: str, timings: dict[str, float] | None = None) -> None:
        with self.sessions.begin() as s:
            values: dict[str, Any] = dict(status="failed", error_code=code, error_message=message[:2000],
                                          stage="failed", finished_at=utcnow(), updated_at=utcnow())
            if timings is not None:
                values["timings"] = timings
            s.execute(update(Task).where(Task.id == task_id, Task.status.not_in(TERMINAL)).values(**values))

    def complete(self, task_id: str, *, video: Video | None, provider: str, document: dict[str, Any],
                 tags: list[dict[str, Any]], timings: dict[str, float]) -> bool:
        """Write result, tags and status in one transaction; a re-run replaces (never duplicates) them.

        Returns False (and writes nothing) when the task was cancelled meanwhile. Retried when
        a concurrent run of the same task (a duplicate delivery) wins a lock race.
        """
        return _retry_on_race(lambda: self._complete(task_id, video, provider, document, tags, timings))

    def _complete(self, task_id: str, video: Video | None, provider: str, document: dict[str, Any],
                  tags: list[dict[str, Any]], timings: dict[str, float]) -> bool:
        with self.sessions.begin() as s:
            task = s.get(Task, task_id, with_for_update=True)
            if task is None:
                raise NotFound(f"no task with id {task_id!r}")
            if task.status == "failed" and task.error_code == "cancelled":
                return False
            video_id = video.id if video is not None else None
            s.execute(delete(Tag).where(Tag.task_id == task_id))
            s.execute(delete(Result).where(Result.task_id == task_id))
            s.flush()
            s.add(Result(task_id=task_id, video_id=video_id, provider=provider,
                         schema_version=int(document["schema_version"]), document=document))
            for t in tags:
                s.add(Tag(task_id=task_id, name=str(t["name"])[:191], confidence=float(t["confidence"]),
                          sources=list(t["sources"])))
            task.status, task.stage, task.progress = "completed", "completed", 1.0
            task.error_code = task.error_message = None
            task.video_id, task.timings, task.finished_at = video_id, timings, utcnow()
            enqueue_index(s, task_id)  # the search index follows through the outbox
        return True

    def cancel(self, task_id: str) -> str:
        """pending/processing -> failed (code `cancelled`); returns the status it had. Conflict if finished."""
        with self.sessions.begin() as s:
            task = s.get(Task, task_id, with_for_update=True)
            if task is None:
                raise NotFound(f"no task with id {task_id!r}")
            if task.status in TERMINAL:
                raise Conflict(f"the task is already {task.status}; only pending or processing tasks can be cancelled")
            before = task.status
            task.status, task.stage, task.error_code = "failed", "failed", "cancelled"
            task.error_message, task.finished_at = "cancelled by an operator", utcnow()
            return before

    def reset_for_retry(self, task_id: str) -> Task:
        """failed -> pending with a fresh retry budget (operator retry). Conflict unless failed."""
        with self.sessions.begin() as s:
            task = s.get(Task, task_id, with_for_update=True)
            if task is None:
                raise NotFound(f"no task with id {task_id!r}")
            if task.status != "failed":
                raise Conflict(f"the task is {task.status}; only failed tasks can be retried")
            task.status, task.stage, task.progress, task.retry_count = "pending", "queued", 0.0, 0
            task.error_code = task.error_message = task.finished_at = None
            return task

    def unfinished(self, updated_before: dt.datetime, limit: int = 10000) -> list[tuple[str, str]]:
        """(id, status) of pending/processing tasks not touched since `updated_before`, oldest first."""
        with self.sessions() as s:
            rows = s.execute(select(Task.id, Task.status).where(Task.status.in_(("pending", "processing")),
                                                                 Task.updated_at < updated_before)
                             .order_by(Task.created_at).limit(limit)).all()
            return [(r[0], r[1]) for r in rows]

    def get_result(self, task_id: str) -> dict[str, Any] | None:
        with self.sessions() as s:
            r = s.get(Result, task_id)
            return dict(r.document) if r is not None else None

    # --- videos ------------------------------------------------------------------
    def upsert_video(self, *, sha256: str, size_bytes: int, container: str, probe: dict[str, Any] | None,
                     cache_path: str | None) -> Video:
        """Insert or update the row for these bytes. Safe when consumers race on the same video:
        a duplicate-key or deadlock error means another transaction got there first, so try again."""
        return _retry_on_race(lambda: self._upsert_video(sha256, size_bytes, container, probe, cache_path))

    def _upsert_video(self, sha256: str, size_bytes: int, container: str, probe: dict[str, Any] | None,
                      cache_path: str | None) -> Video:
        with self.sessions.begin() as s:
            video = s.scalar(select(Video).where(Video.sha256 == sha256))
            if video is None:
                video = Video(sha256=sha256, size_bytes=size_bytes, container=container, has_audio=False, rotation=0)
                s.add(video)
            video.cache_path = cache_path or video.cache_path
            if probe is not None:
                video.duration_s, video.width, video.height = probe["duration_s"], probe["width"], probe["height"]
                video.fps, video.video_codec = probe["fps"], probe["video_codec"]
                video.audio_codec, video.has_audio, video.rotation = probe["audio_codec"], probe["has_audio"], probe["rotation"]
            s.flush()
            return video

    def reusable_result(self, sha256: str, provider: str, dimensions: str, newer_than: dt.datetime) -> dict[str, Any] | None:
        """A completed result for the same bytes, provider and dimensions, if recent enough."""
        with self.sessions() as s:
            doc = s.scalar(
                select(Result.document).join(Task, Task.id == Result.task_id).join(Video, Video.id == Result.video_id)
                .where(Video.sha256 == sha256, Result.provider == provider, Task.dimensions == dimensions,
                       Task.status == "completed", Result.created_at >= newer_than)
                .order_by(Result.created_at.desc()).limit(1)
            )
            return dict(doc) if doc is not None else None

    # --- cache cleanup (clean_videos.py, app/cleanup.py) ---------------------------
    def active_task_files(self) -> list[tuple[str, str, str | None, str | None]]:
        """(task id, status, video sha256, video cache_path) of every task not yet terminal."""
        with self.sessions() as s:
            rows = s.execute(
                select(Task.id, Task.status, Video.sha256, Video.cache_path)
                .outerjoin(Video, Video.id == Task.video_id)
                .where(Task.status.not_in(TERMINAL))
            ).all()
            return [(r[0], r[1], r[2], r[3]) for r in rows]

    def forget_cache_paths(self, paths: list[str]) -> int:
        """Clear `videos.cache_path` where it names one of `paths` (files the cleanup removed)."""
        cleared = 0
        with self.sessions.begin() as s:
            for i in range(0, len(paths), 500):
                res = s.execute(update(Video).where(Video.cache_path.in_(paths[i:i + 500])).values(cache_path=None))
                cleared += int(getattr(res, "rowcount", 0) or 0)
        return cleared
