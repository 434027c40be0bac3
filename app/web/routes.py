"""The web console at `/`: page shells rendered here, assets under /static, the cached video with ranges.

    GET /                              Tasks: submit (URL or upload), live list, filters, retry
    GET /video/{task_id}?t=SECONDS     a player beside the timeline of the task's result
    GET /search                        the search API with facets; a hit opens /video/{id}?t=...
    GET /accounts                      the Gemini key pool, refreshed live
    GET /static/{file}                 app/web/static (no CDN: every asset is served here)
    GET /api/v1/task/{id}/video        the task's video from the cache, HTTP range requests (206/416)
    GET /web/media/{id}/video|thumbs/{name}
                                       the same bytes for <video>/<img> elements, which cannot send
                                       X-API-Key: when API_KEYS is set, the key comes from the
                                       `vtt_key` cookie the page sets once the key is entered

The pages are shells: the browser reads data from /api/v1 with the key kept in localStorage and
sent as X-API-Key, so the console is behind the same keys as the API and holds no data itself.
"""

from __future__ import annotations

import asyncio
import html
import re
from pathlib import Path
from string import Template

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, Response
from fastapi.staticfiles import StaticFiles
from sqlalchemy import select

from app.api.auth import KeyRing, refusal
from app.api.results import get_thumbnail
from app.errors import NotFound
from app.models import Task, Video
from app.runtime import Runtime

HERE = Path(__file__).resolve().parent
STATIC = HERE / "static"
TEMPLATES = HERE / "templates"
KEY_COOKIE = "vtt_key"
_TASK_ID = re.compile(r"^[0-9a-f]{32}$")
NAV = (("tasks", "/", "Tasks"), ("search", "/search", "Search"), ("accounts", "/accounts", "Accounts"))
# Browsers play what they can; the type only tells them which decoder to try first.
VIDEO_TYPES = {"mp4": "video/mp4", "mov": "video/quicktime", "3gp": "video/3gpp", "webm": "video/webm",
               "mkv": "video/x-matroska", "avi": "video/x-msvideo", "flv": "video/x-flv",
               "mpeg-ps": "video/mpeg", "mpeg-ts": "video/mp2t"}


router = APIRouter()
pages = APIRouter(include_in_schema=False)


def render(page: str, title: str, **values: str) -> HTMLResponse:
    """The layout around templates/{page}.html; `values` are HTML-escaped into it (pure but for file reads)."""
    layout = Template((TEMPLATES / "layout.html").read_text(encoding="utf-8"))
    body = Template((TEMPLATES / f"{page}.html").read_text(encoding="utf-8"))
    escaped = {k: html.escape(v, quote=True) for k, v in values.items()}
    current = ' aria-current="page"'
    nav = "".join(f'<li><a href="{href}"{current if name == page else ""}>{label}</a></li>'
                  for name, href, label in NAV)
    doc = layout.substitute(title=html.escape(title), page=page, nav=nav, body=body.substitute(escaped))
    return HTMLResponse(doc, headers={"Cache-Control": "no-store"})


@pages.get("/")
async def tasks_page() -> HTMLResponse:
    return render("tasks", "Tasks")


@pages.get("/video/{task_id}")
async def video_page(task_id: str) -> HTMLResponse:
    if not _TASK_ID.match(task_id):
        raise NotFound(f"no task with id {task_id[:64]!r}")
    return render("video", f"Video {task_id[:8]}", task_id=task_id)


@pages.get("/search")
async def search_page() -> HTMLResponse:
    return render("search", "Search")


@pages.get("/accounts")
async def accounts_page() -> HTMLResponse:
    return render("accounts", "Accounts")


def _cached_file(runtime: Runtime, task_id: str) -> tuple[Path, str] | None:
    """(path, container) of the task's video in the cache, or None when none is kept."""
    with runtime.store.sessions() as s:
        row = s.execute(select(Video.cache_path, Video.container).join(Task, Task.video_id == Video.id)
                        .where(Task.id == task_id)).first()
    if row is None or not row[0]:
        return None
    root = (runtime.settings.cache_dir / "videos").resolve()
    path = Path(row[0]).resolve()
    if not path.is_relative_to(root) or not path.is_file():
        return None
    return path, str(row[1])


async def video_file(request: Request, task_id: str) -> FileResponse:
    if not _TASK_ID.match(task_id):
        raise NotFound(f"no task with id {task_id[:64]!r}")
    runtime: Runtime = request.app.state.rt
    await asyncio.to_thread(runtime.store.get_task, task_id)  # NotFound for an unknown task
    found = await asyncio.to_thread(_cached_file, runtime, task_id)
    if found is None:
        raise NotFound("the video is not in the cache (not downloaded yet, or evicted)")
    path, container = found
    # FileResponse answers Range with 206 + Content-Range (one or many ranges) and 416 past the end.
    return FileResponse(path, media_type=VIDEO_TYPES.get(container, "application/octet-stream"),
                        headers={"Cache-Control": "private, max-age=300"})


@router.get("/api/v1/task/{task_id}/video", tags=["tasks"], response_class=FileResponse)
async def get_video(task_id: str, request: Request) -> Response:
    """The task's video from the cache, with HTTP range requests (404 once it is evicted)."""
    return await video_file(request, task_id)


def cookie_refusal(request: Request) -> Response | None:
    """With API_KEYS set, the `vtt_key` cookie must hold a valid key (elements cannot send headers)."""
    runtime: Runtime = request.app.state.rt
    ring = KeyRing(runtime.settings.api_keys)
    given = request.cookies.get(KEY_COOKIE)
    if not ring or (given and ring.match(given) is not None):
        return None
    return refusal(401, "unauthorized", "an API key is required: enter it in the console's key field", {})


@pages.get("/web/media/{task_id}/video")
async def media_video(task_id: str, request: Request) -> Response:
    return cookie_refusal(request) or await video_file(request, task_id)


@pages.get("/web/media/{task_id}/thumbs/{name}")
async def media_thumb(task_id: str, name: str, request: Request) -> Response:
    return cookie_refusal(request) or await get_thumbnail(task_id, name, request)


def register_routes(app: FastAPI) -> None:
    """Add the console pages, its static assets and the video route."""
    app.include_router(router)
    app.include_router(pages)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
