"""The search-index contract and the registry of backends.

    SearchIndex (ABC)         one index of search documents (app/search/documents.py)
    ├── EmbeddedIndex         "embedded": SQLite FTS5 files in DATA_DIR/search (default)
    └── ElasticIndex          "elastic": Elasticsearch 9 behind an alias (ELASTICSEARCH_URL)

Both give the same results for the same documents and query: videos filtered by tags
(all given), platform, uid, env and creation time; ranked by keyword score (then newest
first) when there is a text query, newest first otherwise; each with its best-matching
moments (start/end and highlighted text); top tags and platforms as facets over all
matches; keyset pagination by an opaque cursor. A backend module is imported only
when chosen, so a missing client library fails only there ("install X").
"""

from __future__ import annotations

import datetime as dt
import importlib
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from app.search.documents import SearchQuery

if TYPE_CHECKING:
    from app.config import Settings


@dataclass(frozen=True)
class Moment:
    kind: str  # tag | scene | ocr | speech
    start_s: float
    end_s: float
    text: str
    highlight: str  # HTML-escaped text, matches wrapped in <em>...</em>


@dataclass(frozen=True)
class Hit:
    task_id: str
    platform: str
    uid: int | None
    env: str | None
    created_at_ms: int
    duration_s: float | None
    score: float | None  # None when ranked by time only
    tags: list[dict[str, Any]]  # the video's top tags: name, count, confidence, sources
    moments: list[Moment] = field(default_factory=list)  # time order


@dataclass(frozen=True)
class FacetValue:
    value: str
    count: int  # videos


@dataclass(frozen=True)
class SearchPage:
    total: int
    hits: list[Hit]
    tags: list[FacetValue]
    platforms: list[FacetValue]
    next_after: tuple[Any, ...] | None  # where the next page starts, when there is one

    def as_dict(self) -> dict[str, Any]:
        from app.search.documents import encode_cursor

        items = []
        for h in self.hits:
            item = asdict(h)
            item["created_at"] = (dt.datetime.fromtimestamp(h.created_at_ms / 1000, dt.UTC)
                                  .isoformat(timespec="milliseconds").replace("+00:00", "Z"))
            items.append(item)
        return {
            "total": self.total,
            "items": items,
            "facets": {"tags": [asdict(f) for f in self.tags], "platforms": [asdict(f) for f in self.platforms]},
            "next_cursor": encode_cursor(self.next_after) if self.next_after is not None else None,
        }


class SearchIndex(ABC):
    """One search index. Every method may raise `app.errors.Unavailable` when the backend is down."""

    name: str = ""
    supports_vectors: bool = True

    @abstractmethod
    async def open(self) -> None:
        """Create the schema (template, index, alias / file) if missing. Idempotent; safe to race."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        return None

    @abstractmethod
    async def upsert(self, docs: Sequence[dict[str, Any]], *, target: str | None = None) -> dict[str, str]:
        """Index documents by task id, replacing any earlier version (idempotent).

        `target` writes into a rebuild (from `begin_rebuild`) instead of the live index.
        Returns {task_id: reason} for documents the index refused; the rest are stored.
        """

    @abstractmethod
    async def delete(self, task_ids: Sequence[str]) -> None:
        """Remove documents; unknown ids are ignored."""

    @abstractmethod
    async def get(self, task_id: str) -> dict[str, Any] | None:
        """The stored search document (without its embedding), or None."""

    @abstractmethod
    async def search(self, query: SearchQuery) -> SearchPage:
        """See the module docstring. `query.vector` must be set when `query.semantic`."""

    async def refresh(self) -> None:  # noqa: B027 - optional hook
        """Make earlier writes visible to search (Elasticsearch refreshes every second anyway)."""

    @abstractmethod
    async def count(self) -> int:
        """Documents in the live index."""

    @abstractmethod
    async def begin_rebuild(self) -> str:
        """Create a new, empty index beside the live one; returns its name for `upsert(target=)`."""

    @abstractmethod
    async def finish_rebuild(self, target: str) -> None:
        """Atomically make `target` the live index and drop the one it replaced."""

    @abstractmethod
    async def abort_rebuild(self, target: str) -> None:
        """Drop an unfinished rebuild."""


def backoff_s(attempt: int, *, base: float, cap: float, rand: float) -> float:
    """Exponential backoff with jitter: in [d/2, d] where d = min(cap, base * 2**attempt); rand in [0, 1]."""
    delay = min(cap, base * 2.0 ** min(attempt, 32))
    return delay / 2 + delay / 2 * rand


# name -> "module:Class"; the class has `from_settings(settings)`.
_REGISTRY: dict[str, str] = {
    "embedded": "app.search.embedded:EmbeddedIndex",
    "elastic": "app.search.elastic:ElasticIndex",
}


def register(name: str, target: str) -> None:
    _REGISTRY[name] = target


def backend_name(settings: Settings) -> str:
    """ELASTICSEARCH_URL set -> "elastic", else "embedded"."""
    return "elastic" if settings.elasticsearch_url else "embedded"


def create_index(settings: Settings, name: str | None = None) -> SearchIndex:
    """The configured backend (not yet opened)."""
    name = name or backend_name(settings)
    try:
        target = _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown search backend {name!r}; known: {', '.join(sorted(_REGISTRY))}") from None
    module_name, _, cls_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise RuntimeError(f"search backend {name!r} needs a package that is missing: install {exc.name}") from exc
    index: SearchIndex = getattr(module, cls_name).from_settings(settings)
    return index
