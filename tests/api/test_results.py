"""GET /api/v1/task/{id}/result (document, SRT, VTT) and thumbnails, through the real service."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from app.api.results import subtitle_source
from app.store import NewTask
from tests.conftest import MYSQL_URL, MediaServer, make_settings
from tests.e2e.harness import Service, running_service


@pytest.fixture
async def service(tmp_path: Path, redis_url: str, mysql_store, model_dir: Path) -> AsyncIterator[Service]:
    settings = make_settings(tmp_path, database_url=MYSQL_URL, redis_url=redis_url, model_dir=model_dir)
    async with running_service(settings, consumers=1) as svc:
        yield svc


@pytest.mark.parametrize("doc,asked,chosen", [
    ({"speech": {"segments": [{"start_s": 0, "end_s": 1, "text": "hi"}]}}, None, "speech"),
    ({"speech": {"status": "skipped", "reason": "no audio track"}}, None, "text"),
    ({"speech": {"segments": [{"start_s": 0, "end_s": 1, "text": "hi"}]}}, "text", "text"),
])
def test_subtitle_source_defaults_to_speech_when_there_is_any(doc: dict, asked: str | None, chosen: str) -> None:
    assert subtitle_source(doc, asked) == chosen


async def test_result_document_and_subtitles(service: Service, media_server: MediaServer) -> None:
    task_id = await service.submit(media_server.url("corpus/variants/chaplin_jfk_speech.mp4"))
    data = await service.wait(task_id, timeout=120)
    assert data["status"] == "completed", data["error"]
    c = service.client

    r = await c.get(f"/api/v1/task/{task_id}/result")
    body = r.json()
    assert r.status_code == 200 and body["code"] == 200 and body["task_id"] == task_id
    doc = body["data"]
    assert doc["schema_version"] == 2 and doc == data["result"]
    assert doc["speech"]["language"] == "en" and doc["scenes"][0]["keyframe"]["thumbnail"]

    r = await c.get(f"/api/v1/task/{task_id}/result", params={"format": "srt"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/x-subrip")
    assert re.match(r"1\n00:00:0\d,\d{3} --> 00:00:1\d,\d{3}\n.*fellow Americans", r.text, re.S), r.text
    r = await c.get(f"/api/v1/task/{task_id}/result", params={"format": "vtt", "source": "speech"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/vtt")
    assert r.text.startswith("WEBVTT\n\n00:00:0") and "ask not what your country" in r.text

    r = await c.get(f"/api/v1/task/{task_id}/result", params={"format": "srt", "source": "text"})
    assert r.status_code == 404 and "no on-screen text" in r.json()["message"]
    r = await c.get(f"/api/v1/task/{task_id}/result", params={"format": "docx"})
    assert r.status_code == 400 and r.json()["data"]["error"]["code"] == "invalid_request"

    name = doc["scenes"][0]["keyframe"]["thumbnail"].rsplit("/", 1)[1]
    r = await c.get(f"/api/v1/task/{task_id}/thumbs/{name}")
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg" and r.content[:3] == b"\xff\xd8\xff"
    for bad in ("scene_9999.jpg", "..%2F..%2Fvision_to_tag.db", "scene_0000.png"):
        assert (await c.get(f"/api/v1/task/{task_id}/thumbs/{bad}")).status_code == 404


async def test_result_of_unknown_or_unfinished_tasks(service: Service) -> None:
    c = service.client
    assert (await c.get("/api/v1/task/" + "f" * 32 + "/result")).status_code == 404
    assert (await c.get("/api/v1/task/nope/result")).json()["data"]["error"]["code"] == "not_found"
    task = await asyncio.to_thread(service.runtime.store.create_task, NewTask(url="https://example.com/v.mp4",
                                                                              platform="test"))
    r = await c.get(f"/api/v1/task/{task.id}/result", params={"format": "vtt"})
    assert r.status_code == 409 and r.json()["data"]["error"]["code"] == "conflict" and "pending" in r.json()["message"]
