"""A loopback server that speaks the OpenAI chat-completions wire protocol, for the real `openai` client.

    POST /v1/chat/completions    Authorization: Bearer <key>; messages with text and image_url parts

Keys are registered with a requests-per-minute limit (sliding 60 s window, per key): a
request over it gets the real 429 (`rate_limit_exceeded`, Retry-After and
x-ratelimit-reset-requests headers) and is counted as a *violation*: a pool that works
never causes one. Per-key scripts queue one-shot actions for the next calls of a key:
ok | 401 | 429[:secs] | 429day | 500 | malformed. Every request is logged with its key,
model, number of images and response_format type.
"""

from __future__ import annotations

import json
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.loopback import serve

WINDOW_S = 60.0

GOOD_ANSWER: dict[str, Any] = {
    "tags": [{"name": "rabbit", "confidence": 0.9}, {"name": "meadow", "confidence": 0.7}],
    "description": "A big rabbit walks through a meadow.",
    "categories": ["animation"],
    "language": "none",
    "key_moments": [{"start_s": 0.0, "end_s": 1.0, "description": "the rabbit appears", "tags": ["rabbit"]}],
}


@dataclass
class Key:
    rpm: int
    sent: deque[float] = field(default_factory=deque)
    script: deque[str] = field(default_factory=deque)


class OpenAIServer:
    def __init__(self) -> None:
        self.keys: dict[str, Key] = {}
        self.log: list[dict[str, Any]] = []
        self.violations = 0
        self.answer: dict[str, Any] = GOOD_ANSWER
        self.port = 0
        self.runner: web.AppRunner | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def add_key(self, key: str, *, rpm: int = 1000) -> None:
        self.keys[key] = Key(rpm)

    def script(self, key: str, *actions: str) -> None:
        self.keys[key].script.extend(actions)

    async def start(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/chat/completions", self.completions)
        self.runner, self.port = await serve(app)

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

    @staticmethod
    def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> web.Response:
        body = {"error": {"message": message, "type": code, "param": None, "code": code}}
        return web.json_response(body, status=status, headers=headers)

    async def completions(self, request: web.Request) -> web.Response:
        auth = request.headers.get("Authorization", "")
        key = auth.removeprefix("Bearer ").strip()
        body = await request.json()
        parts = [p for m in body.get("messages", []) for p in (m["content"] if isinstance(m["content"], list) else [])]
        images = [p for p in parts if p.get("type") == "image_url"]
        entry = {"key": key, "model": body.get("model"), "images": len(images),
                 "format": (body.get("response_format") or {}).get("type"), "status": 200,
                 "data_urls": all(p["image_url"]["url"].startswith("data:image/jpeg;base64,") for p in images)}
        self.log.append(entry)
        state = self.keys.get(key)
        if state is None:
            entry["status"] = 401
            return self._error(401, "invalid_api_key", "Incorrect API key provided.")
        now = time.monotonic()
        while state.sent and state.sent[0] <= now - WINDOW_S:
            state.sent.popleft()
        action = state.script.popleft() if state.script else "ok"
        if len(state.sent) >= state.rpm:
            self.violations += 1
            action = f"429:{WINDOW_S - (now - state.sent[0]):.0f}"
        state.sent.append(now)
        if action.startswith("429") and action != "429day":
            secs = action.partition(":")[2] or "20"
            entry["status"] = 429
            return self._error(429, "rate_limit_exceeded", f"Rate limit reached for requests per min (RPM): "
                               f"Limit {state.rpm}.", headers={"Retry-After": secs,
                                                              "x-ratelimit-reset-requests": f"{secs}s"})
        if action == "429day":
            entry["status"] = 429
            return self._error(429, "insufficient_quota", "You exceeded your current quota.")
        if action == "401":
            entry["status"] = 401
            return self._error(401, "invalid_api_key", "Incorrect API key provided.")
        if action == "500":
            entry["status"] = 500
            return self._error(500, "server_error", "The server had an error.")
        if "topics" in json.dumps(body.get("response_format") or {}) or "topic name" in json.dumps(parts or
                                                                                                  body["messages"]):
            content = json.dumps({"topics": [{"cluster": i, "name": f"theme{i}", "summary": f"summary {i}"}
                                             for i in range(8)]})
        else:
            content = "{not json" if action == "malformed" else json.dumps(self.answer)
        return web.json_response({
            "id": f"chatcmpl-{uuid.uuid4().hex[:12]}", "object": "chat.completion", "created": int(time.time()),
            "model": body.get("model"),
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": content}}],
            "usage": {"prompt_tokens": 100 + 85 * len(images), "completion_tokens": 40,
                      "total_tokens": 140 + 85 * len(images)},
        })
