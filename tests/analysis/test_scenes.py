from __future__ import annotations

from app.analysis.scenes import best_labels, unique_lines


def test_best_labels_union_keeps_the_best_confidence() -> None:
    got = best_labels([("Dog", 0.5), ("dog", 0.9), ("ball", 0.7), ("", 0.99)], limit=2)
    assert got == [{"name": "dog", "confidence": 0.9}, {"name": "ball", "confidence": 0.7}]


def test_unique_lines_merge_repeats_in_first_seen_order() -> None:
    assert unique_lines(["PRESENTS", "THE PEACH", "presents.", "ＴＨＥ ＰＥＡＣＨ", "", "Bunny"]) == [
        "PRESENTS", "THE PEACH", "Bunny"]
