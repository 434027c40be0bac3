"""The outbox over both SQL backends (SQLite, MariaDB): completion writes it, drainers empty it."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, select

from app.errors import NotFound
from app.models import IndexOutbox, utcnow
from app.search.documents import make_query
from app.search.elastic import ElasticIndex
from app.search.embedded import EmbeddedIndex
from app.search.outbox import LEASE_S, OutboxDrainer, enqueue
from app.store import NewTask, Store
from tests.conftest import free_port
from tests.search.conftest import result_document

CAT = ("cat", 0.9, [[2.0, 4.5]], ["visual"])
DOG = ("dog", 0.8, [[1.0, 2.0]], ["visual"])


@pytest.fixture
def sql(store: Store) -> Iterator[Store]:
    """The conftest store, with this suite's own table emptied (conftest's _clean does not know it)."""
    with store.sessions.begin() as s:
        s.execute(delete(IndexOutbox))
    yield store
    with store.sessions.begin() as s:
        s.execute(delete(IndexOutbox))


@pytest.fixture
async def embedded(tmp_path: Path) -> EmbeddedIndex:
    index = EmbeddedIndex(tmp_path / "search")
    await index.open()
    return index


def complete(store: Store, tags: list[Any], platform: str = "douyin") -> str:
    task = store.create_task(NewTask(url="https://example.com/v.mp4", platform=platform, uid=5))
    doc = result_document(task.id, tags=tags)
    store.complete(task.id, video=None, provider="local", document=doc, tags=doc["tags"], timings={})
    return task.id


def rows(store: Store) -> list[IndexOutbox]:
    with store.sessions() as s:
        return list(s.scalars(select(IndexOutbox).order_by(IndexOutbox.task_id)))


def later(seconds: float) -> dt.datetime:
    return utcnow() + dt.timedelta(seconds=seconds)


async def test_completion_writes_one_outbox_row_in_its_transaction(sql: Store) -> None:
    task_id = complete(sql, [CAT])
    first = rows(sql)
    assert [(r.task_id, r.op, r.attempts) for r in first] == [(task_id, "index", 0)]
    # Completing again (a re-run) replaces the row's version, never adds a row.
    doc = result_document(task_id, tags=[DOG])
    sql.complete(task_id, video=None, provider="local", document=doc, tags=doc["tags"], timings={})
    second = rows(sql)
    assert len(second) == 1 and second[0].token != first[0].token
    # A completion that fails writes no row (same transaction).
    with pytest.raises(NotFound):
        sql.complete("f" * 32, video=None, provider="local", document=doc, tags=[], timings={})
    assert len(rows(sql)) == 1


async def test_drain_indexes_completed_tasks_and_empties_the_outbox(sql: Store, embedded: EmbeddedIndex) -> None:
    ids = [complete(sql, [CAT]) for _ in range(3)]
    drainer = OutboxDrainer(sql.sessions, embedded, batch=2)
    first = await drainer.drain_once()
    second = await drainer.drain_once()
    assert (first.claimed, first.indexed, second.claimed, second.indexed) == (2, 2, 1, 1)
    assert rows(sql) == [] and drainer.pending() == 0
    page = await embedded.search(make_query(q="cat"))
    assert sorted(h.task_id for h in page.hits) == sorted(ids)
    assert page.hits[0].uid == 5 and page.hits[0].moments[0].start_s == 2.0


async def test_index_outage_delays_search_but_not_the_task(sql: Store, embedded: EmbeddedIndex) -> None:
    task_id = complete(sql, [CAT])
    assert sql.get_task(task_id).status == "completed"
    down = ElasticIndex(f"http://127.0.0.1:{free_port()}", alias="down", retries=1, backoff_base_s=0.01)
    try:
        report = await OutboxDrainer(sql.sessions, down).drain_once()
    finally:
        await down.close()
    assert report.claimed == 1 and report.indexed == 0 and "Unavailable" in report.failed[task_id]
    [row] = rows(sql)
    assert row.attempts == 1 and row.last_error and "unreachable" in row.last_error
    assert row.due_at > utcnow()  # backing off
    assert sql.get_task(task_id).status == "completed"
    # The index is back: nothing is due yet; after the backoff the row drains.
    drainer = OutboxDrainer(sql.sessions, embedded)
    assert (await drainer.drain_once()).claimed == 0
    report = await drainer.drain_once(now=later(10))
    assert report.indexed == 1 and rows(sql) == []
    assert [h.task_id for h in (await embedded.search(make_query(q="cat"))).hits] == [task_id]


async def test_a_restarted_drainer_resumes_after_the_dead_ones_lease(sql: Store, embedded: EmbeddedIndex) -> None:
    task_id = complete(sql, [CAT])
    crashed = OutboxDrainer(sql.sessions, embedded)
    assert [c.task_id for c in crashed.claim(utcnow())] == [task_id]  # ... and the process dies here
    restarted = OutboxDrainer(sql.sessions, embedded)
    assert (await restarted.drain_once()).claimed == 0  # leased by the dead process
    report = await restarted.drain_once(now=later(LEASE_S + 1))
    assert report.indexed == 1 and rows(sql) == []
    assert await embedded.get(task_id) is not None


async def test_a_completion_during_indexing_is_indexed_again(sql: Store, embedded: EmbeddedIndex) -> None:
    task_id = complete(sql, [CAT])
    drainer = OutboxDrainer(sql.sessions, embedded)
    claimed = drainer.claim(utcnow())
    doc = result_document(task_id, tags=[DOG])  # the task is completed again meanwhile
    sql.complete(task_id, video=None, provider="local", document=doc, tags=doc["tags"], timings={})
    drainer.finish(claimed, {}, utcnow())  # the first round succeeds with the old version
    [row] = rows(sql)
    assert row.due_at <= utcnow()  # due again at once
    assert (await drainer.drain_once()).indexed == 1
    assert rows(sql) == []
    assert (await embedded.get(task_id) or {})["tag_names"] == ["dog"]


async def test_delete_rows_remove_documents(sql: Store, embedded: EmbeddedIndex) -> None:
    task_id = complete(sql, [CAT])
    drainer = OutboxDrainer(sql.sessions, embedded)
    await drainer.drain_once()
    assert await embedded.count() == 1
    with sql.sessions.begin() as s:
        enqueue(s, task_id, "delete")
    report = await drainer.drain_once()
    assert report.deleted == 1 and await embedded.count() == 0 and rows(sql) == []


async def test_a_document_the_index_refuses_waits_with_its_reason(sql: Store, embedded: EmbeddedIndex) -> None:
    good, bad = complete(sql, [CAT]), complete(sql, [CAT])
    with sql.sessions.begin() as s:  # a stored result the search document cannot be built from
        from app.models import Result

        s.get(Result, bad).document = {"schema_version": 1, "tags": "not a list"}
    report = await OutboxDrainer(sql.sessions, embedded).drain_once()
    assert report.indexed == 1 and list(report.failed) == [bad]
    [row] = rows(sql)
    assert row.task_id == bad and row.attempts == 1 and "search document" in (row.last_error or "")
    assert await embedded.get(good) is not None


async def test_the_consumer_hook_drains_until_stopped(tmp_path: Path, redis_url: str) -> None:
    import asyncio

    from app.runtime import build_runtime
    from app.search.outbox import run_outbox_drainer
    from tests.conftest import make_settings, wait_for

    settings = make_settings(tmp_path, database_url=f"sqlite:///{tmp_path / 'hook.db'}", redis_url=redis_url,
                             search_semantic=False)
    rt = build_runtime(settings)
    stop = asyncio.Event()
    job = asyncio.create_task(run_outbox_drainer(rt, stop))
    try:
        task_id = await asyncio.to_thread(complete, rt.store, [CAT])
        index = EmbeddedIndex.from_settings(settings)

        async def indexed_and_acked() -> bool:  # the row is deleted just after the document is written
            return ((settings.data_dir / "search" / "CURRENT").exists() and await index.get(task_id) is not None
                    and not await asyncio.to_thread(rows, rt.store))

        await wait_for(indexed_and_acked, timeout=20)
        assert rows(rt.store) == []
    finally:
        stop.set()
        await asyncio.wait_for(job, 10)
        await rt.aclose()
        rt.shutdown()
    assert job.done() and job.exception() is None
