"""GET /api/v1/search through a real server: envelope, parameters, cursor, outbox to index to API."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from app.api.app import create_app
from app.config import Settings
from app.runtime import build_runtime
from app.search.embedded import EmbeddedIndex
from app.search.embeddings import Embedder
from app.search.outbox import OutboxDrainer
from app.store import NewTask, Store
from tests.conftest import free_port, make_settings
from tests.search.conftest import result_document, shared_models_dir


@dataclass
class Api:
    client: httpx.AsyncClient
    store: Store
    settings: Settings

    async def complete(self, platform: str = "douyin", **result: Any) -> str:
        task = await asyncio.to_thread(self.store.create_task, NewTask(url="https://e.com/v.mp4", platform=platform))
        doc = result_document(task.id, **result)
        await asyncio.to_thread(self.store.complete, task.id, video=None, provider="local", document=doc,
                                tags=doc["tags"], timings={})
        return task.id

    async def drain(self, embedder: Embedder | None = None) -> None:
        index = EmbeddedIndex.from_settings(self.settings)
        while (await OutboxDrainer(self.store.sessions, index, embedder=embedder).drain_once()).claimed:
            pass

    async def search(self, **params: Any) -> httpx.Response:
        return await self.client.get("/api/v1/search", params=params)


async def serve(settings: Settings) -> AsyncIterator[Api]:
    app = create_app(lambda: build_runtime(settings))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_level="warning",
                                           lifespan="on"))
    serving = asyncio.create_task(server.serve())
    while not server.started:
        if serving.done():
            serving.result()
        await asyncio.sleep(0.02)
    rt = app.state.rt
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.config.port}", timeout=60) as client:
        yield Api(client, rt.store, settings)
    server.should_exit = True
    await serving


@pytest.fixture
async def api(tmp_path: Path, redis_url: str) -> AsyncIterator[Api]:
    settings = make_settings(tmp_path, database_url=f"sqlite:///{tmp_path / 'api.db'}", redis_url=redis_url,
                             search_semantic=False)
    async for a in serve(settings):
        yield a


async def test_completed_tasks_become_searchable_through_the_outbox(api: Api) -> None:
    task_id = await api.complete(tags=[("cat", 0.9, [[2.0, 4.5]], ["visual"])], ocr=[("欢迎来到北京", 1.0, 3.0)])
    before = await api.search(q="北京")
    assert before.status_code == 200 and before.json()["data"]["total"] == 0  # not indexed yet
    await api.drain()
    r = await api.search(q="北京")
    body = r.json()
    assert r.status_code == 200
    assert (body["code"], body["message"], body["task_id"]) == (200, "success", None)
    data = body["data"]
    assert data["total"] == 1 and data["next_cursor"] is None and data["semantic"] is False
    [item] = data["items"]
    assert item["task_id"] == task_id and item["platform"] == "douyin"
    assert item["created_at"].endswith("Z") and item["created_at_ms"] > 0
    assert item["moments"] == [{"kind": "ocr", "start_s": 1.0, "end_s": 3.0, "text": "欢迎来到北京",
                                "highlight": "欢迎来到<em>北京</em>"}]
    assert item["tags"][0]["name"] == "cat" and item["score"] > 0
    assert data["facets"] == {"tags": [{"value": "cat", "count": 1}], "platforms": [{"value": "douyin", "count": 1}]}


async def test_filters_and_cursor_pages(api: Api) -> None:
    ids = [await api.complete(platform=p, tags=[("dog", 0.8, [[1.0, 2.0]], ["visual"])])
           for p in ("douyin", "tiktok", "tiktok")]
    await api.drain()
    first = (await api.search(platform="tiktok", limit=1)).json()["data"]
    assert first["total"] == 2 and first["next_cursor"]
    second = (await api.search(platform="tiktok", limit=1, cursor=first["next_cursor"])).json()["data"]
    assert second["next_cursor"] is None
    assert {first["items"][0]["task_id"], second["items"][0]["task_id"]} == set(ids[1:])
    assert (await api.search(tags="dog,cat")).json()["data"]["total"] == 0
    assert (await api.search(q="dog", tags="dog", **{"from": "2000-01-01"})).json()["data"]["total"] == 3


@pytest.mark.parametrize(("params", "field"), [
    ({"from": "yesterday"}, "ISO 8601"),
    ({"cursor": "bm9wZQ"}, "cursor"),
    ({"limit": 0}, "limit"),
    ({"uid": -1}, "uid"),
    ({"semantic": "true"}, "semantic"),
    ({"from": "2025-02-01", "to": "2025-01-01"}, "from"),
])
async def test_bad_parameters_are_400_envelopes(api: Api, params: dict[str, Any], field: str) -> None:
    r = await api.search(**params)
    body = r.json()
    assert r.status_code == 400 and body["code"] == 400
    assert body["data"]["error"]["code"] == "invalid_request" and field in body["message"]


async def test_semantic_needs_it_enabled(api: Api) -> None:
    r = await api.search(q="dog", semantic="true")
    assert r.status_code == 400 and "semantic search is not enabled" in r.json()["message"]


async def test_semantic_search_end_to_end(tmp_path: Path, redis_url: str,
                                         tmp_path_factory: pytest.TempPathFactory) -> None:
    settings = make_settings(tmp_path, database_url=f"sqlite:///{tmp_path / 'api.db'}", redis_url=redis_url,
                             search_semantic=True, model_dir=shared_models_dir(tmp_path_factory))
    async for api in serve(settings):
        puppy = await api.complete(description="a puppy playing fetch in the garden")
        await api.complete(description="quarterly earnings call with charts")
        await api.drain(Embedder(settings.models_dir))
        assert (await api.search(q="dog")).json()["data"]["total"] == 0
        data = (await api.search(q="dog", semantic="true")).json()["data"]
        assert data["semantic"] is True and [i["task_id"] for i in data["items"]] == [puppy]
