"""GET /api/v1/search: videos and moments by words, tags, platform, user and date."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.responses import JSONResponse

from app.api.schemas import Envelope
from app.search.documents import make_query
from app.search.searcher import Searcher

router = APIRouter()


def _ok(data: dict[str, Any]) -> JSONResponse:
    return JSONResponse(status_code=200, content={"code": 200, "message": "success", "task_id": None, "data": data})


@router.get("/api/v1/search", response_model=Envelope, tags=["search"])
async def search(request: Request,
                 q: str | None = Query(default=None, max_length=500, description="words said or shown, tag names"),
                 tags: str | None = Query(default=None, max_length=1000, description="comma-separated; all must match"),
                 platform: str | None = Query(default=None, max_length=64),
                 uid: int | None = Query(default=None, ge=0),
                 env: str | None = Query(default=None, max_length=64),
                 from_: str | None = Query(default=None, alias="from", max_length=40,
                                           description="created at or after (ISO 8601 date or date-time, UTC)"),
                 to: str | None = Query(default=None, max_length=40,
                                        description="created before (a bare date includes that day)"),
                 limit: int = Query(default=20, ge=1, le=100),
                 cursor: str | None = Query(default=None, max_length=2000, description="next_cursor of the last page"),
                 semantic: bool = Query(default=False, description="rank by MiniLM similarity and keywords (English)"),
                 ) -> JSONResponse:
    """Find videos and their matching moments; facets of top tags and platforms."""
    query = make_query(q=q, tags=tags, platform=platform, uid=uid, env=env, from_=from_, to=to, limit=limit,
                       cursor=cursor, semantic=semantic)
    searcher: Searcher = request.app.state.searcher
    page = await searcher.search(query)
    data = page.as_dict()
    data["semantic"] = query.semantic
    return _ok(data)


def register_routes(app: FastAPI) -> None:
    """Add the search route, and a Searcher on app.state for the app's lifetime (closed at shutdown)."""
    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(a: FastAPI) -> AsyncIterator[Any]:
        async with inner(a) as state:
            a.state.searcher = Searcher.from_settings(a.state.rt.settings)
            try:
                yield state
            finally:
                await a.state.searcher.aclose()

    app.router.lifespan_context = lifespan
    app.include_router(router)
