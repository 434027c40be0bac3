"""Merging tag sightings into tags with sources and time ranges. Pure functions."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Sighting:
    """One analyser saw `name` between start_s and end_s with this confidence."""

    name: str
    confidence: float
    source: str  # visual | ocr | gemini | ...
    start_s: float
    end_s: float


def normalise_name(name: str) -> str:
    """Case-fold, NFKC (full-width -> half-width), collapse spaces, strip punctuation at the ends."""
    s = unicodedata.normalize("NFKC", name).strip().lower()
    s = re.sub(r"\s+", " ", s)
    return s.strip(" .,;:!?'\"()[]{}<>-_/|·。，、；：！？“”‘’（）《》【】")


def merge_ranges(ranges: Iterable[tuple[float, float]], gap_s: float) -> list[list[float]]:
    """Union of intervals; intervals closer than gap_s are joined."""
    out: list[list[float]] = []
    for start, end in sorted(ranges):
        if out and start <= out[-1][1] + gap_s:
            out[-1][1] = max(out[-1][1], end)
        else:
            out.append([start, end])
    return [[round(a, 3), round(b, 3)] for a, b in out]


def merge_sightings(sightings: Iterable[Sighting], *, gap_s: float = 0.0) -> list[dict[str, object]]:
    """Group sightings by normalised name: best confidence, sorted sources, merged ranges.

    Sorted by confidence (highest first), then by name for a stable order.
    """
    groups: dict[str, list[Sighting]] = {}
    for s in sightings:
        key = normalise_name(s.name)
        if key:
            groups.setdefault(key, []).append(s)
    tags: list[dict[str, object]] = []
    for name, items in groups.items():
        tags.append({
            "name": name,
            "confidence": round(max(i.confidence for i in items), 4),
            "sources": sorted({i.source for i in items}),
            "ranges": merge_ranges(((i.start_s, i.end_s) for i in items), gap_s),
            "count": len(items),
        })
    tags.sort(key=lambda t: (-float(t["confidence"]), str(t["name"])))  # type: ignore[arg-type]
    return tags


def frame_windows(times: list[float], start_s: float, end_s: float) -> list[tuple[float, float]]:
    """The span of video each sampled frame stands for: halfway to its neighbours."""
    out = []
    for i, t in enumerate(times):
        lo = start_s if i == 0 else (times[i - 1] + t) / 2
        hi = end_s if i == len(times) - 1 else (t + times[i + 1]) / 2
        out.append((max(start_s, lo), max(lo, min(end_s, hi))))
    return out
