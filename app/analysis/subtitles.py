"""Burned-in subtitles from on-screen text, and SRT / WebVTT formatting.

As in the seed's video-subtitle-extractor: sampled frames -> text boxes (RapidOCR, already
run by the provider) -> subtitle-region filter (lower part of the picture, centred) ->
dedup (the same line on consecutive frames is one cue; OCR jitter tolerated) -> timed lines.
Cue times are the sampled frames' windows, so their precision is the sampling interval.
Everything here but the analyser is pure.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from app.analysis.base import Analyser, Context
from app.tags import normalise_name

REGION_TOP = 0.62       # a subtitle's box centre lies below this fraction of the height
REGION_CENTRE = 0.22    # ... and within this fraction of the width from the centre
MAX_LINE_HEIGHT = 0.15  # taller boxes are titles or signs, not subtitles
SAME_TEXT = 0.8         # similarity above which two readings are the same subtitle


@dataclass(frozen=True)
class Cue:
    start_s: float
    end_s: float
    text: str


def in_subtitle_region(box: Sequence[Sequence[float]], width: int, height: int) -> bool:
    """A text box (4 corner points, px) sits where subtitles are drawn."""
    xs, ys = [p[0] for p in box], [p[1] for p in box]
    cx, cy = (min(xs) + max(xs)) / 2, (min(ys) + max(ys)) / 2
    h = max(ys) - min(ys)
    return cy >= REGION_TOP * height and abs(cx - width / 2) <= REGION_CENTRE * width and h <= MAX_LINE_HEIGHT * height


def frame_subtitle(lines: Sequence[dict[str, Any]], width: int, height: int) -> str:
    """The subtitle on one frame: its region's lines, top to bottom, joined by newlines."""
    kept = [ln for ln in lines if in_subtitle_region(ln["box"], width, height)]
    kept.sort(key=lambda ln: (min(p[1] for p in ln["box"]), min(p[0] for p in ln["box"])))
    rows: list[list[dict[str, Any]]] = []
    for ln in kept:  # boxes on one row (a line split in words) are joined with a space
        top = min(p[1] for p in ln["box"])
        if rows and abs(top - min(p[1] for p in rows[-1][0]["box"])) < 0.5 * _height(ln["box"]):
            rows[-1].append(ln)
        else:
            rows.append([ln])
    return "\n".join(" ".join(x["text"] for x in sorted(r, key=lambda x: min(p[0] for p in x["box"])))
                     for r in rows)


def _height(box: Sequence[Sequence[float]]) -> float:
    ys = [p[1] for p in box]
    return max(ys) - min(ys)


def similar(a: str, b: str) -> bool:
    na, nb = normalise_name(a), normalise_name(b)
    return na == nb or difflib.SequenceMatcher(None, na, nb).ratio() >= SAME_TEXT


def cues_from_frames(frames: Sequence[tuple[float, float, str]]) -> list[Cue]:
    """(window start, window end, subtitle text or "") per sampled frame, in time order -> cues.

    Consecutive frames showing the same subtitle become one cue spanning their windows; a
    frame without one ends the cue. The longest reading of a cue is kept (OCR may miss a
    character on one frame).
    """
    cues: list[Cue] = []
    for start, end, text in frames:
        if not text.strip():
            continue
        if cues and similar(cues[-1].text, text) and start <= cues[-1].end_s + 1e-6:
            last = cues[-1]
            cues[-1] = Cue(last.start_s, max(last.end_s, end), max(last.text, text, key=len))
        else:
            cues.append(Cue(start, end, text))
    return cues


def _stamp(t: float, sep: str) -> str:
    ms = max(0, int(round(t * 1000)))
    h, rem = divmod(ms, 3_600_000)
    m, rem = divmod(rem, 60_000)
    s, ms = divmod(rem, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def to_srt(cues: Sequence[Cue]) -> str:
    """SubRip: numbered cues, `HH:MM:SS,mmm --> HH:MM:SS,mmm`, blank line between."""
    blocks = [f"{i}\n{_stamp(c.start_s, ',')} --> {_stamp(c.end_s, ',')}\n{_clean(c.text)}\n"
              for i, c in enumerate(cues, 1)]
    return "\n".join(blocks)


def to_vtt(cues: Sequence[Cue]) -> str:
    """WebVTT: a `WEBVTT` header, then `HH:MM:SS.mmm --> HH:MM:SS.mmm` cues."""
    blocks = [f"{_stamp(c.start_s, '.')} --> {_stamp(c.end_s, '.')}\n{_clean(c.text).replace('-->', '->')}\n"
              for c in cues]
    return "WEBVTT\n\n" + "\n".join(blocks)


def _clean(text: str) -> str:
    # A blank line would end the cue early in both formats.
    return "\n".join(line for line in text.splitlines() if line.strip()) or " "


def cues_from_document(document: dict[str, Any], source: str) -> list[Cue]:
    """Cues for `source` ("speech" or "text") from a stored result document (pure)."""
    if source == "speech":
        speech = document.get("speech") or {}
        return [Cue(s["start_s"], s["end_s"], s["text"]) for s in speech.get("segments") or []]
    subs = document.get("subtitles") or {}
    return [Cue(c["start_s"], c["end_s"], c["text"]) for c in subs.get("cues") or []]


class SubtitleAnalyser(Analyser):
    name = "subtitles"
    stage = "extracting_subtitles"
    dimension = "text"

    def skip_reason(self, ctx: Context) -> str | None:
        reason = super().skip_reason(ctx)
        if reason:
            return reason
        if not any(f.get("text") for f in ctx.provider_output.insights.get("frames") or []):
            return "no on-screen text was read"
        return None

    def analyse(self, ctx: Context) -> dict[str, Any]:
        plan = ctx.frames.plan
        frames = ctx.provider_output.insights.get("frames") or []
        rows = [(round(w[0], 3), round(w[1], 3), frame_subtitle(f.get("text", []), plan.width, plan.height))
                for f, w in zip(frames, ctx.windows, strict=False)]
        cues = cues_from_frames(rows)
        return {"source": "burned-in text", "region": {"top": REGION_TOP, "centre": REGION_CENTRE},
                "cues": [{"index": i, "start_s": c.start_s, "end_s": c.end_s, "text": c.text}
                         for i, c in enumerate(cues)]}
