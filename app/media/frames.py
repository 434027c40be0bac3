"""Which frames to look at (a pure plan) and one ffmpeg decode pass that returns them.

The plan spreads at most `max_frames` samples evenly over the video, one per
`interval_s` for short videos, at the middle of each slice (the first frame is often
black). A video with a single slice is sampled at its first frame, so a one-frame
video still yields a frame. ffmpeg applies the display rotation itself (autorotate),
so the plan's output size is in display orientation.
"""

from __future__ import annotations

import asyncio
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from app.errors import DecodeFailed, StageTimeout
from app.media.probe import ANALYZE_US, PROBE_SIZE, Probe


@dataclass(frozen=True)
class FramePlan:
    times: tuple[float, ...]  # target presentation times (s), ascending
    width: int                # output size, display orientation, even
    height: int


@dataclass
class Frame:
    index: int        # position in the plan's output order
    time_s: float     # actual presentation time of the decoded frame
    image: np.ndarray  # H x W x 3 uint8, RGB


@dataclass
class Frames:
    plan: FramePlan
    frames: list[Frame]
    partial: bool = False               # fewer frames than planned: truncated or corrupt input
    warnings: list[str] = field(default_factory=list)


def _even(x: float) -> int:
    return max(2, int(round(x / 2.0)) * 2)


def plan_frames(probe: Probe, *, max_frames: int, interval_s: float, max_side: int) -> FramePlan:
    n = max(1, min(max_frames, math.ceil(probe.duration_s / interval_s - 1e-9)))
    if probe.nb_frames:
        n = min(n, probe.nb_frames)
    step = probe.duration_s / n
    if n == 1:
        times: tuple[float, ...] = (probe.start_s,)
    else:
        times = tuple(round(probe.start_s + (k + 0.5) * step, 6) for k in range(n))
    w, h = probe.display_width, probe.display_height
    scale = min(1.0, max_side / max(w, h))
    return FramePlan(times=times, width=_even(w * scale), height=_even(h * scale))


def _target_expr(times: tuple[float, ...], lo: int, hi: int) -> str:
    """Balanced if-tree mapping the counter ld(0) to times[ld(0)] (1e18 past the end)."""
    if lo == hi:
        return f"{times[lo]:.6f}" if lo < len(times) else "1e18"
    mid = (lo + hi + 1) // 2
    return f"if(lt(ld(0),{mid}),{_target_expr(times, lo, mid - 1)},{_target_expr(times, mid, hi)})"


def select_expr(times: tuple[float, ...]) -> str:
    """ffmpeg `select` expression: keep the first frame at or after each target time.

    ld(0) counts targets already passed; one frame can pass several targets (low fps).
    """
    target = _target_expr(times, 0, len(times))
    return f"st(1,0);while(gte(t,{target}),st(0,ld(0)+1);st(1,1));ld(1)"


def ffmpeg_args(path: Path, plan: FramePlan) -> list[str]:
    vf = (f"select='{select_expr(plan.times)}',showinfo,"
          f"scale={plan.width}:{plan.height}:flags=area,setsar=1,format=rgb24")
    return [
        "ffmpeg", "-hide_banner", "-nostdin", "-nostats", "-loglevel", "info",
        "-protocol_whitelist", "file", "-probesize", str(PROBE_SIZE), "-analyzeduration", str(ANALYZE_US),
        "-i", "file:" + str(path), "-map", "0:v:0", "-an", "-sn", "-dn",
        "-vf", vf, "-fps_mode", "passthrough", "-f", "rawvideo", "pipe:1",
    ]


_PTS = re.compile(r"Parsed_showinfo.*?\bpts_time:\s*(-?[0-9.]+)")
_NOISE = ("Parsed_showinfo", "Input #", "Output #", "Stream #", "Stream mapping", "Duration:", "Metadata:",
          "Press [q]", "encoder", "handler_name", "vendor_id", "creation_time", "major_brand", "minor_version",
          "compatible_brands", "Side data", "displaymatrix", "language")


async def extract_frames(path: Path, plan: FramePlan, *, timeout_s: float) -> Frames:
    """Decode the video once and return the planned frames as RGB arrays."""
    proc = await asyncio.create_subprocess_exec(
        *ffmpeg_args(path, plan), stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    frame_bytes = plan.width * plan.height * 3
    images: list[np.ndarray] = []
    times: list[float] = []
    errors: list[str] = []

    async def read_frames() -> None:
        assert proc.stdout is not None
        while len(images) <= len(plan.times):
            try:
                buf = await proc.stdout.readexactly(frame_bytes)
            except asyncio.IncompleteReadError:
                return
            images.append(np.frombuffer(buf, np.uint8).reshape(plan.height, plan.width, 3))

    async def read_log() -> None:
        assert proc.stderr is not None
        async for raw in proc.stderr:
            line = raw.decode("utf-8", "replace").strip()
            m = _PTS.search(line)
            if m:
                times.append(float(m.group(1)))
            elif line and not line.startswith(" ") and not any(n in line for n in _NOISE) and len(errors) < 20:
                errors.append(line.replace("file:" + str(path), "input")[:300])

    try:
        await asyncio.wait_for(asyncio.gather(read_frames(), read_log(), proc.wait()), timeout_s)
    except asyncio.TimeoutError:
        proc.kill()
        await proc.wait()
        raise StageTimeout(f"decoding did not finish within {timeout_s:.0f} s") from None
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    if not images:
        detail = errors[-1] if errors else "no frame could be decoded"
        raise DecodeFailed(f"no video frame could be decoded: {detail}")
    frames = [Frame(i, times[i] if i < len(times) else plan.times[min(i, len(plan.times) - 1)], img)
              for i, img in enumerate(images[: len(plan.times)])]
    partial = len(frames) < len(plan.times)
    warnings = []
    if partial:
        warnings.append(f"only {len(frames)} of {len(plan.times)} planned frames could be decoded "
                        f"(last at {frames[-1].time_s:.2f} s): the file looks truncated or corrupt")
    return Frames(plan, frames, partial, warnings + errors[:5] if partial else warnings)
