"""Model files made once per machine (an ONNX export, ...), safely across processes."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable
from pathlib import Path


def make_once(dest: Path, write: Callable[[Path], None]) -> Path:
    """Create `dest` with `write(tmp)` unless it exists; a file lock serialises processes
    that start together, and the rename makes a half-written file impossible to see."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    with open(dest.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not dest.exists():
            tmp = dest.with_suffix(f".tmp{os.getpid()}")
            write(tmp)
            os.replace(tmp, dest)
    return dest
