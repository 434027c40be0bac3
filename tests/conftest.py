"""Shared fixtures: the real Redis and MariaDB on this machine, the real corpus, a media server.

Environment (all optional):
  TEST_REDIS_URL   default redis://127.0.0.1:6379/15 (the database is flushed by tests)
  TEST_MYSQL_URL   default mysql+pymysql://root@127.0.0.1:3306 ; TEST_MYSQL_DB default vtt_test
  CORPUS_DIR       default ../shared/corpus beside the repository
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pymysql
import pytest
import redis as redis_sync
from aiohttp import web
from sqlalchemy import text

from app.config import Settings
from app.db import make_engine, make_sessionmaker, migrate
from app.store import Store
from tests.loopback import serve

ROOT = Path(__file__).resolve().parents[1]
CORPUS = Path(os.environ.get("CORPUS_DIR", ROOT.parent / "shared" / "corpus")).resolve()
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
MYSQL_SERVER = os.environ.get("TEST_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306")
MYSQL_DB = os.environ.get("TEST_MYSQL_DB", "vtt_test")
MYSQL_URL = f"{MYSQL_SERVER}/{MYSQL_DB}"


def manifest() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((CORPUS / "manifest.json").read_text())
    return data


def corpus_files(category: str | None = None) -> list[dict[str, Any]]:
    return [f for f in manifest()["files"] if category is None or f["category"] == category]


@pytest.fixture(scope="session")
def corpus() -> Path:
    if not (CORPUS / "manifest.json").exists():
        pytest.fail(f"the test corpus is missing at {CORPUS} (set CORPUS_DIR)")
    return CORPUS


@pytest.fixture
def redis_url() -> Iterator[str]:
    client = redis_sync.Redis.from_url(REDIS_URL)
    try:
        client.flushdb()
    except redis_sync.ConnectionError as exc:
        pytest.fail(f"Redis is not reachable at {REDIS_URL}: {exc}")
    yield REDIS_URL
    client.flushdb()
    client.close()


def _create_mysql_db() -> None:
    from sqlalchemy.engine import make_url

    u = make_url(MYSQL_SERVER)
    conn = pymysql.connect(host=u.host or "127.0.0.1", port=u.port or 3306, user=u.username or "root",
                           password=u.password or "")
    with conn.cursor() as cur:  # a fresh database each run: no schema left over from other branches
        cur.execute(f"DROP DATABASE IF EXISTS `{MYSQL_DB}`")
        cur.execute(f"CREATE DATABASE `{MYSQL_DB}` CHARACTER SET utf8mb4")
    conn.close()


@pytest.fixture(scope="session")
def mysql_engine() -> Iterator[Any]:
    try:
        _create_mysql_db()
    except pymysql.err.OperationalError as exc:
        pytest.fail(f"MariaDB is not reachable at {MYSQL_SERVER}: {exc}")
    engine = make_engine(MYSQL_URL)
    migrate(engine)
    yield engine
    engine.dispose()


def _clean(engine: Any) -> None:
    with engine.begin() as conn:
        for table in ("tags", "results", "tasks", "videos"):
            conn.execute(text(f"DELETE FROM {table}"))


@pytest.fixture(params=["sqlite", "mysql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """The same Store contract over both SQL backends."""
    if request.param == "sqlite":
        engine = make_engine(f"sqlite:///{tmp_path / 'test.db'}")
        migrate(engine)
    else:
        engine = request.getfixturevalue("mysql_engine")
        _clean(engine)
    yield Store(make_sessionmaker(engine))
    if request.param == "sqlite":
        engine.dispose()


@pytest.fixture
def mysql_store(mysql_engine: Any) -> Store:
    _clean(mysql_engine)
    return Store(make_sessionmaker(mysql_engine))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class MediaServer:
    """A loopback HTTP server that serves the corpus and some misbehaving routes."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.hits: dict[str, int] = {}
        self.port = 0
        self.runner: web.AppRunner | None = None

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/{path.lstrip('/')}"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/corpus/{path:.+}", self.corpus)
        app.router.add_get("/redirect", self.redirect)
        app.router.add_get("/status/{code}", self.status)
        app.router.add_get("/flaky/{path:.+}", self.flaky)
        app.router.add_get("/big", self.big)
        app.router.add_get("/html", self.html)
        self.runner, self.port = await serve(app)

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

    def _count(self, request: web.Request) -> None:
        self.hits[request.path] = self.hits.get(request.path, 0) + 1

    async def corpus(self, request: web.Request) -> web.StreamResponse:
        self._count(request)
        path = (self.root / request.match_info["path"]).resolve()
        if not path.is_relative_to(self.root) or not path.is_file():
            raise web.HTTPNotFound()
        return web.FileResponse(path)

    async def redirect(self, request: web.Request) -> web.StreamResponse:
        self._count(request)
        raise web.HTTPFound(request.query["to"])

    async def status(self, request: web.Request) -> web.StreamResponse:
        self._count(request)
        return web.Response(status=int(request.match_info["code"]), text="nope")

    async def flaky(self, request: web.Request) -> web.StreamResponse:
        """Fails with 503 on the first request of each path, then serves the corpus file."""
        self._count(request)
        if self.hits[request.path] == 1:
            return web.Response(status=503, text="busy", headers={"Retry-After": "0"})
        return web.FileResponse(self.root / request.match_info["path"])

    async def big(self, request: web.Request) -> web.StreamResponse:
        """Streams an endless MP4-looking body without Content-Length (chunked)."""
        self._count(request)
        resp = web.StreamResponse()
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        await resp.write(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 4084)
        for _ in range(4096):
            try:
                await resp.write(b"\x00" * 65536)
            except (ConnectionResetError, RuntimeError):
                break
        return resp

    async def html(self, request: web.Request) -> web.StreamResponse:
        self._count(request)
        return web.Response(text="<!doctype html><html><body>" + "x" * 8000 + "</body></html>",
                            content_type="text/html")


@pytest.fixture
async def media_server(corpus: Path) -> AsyncIterator[MediaServer]:
    server = MediaServer(corpus)
    await server.start()
    yield server
    await server.stop()


def make_settings(tmp_path: Path, **overrides: Any) -> Settings:
    """Settings for tests: isolated DATA_DIR, loopback media server allowed."""
    values: dict[str, Any] = {"data_dir": tmp_path / "data", "download_allowed_hosts": "127.0.0.1",
                              "download_retries": 1, "sync_wait_s": 30.0}
    values.update(overrides)
    return Settings(_env_file=None, **values)


async def wait_for(predicate: Any, timeout: float = 60.0, interval: float = 0.1) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await predicate()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(interval)


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One exported-model folder for the whole run (the ONNX export takes seconds)."""
    return Path(os.environ.get("TEST_MODEL_DIR") or tmp_path_factory.mktemp("models"))
