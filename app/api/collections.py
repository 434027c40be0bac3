"""POST /api/v1/collections/topics: the themes of a set of analysed videos (app/topics.py)."""

from __future__ import annotations

import asyncio
import re
import threading
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from app.api.schemas import Envelope
from app.runtime import Runtime
from app.topics import collection_topics

router = APIRouter()
_TASK_ID = re.compile(r"^[0-9a-f]{32}$")
_embedder_lock = threading.Lock()


class TopicsRequest(BaseModel):
    task_ids: list[str] = Field(min_length=1, max_length=2000, description="completed tasks of the collection")


def _embedder(request: Request, runtime: Runtime) -> Any:
    """One MiniLM embedder per app, loaded on first use."""
    with _embedder_lock:
        emb = getattr(request.app.state, "topics_embedder", None)
        if emb is None:
            from app.search.embeddings import Embedder

            emb = request.app.state.topics_embedder = Embedder(runtime.settings.models_dir)
        return emb


def _documents(runtime: Runtime, task_ids: list[str]) -> tuple[dict[str, dict[str, Any]], list[str]]:
    found: dict[str, dict[str, Any]] = {}
    missing: list[str] = []
    for tid in dict.fromkeys(task_ids):
        doc = runtime.store.get_result(tid) if _TASK_ID.match(tid) else None
        if doc is None:
            missing.append(tid[:64])
        else:
            found[tid] = doc
    return found, missing


@router.post("/api/v1/collections/topics", response_model=Envelope, tags=["collections"])
async def topics(body: TopicsRequest, request: Request) -> JSONResponse:
    """Cluster the videos' tags, descriptions, transcripts and on-screen text into named topics."""
    runtime: Runtime = request.app.state.rt
    documents, missing = await asyncio.to_thread(_documents, runtime, body.task_ids)
    result = await collection_topics(documents, runtime.settings, _embedder(request, runtime))
    data = result.as_dict()
    data["videos"] = len(documents)
    data["missing"] = missing  # unknown ids and tasks without a result (not completed)
    return JSONResponse(status_code=200, content={"code": 200, "message": "success", "task_id": None, "data": data})


def register_routes(app: FastAPI) -> None:
    app.include_router(router)
