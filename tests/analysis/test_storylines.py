from __future__ import annotations

import numpy as np
import pytest

from app.analysis.storylines import group_storylines, scene_text, storylines


def v(*xs: float) -> list[float]:
    return list(xs)


@pytest.mark.parametrize("rows,ids", [
    ([], []),
    ([v(1, 0, 0)], [0]),
    ([v(1, 0, 0), v(0.9, 0.1, 0), v(0, 1, 0), v(1, 0.05, 0)], [0, 0, 1, 0]),   # a story comes back
    ([v(1, 0, 0), v(0, 0, 0), v(0, 1, 0)], [0, 0, 1]),                        # nothing to embed: continues
    ([v(0, 0, 0), v(0, 0, 0), v(0, 1, 0), v(0, 1, 0)], [0, 0, 0, 0]),         # empty start joins the first story
    ([v(1, 0, 0), v(0.6, 0.8, 0)], [0, 1]),                                   # cosine 0.6 < 0.7
])
def test_group_storylines(rows: list[list[float]], ids: list[int]) -> None:
    arr = np.array(rows, np.float32).reshape(len(rows), 3)
    assert group_storylines(arr, 0.7) == ids


def test_storyline_spans_and_labels() -> None:
    items = [{"index": 0, "start_s": 0.0, "end_s": 4.0, "labels": [{"name": "dog", "confidence": 0.9}]},
             {"index": 1, "start_s": 4.0, "end_s": 6.0, "labels": [{"name": "car", "confidence": 0.8}]},
             {"index": 2, "start_s": 6.0, "end_s": 9.5, "labels": [{"name": "dog", "confidence": 0.95},
                                                                  {"name": "ball", "confidence": 0.5}]}]
    out = storylines(items, [0, 1, 0])
    assert out == [
        {"id": 0, "scenes": [0, 2], "start_s": 0.0, "end_s": 9.5, "spans": [[0.0, 4.0], [6.0, 9.5]],
         "duration_s": 7.5, "labels": ["dog", "ball"]},
        {"id": 1, "scenes": [1], "start_s": 4.0, "end_s": 6.0, "spans": [[4.0, 6.0]], "duration_s": 2.0,
         "labels": ["car"]}]


def test_scene_text_joins_seen_read_heard() -> None:
    item = {"labels": [{"name": "dog", "confidence": 0.9}, {"name": "ball", "confidence": 0.4}],
            "text": ["GOOD BOY"], "transcript": "fetch it"}
    assert scene_text(item) == "dog, ball. GOOD BOY. fetch it"
    assert scene_text({"labels": [], "text": []}) == ""
