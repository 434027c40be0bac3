"""From a local video file to a result document: probe, one decode pass, provider, merge.

Result document, schema_version 1 (stored in `results.document`, returned by the API):

    {
      "schema_version": 1,
      "task_id": "...", "provider": "local", "dimensions": "all",
      "video": {sha256, container, size_bytes, duration_s, start_s, width, height,
                display_width, display_height, fps, nb_frames, video_codec,
                audio_codec, has_audio, rotation},
      "tags": [{"name", "confidence" (0-1, best sighting), "sources": ["visual"|"ocr"|...],
                "ranges": [[start_s, end_s], ...], "count"}],   # highest confidence first
      "text": [{"text", "confidence", "start_s", "end_s", "box"}],  # on-screen text (dimension text)
      "frames": [{"time_s", "labels": [{"name", "confidence"}]}],   # what each sampled frame showed
      "audio": {"has_audio", "codec"},
      "partial": false, "warnings": [...],
      "reused_from": null | task id whose analysis of the same bytes was reused
    }
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.config import Settings
from app.errors import TooLong
from app.media.frames import extract_frames, plan_frames
from app.media.probe import Probe, probe
from app.providers.base import MediaInput, Provider
from app.tags import frame_windows, merge_sightings

SCHEMA_VERSION = 1


class Progress:
    """Latest stage and fraction of one task; written from any thread, read by the heartbeat."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.stage, self.fraction = "queued", 0.0
        self.timings: dict[str, float] = {}
        self.version = 0
        self._stage_started = time.perf_counter()

    def __call__(self, stage: str, fraction: float) -> None:
        with self._lock:
            now = time.perf_counter()
            if stage != self.stage and self.stage not in ("queued",):
                self.timings[self.stage] = round(self.timings.get(self.stage, 0.0) + now - self._stage_started, 3)
            self._stage_started = now
            self.stage, self.fraction = stage, max(self.fraction, min(1.0, fraction))
            self.version += 1

    def snapshot(self) -> tuple[str, float, dict[str, float], int]:
        with self._lock:
            return self.stage, round(self.fraction, 3), dict(self.timings), self.version

    def finish(self) -> dict[str, float]:
        self("done", 1.0)
        return self.snapshot()[2]


@dataclass
class Analysis:
    probe: Probe
    document: dict[str, Any]
    tags: list[dict[str, Any]] = field(default_factory=list)


async def analyse_file(path: Path, *, task_id: str, sha256: str, size: int, container: str, dimensions: str,
                       settings: Settings, provider: Provider, progress: Progress) -> Analysis:
    progress("probing", 0.3)
    info = await probe(path, settings.probe_timeout_s)
    if info.duration_s > settings.max_video_seconds:
        raise TooLong(f"the video lasts {info.duration_s:.0f} s; the limit is {settings.max_video_seconds:.0f} s")
    progress("decoding", 0.4)
    plan = plan_frames(info, max_frames=settings.max_frames, interval_s=settings.frame_interval_s,
                       max_side=settings.frame_max_side)
    frames = await extract_frames(path, plan, timeout_s=settings.decode_timeout_s)
    windows = frame_windows([f.time_s for f in frames.frames], info.start_s,
                            info.start_s + (frames.frames[-1].time_s - info.start_s + 0.5 if frames.partial
                                            else info.duration_s))
    media = MediaInput(path=path, probe=info, frames=frames, dimensions=dimensions, windows=windows)
    out = await provider.analyse(media, progress)
    progress("merging", 0.9)
    tags = merge_sightings(out.sightings)
    video = {"sha256": sha256, "container": container, "size_bytes": size, **info.as_dict()}
    video["format_name"] = video.pop("container")
    document: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "task_id": task_id,
        "provider": provider.name,
        "dimensions": dimensions,
        "video": video,
        "tags": tags,
        "text": out.insights.get("text", []),
        "frames": out.insights.get("frames", []),
        "audio": {"has_audio": info.has_audio, "codec": info.audio_codec},
        "partial": frames.partial,
        "warnings": frames.warnings,
        "usage": out.usage,
        "gemini": out.insights.get("gemini"),  # description, categories, language, key moments
        "reused_from": None,
    }
    return Analysis(probe=info, document=document, tags=tags)
