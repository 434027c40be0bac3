from __future__ import annotations

from pathlib import Path

import pytest

from app.analysis.subtitles import (
    Cue,
    cues_from_document,
    cues_from_frames,
    frame_subtitle,
    in_subtitle_region,
    to_srt,
    to_vtt,
)
from tests.analysis.conftest import SUBTITLES


def box(x0: float, y0: float, x1: float, y1: float) -> list[list[float]]:
    return [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]


@pytest.mark.parametrize("b,inside", [
    (box(220, 300, 420, 330), True),    # bottom centre: a subtitle
    (box(220, 20, 420, 60), False),     # top: a title
    (box(10, 300, 120, 330), False),    # bottom-left corner: a logo or a sign
    (box(100, 240, 540, 350), False),   # too tall for a subtitle line
    (box(250, 200, 390, 225), False),   # middle of the picture
])
def test_subtitle_region(b: list[list[float]], inside: bool) -> None:
    assert in_subtitle_region(b, 640, 360) is inside


def test_frame_subtitle_joins_words_of_a_row_and_rows_top_to_bottom() -> None:
    lines = [{"text": "world", "box": box(330, 290, 400, 310)}, {"text": "hello", "box": box(250, 291, 320, 311)},
             {"text": "second row", "box": box(260, 318, 380, 338)}, {"text": "TITLE", "box": box(250, 20, 390, 60)}]
    assert frame_subtitle(lines, 640, 360) == "hello world\nsecond row"
    assert frame_subtitle([], 640, 360) == ""


@pytest.mark.parametrize("frames,cues", [
    ([], []),
    ([(0, 1, "Hi"), (1, 2, "Hi"), (2, 3, "")], [Cue(0, 2, "Hi")]),
    ([(0, 1, "Hello there"), (1, 2, "Hello therе!"), (2, 3, "Bye")], [Cue(0, 2, "Hello therе!"), Cue(2, 3, "Bye")]),
    ([(0, 1, "Hi"), (1, 2, ""), (2, 3, "Hi")], [Cue(0, 1, "Hi"), Cue(2, 3, "Hi")]),  # a gap: a new cue
    ([(0, 1, "Good morning"), (1, 2, "Good mornin")], [Cue(0, 2, "Good morning")]),  # OCR jitter: longest kept
])
def test_cues_from_frames(frames: list[tuple[float, float, str]], cues: list[Cue]) -> None:
    assert cues_from_frames(frames) == cues


def test_srt_and_vtt_formats() -> None:
    cues = [Cue(0.0, 2.5, "Hello"), Cue(3661.0015, 3662.2, "two\n\nlines --> here")]
    assert to_srt(cues) == ("1\n00:00:00,000 --> 00:00:02,500\nHello\n\n"
                            "2\n01:01:01,002 --> 01:01:02,200\ntwo\nlines --> here\n")
    assert to_vtt(cues) == ("WEBVTT\n\n00:00:00.000 --> 00:00:02.500\nHello\n\n"
                            "01:01:01.002 --> 01:01:02.200\ntwo\nlines -> here\n")
    assert to_vtt([]) == "WEBVTT\n\n"


def test_cues_from_document() -> None:
    doc = {"speech": {"status": "ok", "segments": [{"start_s": 1.0, "end_s": 2.0, "text": "hi"}]},
           "subtitles": {"status": "skipped", "reason": "no on-screen text was read"}}
    assert cues_from_document(doc, "speech") == [Cue(1.0, 2.0, "hi")]
    assert cues_from_document(doc, "text") == [] and cues_from_document({}, "speech") == []


async def test_burned_in_subtitles_are_extracted_timed_and_deduplicated(subtitled_video: Path, tmp_path: Path,
                                                                        model_dir: Path) -> None:
    from app.pipeline import Progress, analyse_file
    from app.providers.local import LocalProvider
    from tests.conftest import make_settings

    settings = make_settings(tmp_path, model_dir=model_dir)
    got = await analyse_file(subtitled_video, task_id="t", sha256="subs", size=1, container="mp4", dimensions="text",
                             settings=settings, provider=LocalProvider(settings), progress=Progress())
    subs = got.document["subtitles"]
    assert subs["status"] == "ok"
    assert [c["text"] for c in subs["cues"]] == [t for _a, _b, t in SUBTITLES]  # the title is not a subtitle
    for cue, (start, end, _t) in zip(subs["cues"], SUBTITLES, strict=True):
        assert abs(cue["start_s"] - start) <= 1.0 and abs(cue["end_s"] - end) <= 1.0
    assert "CHAPTER ONE" in got.document["scenes"][0]["text"]  # but it is the scene's on-screen text
    assert "faces" in got.document and got.document["faces"]["status"] == "skipped"  # vision not asked
