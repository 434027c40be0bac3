"""Chaos harness: does any accepted task get lost, stuck or duplicated when things die?

It starts its own Redis and MariaDB on spare ports (so it may kill them), the API
(`python main.py`, production mode) and 3 consumers (`python -m consumer`), and a local
media server. It submits N tasks; meanwhile it SIGKILLs a random consumer every few
seconds and starts a new one, restarts Redis once (its data is lost: the machines' Redis
keeps nothing on disk) and MariaDB once (its data is kept: it is the record). Then it
waits for the queue to drain and prints:

  accepted   the API answered 200            completed / failed (by error code)
  lost       accepted, but neither terminal in SQL nor held anywhere in Redis
  stuck      not terminal when the drain deadline passed
  duplicate executions   extra downloads of the same task (harmless by design)
  duplicate results      more than one result row, or repeated tags, for one task;
                         or a terminal task whose Redis status contradicts SQL

    .venv/bin/python bench/chaos.py [--tasks 2000] [--kill-every 4] [--drain 600]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from aiohttp import web

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.loopback import serve  # noqa: E402

MARIADBD = shutil.which("mariadbd") or "/usr/sbin/mariadbd"
INSTALL_DB = shutil.which("mariadb-install-db") or "/usr/bin/mariadb-install-db"
TINY = ROOT.parent / "shared" / "corpus" / "hostile" / "tiny_valid_1frame_64x36.mp4"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Services:
    work: Path
    redis_port: int = field(default_factory=free_port)
    mysql_port: int = field(default_factory=free_port)
    api_port: int = field(default_factory=free_port)
    redis: subprocess.Popen[bytes] | None = None
    mysql: subprocess.Popen[bytes] | None = None
    api: subprocess.Popen[bytes] | None = None
    consumers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    spawned: int = 0

    @property
    def database_url(self) -> str:
        return f"mysql+pymysql://root@127.0.0.1:{self.mysql_port}/vtt"

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.redis_port}/0"

    def start_redis(self) -> None:
        self.redis = subprocess.Popen(["redis-server", "--port", str(self.redis_port), "--bind", "127.0.0.1",
                                       "--save", "", "--appendonly", "no", "--dir", str(self.work)],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_port(self.redis_port)

    def start_mysql(self, init: bool = False) -> None:
        data = self.work / "mysql"
        if init:
            subprocess.run([INSTALL_DB, "--no-defaults", f"--datadir={data}", "--user=root",
                            "--auth-root-authentication-method=normal", "--skip-test-db"],
                           check=True, capture_output=True)
        self.mysql = subprocess.Popen(
            [MARIADBD, "--no-defaults", f"--datadir={data}", "--user=root", f"--port={self.mysql_port}",
             "--bind-address=127.0.0.1", f"--socket={self.work / 'mysql.sock'}", "--skip-log-bin",
             "--innodb-buffer-pool-size=64M", "--max-connections=500", f"--pid-file={self.work / 'mysql.pid'}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_port(self.mysql_port, timeout=60)
        if init:
            import pymysql

            conn = pymysql.connect(host="127.0.0.1", port=self.mysql_port, user="root")
            with conn.cursor() as cur:
                cur.execute("CREATE DATABASE vtt CHARACTER SET utf8mb4")
            conn.close()

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "REDIS_"))}
        env.update(DATABASE_URL=self.database_url, REDIS_URL=self.redis_url, DATA_DIR=str(self.work / "data"),
                   MODEL_DIR=str(ROOT / "data" / "models"), DOWNLOAD_ALLOWED_HOSTS="127.0.0.1", LOG_LEVEL="WARNING",
                   DEDUP_TTL_S="0", TASK_LEASE_S="10", RECONCILE_INTERVAL_S="5", RECONCILE_GRACE_S="10",
                   SEARCH_SEMANTIC="false", CONSUMER_CONCURRENCY="2", SHUTDOWN_GRACE_S="5", **extra)
        return env

    def start_api(self) -> None:
        log = open(self.work / "api.log", "ab")
        self.api = subprocess.Popen([sys.executable, "main.py", "--port", str(self.api_port)], cwd=ROOT,
                                    env=self.env(), stdout=log, stderr=subprocess.STDOUT)
        _wait_port(self.api_port, timeout=120)

    def start_consumer(self) -> None:
        self.spawned += 1
        log = open(self.work / f"consumer-{self.spawned}.log", "ab")
        self.consumers.append(subprocess.Popen([sys.executable, "-m", "consumer"], cwd=ROOT, env=self.env(),
                                               stdout=log, stderr=subprocess.STDOUT))

    def kill_random_consumer(self, rng: random.Random) -> None:
        alive = [p for p in self.consumers if p.poll() is None]
        if alive:
            victim = rng.choice(alive)
            victim.send_signal(signal.SIGKILL)
            victim.wait()

    def restart_redis(self) -> None:
        assert self.redis is not None
        self.redis.send_signal(signal.SIGKILL)
        self.redis.wait()
        self.start_redis()

    def restart_mysql(self) -> None:
        assert self.mysql is not None
        self.mysql.send_signal(signal.SIGKILL)
        self.mysql.wait()
        self.start_mysql()

    def stop_all(self) -> None:
        procs = [*self.consumers, self.api, self.redis, self.mysql]
        for p in procs:
            if p is not None and p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            if p is not None:
                try:
                    p.wait(30)
                except subprocess.TimeoutExpired:
                    p.kill()


def _wait_port(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port} after {timeout} s")


class Media:
    """Serves the same tiny video under /v/{n}.mp4 and counts downloads per task."""

    def __init__(self) -> None:
        self.hits: Counter[str] = Counter()
        self.port = 0
        self.runner: web.AppRunner | None = None
        self.body = TINY.read_bytes()

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/v/{n}.mp4", self.video)
        self.runner, self.port = await serve(app)

    async def video(self, request: web.Request) -> web.Response:
        self.hits[request.match_info["n"]] += 1
        return web.Response(body=self.body, content_type="video/mp4")

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


async def submit_all(api: str, media: Media, n: int, accepted: dict[str, str], refused: Counter[str]) -> None:
    sem = asyncio.Semaphore(16)
    async with httpx.AsyncClient(base_url=api, timeout=30) as client:
        async def one(i: int) -> None:
            async with sem:
                for _attempt in range(30):  # a client retries what was refused (503 during an outage)
                    try:
                        r = await client.post("/api/v1/task/create", json={
                            "url": f"http://127.0.0.1:{media.port}/v/{i}.mp4", "platform": "chaos", "uid": i,
                            "dimensions": "vision"})
                    except httpx.TransportError:
                        refused["transport"] += 1
                        await asyncio.sleep(1)
                        continue
                    if r.status_code == 200:
                        accepted[r.json()["task_id"]] = str(i)
                        return
                    refused[str(r.status_code)] += 1
                    await asyncio.sleep(1)

        await asyncio.gather(*(one(i) for i in range(n)))


async def chaos(svc: Services, rng: random.Random, stop: asyncio.Event, kill_every: float, log: list[str],
                redis_at: float, mysql_at: float) -> None:
    t0 = time.monotonic()
    redis_done = mysql_done = False
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), kill_every)
            break
        except TimeoutError:
            pass
        elapsed = time.monotonic() - t0
        svc.kill_random_consumer(rng)
        svc.start_consumer()
        log.append(f"{elapsed:6.1f}s SIGKILL a consumer, started another")
        if not redis_done and elapsed >= redis_at:
            await asyncio.to_thread(svc.restart_redis)
            redis_done = True
            log.append(f"{elapsed:6.1f}s Redis killed and restarted empty")
        if not mysql_done and elapsed >= mysql_at:
            await asyncio.to_thread(svc.restart_mysql)
            mysql_done = True
            log.append(f"{elapsed:6.1f}s MariaDB killed and restarted")


def census(svc: Services, accepted: dict[str, str], media: Media) -> dict[str, Any]:
    import pymysql
    import redis as redis_sync

    conn = pymysql.connect(host="127.0.0.1", port=svc.mysql_port, user="root", database="vtt")
    with conn.cursor() as cur:
        cur.execute("SELECT id, status, error_code FROM tasks WHERE platform='chaos'")
        rows = {r[0]: (r[1], r[2]) for r in cur.fetchall()}
        cur.execute("SELECT task_id, COUNT(*) FROM results GROUP BY task_id HAVING COUNT(*) > 1")
        dup_results = len(cur.fetchall())
        cur.execute("SELECT COUNT(*) FROM (SELECT task_id, name FROM tags GROUP BY task_id, name HAVING COUNT(*) > 1) d")
        dup_tags = int(cur.fetchone()[0])
    conn.close()
    r = redis_sync.Redis.from_url(svc.redis_url)
    from app import keys

    held = {x.decode() for x in r.lrange(keys.TASK_QUEUE, 0, -1)}
    held |= {x.decode() for x in r.zrange(keys.TASK_QUEUE_DELAYED, 0, -1)}
    for k in r.scan_iter(match=keys.PROCESSING_PREFIX + "*"):
        held |= {x.decode() for x in r.lrange(k, 0, -1)}
    completed = failed = lost = stuck = contradictions = 0
    codes: Counter[str] = Counter()
    for task_id in accepted:
        status, code = rows.get(task_id, (None, None))
        if status == "completed":
            completed += 1
        elif status == "failed":
            failed += 1
            codes[code or "?"] += 1
        elif task_id in held:
            stuck += 1
        else:
            lost += 1
        if status in ("completed", "failed"):
            info = r.hget(keys.task_info(task_id), "status")
            if info is not None and info.decode() != status:
                contradictions += 1
    executions = sum(media.hits[accepted[t]] for t in accepted)
    duplicate_exec = sum(max(0, media.hits[accepted[t]] - 1) for t in accepted)
    return {"accepted": len(accepted), "completed": completed, "failed": failed, "failed_by_code": dict(codes),
            "lost": lost, "stuck": stuck, "executions": executions, "duplicate_executions": duplicate_exec,
            "duplicate_results": dup_results + dup_tags + contradictions}


async def run(tasks: int, kill_every: float, drain_s: float, seed: int = 7) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="vtt-chaos-"))
    svc = Services(work)
    media = Media()
    rng = random.Random(seed)
    events: list[str] = []
    accepted: dict[str, str] = {}
    refused: Counter[str] = Counter()
    try:
        svc.start_redis()
        svc.start_mysql(init=True)
        svc.start_api()
        for _ in range(3):
            svc.start_consumer()
        await media.start()
        api = f"http://127.0.0.1:{svc.api_port}"
        stop = asyncio.Event()
        t0 = time.monotonic()
        expected_s = max(20.0, tasks * 0.05)
        chaos_job = asyncio.create_task(chaos(svc, rng, stop, kill_every, events,
                                              redis_at=expected_s * 0.3, mysql_at=expected_s * 0.6))
        await submit_all(api, media, tasks, accepted, refused)
        submitted_s = time.monotonic() - t0
        # Keep the chaos going until both restarts happened, then let the queue drain.
        while not chaos_job.done() and not any("MariaDB" in e for e in events):
            await asyncio.sleep(0.5)
        stop.set()
        await chaos_job
        deadline = time.monotonic() + drain_s
        async with httpx.AsyncClient(base_url=api, timeout=10) as client:
            while time.monotonic() < deadline:
                try:
                    stats = (await client.get("/api/v1/queue/stats")).json()["data"]
                    pending = (await client.get("/api/v1/tasks", params={"status": "pending", "page_size": 1})).json()
                    processing = (await client.get("/api/v1/tasks", params={"status": "processing", "page_size": 1})).json()
                    if pending["data"]["total"] == 0 and processing["data"]["total"] == 0 and stats["delayed"] == 0:
                        break
                except (httpx.TransportError, KeyError, ValueError):
                    pass
                await asyncio.sleep(1)
        result = census(svc, accepted, media)
        result.update(seconds=round(time.monotonic() - t0, 1), submit_seconds=round(submitted_s, 1),
                      consumers_started=svc.spawned, refused_while_down=dict(refused), events=events)
        return result
    finally:
        await media.stop()
        svc.stop_all()
        shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", type=int, default=2000)
    p.add_argument("--kill-every", type=float, default=4.0, help="seconds between consumer SIGKILLs")
    p.add_argument("--drain", type=float, default=600.0, help="seconds to wait for the queue to drain")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    result = asyncio.run(run(args.tasks, args.kill_every, args.drain))
    if args.json:
        print(json.dumps(result))
    else:
        for e in result.pop("events"):
            print("  " + e)
        for k, v in result.items():
            print(f"{k:24} {v}")
    ok = result["lost"] == 0 and result["stuck"] == 0 and result["duplicate_results"] == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
