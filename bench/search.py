"""Search bench: indexing throughput and query latency at N synthetic result documents.

    .venv/bin/python bench/search.py [--docs 10000] [--queries 50] [--backend embedded|elastic|both]
                                     [--es-url URL] [--embed 500]

Documents are synthetic but shaped like pipeline results (schema v1: tags with ranges,
on-screen text, a transcript), in English and Chinese. The elastic backend runs against
`osmem-server` (the in-memory test stand-in) unless --es-url points at a real cluster:
osmem figures say nothing about Elasticsearch's speed. --embed N also times MiniLM on N
documents (semantic indexing cost). Prints one table; nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import random
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.search.base import SearchIndex  # noqa: E402
from app.search.documents import TaskFacts, build_search_document, make_query  # noqa: E402

WORDS = ("cat dog park beach city night music dance food cooking street car train mountain river snow rain "
         "sunset phone game football basketball guitar piano party wedding baby puppy kitten bird flower "
         "market office school travel hotel airport bridge tower festival fireworks garden kitchen").split()
ZH = ["北京", "上海", "欢迎", "美食", "旅行", "音乐", "跳舞", "城市", "夜景", "大海", "火锅", "熊猫", "地铁",
      "新品", "发布", "直播", "优惠", "今天", "朋友", "生日", "快乐", "学习", "健身", "电影"]
PLATFORMS = ["douyin", "tiktok", "kuaishou", "bilibili", "youtube"]
BASE = dt.datetime(2025, 1, 1)


def synthetic(i: int, rng: random.Random) -> dict[str, Any]:
    task_id = uuid.UUID(int=rng.getrandbits(128)).hex
    duration = rng.uniform(5, 120)
    tags = []
    for name in rng.sample(WORDS + ZH, rng.randint(3, 10)):
        ranges = sorted([round(s, 2), round(s + rng.uniform(0.5, 5), 2)] for s in
                        (rng.uniform(0, duration) for _ in range(rng.randint(1, 3))))
        tags.append({"name": name, "confidence": round(rng.uniform(0.2, 1), 3), "sources": ["visual"],
                     "ranges": ranges, "count": len(ranges)})
    tags.sort(key=lambda t: -float(t["confidence"]))  # type: ignore[arg-type]

    def seg(zh: bool) -> dict[str, Any]:
        s = rng.uniform(0, duration)
        text = "".join(rng.sample(ZH, rng.randint(2, 5))) if zh else " ".join(rng.choices(WORDS, k=rng.randint(3, 9)))
        return {"text": text, "confidence": 0.9, "start_s": round(s, 2), "end_s": round(s + rng.uniform(1, 4), 2)}

    result = {"schema_version": 1, "task_id": task_id, "provider": "local", "dimensions": "all",
              "video": {"duration_s": duration}, "tags": tags,
              "text": [seg(rng.random() < 0.6) for _ in range(rng.randint(2, 8))],
              "transcript": [seg(False) for _ in range(rng.randint(0, 6))]}
    facts = TaskFacts(task_id=task_id, platform=rng.choice(PLATFORMS), uid=rng.randint(1, 500), env="prod",
                      source="url", dimensions="all", created_at=BASE + dt.timedelta(minutes=rng.randint(0, 525600)))
    return build_search_document(facts, result)


QUERIES: dict[str, dict[str, Any]] = {
    "newest, platform filter": {"platform": "tiktok"},
    "english word": {"q": "guitar"},
    "english 2 words": {"q": "sunset beach"},
    "chinese 2 chars": {"q": "火锅"},
    "chinese 4 chars": {"q": "北京欢迎"},
    "word + tag + dates": {"q": "music", "tags": "dog", "from_": "2025-03-01", "to": "2025-09-30"},
}


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


async def run(index: SearchIndex, docs: list[dict[str, Any]], n_queries: int, batch: int) -> dict[str, Any]:
    await index.open()
    t0 = time.perf_counter()
    for k in range(0, len(docs), batch):
        failed = await index.upsert(docs[k:k + batch])
        assert not failed, failed
    await index.refresh()
    index_s = time.perf_counter() - t0
    assert await index.count() == len(docs)
    out: dict[str, Any] = {"docs_per_s": len(docs) / index_s, "index_s": index_s, "queries": {}}
    for name, params in QUERIES.items():
        query = make_query(limit=20, **params)
        page = await index.search(query)  # warm
        times = []
        for _ in range(n_queries):
            t = time.perf_counter()
            await index.search(query)
            times.append((time.perf_counter() - t) * 1000)
        out["queries"][name] = (page.total, pct(times, 50), pct(times, 95))
    return out


async def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--docs", type=int, default=10_000)
    p.add_argument("--queries", type=int, default=50, help="timed runs per query kind")
    p.add_argument("--batch", type=int, default=500)
    p.add_argument("--backend", choices=["embedded", "elastic", "both"], default="both")
    p.add_argument("--es-url", help="a real Elasticsearch 9 (default: start osmem-server)")
    p.add_argument("--embed", type=int, default=0, help="also time MiniLM on this many documents")
    args = p.parse_args(argv)

    rng = random.Random(6)
    t = time.perf_counter()
    docs = [synthetic(i, rng) for i in range(args.docs)]
    build_s = time.perf_counter() - t
    units = sum(len(d["moments"]) for d in docs)
    print(f"{args.docs} synthetic documents ({units / args.docs:.1f} moments each), built in {build_s:.2f} s "
          f"({args.docs / build_s:,.0f} docs/s)")

    if args.embed:
        from app.search.embeddings import Embedder

        with tempfile.TemporaryDirectory() as tmp:
            embedder = Embedder(Path(tmp))
            embedder.embed(["warm up"])
            texts = [d["embedding_text"] for d in docs[: args.embed]]
            t = time.perf_counter()
            embedder.embed(texts)
            print(f"MiniLM (onnxruntime): {len(texts) / (time.perf_counter() - t):,.0f} docs/s")

    results: dict[str, dict[str, Any]] = {}
    if args.backend in ("embedded", "both"):
        from app.search.embedded import EmbeddedIndex

        with tempfile.TemporaryDirectory() as tmp:
            results["embedded (SQLite FTS5)"] = await run(EmbeddedIndex(Path(tmp)), docs, args.queries, args.batch)
    if args.backend in ("elastic", "both"):
        from app.search.elastic import ElasticIndex

        server = None
        url = args.es_url
        if url is None:
            from osmem_server import OsmemServer

            server = OsmemServer.start(japanese=False)
            url = server.url
        index = ElasticIndex(url, alias=f"bench-{uuid.uuid4().hex[:8]}", server_mode="serverless" if server else "stack",
                             vectors=server is None, timeout_s=120)
        try:
            label = "elastic (osmem-server stand-in)" if server else "elastic"
            results[label] = await run(index, docs, args.queries, args.batch)
            await index.client.indices.delete(index=f"{index.alias}-*", ignore_unavailable=True)
        finally:
            await index.close()
            if server is not None:
                server.close()

    for label, r in results.items():
        print(f"\n{label}: indexing {r['docs_per_s']:,.0f} docs/s ({r['index_s']:.1f} s for {args.docs})")
        print(f"  {'query':<26}{'hits':>7}{'p50 ms':>9}{'p95 ms':>9}")
        for name, (hits, p50, p95) in r["queries"].items():
            print(f"  {name:<26}{hits:>7}{p50:>9.1f}{p95:>9.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))
