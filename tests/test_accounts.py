"""The account pool: pure quota arithmetic, the acquire/feedback Lua scripts on real Redis,
SQL persistence on SQLite and MariaDB, and GET /api/v1/accounts."""

from __future__ import annotations

import asyncio
import datetime as dt
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
    AccountRecord,
    AccountSpec,
    Busy,
    CallFailure,
    Lease,
    QuotaDay,
    Verdict,
    account_id,
    backoff_s,
    decide,
    hash_password,
    load_accounts,
    mask_key,
    password_matches,
    project_group,
    quota_day,
    resolve_account,
    restore_pool,
    save_accounts,
    set_account_status,
    validate_entries,
)
from app.db import make_engine, make_sessionmaker, migrate
from app.errors import Conflict, PoolExhausted
from tests.conftest import MYSQL_URL, make_settings
from tests.e2e.harness import running_service

T0 = 1_717_225_200.0  # 2024-06-01 00:00:00 PDT (07:00 UTC)
KEY_A = "AIzaSyTEST-aaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
KEY_B = "AIzaSyTEST-bbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
KEY_C = "AIzaSyTEST-ccccccccccccccccccccccccccccc"


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> float:
    return dt.datetime(year, month, day, hour, minute, second, tzinfo=dt.UTC).timestamp()


# --- pure ------------------------------------------------------------------------------
@pytest.mark.parametrize("now,label,start,end", [
    # Pacific midnight is 07:00 UTC in summer (PDT) and 08:00 UTC in winter (PST).
    (utc(2024, 6, 1, 6, 59, 59), "2024-05-31", utc(2024, 5, 31, 7), utc(2024, 6, 1, 7)),
    (utc(2024, 6, 1, 7, 0, 0), "2024-06-01", utc(2024, 6, 1, 7), utc(2024, 6, 2, 7)),
    (utc(2024, 1, 15, 12), "2024-01-15", utc(2024, 1, 15, 8), utc(2024, 1, 16, 8)),
    # Spring forward: 10 March 2024 lasts 23 hours; fall back: 3 November 2024 lasts 25.
    (utc(2024, 3, 10, 12), "2024-03-10", utc(2024, 3, 10, 8), utc(2024, 3, 11, 7)),
    (utc(2024, 11, 3, 12), "2024-11-03", utc(2024, 11, 3, 7), utc(2024, 11, 4, 8)),
    # UTC's new year is still 31 December in California.
    (utc(2025, 1, 1, 3), "2024-12-31", utc(2024, 12, 31, 8), utc(2025, 1, 1, 8)),
])
def test_quota_day_resets_at_pacific_midnight(now: float, label: str, start: float, end: float) -> None:
    assert quota_day(now) == QuotaDay(label, start, end)


@pytest.mark.parametrize("failures,rand,expected", [
    (1, 0.0, 0.5), (1, 1.0, 1.0), (2, 0.0, 1.0), (3, 1.0, 4.0), (4, 0.5, 6.0),
    (20, 1.0, 60.0), (20, 0.0, 30.0),  # capped
    (0, 1.0, 1.0),
])
def test_backoff_is_exponential_with_equal_jitter(failures: int, rand: float, expected: float) -> None:
    assert backoff_s(failures, rand=rand) == pytest.approx(expected)


@pytest.mark.parametrize("failure,failures,expected", [
    (CallFailure("quota_minute", "r", 47.0), 0, Verdict("cooldown", "project", T0 + 47)),
    (CallFailure("quota_minute", "r", None), 0, Verdict("cooldown", "project", T0 + 60)),
    (CallFailure("quota_minute", "r", 0.0), 0, Verdict("cooldown", "project", T0 + 1)),
    (CallFailure("quota_day", "r", 30.0), 0, Verdict("cooldown", "project", quota_day(T0).end)),
    (CallFailure("quota", "r"), 0, Verdict("cooldown", "project", T0 + 1.5)),     # base 2: [1, 2]
    (CallFailure("quota", "r"), 2, Verdict("cooldown", "project", T0 + 6.0)),     # [4, 8]
    (CallFailure("auth", "r"), 0, Verdict("deactivate")),
    (CallFailure("server", "r"), 0, Verdict("cooldown", "account", T0 + 0.75)),   # base 1: [0.5, 1]
    (CallFailure("network", "r"), 3, Verdict("cooldown", "account", T0 + 6.0)),
    (CallFailure("rejected", "r"), 0, Verdict("count", retry_other=False)),
])
def test_decide(failure: CallFailure, failures: int, expected: Verdict) -> None:
    got = decide(failure, now=T0, failures=failures, rand=0.5)
    assert got.action == expected.action and got.scope == expected.scope
    assert got.until == pytest.approx(expected.until) and got.retry_other == expected.retry_other


def test_identity_and_masking() -> None:
    assert account_id(KEY_A) == account_id(KEY_A) != account_id(KEY_B)
    assert len(account_id(KEY_A)) == 12 and int(account_id(KEY_A), 16) >= 0
    assert mask_key(KEY_A) == "AIza…aaaa" and KEY_A not in mask_key(KEY_A)
    assert project_group(None) == "" and project_group("p1") == project_group("p1") != project_group("p2")
    stored = hash_password("s3cret")
    assert "s3cret" not in stored and password_matches("s3cret", stored) and not password_matches("other", stored)


def entry(key: str = KEY_A, **over: Any) -> dict[str, Any]:
    e: dict[str, Any] = {"api_key": key, "daily_limit": 100, "minute_limit": 10, "username": "u", "password": "pw",
                         "phone": "+1 555 0100", "email": "u@example.com"}
    e.update(over)
    return e


def test_validation_reports_every_problem_with_index_and_field() -> None:
    raw = [
        entry(),
        entry(KEY_B, minute_limit=0, email="nope"),
        {k: v for k, v in entry(KEY_C).items() if k != "password"},
        entry(KEY_A),                                   # the same key again
        "not an object",
        entry("short"),
        entry(KEY_C + "x", daily_limit="100"),          # a string is not a count
        entry(KEY_C + "y", project="", model="bad model"),
    ]
    good, problems = validate_entries(raw)
    assert [i for i, _ in good] == [0]
    found = {(p.index, p.field) for p in problems}
    assert found == {(1, "minute_limit"), (1, "email"), (2, "password"), (3, "api_key"), (4, ""), (5, "api_key"),
                     (6, "daily_limit"), (7, "project"), (7, "model")}
    assert any(p.index == 3 and "entry 0" in p.message for p in problems)
    assert all(KEY_A not in str(p) and "short" not in str(p) for p in problems)  # never the value
    assert validate_entries({"api_key": KEY_A})[1][0].index == -1


def test_spec_accepts_optional_project_and_model() -> None:
    spec = AccountSpec.model_validate(entry(project="proj-1", model="gemini-2.5-flash", extra_field="ignored"))
    assert spec.project == "proj-1" and spec.model == "gemini-2.5-flash" and spec.id == account_id(KEY_A)


def test_reprs_hide_secrets() -> None:
    spec = AccountSpec.model_validate(entry(password="hunter2"))
    lease = Lease(account_id(KEY_A), KEY_A, None, None, 0, T0)
    for shown in (repr(spec), str(spec), repr(rec(KEY_A)), repr(lease)):
        assert KEY_A not in shown and "hunter2" not in shown


# --- Redis -----------------------------------------------------------------------------
@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    yield client
    await client.aclose()


def rec(key: str, minute: int = 10, daily: int = 100, project: str | None = None, status: str = "active") -> AccountRecord:
    return AccountRecord(account_id(key), key, project, None, minute, daily, status)


async def cooldown(redis: Redis, acc: str) -> float:
    raw = await redis.hget(keys.account_info(acc), "cooldown_until")
    assert raw is not None
    return float(raw)


async def take(pool: AccountPool, now: float, **kw: Any) -> Lease:
    got = await pool.acquire(now=now, **kw)
    assert isinstance(got, Lease), got
    return got


async def test_picks_most_remaining_capacity_then_least_recently_used(redis: Redis) -> None:
    pool = AccountPool(redis, window_margin_s=0)
    await pool.put([rec(KEY_A, minute=5), rec(KEY_B, minute=3)])
    order = [(await take(pool, T0 + i * 0.01)).account_id for i in range(8)]
    a, b = account_id(KEY_A), account_id(KEY_B)
    # A has 5 left vs 3: A, A (4 vs 3), then A/B tie at 3 -> B is least recently used, ...
    assert order == [a, a, b, a, b, a, b, a]
    busy = await pool.acquire(now=T0 + 1)
    assert isinstance(busy, Busy) and busy.wait_s == pytest.approx(59.0)  # the first use ages out at T0 + 60


async def test_minute_window_slides(redis: Redis) -> None:
    pool = AccountPool(redis, window_margin_s=1.0)
    await pool.put([rec(KEY_A, minute=3)])
    for t in (0.0, 10.0, 20.0):
        await take(pool, T0 + t)
    busy = await pool.acquire(now=T0 + 30)
    assert isinstance(busy, Busy) and busy.wait_s == pytest.approx(31.0)  # 0 + 60 + 1 margin - 30
    assert isinstance(await pool.acquire(now=T0 + 60.9), Busy)
    await take(pool, T0 + 61.0)
    busy = await pool.acquire(now=T0 + 61.5)
    assert isinstance(busy, Busy) and busy.wait_s == pytest.approx(71.0 - 61.5)
    assert await redis.zcard(keys.account_window(account_id(KEY_A))) == 3
    assert 0 < await redis.ttl(keys.account_window(account_id(KEY_A))) <= 120


async def test_daily_limit_until_pacific_midnight(redis: Redis) -> None:
    pool = AccountPool(redis)
    await pool.put([rec(KEY_A, minute=100, daily=2)])
    now = T0 + 3600
    await take(pool, now)
    await take(pool, now + 1)
    busy = await pool.acquire(now=now + 2)
    day = quota_day(now)
    assert isinstance(busy, Busy) and busy.wait_s == pytest.approx(day.end - (now + 2))
    assert await redis.hget(keys.account_daily(account_id(KEY_A)), day.label) == b"2"
    assert 0 < await redis.ttl(keys.account_daily(account_id(KEY_A))) <= 2 * 86400
    await take(pool, day.end + 1)  # a new quota day
    assert await redis.hget(keys.account_daily(account_id(KEY_A)), quota_day(day.end + 1).label) == b"1"


async def test_keys_of_one_project_share_its_quota(redis: Redis) -> None:
    pool = AccountPool(redis, window_margin_s=0)
    # Two keys in project p (limits 4 and 3: the smaller applies) and one key of its own.
    await pool.put([rec(KEY_A, minute=4, project="p"), rec(KEY_B, minute=3, project="p"), rec(KEY_C, minute=2)])
    got = [(await take(pool, T0 + i * 0.01)).account_id for i in range(5)]
    assert isinstance(await pool.acquire(now=T0 + 1), Busy)
    per_project = sum(1 for g in got if g in (account_id(KEY_A), account_id(KEY_B)))
    assert per_project == 3 and got.count(account_id(KEY_C)) == 2
    assert await redis.zcard(keys.project_window(project_group("p"))) == 3


async def test_acquire_is_atomic_under_concurrency(redis_url: str) -> None:
    clients = [Redis.from_url(redis_url) for _ in range(8)]
    pools = [AccountPool(c, window_margin_s=0) for c in clients]
    await pools[0].put([rec(KEY_A, minute=7), rec(KEY_B, minute=5, daily=4), rec(KEY_C, minute=6, project="q")])
    results = await asyncio.gather(*(pools[i % 8].acquire() for i in range(80)))
    leases = [r for r in results if isinstance(r, Lease)]
    assert len(leases) == 7 + 4 + 6
    assert sum(1 for r in leases if r.account_id == account_id(KEY_B)) == 4
    for c in clients:
        await c.aclose()


async def test_peek_and_only(redis: Redis) -> None:
    pool = AccountPool(redis, window_margin_s=0)
    await pool.put([rec(KEY_A, minute=1), rec(KEY_B, minute=1)])
    peeked = await pool.acquire(now=T0, peek=True)
    assert isinstance(peeked, Lease)
    assert await redis.exists(keys.account_window(peeked.account_id)) == 0  # nothing recorded
    b = account_id(KEY_B)
    assert (await take(pool, T0, only=b)).account_id == b
    busy = await pool.acquire(now=T0 + 1, only=b)
    assert isinstance(busy, Busy) and busy.wait_s == pytest.approx(59.0)  # A is free, but only B was asked for


async def test_touch_redates_a_reservation_only_while_it_is_in_the_window(redis: Redis) -> None:
    pool = AccountPool(redis, window_margin_s=0)
    await pool.put([rec(KEY_A, minute=2, project="p")])
    a, group = account_id(KEY_A), project_group("p")
    reserved = await take(pool, T0)                     # e.g. before a 30 s upload
    touched = await pool.touch(reserved, now=T0 + 30)
    assert touched is not None and touched.granted_at == T0 + 30 and touched.token == reserved.token
    for key in (keys.account_window(a), keys.project_window(group)):
        assert await redis.zscore(key, reserved.token) == T0 + 30
    await take(pool, T0 + 31)
    busy = await pool.acquire(now=T0 + 32)
    assert isinstance(busy, Busy) and busy.wait_s == pytest.approx(58.0)  # the re-dated entry frees at T0 + 90
    late = await take(pool, T0 + 91)
    assert await pool.touch(late, now=T0 + 91 + 60.5) is None           # aged out: acquire afresh
    fresh = await take(pool, T0 + 200)
    await pool.report(fresh, CallFailure("quota_minute", "429", 10.0), now=T0 + 200)
    assert await pool.touch(fresh, now=T0 + 201) is None                # cooling down
    assert await pool.touch(await pool.acquire(now=T0 + 300, peek=True), now=T0 + 300) is None  # type: ignore[arg-type]


async def test_feedback_cooldowns_deactivation_and_status(redis: Redis) -> None:
    deactivated: list[tuple[str, str]] = []
    pool = AccountPool(redis, window_margin_s=0, on_deactivate=lambda i, r: deactivated.append((i, r)))
    await pool.put([rec(KEY_A, project="p"), rec(KEY_B, project="p"), rec(KEY_C)])
    a, b, c = (account_id(k) for k in (KEY_A, KEY_B, KEY_C))
    lease_a = await take(pool, T0, only=a)
    # A per-minute 429 on A cools the whole project (B too), for RetryInfo's delay.
    v = await pool.report(lease_a, CallFailure("quota_minute", "429 RESOURCE_EXHAUSTED", 20.0), now=T0)
    assert v is not None and v.scope == "project"
    for acc in (a, b):
        assert await cooldown(redis, acc) == pytest.approx(T0 + 20)
    assert await redis.hget(keys.account_info(c), "cooldown_until") is None
    assert (await take(pool, T0 + 1)).account_id == c
    # A per-day 429 parks the project until the next Pacific midnight.
    await pool.report(lease_a, CallFailure("quota_day", "429 day"), now=T0 + 2)
    assert await cooldown(redis, b) == pytest.approx(quota_day(T0).end)
    # A shorter cooldown never shortens a longer one.
    await pool.report(lease_a, CallFailure("quota_minute", "429", 5.0), now=T0 + 3)
    assert await cooldown(redis, a) == pytest.approx(quota_day(T0).end)
    # A server error backs off only the account; failures are counted and reset by a success.
    lease_c = await take(pool, T0 + 4, only=c)
    await pool.report(lease_c, CallFailure("server", "500 INTERNAL: boom"), now=T0 + 4, rand=1.0)
    assert await cooldown(redis, c) == pytest.approx(T0 + 5)
    assert await redis.hget(keys.account_info(c), "failures") == b"1"
    assert await redis.hget(keys.account_info(c), "last_error") == b"500 INTERNAL: boom"
    await pool.report(await take(pool, T0 + 6, only=c), None, now=T0 + 6)
    assert await redis.hget(keys.account_info(c), "failures") == b"0"
    # A refused key goes inactive, leaves the pool, and the hook persists it.
    await pool.report(await take(pool, T0 + 7, only=c), CallFailure("auth", "403 PERMISSION_DENIED"), now=T0 + 7)
    assert await redis.hget(keys.account_info(c), "status") == b"inactive"
    assert deactivated == [(c, "403 PERMISSION_DENIED")]
    busy = await pool.acquire(now=T0 + 8)
    assert isinstance(busy, Busy) and busy.wait_s == pytest.approx(quota_day(T0).end - (T0 + 8))
    await pool.set_status(a, "disabled", "by hand")
    await pool.set_status(b, "disabled", "by hand")
    busy = await pool.acquire(now=T0 + 9)
    assert isinstance(busy, Busy) and busy.wait_s is None  # nothing active at all
    assert await pool.set_status(c, "active") and (await take(pool, T0 + 10)).account_id == c
    assert not await pool.set_status("000000000000", "active")


async def test_acquire_wait_sleeps_until_the_script_says_then_resumes(redis: Redis) -> None:
    pool = AccountPool(redis, window_margin_s=0)
    await pool.put([rec(KEY_A)])
    lease = await pool.acquire_wait(max_wait_s=1)
    await pool.report(lease, CallFailure("quota_minute", "429", 1.2))
    pauses: list[float] = []
    t = time.monotonic()
    again = await pool.acquire_wait(max_wait_s=5, on_wait=pauses.append)
    waited = time.monotonic() - t
    assert again.account_id == lease.account_id and 1.0 < waited < 2.5
    assert 1 <= len(pauses) <= 2 and pauses[0] > 0.9  # slept once (plus at most a rounding retry): no polling
    assert again.waited_s == pytest.approx(waited, abs=0.1)


async def test_acquire_wait_gives_up_at_once_when_the_wait_exceeds_the_bound(redis: Redis) -> None:
    pool = AccountPool(redis, window_margin_s=0)
    await pool.put([rec(KEY_A, minute=1)])
    await pool.acquire_wait(max_wait_s=1)
    t = time.monotonic()
    with pytest.raises(PoolExhausted) as err:
        await pool.acquire_wait(max_wait_s=5)
    assert time.monotonic() - t < 0.5          # no point sleeping 5 s for a slot 60 s away
    assert err.value.retryable and 58 < (err.value.retry_after or 0) <= 60
    await pool.set_status(account_id(KEY_A), "disabled")
    with pytest.raises(PoolExhausted) as err:
        await pool.acquire_wait(max_wait_s=0)
    assert err.value.retry_after == 300 and "no active" in err.value.message


async def test_import_lock_serialises_and_times_out(redis: Redis) -> None:
    pool = AccountPool(redis)
    order: list[str] = []

    async def first() -> None:
        async with pool.import_lock(wait_s=1):
            order.append("first in")
            await asyncio.sleep(0.5)
            order.append("first out")

    async def second() -> None:
        await asyncio.sleep(0.1)
        async with pool.import_lock(wait_s=2):
            order.append("second in")

    await asyncio.gather(first(), second())
    assert order == ["first in", "first out", "second in"]
    assert await redis.exists(keys.ACCOUNT_IMPORT_LOCK) == 0
    await redis.set(keys.ACCOUNT_IMPORT_LOCK, "someone-else", ex=30)
    with pytest.raises(Conflict) as err:
        async with pool.import_lock(wait_s=0.3):
            pass
    assert keys.ACCOUNT_IMPORT_LOCK in err.value.message and "expires in" in err.value.message
    assert await redis.get(keys.ACCOUNT_IMPORT_LOCK) == b"someone-else"  # never released someone else's lock


async def test_snapshot_and_no_secret_in_key_names(redis: Redis) -> None:
    pool = AccountPool(redis, window_margin_s=0)
    await pool.put([rec(KEY_A, minute=4, daily=10, project="p"), rec(KEY_B, minute=5, daily=10, project="p"),
                    rec(KEY_C, minute=3, daily=7)])
    now = time.time()
    lease = await take(pool, now, only=account_id(KEY_C))
    await take(pool, now, only=account_id(KEY_A))
    await pool.report(lease, CallFailure("server", "500 INTERNAL"), now=now, rand=1.0)
    snap = await pool.snapshot(now=now + 0.1)
    by_id = {a["id"]: a for a in snap["accounts"]}
    c = by_id[account_id(KEY_C)]
    assert c["key"] == mask_key(KEY_C) and c["status"] == "cooling_down" and c["last_error"] == "500 INTERNAL"
    assert c["minute"] == {"used": 1, "limit": 3} and c["today"] == {"used": 1, "limit": 7}
    assert c["cooldown_until"] is not None
    # Project p: limits 4/10 (the smaller), 1 used; C is cooling so its capacity does not count.
    assert snap["totals"] == {"accounts": 3, "active": 2, "served_today": 2, "remaining_minute": 3,
                              "remaining_today": 9, "quota_day": quota_day(now + 0.1).label}
    names = [k.decode() async for k in redis.scan_iter(match="*")]
    assert names and not any(s in n for n in names for s in (KEY_A, KEY_B, KEY_C, "p:"))
    for acc in by_id:
        info = await redis.hgetall(keys.account_info(acc))
        assert b"password" not in info and b"pw" not in info.values()


# --- SQL -------------------------------------------------------------------------------
@pytest.fixture(params=["sqlite", "mysql"])
def sessions(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sessionmaker[Session]]:
    """The same account persistence over both SQL backends."""
    if request.param == "sqlite":
        engine = make_engine(f"sqlite:///{tmp_path / 'acc.db'}")
        migrate(engine)
    else:
        engine = request.getfixturevalue("mysql_engine")
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM accounts"))
    yield make_sessionmaker(engine)
    if request.param == "sqlite":
        engine.dispose()


def specs(*entries: dict[str, Any]) -> list[AccountSpec]:
    good, problems = validate_entries(list(entries))
    assert not problems
    return [s for _i, s in good]


def test_save_is_an_idempotent_upsert(sessions: sessionmaker[Session]) -> None:
    first = save_accounts(sessions, specs(entry(KEY_A), entry(KEY_B, project="p")))
    assert sorted(first.created) == sorted([account_id(KEY_A), account_id(KEY_B)]) and not first.updated
    again = save_accounts(sessions, specs(entry(KEY_A), entry(KEY_B, project="p")))
    assert not again.created and not again.updated and len(again.unchanged) == 2
    set_account_status(sessions, account_id(KEY_A), "disabled", "by hand")
    changed = save_accounts(sessions, specs(entry(KEY_A, minute_limit=20), entry(KEY_B, project="p", password="new")))
    assert sorted(changed.updated) == sorted([account_id(KEY_A), account_id(KEY_B)])
    rows = {r.id: r for r in load_accounts(sessions)}
    assert len(rows) == 2 and rows[account_id(KEY_A)].minute_limit == 20
    assert rows[account_id(KEY_A)].status == "disabled"  # re-import keeps an operator's decision
    dry = save_accounts(sessions, specs(entry(KEY_C)), dry_run=True)
    assert dry.created == [account_id(KEY_C)] and len(load_accounts(sessions)) == 2
    assert resolve_account(sessions, KEY_B) == account_id(KEY_B) == resolve_account(sessions, account_id(KEY_B))
    assert resolve_account(sessions, KEY_C) is None


async def test_restore_after_redis_loss(sessions: sessionmaker[Session], redis: Redis) -> None:
    save_accounts(sessions, specs(entry(KEY_A, minute_limit=2), entry(KEY_B)))
    set_account_status(sessions, account_id(KEY_B), "inactive", "403")
    pool = AccountPool(redis, window_margin_s=0)
    assert await pool.is_empty()
    assert await restore_pool(pool, sessions) == 2
    assert await redis.hget(keys.account_info(account_id(KEY_B)), "status") == b"inactive"
    assert (await take(pool, T0)).account_id == account_id(KEY_A)


# --- the API ---------------------------------------------------------------------------
async def test_accounts_endpoint(tmp_path: Path, redis_url: str, mysql_engine: Any) -> None:
    with mysql_engine.begin() as conn:
        conn.execute(text("DELETE FROM accounts"))
    settings = make_settings(tmp_path, database_url=MYSQL_URL, redis_url=redis_url)
    async with running_service(settings, consumers=0) as svc:
        pool = AccountPool(svc.runtime.redis(), window_margin_s=0)
        await pool.put([rec(KEY_A, minute=4, daily=9, project="proj-a"), rec(KEY_B, status="disabled")])
        lease = await take(pool, time.time(), only=account_id(KEY_A))
        await pool.report(lease, CallFailure("quota_minute", "429 RESOURCE_EXHAUSTED: quota", 30.0))
        r = await svc.client.get("/api/v1/accounts")
    assert r.status_code == 200 and KEY_A not in r.text and KEY_B not in r.text
    body = r.json()
    assert body["code"] == 200 and body["task_id"] is None
    a = {x["id"]: x for x in body["data"]["accounts"]}[account_id(KEY_A)]
    assert a["key"] == "AIza…aaaa" and a["project"] == "proj-a" and a["status"] == "cooling_down"
    assert a["minute"] == {"used": 1, "limit": 4} and a["today"] == {"used": 1, "limit": 9}
    assert a["cooldown_until"].endswith("Z") and a["last_error"] == "429 RESOURCE_EXHAUSTED: quota"
    totals = body["data"]["totals"]
    assert totals["served_today"] == 1 and totals["accounts"] == 2 and totals["active"] == 0
    assert totals["remaining_today"] == 0  # nothing usable right now: one cooling, one disabled
