"""Search documents and queries: pure functions, values in and values out.

A *search document* is what both index backends store for one completed task. It is
built from the task row and its result document (schema v1, see `app.pipeline`):

    {
      "task_id", "platform", "uid", "env", "source", "dimensions", "provider",
      "created_at_ms" (task creation, epoch ms), "finished_at_ms" | None, "duration_s" | None,
      "description": str,            # result["description"] when a provider writes one
      "transcript": str,             # speech segments, joined
      "ocr_text": str,               # on-screen text segments, joined
      "scene_text": str,             # scene descriptions/labels, joined
      "tags": [{"name", "count", "confidence", "sources"}],   # as in the result
      "tag_names": [name, ...],
      "moments": [{"kind": tag|scene|ocr|speech, "text", "start_s", "end_s"}],
      "embedding_text": str,         # what MiniLM embeds for semantic=true
      "embedding": [384 floats]      # added by the indexer when a model is available
    }

Optional result keys read when present (providers may add them within schema v1):
`description` (str), `transcript` / `speech` (list of {text, start_s, end_s} or
{"segments": [...]}) and `scenes` (list of {start_s, end_s, description?, labels?}).

Query side: `SearchQuery` (validated request), `parse_terms` (how text splits into
terms both backends match), cursors (opaque, base64url JSON of the last sort key) and
highlighting helpers (the embedded backend's `<em>` marking, HTML-escaped like
Elasticsearch's `encoder: html`).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import html
import json
import math
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from app.errors import InvalidRequest
from app.tags import normalise_name

SEARCH_SCHEMA_VERSION = 1
MAX_MOMENTS = 1000  # per document; Elasticsearch allows 10,000 nested objects by default
MAX_RANGES_PER_TAG = 50
MAX_TERMS = 16
MAX_QUERY_CHARS = 500
MOMENTS_PER_HIT = 5
TOP_TAGS_PER_HIT = 10
FACET_SIZE = 10
EMBEDDING_TEXT_CHARS = 2000

# Field weights shared by both backends: a term in a tag name counts most.
FIELD_WEIGHTS: dict[str, float] = {"tag": 3.0, "description": 2.0, "scene": 1.5, "speech": 1.0, "ocr": 1.0}
# semantic=true: score = KEYWORD_WEIGHT * keyword score + SEMANTIC_WEIGHT * (1 + cosine) / 2,
# the latter only for the SEMANTIC_CANDIDATES nearest documents with cosine >= SEMANTIC_MIN_SIMILARITY.
# (1 + cosine) / 2 is Elasticsearch's _score for a cosine dense_vector, so both backends agree.
KEYWORD_WEIGHT = 1.0
SEMANTIC_WEIGHT = 8.0
SEMANTIC_MIN_SIMILARITY = 0.3
SEMANTIC_CANDIDATES = 100

_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af"
_CJK_RUN = re.compile(f"[{_CJK}]+")
_TERM = re.compile(f"[{_CJK}]+|(?:(?![{_CJK}])[^\\W_])+")


# --- building ---------------------------------------------------------------------
@dataclass(frozen=True)
class TaskFacts:
    """The task-row facts a search document carries (values, not an ORM object)."""

    task_id: str
    platform: str
    uid: int | None
    env: str | None
    source: str
    dimensions: str
    created_at: dt.datetime  # naive UTC, as stored
    finished_at: dt.datetime | None = None


def epoch_ms(value: dt.datetime) -> int:
    """Naive datetimes are UTC (how the store keeps them)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return int(round(value.timestamp() * 1000))


def _num(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _segments(value: Any) -> list[dict[str, Any]]:
    if isinstance(value, Mapping):
        value = value.get("segments")
    if not isinstance(value, list):
        return []
    return [s for s in value if isinstance(s, Mapping)]  # type: ignore[misc]


def _timed(kind: str, text: Any, start: Any, end: Any) -> dict[str, Any] | None:
    s, e = _num(start), _num(end)
    t = str(text).strip() if text is not None else ""
    if not t or s is None:
        return None
    e = s if e is None or e < s else e
    return {"kind": kind, "text": t, "start_s": round(s, 3), "end_s": round(e, 3)}


def _scene_text(scene: Mapping[str, Any]) -> str:
    parts: list[str] = []
    if scene.get("description"):
        parts.append(str(scene["description"]))
    for label in scene.get("labels") or []:
        name = label.get("name") if isinstance(label, Mapping) else label
        if name:
            parts.append(str(name))
    return ", ".join(parts)


def build_search_document(task: TaskFacts, result: Mapping[str, Any]) -> dict[str, Any]:
    """The search document for one completed task (see the module docstring).

    Deterministic: the same inputs give the same document, so re-indexing is idempotent.
    """
    tags: list[dict[str, Any]] = []
    moments: list[dict[str, Any]] = []
    for t in result.get("tags") or []:
        name = normalise_name(str(t.get("name", "")))
        if not name:
            continue
        tags.append({"name": name, "count": int(t.get("count") or len(t.get("ranges") or []) or 1),
                     "confidence": round(float(t.get("confidence") or 0.0), 4),
                     "sources": sorted({str(s) for s in t.get("sources") or []})})
        for r in (t.get("ranges") or [])[:MAX_RANGES_PER_TAG]:
            if isinstance(r, Sequence) and len(r) == 2:
                m = _timed("tag", name, r[0], r[1])
                if m:
                    moments.append(m)
    scenes = [m for m in (_timed("scene", _scene_text(s), s.get("start_s"), s.get("end_s"))
                          for s in _segments(result.get("scenes"))) if m]
    ocr = [m for m in (_timed("ocr", s.get("text"), s.get("start_s"), s.get("end_s"))
                       for s in _segments(result.get("text"))) if m]
    speech_src = result.get("transcript") if result.get("transcript") is not None else result.get("speech")
    speech = [m for m in (_timed("speech", s.get("text"), s.get("start_s"), s.get("end_s"))
                          for s in _segments(speech_src)) if m]
    moments = (moments + scenes + ocr + speech)[:MAX_MOMENTS]
    description = str(result.get("description") or "").strip()
    video = result.get("video") if isinstance(result.get("video"), Mapping) else {}
    doc: dict[str, Any] = {
        "schema_version": SEARCH_SCHEMA_VERSION,
        "task_id": task.task_id,
        "platform": task.platform,
        "uid": task.uid,
        "env": task.env,
        "source": task.source,
        "dimensions": task.dimensions,
        "provider": str(result.get("provider") or ""),
        "created_at_ms": epoch_ms(task.created_at),
        "finished_at_ms": epoch_ms(task.finished_at) if task.finished_at else None,
        "duration_s": _num(video.get("duration_s")),  # type: ignore[union-attr]
        "description": description,
        "transcript": " ".join(m["text"] for m in speech),
        "ocr_text": " ".join(m["text"] for m in ocr),
        "scene_text": " ".join(m["text"] for m in scenes),
        "tags": tags,
        "tag_names": [t["name"] for t in tags],
        "moments": moments,
    }
    doc["embedding_text"] = embedding_text(doc)
    return doc


def embedding_text(doc: Mapping[str, Any]) -> str:
    """What MiniLM embeds: description, tag names, scenes, speech, on-screen text (in that order)."""
    parts = [doc.get("description", ""), ", ".join(doc.get("tag_names", [])), doc.get("scene_text", ""),
             doc.get("transcript", ""), doc.get("ocr_text", "")]
    return ". ".join(p for p in parts if p)[:EMBEDDING_TEXT_CHARS]


# --- queries ----------------------------------------------------------------------
@dataclass(frozen=True)
class Term:
    text: str  # NFKC, lower-cased
    cjk: bool  # a run of CJK characters (matched as a substring) or a word


def normalise_text(text: str) -> str:
    return unicodedata.normalize("NFKC", text).lower()


def parse_terms(text: str) -> list[Term]:
    """Split a query into terms: runs of CJK characters and words (letters/digits).

    Every term must match somewhere in a video (AND); punctuation is ignored; repeated
    terms count once; at most MAX_TERMS terms.
    """
    out: list[Term] = []
    seen: set[str] = set()
    for m in _TERM.finditer(normalise_text(text)):
        t = m.group(0)
        if t in seen:
            continue
        seen.add(t)
        out.append(Term(t, bool(_CJK_RUN.fullmatch(t))))
        if len(out) == MAX_TERMS:
            break
    return out


def without_cjk(text: str) -> str:
    """Text for a word index: each CJK character becomes a space (so `iPhone新品` yields the word
    `iphone`), keeping every other character at its offset."""
    return _CJK_RUN.sub(lambda m: " " * len(m.group(0)), text)


def idf(docs_total: int, docs_matching: int) -> float:
    """BM25's inverse document frequency (never negative)."""
    return math.log(1.0 + (docs_total - docs_matching + 0.5) / (docs_matching + 0.5))


def semantic_score(cosine: float) -> float:
    return SEMANTIC_WEIGHT * (1.0 + cosine) / 2.0


@dataclass(frozen=True)
class SearchQuery:
    """A validated search request. `vector` is the query embedding (semantic=true)."""

    text: str = ""
    tags: tuple[str, ...] = ()
    platform: str | None = None
    uid: int | None = None
    env: str | None = None
    created_from: dt.datetime | None = None  # inclusive, aware UTC
    created_to: dt.datetime | None = None  # exclusive, aware UTC
    limit: int = 20
    after: tuple[Any, ...] | None = None  # decoded cursor (see encode_cursor)
    semantic: bool = False
    vector: tuple[float, ...] | None = field(default=None, repr=False)

    @property
    def terms(self) -> list[Term]:
        return parse_terms(self.text)

    @property
    def scored(self) -> bool:
        """Ranked by score (a text query) rather than by newest first."""
        return bool(self.terms)


def parse_time_bound(value: str | None, *, upper: bool) -> dt.datetime | None:
    """ISO 8601 date or date-time -> aware UTC. A bare date as the upper bound means the end of that day.

    Naive date-times are UTC. Raises InvalidRequest naming the value.
    """
    if value is None or not value.strip():
        return None
    v = value.strip()
    try:
        if len(v) == 10:
            day = dt.date.fromisoformat(v)
            start = dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)
            return start + dt.timedelta(days=1) if upper else start
        parsed = dt.datetime.fromisoformat(v.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise InvalidRequest(f"not an ISO 8601 date or date-time: {value[:40]!r}") from None
    return parsed.replace(tzinfo=dt.UTC) if parsed.tzinfo is None else parsed.astimezone(dt.UTC)


def split_tags(value: str | Iterable[str] | None) -> tuple[str, ...]:
    """`tags=cat,dog` (or repeated) -> normalised, de-duplicated names (a video must carry all)."""
    if value is None:
        return ()
    items = value.split(",") if isinstance(value, str) else [p for v in value for p in v.split(",")]
    out: list[str] = []
    for item in items:
        name = normalise_name(item)
        if name and name not in out:
            out.append(name)
    if len(out) > 20:
        raise InvalidRequest("at most 20 tags may be given")
    return tuple(out)


def make_query(*, q: str | None = None, tags: str | Iterable[str] | None = None, platform: str | None = None,
               uid: int | None = None, env: str | None = None, from_: str | None = None, to: str | None = None,
               limit: int = 20, cursor: str | None = None, semantic: bool = False) -> SearchQuery:
    """Validate raw request parameters into a SearchQuery (InvalidRequest on a bad value)."""
    text = (q or "").strip()
    if len(text) > MAX_QUERY_CHARS:
        raise InvalidRequest(f"q is longer than {MAX_QUERY_CHARS} characters")
    if not 1 <= limit <= 100:
        raise InvalidRequest("limit must be between 1 and 100")
    lo, hi = parse_time_bound(from_, upper=False), parse_time_bound(to, upper=True)
    if lo is not None and hi is not None and lo >= hi:
        raise InvalidRequest("from must be before to")
    if semantic and not parse_terms(text):
        raise InvalidRequest("semantic=true needs a text query q")
    return SearchQuery(text=text, tags=split_tags(tags), platform=platform or None, uid=uid, env=env or None,
                       created_from=lo, created_to=hi, limit=limit, after=decode_cursor(cursor),
                       semantic=semantic)


# --- cursors ----------------------------------------------------------------------
# Newest-first pages (no text) continue after the last hit's (created_at_ms, task_id): stable
# under inserts and cheap at any depth. Ranked pages (a text query) continue at an offset: a
# score is not a stable key across requests, and Elasticsearch caps from + size at
# index.max_result_window (10,000 by default), so ranked paging stops there too.
MAX_WINDOW = 10_000


def encode_cursor(position: Sequence[Any]) -> str:
    """A page position -> an opaque token: [created_at_ms, task_id] or [offset]."""
    raw = json.dumps({"v": 1, "after": list(position)}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> tuple[Any, ...] | None:
    """Inverse of encode_cursor; InvalidRequest for anything else."""
    if not cursor:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        data = json.loads(raw)
        after = data["after"]
        ok = data.get("v") == 1 and isinstance(after, list) and (
            (len(after) == 1 and type(after[0]) is int and 0 <= after[0] < MAX_WINDOW)
            or (len(after) == 2 and type(after[0]) is int and isinstance(after[1], str)))
    except (ValueError, KeyError, TypeError, AttributeError, binascii.Error):
        ok = False
    if not ok:
        raise InvalidRequest("cursor is not one this API returned")
    return tuple(after)


def page_start(q: SearchQuery) -> int:
    """The offset of a ranked page (0 without a cursor); InvalidRequest for a newest-first cursor or past MAX_WINDOW."""
    if q.after is None:
        return 0
    if len(q.after) != 1:
        raise InvalidRequest("cursor does not belong to this query")
    offset = int(q.after[0])
    if offset + q.limit > MAX_WINDOW:
        raise InvalidRequest(f"ranked results stop at {MAX_WINDOW}; narrow the query")
    return offset


def keyset_after(q: SearchQuery) -> tuple[int, str] | None:
    """The (created_at_ms, task_id) a newest-first page continues after; InvalidRequest for a ranked cursor."""
    if q.after is None:
        return None
    if len(q.after) != 2:
        raise InvalidRequest("cursor does not belong to this query")
    return int(q.after[0]), str(q.after[1])


# --- highlighting -----------------------------------------------------------------
def cjk_spans(text: str, terms: Sequence[Term]) -> list[tuple[int, int]]:
    """Character spans of `text` where the CJK terms occur (case-folded substring match)."""
    folded = text.lower()
    spans: list[tuple[int, int]] = []
    for term in terms:
        if not term.cjk:
            continue
        start = folded.find(term.text)
        while start >= 0:
            spans.append((start, start + len(term.text)))
            start = folded.find(term.text, start + 1)
    return spans


def merge_spans(spans: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for s, e in sorted(spans):
        if merged and s <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], e))
        else:
            merged.append((s, e))
    return merged


def marked_spans(marked: str, open_mark: str = "\x01", close_mark: str = "\x02") -> list[tuple[int, int]]:
    """Spans of the unmarked text that `open_mark`...`close_mark` enclose (SQLite FTS5 highlight output)."""
    spans: list[tuple[int, int]] = []
    pos, start = 0, -1
    for ch in marked:
        if ch == open_mark:
            start = pos
        elif ch == close_mark:
            if start >= 0:
                spans.append((start, pos))
            start = -1
        else:
            pos += 1
    return spans


def render_highlight(text: str, spans: Iterable[tuple[int, int]]) -> str:
    """HTML-escaped text with each span wrapped in <em>...</em> (like Elasticsearch's `encoder: html`)."""
    out, pos = [], 0
    for s, e in merge_spans(spans):
        s, e = max(s, pos), min(e, len(text))
        if s >= e:
            continue
        out.append(html.escape(text[pos:s]))
        out.append("<em>" + html.escape(text[s:e]) + "</em>")
        pos = e
    out.append(html.escape(text[pos:]))
    return "".join(out)
