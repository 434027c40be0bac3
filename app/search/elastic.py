"""The Elasticsearch backend (production): the official async client, one alias, versioned indices.

    index template  <alias>-v<N>        patterns <alias>-v<N>-*; settings, analyzers, mapping
    first index     <alias>-v<N>-0      created at start-up behind the alias (is_write_index)
    rebuilds        <alias>-v<N>-<utc>  filled by `python -m app.cli.reindex`, then one atomic
                                        _aliases call moves the alias; the old index is dropped

Mapping (MAPPING_VERSION): keyword platform/env/task_id, long uid, epoch-ms dates;
nested `tags` {name, count, confidence, sources} plus `tag_names` keywords (filters,
facets) with an analysed subfield; text `description`, `transcript`, `ocr_text`,
`scene_text`; nested `moments` {kind, text, start_s, end_s}; `embedding` dense_vector
(384, cosine). Text uses the standard tokenizer + cjk_width + lowercase + cjk_bigram
(unigrams too at index time, so one-character Chinese queries match) + porter_stem.

Queries (`search_body`, pure): filters in bool.filter; the text as a cross_fields
multi_match with operator AND (every term somewhere in the video; fields weighted as
documents.FIELD_WEIGHTS); a nested moments query (score 0) only to return the matching
moments with highlights (inner_hits); semantic=true adds a `knn` query on `embedding` in
a should beside the keywords, boosted so both backends score alike; facets are terms
aggregations; newest-first pages use search_after on (created_at_ms, task_id), ranked
pages from/size (documents.MAX_WINDOW).

Every call is retried with backoff on connection errors, timeouts and 429/502/503/504;
then `Unavailable` is raised. Documents are bulk-indexed with _id = task id, so
re-indexing replaces and never duplicates.

Compatibility: ELASTICSEARCH_COMPAT=osmem (tests only) talks to the `osmem-server`
stand-in: plain JSON (`server_mode="serverless"`) and no dense_vector (it has no
vector type or kNN), so semantic search is refused there.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import random
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from app.errors import InternalError, InvalidRequest, Unavailable
from app.search.base import FacetValue, Hit, Moment, SearchIndex, SearchPage, backoff_s
from app.search.documents import (
    FACET_SIZE,
    FIELD_WEIGHTS,
    KEYWORD_WEIGHT,
    MAX_WINDOW,
    MOMENTS_PER_HIT,
    SEMANTIC_CANDIDATES,
    SEMANTIC_MIN_SIMILARITY,
    SEMANTIC_WEIGHT,
    TOP_TAGS_PER_HIT,
    SearchQuery,
    keyset_after,
    page_start,
)
from app.search.embeddings import DIMS

if TYPE_CHECKING:
    from app.config import Settings

log = logging.getLogger("search")
T = TypeVar("T")

MAPPING_VERSION = 1
RETRY_STATUSES = frozenset({429, 502, 503, 504})
TEXT_FIELDS = {"tag_names.text": FIELD_WEIGHTS["tag"], "description": FIELD_WEIGHTS["description"],
               "scene_text": FIELD_WEIGHTS["scene"], "transcript": FIELD_WEIGHTS["speech"],
               "ocr_text": FIELD_WEIGHTS["ocr"]}
HIT_SOURCE = ["task_id", "platform", "uid", "env", "created_at_ms", "duration_s", "tags"]
HIGHLIGHT = {"fields": {"moments.text": {"number_of_fragments": 0}}, "pre_tags": ["<em>"], "post_tags": ["</em>"],
             "encoder": "html"}


# --- pure: schema -----------------------------------------------------------------
def index_settings() -> dict[str, Any]:
    return {
        "analysis": {
            "filter": {"vtt_bigram_index": {"type": "cjk_bigram", "output_unigrams": True}},
            "analyzer": {
                "vtt_text": {"type": "custom", "tokenizer": "standard",
                             "filter": ["cjk_width", "lowercase", "vtt_bigram_index", "porter_stem"]},
                "vtt_text_search": {"type": "custom", "tokenizer": "standard",
                                    "filter": ["cjk_width", "lowercase", "cjk_bigram", "porter_stem"]},
            },
        },
    }


def mappings(*, vectors: bool) -> dict[str, Any]:
    text = {"type": "text", "analyzer": "vtt_text", "search_analyzer": "vtt_text_search"}
    props: dict[str, Any] = {
        "schema_version": {"type": "integer"},
        "task_id": {"type": "keyword"},
        "platform": {"type": "keyword"},
        "uid": {"type": "long"},
        "env": {"type": "keyword"},
        "source": {"type": "keyword"},
        "dimensions": {"type": "keyword"},
        "provider": {"type": "keyword"},
        "created_at_ms": {"type": "date", "format": "epoch_millis"},
        "finished_at_ms": {"type": "date", "format": "epoch_millis"},
        "duration_s": {"type": "float"},
        "description": text, "transcript": text, "ocr_text": text, "scene_text": text,
        "tags": {"type": "nested", "properties": {
            "name": {"type": "keyword"}, "count": {"type": "integer"}, "confidence": {"type": "float"},
            "sources": {"type": "keyword"}}},
        "tag_names": {"type": "keyword", "fields": {"text": text}},
        "moments": {"type": "nested", "properties": {
            "kind": {"type": "keyword"}, "text": text, "start_s": {"type": "float"}, "end_s": {"type": "float"}}},
    }
    if vectors:
        props["embedding"] = {"type": "dense_vector", "dims": DIMS, "index": True, "similarity": "cosine"}
    return {"dynamic": "strict", "_meta": {"mapping_version": MAPPING_VERSION, "owner": "vision-to-tag"},
            "properties": props}


def to_source(doc: dict[str, Any], *, vectors: bool) -> dict[str, Any]:
    """The stored _source: the search document's mapped fields (embedding only when mapped and present)."""
    allowed = set(mappings(vectors=vectors)["properties"])
    src = {k: v for k, v in doc.items() if k in allowed}
    if src.get("embedding") is None:
        src.pop("embedding", None)
    return src


# --- pure: queries ----------------------------------------------------------------
def filter_clauses(q: SearchQuery) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for fname, value in (("platform", q.platform), ("uid", q.uid), ("env", q.env)):
        if value is not None:
            out.append({"term": {fname: value}})
    bounds: dict[str, int] = {}
    if q.created_from is not None:
        bounds["gte"] = int(q.created_from.timestamp() * 1000)
    if q.created_to is not None:
        bounds["lt"] = int(q.created_to.timestamp() * 1000)
    if bounds:
        out.append({"range": {"created_at_ms": bounds}})
    out.extend({"term": {"tag_names": tag}} for tag in q.tags)
    return out


def search_body(q: SearchQuery, *, vectors: bool) -> dict[str, Any]:
    """The _search request body for a query (see the module docstring)."""
    terms = q.terms
    query: dict[str, Any] = {"bool": {"filter": filter_clauses(q)}}
    sort: list[dict[str, Any]] = [{"created_at_ms": {"order": "desc"}}, {"task_id": {"order": "asc"}}]
    if terms:
        text = " ".join(t.text for t in terms)
        keywords = {"multi_match": {"query": text, "type": "cross_fields", "operator": "and",
                                    "fields": [f"{f}^{w:g}" for f, w in TEXT_FIELDS.items()],
                                    "boost": KEYWORD_WEIGHT}}
        if q.semantic:
            if not vectors:
                raise InvalidRequest("semantic search is not available on this search index (no vectors)")
            if q.vector is None:
                raise InvalidRequest("semantic search needs the query embedding")
            knn: dict[str, Any] = {"knn": {"field": "embedding", "query_vector": list(q.vector),
                                           "num_candidates": SEMANTIC_CANDIDATES,
                                           "similarity": SEMANTIC_MIN_SIMILARITY, "boost": SEMANTIC_WEIGHT}}
            if query["bool"]["filter"]:  # pre-filter the nearest neighbours, not only their results
                knn["knn"]["filter"] = query["bool"]["filter"]
            query["bool"]["must"] = [{"bool": {"should": [keywords, knn], "minimum_should_match": 1}}]
        else:
            query["bool"]["must"] = [keywords]
        query["bool"]["should"] = [{"nested": {
            "path": "moments", "score_mode": "max", "boost": 0.0,
            "query": {"match": {"moments.text": {"query": text}}},
            "inner_hits": {"name": "moments", "size": MOMENTS_PER_HIT, "highlight": HIGHLIGHT}}}]
        sort.insert(0, {"_score": {"order": "desc"}})
    body: dict[str, Any] = {
        "query": query, "sort": sort, "size": q.limit + 1, "track_total_hits": True,
        "_source": {"includes": HIT_SOURCE},
        "aggs": {"tags": {"terms": {"field": "tag_names", "size": FACET_SIZE}},
                 "platforms": {"terms": {"field": "platform", "size": FACET_SIZE}}},
    }
    if terms:
        body["from"] = page_start(q)  # ranked pages: offsets (documents.MAX_WINDOW)
    elif (after := keyset_after(q)) is not None:
        body["search_after"] = list(after)  # newest first: continue after the last (created_at_ms, task_id)
    return body


def parse_response(resp: dict[str, Any], q: SearchQuery) -> SearchPage:
    """A _search reply -> SearchPage (moments in time order, facets as the aggregations give them)."""
    scored = bool(q.terms)
    raw = resp["hits"]["hits"]
    more = len(raw) > q.limit
    raw = raw[: q.limit]
    next_after: tuple[Any, ...] | None = None
    if more and raw:
        if scored:
            end = page_start(q) + len(raw)
            next_after = (end,) if end < MAX_WINDOW else None
        else:
            next_after = (int(raw[-1]["sort"][-2]), str(raw[-1]["sort"][-1]))
    hits = []
    for h in raw:
        src = h["_source"]
        moments = []
        for inner in h.get("inner_hits", {}).get("moments", {}).get("hits", {}).get("hits", []):
            m = inner["_source"]
            marked = inner.get("highlight", {}).get("moments.text")
            moments.append(Moment(kind=m["kind"], start_s=float(m["start_s"]), end_s=float(m["end_s"]),
                                  text=m["text"], highlight=marked[0] if marked else m["text"]))
        moments.sort(key=lambda m: (m.start_s, m.end_s, m.kind, m.text))
        hits.append(Hit(task_id=src["task_id"], platform=src["platform"], uid=src.get("uid"), env=src.get("env"),
                        created_at_ms=int(src["created_at_ms"]), duration_s=src.get("duration_s"),
                        score=float(h["sort"][0]) if scored else None,
                        tags=list(src.get("tags") or [])[:TOP_TAGS_PER_HIT], moments=moments))
    aggs = resp.get("aggregations", {})

    def facet(name: str) -> list[FacetValue]:
        return [FacetValue(str(b["key"]), int(b["doc_count"])) for b in aggs.get(name, {}).get("buckets", [])]

    return SearchPage(total=int(resp["hits"]["total"]["value"]), hits=hits, tags=facet("tags"),
                      platforms=facet("platforms"),
                      next_after=next_after)


# --- the backend ------------------------------------------------------------------
class ElasticIndex(SearchIndex):
    name = "elastic"

    def __init__(self, url: str, *, alias: str = "vtt-videos", server_mode: str = "stack", vectors: bool = True,
                 timeout_s: float = 10.0, retries: int = 3, backoff_base_s: float = 0.5) -> None:
        try:
            from elasticsearch import AsyncElasticsearch
        except ImportError as exc:
            raise RuntimeError("the Elasticsearch backend needs the client: install elasticsearch") from exc
        self.alias = alias
        self.vectors = vectors
        self.supports_vectors = vectors
        self.retries = retries
        self.backoff_base_s = backoff_base_s
        # Retries are ours (with backoff), not the transport's (immediate).
        self.client = AsyncElasticsearch(url, server_mode=server_mode, request_timeout=timeout_s, max_retries=0,
                                         retry_on_timeout=False)
        self._opened = False

    @classmethod
    def from_settings(cls, settings: Settings) -> ElasticIndex:
        if not settings.elasticsearch_url:
            raise ValueError("ELASTICSEARCH_URL is not set")
        osmem = settings.elasticsearch_compat == "osmem"
        return cls(settings.elasticsearch_url, alias=settings.elasticsearch_index,
                   server_mode="serverless" if osmem else "stack", vectors=not osmem,
                   timeout_s=settings.elasticsearch_timeout_s, retries=settings.elasticsearch_retries)

    @property
    def template_name(self) -> str:
        return f"{self.alias}-v{MAPPING_VERSION}"

    def _new_index_name(self) -> str:
        return f"{self.alias}-v{MAPPING_VERSION}-{dt.datetime.now(dt.UTC).strftime('%Y%m%d%H%M%S%f')}"

    async def _call(self, fn: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
        """Run one client call, retrying transient failures with backoff; translate errors."""
        from elasticsearch import ApiError, TransportError

        problem = ""
        for attempt in range(self.retries + 1):
            try:
                return await fn(*args, **kwargs)
            except TransportError as exc:  # connection refused/reset, timeout
                problem = f"{type(exc).__name__}: {exc}"
            except ApiError as exc:
                if exc.status_code not in RETRY_STATUSES:
                    raise
                problem = f"HTTP {exc.status_code}: {exc.error}"
            if attempt < self.retries:
                await asyncio.sleep(backoff_s(attempt, base=self.backoff_base_s, cap=30.0, rand=random.random()))
        raise Unavailable(f"Elasticsearch is unreachable: {problem[:300]}")

    async def _ensure_open(self) -> None:
        if not self._opened:
            await self.open()

    async def open(self) -> None:
        from elasticsearch import BadRequestError

        c = self.client
        await self._call(c.indices.put_index_template, name=self.template_name,
                         index_patterns=[f"{self.alias}-v{MAPPING_VERSION}-*"], priority=200,
                         version=MAPPING_VERSION, meta={"owner": "vision-to-tag"},
                         template={"settings": index_settings(), "mappings": mappings(vectors=self.vectors)})
        if not await self._call(c.indices.exists_alias, name=self.alias):
            try:  # a fixed first name: racing processes collide here instead of making two indices
                await self._call(c.indices.create, index=f"{self.alias}-v{MAPPING_VERSION}-0",
                                 aliases={self.alias: {"is_write_index": True}})
            except BadRequestError as exc:
                if exc.error != "resource_already_exists_exception":
                    raise
        else:
            current = await self._call(c.indices.get_mapping, index=self.alias)
            for name, body in current.body.items():
                version = body.get("mappings", {}).get("_meta", {}).get("mapping_version")
                if version != MAPPING_VERSION:
                    log.warning("search index %s has mapping version %s, this code writes %s: run "
                                "`python -m app.cli.reindex`", name, version, MAPPING_VERSION)
        self._opened = True

    async def close(self) -> None:
        await self.client.close()

    async def upsert(self, docs: Sequence[dict[str, Any]], *, target: str | None = None) -> dict[str, str]:
        from elasticsearch.helpers import async_bulk

        await self._ensure_open()
        index = target or self.alias
        actions = [{"_op_type": "index", "_index": index, "_id": d["task_id"],
                    "_source": to_source(d, vectors=self.vectors)} for d in docs]
        # async_bulk itself retries items rejected with 429, with backoff.
        _ok, errors = await self._call(async_bulk, self.client, actions, raise_on_error=False, max_retries=self.retries,
                                       initial_backoff=self.backoff_base_s, max_backoff=30, stats_only=False)
        failed: dict[str, str] = {}
        for item in errors if isinstance(errors, list) else []:
            info = next(iter(item.values()))
            error = info.get("error")
            reason = error.get("reason", error) if isinstance(error, dict) else error
            failed[str(info.get("_id"))] = f"HTTP {info.get('status')}: {reason}"[:500]
        return failed

    async def delete(self, task_ids: Sequence[str]) -> None:
        from elasticsearch.helpers import async_bulk

        await self._ensure_open()
        actions = [{"_op_type": "delete", "_index": self.alias, "_id": t} for t in task_ids]
        _ok, errors = await self._call(async_bulk, self.client, actions, raise_on_error=False,
                                       max_retries=self.retries, initial_backoff=self.backoff_base_s,
                                       max_backoff=30, stats_only=False)
        refused = [e for e in (errors if isinstance(errors, list) else [])
                   if next(iter(e.values())).get("status") != 404]
        if refused:  # an unknown id (404) is fine: it is already gone
            raise InternalError(f"Elasticsearch refused deletes: {str(refused)[:300]}")

    async def get(self, task_id: str) -> dict[str, Any] | None:
        from elasticsearch import NotFoundError

        await self._ensure_open()
        try:
            resp = await self._call(self.client.get, index=self.alias, id=task_id)
        except NotFoundError:
            return None
        src: dict[str, Any] = dict(resp["_source"])
        src.pop("embedding", None)
        return src

    async def count(self) -> int:
        await self._ensure_open()
        resp = await self._call(self.client.count, index=self.alias)
        return int(resp["count"])

    async def refresh(self) -> None:
        await self._ensure_open()
        await self._call(self.client.indices.refresh, index=self.alias)

    async def search(self, query: SearchQuery) -> SearchPage:
        from elasticsearch import ApiError

        await self._ensure_open()
        body = search_body(query, vectors=self.vectors)
        try:
            resp = await self._call(self.client.search, index=self.alias, **body)
        except ApiError as exc:
            raise InternalError(f"Elasticsearch refused the search: HTTP {exc.status_code} {exc.error}") from exc
        return parse_response(resp.body, query)

    async def begin_rebuild(self) -> str:
        await self.open()  # the current template applies to the new index
        name = self._new_index_name()
        await self._call(self.client.indices.create, index=name)
        return name

    async def finish_rebuild(self, target: str) -> None:
        from elasticsearch import NotFoundError

        await self._call(self.client.indices.refresh, index=target)
        try:
            current = list((await self._call(self.client.indices.get_alias, name=self.alias)).body)
        except NotFoundError:
            current = []
        actions: list[dict[str, Any]] = [{"add": {"index": target, "alias": self.alias, "is_write_index": True}}]
        actions += [{"remove": {"index": old, "alias": self.alias}} for old in current if old != target]
        await self._call(self.client.indices.update_aliases, actions=actions)  # atomic: no moment without an index
        for old in current:
            if old != target:
                await self._call(self.client.indices.delete, index=old, ignore_unavailable=True)

    async def abort_rebuild(self, target: str) -> None:
        await self._call(self.client.indices.delete, index=target, ignore_unavailable=True)
