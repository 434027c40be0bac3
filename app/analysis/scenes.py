"""Per-scene insights: keyframe thumbnails, the scene's labels and its on-screen text.

The scenes themselves (cuts, spans, keyframes) come from the decode pass
(app/media/scenes.py). Here each keyframe is written as a JPEG to the cache, labelled with
the local EfficientNet-Lite0 (so a short scene that no sampled frame fell into still has
labels), and the labels and text of the sampled frames inside the scene are joined in.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from app.analysis.base import Analyser, Context, write_jpeg
from app.tags import Sighting, normalise_name


def scene_items(ctx: Context) -> list[dict[str, Any]]:
    """The document's base scene items (times and frames only)."""
    return [{
        "index": s.index,
        "start_s": s.span.start_s, "end_s": s.span.end_s,
        "start_frame": s.span.start_frame, "end_frame": s.span.end_frame,
        "keyframe": {"frame": s.keyframe.frame, "time_s": round(s.keyframe.time_s, 3), "thumbnail": None},
        "labels": [], "text": [],
    } for s in ctx.scene_list]


def best_labels(labels: Iterable[tuple[str, float]], limit: int = 10) -> list[dict[str, Any]]:
    """Union by normalised name, best confidence kept, highest first (pure)."""
    best: dict[str, tuple[str, float]] = {}
    for name, conf in labels:
        key = normalise_name(name)
        if key and (key not in best or conf > best[key][1]):
            best[key] = (name, conf)
    ranked = sorted(best.values(), key=lambda nc: (-nc[1], nc[0]))[:limit]
    return [{"name": n, "confidence": round(c, 4)} for n, c in ranked]


def unique_lines(lines: Iterable[str]) -> list[str]:
    """Repeated lines merged (by normalised text), first appearance order (pure)."""
    seen: set[str] = set()
    out = []
    for line in lines:
        key = normalise_name(line)
        if key and key not in seen:
            seen.add(key)
            out.append(line)
    return out


class SceneAnalyser(Analyser):
    name = "scenes"
    stage = "labelling_scenes"

    def skip_reason(self, ctx: Context) -> str | None:
        return None if ctx.scene_list else "no scene was detected (nothing decoded)"

    def analyse(self, ctx: Context) -> dict[str, Any]:
        s = ctx.settings
        frames_insight = ctx.provider_output.insights.get("frames") or []
        keyframe_labels: list[list[tuple[str, float]]] = [[] for _ in ctx.scene_list]
        if ctx.wants("vision"):
            from app.providers.local import labels_from_probs, shared_labeler

            labeler = shared_labeler(s.models_dir)
            probs = labeler.classify([sc.keyframe.image for sc in ctx.scene_list])
            for i, p in enumerate(probs):
                keyframe_labels[i] = labels_from_probs(p, labeler.names, min_label=s.label_min_confidence,
                                                       min_group=max(0.5, s.label_min_confidence))
        for scene, item, kf_labels in zip(ctx.scene_list, ctx.scenes, keyframe_labels, strict=True):
            path = ctx.thumbs_dir / f"scene_{scene.index:04d}.jpg"
            write_jpeg(path, scene.keyframe.image)
            item["keyframe"]["thumbnail"] = f"{ctx.thumbs_ref}/{path.name}"
            inside = [f for f in frames_insight if item["start_s"] - 1e-6 <= f["time_s"] < item["end_s"]]
            seen = [(lb["name"], float(lb["confidence"])) for f in inside for lb in f.get("labels", [])]
            item["labels"] = best_labels([*kf_labels, *seen])
            item["text"] = unique_lines(t["text"] for f in inside for t in f.get("text", []))
            for name, conf in kf_labels:
                ctx.sightings.append(Sighting(name, conf, "visual", item["start_s"], item["end_s"]))
        return {"count": len(ctx.scenes), "thumbnails": ctx.thumbs_ref,
                "detector": {"method": "adaptive content (Lab)", "threshold": s.scene_threshold,
                             "min_content": s.scene_min_content, "min_scene_len_frames": s.scene_min_len_frames}}
