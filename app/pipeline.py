"""From a local video file to a result document: probe, one decode pass, provider, analysers, merge.

    probe -> plan -> ONE ffmpeg decode pass: sampled frames (<= 1/s) + every frame, tiny, to the
                     scene tracker (cuts, keyframes)       || audio-only ffmpeg (16 kHz mono), concurrently
          -> provider (local: labels + OCR per sampled frame; gemini: the whole video)
          -> analysers in order (app/analysis): scenes, speech, subtitles, faces, moderation, storylines
             each skipped (input absent / dimension not asked) or failed (error recorded) on its own
          -> tags merged from every source

Result document, schema_version 2 (stored in `results.document`, returned by the API;
every field of version 1 is kept with its meaning; times are seconds in the file's own
timeline, as `video.start_s`):

    {
      "schema_version": 2,
      "task_id": "...", "provider": "local" | "gemini", "dimensions": "all" | "vision" | "audio" | "text",
      "video": {sha256, format_name, size_bytes, duration_s, start_s, width, height, display_width,
                display_height, fps, nb_frames, video_codec, audio_codec, has_audio, rotation},
      "tags": [{"name", "confidence" (0-1, best sighting),
                "sources": ["visual"|"ocr"|"speech"|"faces"|"gemini"],   # every analyser that saw it
                "ranges": [[start_s, end_s], ...], "count"}],             # highest confidence first
      "text": [{"text", "confidence", "start_s", "end_s", "box"}],        # on-screen text, repeats merged
      "frames": [{"time_s", "labels": [{"name", "confidence"}],           # each sampled frame
                  "text": [{"text", "confidence", "box"}]}],              #   ("text" with dimension text)
      "audio": {"has_audio", "codec"},
      "scenes": [{"index", "start_s", "end_s", "start_frame", "end_frame",   # frames: 0-based decode order,
                  "keyframe": {"frame", "time_s", "thumbnail"},              #   end inclusive; thumbnail:
                  "labels": [{"name", "confidence"}], "text": [line, ...],  #   JPEG path under the cache
                  "transcript"?: str, "faces"?: int, "storyline"?: int}],   #   dir (GET .../thumbs/{name})
      "scene_detection": {"status", "count", "thumbnails", "detector": {...}},
      "speech": {"status", "engine", "language", "language_probability", "audio_seconds",
                 "voice_activity": [[start_s, end_s], ...], "has_speech",
                 "segments": [{"index", "start_s", "end_s", "text", "confidence", "scenes": [i, ...],
                               "words": [{"word", "start_s", "end_s", "confidence"?}]}],
                 "transcript"},
      "subtitles": {"status", "source": "burned-in text", "cues": [{"index", "start_s", "end_s", "text"}]},
      "faces": {"status", "detector", "min_confidence", "frames": [{"time_s", "faces": [{"box", "score"}]}],
                "scenes": [{"scene", "max_faces", "largest": {"time_s", "box", "score", "crop"}}],
                "identities": null, "identities_reason"},   # boxes: [xmin, ymin, xmax, ymax], 0-1
      "moderation": {"status", "model", "min_confidence", "classes", "checked_images", "needs_review",
                     "triggers": [{"time_s", "source": "frame"|"keyframe", "scene", "class", "score", "box"}]},
      "storylines": {"status", "embedding", "similarity",
                     "items": [{"id", "scenes": [i, ...], "start_s", "end_s", "spans", "duration_s", "labels"}]},
      "analysis": {name: {"status": "ok"|"skipped"|"failed", "seconds", "reason"?, "error"?: {code, message}}},
      "partial": false, "warnings": [...], "usage": {...}, "gemini": {...} | null,
      "reused_from": null | task id whose analysis of the same bytes was reused
    }

A section whose analyser was skipped or failed holds only {"status", "reason" | "error"}.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.analysis.base import Context, analyser_names, get_analyser
from app.analysis.scenes import scene_items
from app.config import Settings
from app.errors import TooLong, VttError
from app.media.audio import Audio, extract_audio
from app.media.frames import extract_frames, plan_frames
from app.media.probe import Probe, probe
from app.media.scenes import CutParams, SceneTracker
from app.providers.base import MediaInput, Provider
from app.tags import frame_windows, merge_sightings

SCHEMA_VERSION = 2
# Progress stages this module and the analysers report (providers add their own, e.g. labelling_frames).
PIPELINE_STAGES: frozenset[str] = frozenset({
    "probing", "detecting_scenes", "merging", "labelling_scenes", "transcribing_speech", "extracting_subtitles",
    "detecting_faces", "checking_moderation", "grouping_storylines"})
log = logging.getLogger("pipeline")


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
    progress("probing", 0.05)
    info = await probe(path, settings.probe_timeout_s)
    if info.duration_s > settings.max_video_seconds:
        raise TooLong(f"the video lasts {info.duration_s:.0f} s; the limit is {settings.max_video_seconds:.0f} s")
    audio: asyncio.Task[Audio] | None = None
    if info.has_audio and dimensions in ("all", "audio") and settings.speech_engine != "none":
        audio = asyncio.create_task(extract_audio(path, start_s=info.start_s, max_seconds=info.duration_s + 1,
                                                  timeout_s=settings.decode_timeout_s))
    try:
        return await _analyse(path, info, audio, task_id=task_id, sha256=sha256, size=size, container=container,
                              dimensions=dimensions, settings=settings, provider=provider, progress=progress)
    finally:
        if audio is not None and not audio.done():
            audio.cancel()
            with contextlib.suppress(BaseException):
                await audio


async def _analyse(path: Path, info: Probe, audio: asyncio.Task[Audio] | None, *, task_id: str, sha256: str,
                   size: int, container: str, dimensions: str, settings: Settings, provider: Provider,
                   progress: Progress) -> Analysis:
    progress("detecting_scenes", 0.1)
    plan = plan_frames(info, max_frames=settings.max_frames, interval_s=settings.frame_interval_s,
                       max_side=settings.frame_max_side)
    tracker = SceneTracker(CutParams(threshold=settings.scene_threshold, min_content=settings.scene_min_content,
                                     min_scene_len=settings.scene_min_len_frames))
    frames = await extract_frames(path, plan, timeout_s=settings.decode_timeout_s, sink=tracker,
                                  scene_width=settings.scene_width)
    end_s = (info.start_s + info.duration_s if not frames.partial or not tracker.times
             else tracker.times[-1] + 1.0 / max(info.fps, 1.0))
    scene_list = await asyncio.to_thread(tracker.finish, end_s)
    windows = frame_windows([f.time_s for f in frames.frames], info.start_s,
                            info.start_s + (frames.frames[-1].time_s - info.start_s + 0.5 if frames.partial
                                            else info.duration_s))
    media = MediaInput(path=path, probe=info, frames=frames, dimensions=dimensions, windows=windows)
    out = await provider.analyse(media, progress)
    key = sha256 or task_id
    ctx = Context(settings=settings, probe=info, frames=frames, windows=windows, scene_list=scene_list,
                  scenes=[], provider_output=out, dimensions=dimensions,
                  thumbs_dir=settings.cache_dir / "thumbs" / key[:2] / key, thumbs_ref=f"thumbs/{key[:2]}/{key}",
                  progress=progress, audio=audio)
    ctx.scenes = scene_items(ctx)
    status = await run_analysers(ctx, analyser_names())
    progress("merging", 0.95)
    tags = merge_sightings([*out.sightings, *ctx.sightings])
    video = {"sha256": sha256, "container": container, "size_bytes": size, **info.as_dict()}
    video["format_name"] = video.pop("container")
    warnings = list(frames.warnings)
    warnings += [f"{name} failed: {st['error']['message']}" for name, st in status.items() if st["status"] == "failed"]
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
        "scenes": ctx.scenes,
        "scene_detection": ctx.sections.get("scenes"),
        "speech": ctx.sections.get("speech"),
        "subtitles": ctx.sections.get("subtitles"),
        "faces": ctx.sections.get("faces"),
        "moderation": ctx.sections.get("moderation"),
        "storylines": ctx.sections.get("storylines"),
        "analysis": status,
        "partial": frames.partial,
        "warnings": warnings,
        "usage": out.usage,
        "gemini": out.insights.get("gemini"),  # description, categories, language, key moments
        "reused_from": None,
    }
    return Analysis(probe=info, document=document, tags=tags)


async def run_analysers(ctx: Context, names: list[str]) -> dict[str, dict[str, Any]]:
    """Run each analyser in order, isolating failures; fill ctx.sections; return each one's status."""
    status: dict[str, dict[str, Any]] = {}
    for k, name in enumerate(names):
        analyser = get_analyser(name)
        reason = analyser.skip_reason(ctx)
        if reason is not None:
            status[name] = {"status": "skipped", "reason": reason, "seconds": 0.0}
            ctx.sections[name] = {"status": "skipped", "reason": reason}
            continue
        ctx.progress(analyser.stage, 0.55 + 0.4 * k / max(1, len(names)))
        t0 = time.perf_counter()
        try:
            section = await analyser.run(ctx)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # one analyser's failure must not lose the others' work
            code = exc.code if isinstance(exc, VttError) else "analysis_failed"
            message = exc.message if isinstance(exc, VttError) else f"{type(exc).__name__}: {exc}"[:500]
            log.warning("analyser %s failed: %s", name, message, exc_info=not isinstance(exc, VttError))
            status[name] = {"status": "failed", "error": {"code": code, "message": message},
                            "seconds": round(time.perf_counter() - t0, 3)}
            ctx.sections[name] = {"status": "failed", "error": status[name]["error"]}
            continue
        status[name] = {"status": "ok", "seconds": round(time.perf_counter() - t0, 3)}
        ctx.sections[name] = {"status": "ok", **section}
    return status
