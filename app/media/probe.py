"""ffprobe, run safely, and its JSON turned into a `Probe` (the parse is pure)."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

from app.errors import ProbeFailed
from app.media.tool import last_error_line, run_tool

PROBE_SIZE = 32 * 1024 * 1024
ANALYZE_US = 20_000_000


@dataclass(frozen=True)
class Probe:
    container: str          # ffprobe format_name
    duration_s: float
    start_s: float
    size_bytes: int
    width: int              # coded size
    height: int
    display_width: int      # after sample aspect ratio and rotation
    display_height: int
    fps: float
    nb_frames: int | None
    video_codec: str
    audio_codec: str | None
    has_audio: bool
    rotation: int           # degrees clockwise the picture must turn to display upright, 0/90/180/270

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _num(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _rate(v: Any) -> float | None:
    try:
        r = Fraction(str(v).replace(":", "/"))  # "30000/1001" rates, "12:11" aspect ratios
    except (ValueError, ZeroDivisionError):
        return None
    return float(r) if r > 0 else None


def _rotation(stream: dict[str, Any]) -> int:
    rot: Any = None
    for sd in stream.get("side_data_list") or []:
        if "rotation" in sd:
            rot = sd["rotation"]
    if rot is None:
        rot = (stream.get("tags") or {}).get("rotate")
    r = _num(rot)
    if r is None:
        return 0
    # ffprobe's display-matrix rotation is counter-clockwise; normalise to 0/90/180/270.
    return int(round(-r / 90.0)) * 90 % 360


def parse_probe(data: dict[str, Any]) -> Probe:
    """ffprobe `-show_format -show_streams` JSON -> Probe. Raises ProbeFailed."""
    streams = data.get("streams") or []
    fmt = data.get("format") or {}
    video = next((s for s in streams if s.get("codec_type") == "video"
                  and not (s.get("disposition") or {}).get("attached_pic")), None)
    if video is None:
        raise ProbeFailed("the file has no video stream")
    audio = next((s for s in streams if s.get("codec_type") == "audio"), None)
    width, height = int(video.get("width") or 0), int(video.get("height") or 0)
    if width <= 0 or height <= 0:
        raise ProbeFailed("the video stream has no picture size (corrupt or unsupported codec)")
    fps = _rate(video.get("avg_frame_rate")) or _rate(video.get("r_frame_rate")) or 25.0
    if fps > 1000:  # timebase-like r_frame_rate (e.g. 90000/1) with no avg rate
        fps = 25.0
    duration = _num(fmt.get("duration")) or _num(video.get("duration"))
    nb_frames = int(video["nb_frames"]) if str(video.get("nb_frames", "")).isdigit() else None
    if duration is None or duration <= 0:
        duration = (nb_frames / fps) if nb_frames else None
    if duration is None or duration <= 0:
        raise ProbeFailed("could not determine the video's duration")
    start = _num(video.get("start_time")) or _num(fmt.get("start_time")) or 0.0
    rotation = _rotation(video)
    sar = _rate(video.get("sample_aspect_ratio")) or 1.0
    dw, dh = round(width * sar), height
    if rotation in (90, 270):
        dw, dh = dh, dw
    return Probe(
        container=str(fmt.get("format_name") or "unknown"),
        duration_s=float(duration),
        start_s=float(start),
        size_bytes=int(_num(fmt.get("size")) or 0),
        width=width,
        height=height,
        display_width=max(1, dw),
        display_height=max(1, dh),
        fps=round(fps, 3),
        nb_frames=nb_frames,
        video_codec=str(video.get("codec_name") or "unknown"),
        audio_codec=str(audio.get("codec_name")) if audio else None,
        has_audio=audio is not None,
        rotation=rotation,
    )


def probe_args(path: Path) -> list[str]:
    return [
        "ffprobe", "-v", "error", "-protocol_whitelist", "file",
        "-probesize", str(PROBE_SIZE), "-analyzeduration", str(ANALYZE_US),
        "-print_format", "json", "-show_format", "-show_streams", "file:" + str(path),
    ]


async def probe(path: Path, timeout_s: float) -> Probe:
    code, out, err = await run_tool(probe_args(path), timeout_s=timeout_s, what="ffprobe")
    if code != 0:
        raise ProbeFailed("ffprobe could not read the file: " + last_error_line(err, path, "no detail"))
    try:
        data = json.loads(out)
    except ValueError:
        raise ProbeFailed("ffprobe returned unreadable output") from None
    return parse_probe(data)
