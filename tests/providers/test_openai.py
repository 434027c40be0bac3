"""The OpenAI-compatible provider: the real `openai` client against the loopback chat-completions
server (tests/openai_server.py), the pool on real Redis, accounts in SQL."""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from redis.asyncio import Redis
from sqlalchemy.orm import Session, sessionmaker

from app import keys
from app.accounts import AccountPool, account_id, load_accounts, save_accounts, validate_entries
from app.config import Settings
from app.db import make_engine, make_sessionmaker, migrate
from app.errors import PoolExhausted, ProviderBadOutput, QuotaExhausted
from app.media.frames import Frame, FramePlan, Frames
from app.media.probe import probe
from app.providers import get_provider
from app.providers.base import MediaInput
from app.providers.openai_compat import (
    OpenAIProvider,
    answer_schema,
    classify_status,
    jpeg_data_url,
    parse_duration_s,
    parse_topics,
    pick_frames,
    response_format,
)
from tests.conftest import make_settings
from tests.openai_server import OpenAIServer

KEYS = [f"sk-loopback-{i:02d}-{'x' * 24}" for i in range(4)]


# --- pure ------------------------------------------------------------------------------
@pytest.mark.parametrize("value,expected", [
    ("7", 7.0), ("1.5", 1.5), ("20ms", 0.02), ("6m0s", 360.0), ("1h2m", 3720.0), ("2s", 2.0),
    (None, None), ("soon", None), ("5 parsecs", None),
])
def test_parse_duration(value: str | None, expected: float | None) -> None:
    assert parse_duration_s(value) == (pytest.approx(expected) if expected is not None else None)


@pytest.mark.parametrize("code,headers,body,kind,delay", [
    (429, {"retry-after": "12"}, {"error": {"code": "rate_limit_exceeded", "message": "RPM"}}, "quota_minute", 12.0),
    (429, {"x-ratelimit-reset-requests": "6m0s"}, {"error": {"code": "rate_limit_exceeded"}}, "quota_minute", 360.0),
    (429, {}, {"error": {"code": "insufficient_quota", "message": "You exceeded your current quota"}}, "quota_day",
     None),
    (429, {}, {"error": {"code": "Throttling", "message": "Requests rate limit exceeded"}}, "quota", None),
    (429, {}, "not json", "quota", None),
    (401, {}, {"error": {"code": "invalid_api_key"}}, "auth", None),
    (403, {}, {}, "auth", None),
    (400, {}, {"error": {"code": "invalid_api_key", "message": "bad"}}, "auth", None),
    (400, {}, {"error": {"code": "invalid_request_error", "message": "image too large"}}, "rejected", None),
    (500, {}, {}, "server", None), (503, {}, {}, "server", None), (408, {}, {}, "server", None),
    (404, {}, {"error": {"message": "model not found"}}, "rejected", None),
])
def test_classify_status(code: int, headers: dict[str, str], body: Any, kind: str, delay: float | None) -> None:
    f = classify_status(code, headers, body)
    assert (f.kind, f.retry_delay_s) == (kind, delay) and str(code) in f.reason


def test_classify_status_scrubs_keys() -> None:
    f = classify_status(401, {}, {"error": {"message": f"Incorrect API key provided: {KEYS[0]}"}}, KEYS[0])
    assert KEYS[0] not in f.reason


@pytest.mark.parametrize("count,limit,expected", [
    (0, 8, []), (3, 8, [0, 1, 2]), (10, 1, [5]), (10, 2, [0, 9]), (9, 5, [0, 2, 4, 6, 8]), (5, 0, []),
])
def test_pick_frames(count: int, limit: int, expected: list[int]) -> None:
    assert pick_frames(count, limit) == expected


def test_response_format_and_schema_are_strict() -> None:
    fmt = response_format("json_schema", "video_tags", answer_schema())
    schema = fmt["json_schema"]["schema"]
    assert fmt["type"] == "json_schema" and fmt["json_schema"]["strict"] is True
    assert set(schema["required"]) == set(schema["properties"]) and schema["additionalProperties"] is False
    assert response_format("json_object", "x", {}) == {"type": "json_object"}


def test_jpeg_data_url_is_a_jpeg() -> None:
    url = jpeg_data_url(np.zeros((8, 8, 3), dtype=np.uint8))
    assert url.startswith("data:image/jpeg;base64,")
    assert base64.b64decode(url.split(",", 1)[1])[:3] == b"\xff\xd8\xff"


@pytest.mark.parametrize("text,ok", [
    ('{"topics": [{"cluster": 0, "name": "cooking", "summary": "food"}]}', True),
    ('```json\n{"topics": []}\n```', True), ("{not json", False), ('{"topics": [{"name": "x"}]}', False),
])
def test_parse_topics(text: str, ok: bool) -> None:
    if ok:
        assert isinstance(parse_topics(text), list)
    else:
        with pytest.raises(ValueError):
            parse_topics(text)


# --- against the loopback server -----------------------------------------------------------
@pytest.fixture
async def server() -> AsyncIterator[OpenAIServer]:
    s = OpenAIServer()
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
    rng = np.random.default_rng(0)
    frames = [Frame(i, 0.5 + i, rng.integers(0, 255, (36, 64, 3), dtype=np.uint8)) for i in range(12)]
    return MediaInput(path=path, probe=info, frames=Frames(FramePlan(tuple(f.time_s for f in frames), 64, 36), frames),
                      dimensions="all", windows=[])


class Env:
    def __init__(self, server: OpenAIServer, sessions: sessionmaker[Session], redis_url: str, tmp_path: Path) -> None:
        self.server, self.sessions, self.redis_url, self.tmp_path = server, sessions, redis_url, tmp_path
        self.providers: list[OpenAIProvider] = []

    async def accounts(self, *specs: tuple[str, int, int]) -> None:
        entries = [{"api_key": k, "minute_limit": rpm, "daily_limit": rpd, "username": "u", "password": "p",
                    "phone": "1", "email": "u@example.com"} for k, rpm, rpd in specs]
        good, problems = validate_entries(entries)
        assert not problems
        report = save_accounts(self.sessions, [s for _i, s in good])
        redis = Redis.from_url(self.redis_url)
        await AccountPool(redis).put(report.records)
        await redis.aclose()
        for k, rpm, _rpd in specs:
            self.server.add_key(k, rpm=rpm)

    def settings(self, **over: Any) -> Settings:
        values: dict[str, Any] = {"tagger": "openai", "database_url": f"sqlite:///{self.tmp_path / 'acc.db'}",
                                  "redis_url": self.redis_url, "openai_base_url": self.server.base_url,
                                  "openai_model": "qwen-vl-max", "openai_pool_wait_s": 5.0, "openai_timeout_s": 10.0}
        values.update(over)
        return make_settings(self.tmp_path, **values)

    def provider(self, **over: Any) -> OpenAIProvider:
        p = OpenAIProvider(self.settings(**over), sessions=self.sessions)
        self.providers.append(p)
        return p


@pytest.fixture
async def env(server: OpenAIServer, sessions: sessionmaker[Session], redis_url: str,
              tmp_path: Path) -> AsyncIterator[Env]:
    e = Env(server, sessions, redis_url, tmp_path)
    yield e
    for p in e.providers:
        await p.close()


def progress(_stage: str, _fraction: float) -> None:
    return None


async def test_registry_builds_the_openai_provider(env: Env) -> None:
    provider = get_provider("openai", env.settings())
    assert isinstance(provider, OpenAIProvider) and provider.name == "openai"
    await provider.close()


async def test_frames_go_as_images_and_tags_come_back(env: Env, media: MediaInput,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    await env.accounts((KEYS[0], 10, 100))
    out = await env.provider(openai_max_images=5).analyse(media, progress)
    req = env.server.log[0]
    assert (req["images"], req["data_urls"], req["format"], req["model"]) == (5, True, "json_schema", "qwen-vl-max")
    assert {s.source for s in out.sightings} == {"openai"}
    assert sorted({s.name for s in out.sightings}) == ["meadow", "rabbit"]
    rabbit = next(s for s in out.sightings if s.name == "rabbit")
    assert (rabbit.start_s, rabbit.end_s, rabbit.confidence) == (0.0, 1.0, 0.9)
    assert out.insights["gemini"]["provider"] == "openai" and out.insights["gemini"]["description"]
    assert out.usage["images"] == 5 and out.usage["prompt_tokens"] == 100 + 85 * 5 and out.usage["requests"] == 1
    assert out.usage["accounts"] == [account_id(KEYS[0])]
    assert KEYS[0] not in caplog.text


async def test_json_object_mode_for_servers_without_structured_output(env: Env, media: MediaInput) -> None:
    await env.accounts((KEYS[0], 10, 100))
    await env.provider(openai_response_format="json_object").analyse(media, progress)
    assert env.server.log[0]["format"] == "json_object"


async def test_a_429_cools_the_key_down_and_fails_over(env: Env, media: MediaInput, redis: Redis) -> None:
    await env.accounts((KEYS[0], 10, 100), (KEYS[1], 5, 100))  # A first: more capacity left
    env.server.script(KEYS[0], "429:30")
    t0 = await redis.time()
    out = await env.provider().analyse(media, progress)
    assert [(e["key"], e["status"]) for e in env.server.log] == [(KEYS[0], 429), (KEYS[1], 200)]
    assert out.usage["accounts"] == [account_id(KEYS[1])]
    until = float(await redis.hget(keys.account_info(account_id(KEYS[0])), "cooldown_until") or 0)
    assert 28 < until - (t0[0] + t0[1] / 1e6) < 32  # Retry-After honoured
    await env.provider().analyse(media, progress)
    assert [e["key"] for e in env.server.log][2:] == [KEYS[1]]  # A is left alone while it cools down


async def test_per_minute_limit_is_never_exceeded(env: Env, media: MediaInput) -> None:
    # The seed's 15-per-minute account, shrunk: 2/min and 1/min, five videos at once.
    await env.accounts((KEYS[0], 2, 100), (KEYS[1], 1, 100))
    providers = [env.provider(openai_pool_wait_s=1.0) for _ in range(2)]
    results = await asyncio.gather(*(providers[i % 2].analyse(media, progress) for i in range(5)),
                                   return_exceptions=True)
    done = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, BaseException)]
    assert len(done) == 3 and env.server.violations == 0
    assert all(isinstance(r, PoolExhausted) and r.retryable and (r.retry_after or 0) > 50 for r in refused)


async def test_the_server_does_count_violations(env: Env) -> None:
    """The control for the test above: requests past the limit get a 429 the provider understands."""
    import openai

    from app.providers.openai_compat import classify_exception

    await env.accounts((KEYS[0], 1, 100))
    client = openai.AsyncOpenAI(api_key=KEYS[0], base_url=env.server.base_url, max_retries=0)
    await client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.RateLimitError) as info:
        await client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
    await client.close()
    f = classify_exception(info.value)
    assert f.kind == "quota_minute" and f.retry_delay_s is not None and 55 < f.retry_delay_s <= 60
    assert env.server.violations == 1


async def test_refused_key_is_deactivated_in_redis_and_sql(env: Env, media: MediaInput, redis: Redis) -> None:
    await env.accounts((KEYS[0], 10, 100), (KEYS[1], 5, 100))
    env.server.script(KEYS[0], "401")
    await env.provider().analyse(media, progress)
    assert await redis.hget(keys.account_info(account_id(KEYS[0])), "status") == b"inactive"
    assert {r.id: r.status for r in load_accounts(env.sessions)}[account_id(KEYS[0])] == "inactive"


async def test_daily_quota_on_every_try_gives_quota_exhausted(env: Env, media: MediaInput) -> None:
    await env.accounts((KEYS[0], 10, 100))
    env.server.script(KEYS[0], "429day")
    with pytest.raises((QuotaExhausted, PoolExhausted)) as info:
        await env.provider(openai_pool_wait_s=0.5).analyse(media, progress)
    assert info.value.retryable


async def test_malformed_output_gets_one_repair(env: Env, media: MediaInput) -> None:
    await env.accounts((KEYS[0], 10, 100))
    env.server.script(KEYS[0], "malformed")
    out = await env.provider().analyse(media, progress)
    assert out.usage["repaired"] is True and out.usage["requests"] == 2
    env.server.script(KEYS[0], "malformed", "malformed")
    with pytest.raises(ProviderBadOutput):
        await env.provider().analyse(media, progress)


async def test_name_topics_through_the_pool(env: Env) -> None:
    await env.accounts((KEYS[0], 10, 100))
    names = await env.provider().name_topics([{"cluster": 0, "terms": ["rabbit"], "samples": ["a rabbit"]}])
    assert names[0].name == "theme0" and env.server.log[0]["format"] == "json_schema"
