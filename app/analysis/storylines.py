"""Storylines: scenes grouped by what was seen, read and heard in them.

Each scene becomes a short text (its labels, on-screen lines and transcript), embedded with
the packaged MiniLM (app/search/embeddings.py `Embedder`, the same vectors search uses).
Scenes are then grouped in time order: a scene joins the storyline whose mean vector is
most similar to it when that cosine similarity reaches STORYLINE_SIMILARITY, else it opens
a new one; a scene with nothing to embed continues the previous scene's storyline (a
silent, text-free shot between two parts of one story belongs to it). A storyline can
come back after another (spans). Grouping is pure and table-tested.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from app.analysis.base import Analyser, Context, shared_model
from app.tags import merge_ranges


def scene_text(item: dict[str, Any]) -> str:
    """What a scene is about, as one line of text (pure)."""
    parts = [", ".join(lb["name"] for lb in item.get("labels", [])[:8])]
    parts += item.get("text", [])[:8]
    if item.get("transcript"):
        parts.append(item["transcript"])
    return ". ".join(p for p in parts if p)[:1000]


def group_storylines(vectors: np.ndarray, threshold: float) -> list[int]:
    """Storyline id per row (rows in time order; an all-zero row means "nothing to compare")."""
    ids: list[int] = []
    sums: list[np.ndarray] = []
    for v in vectors:
        norm = float(np.linalg.norm(v))
        if norm < 1e-9:
            if not ids:
                sums.append(np.zeros_like(v))
            ids.append(ids[-1] if ids else 0)
            continue
        v = v / norm
        best, best_sim = -1, -2.0
        for k, s in enumerate(sums):
            n = float(np.linalg.norm(s))
            if n < 1e-9:
                continue
            sim = float(v @ (s / n))
            if sim > best_sim:
                best, best_sim = k, sim
        if best >= 0 and best_sim >= threshold:
            sums[best] = sums[best] + v
            ids.append(best)
        elif ids and float(np.linalg.norm(sums[ids[-1]])) < 1e-9:
            sums[ids[-1]] = v.copy()  # the first scene(s) had nothing to embed: this one defines their storyline
            ids.append(ids[-1])
        else:
            sums.append(v.copy())
            ids.append(len(sums) - 1)
    return ids


def storylines(items: Sequence[dict[str, Any]], ids: Sequence[int]) -> list[dict[str, Any]]:
    """Storylines with their scenes, time spans and overall extent (pure)."""
    out: dict[int, dict[str, Any]] = {}
    for item, sid in zip(items, ids, strict=True):
        story = out.setdefault(sid, {"id": sid, "scenes": [], "_ranges": [], "labels": {}})
        story["scenes"].append(item["index"])
        story["_ranges"].append((item["start_s"], item["end_s"]))
        for lb in item.get("labels", []):
            story["labels"][lb["name"]] = max(story["labels"].get(lb["name"], 0.0), lb["confidence"])
    result = []
    for story in sorted(out.values(), key=lambda s: s["id"]):
        spans = merge_ranges(story.pop("_ranges"), 1e-3)
        labels = story.pop("labels")
        story.update({"start_s": spans[0][0], "end_s": spans[-1][1], "spans": spans,
                      "duration_s": round(sum(b - a for a, b in spans), 3),
                      "labels": [n for n, _c in sorted(labels.items(), key=lambda nc: (-nc[1], nc[0]))[:5]]})
        result.append(story)
    return result


class StorylineAnalyser(Analyser):
    name = "storylines"
    stage = "grouping_storylines"

    def skip_reason(self, ctx: Context) -> str | None:
        if not ctx.scenes:
            return "no scenes"
        if not any(scene_text(s) for s in ctx.scenes):
            return "nothing was seen, read or heard to compare scenes by"
        return None

    def analyse(self, ctx: Context) -> dict[str, Any]:
        from app.search.embeddings import Embedder

        embedder: Embedder = shared_model(f"embedder:{ctx.settings.models_dir}",
                                          lambda: Embedder(ctx.settings.models_dir))
        texts = [scene_text(s) for s in ctx.scenes]
        ids = group_storylines(embedder.embed(texts), ctx.settings.storyline_similarity)
        for item, sid in zip(ctx.scenes, ids, strict=True):
            item["storyline"] = sid
        return {"embedding": "all-MiniLM-L6-v2", "similarity": ctx.settings.storyline_similarity,
                "items": storylines(ctx.scenes, ids)}
