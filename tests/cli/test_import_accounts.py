"""`import_accounts.py`: validation, dry run, idempotent upsert, disable/enable, list, the lock.

Runs the real CLI `main(argv)` against MariaDB and Redis (production mode) and, once, in
the embedded mode (SQLite + a private redis-server in DATA_DIR).
"""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis as redis_sync
from sqlalchemy import text

from app import keys
from app.accounts import account_id, load_accounts, mask_key
from app.cli.import_accounts import EXIT_INVALID, EXIT_LOCKED, EXIT_OK, EXIT_UNKNOWN, main
from app.db import make_sessionmaker
from tests.conftest import MYSQL_URL, ROOT

KEYS = [f"AIzaSyCLI{i:02d}-{'k' * 26}" for i in range(4)]
PASSWORD = "hunter2-secret"


def entry(key: str, **over: Any) -> dict[str, Any]:
    e: dict[str, Any] = {"api_key": key, "daily_limit": 1500, "minute_limit": 15, "username": "user",
                         "password": PASSWORD, "phone": "+86 138 0000 0000", "email": "user@example.com"}
    e.update(over)
    return e


@pytest.fixture
def prod(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, redis_url: str, mysql_engine: Any) -> Iterator[Any]:
    """Production settings from the environment, as the script would see them; accounts table emptied."""
    with mysql_engine.begin() as conn:
        conn.execute(text("DELETE FROM accounts"))
    monkeypatch.setenv("DATABASE_URL", MYSQL_URL)
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "data"))
    monkeypatch.chdir(tmp_path)  # no stray .env
    client = redis_sync.Redis.from_url(redis_url)
    yield client
    client.close()


def run(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    code = main(list(argv), out=out)
    return code, out.getvalue()


def write(tmp_path: Path, entries: Any, name: str = "accounts.json") -> str:
    path = tmp_path / name
    path.write_text(json.dumps(entries))
    return str(path)


def sql_ids(mysql_engine: Any) -> set[str]:
    return {r.id for r in load_accounts(make_sessionmaker(mysql_engine))}


def test_invalid_file_reports_every_problem_and_imports_nothing(prod: Any, tmp_path: Path, mysql_engine: Any,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    bad = [entry(KEYS[0]), entry(KEYS[1], minute_limit=-1), {"api_key": KEYS[2]}, entry(KEYS[0])]
    code, out = run("--file", write(tmp_path, bad))
    assert code == EXIT_INVALID
    for needle in ("entry 1, field minute_limit", "entry 2, field daily_limit", "entry 2, field password",
                   "entry 2, field email", "entry 3, field api_key: the same key as entry 0", "nothing imported"):
        assert needle in out, needle
    assert sql_ids(mysql_engine) == set() and prod.scard(keys.ACCOUNT_KEYS) == 0
    assert not any(k in out + caplog.text for k in KEYS) and PASSWORD not in out


@pytest.mark.parametrize("content,message", [("{not json", "not valid JSON"), ('{"api_key": "x"}', "JSON list")])
def test_unreadable_files(prod: Any, tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "a.json"
    path.write_text(content)
    code, out = run("--file", str(path))
    assert code == EXIT_INVALID and message in out
    code, out = run("--file", str(tmp_path / "missing.json"))
    assert code == EXIT_INVALID and "no such file" in out


def test_skip_invalid_and_dry_run(prod: Any, tmp_path: Path, mysql_engine: Any) -> None:
    path = write(tmp_path, [entry(KEYS[0]), entry(KEYS[1], email="nope"), entry(KEYS[2], project="p")])
    code, out = run("--file", path, "--skip-invalid", "--dry-run")
    assert code == EXIT_OK and "would create 2" in out and "entry 1, field email" in out
    assert sql_ids(mysql_engine) == set() and prod.scard(keys.ACCOUNT_KEYS) == 0
    code, out = run("--file", path, "--skip-invalid")
    assert code == EXIT_OK and "2 created" in out
    assert sql_ids(mysql_engine) == {account_id(KEYS[0]), account_id(KEYS[2])}
    assert {m.decode() for m in prod.smembers(keys.ACCOUNT_KEYS)} == {account_id(KEYS[0]), account_id(KEYS[2])}


def test_reimport_is_idempotent_and_updates_limits(prod: Any, tmp_path: Path, mysql_engine: Any) -> None:
    path = write(tmp_path, [entry(KEYS[0]), entry(KEYS[1], project="proj")])
    assert run("--file", path)[0] == EXIT_OK
    prod.hset(keys.account_info(account_id(KEYS[0])), "cooldown_until", "9999999999")  # live state survives
    code, out = run("--file", path)
    assert code == EXIT_OK and "0 created, 0 updated, 2 unchanged" in out
    path = write(tmp_path, [entry(KEYS[0], minute_limit=30, daily_limit=10), entry(KEYS[1], project="proj")])
    code, out = run("--file", path)
    assert code == EXIT_OK and "0 created, 1 updated, 1 unchanged" in out
    rows = {r.id: r for r in load_accounts(make_sessionmaker(mysql_engine))}
    assert len(rows) == 2 and rows[account_id(KEYS[0])].minute_limit == 30
    info = prod.hgetall(keys.account_info(account_id(KEYS[0])))
    assert info[b"minute_limit"] == b"30" and info[b"daily_limit"] == b"10"
    assert info[b"cooldown_until"] == b"9999999999" and prod.scard(keys.ACCOUNT_KEYS) == 2
    assert prod.hget(keys.account_info(account_id(KEYS[1])), "project") == b"proj"


def test_disable_enable_and_list(prod: Any, tmp_path: Path, mysql_engine: Any) -> None:
    run("--file", write(tmp_path, [entry(KEYS[0]), entry(KEYS[1], project="team-a")]))
    code, out = run("--disable", KEYS[0])  # by key
    assert code == EXIT_OK and f"account {account_id(KEYS[0])}: disabled" in out and KEYS[0] not in out
    assert prod.hget(keys.account_info(account_id(KEYS[0])), "status") == b"disabled"
    code, out = run("--list")
    assert code == EXIT_OK and mask_key(KEYS[0]) in out and "disabled" in out and "team-a" in out
    assert not any(k in out for k in KEYS) and "0/15" in out and "0/1500" in out
    # Re-importing keeps an operator's decision.
    run("--file", write(tmp_path, [entry(KEYS[0])]))
    assert prod.hget(keys.account_info(account_id(KEYS[0])), "status") == b"disabled"
    code, out = run("--enable", account_id(KEYS[0]))  # by id
    assert code == EXIT_OK and prod.hget(keys.account_info(account_id(KEYS[0])), "status") == b"active"
    rows = {r.id: r for r in load_accounts(make_sessionmaker(mysql_engine))}
    assert rows[account_id(KEYS[0])].status == "active"
    assert run("--disable", "AIzaSyUNKNOWNKEY")[0] == EXIT_UNKNOWN
    # A Redis loss: --list says so, --restore brings the pool back with statuses.
    run("--disable", KEYS[1])
    prod.flushdb()
    code, out = run("--list")
    assert "not in the Redis pool" in out
    code, out = run("--restore")
    assert code == EXIT_OK and "restored 2" in out
    assert prod.hget(keys.account_info(account_id(KEYS[1])), "status") == b"disabled"


def test_secrets_stay_out_of_redis_key_names_and_passwords_out_of_redis(prod: Any, tmp_path: Path,
                                                                         mysql_engine: Any) -> None:
    run("--file", write(tmp_path, [entry(k, project="p" if i % 2 else None) for i, k in enumerate(KEYS)]))
    names = [k.decode() for k in prod.scan_iter(match="*")]
    assert len(names) == len(KEYS) + 1  # the info hashes and the set (the lock is gone)
    assert not any(secret in name for name in names for secret in KEYS)
    for name in names:
        if prod.type(name) == b"hash":
            values = b" ".join(prod.hvals(name))
            assert PASSWORD.encode() not in values and b"scrypt" not in values
    with mysql_engine.connect() as conn:
        stored = conn.execute(text("SELECT password_hash FROM accounts")).scalars().all()
    assert stored and all(h.startswith("scrypt$") and PASSWORD not in h for h in stored)


def test_a_second_import_waits_for_the_lock_or_fails_clearly(prod: Any, tmp_path: Path, mysql_engine: Any) -> None:
    path = write(tmp_path, [entry(KEYS[0])])
    prod.set(keys.ACCOUNT_IMPORT_LOCK, "another-import", ex=60)
    started = time.monotonic()
    code, out = run("--file", path, "--lock-wait", "0.5")
    assert code == EXIT_LOCKED and "another account import holds google_accounts:import_lock" in out
    assert time.monotonic() - started >= 0.5 and sql_ids(mysql_engine) == set()
    # The holder finishes while the next import waits: it then goes through.
    threading.Timer(0.7, lambda: prod.delete(keys.ACCOUNT_IMPORT_LOCK)).start()
    code, out = run("--file", path, "--lock-wait", "10")
    assert code == EXIT_OK and "1 created" in out and prod.get(keys.ACCOUNT_IMPORT_LOCK) is None


def test_concurrent_imports_are_serialised(prod: Any, tmp_path: Path, mysql_engine: Any) -> None:
    """Three importer processes at once: the lock lets one create the accounts, the others see them."""
    paths = [write(tmp_path, [entry(k, minute_limit=10 + i) for k in KEYS], f"a{i}.json") for i in range(3)]
    procs = [subprocess.Popen([sys.executable, str(ROOT / "import_accounts.py"), "--file", p], cwd=tmp_path,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for p in paths]
    results = [(proc.wait(timeout=120), proc.communicate()[0]) for proc in procs]
    assert [c for c, _ in results] == [EXIT_OK] * 3, results
    created = sorted(int(o.split(" created")[0].rsplit(" ", 1)[-1]) for _, o in results)
    assert created == [0, 0, len(KEYS)]  # exactly one import created them; the others saw them
    assert len(sql_ids(mysql_engine)) == len(KEYS) and prod.scard(keys.ACCOUNT_KEYS) == len(KEYS)


def test_embedded_mode(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for var in ("DATABASE_URL", "REDIS_URL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "data"))
    monkeypatch.chdir(tmp_path)
    code, out = run("--file", write(tmp_path, [entry(KEYS[3])]))
    assert code == EXIT_OK and "1 created" in out
    code, out = run("--list")  # a fresh private redis-server reads the pool back from its append-only file
    assert code == EXIT_OK and mask_key(KEYS[3]) in out and "not in the Redis pool" not in out
    assert (tmp_path / "data" / "vision_to_tag.db").exists()


def test_entry_point_is_thin() -> None:
    proc = subprocess.run([sys.executable, str(ROOT / "import_accounts.py"), "--help"], capture_output=True,
                          text=True, timeout=60, cwd=ROOT)
    assert proc.returncode == 0 and "--skip-invalid" in proc.stdout and "google_accounts:import_lock" in proc.stdout
    proc = subprocess.run([sys.executable, str(ROOT / "import_accounts.py"), "--list", "--dry-run"],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert proc.returncode == 2 and "--dry-run" in proc.stderr
