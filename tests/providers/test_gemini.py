"""The Gemini provider: the real google-genai SDK against the loopback Gemini server
(tests/gemini_server.py), the pool on real Redis, accounts in SQL."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from app import keys
from app.accounts import (
    AccountPool,
    CallFailure,
    account_id,
    load_accounts,
    quota_day,
    save_accounts,
    validate_entries,
)
from app.config import Settings
from app.db import make_engine, make_sessionmaker, migrate
from app.errors import PoolExhausted, ProviderBadOutput, ProviderRejected, QuotaExhausted
from app.media.frames import FramePlan, Frames
from app.media.probe import probe
from app.providers import get_provider
from app.providers.base import MediaInput
from app.providers.gemini import (
    GeminiAnswer,
    GeminiProvider,
    GeminiTag,
    KeyMoment,
    classify_api_error,
    mime_type,
    parse_answer,
    retry_delay_s,
    scrub,
    sightings_from,
)
from app.tags import Sighting
from tests.conftest import MYSQL_URL, MediaServer, make_settings
from tests.e2e.harness import running_service
from tests.gemini_server import GeminiServer, fingerprint

KEYS = [f"AIzaSyLOOPBACK{i:02d}-{'x' * 20}" for i in range(8)]


# --- pure ------------------------------------------------------------------------------
def quota_body(quota_id: str | None, delay: str | None) -> dict[str, Any]:
    details: list[dict[str, Any]] = []
    if quota_id:
        details.append({"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [{"quotaId": quota_id}]})
    if delay:
        details.append({"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": delay})
    return {"error": {"code": 429, "status": "RESOURCE_EXHAUSTED", "details": details}}


@pytest.mark.parametrize("code,status,message,body,kind,delay", [
    (429, "RESOURCE_EXHAUSTED", "quota", quota_body("GenerateRequestsPerMinutePerProjectPerModel-FreeTier", "47s"),
     "quota_minute", 47.0),
    (429, "RESOURCE_EXHAUSTED", "quota", quota_body("GenerateRequestsPerDayPerProjectPerModel-FreeTier", "3s"),
     "quota_day", 3.0),
    (429, "RESOURCE_EXHAUSTED", "quota", quota_body("GenerateContentInputTokensPerModelPerMinute", None),
     "quota_minute", None),
    (429, "RESOURCE_EXHAUSTED", "quota", quota_body(None, "1.5s"), "quota_minute", 1.5),
    (429, "RESOURCE_EXHAUSTED", "exhausted", {"error": {"code": 429}}, "quota", None),
    (429, None, None, "not json at all", "quota", None),
    (403, "PERMISSION_DENIED", "suspended", {}, "auth", None),
    (401, "UNAUTHENTICATED", "bad credentials", {}, "auth", None),
    (400, "INVALID_ARGUMENT", "API key not valid. Please pass a valid API key.", {}, "auth", None),
    (400, "INVALID_ARGUMENT", "bad", {"error": {"details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo",
                                                             "reason": "API_KEY_INVALID"}]}}, "auth", None),
    (400, "INVALID_ARGUMENT", "Request contains an invalid argument.", {}, "rejected", None),
    (404, "NOT_FOUND", "model not found", {}, "rejected", None),
    (408, None, "timeout", {}, "server", None),
    (500, "INTERNAL", "oops", {}, "server", None),
    (503, "UNAVAILABLE", "overloaded", {}, "server", None),
])
def test_classify_api_error(code: int, status: str | None, message: str | None, body: Any, kind: str,
                            delay: float | None) -> None:
    f = classify_api_error(code, status, message, body)
    assert (f.kind, f.retry_delay_s) == (kind, delay)
    assert f.reason.startswith(str(code))


@pytest.mark.parametrize("value,expected", [("47s", 47.0), ("1.5s", 1.5), ("0s", 0.0), ("47", None), (None, None),
                                            (12, None), ("s", None)])
def test_retry_delay(value: object, expected: float | None) -> None:
    assert retry_delay_s(value) == expected


def test_scrub_removes_keys_google_echoes() -> None:
    msg = f"Permission denied: Consumer 'api_key:{KEYS[0]}' has been suspended. Also AIzaSyOTHER1234567890abcdefgh."
    out = scrub(msg, KEYS[0])
    assert KEYS[0] not in out and "AIzaSyOTHER" not in out and "has been suspended" in out
    assert KEYS[1] not in classify_api_error(403, "PERMISSION_DENIED", f"key {KEYS[1]} denied", {}, KEYS[1]).reason


@pytest.mark.parametrize("reply,ok", [
    ('{"tags": [{"name": "cat"}], "description": "d"}', True),
    ('```json\n{"tags": [{"name": "cat", "confidence": 0.5}]}\n```', True),
    ('{"tags": [{"name": "cat", "confidence": 1.5}]}', False),      # confidence outside 0..1
    ('{"tags": [{"name": "cat"}], "key_moments": [{"start_s": 5, "end_s": 1}]}', False),
    ('{"description": "no tags"}', False),
    ('{"tags": [', False),
    ("", False),
    (None, False),
])
def test_parse_answer(reply: str | None, ok: bool) -> None:
    if ok:
        assert parse_answer(reply).tags[0].name == "cat"
    else:
        with pytest.raises(ValueError):
            parse_answer(reply)


def test_sightings_use_key_moments_else_the_whole_video() -> None:
    answer = GeminiAnswer(tags=[GeminiTag(name="Cat", confidence=0.9), GeminiTag(name="sky")],
                          key_moments=[KeyMoment(start_s=1, end_s=3, tags=["cat", "jump"]),
                                       KeyMoment(start_s=8, end_s=99, tags=["cat"])])
    got = sightings_from(answer, start_s=0.5, duration_s=10.0)
    assert got == [
        Sighting("Cat", 0.9, "gemini", 1.5, 3.5),
        Sighting("Cat", 0.9, "gemini", 8.5, 10.5),       # clamped to the video's end
        Sighting("sky", 0.8, "gemini", 0.5, 10.5),       # no moment: the whole video, default confidence
        Sighting("jump", 0.8, "gemini", 1.5, 3.5),       # named only in a moment
    ]


@pytest.mark.parametrize("container,mime", [("mov,mp4,m4a,3gp,3g2,mj2", "video/mp4"), ("matroska,webm", "video/webm"),
                                            ("avi", "video/avi"), ("flv", "video/x-flv"), ("mpegts", "video/mpeg"),
                                            ("weird", "video/mp4")])
def test_mime_type(container: str, mime: str) -> None:
    assert mime_type(container) == mime


# --- against the loopback server -------------------------------------------------------
@pytest.fixture
async def server() -> AsyncIterator[GeminiServer]:
    s = GeminiServer()
    await s.start()
    yield s
    await s.stop()


@pytest.fixture
def sessions(tmp_path: Path) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(f"sqlite:///{tmp_path / 'acc.db'}")
    migrate(engine)
    yield make_sessionmaker(engine)
    engine.dispose()


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
async def media(corpus: Path) -> MediaInput:
    path = corpus / "containers" / "bbb_clip.mp4"
    info = await probe(path, 20)
    return MediaInput(path=path, probe=info, frames=Frames(FramePlan((), 2, 2), []), dimensions="all", windows=[])


class Env:
    """Accounts registered on the server and imported into SQL and the Redis pool."""

    def __init__(self, server: GeminiServer, sessions: sessionmaker[Session], redis_url: str, tmp_path: Path) -> None:
        self.server, self.sessions, self.redis_url, self.tmp_path = server, sessions, redis_url, tmp_path
        self.providers: list[GeminiProvider] = []

    async def accounts(self, *specs: tuple[str, int, int, str | None]) -> None:
        entries = [{"api_key": k, "minute_limit": rpm, "daily_limit": rpd, "project": proj, "username": "u",
                    "password": "p", "phone": "1", "email": "u@example.com"} for k, rpm, rpd, proj in specs]
        good, problems = validate_entries(entries)
        assert not problems
        report = save_accounts(self.sessions, [s for _i, s in good])
        redis = Redis.from_url(self.redis_url)
        await AccountPool(redis).put(report.records)
        await redis.aclose()
        for k, rpm, rpd, proj in specs:
            self.server.add_key(k, rpm=rpm, rpd=rpd, project=proj)

    def settings(self, **over: Any) -> Settings:
        values: dict[str, Any] = {"tagger": "gemini", "database_url": f"sqlite:///{self.tmp_path / 'acc.db'}",
                                  "redis_url": self.redis_url, "gemini_base_url": self.server.base_url,
                                  "gemini_pool_wait_s": 5.0, "gemini_timeout_s": 10.0}
        values.update(over)
        return make_settings(self.tmp_path, **values)

    def provider(self, **over: Any) -> GeminiProvider:
        p = GeminiProvider(self.settings(**over), sessions=self.sessions)
        self.providers.append(p)
        return p


@pytest.fixture
async def env(server: GeminiServer, sessions: sessionmaker[Session], redis_url: str,
              tmp_path: Path) -> AsyncIterator[Env]:
    e = Env(server, sessions, redis_url, tmp_path)
    yield e
    for p in e.providers:
        await p.close()


async def cooldown(redis: Redis, acc: str) -> float:
    raw = await redis.hget(keys.account_info(acc), "cooldown_until")
    assert raw is not None
    return float(raw)


def progress(_stage: str, _fraction: float) -> None:
    return None


def statuses(server: GeminiServer) -> list[tuple[str, int]]:
    return [(e["key"], e["status"]) for e in server.log]


async def test_registry_builds_the_gemini_provider(env: Env) -> None:
    provider = get_provider("gemini", env.settings())
    assert isinstance(provider, GeminiProvider) and provider.name == "gemini"
    await provider.close()


async def test_inline_video_tags_and_usage(env: Env, media: MediaInput, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    await env.accounts((KEYS[0], 10, 100, None))
    out = await env.provider().analyse(media, progress)
    assert env.server.log[0]["inline_bytes"] == media.path.stat().st_size and env.server.uploads == 0
    assert {s.source for s in out.sightings} == {"gemini"}
    cat = [s for s in out.sightings if s.name == "cat"]
    assert [(s.start_s, s.end_s, s.confidence) for s in cat] == [(0.0, 1.5, 0.93), (1.5, 2.5, 0.93)]
    indoor = next(s for s in out.sightings if s.name == "indoor")
    assert indoor.start_s == media.probe.start_s and indoor.end_s == pytest.approx(media.probe.duration_s)
    assert out.usage["prompt_tokens"] == 1200 and out.usage["output_tokens"] == 85 and out.usage["requests"] == 1
    assert out.usage["accounts"] == [account_id(KEYS[0])] and out.usage["transport"] == "inline"
    assert out.usage["model"] == "gemini-2.0-flash" and env.server.log[0]["model"] == "gemini-2.0-flash"
    assert out.insights["gemini"]["language"] == "none" and len(out.insights["gemini"]["key_moments"]) == 2
    assert KEYS[0] not in caplog.text


async def test_files_api_keeps_one_account_per_upload(env: Env, media: MediaInput, redis: Redis) -> None:
    await env.accounts(*((k, 3, 100, None) for k in KEYS[:4]))
    providers = [env.provider(gemini_inline_max_mb=0.1) for _ in range(2)]
    outs = await asyncio.gather(*(providers[i % 2].analyse(media, progress) for i in range(8)))
    assert all(o.usage["transport"] == "files" and o.sightings for o in outs)
    assert env.server.uploads == 8 and len(env.server.deleted) == 8 and env.server.files == {}
    assert env.server.file_mismatches == 0  # upload, generate and delete always with the same key
    assert env.server.violations == 0
    # The pool spread the work: no key above its limit, all four used.
    assert sorted(env.server.served_by(k) for k in KEYS[:4]) == [2, 2, 2, 2]
    info = await redis.hgetall(keys.account_info(account_id(KEYS[0])))
    assert info[b"status"] == b"active"


async def test_concurrent_consumers_never_exceed_a_quota(env: Env, media: MediaInput) -> None:
    # A: 3/min. B and C: one project, 4/min together (B says 4, C says 5: the smaller applies).
    # D: 5/min but only 2 a day. Capacity now: 3 + 4 + 2 = 9 requests.
    await env.accounts((KEYS[0], 3, 100, None), (KEYS[1], 4, 100, "shared"), (KEYS[2], 5, 100, "shared"),
                       (KEYS[3], 5, 2, None))
    consumers = [env.provider(gemini_pool_wait_s=1.0) for _ in range(3)]
    results = await asyncio.gather(*(consumers[i % 3].analyse(media, progress) for i in range(15)),
                                   return_exceptions=True)
    done = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, BaseException)]
    assert len(done) == 9 and env.server.served() == 9
    assert env.server.violations == 0
    assert all(isinstance(r, PoolExhausted) and r.retryable and 55 < (r.retry_after or 0) <= 61 for r in refused)
    assert env.server.served_by(KEYS[0]) == 3 and env.server.served_by(KEYS[3]) == 2
    assert env.server.served_by(KEYS[1]) + env.server.served_by(KEYS[2]) == 4
    assert all(p.max_in_window <= p.rpm for p in env.server.projects.values())


async def test_the_server_does_count_violations(env: Env) -> None:
    """The control for the test above: requests sent past a quota are caught and counted."""
    from google import genai
    from google.genai import errors, types

    await env.accounts((KEYS[0], 2, 100, None))
    client = genai.Client(api_key=KEYS[0], http_options=types.HttpOptions(base_url=env.server.base_url))
    codes = []
    for _ in range(3):
        try:
            await client.aio.models.generate_content(model="gemini-2.0-flash", contents="hi")
            codes.append(200)
        except errors.ClientError as exc:
            codes.append(exc.code)
            f = classify_api_error(exc.code, exc.status, exc.message, exc.details)
            assert f.kind == "quota_minute" and f.retry_delay_s is not None and 55 < f.retry_delay_s <= 61
    await client.aio.aclose()
    assert codes == [200, 200, 429] and env.server.violations == 1


async def test_failover_on_403_deactivates_the_key(env: Env, media: MediaInput, redis: Redis,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    await env.accounts((KEYS[0], 10, 100, None), (KEYS[1], 5, 100, None))  # A first: more capacity left
    env.server.default(KEYS[0], "403")
    out = await env.provider().analyse(media, progress)
    assert statuses(env.server) == [(fingerprint(KEYS[0]), 403), (fingerprint(KEYS[1]), 200)]
    assert out.usage["accounts"] == [account_id(KEYS[1])]
    info = await redis.hgetall(keys.account_info(account_id(KEYS[0])))
    assert info[b"status"] == b"inactive" and b"PERMISSION_DENIED" in info[b"status_reason"]
    sql = {r.id: r for r in load_accounts(env.sessions)}[account_id(KEYS[0])]
    assert sql.status == "inactive" and "403" in (sql.status_reason or "")
    # Google echoed the key in its message; it is in no log, no Redis value, no SQL reason.
    assert KEYS[0] not in caplog.text
    assert all(KEYS[0] not in str(v) for k, v in info.items() if k != b"api_key")  # only where it is needed
    assert KEYS[0] not in (sql.status_reason or "")
    await env.provider().analyse(media, progress)
    assert env.server.keys[KEYS[0]].requests == 1  # never tried again


async def test_invalid_key_is_deactivated(env: Env, media: MediaInput, redis: Redis) -> None:
    await env.accounts((KEYS[0], 10, 100, None), (KEYS[1], 5, 100, None))
    env.server.script(KEYS[0], "400key")
    await env.provider().analyse(media, progress)
    assert await redis.hget(keys.account_info(account_id(KEYS[0])), "status") == b"inactive"


@pytest.mark.parametrize("action", ["500", "503", "slow:3"])
async def test_failover_on_5xx_and_timeouts(env: Env, media: MediaInput, redis: Redis, action: str) -> None:
    await env.accounts((KEYS[0], 10, 100, None), (KEYS[1], 5, 100, None))
    env.server.script(KEYS[0], action)
    before = time.time()
    out = await env.provider(gemini_timeout_s=1.0).analyse(media, progress)
    assert out.usage["accounts"] == [account_id(KEYS[1])] and out.usage["requests"] == 1
    info = await redis.hgetall(keys.account_info(account_id(KEYS[0])))
    assert info[b"status"] == b"active" and info[b"failures"] == b"1"
    assert float(info[b"cooldown_until"]) > before            # backed off, not deactivated
    assert (b"timeout" if action.startswith("slow") else action.encode()) in info[b"last_error"]
    assert env.server.violations == 0


async def test_quota_429s_cool_the_project_down(env: Env, media: MediaInput, redis: Redis) -> None:
    # Project p (A, B) has the most capacity, so it is tried first; then C (8/min), then D (3/min).
    await env.accounts((KEYS[0], 10, 100, "p"), (KEYS[1], 10, 100, "p"), (KEYS[2], 8, 100, None),
                       (KEYS[3], 3, 100, None))
    for k in KEYS[:2]:
        env.server.script(k, "429minute:30")
    now = time.time()
    out = await env.provider().analyse(media, progress)
    assert out.usage["accounts"] == [account_id(KEYS[2])]
    for k in KEYS[:2]:  # the whole project cools down for RetryInfo's 30 s
        assert await cooldown(redis, account_id(k)) == pytest.approx(
            now + 30, abs=2)
    env.server.script(KEYS[2], "429day")
    out = await env.provider().analyse(media, progress)
    assert out.usage["accounts"] == [account_id(KEYS[3])]
    parked = await cooldown(redis, account_id(KEYS[2]))
    assert parked == quota_day(time.time()).end  # until the next Pacific midnight
    env.server.script(KEYS[3], "429bare")
    with pytest.raises(PoolExhausted):
        await env.provider(gemini_pool_wait_s=0).analyse(media, progress)
    cool = await cooldown(redis, account_id(KEYS[3]))
    assert now + 0.9 < cool < time.time() + 2.1  # exponential backoff with jitter: 1-2 s at first
    assert env.server.violations == 0


async def test_empty_pool_waits_then_resumes(env: Env, media: MediaInput) -> None:
    await env.accounts((KEYS[0], 10, 100, None))
    env.server.script(KEYS[0], "429minute:2")
    stages: list[str] = []
    out = await env.provider().analyse(media, lambda s, f: stages.append(s))
    assert statuses(env.server) == [(fingerprint(KEYS[0]), 429), (fingerprint(KEYS[0]), 200)]
    assert out.usage["pool_wait_s"] > 1.5 and "waiting_for_account" in stages
    assert env.server.violations == 0


async def test_pool_exhaustion_goes_back_to_the_queue_with_a_delay(env: Env, media: MediaInput) -> None:
    await env.accounts((KEYS[0], 1, 100, None))
    provider = env.provider(gemini_pool_wait_s=1.0)
    await provider.analyse(media, progress)
    with pytest.raises(PoolExhausted) as err:
        await provider.analyse(media, progress)
    assert err.value.retryable and 55 < (err.value.retry_after or 0) <= 61
    assert env.server.served() == 1 and env.server.violations == 0


async def test_quota_429s_on_every_try_give_quota_exhausted(env: Env, media: MediaInput) -> None:
    await env.accounts((KEYS[0], 10, 100, None), (KEYS[1], 9, 100, None))
    for k in KEYS[:2]:
        env.server.default(k, "429minute:1")
    with pytest.raises((QuotaExhausted, PoolExhausted)) as err:
        await env.provider(gemini_max_attempts=2, gemini_pool_wait_s=0.5).analyse(media, progress)
    assert err.value.retryable and err.value.retry_after is not None


async def test_malformed_output_gets_one_repair(env: Env, media: MediaInput) -> None:
    await env.accounts((KEYS[0], 10, 100, None))
    env.server.script(KEYS[0], "malformed")
    out = await env.provider().analyse(media, progress)
    assert out.usage["repaired"] is True and out.usage["requests"] == 2 and out.usage["total_tokens"] == 2 * 1285
    assert any(s.name == "cat" for s in out.sightings)
    env.server.script(KEYS[0], "malformed", "notjson")
    with pytest.raises(ProviderBadOutput) as err:
        await env.provider().analyse(media, progress)
    assert err.value.retryable and "malformed twice" in err.value.message


async def test_a_refused_request_is_permanent_and_not_retried(env: Env, media: MediaInput, redis: Redis) -> None:
    await env.accounts((KEYS[0], 10, 100, None), (KEYS[1], 9, 100, None))
    env.server.script(KEYS[0], "400")
    with pytest.raises(ProviderRejected) as err:
        await env.provider().analyse(media, progress)
    assert not err.value.retryable and len(env.server.log) == 1
    assert await redis.hget(keys.account_info(account_id(KEYS[0])), "status") == b"active"


async def test_pool_is_restored_from_sql_after_redis_loss(env: Env, media: MediaInput, redis: Redis) -> None:
    await env.accounts((KEYS[0], 10, 100, None))
    await redis.flushdb()
    out = await env.provider().analyse(media, progress)
    assert out.usage["accounts"] == [account_id(KEYS[0])]
    assert await redis.sismember(keys.ACCOUNT_KEYS, account_id(KEYS[0]))


async def test_feedback_from_a_report_is_visible_to_other_consumers(env: Env, redis_url: str) -> None:
    """Two pools on two connections: one's 429 steers the other's next acquire."""
    await env.accounts((KEYS[0], 10, 100, None), (KEYS[1], 5, 100, None))
    r1, r2 = Redis.from_url(redis_url), Redis.from_url(redis_url)
    p1, p2 = AccountPool(r1), AccountPool(r2)
    lease = await p1.acquire_wait(max_wait_s=1)
    assert lease.account_id == account_id(KEYS[0])
    await p1.report(lease, CallFailure("quota_minute", "429", 30.0))
    assert (await p2.acquire_wait(max_wait_s=1)).account_id == account_id(KEYS[1])
    await r1.aclose()
    await r2.aclose()


# --- the real consumer path ------------------------------------------------------------
async def test_consumer_tags_with_gemini_and_requeues_when_the_pool_is_empty(
        tmp_path: Path, redis_url: str, mysql_engine: Any, server: GeminiServer, media_server: MediaServer) -> None:
    with mysql_engine.begin() as conn:
        for table in ("tags", "results", "tasks", "videos", "accounts"):
            conn.execute(text(f"DELETE FROM {table}"))
    sessions = make_sessionmaker(mysql_engine)
    good, _ = validate_entries([{"api_key": KEYS[5], "minute_limit": 1, "daily_limit": 50, "username": "u",
                                 "password": "p", "phone": "1", "email": "u@example.com"}])
    await asyncio.to_thread(save_accounts, sessions, [s for _i, s in good])  # SQL only: the consumer restores Redis
    server.add_key(KEYS[5], rpm=1, rpd=50)
    settings = make_settings(tmp_path, database_url=MYSQL_URL, redis_url=redis_url, tagger="gemini",
                             gemini_base_url=server.base_url, gemini_pool_wait_s=0.5, dedup_ttl_s=0)
    async with running_service(settings, consumers=1) as svc:
        first = await svc.submit(media_server.url("corpus/containers/bbb_clip.mp4"))
        data = await svc.wait(first)
        assert data["status"] == "completed", data["error"]
        doc = data["result"]
        assert doc["provider"] == "gemini" and doc["usage"]["total_tokens"] == 1285
        cat = next(t for t in doc["tags"] if t["name"] == "cat")
        assert cat["sources"] == ["gemini"] and cat["ranges"] == [[0.0, 2.5]]
        second = await svc.submit(media_server.url("corpus/containers/bbb_clip.webm"))
        deadline = asyncio.get_running_loop().time() + 30
        while True:
            task = (await svc.client.get(f"/api/v1/task/{second}")).json()["data"]
            if task["last_error"] is not None:
                break
            assert asyncio.get_running_loop().time() < deadline, task
            await asyncio.sleep(0.1)
        assert task["status"] == "pending" and task["last_error"]["code"] == "pool_exhausted"
        delayed = Redis.from_url(redis_url)
        due = await delayed.zscore(keys.TASK_QUEUE_DELAYED, second)
        await delayed.aclose()
        assert due is not None and due > time.time() + 50  # back in the queue, due when the key frees up
        accounts = (await svc.client.get("/api/v1/accounts")).json()["data"]
        assert accounts["totals"]["served_today"] == 1 and KEYS[5] not in str(accounts)
    assert server.violations == 0 and server.served() == 1
