"""Client API keys and the per-key rate limit, on a real API over HTTP with real Redis and MariaDB."""

from __future__ import annotations

import asyncio
import hashlib
import io
import logging
import time
from pathlib import Path

import pytest
import redis as redis_sync

from app import keys
from app.api.auth import WINDOW_S as WINDOW
from app.api.auth import KeyRing, key_id, presented_key, rate_decision, window_of
from tests.conftest import MYSQL_URL, make_settings
from tests.e2e.harness import Service, running_service

KEY = "client-one-0123456789abcdef"
OTHER = "client-two-0123456789abcdef"
HASHED = "client-three-hashed-key-0001"
CREATE = {"url": "https://example.com/v.mp4", "platform": "rpa"}


def test_keyring_matches_plain_and_hashed_entries() -> None:
    ring = KeyRing([KEY, "sha256:" + hashlib.sha256(HASHED.encode()).hexdigest()])
    assert ring.match(KEY) == key_id(hashlib.sha256(KEY.encode()).digest())
    assert ring.match(HASHED) == hashlib.sha256(HASHED.encode()).hexdigest()[:12]
    for wrong in (OTHER, KEY[:-1], KEY + "x", "", "sha256:" + hashlib.sha256(HASHED.encode()).hexdigest()):
        assert ring.match(wrong) is None
    assert not KeyRing([]) and ring


@pytest.mark.parametrize("headers,expected", [
    ([(b"x-api-key", b"abc")], "abc"),
    ([(b"authorization", b"Bearer abc")], "abc"),
    ([(b"Authorization", b"bearer   abc ")], "abc"),
    ([(b"authorization", b"Basic abc")], None),
    ([(b"authorization", b"Bearer ")], None),
    ([(b"x-api-key", b"one"), (b"authorization", b"Bearer two")], "one"),
    ([], None),
])
def test_presented_key(headers: list[tuple[bytes, bytes]], expected: str | None) -> None:
    assert presented_key(headers) == expected


@pytest.mark.parametrize("count,limit,now,allowed,remaining,retry", [
    (1, 3, 120.0, True, 2, 60),
    (3, 3, 150.5, True, 0, 30),      # the last allowed one
    (4, 3, 150.5, False, 0, 30),
    (4, 3, 179.9, False, 0, 1),      # never less than 1 s
    (10, 3, 121.0, False, 0, 59),
])
def test_rate_decision(count: int, limit: int, now: float, allowed: bool, remaining: int, retry: int) -> None:
    d = rate_decision(count, limit, now)
    assert (d.allowed, d.remaining, d.retry_after_s) == (allowed, remaining, retry)


@pytest.fixture
async def api(tmp_path: Path, redis_url: str, mysql_store):  # type: ignore[no-untyped-def]
    settings = make_settings(tmp_path, database_url=MYSQL_URL, redis_url=redis_url,
                             api_keys=f"{KEY}, sha256:{hashlib.sha256(HASHED.encode()).hexdigest()}",
                             api_rate_limit=5)
    async with running_service(settings, consumers=0) as svc:
        yield svc


async def test_api_v1_needs_a_key(api: Service) -> None:
    for method, path in [("POST", "/api/v1/task/create"), ("GET", "/api/v1/tasks"),
                         ("GET", "/api/v1/task/" + "0" * 32), ("POST", "/api/v1/task/upload"),
                         ("GET", "/api/v1/nope")]:
        r = await api.client.request(method, path, json=CREATE if method == "POST" else None)
        assert r.status_code == 401, path
        assert r.json() == {"code": 401, "message": r.json()["message"], "task_id": None,
                            "data": {"error": {"code": "unauthorized", "message": r.json()["message"]}}}
        assert "X-API-Key" in r.json()["message"] and r.headers["www-authenticate"].startswith("Bearer")
    r = await api.client.get("/api/v1/tasks", headers={"X-API-Key": OTHER})
    assert r.status_code == 401 and r.json()["message"] == "the API key is not valid" and OTHER not in r.text


async def test_a_valid_key_works_in_either_header(api: Service) -> None:
    r = await api.client.post("/api/v1/task/create", json=CREATE, headers={"X-API-Key": KEY})
    assert r.status_code == 200 and r.json()["data"]["status"] == "pending"
    r = await api.client.get(f"/api/v1/task/{r.json()['task_id']}", headers={"Authorization": f"Bearer {HASHED}"})
    assert r.status_code == 200 and r.json()["data"]["status"] == "pending"
    assert r.headers["x-ratelimit-limit"] == "5"


async def test_ops_routes_stay_open(api: Service) -> None:
    for path in ("/healthz", "/readyz", "/metrics", "/openapi.json"):
        assert (await api.client.get(path)).status_code == 200, path


async def test_rate_limit_per_key_with_retry_after(api: Service) -> None:
    if WINDOW - time.time() % WINDOW < 3:  # start in a fresh one-minute window: the 7 requests share it
        await asyncio.sleep(WINDOW - time.time() % WINDOW + 0.05)
    replies = [await api.client.get("/api/v1/tasks", headers={"X-API-Key": KEY}) for _ in range(7)]
    assert [r.status_code for r in replies] == [200] * 5 + [429] * 2
    assert [r.headers["x-ratelimit-remaining"] for r in replies] == ["4", "3", "2", "1", "0", "0", "0"]
    body, retry = replies[-1].json(), int(replies[-1].headers["retry-after"])
    assert body["code"] == 429 and body["task_id"] is None and body["data"]["error"]["code"] == "rate_limited"
    assert 1 <= retry <= WINDOW and body["data"]["error"]["retry_after"] == retry
    # the other key has its own budget
    assert (await api.client.get("/api/v1/tasks", headers={"X-API-Key": HASHED})).status_code == 200
    # the count lives in Redis under the key's id, never the key, and expires
    client = redis_sync.Redis.from_url(api.settings.redis_url or "")
    names = [n.decode() for n in client.scan_iter(match=keys.API_RATE_PREFIX + "*")]
    kid = hashlib.sha256(KEY.encode()).hexdigest()[:12]
    assert sorted(n.split(":")[1] for n in names) == sorted([kid, hashlib.sha256(HASHED.encode()).hexdigest()[:12]])
    assert int(client.get(keys.api_rate(kid, window_of(time.time()))) or 0) == 7
    assert all(0 < client.ttl(n) <= WINDOW + 5 for n in names)


async def test_over_the_limit_is_refused_deterministically(api: Service) -> None:
    # Fill this window's counter directly, then one request must be refused with the window's Retry-After.
    kid = hashlib.sha256(KEY.encode()).hexdigest()[:12]
    client = redis_sync.Redis.from_url(api.settings.redis_url or "")
    now = time.time()
    for w in (window_of(now), window_of(now) + 1):  # a boundary crossed mid-test is covered too
        client.set(keys.api_rate(kid, w), 5, ex=120)
    r = await api.client.post("/api/v1/task/create", json=CREATE, headers={"X-API-Key": KEY})
    assert r.status_code == 429
    assert r.json()["data"]["error"]["code"] == "rate_limited" and 1 <= int(r.headers["retry-after"]) <= 60
    assert (await api.client.get("/api/v1/tasks", headers={"X-API-Key": HASHED})).json()["data"]["total"] == 0


async def test_keys_never_reach_the_logs(api: Service) -> None:
    buf = io.StringIO()
    handler = logging.StreamHandler(buf)
    root = logging.getLogger()
    root.addHandler(handler)
    old = root.level
    root.setLevel(logging.DEBUG)
    try:
        await api.client.get("/api/v1/tasks", headers={"X-API-Key": OTHER})
        await api.client.get("/api/v1/tasks")
        await api.client.get("/api/v1/tasks", headers={"Authorization": f"Bearer {KEY}"})
    finally:
        root.removeHandler(handler)
        root.setLevel(old)
    text = buf.getvalue()
    assert "unknown API key" in text and "no API key" in text  # refusals are logged ...
    assert OTHER not in text and KEY not in text                # ... without the key


async def test_open_when_no_keys_are_set(tmp_path: Path, redis_url: str, mysql_store) -> None:  # type: ignore[no-untyped-def]
    settings = make_settings(tmp_path, database_url=MYSQL_URL, redis_url=redis_url)
    async with running_service(settings, consumers=0) as svc:
        assert (await svc.client.get("/api/v1/tasks")).status_code == 200
