"""`GET /api/v1/accounts`: the Gemini account pool, keys masked."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from app.accounts import AccountPool
from app.api.envelope import envelope
from app.api.schemas import Envelope
from app.runtime import Runtime


def register_routes(app: FastAPI) -> None:
    @app.get("/api/v1/accounts", response_model=Envelope, tags=["accounts"])
    async def list_accounts(request: Request) -> JSONResponse:
        """The Gemini accounts: masked key, project, status, usage against limits, cooldown, last error; totals."""

        runtime: Runtime = request.app.state.rt
        snapshot = await AccountPool(runtime.redis()).snapshot()
        return envelope(200, "success", None, snapshot)
