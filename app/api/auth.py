"""Client API keys and a per-key request rate limit on every /api/v1 route.

    KeyRing(entries)                     the configured keys (API_KEYS), each held only as its sha256
    KeyRing.match(presented)             constant-time: the key's id, or None
    key_id(digest)                       12 hex digits of the key's sha256: names a key in Redis, logs
                                         and metrics; the key itself is never logged or stored
    rate_decision(count, limit, now, w)  pure: allowed, remaining and Retry-After for a fixed window
    ClientAuth                           ASGI middleware: 401 / 429 envelopes before any route runs

A client sends `X-API-Key: <key>` or `Authorization: Bearer <key>`. With API_KEYS empty
every route is open, as before. Always open: /healthz, /readyz, /docs, /openapi.json and
/metrics (which has its own METRICS_TOKEN). Rate limit: API_RATE_LIMIT requests per key per
one-minute window, counted in Redis (`api_rate:{key_id}:{window}`), so every API process
shares the count; over it, 429 with Retry-After (seconds to the next window). If Redis
cannot be read the request is let through (and logged): the limit protects the service,
it must not take it down.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from fastapi.responses import JSONResponse
from pydantic import SecretStr
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app import keys, metrics
from app.api.envelope import envelope

log = logging.getLogger("api.auth")

PROTECTED_PREFIX = "/api/v1"
WINDOW_S = 60


def key_id(digest: bytes) -> str:
    return digest.hex()[:12]


class KeyRing:
    """The accepted client keys, held as sha256 digests (a `sha256:<hex>` entry is one already)."""

    def __init__(self, entries: Iterable[SecretStr | str]) -> None:
        digests: list[bytes] = []
        for e in entries:
            raw = e.get_secret_value() if isinstance(e, SecretStr) else e
            if raw.startswith("sha256:"):
                digests.append(bytes.fromhex(raw[7:]))
            else:
                digests.append(hashlib.sha256(raw.encode()).digest())
        self._digests = tuple(digests)

    def __bool__(self) -> bool:
        return bool(self._digests)

    def match(self, presented: str) -> str | None:
        """The id of the key `presented` matches, or None. Every entry is compared, in constant time."""
        given = hashlib.sha256(presented.encode("utf-8", "surrogateescape")).digest()
        found: bytes | None = None
        for d in self._digests:
            if hmac.compare_digest(given, d):
                found = d
        return key_id(found) if found is not None else None


@dataclass(frozen=True)
class RateDecision:
    allowed: bool
    remaining: int
    retry_after_s: int  # seconds until the window resets (>= 1)


def window_of(now: float, window_s: int = WINDOW_S) -> int:
    return int(now // window_s)


def rate_decision(count: int, limit: int, now: float, window_s: int = WINDOW_S) -> RateDecision:
    """`count` requests (this one included) in the fixed window that holds `now`."""
    reset = (window_of(now, window_s) + 1) * window_s
    retry_after = max(1, math.ceil(reset - now))
    return RateDecision(count <= limit, max(0, limit - count), retry_after)


def presented_key(headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    """The key from `X-API-Key`, else from `Authorization: Bearer`; None when neither is there."""
    api_key = bearer = None
    for name, value in headers:
        n = name.lower()
        if n == b"x-api-key":
            api_key = value.decode("latin-1").strip()
        elif n == b"authorization":
            scheme, _, token = value.decode("latin-1").strip().partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                bearer = token.strip()
    return api_key or bearer


def refusal(status: int, code: str, message: str, headers: dict[str, str], **extra: Any) -> JSONResponse:
    """The project envelope for a refused request (sent by the middleware, before any route)."""
    response = envelope(status, message, data={"error": {"code": code, "message": message, **extra}})
    response.headers.update(headers)
    return response


class ClientAuth:
    """Pure ASGI middleware (uploads stream through untouched). Settings come from the app's runtime."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._ring: tuple[int, KeyRing] | None = None
        self._last_redis_warning = 0.0

    def ring(self, settings: Any) -> KeyRing:
        if self._ring is None or self._ring[0] != id(settings):
            self._ring = (id(settings), KeyRing(settings.api_keys))
        return self._ring[1]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if scope["type"] != "http" or not (path == PROTECTED_PREFIX or path.startswith(PROTECTED_PREFIX + "/")):
            await self.app(scope, receive, send)
            return
        runtime = getattr(scope["app"].state, "rt", None)
        if runtime is None:  # not started: nothing to check against yet
            await self.app(scope, receive, send)
            return
        ring = self.ring(runtime.settings)
        if not ring:
            await self.app(scope, receive, send)
            return
        presented = presented_key(scope.get("headers", ()))
        kid = ring.match(presented) if presented else None
        if kid is None:
            metrics.request_refused("unauthorized")
            client = scope.get("client") or ("?", 0)
            log.info("refused %s %s from %s: %s", scope.get("method"), path, client[0],
                     "no API key" if presented is None else "unknown API key")
            msg = ("an API key is required: send X-API-Key or Authorization: Bearer" if presented is None
                   else "the API key is not valid")
            await refusal(401, "unauthorized", msg, {"WWW-Authenticate": 'Bearer realm="vision-to-tag"'})(
                scope, receive, send)
            return
        limit = int(runtime.settings.api_rate_limit)
        extra_headers: dict[str, str] = {}
        if limit > 0:
            now = time.time()
            count = await self._count(runtime, kid, now)
            if count is not None:
                d = rate_decision(count, limit, now)
                extra_headers = {"X-RateLimit-Limit": str(limit), "X-RateLimit-Remaining": str(d.remaining)}
                if not d.allowed:
                    metrics.request_refused("rate_limited")
                    log.info("rate-limited key %s on %s %s (%d/%d per minute)", kid, scope.get("method"), path,
                             count, limit)
                    await refusal(
                        429, "rate_limited", f"more than {limit} requests a minute with this API key; "
                        f"retry in {d.retry_after_s} s", {"Retry-After": str(d.retry_after_s), **extra_headers},
                        retry_after=d.retry_after_s)(scope, receive, send)
                    return
        scope.setdefault("state", {})["client_key_id"] = kid
        if not extra_headers:
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = dict(message)
                message["headers"] = list(message.get("headers", [])) + [
                    (k.lower().encode(), v.encode()) for k, v in extra_headers.items()]
            await send(message)

        await self.app(scope, receive, send_with_headers)

    async def _count(self, runtime: Any, kid: str, now: float) -> int | None:
        """This request's number in its window; None when Redis cannot be reached (let it through)."""
        name = keys.api_rate(kid, window_of(now))
        try:
            async with runtime.redis().pipeline(transaction=True) as p:
                p.incr(name)
                p.expire(name, WINDOW_S + 5)
                count, _ = await p.execute()
            return int(count)
        except Exception as exc:
            if now - self._last_redis_warning > 60:
                self._last_redis_warning = now
                log.warning("rate limit not applied: Redis unreachable (%s)", type(exc).__name__)
            return None


def metrics_allowed(settings: Any, authorization: str | None) -> bool:
    """/metrics: open when METRICS_TOKEN is unset or empty, else `Authorization: Bearer <token>`."""
    token = settings.metrics_token.get_secret_value() if settings.metrics_token is not None else ""
    if not token:
        return True
    scheme, _, given = (authorization or "").strip().partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())
