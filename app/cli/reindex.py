"""`python -m app.cli.reindex`: rebuild the search index from SQL without downtime.

Builds a new index beside the live one (Elasticsearch: a new versioned index; embedded:
a new SQLite file), fills it from every completed task's result with a progress bar,
switches the alias (or the CURRENT pointer) atomically and drops the old index. Search
keeps answering from the old index until the switch. Results completed while the
rebuild ran are indexed again after the switch (a catch-up pass), so none is lost.
Exit status: 0 done, 1 some documents were refused (listed), 2 the index is unreachable.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import logging
import sys
from collections.abc import AsyncIterator, Iterator
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings
from app.db import make_engine, make_sessionmaker, migrate
from app.errors import VttError
from app.logs import setup_logging
from app.models import Result, Task, utcnow
from app.search.base import SearchIndex, create_index
from app.search.documents import build_search_document
from app.search.outbox import task_facts

log = logging.getLogger("reindex")
CATCH_UP_MARGIN = dt.timedelta(seconds=5)


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m app.cli.reindex", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=500, help="documents per bulk request (default 500)")
    p.add_argument("--no-embeddings", action="store_true", help="skip MiniLM vectors (semantic search will miss)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p.parse_args(argv)


def count_results(sessions: sessionmaker[Session], since: dt.datetime | None = None) -> int:
    q = select(func.count()).select_from(Result).join(Task, Task.id == Result.task_id)
    if since is not None:
        q = q.where(Result.created_at >= since)
    with sessions() as s:
        return int(s.scalar(q) or 0)


def iter_documents(sessions: sessionmaker[Session], batch: int,
                   since: dt.datetime | None = None) -> Iterator[list[dict[str, Any]]]:
    """Search documents of every result (or those written since `since`), in task-id order, `batch` at a time."""
    after = ""
    while True:
        q = (select(Task, Result.document).join(Result, Result.task_id == Task.id)
             .where(Task.id > after).order_by(Task.id).limit(batch))
        if since is not None:
            q = q.where(Result.created_at >= since)
        with sessions() as s:
            rows = s.execute(q).all()
        if not rows:
            return
        docs = []
        for task, document in rows:
            try:
                docs.append(build_search_document(task_facts(task), document))
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                log.warning("task %s: cannot build its search document: %s", task.id, exc)
        yield docs
        after = rows[-1][0].id


async def _batches(sessions: sessionmaker[Session], batch: int,
                   since: dt.datetime | None = None) -> AsyncIterator[list[dict[str, Any]]]:
    it = iter_documents(sessions, batch, since)
    while (docs := await asyncio.to_thread(next, it, None)) is not None:
        yield docs


async def rebuild(sessions: sessionmaker[Session], index: SearchIndex, *, embedder: Any | None, batch: int,
                  progress: bool) -> tuple[int, dict[str, str]]:
    """Rebuild `index` from SQL (see the module docstring): (documents written, {task_id: refusal reason})."""
    from tqdm import tqdm

    await index.open()
    started = utcnow()
    total = await asyncio.to_thread(count_results, sessions)
    target = await index.begin_rebuild()
    failed: dict[str, str] = {}
    written = 0
    try:
        with tqdm(total=total, unit="doc", desc="reindex", disable=not progress, file=sys.stderr) as bar:
            async for docs in _batches(sessions, batch):
                await _embed(embedder, index, docs)
                failed.update(await index.upsert(docs, target=target))
                written += len(docs)
                bar.update(len(docs))
    except BaseException:
        await index.abort_rebuild(target)
        raise
    await index.finish_rebuild(target)
    # Catch-up: results written while we rebuilt went to the old index; write them again.
    async for docs in _batches(sessions, batch, started - CATCH_UP_MARGIN):
        await _embed(embedder, index, docs)
        failed.update(await index.upsert(docs))
    await index.refresh()
    return written, failed


async def _embed(embedder: Any | None, index: SearchIndex, docs: list[dict[str, Any]]) -> None:
    if embedder is None or not index.supports_vectors:
        return
    todo = [d for d in docs if d.get("embedding_text")]
    if todo:
        vectors = await asyncio.to_thread(embedder.embed, [d["embedding_text"] for d in todo])
        for d, v in zip(todo, vectors, strict=True):
            d["embedding"] = [round(float(x), 6) for x in v]


def main(argv: list[str] | None = None, settings: Settings | None = None) -> int:
    args = parse(argv)
    setup_logging()
    settings = settings or Settings()
    engine = make_engine(settings.effective_database_url)
    migrate(engine)
    sessions = make_sessionmaker(engine)
    index = create_index(settings)
    embedder = None
    if settings.search_semantic and not args.no_embeddings:
        from app.search.embeddings import Embedder

        embedder = Embedder(settings.models_dir)

    async def run() -> tuple[int, dict[str, str]]:
        try:
            return await rebuild(sessions, index, embedder=embedder, batch=args.batch, progress=not args.quiet)
        finally:
            await index.close()

    try:
        written, failed = asyncio.run(run())
    except VttError as exc:
        log.error("reindex failed: %s", exc.message)
        return 2
    finally:
        engine.dispose()
    for task_id, reason in sorted(failed.items()):
        log.error("task %s was not indexed: %s", task_id, reason)
    log.info("reindex done: %d document(s) written, %d refused", written, len(failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
