"""GET /api/v1/task/{id}/result (the versioned document, or subtitles) and the cached thumbnails."""

from __future__ import annotations

import asyncio
import re
from typing import Any, Literal

from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, Response

from app.analysis.subtitles import cues_from_document, to_srt, to_vtt
from app.api.schemas import Envelope
from app.errors import Conflict, NotFound
from app.runtime import Runtime

router = APIRouter()
_TASK_ID = re.compile(r"^[0-9a-f]{32}$")
_THUMB = re.compile(r"^(scene|face)_[0-9]{4}\.jpg$")
MEDIA_TYPES = {"srt": "application/x-subrip; charset=utf-8", "vtt": "text/vtt; charset=utf-8"}


async def _document(request: Request, task_id: str) -> dict[str, Any]:
    if not _TASK_ID.match(task_id):
        raise NotFound(f"no task with id {task_id[:64]!r}")
    runtime: Runtime = request.app.state.rt
    task = await asyncio.to_thread(runtime.store.get_task, task_id)
    if task.status != "completed":
        raise Conflict(f"the task is {task.status}; its result exists once it has completed")
    document = await asyncio.to_thread(runtime.store.get_result, task_id)
    if document is None:
        raise NotFound("the task completed but its result is missing")
    return document


def subtitle_source(document: dict[str, Any], source: str | None) -> str:
    """The asked source, else speech when there is any, else burned-in text (pure)."""
    if source is not None:
        return source
    return "speech" if cues_from_document(document, "speech") else "text"


@router.get("/api/v1/task/{task_id}/result", response_model=Envelope, tags=["tasks"],
            responses={200: {"content": {"application/x-subrip": {}, "text/vtt": {}}}})
async def get_result(task_id: str, request: Request,
                     format: Literal["json", "srt", "vtt"] = Query(default="json"),
                     source: Literal["speech", "text"] | None = Query(
                         default=None, description="subtitles from speech or burned-in text; default speech if any"),
                     ) -> Response:
    """The full result document (schema in app/pipeline.py), or its subtitles as SRT or WebVTT."""
    document = await _document(request, task_id)
    if format == "json":
        return JSONResponse(status_code=200, content={"code": 200, "message": "success", "task_id": task_id,
                                                      "data": document})
    chosen = subtitle_source(document, source)
    cues = cues_from_document(document, chosen)
    if not cues:
        section = document.get("speech" if chosen == "speech" else "subtitles") or {}
        why = section.get("reason") or (section.get("error") or {}).get("message") or "none were found"
        raise NotFound(f"no subtitles from {chosen}: {why}")
    body = to_srt(cues) if format == "srt" else to_vtt(cues)
    return PlainTextResponse(body, media_type=MEDIA_TYPES[format], headers={
        "Content-Disposition": f'inline; filename="{task_id}.{chosen}.{format}"'})


@router.get("/api/v1/task/{task_id}/thumbs/{name}", tags=["tasks"], response_class=FileResponse)
async def get_thumbnail(task_id: str, name: str, request: Request) -> Response:
    """A scene keyframe or face crop JPEG named in the task's result."""
    if not _THUMB.match(name):
        raise NotFound(f"no thumbnail named {name[:64]!r}")
    document = await _document(request, task_id)
    folder = ((document.get("scene_detection") or {}).get("thumbnails") or "")
    runtime: Runtime = request.app.state.rt
    root = runtime.settings.cache_dir.resolve()
    path = (root / folder / name).resolve()
    if not folder or not path.is_relative_to(root) or not path.is_file():
        raise NotFound("the thumbnail is not in the cache (evicted, or never made)")
    return FileResponse(path, media_type="image/jpeg")


def register_routes(app: FastAPI) -> None:
    app.include_router(router)
