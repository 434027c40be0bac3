"""Cache cleanup: the pure selection (tables), and real runs on a temp DATA_DIR with tasks in SQL."""

from __future__ import annotations

import datetime as dt
import os
import time
from pathlib import Path

import pytest

from app import cleanup
from app.cleanup import ActiveTask, CachedFile, Window
from app.cli.clean_videos import run_once
from app.store import NewTask, Store
from tests.conftest import make_settings

NOW = 1_750_000_000.0
DAY = 86400.0
TASK = "a" * 32
OTHER = "b" * 32
SHA = "c" * 64


def f(rel: str, age_days: float, *, ctime_age_days: float | None = None, size: int = 100) -> CachedFile:
    mtime = NOW - age_days * DAY
    ctime = NOW - (ctime_age_days if ctime_age_days is not None else age_days) * DAY
    return CachedFile(rel, size, mtime, ctime)


OLD = Window(until=NOW - 7 * DAY)


@pytest.mark.parametrize("file,tasks,window,grace,verdict", [
    # age and window
    (f("cache/videos/" + SHA + ".mp4", 8), [], OLD, 3600, "remove"),
    (f("cache/videos/" + SHA + ".mp4", 6), [], OLD, 3600, "out_of_window"),
    (f("cache/frames/x.jpg", 30), [], Window(until=NOW - 20 * DAY, since=NOW - 40 * DAY), 0, "remove"),
    (f("cache/frames/x.jpg", 50), [], Window(until=NOW - 20 * DAY, since=NOW - 40 * DAY), 0, "out_of_window"),
    # the grace period: recently written, or old bytes renamed into the cache just now (ctime)
    (f("cache/videos/" + SHA + ".mp4", 30, ctime_age_days=0.01), [], OLD, 3600, "recent"),
    (f("cache/videos/" + SHA + ".mp4", 30, ctime_age_days=0.01), [], OLD, 0, "remove"),
    (f("cache/thumbs/new.jpg", 0.001), [], Window(until=NOW + DAY), 3600, "recent"),
    # files of pending / processing tasks, by id in the path, by video digest, by cache_path
    (f(f"cache/tmp/{TASK}.part", 30), [ActiveTask(TASK, "processing")], OLD, 0, "protected"),
    (f(f"uploads/{TASK}", 30), [ActiveTask(TASK, "pending")], OLD, 0, "protected"),
    (f(f"uploads/{TASK}.part", 30), [ActiveTask(TASK, "pending")], OLD, 0, "protected"),
    (f(f"cache/thumbs/{TASK}/0001.jpg", 30), [ActiveTask(TASK, "processing")], OLD, 0, "protected"),
    (f(f"cache/thumbs/{TASK}_0001.jpg", 30), [ActiveTask(TASK, "processing")], OLD, 0, "protected"),
    (f(f"cache/thumbs/{SHA}/3.5.jpg", 30), [ActiveTask(TASK, "pending", SHA)], OLD, 0, "protected"),
    (f("cache/videos/renamed.mp4", 30), [ActiveTask(TASK, "pending", None, "/srv/data/cache/videos/renamed.mp4")],
     OLD, 0, "protected"),
    (f("cache/videos/renamed.mp4", 30), [ActiveTask(TASK, "pending", None, "data/cache/videos/renamed.mp4")],
     OLD, 0, "protected"),
    # ... but not of finished tasks, nor of other tasks
    (f(f"uploads/{TASK}", 30), [ActiveTask(TASK, "completed")], OLD, 0, "remove"),
    (f(f"uploads/{TASK}", 30), [ActiveTask(TASK, "failed")], OLD, 0, "remove"),
    (f(f"cache/tmp/{TASK}.part", 30), [ActiveTask(OTHER, "processing")], OLD, 0, "remove"),
    (f("cache/videos/renamed.mp4", 30), [ActiveTask(TASK, "pending", None, "/x/cache/videos/other.mp4")], OLD, 0,
     "remove"),
    # an id must be a whole hex run: a longer digest that merely contains a task id is not that task's
    (f(f"cache/thumbs/{TASK}{'d' * 32}.jpg", 30), [ActiveTask(TASK, "processing")], OLD, 0, "remove"),
])
def test_selection(file: CachedFile, tasks: list[ActiveTask], window: Window, grace: float, verdict: str) -> None:
    plan = cleanup.select([file], tasks, now=NOW, window=window, grace_s=grace)
    got = {"remove": plan.remove == [file], "out_of_window": plan.out_of_window == 1,
           "recent": plan.recent == [file], "protected": [p for p, _ in plan.protected] == [file]}
    assert [k for k, v in got.items() if v] == [verdict]
    if verdict == "protected":
        assert plan.protected[0][1] == TASK


@pytest.mark.parametrize("t,included", [(-1.0, False), (0.0, True), (5.0, True), (10.0, False)])
def test_window_bounds_are_half_open(t: float, included: bool) -> None:
    assert Window(since=NOW, until=NOW + 10).holds(NOW + t) is included


def test_plan_totals_by_kind() -> None:
    files = [f("cache/videos/a.mp4", 9, size=10), f("cache/videos/b.mp4", 9, size=20), f("cache/tmp/c.part", 9, size=5),
             f("uploads/" + OTHER, 9, size=7), f("cache/videos/young.mp4", 1, size=1000)]
    plan = cleanup.select(files, [], now=NOW, window=OLD, grace_s=0)
    assert plan.bytes == 42 and plan.out_of_window == 1
    assert plan.by_kind() == {"tmp": (1, 5), "uploads": (1, 7), "videos": (2, 30)}


@pytest.mark.parametrize("now,at,expected", [
    (dt.datetime(2025, 3, 1, 2, 0), dt.time(3, 0), dt.datetime(2025, 3, 1, 3, 0)),
    (dt.datetime(2025, 3, 1, 3, 0), dt.time(3, 0), dt.datetime(2025, 3, 2, 3, 0)),
    (dt.datetime(2025, 3, 1, 23, 59), dt.time(3, 0), dt.datetime(2025, 3, 2, 3, 0)),
    (dt.datetime(2025, 12, 31, 4, 0), dt.time(3, 30), dt.datetime(2026, 1, 1, 3, 30)),
])
def test_next_run(now: dt.datetime, at: dt.time, expected: dt.datetime) -> None:
    assert cleanup.next_run(now, at) == expected


# --- real runs ------------------------------------------------------------------------
def put(path: Path, size: int, age_days: float) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\0" * size)
    t = os.path.getmtime(path) - age_days * DAY
    os.utime(path, (t, t))
    return path


def make_tree(store: Store, data: Path) -> dict[str, Path]:
    """Tasks in every state, each with its files, all ten days old."""
    pending = store.create_task(NewTask(url="upload://x", platform="t", source="upload")).id
    running = store.create_task(NewTask(url="http://e/v.mp4", platform="t")).id
    assert store.mark_started(running, "w1") is not None
    done = store.create_task(NewTask(url="http://e/d.mp4", platform="t")).id
    failed = store.create_task(NewTask(url="upload://y", platform="t", source="upload")).id
    video_path = data / "cache" / "videos" / f"{SHA}.mp4"
    video = store.upsert_video(sha256=SHA, size_bytes=1000, container="mp4", probe=None, cache_path=str(video_path))
    store.complete(done, video=video, provider="local", document={"schema_version": 1, "tags": []},
                   tags=[{"name": "dog", "confidence": 0.9, "sources": ["visual"]}], timings={"probing": 0.1})
    store.mark_failed(failed, "probe_failed", "bad")
    return {
        "pending_upload": put(data / "uploads" / pending, 300, 10),
        "running_part": put(data / "cache" / "tmp" / f"{running}.part", 200, 10),
        "running_thumb": put(data / "cache" / "thumbs" / running / "0001.jpg", 50, 10),
        "done_video": put(video_path, 1000, 10),
        "done_thumb": put(data / "cache" / "thumbs" / done / "0001.jpg", 40, 10),
        "failed_upload": put(data / "uploads" / failed, 30, 10),
        "orphan_part": put(data / "cache" / "tmp" / f"{OTHER}.part", 20, 10),
        "young_frame": put(data / "cache" / "frames" / "young.jpg", 10, 1),
        "ids": {"done": done, "running": running},  # type: ignore[dict-item]
    }


def test_real_run_keeps_files_of_active_tasks_and_results(store: Store, tmp_path: Path) -> None:
    settings = make_settings(tmp_path, cleanup_grace_s=0)
    tree = make_tree(store, settings.data_dir)
    ids: dict[str, str] = tree.pop("ids")  # type: ignore[assignment]
    result_before = store.get_result(ids["done"])

    dry = run_once(settings, store, Window(until=time.time() - 7 * DAY), dry_run=True)
    gone = {"done_video", "done_thumb", "failed_upload", "orphan_part"}
    assert {f.rel for f in dry.removed} == {tree[k].relative_to(settings.data_dir).as_posix() for k in gone}
    assert all(p.exists() for p in tree.values())  # a dry run removes nothing

    report = run_once(settings, store, Window(until=time.time() - 7 * DAY), dry_run=False)
    assert {f.rel for f in report.removed} == {f.rel for f in dry.removed}
    assert report.bytes == 1000 + 40 + 30 + 20 and report.errors == 0
    assert report.protected == 3 and report.by_kind()["videos"] == (1, 1000)
    for name, path in tree.items():
        assert path.exists() is (name not in gone), name
    # SQL: the result and its tags are untouched; only the video's cache_path is cleared.
    assert store.get_result(ids["done"]) == result_before and store.get_task(ids["done"]).status == "completed"
    assert report.cache_paths_cleared == 1
    with store.sessions() as s:
        from sqlalchemy import select

        from app.models import Tag, Video
        assert s.scalar(select(Video.cache_path).where(Video.sha256 == SHA)) is None
        assert s.scalars(select(Tag.name).where(Tag.task_id == ids["done"])).all() == ["dog"]
    # the emptied thumbnail folder of the finished task goes; the kinds' folders stay
    assert not (settings.data_dir / "cache" / "thumbs" / ids["done"]).exists()
    assert (settings.data_dir / "cache" / "thumbs").is_dir() and (settings.data_dir / "cache" / "tmp").is_dir()
    # a second run finds nothing more to do
    again = run_once(settings, store, Window(until=time.time() - 7 * DAY), dry_run=False)
    assert again.removed == [] and again.protected == 3


def test_grace_period_keeps_a_file_just_moved_into_the_cache(store: Store, tmp_path: Path) -> None:
    # os.utime leaves ctime at "now", exactly like os.replace moving an old download into the cache.
    settings = make_settings(tmp_path, cleanup_grace_s=3600)
    old = put(settings.data_dir / "cache" / "videos" / f"{SHA}.mp4", 100, 30)
    report = run_once(settings, store, Window(until=time.time() - 7 * DAY), dry_run=False)
    assert old.exists() and report.removed == [] and report.recent == 1


def test_apply_rechecks_before_unlinking(tmp_path: Path) -> None:
    data = tmp_path / "data"
    a = put(data / "cache" / "tmp" / f"{TASK}.part", 10, 10)      # its task is enqueued after the scan
    b = put(data / "cache" / "videos" / "b.mp4", 10, 10)           # rewritten after the scan
    c = put(data / "cache" / "videos" / "c.mp4", 10, 10)           # removed by someone else after the scan
    d = put(data / "cache" / "videos" / "d.mp4", 10, 10)           # unchanged: goes
    now = time.time()
    plan = cleanup.select(cleanup.scan(data), [], now=now, window=Window(until=now), grace_s=0)
    assert len(plan.remove) == 4
    b.write_bytes(b"new bytes, new size")
    c.unlink()
    report = cleanup.apply(data, plan, [ActiveTask(TASK, "pending")], grace_s=0, now=lambda: now, dry_run=False)
    assert [f.rel for f in report.removed] == ["cache/videos/d.mp4"]
    assert (report.protected, report.changed, report.errors) == (1, 2, 0)
    assert a.exists() and b.exists() and not d.exists()


def test_scan_lists_regular_files_only(tmp_path: Path) -> None:
    data = tmp_path / "data"
    put(data / "cache" / "videos" / "v.mp4", 5, 0)
    put(data / "uploads" / OTHER, 6, 0)
    put(tmp_path / "outside.bin", 7, 0)
    (data / "cache" / "videos" / "link.mp4").symlink_to(tmp_path / "outside.bin")
    put(data / "search" / "index.db", 8, 0)  # not a cache: never scanned
    assert sorted((f.rel, f.size) for f in cleanup.scan(data)) == [("cache/videos/v.mp4", 5), (f"uploads/{OTHER}", 6)]
