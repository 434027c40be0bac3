"""Which frames to look at (a pure plan) and one ffmpeg decode pass that returns them.

The same pass can also feed every decoded frame, shrunk to `scene_width` px, to a sink
(scene detection, app/media/scenes.py): the filtergraph splits the decoded stream in two,
one branch selects the planned frames (stdout), the other scales every frame down (a second
pipe, fd 3+). So scenes cost no second decode; decoding dominates (../shared/WIRE.md).

The plan spreads at most `max_frames` samples evenly over the video, one per
`interval_s` for short videos, at the middle of each slice (the first frame is often
black). A video with a single slice is sampled at its first frame, so a one-frame
video still yields a frame. ffmpeg applies the display rotation itself (autorotate),
so the plan's output size is in display orientation.
"""

from __future__ import annotations

import asyncio
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

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


class FrameSink(Protocol):
    def push(self, index: int, time_s: float, rgb: np.ndarray) -> None: ...


def scene_size(plan: FramePlan, scene_width: int) -> tuple[int, int]:
    """The every-frame stream's size: at most `scene_width` wide, the plan's aspect, even."""
    scale = min(1.0, scene_width / plan.width)
    return _even(plan.width * scale), _even(plan.height * scale)


def ffmpeg_args(path: Path, plan: FramePlan, scene: tuple[int, int, int] | None = None) -> list[str]:
    """`scene` = (width, height, fd): also write every frame, that small, as RGB to pipe fd."""
    sample = (f"select='{select_expr(plan.times)}',showinfo@sample,"
              f"scale={plan.width}:{plan.height}:flags=area,setsar=1,format=rgb24")
    head = [
        "ffmpeg", "-hide_banner", "-nostdin", "-nostats", "-loglevel", "info",
        "-protocol_whitelist", "file", "-probesize", str(PROBE_SIZE), "-analyzeduration", str(ANALYZE_US),
        # -copyts: times stay in the file's own timeline (as ffprobe's start_s and the plan's times).
        "-copyts", "-i", "file:" + str(path),
    ]
    if scene is None:
        return [*head, "-map", "0:v:0", "-an", "-sn", "-dn", "-vf", sample,
                "-fps_mode", "passthrough", "-f", "rawvideo", "pipe:1"]
    w, h, fd = scene
    graph = (f"[0:v:0]split=2[a][b];[a]{sample}[sample];"
             f"[b]showinfo@every,scale={w}:{h}:flags=area,setsar=1,format=rgb24[every]")
    return [*head, "-filter_complex", graph,
            "-map", "[sample]", "-fps_mode", "passthrough", "-f", "rawvideo", "pipe:1",
            "-map", "[every]", "-fps_mode", "passthrough", "-f", "rawvideo", f"pipe:{fd}"]


_PTS = re.compile(r"showinfo@(sample|every) .*?\bpts_time:\s*(-?[0-9.]+)")
_NOISE = ("showinfo@", "Input #", "Output #", "Stream #", "Stream mapping", "Duration:", "Metadata:",
          "Press [q]", "encoder", "handler_name", "vendor_id", "creation_time", "major_brand", "minor_version",
          "compatible_brands", "Side data", "displaymatrix", "language")


async def extract_frames(path: Path, plan: FramePlan, *, timeout_s: float, sink: FrameSink | None = None,
                         scene_width: int = 256) -> Frames:
    """Decode the video once and return the planned frames as RGB arrays.

    With a `sink`, every decoded frame (scaled to `scene_size`) is pushed to it, in order,
    with its presentation time, from a worker thread in batches.
    """
    loop = asyncio.get_running_loop()
    scene: tuple[int, int, int] | None = None
    read_fd = write_fd = -1
    if sink is not None:
        read_fd, write_fd = os.pipe()
        scene = (*scene_size(plan, scene_width), write_fd)
    try:
        proc = await asyncio.create_subprocess_exec(
            *ffmpeg_args(path, plan, scene), stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            pass_fds=(write_fd,) if scene else (),
        )
    except BaseException:
        if scene:
            os.close(read_fd)
        raise
    finally:
        if scene:
            os.close(write_fd)  # the child holds its own copy; EOF arrives when ffmpeg exits
    assert proc.stdout is not None and proc.stderr is not None
    frame_bytes = plan.width * plan.height * 3
    images: list[np.ndarray] = []
    times: list[float] = []
    every_times: list[float] = []
    errors: list[str] = []
    every = asyncio.StreamReader(limit=2**20)
    transport: asyncio.BaseTransport | None = None
    if scene:
        transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(every),
                                                    os.fdopen(read_fd, "rb", buffering=0))

    async def read_every() -> None:
        """Pair each small frame with its pts (from the log) and hand batches to the sink's thread."""
        assert scene is not None and sink is not None
        w, h = scene[0], scene[1]
        size = w * h * 3
        pending: list[np.ndarray] = []
        pushed = 0

        def flush(batch: list[tuple[int, float, np.ndarray]]) -> None:
            for index, t, img in batch:
                sink.push(index, t, img)

        while True:
            try:
                buf = await every.readexactly(size)
            except asyncio.IncompleteReadError:
                break
            pending.append(np.frombuffer(buf, np.uint8).reshape(h, w, 3))
            ready = min(len(pending), len(every_times) - pushed)
            if ready >= 32:
                batch = [(pushed + k, every_times[pushed + k], pending[k]) for k in range(ready)]
                del pending[:ready]
                pushed += ready
                await asyncio.to_thread(flush, batch)
        await log_done.wait()
        # A frame whose log line never came keeps the last known pts.
        batch = []
        for k, img in enumerate(pending):
            i = pushed + k
            t = every_times[i] if i < len(every_times) else (every_times[-1] if every_times else 0.0)
            batch.append((i, t, img))
        if batch:
            await asyncio.to_thread(flush, batch)

    async def read_frames() -> None:
        assert proc.stdout is not None
        while len(images) <= len(plan.times):
            try:
                buf = await proc.stdout.readexactly(frame_bytes)
            except asyncio.IncompleteReadError:
                return
            images.append(np.frombuffer(buf, np.uint8).reshape(plan.height, plan.width, 3))

    log_done = asyncio.Event()

    async def read_log() -> None:
        assert proc.stderr is not None
        try:
            async for raw in proc.stderr:
                line = raw.decode("utf-8", "replace").strip()
                m = _PTS.search(line)
                if m:
                    (times if m.group(1) == "sample" else every_times).append(float(m.group(2)))
                elif line and not line.startswith(" ") and not any(n in line for n in _NOISE) and len(errors) < 20:
                    errors.append(line.replace("file:" + str(path), "input")[:300])
        finally:
            log_done.set()

    readers = [read_frames(), read_log(), proc.wait()] + ([read_every()] if scene else [])
    try:
        await asyncio.wait_for(asyncio.gather(*readers), timeout_s)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise StageTimeout(f"decoding did not finish within {timeout_s:.0f} s") from None
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        if transport is not None:
            transport.close()
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
