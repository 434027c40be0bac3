"""A collection's topics: cluster its videos' text, name the clusters.

    video_text(document)        tags, LLM description/categories, transcript, on-screen text -> one text
    choose_k(n)                 how many topics for n videos (5-10 for a real collection)
    kmeans(vectors, k)          deterministic spherical k-means (farthest-point start)
    top_terms(...)              class-based TF-IDF: the words that set each cluster apart
    build_topics(...)           all of the above -> Topic list, largest first (pure, given vectors)
    collection_topics(...)      the edge: embed with the packaged MiniLM, then, with TAGGER=openai and
                                TOPICS_LLM, ask the model to name and summarise each cluster

Everything but `collection_topics` is pure: values in, values out.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

log = logging.getLogger("topics")

MAX_TOPICS = 10
TRANSCRIPT_CHARS = 1500
_WORD_RE = re.compile(r"[^\W\d_]+(?:['-][^\W\d_]+)*")
STOPWORDS = frozenset("""
a about above after again all also an and any are as at be been before being below between both but by can
could did do does doing down during each few for from further had has have having he her here hers him his
how i if in into is it its itself just me more most my no nor not now of off on once only or other our out
over own same she should so some such than that the their them then there these they this those through to
too under until up very was we were what when where which while who whom why will with you your yours one
two three us it's i'm don't can't we're you're they're that's there's s t none video shows shown show
""".split())


@dataclass
class Topic:
    id: int
    name: str
    terms: list[str]
    task_ids: list[str]
    size: int
    summary: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class TopicsResult:
    method: str  # offline | llm
    topics: list[Topic] = field(default_factory=list)
    unclustered: list[str] = field(default_factory=list)  # videos without any text
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"method": self.method, "topics": [t.as_dict() for t in self.topics],
                "unclustered": self.unclustered, "warnings": self.warnings}


def video_text(document: dict[str, Any]) -> str:
    """A result document -> the text its topic is judged by (pure)."""
    parts: list[str] = []
    tags = [str(t.get("name", "")) for t in document.get("tags") or [] if isinstance(t, dict)]
    if tags:
        parts.append(", ".join(tags[:30]) + ".")
    llm = document.get("gemini") or {}
    if isinstance(llm, dict):
        if llm.get("description"):
            parts.append(str(llm["description"]))
        if llm.get("categories"):
            parts.append(", ".join(str(c) for c in llm["categories"]) + ".")
    speech = document.get("speech") or {}
    if isinstance(speech, dict) and speech.get("transcript"):
        parts.append(str(speech["transcript"])[:TRANSCRIPT_CHARS])
    lines = [str(t.get("text", "")) for t in document.get("text") or [] if isinstance(t, dict)]
    if lines:
        parts.append(" ".join(dict.fromkeys(lines))[:500])
    return " ".join(p.strip() for p in parts if p.strip())


def terms(text: str) -> list[str]:
    """Lower-case content words of a text (pure)."""
    return [w for w in (m.group(0).lower() for m in _WORD_RE.finditer(text)) if w not in STOPWORDS and len(w) > 2]


def choose_k(n: int) -> int:
    """Topics for n videos: about sqrt(n/2), at least 1, at most MAX_TOPICS and n."""
    if n <= 0:
        return 0
    return max(1, min(MAX_TOPICS, n, round(math.sqrt(n / 2))))


def kmeans(vectors: np.ndarray, k: int, *, iters: int = 50) -> list[int]:
    """Spherical k-means on unit vectors; deterministic (no random start) (pure).

    Start: the point nearest the mean, then repeatedly the point farthest from every chosen
    centre. Returns a cluster index per row, clusters numbered by first appearance.
    """
    n = len(vectors)
    if n == 0 or k <= 0:
        return []
    k = min(k, n)
    x = vectors.astype(np.float64)
    first = int(np.argmax(x @ x.mean(axis=0)))
    centres = [first]
    best = x @ x[first]
    for _ in range(1, k):
        nxt = int(np.argmin(best))
        centres.append(nxt)
        best = np.maximum(best, x @ x[nxt])
    c = x[centres].copy()
    labels = np.zeros(n, dtype=int)
    for it in range(iters):
        new = np.argmax(x @ c.T, axis=1)
        if it and np.array_equal(new, labels):
            break
        labels = new
        for j in range(k):
            members = x[labels == j]
            if len(members):
                m = members.sum(axis=0)
                c[j] = m / max(np.linalg.norm(m), 1e-12)
    order: dict[int, int] = {}
    for lab in labels:
        order.setdefault(int(lab), len(order))
    return [order[int(lab)] for lab in labels]


def top_terms(docs: Sequence[Sequence[str]], labels: Sequence[int], n: int = 5) -> dict[int, list[str]]:
    """Class-based TF-IDF: each cluster's words, weighted against the other clusters (pure).

    A word counts once per video (a long transcript must not drown the rest); ties go alphabetically.
    """
    per: dict[int, Counter[str]] = {}
    for words, lab in zip(docs, labels, strict=True):
        per.setdefault(lab, Counter()).update(set(words))
    spread = Counter(w for counts in per.values() for w in counts)
    k = len(per)
    out: dict[int, list[str]] = {}
    for lab, counts in per.items():
        total = sum(counts.values()) or 1
        scored = [(counts[w] / total * math.log((1 + k) / spread[w]), w) for w in counts]
        scored.sort(key=lambda sw: (-sw[0], sw[1]))
        out[lab] = [w for _s, w in scored[:n]]
    return out


def topic_name(words: Sequence[str]) -> str:
    """An offline name: the two top terms (pure)."""
    return " / ".join(words[:2]) if words else "misc"


def build_topics(task_ids: Sequence[str], texts: Sequence[str], vectors: np.ndarray,
                 k: int | None = None) -> TopicsResult:
    """Videos (ids, texts, unit vectors, one row each) -> topics, largest first (pure)."""
    result = TopicsResult("offline")
    keep = [i for i, t in enumerate(texts) if t.strip()]
    result.unclustered = [task_ids[i] for i in range(len(task_ids)) if i not in set(keep)]
    if not keep:
        return result
    labels = kmeans(vectors[keep], choose_k(len(keep)) if k is None else k)
    words = [terms(texts[i]) for i in keep]
    named = top_terms(words, labels)
    groups: dict[int, list[str]] = {}
    for i, lab in zip(keep, labels, strict=True):
        groups.setdefault(lab, []).append(task_ids[i])
    ordered = sorted(groups, key=lambda lab: (-len(groups[lab]), lab))
    result.topics = [Topic(n, topic_name(named[lab]), named[lab], groups[lab], len(groups[lab]))
                     for n, lab in enumerate(ordered)]
    return result


def llm_groups(result: TopicsResult, texts: dict[str, str]) -> list[dict[str, Any]]:
    """What the model is shown per topic: its terms and a few videos' texts (pure)."""
    return [{"cluster": t.id, "terms": t.terms, "samples": [texts[i] for i in t.task_ids[:3]]}
            for t in result.topics]


async def collection_topics(documents: dict[str, dict[str, Any]], settings: Any, embedder: Any) -> TopicsResult:
    """Topics of the given result documents (task id -> document).

    `embedder` has `embed(texts) -> ndarray` (app.search.embeddings.Embedder). With
    TAGGER=openai and TOPICS_LLM, the model renames and summarises the clusters; if it
    fails, the offline names stay and a warning says why.
    """
    ids = list(documents)
    texts = [video_text(documents[i]) for i in ids]
    vectors = await asyncio.to_thread(embedder.embed, texts) if ids else np.zeros((0, 384), dtype=np.float32)
    result = build_topics(ids, texts, vectors)
    if not result.topics or settings.tagger != "openai" or not settings.topics_llm:
        return result
    from app.providers import get_provider

    provider = get_provider("openai", settings)
    try:
        names = await provider.name_topics(llm_groups(result, dict(zip(ids, texts, strict=True))))  # type: ignore[attr-defined]
    except Exception as exc:
        log.warning("the model could not name the topics: %s", exc)
        result.warnings.append(f"LLM naming failed, offline names kept: {str(exc)[:200]}")
        return result
    finally:
        await provider.close()
    by_id = {t.id: t for t in result.topics}
    for n in names:
        if n.cluster in by_id:
            by_id[n.cluster].name, by_id[n.cluster].summary = n.name.strip(), n.summary.strip()
    result.method = "llm"
    return result
