"""`python import_accounts.py`: manage the Gemini account pool.

    --file accounts.json [--dry-run] [--skip-invalid]   validate, then upsert into SQL and Redis
    --list                                              every account, key masked, with live usage
    --disable KEY_OR_ID / --enable KEY_OR_ID            take an account out of / back into the pool
    --restore                                           rebuild the Redis pool from SQL

accounts.json is a list of objects with api_key, daily_limit, minute_limit, username,
password, phone and email (all required) and optional project (a Google Cloud project:
its keys share one quota) and model. Every problem is reported with the entry's index and
field; nothing is imported while any remains, unless --skip-invalid. Imports are
serialised by the Redis lock google_accounts:import_lock: a second import waits up to
--lock-wait seconds, then fails. API keys are printed only masked.

Uses DATABASE_URL and REDIS_URL (or, with both unset, the embedded SQLite and redis-server
in DATA_DIR, the service's own if it is running).
Exit status: 0 done, 1 invalid input (nothing imported), 2 usage, 3 lock busy, 4 no such account.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any, TextIO

import redis as redis_sync

from app.accounts import (
    AccountPool,
    AccountSpec,
    load_accounts,
    project_warnings,
    resolve_account,
    restore_pool,
    save_accounts,
    set_account_status,
    validate_entries,
)
from app.config import Settings
from app.embedded_redis import EmbeddedRedis
from app.errors import Conflict
from app.runtime import Runtime, build_runtime

EXIT_OK, EXIT_INVALID, EXIT_USAGE, EXIT_LOCKED, EXIT_UNKNOWN = 0, 1, 2, 3, 4


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="import_accounts.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--file", type=Path, help="accounts.json to import (upsert)")
    mode.add_argument("--list", action="store_true", help="list accounts (keys masked)")
    mode.add_argument("--disable", metavar="KEY_OR_ID", help="disable an account (by key or account id)")
    mode.add_argument("--enable", metavar="KEY_OR_ID", help="re-enable a disabled or refused account")
    mode.add_argument("--restore", action="store_true", help="rebuild the Redis pool from SQL")
    p.add_argument("--dry-run", action="store_true", help="with --file: validate and show what would change")
    p.add_argument("--skip-invalid", action="store_true", help="with --file: import the valid entries anyway")
    p.add_argument("--lock-wait", type=float, default=30.0, metavar="S",
                   help="wait this long for another import to finish (default 30)")
    args = p.parse_args(argv)
    if (args.dry_run or args.skip_invalid) and args.file is None:
        p.error("--dry-run and --skip-invalid go with --file")
    return args


def open_runtime(settings: Settings) -> Runtime:
    """Production: the configured servers. Embedded: the running service's redis-server, else start one."""
    if settings.embedded:
        socket = EmbeddedRedis(settings.data_dir).socket
        if socket.exists():
            try:
                redis_sync.Redis(unix_socket_path=str(socket), socket_timeout=0.5).ping()
                return build_runtime(settings, start_embedded=False)
            except redis_sync.RedisError:
                pass  # a stale socket: start our own below
    return build_runtime(settings)


def read_entries(path: Path) -> object:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"{path}: no such file") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from None


def main(argv: list[str] | None = None, *, out: TextIO | None = None) -> int:
    stdout = out or sys.stdout
    args = parse(argv)

    def say(line: str) -> None:
        print(line, file=stdout)

    specs: list[AccountSpec] = []
    if args.file is not None:
        try:
            raw = read_entries(args.file)
        except ValueError as exc:
            say(f"error: {exc}")
            return EXIT_INVALID
        valid, problems = validate_entries(raw)
        for problem in problems:
            say(f"invalid: {problem}")
        if problems and not args.skip_invalid:
            say(f"{len(problems)} problem(s) in {args.file}; nothing imported (fix them or use --skip-invalid)")
            return EXIT_INVALID
        specs = [spec for _i, spec in valid]
        for warning in project_warnings(specs):
            say(f"warning: {warning}")
    settings = Settings()
    runtime = open_runtime(settings)
    try:
        return asyncio.run(_run(args, specs, runtime, say))
    finally:
        runtime.shutdown()


async def _run(args: argparse.Namespace, specs: list[AccountSpec], runtime: Runtime, say: Any) -> int:
    sessions = runtime.store.sessions
    pool = AccountPool(runtime.redis())
    try:
        if args.file is not None:
            if args.dry_run:
                report = await asyncio.to_thread(save_accounts, sessions, specs, dry_run=True)
                say(f"dry run: would create {len(report.created)}, update {len(report.updated)}, "
                    f"leave {len(report.unchanged)} unchanged; nothing written")
                return EXIT_OK
            try:
                async with pool.import_lock(wait_s=args.lock_wait):
                    report = await asyncio.to_thread(save_accounts, sessions, specs)
                    await pool.put(report.records)
            except Conflict as exc:
                say(f"error: {exc.message}")
                return EXIT_LOCKED
            say(f"imported {len(specs)} account(s): {len(report.created)} created, {len(report.updated)} updated, "
                f"{len(report.unchanged)} unchanged")
            return EXIT_OK
        if args.restore:
            n = await restore_pool(pool, sessions)
            say(f"restored {n} account(s) into Redis from SQL")
            return EXIT_OK
        if args.disable or args.enable:
            target = args.disable or args.enable
            acc = await asyncio.to_thread(resolve_account, sessions, target)
            if acc is None:
                say("error: no such account (give its API key or its 12-character id)")
                return EXIT_UNKNOWN
            status, reason = ("disabled", "disabled by an operator") if args.disable else ("active", None)
            await asyncio.to_thread(set_account_status, sessions, acc, status, reason)
            if not await pool.set_status(acc, status, reason):
                await restore_pool(pool, sessions)  # the pool had lost it: SQL brings it back with its status
            say(f"account {acc}: {status}")
            return EXIT_OK
        return await _list(pool, sessions, say)
    finally:
        await runtime.aclose()


async def _list(pool: AccountPool, sessions: Any, say: Any) -> int:
    records = await asyncio.to_thread(load_accounts, sessions)
    live = {a["id"]: a for a in (await pool.snapshot())["accounts"]}
    if not records:
        say("no accounts")
        return EXIT_OK
    say(f"{'id':<12}  {'key':<11}  {'project':<20}  {'status':<12}  {'minute':>9}  {'today':>13}  cooldown until")
    for r in records:
        a = live.get(r.id)
        if a is None:
            say(f"{r.id:<12}  {'?':<11}  {(r.project or '-'):<20}  {r.status + '*':<12}  {'?':>9}  {'?':>13}  -")
            continue
        minute = f"{a['minute']['used']}/{a['minute']['limit']}"
        today = f"{a['today']['used']}/{a['today']['limit']}"
        say(f"{r.id:<12}  {a['key']:<11}  {(r.project or '-'):<20}  {a['status']:<12}  {minute:>9}  {today:>13}  "
            f"{a['cooldown_until'] or '-'}")
    if any(r.id not in live for r in records):
        say("* not in the Redis pool: run --restore")
    return EXIT_OK
