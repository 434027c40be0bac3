"""A running service for end-to-end tests: real uvicorn on a spare port, real consumer(s)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import uvicorn

from app.api.app import create_app
from app.config import Settings
from app.runtime import Runtime, build_runtime
from consumer.worker import Worker
from tests.conftest import free_port


class Service:
    def __init__(self, settings: Settings, client: httpx.AsyncClient, runtime: Runtime, workers: list[Worker]) -> None:
        self.settings, self.client, self.runtime, self.workers = settings, client, runtime, workers

    async def submit(self, url: str, **fields: Any) -> str:
        r = await self.client.post("/api/v1/task/create", json={"url": url, "platform": "test", **fields})
        assert r.status_code == 200, r.text
        task_id: str = r.json()["task_id"]
        return task_id

    async def wait(self, task_id: str, timeout: float = 90.0) -> dict[str, Any]:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            r = await self.client.get(f"/api/v1/task/{task_id}")
            data: dict[str, Any] = r.json()["data"]
            if data["status"] in ("completed", "failed"):
                return data
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"task {task_id} still {data['status']} ({data['progress']})")
            await asyncio.sleep(0.1)


@contextlib.asynccontextmanager
async def running_service(settings: Settings, *, consumers: int = 1) -> AsyncIterator[Service]:
    port = free_port()
    app = create_app(lambda: build_runtime(settings))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on",
                                           timeout_graceful_shutdown=10))
    serving = asyncio.create_task(server.serve())
    while not server.started:
        if serving.done():
            serving.result()
        await asyncio.sleep(0.02)
    runtime = build_runtime(settings, start_embedded=False, run_migrations=False)
    workers = [Worker(runtime, heartbeat_s=0.5, upkeep_s=0.5) for _ in range(consumers)]
    jobs = [asyncio.create_task(w.run()) for w in workers]
    client = httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60)
    try:
        yield Service(settings, client, runtime, workers)
    finally:
        await client.aclose()
        for w in workers:
            w.stop()
        done, pending = await asyncio.wait(jobs, timeout=settings.shutdown_grace_s + 30) if jobs else (set(), set())
        if pending:  # a consumer that does not stop is a bug: show where everything is stuck
            import io

            buf = io.StringIO()
            for t in asyncio.all_tasks():
                t.print_stack(file=buf)
            raise AssertionError("consumer did not stop:\n" + buf.getvalue())
        await runtime.aclose()
        runtime.shutdown()
        server.should_exit = True
        await serving
