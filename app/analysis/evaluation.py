"""Accuracy against the corpus ground truth (../shared/corpus/manifest.json).

Pure scoring (cut matching with a frame tolerance, precision/recall/F1, word error rate,
exact-string recall) and the measurements that feed it, shared by `bench/accuracy.py`
(prints the figures) and the tests (assert floors, so a regression fails).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.config import Settings


@dataclass(frozen=True)
class Counts:
    tp: int
    fp: int
    fn: int

    def __add__(self, other: Counts) -> Counts:
        return Counts(self.tp + other.tp, self.fp + other.fp, self.fn + other.fn)

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0


def match_cuts(predicted: Sequence[int], truth: Sequence[int], tolerance: int = 1) -> Counts:
    """One-to-one matching of cut frames within +-tolerance frames, nearest first (pure)."""
    pairs = sorted((abs(p - t), i, j) for i, p in enumerate(predicted) for j, t in enumerate(truth)
                   if abs(p - t) <= tolerance)
    used_p: set[int] = set()
    used_t: set[int] = set()
    for _d, i, j in pairs:
        if i not in used_p and j not in used_t:
            used_p.add(i)
            used_t.add(j)
    return Counts(len(used_p), len(predicted) - len(used_p), len(truth) - len(used_t))


def words(text: str) -> list[str]:
    """Lower-case words without punctuation (apostrophes inside words kept)."""
    t = unicodedata.normalize("NFKC", text).lower()
    return re.findall(r"[\w']+", t)


def wer(reference: str, hypothesis: str) -> float:
    """Word error rate: (substitutions + deletions + insertions) / reference words (pure)."""
    ref, hyp = words(reference), words(hypothesis)
    prev = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        cur = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h))
        prev = cur
    return prev[-1] / max(1, len(ref))


def _squash(text: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", text).split())


def string_found(expected: str, lines: Sequence[str]) -> bool:
    """The expected string appears verbatim (whitespace-collapsed) in the lines read, joined in order."""
    return _squash(expected) in _squash(" ".join(lines))


# --- measurements on the corpus (I/O) ----------------------------------------------
def cut_files(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """Corpus entries with a cut list (an empty list counts: it tests false cuts)."""
    return [f for f in manifest["files"] if "scene_cuts_s" in f.get("ground_truth", {})
            and f["ground_truth"].get("expected_to_fail") is False]


async def detect_file_cuts(path: Path, settings: Settings) -> list[int]:
    """The cut frames our decode pass finds in one file (no models involved)."""
    from app.media.frames import extract_frames, plan_frames
    from app.media.probe import probe
    from app.media.scenes import CutParams, SceneTracker

    info = await probe(path, settings.probe_timeout_s)
    plan = plan_frames(info, max_frames=settings.max_frames, interval_s=settings.frame_interval_s,
                       max_side=settings.frame_max_side)
    tracker = SceneTracker(CutParams(threshold=settings.scene_threshold, min_content=settings.scene_min_content,
                                     min_scene_len=settings.scene_min_len_frames))
    await extract_frames(path, plan, timeout_s=settings.decode_timeout_s, sink=tracker,
                         scene_width=settings.scene_width)
    tracker.finish(info.start_s + info.duration_s)
    return list(tracker.found)


async def scene_accuracy(corpus: Path, manifest: dict[str, Any], settings: Settings
                         ) -> tuple[Counts, list[dict[str, Any]]]:
    total = Counts(0, 0, 0)
    rows = []
    for entry in cut_files(manifest):
        truth = entry["ground_truth"].get("scene_cut_frames", [])
        found = await detect_file_cuts(corpus / entry["path"], settings)
        c = match_cuts(found, truth)
        total = total + c
        rows.append({"path": entry["path"], "truth": truth, "found": found, "counts": c})
    return total, rows


async def speech_wer(corpus: Path, manifest: dict[str, Any], settings: Settings, engine: str
                     ) -> tuple[float, str, str]:
    """(WER, reference, hypothesis) for the corpus clip with a reference transcript."""
    from app.analysis.speech import get_engine
    from app.media.audio import extract_audio

    entry = next(f for f in manifest["files"] if (f.get("ground_truth", {}).get("speech") or {}).get("transcript"))
    reference = entry["ground_truth"]["speech"]["transcript"]
    audio = await extract_audio(corpus / entry["path"], start_s=0.0, max_seconds=3600, timeout_s=120)
    import asyncio

    transcript = await asyncio.to_thread(get_engine(engine, settings.models_dir).transcribe, audio.samples)
    hypothesis = " ".join(s.text for s in transcript.segments)
    return wer(reference, hypothesis), reference, hypothesis


async def text_recall(corpus: Path, manifest: dict[str, Any], settings: Settings
                      ) -> list[tuple[str, bool, list[str]]]:
    """For each known on-screen string: was it read verbatim on the frames sampled in its time span?"""
    import asyncio

    from app.media.frames import extract_frames, plan_frames
    from app.media.probe import probe
    from app.providers.local import shared_text_reader

    rows = []
    for entry in manifest["files"]:
        known = entry.get("ground_truth", {}).get("on_screen_text_native") or []
        if not known:
            continue
        path = corpus / entry["path"]
        info = await probe(path, settings.probe_timeout_s)
        plan = plan_frames(info, max_frames=settings.max_frames, interval_s=settings.frame_interval_s,
                           max_side=settings.frame_max_side)
        frames = (await extract_frames(path, plan, timeout_s=settings.decode_timeout_s)).frames
        reader = shared_text_reader()
        for item in known:
            lo, hi = item["approx_start_s"] - 0.5, item["approx_end_s"] + 0.5
            seen: list[str] = []
            for f in frames:
                if lo <= f.time_s <= hi:
                    lines = await asyncio.to_thread(reader.read, f.image, settings.ocr_min_confidence)
                    seen += [t for t, _s, _b in lines]
            rows.append((item["text"], string_found(item["text"], seen), seen))
    return rows
