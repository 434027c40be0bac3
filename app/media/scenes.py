"""Shot (scene) detection from the tiny every-frame stream of the one decode pass.

An equivalent of PySceneDetect's AdaptiveDetector (the best of its detectors in its own
benchmark): each frame gets a *content score*, the mean absolute difference from the
previous frame, and a cut is declared at frame i when

    score[i] >= min_content  and  score[i] / mean(score of the `window` frames on each side) >= threshold

with at least `min_scene_len` frames between cuts. One change from PySceneDetect: the
score is taken in CIE Lab, not HSV. Hue is undefined on dark and grey pixels, so during
a fade from black or on a dim, noisy shot HSV scores jump (measured on the corpus: 68 on
a fade frame of Big Buck Bunny, as high as a real cut), while Lab moves smoothly; with Lab
every real cut in the corpus scores >= 42 and no non-cut frame with a high ratio scores
over 16 (bench/accuracy.py prints the figures).

`AdaptiveCuts` decides cuts online with a lag of `window` frames; `detect_cuts` is the same
decision over a whole score list (pure, table-tested). `SceneTracker` is the decode pass's
sink: it scores frames as they arrive and keeps, for each open scene, a bounded sample of
its frames, so each finished scene gets a keyframe from its middle without a second pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

# Tuned on ../shared/corpus (bench/accuracy.py): F1 = 1.0 at +-1 frame, see the module docstring.
WINDOW = 2
THRESHOLD = 3.0
MIN_CONTENT = 20.0
MIN_SCENE_LEN = 15  # frames; PySceneDetect's default
KEEP_PER_SCENE = 32  # keyframe candidates kept per open scene


@dataclass(frozen=True)
class CutParams:
    window: int = WINDOW
    threshold: float = THRESHOLD
    min_content: float = MIN_CONTENT
    min_scene_len: int = MIN_SCENE_LEN


def lab(rgb: np.ndarray) -> np.ndarray:
    """RGB uint8 -> Lab as int16 (OpenCV's 8-bit Lab: L 0-255, a/b offset by 128)."""
    import cv2

    out: np.ndarray = cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB).astype(np.int16)
    return out


def content_score(prev_lab: np.ndarray, cur_lab: np.ndarray) -> float:
    """Mean absolute Lab difference, channels summed and scaled so a full swing is ~255 * 2."""
    d = np.abs(cur_lab - prev_lab).reshape(-1, 3).mean(axis=0)
    return float(d.sum() / 1.5)


class AdaptiveCuts:
    """Online adaptive-threshold cut decision. Push scores in frame order (frame 0 scores 0)."""

    def __init__(self, params: CutParams = CutParams()) -> None:
        self.p = params
        self.scores: list[float] = []
        self.decided = 0     # frames [0, decided) have been decided
        self.last_cut = 0    # the first frame of the current scene

    def _decide(self, i: int) -> bool:
        s = self.scores
        if i == 0 or s[i] < self.p.min_content or i - self.last_cut < self.p.min_scene_len:
            return False
        lo, hi = max(1, i - self.p.window), min(len(s), i + self.p.window + 1)
        neighbours = [s[j] for j in range(lo, hi) if j != i]
        avg = sum(neighbours) / len(neighbours) if neighbours else 0.0
        ratio = s[i] / avg if avg > 1e-6 else float("inf")
        return ratio >= self.p.threshold

    def push(self, score: float) -> list[int]:
        """Add the next frame's score; return the cuts that can now be decided."""
        self.scores.append(float(score))
        return self._advance(len(self.scores) - self.p.window)

    def finish(self) -> list[int]:
        """No more frames: decide the rest (the window is cut short at the end)."""
        return self._advance(len(self.scores))

    def _advance(self, upto: int) -> list[int]:
        cuts = []
        while self.decided < upto:
            i = self.decided
            self.decided += 1
            if self._decide(i):
                cuts.append(i)
                self.last_cut = i
        return cuts


def detect_cuts(scores: Sequence[float], params: CutParams = CutParams()) -> list[int]:
    """Indices of the first frame of each new shot (frame 0 never counts)."""
    cuts = AdaptiveCuts(params)
    found: list[int] = []
    for s in scores:
        found += cuts.push(s)
    return found + cuts.finish()


@dataclass(frozen=True)
class Span:
    start_frame: int  # inclusive
    end_frame: int    # inclusive
    start_s: float
    end_s: float      # the next scene's start, or the end of the video


def spans_from_cuts(cuts: Sequence[int], times: Sequence[float], end_s: float) -> list[Span]:
    """Scenes between cuts (pure; PySceneDetect's get_scenes_from_cuts). `times`: every frame's pts."""
    if not times:
        return []
    bounds = [0, *[c for c in cuts if 0 < c < len(times)], len(times)]
    out = []
    for a, b in zip(bounds, bounds[1:], strict=False):
        if b <= a:
            continue
        stop = times[b] if b < len(times) else max(end_s, times[-1])
        out.append(Span(a, b - 1, round(times[a], 3), round(stop, 3)))
    return out


@dataclass
class Keyframe:
    frame: int
    time_s: float
    image: np.ndarray  # RGB uint8, the tiny stream's size


@dataclass
class Scene:
    index: int
    span: Span
    keyframe: Keyframe


@dataclass
class _Open:
    start: int
    kept: list[Keyframe] = field(default_factory=list)
    stride: int = 1


class SceneTracker:
    """Sink for the decode pass's every-frame stream: scores, cuts and keyframes in bounded memory."""

    def __init__(self, params: CutParams = CutParams(), keep: int = KEEP_PER_SCENE) -> None:
        self.cuts = AdaptiveCuts(params)
        self.keep = keep
        self.times: list[float] = []
        self.found: list[int] = []
        self._prev: np.ndarray | None = None
        self._open = _Open(0)
        self._closed: list[tuple[int, list[Keyframe]]] = []  # (start frame, keyframe candidates)

    @property
    def scores(self) -> list[float]:
        return self.cuts.scores

    def push(self, index: int, time_s: float, rgb: np.ndarray) -> None:
        if index != len(self.times):
            raise ValueError(f"frames must arrive in order: got {index}, expected {len(self.times)}")
        self.times.append(float(time_s))
        cur = lab(rgb)
        score = 0.0 if self._prev is None else content_score(self._prev, cur)
        self._prev = cur
        self._keep(Keyframe(index, float(time_s), rgb))
        for cut in self.cuts.push(score):
            self._cut(cut)

    def _keep(self, kf: Keyframe) -> None:
        o = self._open
        if (kf.frame - o.start) % o.stride:
            return
        o.kept.append(kf)
        if len(o.kept) > self.keep:  # halve the sample, double the stride: bounded memory, even spread
            o.stride *= 2
            o.kept = [k for k in o.kept if (k.frame - o.start) % o.stride == 0]

    def _cut(self, cut: int) -> None:
        self.found.append(cut)
        old = self._open
        # The cut is decided `window` frames late: frames from the cut on belong to the new scene.
        self._closed.append((old.start, [k for k in old.kept if k.frame < cut]))
        self._open = _Open(cut)
        for k in old.kept:
            if k.frame >= cut:
                self._keep(k)

    def finish(self, end_s: float) -> list[Scene]:
        """Close the stream; scenes with a keyframe each (the kept frame nearest the middle)."""
        for cut in self.cuts.finish():
            self._cut(cut)
        pending = [*self._closed, (self._open.start, self._open.kept)]
        spans = spans_from_cuts(self.found, self.times, end_s)
        scenes = []
        for i, (span, (_start, kept)) in enumerate(zip(spans, pending, strict=False)):
            middle = (span.start_frame + span.end_frame) / 2
            candidates = kept or [k for _s, ks in pending for k in ks]
            if not candidates:
                continue
            kf = min(candidates, key=lambda k: (abs(k.frame - middle), k.frame))
            scenes.append(Scene(i, span, kf))
        return scenes
