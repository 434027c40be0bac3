"""End to end on the production stack: MariaDB + shared Redis, API over HTTP, real consumer."""

from __future__ import annotations

import asyncio
from pathlib import Path
from urllib.parse import quote

import pytest
import redis as redis_sync

from app import keys
from tests.conftest import MYSQL_URL, MediaServer, corpus_files, make_settings
from tests.e2e.harness import Service, running_service

pytestmark = pytest.mark.slow


@pytest.fixture
async def service(tmp_path: Path, redis_url: str, mysql_store, model_dir: Path):
    settings = make_settings(tmp_path, database_url=MYSQL_URL, redis_url=redis_url, model_dir=model_dir,
                             max_retries=1, download_retries=0, consumer_concurrency=2)
    async with running_service(settings) as svc:
        yield svc


def leftovers(svc: Service) -> list[Path]:
    data = svc.settings.data_dir
    return [p for p in (data / "cache" / "tmp").glob("*")] + [p for p in (data / "uploads").glob("*")]


async def test_every_container_completes_with_tags(service: Service, media_server: MediaServer) -> None:
    entries = corpus_files("container")
    ids = {e["path"]: await service.submit(media_server.url("corpus/" + e["path"]), uid=42) for e in entries}
    for e in entries:
        data = await service.wait(ids[e["path"]])
        assert data["status"] == "completed", (e["path"], data["error"])
        doc = data["result"]
        assert doc["schema_version"] == 2 and doc["task_id"] == ids[e["path"]]
        assert doc["video"]["duration_s"] == pytest.approx(e["duration"], abs=0.1)
        assert doc["video"]["sha256"] == e["sha256"]
        assert doc["tags"], e["path"]
        for tag in doc["tags"]:
            assert tag["sources"] and 0 < tag["confidence"] <= 1
            for start, end in tag["ranges"]:
                assert 0 <= start <= end <= e["duration"] + 0.2
        assert set(data["timings"]) >= {"downloading", "probing", "detecting_scenes", "labelling_frames"}
        assert data["progress"] == {"stage": "completed", "fraction": 1.0}
    # The bunny clip is an animal film: the labeller must see animals in it.
    assert any(t["name"] in ("animal", "bird") for t in doc["tags"])
    assert leftovers(service) == []
    r = redis_sync.Redis.from_url(service.settings.redis_url or "")
    assert r.hget(keys.task_info(ids[entries[0]["path"]]), "status") == b"completed"
    assert r.llen(keys.TASK_QUEUE) == 0 and r.llen(keys.processing(service.workers[0].worker_id)) == 0


@pytest.mark.parametrize("path,status,code", [
    ("hostile/empty_zero_bytes.mp4", "failed", "empty_file"),
    ("hostile/plain_text_named.mp4", "failed", "unsupported_format"),
    ("hostile/tiny_valid_1frame_64x36.mp4", "completed", None),
    ("hostile/truncated_first_30pct.mp4", "completed", None),
])
async def test_hostile_files(service: Service, media_server: MediaServer, path: str, status: str, code: str | None) -> None:
    data = await service.wait(await service.submit(media_server.url("corpus/" + path)))
    assert data["status"] == status
    if code:
        assert data["error"]["code"] == code and data["error"]["message"]
        assert data["retry_count"] == 0  # permanent: not retried
    if "truncated" in path:
        assert data["result"]["partial"] is True and "truncated" in data["result"]["warnings"][0]
    if "tiny" in path:
        assert len(data["result"]["frames"]) == 1
    # The worker survives and still works.
    ok = await service.wait(await service.submit(media_server.url("corpus/hostile/tiny_valid_1frame_64x36.mp4"),
                                                 dimensions="vision"))
    assert ok["status"] == "completed"
    assert leftovers(service) == []
    assert all(not p.name.endswith(".part") for p in (service.settings.data_dir / "cache").rglob("*"))


async def test_network_failures_get_stable_codes(service: Service, media_server: MediaServer) -> None:
    metadata = "http://169.254.169.254/latest/meta-data/"
    blocked = await service.wait(await service.submit(media_server.url("redirect?to=" + quote(metadata, safe=""))))
    assert blocked["error"]["code"] == "blocked_address" and blocked["retry_count"] == 0
    gone = await service.wait(await service.submit(media_server.url("status/404")))
    assert gone["error"]["code"] == "source_gone" and gone["retry_count"] == 0
    down = await service.wait(await service.submit(media_server.url("status/503")))
    assert down["error"]["code"] == "download_failed" and down["retry_count"] == 1  # retried once, then failed
    r = redis_sync.Redis.from_url(service.settings.redis_url or "")
    failed = {x.decode() for x in r.lrange(keys.TASK_QUEUE_FAILED, 0, -1)}
    assert {blocked["task_id"], gone["task_id"], down["task_id"]} <= failed
    flaky = await service.wait(await service.submit(media_server.url("flaky/containers/bbb_clip.mp4")))
    assert flaky["status"] == "completed" and flaky["retry_count"] == 1
    assert flaky["last_error"] is None


async def test_same_bytes_are_analysed_once(service: Service, media_server: MediaServer) -> None:
    first = await service.wait(await service.submit(media_server.url("corpus/containers/bbb_clip.mp4")))
    second = await service.wait(await service.submit(media_server.url("redirect?to=/corpus/containers/bbb_clip.mp4")))
    assert second["result"]["reused_from"] == first["task_id"]
    assert second["result"]["task_id"] == second["task_id"]
    assert second["result"]["tags"] == first["result"]["tags"]
    assert "labelling_frames" not in second["timings"]


async def test_upload_and_list(service: Service, corpus: Path) -> None:
    with open(corpus / "real/phone_dog_fireplace_rot180_moviepy.mp4", "rb") as f:
        r = await service.client.post("/api/v1/task/upload", files={"file": ("dog.mp4", f, "video/mp4")},
                                      data={"platform": "miaobi", "uid": "9", "dismensions": "vision"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["code"] == 200 and body["data"]["container"] == "mp4"
    data = await service.wait(body["task_id"])
    assert data["status"] == "completed" and data["dimensions"] == "vision"
    assert "dog" in [t["name"] for t in data["result"]["tags"]]
    assert data["result"]["text"] == []  # vision only: no OCR ran
    assert leftovers(service) == []
    listed = (await service.client.get("/api/v1/tasks", params={"platform": "miaobi", "uid": 9})).json()["data"]
    assert listed["total"] == 1 and listed["items"][0]["task_id"] == body["task_id"]
    assert (await service.client.get("/api/v1/tasks", params={"status": "failed"})).json()["data"]["total"] == 0


async def test_seed_sync_endpoint(service: Service, media_server: MediaServer) -> None:
    r = await service.client.post("/api/v1/vision_to_tag/google", json={"url": media_server.url("corpus/containers/bbb_clip.webm")})
    body = r.json()
    assert r.status_code == 200 and body["message"] == "成功" and body["task_id"]
    assert body["data"]["tags"] and all(isinstance(t, str) for t in body["data"]["tags"])
    r = await service.client.post("/api/v1/vision_to_tag/google", json={"url": media_server.url("corpus/hostile/plain_text_named.mp4")})
    assert r.status_code == 415 and r.json()["data"]["error"]["code"] == "unsupported_format"


async def test_progress_is_visible_while_running(service: Service, media_server: MediaServer) -> None:
    task_id = await service.submit(media_server.url("corpus/real/big_buck_bunny_0_30_moviepy.webm"))
    stages = set()
    for _ in range(600):
        data = (await service.client.get(f"/api/v1/task/{task_id}")).json()["data"]
        stages.add(data["progress"]["stage"])
        if data["status"] == "completed":
            break
        await asyncio.sleep(0.05)
    assert data["status"] == "completed"
    assert stages & {"downloading", "probing", "detecting_scenes", "labelling_frames", "reading_text", "merging"}, stages
    texts = [t["text"] for t in data["result"]["text"]]
    assert "THE PEACH OPEN MOVIE PROJECT" in texts
