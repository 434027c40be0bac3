from __future__ import annotations

from pathlib import Path

import pytest

from app.analysis.moderation import WATCHED, triggers


@pytest.mark.parametrize("dets,expect", [
    ([], []),
    ([{"class": "FEMALE_BREAST_EXPOSED", "score": 0.85, "box": [1, 2, 3, 4]}],
     [{"class": "FEMALE_BREAST_EXPOSED", "score": 0.85, "box": [1, 2, 3, 4]}]),
    ([{"class": "FEMALE_BREAST_EXPOSED", "score": 0.79, "box": [1, 2, 3, 4]}], []),   # below 0.8
    ([{"class": "FEET_EXPOSED", "score": 0.99, "box": [1, 2, 3, 4]}], []),            # exposed, but not nudity
    ([{"class": "FACE_FEMALE", "score": 0.99, "box": [1, 2, 3, 4]}], []),             # unreliable class
    ([{"class": "BUTTOCKS_COVERED", "score": 0.95, "box": [0, 0, 1, 1]}], []),
])
def test_triggers(dets: list[dict], expect: list[dict]) -> None:
    assert triggers(dets, 0.8) == expect


def test_watched_classes_are_exposed_nudity_only() -> None:
    assert all(c.endswith("_EXPOSED") for c in WATCHED)
    assert not {"FEET_EXPOSED", "ARMPITS_EXPOSED", "BELLY_EXPOSED", "MALE_BREAST_EXPOSED"} & set(WATCHED)


async def test_cartoon_and_film_frames_do_not_need_review(corpus: Path, tmp_path: Path, model_dir: Path) -> None:
    """MODELS.md: cartoons give false positives. With *_EXPOSED >= 0.8 the corpus raises no flag."""
    from app.pipeline import Progress, analyse_file
    from app.providers.local import LocalProvider
    from tests.conftest import make_settings

    settings = make_settings(tmp_path, model_dir=model_dir)
    got = await analyse_file(corpus / "containers/bbb_clip.mp4", task_id="t", sha256="m", size=1,
                             container="mp4", dimensions="vision", settings=settings,
                             provider=LocalProvider(settings), progress=Progress())
    mod = got.document["moderation"]
    assert mod["status"] == "ok" and mod["checked_images"] == 7 + 3  # 7 sampled frames, 3 scene keyframes
    assert mod["needs_review"] is False and mod["triggers"] == []
