"""Running ffprobe/ffmpeg: argument lists only (never a shell), a time limit, and error
text that names the input "input" rather than our own cache path."""

from __future__ import annotations

import asyncio
from pathlib import Path

from app.errors import StageTimeout


async def run_tool(args: list[str], *, timeout_s: float, what: str) -> tuple[int, bytes, bytes]:
    """Run one tool to completion; (return code, stdout, stderr). StageTimeout after `timeout_s`."""
    proc = await asyncio.create_subprocess_exec(
        *args, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout_s)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise StageTimeout(f"{what} did not finish within {timeout_s:.0f} s") from None
    return int(proc.returncode or 0), out, err


def last_error_line(err: bytes, path: Path, default: str) -> str:
    """The tool's last stderr line (at most 300 characters), without our file path."""
    lines = err.decode("utf-8", "replace").replace("file:" + str(path), "input").strip().splitlines()
    return lines[-1][-300:] if lines else default
