"""Ingest of many links from one server with uneven latency: our way against the seed's.

    .venv/bin/python bench/batch.py --links 200 --group 8 --server-limit 6

A loopback server serves `--links` videos (`--size-kb` each) with a deterministic, uneven
latency (most answers fast, one in ten slow: 1-3 s) and refuses (503, Retry-After) requests
beyond `--server-limit` at once, like the seed's host did. Both sides run on the same
server in the same process, one after the other:

  seed  asyncio.gather over fixed groups of `--group` links, plain aiohttp, no retry: every
        group waits for its slowest member, and a refusal is a lost link
  ours  app.media.download.Downloader (the service's download stage) with the service's
        defaults: a sliding window of DOWNLOAD_CONCURRENCY, DOWNLOAD_PER_HOST per host,
        retries that honour Retry-After; the batch CLI likewise refills a slot as soon as
        a task finishes

Prints wall time, links fetched and lost for each side, and the ratio of wall times.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.config import Settings  # noqa: E402
from app.media.download import Downloader  # noqa: E402
from app.media.netguard import Policy  # noqa: E402
from tests.loopback import serve  # noqa: E402


class SlowServer:
    def __init__(self, n: int, size: int, limit: int, seed: int = 8) -> None:
        rng = random.Random(seed)
        self.delays = [rng.uniform(1.0, 3.0) if rng.random() < 0.1 else rng.uniform(0.02, 0.2) for _ in range(n)]
        self.body = b"\x00\x00\x00\x18ftypmp42" + bytes(max(0, size - 12))
        self.limit, self.active, self.refused = limit, 0, 0
        self.runner: web.AppRunner | None = None
        self.port = 0

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/v/{i}.mp4", self.video)
        self.runner, self.port = await serve(app)

    async def video(self, request: web.Request) -> web.StreamResponse:
        if self.active >= self.limit:
            self.refused += 1
            return web.Response(status=503, text="busy", headers={"Retry-After": "0.2"})
        self.active += 1
        try:
            await asyncio.sleep(self.delays[int(request.match_info["i"])])
            return web.Response(body=self.body, content_type="video/mp4")
        finally:
            self.active -= 1

    def urls(self) -> list[str]:
        return [f"http://127.0.0.1:{self.port}/v/{i}.mp4" for i in range(len(self.delays))]


async def seed_way(urls: list[str], group: int, folder: Path) -> tuple[float, int]:
    ok = 0
    t0 = time.perf_counter()
    async with aiohttp.ClientSession() as session:
        async def fetch(i: int, url: str) -> bool:
            try:
                async with session.get(url) as r:
                    if r.status != 200:
                        return False
                    (folder / f"seed{i}.mp4").write_bytes(await r.read())
                    return True
            except aiohttp.ClientError:
                return False

        for k in range(0, len(urls), group):
            ok += sum(await asyncio.gather(*(fetch(k + j, u) for j, u in enumerate(urls[k:k + group]))))
    return time.perf_counter() - t0, ok


async def our_way(urls: list[str], folder: Path) -> tuple[float, int]:
    s = Settings(_env_file=None)  # type: ignore[call-arg]
    dl = Downloader(policy=Policy(frozenset({"127.0.0.1"})), max_bytes=s.max_video_bytes,
                    concurrency=s.download_concurrency, per_host=s.download_per_host, retries=s.download_retries)
    t0 = time.perf_counter()

    async def fetch(i: int, url: str) -> bool:
        try:
            await dl.fetch(url, folder / f"ours{i}.mp4")
            return True
        except Exception:
            return False

    try:
        ok = sum(await asyncio.gather(*(fetch(i, u) for i, u in enumerate(urls))))
    finally:
        await dl.close()
    return time.perf_counter() - t0, ok


async def main(args: argparse.Namespace) -> None:
    server = SlowServer(args.links, args.size_kb * 1024, args.server_limit)
    await server.start()
    urls = server.urls()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        seed_s, seed_ok = await seed_way(urls, args.group, folder)
        seed_refused, server.refused = server.refused, 0
        ours_s, ours_ok = await our_way(urls, folder)
    assert server.runner is not None
    await server.runner.cleanup()
    n = len(urls)
    print(f"{n} links, {args.size_kb} KB each, server: {args.server_limit} at once, "
          f"latency sum {sum(server.delays):.1f} s (slow ones: {sum(d > 1 for d in server.delays)})")
    print(f"seed (gather in groups of {args.group}): {seed_s:7.2f} s  fetched {seed_ok}/{n}  lost {n - seed_ok}  "
          f"refusals {seed_refused}")
    print(f"ours (sliding window, retries): {ours_s:7.2f} s  fetched {ours_ok}/{n}  lost {n - ours_ok}  "
          f"refusals {server.refused}")
    print(f"wall-time ratio seed/ours: {seed_s / ours_s:.2f}x")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--links", type=int, default=200)
    p.add_argument("--group", type=int, default=8, help="the seed's fixed group size N")
    p.add_argument("--server-limit", type=int, default=6, help="requests the server serves at once")
    p.add_argument("--size-kb", type=int, default=256)
    asyncio.run(main(p.parse_args()))
