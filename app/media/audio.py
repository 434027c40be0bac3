"""The audio track as 16 kHz mono float32 samples, from an ffmpeg that reads only the audio.

`-vn` means no video is decoded here: the picture is decoded once, by app/media/frames.py.
Run concurrently with that pass, this costs one extra core for the audio decoder only.
Times: sample k is at `start_s + k / SAMPLE_RATE` in the file's own timeline, where
`start_s` is the container's start (ffmpeg starts the output there; `aresample=async=1`
pads gaps and trims overlaps so sample positions stay on the clock).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from app.errors import DecodeFailed
from app.media.probe import ANALYZE_US, PROBE_SIZE
from app.media.tool import last_error_line, run_tool

SAMPLE_RATE = 16000


@dataclass
class Audio:
    samples: np.ndarray  # float32, mono, SAMPLE_RATE Hz, -1..1
    start_s: float       # time of the first sample in the video's timeline

    @property
    def duration_s(self) -> float:
        return len(self.samples) / SAMPLE_RATE


def audio_args(path: Path, max_seconds: float) -> list[str]:
    return [
        "ffmpeg", "-hide_banner", "-nostdin", "-nostats", "-loglevel", "error",
        "-protocol_whitelist", "file", "-probesize", str(PROBE_SIZE), "-analyzeduration", str(ANALYZE_US),
        "-i", "file:" + str(path), "-map", "0:a:0", "-vn", "-sn", "-dn", "-t", f"{max_seconds:.3f}",
        "-af", "aresample=async=1", "-ac", "1", "-ar", str(SAMPLE_RATE), "-f", "f32le", "pipe:1",
    ]


async def extract_audio(path: Path, *, start_s: float, max_seconds: float, timeout_s: float) -> Audio:
    """Decode the first audio stream. Raises DecodeFailed when nothing could be decoded."""
    _code, out, err = await run_tool(audio_args(path, max_seconds), timeout_s=timeout_s, what="audio decoding")
    usable = len(out) - len(out) % 4
    if usable == 0:
        raise DecodeFailed("the audio track could not be decoded: " + last_error_line(err, path, "no samples"))
    samples = np.frombuffer(out[:usable], np.float32).copy()
    np.clip(samples, -1.0, 1.0, out=samples)
    return Audio(samples, start_s)
