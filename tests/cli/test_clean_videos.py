"""clean_videos.py: arguments, the date window, the report, the daily loop, the entry point."""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from app.cli import clean_videos
from app.cli.clean_videos import local_midnight, parse, window_for
from app.db import make_engine, make_sessionmaker, migrate
from app.store import NewTask, Store

ROOT = Path(__file__).resolve().parents[2]
DAY = 86400.0


@pytest.mark.parametrize("argv,word", [
    (["--start", "2025-02-10", "--end", "2025-02-01"], "after --end"),
    (["--start", "2025-13-01"], "not a date"),
    (["--start", "2025-01-01", "--older-than-days", "3"], "--older-than-days"),
    (["--older-than-days", "0"], "positive"),
    (["--every-day-at", "25:00"], "time of day"),
    (["--every-day-at", "03:00", "--start", "2025-01-01"], "--every-day-at"),
])
def test_bad_arguments_exit_2_naming_the_problem(argv: list[str], word: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        parse(argv)
    assert info.value.code == 2 and word in capsys.readouterr().err


def test_every_day_at_defaults_to_the_setting() -> None:
    assert parse(["--every-day-at"]).every_day_at == ""          # main() reads CLEANUP_AT then
    assert parse(["--every-day-at", "04:30"]).every_day_at == dt.time(4, 30)
    assert parse([]).every_day_at is None


@pytest.mark.parametrize("n,text", [(0, "0 B"), (999, "999 B"), (1000, "1.0 kB"), (1_500_000, "1.5 MB"),
                                    (3_200_000_000_000, "3200.0 GB")])
def test_human_bytes(n: int, text: str) -> None:
    assert clean_videos.human_bytes(n) == text


def test_windows() -> None:
    now = 1_750_000_000.0
    w = window_for(None, None, 7, now)
    assert (w.since, w.until) == (None, now - 7 * DAY)
    w = window_for(dt.date(2025, 1, 1), dt.date(2025, 1, 31), 7, now)
    # whole local days, the last one included
    assert w.since == dt.datetime(2025, 1, 1).timestamp() and w.until == dt.datetime(2025, 2, 1).timestamp()
    assert w.holds(dt.datetime(2025, 1, 31, 23, 59).timestamp()) and not w.holds(dt.datetime(2025, 2, 1).timestamp())
    assert window_for(None, dt.date(2025, 1, 31), 7, now).since is None
    assert window_for(dt.date(2025, 1, 1), None, 7, now).until == now


@pytest.fixture
def sqlite_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Store:
    data = tmp_path / "data"
    for k in list(os.environ):
        if k in ("DATABASE_URL", "REDIS_URL"):
            monkeypatch.delenv(k)
    monkeypatch.setenv("DATA_DIR", str(data))
    monkeypatch.setenv("CLEANUP_GRACE_S", "0")
    engine = make_engine(f"sqlite:///{data / 'vision_to_tag.db'}")
    migrate(engine)
    return Store(make_sessionmaker(engine))


def put(path: Path, size: int, when: float) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\0" * size)
    os.utime(path, (when, when))
    return path


def test_main_dry_run_then_run_by_date_range(sqlite_store: Store, tmp_path: Path) -> None:
    data = tmp_path / "data"
    running = sqlite_store.create_task(NewTask(url="http://e/v.mp4", platform="t")).id
    in_range = put(data / "cache" / "videos" / ("e" * 64 + ".mp4"), 1000, local_midnight(dt.date(2025, 1, 15)) + 3600)
    running_part = put(data / "cache" / "tmp" / f"{running}.part", 500, local_midnight(dt.date(2025, 1, 15)) + 60)
    before = put(data / "cache" / "thumbs" / "x.jpg", 10, local_midnight(dt.date(2024, 12, 31)) + 60)
    argv = ["--start", "2025-01-01", "--end", "2025-01-31"]

    out = io.StringIO()
    assert clean_videos.main(argv + ["--dry-run", "--json"], out=out, store=sqlite_store) == 0
    report = json.loads(out.getvalue())
    assert report["dry_run"] is True and report["files"] == 1 and report["bytes"] == 1000 and report["protected"] == 1
    assert report["paths"] == ["cache/videos/" + "e" * 64 + ".mp4"] and in_range.exists()

    out = io.StringIO()
    assert clean_videos.main(argv + ["-v"], out=out, store=sqlite_store) == 0
    text = out.getvalue()
    assert "removed 1 file(s), freed 1.0 kB (videos 1); kept 1 of pending or running tasks" in text
    assert "cache/videos/" + "e" * 64 + ".mp4" in text
    assert not in_range.exists() and running_part.exists() and before.exists()


def test_main_without_arguments_uses_the_age_setting(sqlite_store: Store, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    data = tmp_path / "data"
    now = time.time()
    eight = put(data / "cache" / "videos" / "eight.mp4", 8, now - 8 * DAY)
    six = put(data / "cache" / "videos" / "six.mp4", 6, now - 6 * DAY)
    out = io.StringIO()
    assert clean_videos.main([], out=out, store=sqlite_store) == 0
    assert not eight.exists() and six.exists()
    monkeypatch.setenv("CLEANUP_MAX_AGE_DAYS", "5")
    assert clean_videos.main(["--json"], out=(out := io.StringIO()), store=sqlite_store) == 0
    assert json.loads(out.getvalue())["paths"] == ["cache/videos/six.mp4"] and not six.exists()


class FakeClock:
    """Local time that moves only when the loop waits."""

    def __init__(self, start: dt.datetime) -> None:
        self.t = start
        self.waits: list[float] = []

    def now(self) -> dt.datetime:
        return self.t

    def wait(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.t += dt.timedelta(seconds=seconds)


def test_loop_runs_the_job_daily_at_the_time() -> None:
    clock = FakeClock(dt.datetime(2025, 3, 1, 1, 0))
    runs: list[dt.datetime] = []
    stop = threading.Event()

    def job() -> None:
        runs.append(clock.t)
        clock.t += dt.timedelta(minutes=2)  # a run takes a while
        if len(runs) == 3:
            stop.set()

    clean_videos.loop(dt.time(3, 0), job, stop, now=clock.now, wait=clock.wait)
    assert runs == [dt.datetime(2025, 3, d, 3, 0) for d in (1, 2, 3)]
    assert max(clock.waits) <= 300  # waits in slices, re-reading the clock


def test_loop_survives_a_failed_run() -> None:
    clock = FakeClock(dt.datetime(2025, 3, 1, 2, 0))
    calls: list[dt.datetime] = []
    stop = threading.Event()

    def job() -> None:
        calls.append(clock.t)
        if len(calls) == 1:
            raise RuntimeError("database away")
        stop.set()

    clean_videos.loop(dt.time(3, 0), job, stop, now=clock.now, wait=clock.wait)
    assert calls == [dt.datetime(2025, 3, 1, 3, 0), dt.datetime(2025, 3, 2, 3, 0)]


def test_loop_stops_while_waiting() -> None:
    stop = threading.Event()
    stop.set()
    ran: list[int] = []
    clean_videos.loop(dt.time(3, 0), lambda: ran.append(1), stop, now=lambda: dt.datetime(2025, 3, 1, 2, 0))
    assert ran == []


def test_entry_point_is_thin_and_runs(tmp_path: Path) -> None:
    text = (ROOT / "clean_videos.py").read_text()
    assert "from app.cli.clean_videos import main" in text and len(text.splitlines()) < 12
    data = tmp_path / "data"
    engine = make_engine(f"sqlite:///{data / 'vision_to_tag.db'}")
    migrate(engine)
    engine.dispose()
    old = put(data / "cache" / "videos" / "old.mp4", 2048, time.time() - 30 * DAY)
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(DATA_DIR=str(data), CLEANUP_GRACE_S="0", LOG_FORMAT="json")
    run = subprocess.run([sys.executable, str(ROOT / "clean_videos.py")], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert "removed 1 file(s)" in run.stdout and not old.exists()
    lines = [json.loads(line) for line in run.stderr.splitlines() if line.startswith("{")]
    assert any(rec["message"].startswith("removed cache/videos/old.mp4") and rec["bytes"] == 2048 for rec in lines)


def test_refuses_a_database_without_tasks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "empty"))
    for k in ("DATABASE_URL", "REDIS_URL"):
        monkeypatch.delenv(k, raising=False)
    keep = put(tmp_path / "empty" / "cache" / "videos" / "v.mp4", 1, time.time() - 30 * DAY)
    assert clean_videos.main([]) == 2 and keep.exists()
