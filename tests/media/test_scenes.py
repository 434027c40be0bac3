"""Scene detection: the pure cut decision (tables), the tracker's keyframes, the corpus floor."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from app.analysis.evaluation import Counts, match_cuts, scene_accuracy
from app.media.scenes import (
    AdaptiveCuts,
    CutParams,
    SceneTracker,
    Span,
    content_score,
    detect_cuts,
    lab,
    spans_from_cuts,
)
from tests.conftest import make_settings

P = CutParams(window=2, threshold=3.0, min_content=20.0, min_scene_len=3)


@pytest.mark.parametrize("scores,cuts", [
    ([], []),
    ([0.0], []),
    ([0, 2, 2, 2, 60, 2, 2, 2], [4]),                 # a lone spike is a cut
    ([0, 2, 2, 2, 15, 2, 2, 2], []),                  # a spike below min_content is not
    ([0, 40, 45, 50, 42, 48, 44, 46], []),            # steady fast motion: high but not above its neighbours
    ([0, 2, 60, 2, 2, 2, 2], []),                     # too soon after the start (min_scene_len 3)
    ([0, 2, 2, 60, 2, 60, 2, 2, 60, 2, 2], [3, 8]),   # 5 is too close to 3; 8 is far enough
    ([0, 2, 2, 2, 2, 2, 70], [6]),                    # the last frame: the window is cut short
    ([0, 0, 0, 0, 30, 0, 0], [4]),                    # neighbours all zero: ratio is infinite
    ([0, 2, 2, 2, 40, 40, 40, 2, 2], []),             # a dissolve: each high score has high neighbours
])
def test_detect_cuts(scores: list[float], cuts: list[int]) -> None:
    assert detect_cuts(scores, P) == cuts


def test_online_decisions_equal_the_offline_ones_and_lag_by_the_window() -> None:
    rng = np.random.default_rng(1)
    scores = list(rng.uniform(0, 8, 400))
    for i in (50, 51, 120, 300, 399):
        scores[i] = 90.0
    online = AdaptiveCuts(P)
    got = []
    for i, s in enumerate(scores):
        new = online.push(s)
        assert all(c <= i - P.window for c in new)  # decided once `window` later frames are known
        got += new
    got += online.finish()
    assert got == detect_cuts(scores, P) and 120 in got and 300 in got and 399 in got


@pytest.mark.parametrize("cuts,times,end,spans", [
    ([], [0.0, 0.5, 1.0], 1.5, [Span(0, 2, 0.0, 1.5)]),
    ([2], [0.0, 0.5, 1.0, 1.5], 2.0, [Span(0, 1, 0.0, 1.0), Span(2, 3, 1.0, 2.0)]),
    ([1, 3], [10.0, 10.1, 10.2, 10.3], 10.4, [Span(0, 0, 10.0, 10.1), Span(1, 2, 10.1, 10.3), Span(3, 3, 10.3, 10.4)]),
    ([], [], 5.0, []),
    ([0, 9], [0.0, 1.0], 0.5, [Span(0, 1, 0.0, 1.0)]),  # cuts outside the frames ignored; end never before the last frame
])
def test_spans_from_cuts(cuts: list[int], times: list[float], end: float, spans: list[Span]) -> None:
    assert spans_from_cuts(cuts, times, end) == spans


def test_lab_score_ignores_hue_noise_on_dark_grey_but_sees_a_cut() -> None:
    rng = np.random.default_rng(0)
    dark = np.full((36, 64, 3), 20, np.uint8)
    noisy = np.clip(dark.astype(int) + rng.integers(-3, 4, dark.shape), 0, 255).astype(np.uint8)
    green = np.zeros((36, 64, 3), np.uint8)
    green[..., 1] = 200
    assert content_score(lab(dark), lab(noisy)) < 5          # HSV hue would jump here
    assert content_score(lab(dark), lab(green)) > 60
    assert content_score(lab(green), lab(green)) == 0.0


def test_tracker_keeps_bounded_keyframes_from_each_scenes_middle() -> None:
    tracker = SceneTracker(P, keep=8)
    colours = [0] * 100 + [255] * 40  # one cut at frame 100
    for i, c in enumerate(colours):
        tracker.push(i, i * 0.04, np.full((4, 6, 3), c, np.uint8))
        assert all(len(k) <= 8 for _s, k in tracker._closed) and len(tracker._open.kept) <= 8
    scenes = tracker.finish(140 * 0.04)
    assert tracker.found == [100]
    assert [(s.span.start_frame, s.span.end_frame) for s in scenes] == [(0, 99), (100, 139)]
    assert 35 <= scenes[0].keyframe.frame <= 64 and 100 <= scenes[1].keyframe.frame <= 139
    assert scenes[1].keyframe.image[0, 0, 0] == 255 and scenes[0].keyframe.image[0, 0, 0] == 0
    with pytest.raises(ValueError):
        SceneTracker().push(3, 0.0, np.zeros((2, 2, 3), np.uint8))


async def test_scene_cut_f1_floor_on_the_corpus(corpus: Path, tmp_path: Path) -> None:
    """bench/accuracy.py's figure, as a floor: F1 >= 0.95 at +-1 frame over every file with a cut list."""
    manifest = json.loads((corpus / "manifest.json").read_text())
    total, rows = await scene_accuracy(corpus, manifest, make_settings(tmp_path))
    assert len(rows) >= 10 and total.tp >= 20
    assert total.f1 >= 0.95, [(r["path"], r["truth"], r["found"]) for r in rows if r["counts"].fp or r["counts"].fn]
    assert total.precision >= 0.95 and total.recall >= 0.95


@pytest.mark.parametrize("pred,truth,counts", [
    ([43, 136], [43, 136], Counts(2, 0, 0)),
    ([44, 135], [43, 136], Counts(2, 0, 0)),     # +-1 frame
    ([45], [43], Counts(0, 1, 1)),               # 2 frames off
    ([42, 43, 44], [43], Counts(1, 2, 0)),       # one truth matches one prediction
    ([], [5], Counts(0, 0, 1)),
    ([5], [], Counts(0, 1, 0)),
])
def test_match_cuts(pred: list[int], truth: list[int], counts: Counts) -> None:
    assert match_cuts(pred, truth) == counts
