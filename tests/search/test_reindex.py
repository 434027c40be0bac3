"""`python -m app.cli.reindex`: rebuild from SQL with a progress bar, then switch; over both backends."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import pytest

from app.cli.reindex import main
from app.config import Settings
from app.db import make_engine, make_sessionmaker, migrate
from app.search.base import create_index
from app.search.documents import make_query
from app.search.elastic import ElasticIndex
from app.store import NewTask, Store
from tests.conftest import free_port
from tests.search.conftest import result_document


def sql_with_results(settings: Settings, n: int) -> list[str]:
    engine = make_engine(settings.effective_database_url)
    migrate(engine)
    store = Store(make_sessionmaker(engine))
    ids = []
    for i in range(n):
        task = store.create_task(NewTask(url="https://e.com/v.mp4", platform="douyin"))
        doc = result_document(task.id, tags=[("cat", 0.9, [[1.0, 2.0]], ["visual"])], ocr=[(f"第{i}集 北京", 0.0, 1.0)])
        store.complete(task.id, video=None, provider="local", document=doc, tags=doc["tags"], timings={})
        ids.append(task.id)
    store.create_task(NewTask(url="https://e.com/p.mp4", platform="douyin"))  # pending: nothing to index
    engine.dispose()
    return ids


@pytest.fixture(params=["embedded", "elastic"])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    values: dict[str, Any] = {"data_dir": tmp_path / "data", "search_semantic": False}
    if request.param == "elastic":
        values.update(elasticsearch_url=request.getfixturevalue("es_url"), elasticsearch_compat="osmem",
                      elasticsearch_index=f"r-{uuid.uuid4().hex[:10]}")
    return Settings(_env_file=None, **values)


async def test_reindex_rebuilds_from_sql_and_switches(settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    ids = sql_with_results(settings, 3)
    assert await asyncio.to_thread(main, [], settings=settings) == 0
    progress = capsys.readouterr().err
    assert "reindex: 100%" in progress and "3/3" in progress
    index = create_index(settings)
    try:
        assert await index.count() == 3
        page = await index.search(make_query(q="北京"))
        assert sorted(h.task_id for h in page.hits) == sorted(ids)
        first = await _live_name(index, settings)
        assert await asyncio.to_thread(main, ["--quiet", "--batch", "2"], settings=settings) == 0  # again: a new index replaces the old
        assert await index.count() == 3
        assert await _live_name(index, settings) != first
    finally:
        if isinstance(index, ElasticIndex):
            await index.client.indices.delete(index=f"{index.alias}-*", ignore_unavailable=True)
        await index.close()


async def _live_name(index: Any, settings: Settings) -> str:
    if isinstance(index, ElasticIndex):
        return str(list((await index.client.indices.get_alias(name=index.alias)).body)[0])
    return (settings.data_dir / "search" / "CURRENT").read_text().strip()


def test_reindex_exits_2_when_the_index_is_unreachable(tmp_path: Path) -> None:
    settings = Settings(_env_file=None, data_dir=tmp_path / "data", search_semantic=False,
                        elasticsearch_url=f"http://127.0.0.1:{free_port()}", elasticsearch_retries=0)
    sql_with_results(settings, 1)
    assert main(["--quiet"], settings=settings) == 2
