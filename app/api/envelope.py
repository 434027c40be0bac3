"""The reply envelope every route uses: `{code, message, task_id, data}`."""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse


def envelope(code: int, message: str, task_id: str | None = None, data: dict[str, Any] | None = None) -> JSONResponse:
    return JSONResponse(status_code=code, content={"code": code, "message": message, "task_id": task_id,
                                                   "data": data or {}})
