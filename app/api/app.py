"""The FastAPI application: envelope, error handlers and routes."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from app import __version__, metrics
from app.api.accounts import register_routes as register_account_routes
from app.api.auth import ClientAuth, metrics_allowed
from app.api.collections import register_routes as register_collection_routes
from app.api.envelope import envelope
from app.api.queue import register_routes as register_queue_routes
from app.api.results import register_routes as register_result_routes
from app.api.schemas import CreateTask, Envelope, SyncTag, TaskFields
from app.api.search import register_routes as register_search_routes
from app.api.upload import receive_upload
from app.errors import InvalidRequest, NotFound, Unavailable, VttError, http_status_for
from app.media.netguard import Policy, check_target, parse_url
from app.models import Task
from app.runtime import Runtime
from app.sources import UPLOAD_SCHEME, upload_path
from app.store import NewTask, new_task_id
from app.web.routes import register_routes as register_web_routes

log = logging.getLogger("api")
STATUSES = ("pending", "processing", "completed", "failed")




def _field_errors(exc: RequestValidationError | ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = [str(x) for x in err.get("loc", ()) if x not in ("body", "query", "path")]
        parts.append(f"{'.'.join(loc) or 'body'}: {err.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


def task_view(task: Task, result: dict[str, Any] | None) -> dict[str, Any]:
    def iso(v: Any) -> str | None:
        return v.isoformat() + "Z" if v is not None else None

    return {
        "task_id": task.id, "status": task.status, "url": task.url, "source": task.source,
        "platform": task.platform, "uid": task.uid, "env": task.env, "dimensions": task.dimensions,
        "progress": {"stage": task.stage, "fraction": round(task.progress or 0.0, 3)},
        "timings": task.timings or {}, "retry_count": task.retry_count,
        "error": {"code": task.error_code, "message": task.error_message} if task.status == "failed" else None,
        "last_error": {"code": task.error_code, "message": task.error_message}
        if task.status != "failed" and task.error_code else None,
        "created_at": iso(task.created_at), "started_at": iso(task.started_at), "finished_at": iso(task.finished_at),
        "result": result,
    }


def create_app(runtime_factory: Callable[[], Runtime], *, on_startup: Callable[[Runtime], Any] | None = None) -> FastAPI:
    """`runtime_factory` builds the shared resources at start-up (so tests can inject their own)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        rt = runtime_factory()
        app.state.rt = rt
        background = on_startup(rt) if on_startup else None
        try:
            yield
        finally:
            if background is not None:
                await background()
            await rt.aclose()
            rt.shutdown()

    app = FastAPI(title="Vision-to-tag", version=__version__, lifespan=lifespan,
                  description="Turns videos into tags and time-coded insights. Every reply is an envelope "
                              "`{code, message, task_id, data}`; errors carry a stable code in `data.error`.")

    def rt(request: Request) -> Runtime:
        runtime: Runtime = request.app.state.rt
        return runtime

    app.add_middleware(ClientAuth)  # API_KEYS and API_RATE_LIMIT on /api/v1 (app/api/auth.py)

    @app.exception_handler(VttError)
    async def _vtt_error(_req: Request, exc: VttError) -> JSONResponse:
        return envelope(exc.http_status, exc.message, data={"error": exc.as_dict()})

    @app.exception_handler(RequestValidationError)
    async def _validation(_req: Request, exc: RequestValidationError) -> JSONResponse:
        return envelope(400, _field_errors(exc), data={"error": {"code": "invalid_request", "message": _field_errors(exc)}})

    @app.exception_handler(StarletteHTTPException)
    async def _http(_req: Request, exc: StarletteHTTPException) -> JSONResponse:
        msg = str(exc.detail) if exc.detail else "error"
        return envelope(exc.status_code, msg, data={"error": {"code": "not_found" if exc.status_code == 404 else "http_error",
                                                              "message": msg}})

    @app.exception_handler(Exception)
    async def _unexpected(_req: Request, exc: Exception) -> JSONResponse:
        import redis.exceptions
        import sqlalchemy.exc

        if isinstance(exc, (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError,
                            redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)):
            log.warning("a backing service is unreachable: %s", type(exc).__name__)
            msg = "the database or the queue is unreachable; nothing was changed, try again"
            return envelope(503, msg, data={"error": {"code": "unavailable", "message": msg}})
        log.exception("unhandled error")
        return envelope(500, "internal error; it has been logged", data={"error": {"code": "internal_error",
                                                                                 "message": "internal error"}})

    async def submit(runtime: Runtime, new: NewTask) -> Task:
        task = await asyncio.to_thread(runtime.store.create_task, new)
        try:
            await runtime.queue().enqueue(task.id, {
                "url": task.url, "status": "pending", "retry_count": 0, "platform": task.platform,
                "created_at": f"{time.time():.3f}",
            })
        except Exception as exc:
            log.error("enqueue of %s failed: %s", task.id, exc)
            await asyncio.to_thread(runtime.store.mark_failed, task.id, "unavailable", "the queue was unreachable")
            metrics.task_finished("failed", "unavailable")
            raise Unavailable("the task queue is unreachable; the task was not accepted, try again") from None
        metrics.task_accepted(new.source)
        return task

    def check_url(runtime: Runtime, url: str) -> None:
        s = runtime.settings
        check_target(parse_url(url), Policy(s.allowed_hostnames, s.allowed_networks))

    @app.post("/api/v1/task/create", response_model=Envelope, tags=["tasks"])
    async def create_task(body: CreateTask, request: Request) -> JSONResponse:
        """Accept a video URL for tagging; returns the task id at once."""
        runtime = rt(request)
        check_url(runtime, body.url)
        task = await submit(runtime, NewTask(url=body.url, platform=body.platform, uid=body.uid, env=body.env,
                                             dimensions=body.dimensions))
        return envelope(200, "success", task.id, {"task_id": task.id, "status": task.status})

    @app.post("/api/v1/task/upload", response_model=Envelope, tags=["tasks"],
              openapi_extra={"requestBody": {"content": {"multipart/form-data": {"schema": {
                  "type": "object", "required": ["file", "platform"],
                  "properties": {"file": {"type": "string", "format": "binary"}, "platform": {"type": "string"},
                                 "uid": {"type": "integer"}, "dimensions": {"type": "string"},
                                 "env": {"type": "string"}}}}}}})
    async def upload_task(request: Request) -> JSONResponse:
        """Upload a video file (multipart field `file`, plus the create fields) for tagging."""
        runtime = rt(request)
        task_id = new_task_id()
        final = upload_path(runtime.settings, task_id)
        part = final.with_suffix(".part")
        up = await receive_upload(request, part, runtime.settings.max_video_bytes)
        try:
            fields = TaskFields.model_validate({k: v for k, v in up.fields.items() if v != ""})
        except ValidationError as exc:
            part.unlink(missing_ok=True)
            raise InvalidRequest(_field_errors(exc)) from None
        part.replace(final)
        try:
            task = await submit(runtime, NewTask(url=UPLOAD_SCHEME + task_id, source="upload", task_id=task_id,
                                                 platform=fields.platform, uid=fields.uid, env=fields.env,
                                                 dimensions=fields.dimensions))
        except BaseException:
            final.unlink(missing_ok=True)
            raise
        return envelope(200, "success", task.id, {"task_id": task.id, "status": task.status, "size": up.size,
                                                  "container": up.container, "filename": up.filename})

    @app.get("/api/v1/task/{task_id}", response_model=Envelope, tags=["tasks"])
    async def get_task(task_id: str, request: Request) -> JSONResponse:
        """Status, progress, timings, error and (when completed) the result of a task."""
        if not (len(task_id) == 32 and all(c in "0123456789abcdef" for c in task_id)):
            raise NotFound(f"no task with id {task_id[:64]!r}")
        store = rt(request).store
        task = await asyncio.to_thread(store.get_task, task_id)
        result = await asyncio.to_thread(store.get_result, task_id) if task.status == "completed" else None
        return envelope(200, "success", task.id, task_view(task, result))

    @app.get("/api/v1/tasks", response_model=Envelope, tags=["tasks"])
    async def list_tasks(request: Request, status: str | None = Query(default=None, pattern="^(pending|processing|completed|failed)$"),
                         platform: str | None = Query(default=None, max_length=64),
                         uid: int | None = Query(default=None, ge=0),
                         page: int = Query(default=1, ge=1, le=100000),
                         page_size: int = Query(default=20, ge=1, le=100)) -> JSONResponse:
        """List tasks, newest first, filtered by status, platform and uid."""
        store = rt(request).store
        tasks, total = await asyncio.to_thread(store.list_tasks, status=status, platform=platform, uid=uid,
                                               limit=page_size, offset=(page - 1) * page_size)
        return envelope(200, "success", None, {"total": total, "page": page, "page_size": page_size,
                                               "items": [task_view(t, None) for t in tasks]})

    @app.post("/api/v1/vision_to_tag/google", response_model=Envelope, tags=["tasks"])
    async def vision_to_tag(body: SyncTag, request: Request) -> JSONResponse:
        """Seed-compatible: tag a video URL and wait for the tags (202 with the task id if not done in time)."""
        runtime = rt(request)
        check_url(runtime, body.url)
        task = await submit(runtime, NewTask(url=body.url, platform="vision_to_tag"))
        deadline = time.monotonic() + runtime.settings.sync_wait_s
        queue = runtime.queue()
        while time.monotonic() < deadline:
            status = (await queue.info(task.id)).get("status")
            if status in ("completed", "failed"):
                break
            await asyncio.sleep(0.2)
        current = await asyncio.to_thread(runtime.store.get_task, task.id)
        if current.status == "completed":
            doc = await asyncio.to_thread(runtime.store.get_result, task.id) or {}
            return envelope(200, "成功", task.id, {"tags": [t["name"] for t in doc.get("tags", [])]})
        if current.status == "failed":
            code = current.error_code or "internal_error"
            return envelope(http_status_for(code), current.error_message or "failed", task.id, {"error": {"code": code,
                                                                                     "message": current.error_message}})
        return envelope(202, "accepted; not finished yet, poll /api/v1/task/{task_id}", task.id,
                        {"task_id": task.id, "status": current.status})

    @app.get("/healthz", tags=["ops"])
    async def healthz() -> dict[str, str]:
        """The process is alive."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["ops"])
    async def readyz(request: Request) -> JSONResponse:
        """The database and Redis are reachable."""
        runtime = rt(request)
        checks: dict[str, str] = {}
        try:
            await asyncio.to_thread(runtime.store.ping)
            checks["database"] = "ok"
        except Exception as exc:
            checks["database"] = f"error: {type(exc).__name__}"
        try:
            await asyncio.wait_for(runtime.redis().ping(), 2.0)
            checks["redis"] = "ok"
        except Exception as exc:
            checks["redis"] = f"error: {type(exc).__name__}"
        ok = all(v == "ok" for v in checks.values())
        return envelope(200 if ok else 503, "ready" if ok else "not ready", data={"checks": checks})

    @app.get("/metrics", tags=["ops"], response_class=Response)
    async def metrics_page(request: Request) -> Response:
        """Prometheus metrics of this process, plus queue and account-pool gauges read from Redis."""
        runtime = rt(request)
        if not metrics_allowed(runtime.settings, request.headers.get("authorization")):
            msg = "send the metrics token as Authorization: Bearer"
            return envelope(401, msg, data={"error": {"code": "unauthorized", "message": msg}})
        return Response(await metrics.render(runtime.redis()), media_type=metrics.CONTENT_TYPE)

    register_account_routes(app)
    register_search_routes(app)
    register_result_routes(app)
    register_queue_routes(app)
    register_web_routes(app)
    register_collection_routes(app)
    return app
