"""Media made for the analysis tests with the real ffmpeg (drawtext) when the corpus has none."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
SUBTITLES = [(0.0, 3.0, "Hello there my friend"), (3.0, 6.0, "See you tomorrow morning")]


@pytest.fixture(scope="session")
def subtitled_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """6 s, 640x360: burned-in subtitles at the bottom (two cues) and a title at the top all along."""
    if not FONT.exists():
        pytest.skip(f"drawtext needs the DejaVu font at {FONT} (apt-get install fonts-dejavu-core)")
    out = tmp_path_factory.mktemp("media") / "subtitled.mp4"
    draws = [f"drawtext=fontfile={FONT}:text='CHAPTER ONE':fontsize=40:fontcolor=white:x=(w-text_w)/2:y=30"]
    for start, end, text in SUBTITLES:
        draws.append(f"drawtext=fontfile={FONT}:text='{text}':fontsize=26:fontcolor=white:borderw=2:"
                     f"x=(w-text_w)/2:y=h-60:enable='between(t,{start},{end - 0.01})'")
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "color=c=0x336699:s=640x360:r=25:d=6",
                    "-vf", ",".join(draws), "-c:v", "libx264", "-pix_fmt", "yuv420p", str(out)], check=True)
    return out
