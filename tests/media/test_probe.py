from pathlib import Path

import pytest

from app.errors import ProbeFailed
from app.media.probe import parse_probe, probe
from tests.conftest import corpus_files

BASE = {"format": {"format_name": "mov,mp4", "duration": "4.0", "size": "100", "start_time": "0.0"},
        "streams": [{"codec_type": "video", "codec_name": "h264", "width": 1280, "height": 720,
                     "avg_frame_rate": "25/1", "r_frame_rate": "25/1", "nb_frames": "100"}]}


def variant(**video: object) -> dict:
    data = {"format": dict(BASE["format"]), "streams": [dict(BASE["streams"][0], **video)]}
    return data


@pytest.mark.parametrize("data,expect", [
    (BASE, {"duration_s": 4.0, "fps": 25.0, "rotation": 0, "display_width": 1280, "display_height": 720,
            "has_audio": False}),
    (variant(side_data_list=[{"rotation": -90}]), {"rotation": 90, "display_width": 720, "display_height": 1280}),
    (variant(side_data_list=[{"rotation": 90}]), {"rotation": 270, "display_width": 720}),
    (variant(side_data_list=[{"rotation": -180}]), {"rotation": 180, "display_width": 1280}),
    (variant(tags={"rotate": "90"}), {"rotation": 270}),
    (variant(sample_aspect_ratio="4:3"), {"display_width": 1707, "display_height": 720}),
    (variant(avg_frame_rate="0/0", r_frame_rate="30000/1001"), {"fps": 29.97}),
    (variant(avg_frame_rate="0/0", r_frame_rate="90000/1"), {"fps": 25.0}),
])
def test_parse_probe_table(data: dict, expect: dict) -> None:
    p = parse_probe(data).as_dict()
    assert {k: p[k] for k in expect} == expect


def test_duration_from_frames_when_container_has_none() -> None:
    data = variant(nb_frames="50")
    data["format"].pop("duration")
    assert parse_probe(data).duration_s == 2.0


@pytest.mark.parametrize("data,words", [
    ({"format": {}, "streams": [{"codec_type": "audio", "codec_name": "mp3"}]}, "no video stream"),
    (variant(width=0), "picture size"),
    ({"format": {"duration": "N/A"}, "streams": [dict(BASE["streams"][0], nb_frames="N/A")]}, "duration"),
])
def test_parse_probe_refuses(data: dict, words: str) -> None:
    with pytest.raises(ProbeFailed) as info:
        parse_probe(data)
    assert words in info.value.message


@pytest.mark.parametrize("entry", [f for f in corpus_files() if f["ffprobe_ok"]], ids=lambda f: f["path"])
async def test_probe_matches_manifest(corpus: Path, entry: dict) -> None:
    p = await probe(corpus / entry["path"], timeout_s=20)
    assert p.duration_s == pytest.approx(entry["duration"], abs=0.05)
    assert (p.width, p.height) == (entry["width"], entry["height"])
    assert p.has_audio == entry["has_audio"]
    # display size after aspect ratio: the manifest rounds to even numbers, we round to nearest
    assert abs(p.display_width - entry["display_width"]) <= 2 and abs(p.display_height - entry["display_height"]) <= 2
    assert p.rotation == entry["rotation"] % 360


@pytest.mark.parametrize("name", ["empty_zero_bytes.mp4", "plain_text_named.mp4"])
async def test_probe_fails_cleanly_without_leaking_paths(corpus: Path, name: str) -> None:
    with pytest.raises(ProbeFailed) as info:
        await probe(corpus / "hostile" / name, timeout_s=20)
    assert str(corpus) not in info.value.message
