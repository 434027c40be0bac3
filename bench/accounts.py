"""Gemini account pool against the quota, beside the seed's naive limiter, on one run.

Two loopback Gemini servers (tests/gemini_server.py) with the same K keys: per-minute
limits of 5-20 requests, one pair of keys sharing a Google Cloud project (one quota),
one key with a small daily limit. The quota is the bottleneck: demand always exceeds it.

  pool   P consumers, each its own GeminiProvider (real google-genai SDK, own Redis
         connection) running C analyses at a time through the Redis account pool
         (a private redis-server and SQLite in a temp dir)
  naive  P "processes", each round-robin over the keys with its own timestamp list per
         key (how the seed scripts do it), C calls at a time, the same request

Both run at once for --seconds. Counted by the servers, for requests that arrived in
the run: sent, served (200), quota violations (requests past a quota: 429).
Theoretical maximum: per quota group min(rpm * minutes, daily limit). Use whole minutes:
a 60 s sliding window admits a full minute's requests at the start of each minute, so a
run of 70 s can serve two minutes' worth. Wait: from asking for an account to getting one.

    .venv/bin/python bench/accounts.py [--seconds 180] [--accounts 6] [--consumers 3] [--concurrency 4]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import statistics
import sys
import tempfile
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.accounts import save_accounts, validate_entries  # noqa: E402
from app.config import Settings  # noqa: E402
from app.db import make_engine, make_sessionmaker, migrate  # noqa: E402
from app.embedded_redis import EmbeddedRedis  # noqa: E402
from app.errors import VttError  # noqa: E402
from app.media.frames import FramePlan, Frames  # noqa: E402
from app.media.probe import probe  # noqa: E402
from app.providers.base import MediaInput  # noqa: E402
from app.providers.gemini import PROMPT, GeminiProvider, response_schema  # noqa: E402
from tests.gemini_server import GeminiServer  # noqa: E402

RPMS = (5, 10, 15, 20, 8, 12)


@dataclass(frozen=True)
class KeySpec:
    key: str
    rpm: int
    rpd: int
    project: str | None


def key_specs(n: int) -> list[KeySpec]:
    """Keys 4 and 5 (of every 6) share a project; key 2 (of every 6) has a small daily limit."""
    out = []
    for i in range(n):
        rpm = RPMS[i % 6]
        out.append(KeySpec(f"AIzaSyBENCH{i:03d}-{'b' * 24}", rpm, 2 * rpm - 5 if i % 6 == 2 else 100_000,
                           f"shared-{i // 6}" if i % 6 in (4, 5) else None))
    return out


def theoretical(specs: list[KeySpec], seconds: float) -> int:
    groups: dict[str, tuple[int, int]] = {}
    for s in specs:
        g = s.project or s.key
        rpm, rpd = groups.get(g, (s.rpm, s.rpd))
        groups[g] = (min(rpm, s.rpm), min(rpd, s.rpd))
    return sum(min(math.floor(rpm * seconds / 60), rpd) for rpm, rpd in groups.values())


@dataclass
class Side:
    name: str
    server: GeminiServer
    waits: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)

    def error(self, code: str) -> None:
        self.errors[code] = self.errors.get(code, 0) + 1


class NaiveRoundRobin:
    """The seed's limiter: one per process, its own per-key timestamp list, no idea of projects."""

    def __init__(self, specs: list[KeySpec]) -> None:
        self.specs = specs
        self.stamps: dict[str, deque[float]] = {s.key: deque() for s in specs}
        self.today: dict[str, int] = {s.key: 0 for s in specs}
        self.i = 0

    async def key(self) -> str:
        while True:
            now = time.time()
            for _ in range(len(self.specs)):
                s = self.specs[self.i % len(self.specs)]
                self.i += 1
                stamps = self.stamps[s.key]
                while stamps and stamps[0] <= now - 60:
                    stamps.popleft()
                if len(stamps) < s.rpm and self.today[s.key] < s.rpd:
                    stamps.append(now)
                    self.today[s.key] += 1
                    return s.key
            await asyncio.sleep(1.0)  # every key busy: look again in a second


async def run_pool(side: Side, specs: list[KeySpec], media: MediaInput, args: argparse.Namespace, tmp: Path,
                   stop: asyncio.Event) -> None:
    redis_server = EmbeddedRedis(tmp / "redis")
    redis_url = redis_server.start()
    engine = make_engine(f"sqlite:///{tmp / 'bench.db'}")
    migrate(engine)
    sessions = make_sessionmaker(engine)
    entries = [{"api_key": s.key, "minute_limit": s.rpm, "daily_limit": s.rpd, "project": s.project,
                "username": "bench", "password": "bench", "phone": "0", "email": "bench@example.com"} for s in specs]
    good, problems = validate_entries(entries)
    assert not problems, problems
    report = save_accounts(sessions, [spec for _i, spec in good])
    settings = Settings(_env_file=None, tagger="gemini", data_dir=tmp / "data", redis_url=redis_url,
                        database_url=f"sqlite:///{tmp / 'bench.db'}", gemini_base_url=side.server.base_url,
                        gemini_pool_wait_s=150.0, gemini_timeout_s=30.0)
    providers = [GeminiProvider(settings, sessions=sessions) for _ in range(args.consumers)]
    await (await providers[0].pool()).put(report.records)

    async def loop(provider: GeminiProvider) -> None:
        while not stop.is_set():
            try:
                out = await provider.analyse(media, lambda _s, _f: None)
                side.waits.append(out.usage["pool_wait_s"])
            except VttError as exc:
                side.error(exc.code)
                await asyncio.sleep(min(exc.retry_after or 1.0, 5.0))

    jobs = [asyncio.create_task(loop(p)) for p in providers for _ in range(args.concurrency)]
    await stop.wait()
    for j in jobs:
        j.cancel()
    await asyncio.gather(*jobs, return_exceptions=True)
    for p in providers:
        await p.close()
    engine.dispose()
    redis_server.stop()


async def run_naive(side: Side, specs: list[KeySpec], media: MediaInput, args: argparse.Namespace,
                    stop: asyncio.Event) -> None:
    from google import genai
    from google.genai import errors, types

    clients = {s.key: genai.Client(api_key=s.key, http_options=types.HttpOptions(
        base_url=side.server.base_url, timeout=30_000, retry_options=types.HttpRetryOptions(attempts=1)))
        for s in specs}
    data = media.path.read_bytes()
    contents: list[Any] = [types.Part.from_bytes(data=data, mime_type="video/mp4"), PROMPT.format(max_tags=40)]
    config = types.GenerateContentConfig(response_mime_type="application/json", response_schema=response_schema(),
                                         automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True))

    async def loop(limiter: NaiveRoundRobin) -> None:
        while not stop.is_set():
            t = time.monotonic()
            key = await limiter.key()
            side.waits.append(time.monotonic() - t)
            try:
                await clients[key].aio.models.generate_content(model="gemini-2.0-flash", contents=contents,
                                                               config=config)
            except errors.APIError as exc:
                side.error(str(exc.code))
                await asyncio.sleep(1.0)

    limiters = [NaiveRoundRobin(specs) for _ in range(args.consumers)]
    jobs = [asyncio.create_task(loop(lim)) for lim in limiters for _ in range(args.concurrency)]
    await stop.wait()
    for j in jobs:
        j.cancel()
    await asyncio.gather(*jobs, return_exceptions=True)
    for c in clients.values():
        await c.aio.aclose()


def pct(values: list[float], q: int) -> float:
    if len(values) < 2:
        return values[0] if values else float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


async def main_async(args: argparse.Namespace) -> int:
    specs = key_specs(args.accounts)
    path = ROOT.parent / "shared" / "corpus" / "containers" / "bbb_clip.mp4"
    media = MediaInput(path=path, probe=await probe(path, 20), frames=Frames(FramePlan((), 2, 2), []),
                       dimensions="all", windows=[])
    sides = {}
    for name in ("pool", "naive"):
        server = GeminiServer()
        for s in specs:
            server.add_key(s.key, rpm=s.rpm, rpd=s.rpd, project=s.project)
            server.default(s.key, f"slow:{args.latency}")
        await server.start()
        sides[name] = Side(name, server)
    stop = asyncio.Event()
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.time()
        runs = [asyncio.create_task(run_pool(sides["pool"], specs, media, args, Path(tmp), stop)),
                asyncio.create_task(run_naive(sides["naive"], specs, media, args, stop))]
        await asyncio.sleep(args.seconds)
        t1 = time.time()
        stop.set()
        await asyncio.gather(*runs)
    best = theoretical(specs, args.seconds)
    rows: dict[str, list[str]] = {}
    for side in sides.values():
        log = [e for e in side.server.log if t0 <= e["t"] < t1]
        served = sum(1 for e in log if e["status"] == 200)
        violations = sum(1 for e in log if e.get("violation"))
        rows.setdefault("requests sent", []).append(str(len(log)))
        rows.setdefault("requests served", []).append(str(served))
        rows.setdefault("theoretical maximum", []).append(str(best))
        rows.setdefault("utilisation", []).append(f"{100 * served / best:.1f} %")
        rows.setdefault("quota violations (429)", []).append(str(violations))
        rows.setdefault("wait for an account p50", []).append(f"{pct(side.waits, 50):.2f} s")
        rows.setdefault("wait for an account p95", []).append(f"{pct(side.waits, 95):.2f} s")
        rows.setdefault("errors seen by callers", []).append(
            ", ".join(f"{k}: {v}" for k, v in sorted(side.errors.items())) or "-")
        await side.server.stop()
    groups = len({s.project or s.key for s in specs})
    print(f"{len(specs)} keys in {groups} quota groups, rpm {min(s.rpm for s in specs)}-{max(s.rpm for s in specs)}, "
          f"shared projects and a daily cap; {args.consumers} consumers x {args.concurrency} at a time; "
          f"reply latency {args.latency} s; {args.seconds:.0f} s of real time; pool window margin "
          f"{Settings(_env_file=None).gemini_window_margin_s} s")
    print(f"{'':28}{'pool':>14}{'naive':>14}")
    for label, (a, b) in rows.items():
        if len(a) > 14 or len(b) > 14:
            print(f"{label:28}{a:>14}\n{'':28}{b:>14}")
        else:
            print(f"{label:28}{a:>14}{b:>14}")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=180.0, help="run length (default 180)")
    p.add_argument("--accounts", type=int, default=6, help="number of keys (default 6)")
    p.add_argument("--consumers", type=int, default=3, help="consumer processes simulated (default 3)")
    p.add_argument("--concurrency", type=int, default=4, help="analyses at a time per consumer (default 4)")
    p.add_argument("--latency", type=float, default=0.2, help="the server's reply latency, s (default 0.2)")
    args = p.parse_args(argv)
    if args.seconds % 60:
        print(f"note: {args.seconds:.0f} s is not whole minutes; utilisation can read above 100 %", file=sys.stderr)
    logging.basicConfig(level=logging.ERROR)
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
