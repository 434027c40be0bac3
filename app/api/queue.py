"""Operator routes: retry a failed task, cancel one, and see the queue."""

from __future__ import annotations

import asyncio
import time

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from app.api.envelope import envelope
from app.errors import NotFound
from app.runtime import Runtime


def _task_id(task_id: str) -> str:
    if not (len(task_id) == 32 and all(c in "0123456789abcdef" for c in task_id)):
        raise NotFound(f"no task with id {task_id[:64]!r}")
    return task_id


def register_routes(app: FastAPI) -> None:
    def rt(request: Request) -> Runtime:
        runtime: Runtime = request.app.state.rt
        return runtime

    @app.post("/api/v1/task/{task_id}/retry", tags=["operations"])
    async def retry_task(task_id: str, request: Request) -> JSONResponse:
        """Put a failed task back in the queue with a fresh retry budget (409 unless failed)."""
        runtime = rt(request)
        task = await asyncio.to_thread(runtime.store.reset_for_retry, _task_id(task_id))
        queue = runtime.queue()
        await queue.forget_failed(task.id)
        await queue.enqueue(task.id, {"url": task.url, "status": "pending", "retry_count": 0,
                                      "platform": task.platform, "created_at": f"{time.time():.3f}"})
        return envelope(200, "success", task.id, {"task_id": task.id, "status": "pending"})

    @app.post("/api/v1/task/{task_id}/cancel", tags=["operations"])
    async def cancel_task(task_id: str, request: Request) -> JSONResponse:
        """Cancel a pending or running task: it ends `failed` with code `cancelled` (409 if finished)."""
        runtime = rt(request)
        before = await asyncio.to_thread(runtime.store.cancel, _task_id(task_id))
        await runtime.queue().cancel(task_id)
        return envelope(200, "success", task_id, {"task_id": task_id, "status": "failed", "was": before,
                                                  "error": {"code": "cancelled", "message": "cancelled by an operator"}})

    @app.get("/api/v1/queue/stats", tags=["operations"])
    async def queue_stats(request: Request) -> JSONResponse:
        """Queued, delayed, in flight, dead letters, age of the oldest waiting task, live consumers."""
        runtime = rt(request)
        alive_within = max(30.0, runtime.settings.task_lease_s / 2)
        stats = await runtime.queue().stats(time.time(), alive_within)
        return envelope(200, "success", None, stats)
