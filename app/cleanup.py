"""Which cached files the cleanup removes: a pure function of (files, tasks, now).

    select(files, tasks, now=..., window=..., grace_s=...) -> Plan    pure: the decision
    next_run(now, at) -> datetime                                     pure: the daily schedule
    scan(data_dir) -> [CachedFile]                                    I/O: what is on disk
    apply(data_dir, plan, still_active, ...) -> Report                I/O: re-check, unlink

What is scanned (by app/cli/clean_videos.py): everything under DATA_DIR/cache (videos/,
tmp/ partial downloads, thumbs/ keyframes, frames, whatever else a stage caches) and
DATA_DIR/uploads (uploaded videos waiting for their task). Never SQL results: removing
a file only clears `videos.cache_path`.

A file is removed when all hold:
  * its modification time lies in the window (`--start/--end` days, or older than
    CLEANUP_MAX_AGE_DAYS);
  * it has neither been modified nor renamed/created (ctime) within `grace_s`: a file a
    consumer is writing, or has just moved into the cache (os.replace keeps the old mtime
    but sets ctime), is left alone, whatever the window says;
  * it belongs to no task that is still pending or processing. A file belongs to a task
    when its path holds the task's id (tmp/{id}.part, uploads/{id}, thumbs/{id}/...) or the
    sha256 of a video the task points at (videos/{sha}.{ext}, thumbs/{sha}/...), or when
    it is the task's video's `cache_path`.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import re
import stat
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger("cleanup")

ACTIVE_STATUSES = frozenset({"pending", "processing"})
# Task ids are 32 hex digits (uuid4().hex); video digests are 64 (sha256).
_IDS = re.compile(r"(?<![0-9a-f])(?:[0-9a-f]{64}|[0-9a-f]{32})(?![0-9a-f])")


@dataclass(frozen=True)
class CachedFile:
    rel: str      # path relative to DATA_DIR, "/"-separated: cache/videos/<sha>.mp4, uploads/<task id>
    size: int
    mtime: float  # unix s
    ctime: float  # unix s: creation, rename or metadata change

    @property
    def kind(self) -> str:
        """videos | tmp | thumbs | frames | ... (the folder under cache/), or uploads."""
        parts = self.rel.split("/")
        if parts[0] == "uploads":
            return "uploads"
        if parts[0] == "cache" and len(parts) > 2:
            return parts[1]
        return "other"

    @property
    def ids(self) -> frozenset[str]:
        """Task ids and sha256 digests named anywhere in the path."""
        return frozenset(_IDS.findall(self.rel.lower()))


@dataclass(frozen=True)
class ActiveTask:
    task_id: str
    status: str
    sha256: str | None = None
    cache_path: str | None = None  # videos.cache_path as stored (absolute or relative)


@dataclass(frozen=True)
class Window:
    """Modification times in [since, until); since None = from the beginning."""

    until: float
    since: float | None = None

    def holds(self, t: float) -> bool:
        return (self.since is None or t >= self.since) and t < self.until


@dataclass
class Plan:
    remove: list[CachedFile] = field(default_factory=list)
    protected: list[tuple[CachedFile, str]] = field(default_factory=list)  # (file, task id)
    recent: list[CachedFile] = field(default_factory=list)                 # changed within the grace period
    out_of_window: int = 0

    @property
    def bytes(self) -> int:
        return sum(f.size for f in self.remove)

    def by_kind(self) -> dict[str, tuple[int, int]]:
        """kind -> (files, bytes) to remove."""
        out: dict[str, tuple[int, int]] = {}
        for f in self.remove:
            n, b = out.get(f.kind, (0, 0))
            out[f.kind] = (n + 1, b + f.size)
        return dict(sorted(out.items()))


def _norm(path: str) -> str:
    return path.replace("\\", "/").rstrip("/")


class Owners:
    """Which active task a file belongs to; built once, then O(1) per file."""

    def __init__(self, tasks: Iterable[ActiveTask]) -> None:
        self.by_id: dict[str, str] = {}
        self.by_name: dict[str, list[tuple[str, str]]] = {}  # basename -> [(cache_path, task id)]
        for t in tasks:
            if t.status not in ACTIVE_STATUSES:
                continue
            self.by_id.setdefault(t.task_id.lower(), t.task_id)
            if t.sha256:
                self.by_id.setdefault(t.sha256.lower(), t.task_id)
            if t.cache_path:
                cp = _norm(t.cache_path)
                self.by_name.setdefault(cp.rsplit("/", 1)[-1], []).append((cp, t.task_id))

    def of(self, file: CachedFile) -> str | None:
        """The id of an active task `file` belongs to, or None."""
        for i in sorted(file.ids):
            if i in self.by_id:
                return self.by_id[i]
        rel = _norm(file.rel)
        for cp, task_id in self.by_name.get(rel.rsplit("/", 1)[-1], ()):
            if cp == rel or cp.endswith("/" + rel):
                return task_id
        return None


def select(files: Iterable[CachedFile], tasks: Iterable[ActiveTask], *, now: float, window: Window,
           grace_s: float) -> Plan:
    """Split `files` into what to remove and why the rest stays. Pure: `now` is given."""
    owners = Owners(tasks)
    plan = Plan()
    for f in sorted(files, key=lambda f: f.rel):
        if not window.holds(f.mtime):
            plan.out_of_window += 1
            continue
        if now - max(f.mtime, f.ctime) < grace_s:
            plan.recent.append(f)
            continue
        task_id = owners.of(f)
        if task_id is not None:
            plan.protected.append((f, task_id))
            continue
        plan.remove.append(f)
    return plan


def next_run(now: dt.datetime, at: dt.time) -> dt.datetime:
    """The next daily run at `at` strictly after `now` (both naive local time)."""
    today = dt.datetime.combine(now.date(), at)
    return today if today > now else today + dt.timedelta(days=1)


# --- I/O edges: scan the disk, apply a plan ----------------------------------------
@dataclass
class Report:
    dry_run: bool
    removed: list[CachedFile] = field(default_factory=list)
    protected: int = 0
    recent: int = 0
    changed: int = 0      # modified, renamed or gone between the scan and the unlink: kept
    errors: int = 0       # could not be removed (permissions, ...)
    cache_paths_cleared: int = 0

    @property
    def bytes(self) -> int:
        return sum(f.size for f in self.removed)

    def by_kind(self) -> dict[str, tuple[int, int]]:
        return Plan(remove=list(self.removed)).by_kind()

    def as_dict(self) -> dict[str, object]:
        return {"dry_run": self.dry_run, "files": len(self.removed), "bytes": self.bytes,
                "by_kind": {k: {"files": n, "bytes": b} for k, (n, b) in self.by_kind().items()},
                "protected": self.protected, "recent": self.recent, "changed": self.changed, "errors": self.errors,
                "cache_paths_cleared": self.cache_paths_cleared, "paths": [f.rel for f in self.removed]}


SCANNED = ("cache", "uploads")


def scan(data_dir: Path) -> list[CachedFile]:
    """Regular files under DATA_DIR/cache and DATA_DIR/uploads (symlinks are not followed nor listed)."""
    out: list[CachedFile] = []
    for top in SCANNED:
        root = data_dir / top
        for dirpath, _dirs, names in os.walk(root):
            for name in names:
                path = Path(dirpath) / name
                try:
                    st = path.lstat()
                except FileNotFoundError:  # removed by a consumer meanwhile
                    continue
                if not stat.S_ISREG(st.st_mode):
                    continue
                out.append(CachedFile(path.relative_to(data_dir).as_posix(), st.st_size, st.st_mtime, st.st_ctime))
    return out


def apply(data_dir: Path, plan: Plan, still_active: Iterable[ActiveTask], *, grace_s: float,
          now: Callable[[], float], dry_run: bool) -> Report:
    """Remove the plan's files, each re-checked first: against `still_active` (tasks read again
    after the scan), and on disk (unchanged since the scan, still outside the grace period).
    A file that changed or vanished meanwhile is kept or skipped, never an error."""
    report = Report(dry_run=dry_run, protected=len(plan.protected), recent=len(plan.recent))
    owners = Owners(still_active)
    emptied: set[Path] = set()
    for f in plan.remove:
        if owners.of(f) is not None:
            report.protected += 1
            continue
        path = data_dir / f.rel
        try:
            st = path.lstat()
        except FileNotFoundError:
            report.changed += 1
            continue
        if (not stat.S_ISREG(st.st_mode) or st.st_mtime != f.mtime or st.st_size != f.size
                or now() - max(st.st_mtime, st.st_ctime) < grace_s):
            report.changed += 1
            continue
        if dry_run:
            report.removed.append(f)
            continue
        try:
            path.unlink()
        except FileNotFoundError:
            report.changed += 1
            continue
        except OSError as exc:
            report.errors += 1
            log.warning("could not remove %s: %s", f.rel, exc.strerror or type(exc).__name__)
            continue
        report.removed.append(f)
        emptied.add(path.parent)
        log.info("removed %s (%d bytes)", f.rel, f.size, extra={"path": f.rel, "bytes": f.size, "kind": f.kind})
    if not dry_run:
        _remove_empty_dirs(data_dir, emptied)
    return report


def _remove_empty_dirs(data_dir: Path, dirs: set[Path]) -> None:
    """Drop folders the cleanup emptied (thumbs/{id}/), never DATA_DIR/cache/<kind> or above."""
    keep = {data_dir / top for top in SCANNED} | {p for top in SCANNED for p in (data_dir / top).glob("*")
                                                  if p.is_dir() and top == "cache"}
    for d in sorted(dirs, key=lambda p: len(p.parts), reverse=True):
        while d not in keep and data_dir in d.parents:
            try:
                d.rmdir()  # only succeeds when empty; a consumer may be writing into it again
            except OSError:
                break
            d = d.parent
