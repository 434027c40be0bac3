"""The Gemini account pool: import, list, disable, acquire, feedback.

An account is one Gemini API key with a per-minute and a per-day request limit. Keys of
one Google Cloud project share that project's quota, so they are counted together.

    validate_entries(raw)           accounts.json entries -> specs + every problem (index, field)
    save_accounts / load_accounts   SQL, the record of truth (a Redis loss is recoverable)
    AccountPool.put                 SQL records -> Redis (import, restore)
    AccountPool.acquire             one Lua script: choose the best eligible account, record the use
    AccountPool.acquire_wait        ... or sleep until the script says one frees up, within a bound
    AccountPool.touch               re-date a reserved request just before it is sent (Files API)
    AccountPool.report              feedback of a call: decide() then one Lua script applies it
    AccountPool.snapshot            what GET /api/v1/accounts and `import_accounts.py --list` show

Decisions (quota day, backoff, the verdict on a failed call) are pure functions with
`now` passed in. Secrets: an account is named by `account_id` (a fingerprint of its key)
everywhere - Redis key names, logs, errors, metrics. The key itself is stored in SQL and
in the account's Redis info hash (it is needed to call the API) and shown only masked.
Passwords are never written to Redis; SQL keeps a salted scrypt hash.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import hashlib
import hmac
import logging
import random
import re
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError, field_validator
from redis.asyncio import Redis
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from app import keys
from app.errors import Conflict, PoolExhausted
from app.models import Account

log = logging.getLogger("accounts")

PACIFIC = ZoneInfo("America/Los_Angeles")
WINDOW_S = 60.0              # Google's per-minute quota is a 60 s window
WINDOW_TTL_S = 120           # seed: minute_window lives 2 minutes
DAILY_TTL_S = 2 * 24 * 3600  # seed: daily lives 2 days (yesterday is still read just after midnight)
STATUSES = ("active", "disabled", "inactive")
_LUA = Path(__file__).parent / "lua"
_MODEL_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


# --- identity and masking -------------------------------------------------------------
def account_id(api_key: str) -> str:
    """The stable, non-secret name of a key: the first 12 hex digits of its sha256."""
    return hashlib.sha256(api_key.encode()).hexdigest()[:12]


def project_group(project: str | None) -> str:
    """The quota group of a project ("" = the account is its own group)."""
    return hashlib.sha256(project.encode()).hexdigest()[:12] if project else ""


def mask_key(api_key: str) -> str:
    """`AIza…x9Qk`: enough to recognise a key, far too little to use it."""
    if len(api_key) < 12:
        return "…" + api_key[-2:]
    return f"{api_key[:4]}…{api_key[-4:]}"


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    salt = salt if salt is not None else secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=2 ** 14, r=8, p=1, dklen=32)
    return f"scrypt$16384$8$1${salt.hex()}${digest.hex()}"


def password_matches(password: str, stored: str) -> bool:
    try:
        _algo, n, r, p, salt, digest = stored.split("$")
        got = hashlib.scrypt(password.encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p), dklen=32)
    except ValueError:
        return False
    return hmac.compare_digest(got.hex(), digest)


# --- the seed's accounts.json ---------------------------------------------------------
class AccountSpec(BaseModel):
    """One entry of accounts.json (the seed's format, plus optional project and model)."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True, frozen=True)

    api_key: str = Field(min_length=10, max_length=256, repr=False)  # secrets stay out of reprs and logs
    daily_limit: StrictInt = Field(ge=1, le=10_000_000)
    minute_limit: StrictInt = Field(ge=1, le=100_000)
    username: str = Field(min_length=1, max_length=191)
    password: str = Field(min_length=1, max_length=1024, repr=False)
    phone: str = Field(min_length=1, max_length=64)
    email: str = Field(min_length=3, max_length=191)
    project: str | None = Field(default=None, min_length=1, max_length=128)
    model: str | None = Field(default=None, min_length=1, max_length=64)

    @field_validator("api_key")
    @classmethod
    def _key_chars(cls, v: str) -> str:
        # The message never repeats the value: it is a secret.
        if not all(c.isascii() and c.isprintable() and not c.isspace() for c in v):
            raise ValueError("must be printable ASCII without spaces")
        return v

    @field_validator("email")
    @classmethod
    def _email(cls, v: str) -> str:
        if not _EMAIL_RE.match(v):
            raise ValueError("not an e-mail address")
        return v

    @field_validator("model")
    @classmethod
    def _model(cls, v: str | None) -> str | None:
        if v is not None and not _MODEL_RE.match(v):
            raise ValueError("not a model name")
        return v

    @property
    def id(self) -> str:
        return account_id(self.api_key)


@dataclass(frozen=True)
class Problem:
    index: int      # position in the file's list (0-based)
    field: str      # "" = the entry as a whole
    message: str    # never contains a secret

    def __str__(self) -> str:
        where = f"entry {self.index}" + (f", field {self.field}" if self.field else "")
        return f"{where}: {self.message}"


def validate_entries(raw: object) -> tuple[list[tuple[int, AccountSpec]], list[Problem]]:
    """Check every entry; return the valid ones (with their index) and all problems found.

    A problem names the entry's index and the field, never the offending value (it may be
    a key or a password). A key listed twice is a problem at its second occurrence.
    """
    if not isinstance(raw, list):
        return [], [Problem(-1, "", "the file must hold a JSON list of account objects")]
    good: list[tuple[int, AccountSpec]] = []
    problems: list[Problem] = []
    seen: dict[str, int] = {}
    for i, entry in enumerate(raw):
        if not isinstance(entry, dict):
            problems.append(Problem(i, "", "not a JSON object"))
            continue
        try:
            spec = AccountSpec.model_validate(entry)
        except ValidationError as exc:
            for err in exc.errors(include_input=False, include_url=False):
                loc = ".".join(str(x) for x in err.get("loc", ()))
                msg = "required" if err.get("type") == "missing" else str(err.get("msg", "invalid"))
                problems.append(Problem(i, loc, msg.removeprefix("Value error, ")))
            continue
        if spec.id in seen:
            problems.append(Problem(i, "api_key", f"the same key as entry {seen[spec.id]}"))
            continue
        seen[spec.id] = i
        good.append((i, spec))
    return good, problems


def project_warnings(specs: Sequence[AccountSpec]) -> list[str]:
    """Projects whose keys disagree on limits: the pool uses the smallest (quotas are per project)."""
    by_project: dict[str, set[tuple[int, int]]] = {}
    for s in specs:
        if s.project:
            by_project.setdefault(s.project, set()).add((s.minute_limit, s.daily_limit))
    return [f"project {p!r}: its keys list different limits; the smallest apply to all of them"
            for p, limits in sorted(by_project.items()) if len(limits) > 1]


# --- quota arithmetic (pure) ----------------------------------------------------------
@dataclass(frozen=True)
class QuotaDay:
    label: str    # the Pacific date, YYYY-MM-DD
    start: float  # its midnight, unix s
    end: float    # the next midnight, unix s (23 or 25 h later on DST days)


def quota_day(now: float) -> QuotaDay:
    """The Gemini quota day containing `now`: it resets at midnight America/Los_Angeles."""
    local = dt.datetime.fromtimestamp(now, PACIFIC)
    day = local.date()
    nxt = day + dt.timedelta(days=1)
    start = dt.datetime(day.year, day.month, day.day, tzinfo=PACIFIC)
    end = dt.datetime(nxt.year, nxt.month, nxt.day, tzinfo=PACIFIC)
    return QuotaDay(day.isoformat(), start.timestamp(), end.timestamp())


def backoff_s(failures: int, *, rand: float, base: float = 1.0, cap: float = 60.0) -> float:
    """Exponential backoff with equal jitter: in [d/2, d], d = min(cap, base * 2**(failures-1))."""
    d = min(cap, base * 2.0 ** max(0, failures - 1))
    return d / 2 + rand * d / 2


FailureKind = Literal["quota_minute", "quota_day", "quota", "auth", "server", "network", "rejected"]


@dataclass(frozen=True)
class CallFailure:
    """What went wrong on one call, in the pool's words (the provider translates the wire)."""

    kind: FailureKind
    reason: str                       # short, for `last_error`; never a secret
    retry_delay_s: float | None = None  # RetryInfo.retryDelay, when the server gave one


@dataclass(frozen=True)
class Verdict:
    action: Literal["cooldown", "deactivate", "count"]
    scope: Literal["account", "project"] = "account"
    until: float = 0.0
    retry_other: bool = True  # the request may be tried again on another account


def decide(failure: CallFailure, *, now: float, failures: int, rand: float) -> Verdict:
    """The pool's reaction to a failed call (pure).

    quota_minute  the project cools down for RetryInfo.retryDelay (60 s when absent)
    quota_day     the project is parked until the next Pacific midnight
    quota         (a 429 without details) the project backs off, exponentially with jitter
    auth          the key is refused (401/403/invalid): the account goes inactive
    server        5xx/network: the account backs off a little; retry on another account
    rejected      the request itself is bad: nothing changes, no retry
    `failures` counts this account's consecutive failures before this one.
    """
    n = failures + 1
    if failure.kind == "quota_minute":
        delay = failure.retry_delay_s if failure.retry_delay_s is not None else WINDOW_S
        return Verdict("cooldown", "project", now + max(1.0, delay))
    if failure.kind == "quota_day":
        return Verdict("cooldown", "project", quota_day(now).end)
    if failure.kind == "quota":
        return Verdict("cooldown", "project", now + backoff_s(n, rand=rand, base=2.0, cap=300.0))
    if failure.kind == "auth":
        return Verdict("deactivate")
    if failure.kind in ("server", "network"):
        return Verdict("cooldown", "account", now + backoff_s(n, rand=rand, base=1.0, cap=60.0))
    return Verdict("count", retry_other=False)


# --- SQL: the record of truth ---------------------------------------------------------
@dataclass(frozen=True)
class AccountRecord:
    """An account as the pool needs it (built from SQL)."""

    id: str
    api_key: str = field(repr=False)
    project: str | None
    model: str | None
    minute_limit: int
    daily_limit: int
    status: str = "active"
    status_reason: str | None = None


def _record(a: Account) -> AccountRecord:
    return AccountRecord(a.id, a.api_key, a.project, a.model, a.minute_limit, a.daily_limit, a.status,
                         a.status_reason)


@dataclass
class ImportReport:
    created: list[str] = field(default_factory=list)    # account ids
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    records: list[AccountRecord] = field(default_factory=list)  # every imported account, as stored


def save_accounts(sessions: sessionmaker[Session], specs: Sequence[AccountSpec], *,
                  dry_run: bool = False) -> ImportReport:
    """Upsert by account id in one transaction (rolled back on a dry run).

    Re-importing updates limits, project, model and contact fields and never duplicates.
    The status is kept: a disabled or refused key stays so until `--enable`.
    """
    report = ImportReport()
    with sessions() as s:
        existing = {a.id: a for a in s.scalars(select(Account).where(Account.id.in_([x.id for x in specs])))}
        for spec in specs:
            row = existing.get(spec.id)
            if row is None:
                row = Account(id=spec.id, api_key=spec.api_key, project=spec.project, model=spec.model,
                              minute_limit=spec.minute_limit, daily_limit=spec.daily_limit,
                              username=spec.username, email=spec.email, phone=spec.phone,
                              password_hash=hash_password(spec.password), status="active")
                s.add(row)
                report.created.append(spec.id)
            else:
                fields = {"project": spec.project, "model": spec.model, "minute_limit": spec.minute_limit,
                          "daily_limit": spec.daily_limit, "username": spec.username, "email": spec.email,
                          "phone": spec.phone}
                changed = [k for k, v in fields.items() if getattr(row, k) != v]
                for k in changed:
                    setattr(row, k, fields[k])
                if not password_matches(spec.password, row.password_hash):
                    row.password_hash = hash_password(spec.password)
                    changed.append("password")
                (report.updated if changed else report.unchanged).append(spec.id)
            report.records.append(_record(row))
        if dry_run:
            s.rollback()
        else:
            s.commit()
    return report


def load_accounts(sessions: sessionmaker[Session]) -> list[AccountRecord]:
    with sessions() as s:
        return [_record(a) for a in s.scalars(select(Account).order_by(Account.created_at, Account.id))]


def resolve_account(sessions: sessionmaker[Session], key_or_id: str) -> str | None:
    """The id of an account named by its key or its id (None if unknown)."""
    with sessions() as s:
        for candidate in (key_or_id, account_id(key_or_id)):
            if s.get(Account, candidate) is not None:
                return candidate
    return None


def set_account_status(sessions: sessionmaker[Session], acc_id: str, status: str, reason: str | None) -> bool:
    if status not in STATUSES:
        raise ValueError(f"unknown status {status!r}")
    with sessions() as s:
        row = s.get(Account, acc_id)
        if row is None:
            return False
        row.status, row.status_reason = status, reason
        s.commit()
    return True


# --- Redis: the live pool -------------------------------------------------------------
@dataclass(frozen=True)
class Lease:
    """One granted request on one account (or, from a peek, the account to upload with)."""

    account_id: str
    api_key: str = field(repr=False)
    model: str | None
    project: str | None
    failures: int
    granted_at: float   # Redis clock (unix s)
    waited_s: float = 0.0
    token: str = ""     # its member in the minute windows (see `touch`)


@dataclass(frozen=True)
class Busy:
    """No account is eligible now; `wait_s` until the next is (None: no active account at all)."""

    wait_s: float | None
    now: float


def _s(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


class AccountPool:
    """The pool over one Redis. Every method is safe to call from many consumers at once."""

    def __init__(self, redis: Redis, *, window_margin_s: float = 1.0,
                 on_deactivate: Callable[[str, str], Any] | None = None) -> None:
        """`on_deactivate(account_id, reason)` persists a refused key (e.g. to SQL); may be async."""
        self.redis = redis
        self.window_s = WINDOW_S + window_margin_s
        self.on_deactivate = on_deactivate
        self._acquire = redis.register_script((_LUA / "accounts_acquire.lua").read_text())
        self._feedback = redis.register_script((_LUA / "accounts_feedback.lua").read_text())
        self._unlock = redis.register_script((_LUA / "accounts_unlock.lua").read_text())
        self._touch = redis.register_script((_LUA / "accounts_touch.lua").read_text())

    # -- inventory --
    async def put(self, records: Sequence[AccountRecord]) -> None:
        """Write accounts into the pool (import, restore); counters and cooldowns are kept."""
        async with self.redis.pipeline(transaction=True) as p:
            for r in records:
                p.hset(keys.account_info(r.id), mapping={
                    "api_key": r.api_key, "masked": mask_key(r.api_key), "project": r.project or "",
                    "group": project_group(r.project), "model": r.model or "",
                    "minute_limit": r.minute_limit, "daily_limit": r.daily_limit,
                    "status": r.status, "status_reason": r.status_reason or "",
                })
                p.sadd(keys.ACCOUNT_KEYS, r.id)
            await p.execute()

    async def is_empty(self) -> bool:
        return int(await self.redis.scard(keys.ACCOUNT_KEYS)) == 0

    async def set_status(self, acc_id: str, status: str, reason: str | None = None) -> bool:
        """Operator action: active | disabled | inactive. False if the account is not in the pool."""
        if status not in STATUSES:
            raise ValueError(f"unknown status {status!r}")
        if not await self.redis.sismember(keys.ACCOUNT_KEYS, acc_id):
            return False
        fields: dict[str, str | int] = {"status": status, "status_reason": reason or ""}
        if status == "active":
            fields.update(failures=0, cooldown_until=0)
        await self.redis.hset(keys.account_info(acc_id), mapping=fields)  # type: ignore[arg-type]
        return True

    # -- acquire --
    async def acquire(self, *, now: float | None = None, only: str | None = None, peek: bool = False) -> Lease | Busy:
        """One atomic attempt. `now` None = Redis clock; `peek` chooses without recording a use."""
        day_now = now if now is not None else time.time()
        qd = quota_day(day_now)
        nxt = quota_day(qd.end + 1)
        token = uuid.uuid4().hex
        res = await self._acquire(keys=[keys.ACCOUNT_KEYS], args=[
            "" if now is None else repr(now), repr(self.window_s), qd.label, repr(qd.end), nxt.label,
            token, "peek" if peek else "use", only or "",
            keys.ACCOUNT_PREFIX, keys.PROJECT_PREFIX, keys.INFO_SUFFIX, keys.DAILY_SUFFIX, keys.WINDOW_SUFFIX,
            WINDOW_TTL_S, DAILY_TTL_S,
        ])
        vals = [_s(v) for v in res]
        if vals[0] == "":
            script_now = float(vals[2])
            nxt_t = float(vals[1])
            return Busy(None if nxt_t < 0 else max(0.0, nxt_t - script_now), script_now)
        acc, key, model, project, failures, granted = vals
        return Lease(acc, key, model or None, project or None, int(failures or 0), float(granted),
                     token="" if peek else token)

    async def touch(self, lease: Lease, *, now: float | None = None) -> Lease | None:
        """Re-date a lease's recorded request to now, just before it is sent.

        For a request sent long after its acquire (a Files API upload first). None when the
        entry has aged out of the window or the account is cooling down or inactive: then
        acquire afresh (`only=lease.account_id`).
        """
        if not lease.token:
            return None
        own = keys.account_window(lease.account_id)
        group = project_group(lease.project)
        moved = await self._touch(keys=[own, keys.project_window(group) if group else own,
                                        keys.account_info(lease.account_id)],
                                  args=[lease.token, "" if now is None else repr(now), repr(self.window_s)])
        if not _s(moved):
            return None
        return dataclasses.replace(lease, granted_at=float(_s(moved)))

    async def acquire_wait(self, *, max_wait_s: float, only: str | None = None, peek: bool = False,
                           on_wait: Callable[[float], Any] | None = None) -> Lease:
        """Acquire, sleeping (never polling) until the script's next-eligible time, within `max_wait_s`.

        Raises PoolExhausted (retryable, `retry_after` = when an account frees up) when none
        will be free within the bound; with no active account at all it re-checks every 5 s
        (an import may add one) until the bound.
        """
        loop = asyncio.get_running_loop()
        start = loop.time()
        deadline = start + max_wait_s
        while True:
            got = await self.acquire(only=only, peek=peek)
            if isinstance(got, Lease):
                return dataclasses.replace(got, waited_s=loop.time() - start)
            remaining = deadline - loop.time()
            if got.wait_s is None:
                if only is not None:  # the one account asked for is disabled or refused: nothing to wait for
                    raise PoolExhausted(f"account {only} is not active", retry_after=1.0)
                if remaining <= 0:
                    raise PoolExhausted("no active Gemini account in the pool (import_accounts.py)",
                                        retry_after=300.0)
                pause = min(5.0, remaining)
            elif got.wait_s > remaining:
                which = f"account {only}" if only else "no Gemini account"
                raise PoolExhausted(f"{which} is free within {max_wait_s:.0f} s; next in {got.wait_s:.1f} s",
                                    retry_after=max(1.0, got.wait_s))
            else:
                # A little jitter: waiters woken for the same freed slot do not all hit Redis at once.
                pause = got.wait_s + random.uniform(0.0, 0.02)
            if on_wait is not None:
                on_wait(pause)
            await asyncio.sleep(pause)

    # -- feedback --
    async def report(self, lease: Lease, failure: CallFailure | None, *, now: float | None = None,
                     rand: float | None = None) -> Verdict | None:
        """Record how a call went. Returns the verdict on a failure (None on success)."""
        t = time.time() if now is None else now
        info = keys.account_info(lease.account_id)
        if failure is None:
            await self._feedback(keys=[keys.ACCOUNT_KEYS, info],
                                 args=[keys.ACCOUNT_PREFIX, keys.INFO_SUFFIX, "ok", "account", 0, "", repr(t)])
            return None
        verdict = decide(failure, now=t, failures=lease.failures, rand=random.random() if rand is None else rand)
        reason = failure.reason[:300]
        await self._feedback(keys=[keys.ACCOUNT_KEYS, info], args=[
            keys.ACCOUNT_PREFIX, keys.INFO_SUFFIX, verdict.action, verdict.scope, repr(verdict.until), reason, repr(t)])
        if verdict.action == "deactivate":
            log.warning("account %s deactivated: %s", lease.account_id, reason)
            if self.on_deactivate is not None:
                out = self.on_deactivate(lease.account_id, reason)
                if asyncio.iscoroutine(out):
                    await out
        elif verdict.action == "cooldown":
            log.info("account %s (%s) cools down for %.1f s: %s", lease.account_id, verdict.scope,
                     verdict.until - t, reason)
        return verdict

    # -- import lock --
    @contextlib.asynccontextmanager
    async def import_lock(self, *, wait_s: float = 30.0, ttl_s: int = 120) -> AsyncIterator[None]:
        """Hold `google_accounts:import_lock` (SET NX EX); wait up to `wait_s`, else Conflict.

        The expiry frees the lock of a crashed importer; an import finishes well within it.
        """
        token = uuid.uuid4().hex
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        while not await self.redis.set(keys.ACCOUNT_IMPORT_LOCK, token, nx=True, ex=ttl_s):
            if loop.time() >= deadline:
                ttl = await self.redis.ttl(keys.ACCOUNT_IMPORT_LOCK)
                raise Conflict(f"another account import holds {keys.ACCOUNT_IMPORT_LOCK} "
                               f"(expires in {max(0, int(ttl))} s); waited {wait_s:.0f} s")
            await asyncio.sleep(min(0.2, max(0.0, deadline - loop.time())))
        try:
            yield
        finally:
            await self._unlock(keys=[keys.ACCOUNT_IMPORT_LOCK], args=[token])

    # -- observation --
    async def snapshot(self, now: float | None = None) -> dict[str, Any]:
        """Every account (masked) with usage, and pool totals. Read-only."""
        t = time.time() if now is None else now
        day = quota_day(t).label
        ids = sorted(_s(i) for i in await self.redis.smembers(keys.ACCOUNT_KEYS))
        async with self.redis.pipeline(transaction=False) as p:
            for i in ids:
                p.hgetall(keys.account_info(i))
                p.zcount(keys.account_window(i), f"({t - WINDOW_S}", "+inf")
                p.hget(keys.account_daily(i), day)
            raw = await p.execute()
        accounts: list[dict[str, Any]] = []
        groups: dict[str, dict[str, Any]] = {}
        for n, acc in enumerate(ids):
            info = {_s(k): _s(v) for k, v in raw[3 * n].items()}
            if not info:
                continue
            minute_used, today_used = int(raw[3 * n + 1]), int(_s(raw[3 * n + 2] or 0))
            cool = float(info.get("cooldown_until") or 0)
            status = info.get("status", "active")
            shown = "cooling_down" if status == "active" and cool > t else status
            minute_limit, daily_limit = int(info.get("minute_limit") or 0), int(info.get("daily_limit") or 0)
            item: dict[str, Any] = {
                "id": acc, "key": info.get("masked", ""), "project": info.get("project") or None,
                "model": info.get("model") or None, "status": shown,
                "status_reason": info.get("status_reason") or None,
                "minute": {"used": minute_used, "limit": minute_limit},
                "today": {"used": today_used, "limit": daily_limit},
                "cooldown_until": _iso(cool) if cool > t else None,
                "last_used": _iso(float(info["last_used"])) if info.get("last_used") else None,
                "last_error": info.get("last_error") or None,
                "last_error_at": _iso(float(info["last_error_at"])) if info.get("last_error_at") else None,
            }
            accounts.append(item)
            g = groups.setdefault(info.get("group") or "a:" + acc, {
                "minute_limit": minute_limit, "daily_limit": daily_limit,
                "minute_used": 0, "today_used": 0, "usable": False})
            g["minute_limit"] = min(g["minute_limit"], minute_limit)
            g["daily_limit"] = min(g["daily_limit"], daily_limit)
            g["minute_used"] += minute_used
            g["today_used"] += today_used
            g["usable"] = g["usable"] or shown == "active"
        usable = [g for g in groups.values() if g["usable"]]
        return {
            "accounts": accounts,
            "totals": {
                "accounts": len(accounts),
                "active": sum(1 for a in accounts if a["status"] == "active"),
                "served_today": sum(a["today"]["used"] for a in accounts),
                "remaining_minute": sum(max(0, g["minute_limit"] - g["minute_used"]) for g in usable),
                "remaining_today": sum(max(0, g["daily_limit"] - g["today_used"]) for g in usable),
                "quota_day": day,
            },
        }


def _iso(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


async def restore_pool(pool: AccountPool, sessions: sessionmaker[Session]) -> int:
    """Rebuild the pool's inventory from SQL (after a Redis loss). Returns the number of accounts."""
    records = await asyncio.to_thread(load_accounts, sessions)
    if records:
        await pool.put(records)
    log.info("restored %d account(s) into the pool from SQL", len(records))
    return len(records)
