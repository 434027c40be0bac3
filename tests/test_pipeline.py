"""The whole analysis on real files: schema v2 sections, skips, failure isolation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from app.analysis import base
from app.analysis.base import Analyser, Context, analyser_names, get_analyser
from app.pipeline import PIPELINE_STAGES, SCHEMA_VERSION, Progress, analyse_file
from app.providers.local import LocalProvider
from tests.conftest import make_settings


async def run(corpus: Path, tmp_path: Path, model_dir: Path, rel: str, dims: str = "all", **overrides: Any
              ) -> tuple[dict[str, Any], Progress, Path]:
    settings = make_settings(tmp_path, model_dir=model_dir, **overrides)
    progress = Progress()
    got = await analyse_file(corpus / rel, task_id="t1", sha256="ab" + "0" * 62, size=1, container="mp4",
                             dimensions=dims, settings=settings, provider=LocalProvider(settings), progress=progress)
    return got.document, progress, settings.cache_dir


async def test_speech_clip_gives_every_section(corpus: Path, tmp_path: Path, model_dir: Path) -> None:
    doc, progress, cache = await run(corpus, tmp_path, model_dir, "variants/chaplin_jfk_speech.mp4")
    assert doc["schema_version"] == SCHEMA_VERSION == 2
    for v1_field in ("task_id", "provider", "dimensions", "video", "tags", "text", "frames", "audio", "partial",
                     "warnings", "usage", "reused_from"):
        assert v1_field in doc
    assert {n: s["status"] for n, s in doc["analysis"].items()} == {
        "scenes": "ok", "speech": "ok", "subtitles": "skipped", "faces": "ok", "moderation": "ok", "storylines": "ok"}
    assert doc["subtitles"] == {"status": "skipped", "reason": "no on-screen text was read"}
    [scene] = doc["scenes"]
    assert (scene["start_frame"], scene["end_frame"]) == (0, 274) and scene["end_s"] == pytest.approx(11.0, abs=0.05)
    thumb = cache / scene["keyframe"]["thumbnail"]
    assert thumb.read_bytes()[:3] == b"\xff\xd8\xff" and 90 < scene["keyframe"]["frame"] < 190
    speech = doc["speech"]
    assert speech["language"] == "en" and speech["has_speech"] and speech["engine"] == "whisper"
    assert "ask not what your country can do for you" in speech["transcript"].lower()
    assert speech["segments"][0]["scenes"] == [0] and speech["voice_activity"]
    assert "my fellow americans" in scene["transcript"].lower() and scene["storyline"] == 0
    tags = {t["name"]: t for t in doc["tags"]}
    assert tags["country"]["sources"] == ["speech"] and tags["speech"]["ranges"][0][0] < 1.0
    assert doc["faces"]["identities"] is None and "offline" in doc["faces"]["identities_reason"]
    assert doc["moderation"]["needs_review"] is False
    assert doc["storylines"]["items"][0]["spans"] == [[scene["start_s"], scene["end_s"]]]
    assert set(progress.timings) >= {"probing", "detecting_scenes", "labelling_frames", "reading_text",
                                     "transcribing_speech", "detecting_faces", "grouping_storylines"}


async def test_missing_inputs_are_skipped_not_failed(corpus: Path, tmp_path: Path, model_dir: Path) -> None:
    doc, _p, _c = await run(corpus, tmp_path, model_dir, "variants/chaplin_audio_stripped.mp4", dims="audio")
    assert doc["speech"] == {"status": "skipped", "reason": "no audio track"}
    assert doc["faces"]["status"] == "skipped" and "vision" in doc["faces"]["reason"]
    assert doc["analysis"]["scenes"]["status"] == "ok" and len(doc["scenes"]) == 1
    assert doc["scenes"][0]["labels"] == [] and doc["tags"] == []   # no vision, no text, no audio: nothing seen
    assert not any(s["status"] == "failed" for s in doc["analysis"].values())


async def test_a_failing_stage_keeps_the_others(corpus: Path, tmp_path: Path, model_dir: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    class Broken(Analyser):
        name, stage = "faces", "detecting_faces"

        def analyse(self, ctx: Context) -> dict[str, Any]:
            raise RuntimeError("model file is corrupt")

    monkeypatch.setitem(base._REGISTRY, "faces", f"{__name__}:BROKEN")
    monkeypatch.setitem(globals(), "BROKEN", Broken)
    doc, _p, _c = await run(corpus, tmp_path, model_dir, "variants/concat_chaplin_city_cut4s.mp4", dims="vision")
    assert doc["faces"] == {"status": "failed", "error": {"code": "analysis_failed",
                                                          "message": "RuntimeError: model file is corrupt"}}
    assert doc["analysis"]["faces"]["status"] == "failed"
    assert doc["analysis"]["moderation"]["status"] == "ok" and doc["analysis"]["storylines"]["status"] == "ok"
    assert [s["start_frame"] for s in doc["scenes"]] == [0, 100]  # the cut at 4 s (manifest frame 100)
    assert any("faces failed" in w for w in doc["warnings"])


async def test_truncated_file_scenes_end_where_decoding_did(corpus: Path, tmp_path: Path, model_dir: Path) -> None:
    doc, _p, _c = await run(corpus, tmp_path, model_dir, "hostile/truncated_first_30pct.mp4", dims="vision")
    assert doc["partial"] is True
    assert doc["scenes"][-1]["end_frame"] == 42 and doc["scenes"][-1]["end_s"] < 2.0


def test_every_stage_name_is_known_to_the_pipeline() -> None:
    stages = {get_analyser(n).stage for n in analyser_names()}
    assert stages <= PIPELINE_STAGES and len(stages) == len(analyser_names())
