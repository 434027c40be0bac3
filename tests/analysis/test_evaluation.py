from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.analysis.evaluation import Counts, string_found, text_recall
from tests.conftest import make_settings


@pytest.mark.parametrize("expected,lines,found", [
    ("THE PEACH OPEN MOVIE PROJECT PRESENTS", ["THE PEACH OPEN MOVIE PROJECT", "PRESENTS"], True),
    ("THE PEACH OPEN MOVIE PROJECT PRESENTS", ["PRESENTS", "THE PEACH OPEN MOVIE PROJECT"], False),  # order matters
    ("Big Buck BUNNY", ["BORKY"], False),
    ("Big Buck BUNNY", ["big buck bunny"], False),  # exact: case counts
    ("Big  Buck\nBUNNY", ["Big Buck", "BUNNY"], True),
])
def test_string_found(expected: str, lines: list[str], found: bool) -> None:
    assert string_found(expected, lines) is found


def test_counts() -> None:
    c = Counts(2, 1, 0) + Counts(1, 0, 1)
    assert (c.precision, c.recall, c.f1) == (0.75, 0.75, 0.75)
    assert Counts(0, 0, 0).f1 == 1.0 and Counts(0, 1, 1).f1 == 0.0


async def test_known_on_screen_text_recall_floor(corpus: Path, tmp_path: Path) -> None:
    """bench/accuracy.py measured 1/2: the Big Buck Bunny logo's drawn letters defeat PP-OCR."""
    manifest = json.loads((corpus / "manifest.json").read_text())
    rows = await text_recall(corpus, manifest, make_settings(tmp_path))
    assert len(rows) == 2
    assert sum(ok for _t, ok, _s in rows) / len(rows) >= 0.5
    assert dict((t, ok) for t, ok, _s in rows)["THE PEACH OPEN MOVIE PROJECT PRESENTS"] is True
