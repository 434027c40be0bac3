"""Where a task's bytes come from: a user URL (downloaded) or an upload (already on disk)."""

from __future__ import annotations

import asyncio
import hashlib
import os
from pathlib import Path

from app.config import Settings
from app.errors import SourceGone, TooLarge
from app.media.download import Downloaded, Downloader
from app.media.sniff import SNIFF_BYTES, sniff

UPLOAD_SCHEME = "upload://"


def upload_path(settings: Settings, task_id: str) -> Path:
    return settings.data_dir / "uploads" / task_id


def tmp_path(settings: Settings, task_id: str) -> Path:
    return settings.cache_dir / "tmp" / f"{task_id}.part"


def cache_path(settings: Settings, sha256: str, container: str) -> Path:
    return settings.cache_dir / "videos" / f"{sha256}.{container}"


def hash_local(path: Path, max_bytes: int) -> Downloaded:
    """Sniff and hash a file already on disk (an upload)."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        head = f.read(SNIFF_BYTES)
        container = sniff(head)
        digest.update(head)
        size = len(head)
        while chunk := f.read(1 << 20):
            size += len(chunk)
            digest.update(chunk)
    if size > max_bytes:
        raise TooLarge(f"the upload exceeds the {max_bytes / 1e6:.0f} MB limit")
    return Downloaded(path, size, digest.hexdigest(), container, UPLOAD_SCHEME + path.name)


async def fetch_source(settings: Settings, downloader: Downloader, task_id: str, source: str, url: str) -> Downloaded:
    if source == "upload":
        path = upload_path(settings, task_id)
        if not path.exists():
            raise SourceGone("the uploaded file is not on this consumer (DATA_DIR/uploads must be shared with the API)")
        return await asyncio.to_thread(hash_local, path, settings.max_video_bytes)
    return await downloader.fetch(url, tmp_path(settings, task_id))


def keep_in_cache(settings: Settings, got: Downloaded) -> Path:
    """Move the analysed file to its content-addressed place in the cache."""
    dest = cache_path(settings, got.sha256, got.container)
    dest.parent.mkdir(parents=True, exist_ok=True)
    os.replace(got.path, dest)
    return dest
