import pytest

from app.tags import Sighting, frame_windows, merge_ranges, merge_sightings, normalise_name


@pytest.mark.parametrize("raw,norm", [
    ("  Golden Retriever ", "golden retriever"), ("ＨＥＬＬＯ", "hello"), ("“你好。”", "你好"), ("a\n\tb", "a b"), ("...", ""),
])
def test_normalise(raw: str, norm: str) -> None:
    assert normalise_name(raw) == norm


@pytest.mark.parametrize("ranges,gap,out", [
    ([(0, 1), (1, 2)], 0, [[0, 2]]), ([(0, 1), (1.5, 2)], 0, [[0, 1], [1.5, 2]]),
    ([(0, 1), (1.5, 2)], 0.5, [[0, 2]]), ([(3, 4), (0, 1), (0.5, 3.5)], 0, [[0, 4]]), ([], 0, []),
])
def test_merge_ranges(ranges: list, gap: float, out: list) -> None:
    assert merge_ranges(ranges, gap) == out


def test_merge_sightings_keeps_sources_ranges_and_best_confidence() -> None:
    tags = merge_sightings([
        Sighting("Dog", 0.6, "visual", 0, 1), Sighting("dog", 0.9, "visual", 1, 2),
        Sighting("DOG", 0.7, "ocr", 5, 6), Sighting("cat", 0.95, "visual", 0, 1), Sighting("  ", 1.0, "ocr", 0, 1),
    ])
    assert [t["name"] for t in tags] == ["cat", "dog"]
    dog = tags[1]
    assert dog["confidence"] == 0.9 and dog["sources"] == ["ocr", "visual"]
    assert dog["ranges"] == [[0, 2], [5, 6]] and dog["count"] == 3


@pytest.mark.parametrize("times,start,end,out", [
    ([0.5, 1.5, 2.5], 0, 3, [(0, 1.0), (1.0, 2.0), (2.0, 3)]), ([0.0], 0, 0.04, [(0, 0.04)]),
    ([1.0, 3.0], 0.5, 4.0, [(0.5, 2.0), (2.0, 4.0)]),
])
def test_frame_windows(times: list, start: float, end: float, out: list) -> None:
    assert frame_windows(times, start, end) == out
