"""The SQL record, one contract over SQLite and MariaDB."""

import datetime as dt

import pytest
from sqlalchemy import func, select

from app.db import alembic_config, make_engine, migrate
from app.errors import NotFound
from app.models import Base, Result, Tag
from app.store import NewTask, Store


def doc(task_id: str) -> dict:
    return {"schema_version": 1, "task_id": task_id, "tags": [{"name": "dog", "confidence": 0.9, "sources": ["visual"]},
                                                            {"name": "你好", "confidence": 0.8, "sources": ["ocr"]}]}


def test_lifecycle_and_idempotent_completion(store: Store) -> None:
    task = store.create_task(NewTask(url="http://example.com/v.mp4", platform="rpa", uid=7, env="prod"))
    assert store.get_task(task.id).status == "pending"
    assert store.mark_started(task.id, "w1") is not None
    store.set_progress(task.id, "decoding", 0.4, {"download": 0.1})
    t = store.get_task(task.id)
    assert (t.status, t.stage, t.progress, t.worker_id) == ("processing", "decoding", 0.4, "w1")
    video = store.upsert_video(sha256="a" * 64, size_bytes=10, container="mp4", probe=None, cache_path=None)
    for _ in range(2):  # a re-run after a crash replaces, never duplicates
        store.complete(task.id, video=video, provider="local", document=doc(task.id), tags=doc(task.id)["tags"],
                       timings={"total": 1.0})
    with store.sessions() as s:
        assert s.scalar(select(func.count()).select_from(Result).where(Result.task_id == task.id)) == 1
        assert sorted(s.scalars(select(Tag.name).where(Tag.task_id == task.id))) == ["dog", "你好"]
    assert store.get_task(task.id).status == "completed"
    assert store.get_result(task.id)["tags"][1]["name"] == "你好"
    assert store.mark_started(task.id, "w2") is None  # a late duplicate claim is refused
    store.mark_failed(task.id, "timeout", "late failure")  # never overrides completion
    assert store.get_task(task.id).status == "completed"


def test_failure_retry_and_listing(store: Store) -> None:
    ids = [store.create_task(NewTask(url=f"http://e.com/{i}", platform="p" if i % 2 else "q", uid=i)).id for i in range(5)]
    store.set_retry(ids[0], 1, "download_failed", "HTTP 503")
    t = store.get_task(ids[0])
    assert (t.status, t.retry_count, t.error_code) == ("pending", 1, "download_failed")
    store.mark_failed(ids[1], "unsupported_format", "plain text")
    rows, total = store.list_tasks(platform="p")
    assert total == 2 and {r.id for r in rows} == {ids[1], ids[3]}
    rows, total = store.list_tasks(status="failed")
    assert [r.error_code for r in rows] == ["unsupported_format"]
    rows, total = store.list_tasks(limit=2, offset=2)
    assert total == 5 and len(rows) == 2
    with pytest.raises(NotFound):
        store.get_task("0" * 32)


def test_reusable_result_by_content(store: Store) -> None:
    video = store.upsert_video(sha256="b" * 64, size_bytes=1, container="mp4", probe=None, cache_path="/x")
    task = store.create_task(NewTask(url="http://e.com/v", platform="p"))
    store.complete(task.id, video=video, provider="local", document=doc(task.id), tags=[], timings={})
    old = dt.datetime.now(dt.UTC).replace(tzinfo=None) - dt.timedelta(days=1)
    assert store.reusable_result("b" * 64, "local", "all", old)["task_id"] == task.id
    assert store.reusable_result("b" * 64, "local", "text", old) is None
    assert store.reusable_result("b" * 64, "gemini", "all", old) is None
    future = dt.datetime.now(dt.UTC).replace(tzinfo=None) + dt.timedelta(days=1)
    assert store.reusable_result("b" * 64, "local", "all", future) is None


@pytest.mark.parametrize("backend", ["sqlite", "mysql"])
def test_migrations_match_the_models(backend: str, tmp_path, request: pytest.FixtureRequest) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    engine = make_engine(f"sqlite:///{tmp_path / 'm.db'}") if backend == "sqlite" else request.getfixturevalue("mysql_engine")
    migrate(engine)
    migrate(engine)  # idempotent
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == [], diff
    assert alembic_config(engine).get_main_option("script_location")
