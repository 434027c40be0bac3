"""The search outbox: indexing that never blocks or fails a task.

    Store.complete ──(same SQL transaction)──> index_outbox row (task_id, op, token)
    OutboxDrainer (in each consumer process):
        claim   rows due now, lease them (due_at = now + LEASE_S; SKIP LOCKED on MySQL)
        load    the task and its result from SQL as they are *now*; build search documents
        index   embed (MiniLM) + bulk upsert / delete through the configured SearchIndex
        finish  success: delete the row if its token is unchanged; failure: attempts + 1,
                due_at = now + backoff, last_error. A row re-enqueued while leased keeps its
                lease and is made due again as soon as the first attempt finishes.

An index outage therefore only delays search: results are already committed, rows wait
with capped backoff, and a restarted consumer resumes from the table (a lease left by
a dead process expires after LEASE_S). Re-indexing is idempotent (document id = task id).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import random
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from app.models import IndexOutbox, Result, Task, utcnow
from app.search.base import SearchIndex, backoff_s
from app.search.documents import TaskFacts, build_search_document

if TYPE_CHECKING:
    from app.runtime import Runtime
    from app.search.embeddings import Embedder

log = logging.getLogger("search.outbox")

LEASE_S = 120.0
BACKOFF_BASE_S = 2.0
BACKOFF_CAP_S = 600.0


def enqueue(session: Session, task_id: str, op: str = "index") -> None:
    """Mark `task_id` for (re)indexing ("index") or removal ("delete") inside the caller's transaction.

    One atomic upsert: a new token and op, attempts reset; a leased row keeps its lease
    (due_at never moves earlier), the drainer re-arms it when done (single flight per task).
    An upsert rather than SELECT ... FOR UPDATE + INSERT: on InnoDB the locking read of a
    missing key takes a gap lock, and two completions doing that then INSERT deadlock.
    """
    now = utcnow()
    values = {"task_id": task_id, "op": op, "token": uuid.uuid4().hex, "attempts": 0, "due_at": now,
              "last_error": None, "created_at": now}
    dialect = session.get_bind().dialect.name
    if dialect == "mysql":  # MySQL and MariaDB
        from sqlalchemy.dialects.mysql import insert as mysql_insert

        ins = mysql_insert(IndexOutbox).values(**values)
        stmt: Any = ins.on_duplicate_key_update(
            op=ins.inserted.op, token=ins.inserted.token, attempts=0, last_error=None,
            due_at=func.greatest(IndexOutbox.due_at, ins.inserted.due_at))
    elif dialect in ("sqlite", "postgresql"):
        from sqlalchemy.dialects.postgresql import insert as pg_insert
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        ins2 = (sqlite_insert if dialect == "sqlite" else pg_insert)(IndexOutbox).values(**values)
        latest = func.max if dialect == "sqlite" else func.greatest  # SQLite's two-argument max() is scalar
        stmt = ins2.on_conflict_do_update(index_elements=[IndexOutbox.task_id], set_={
            "op": ins2.excluded.op, "token": ins2.excluded.token, "attempts": 0, "last_error": None,
            "due_at": latest(IndexOutbox.due_at, ins2.excluded.due_at)})
    else:
        raise RuntimeError(f"the search outbox does not support the {dialect} database")
    session.execute(stmt)


@dataclass(frozen=True)
class Claimed:
    task_id: str
    op: str
    token: str
    attempts: int


@dataclass
class DrainReport:
    claimed: int = 0
    indexed: int = 0
    deleted: int = 0
    failed: dict[str, str] = field(default_factory=dict)


def task_facts(task: Task) -> TaskFacts:
    return TaskFacts(task_id=task.id, platform=task.platform, uid=task.uid, env=task.env, source=task.source,
                     dimensions=task.dimensions, created_at=task.created_at, finished_at=task.finished_at)


def load_documents(sessions: sessionmaker[Session], task_ids: Sequence[str]) -> tuple[dict[str, dict[str, Any]],
                                                                                      dict[str, str]]:
    """Search documents for the tasks that have a result now; ({task_id: doc}, {task_id: build error})."""
    docs: dict[str, dict[str, Any]] = {}
    errors: dict[str, str] = {}
    if not task_ids:
        return docs, errors
    with sessions() as s:
        rows = s.execute(select(Task, Result.document).join(Result, Result.task_id == Task.id)
                         .where(Task.id.in_(list(task_ids)))).all()
        for task, document in rows:
            try:
                docs[task.id] = build_search_document(task_facts(task), document)
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                errors[task.id] = f"cannot build the search document: {type(exc).__name__}: {exc}"
    return docs, errors


class OutboxDrainer:
    """Moves index_outbox rows into a SearchIndex. One per process; several processes may run."""

    def __init__(self, sessions: sessionmaker[Session], index: SearchIndex, *, embedder: Embedder | None = None,
                 batch: int = 200, lease_s: float = LEASE_S, poll_s: float = 1.0) -> None:
        self.sessions = sessions
        self.index = index
        self.embedder = embedder
        self.batch = batch
        self.lease_s = lease_s
        self.poll_s = poll_s
        self._opened = False

    # --- SQL (synchronous; called through asyncio.to_thread) -------------------------
    def claim(self, now: dt.datetime) -> list[Claimed]:
        with self.sessions.begin() as s:
            rows = s.scalars(select(IndexOutbox).where(IndexOutbox.due_at <= now)
                             .order_by(IndexOutbox.due_at, IndexOutbox.task_id).limit(self.batch)
                             .with_for_update(skip_locked=True)).all()
            claimed = [Claimed(r.task_id, r.op, r.token, r.attempts) for r in rows]
            for r in rows:
                r.due_at = now + dt.timedelta(seconds=self.lease_s)
        return claimed

    def finish(self, claimed: Sequence[Claimed], failed: dict[str, str], now: dt.datetime) -> None:
        with self.sessions.begin() as s:
            for c in claimed:
                mine = (IndexOutbox.task_id == c.task_id) & (IndexOutbox.token == c.token)
                if c.task_id in failed:
                    delay = backoff_s(c.attempts, base=BACKOFF_BASE_S, cap=BACKOFF_CAP_S, rand=random.random())
                    result = s.execute(update(IndexOutbox).where(mine).values(
                        attempts=c.attempts + 1, due_at=now + dt.timedelta(seconds=delay),
                        last_error=failed[c.task_id][:2000]))
                else:
                    result = s.execute(delete(IndexOutbox).where(mine))
                done = int(getattr(result, "rowcount", 0))
                if not done:  # re-enqueued while we worked: due again now, for the newer state
                    s.execute(update(IndexOutbox).where(IndexOutbox.task_id == c.task_id).values(due_at=now))

    def pending(self) -> int:
        with self.sessions() as s:
            return int(s.scalar(select(func.count()).select_from(IndexOutbox)) or 0)

    # --- one round -------------------------------------------------------------------
    async def _embed(self, docs: list[dict[str, Any]]) -> None:
        if self.embedder is None or not self.index.supports_vectors:
            return
        todo = [d for d in docs if d.get("embedding_text")]
        if not todo:
            return
        try:
            vectors = await asyncio.to_thread(self.embedder.embed, [d["embedding_text"] for d in todo])
        except RuntimeError as exc:  # model not installed: index without vectors, say so once
            log.warning("indexing without embeddings (semantic search will not find these): %s", exc)
            self.embedder = None
            return
        for d, v in zip(todo, vectors, strict=True):
            d["embedding"] = [round(float(x), 6) for x in v]

    async def drain_once(self, now: dt.datetime | None = None) -> DrainReport:
        """Claim one batch of due rows, index them, record the outcome. Never raises for index errors."""
        now = now or utcnow()
        claimed = await asyncio.to_thread(self.claim, now)
        report = DrainReport(claimed=len(claimed))
        if not claimed:
            return report
        docs, failed = await asyncio.to_thread(
            load_documents, self.sessions, [c.task_id for c in claimed if c.op == "index"])
        to_index = [docs[c.task_id] for c in claimed if c.task_id in docs]
        to_delete = [c.task_id for c in claimed if c.task_id not in docs and c.task_id not in failed]
        try:
            if not self._opened:
                await self.index.open()
                self._opened = True
            await self._embed(to_index)
            if to_index:
                failed.update(await self.index.upsert(to_index))
            if to_delete:
                await self.index.delete(to_delete)
        except Exception as exc:  # the index is down or refused the batch: every row waits and retries
            reason = f"{type(exc).__name__}: {getattr(exc, 'message', None) or exc}"
            log.warning("search indexing of %d task(s) failed, will retry: %s", len(claimed), reason)
            failed.update({c.task_id: reason for c in claimed})
        await asyncio.to_thread(self.finish, claimed, failed, now)
        report.failed = failed
        report.indexed = sum(1 for d in to_index if d["task_id"] not in failed)
        report.deleted = sum(1 for t in to_delete if t not in failed)
        return report

    async def run(self, stop: asyncio.Event) -> None:
        """Drain until `stop` is set: at once while batches come full, else every poll_s (longer after errors)."""
        errors = 0
        while not stop.is_set():
            try:
                report = await self.drain_once()
                errors = errors + 1 if report.failed and len(report.failed) == report.claimed else 0
                busy = report.claimed >= self.batch and not errors
            except Exception as exc:  # SQL down: keep the loop alive
                log.warning("search outbox round failed: %s", exc)
                errors, busy = errors + 1, False
            if busy:
                continue
            wait = self.poll_s if not errors else min(60.0, self.poll_s * 2 ** min(errors, 6))
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), wait)


async def run_outbox_drainer(runtime: Runtime, stop_event: asyncio.Event) -> None:
    """Run the outbox drainer for this process's settings until `stop_event` is set (or cancelled)."""
    from app.search.base import create_index

    settings = runtime.settings
    index = create_index(settings)
    embedder = None
    if settings.search_semantic:
        from app.search.embeddings import Embedder

        embedder = Embedder(settings.models_dir)
    drainer = OutboxDrainer(runtime.store.sessions, index, embedder=embedder, batch=settings.search_outbox_batch)
    try:
        await drainer.run(stop_event)
    finally:
        await index.close()
