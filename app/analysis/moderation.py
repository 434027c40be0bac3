"""Moderation: a needs-review flag, with the frames and classes that raised it.

NudeNet's detector (`320n.onnx`, shipped in the `nudenet` wheel) runs on every sampled
frame and scene keyframe. Per ../shared/MODELS.md only its *_EXPOSED classes at >= 0.8
count (its face/gender classes are unreliable, cartoons give low-score false positives),
and of those only the ones that mean nudity: exposed feet, armpits or bellies do not.
The flag means "a person should look", never "this is unacceptable".
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from app.analysis.base import Analyser, Context, missing, shared_model

WATCHED = ("FEMALE_BREAST_EXPOSED", "FEMALE_GENITALIA_EXPOSED", "MALE_GENITALIA_EXPOSED",
           "BUTTOCKS_EXPOSED", "ANUS_EXPOSED")


def triggers(detections: Iterable[dict[str, Any]], min_confidence: float,
             watched: Iterable[str] = WATCHED) -> list[dict[str, Any]]:
    """The detections that call for review: a watched class at or above the threshold (pure)."""
    classes = set(watched)
    return [{"class": d["class"], "score": round(float(d["score"]), 4), "box": list(d["box"])}
            for d in detections if d["class"] in classes and float(d["score"]) >= min_confidence]


class ModerationAnalyser(Analyser):
    name = "moderation"
    stage = "checking_moderation"
    dimension = "vision"

    def analyse(self, ctx: Context) -> dict[str, Any]:
        def build() -> Any:
            try:
                from nudenet import NudeDetector
            except ImportError as exc:
                raise missing(exc, "moderation") from exc
            return NudeDetector()

        detector = shared_model("moderation:nudenet", build)
        min_conf = ctx.settings.moderation_min_confidence
        found = []
        for t, rgb, kind in ctx.images():
            import numpy as np

            hits = triggers(detector.detect(np.ascontiguousarray(rgb[:, :, ::-1])), min_conf)  # NudeNet reads BGR
            for hit in hits:
                found.append({"time_s": round(t, 3), "source": kind, "scene": ctx.scene_at(t), **hit})
        return {"model": "NudeNet 320n", "min_confidence": min_conf, "classes": list(WATCHED),
                "checked_images": len(ctx.images()), "needs_review": bool(found),
                "triggers": sorted(found, key=lambda x: (x["time_s"], -x["score"]))}
