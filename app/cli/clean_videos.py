"""`python clean_videos.py`: remove cached videos, frames, thumbnails and stale uploads.

    clean_videos.py                                   files older than CLEANUP_MAX_AGE_DAYS (7)
    clean_videos.py --start 2025-01-01 --end 2025-01-31   files last modified on those days (local time)
    clean_videos.py --dry-run -v                      list what would go, remove nothing
    clean_videos.py --every-day-at 03:00              stay running; clean every day at 03:00 (compose)

Files of tasks that are pending or processing are never removed, nor files changed within
CLEANUP_GRACE_S (a consumer may be writing them), so it is safe while consumers work.
Results in SQL are never touched; `videos.cache_path` is cleared for removed videos.
Exit status: 0 done, 1 some files could not be removed, 2 bad arguments or no database.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from app import cleanup
from app.cleanup import ActiveTask, Report, Window
from app.config import Settings
from app.logs import setup_logging

log = logging.getLogger("cleanup")


def _day(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from None


def _clock(text: str) -> dt.time:
    try:
        h, m = text.split(":")
        return dt.time(int(h), int(m))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a time of day (HH:MM): {text!r}") from None


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="clean_videos.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--start", type=_day, help="first day (YYYY-MM-DD, local time), inclusive")
    p.add_argument("--end", type=_day, help="last day (YYYY-MM-DD, local time), inclusive")
    p.add_argument("--older-than-days", type=float, help="without --start/--end: age limit (default CLEANUP_MAX_AGE_DAYS)")
    p.add_argument("--dry-run", action="store_true", help="report what would be removed; remove nothing")
    p.add_argument("-v", "--verbose", action="store_true", help="list every file")
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")
    p.add_argument("--every-day-at", nargs="?", const="", metavar="HH:MM", default=None,
                   help="keep running and clean once a day at HH:MM local time (default CLEANUP_AT, 03:00)")
    args = p.parse_args(argv)
    if args.every_day_at:
        try:
            args.every_day_at = _clock(args.every_day_at)
        except argparse.ArgumentTypeError as exc:
            p.error(f"argument --every-day-at: {exc}")
    if args.start and args.end and args.start > args.end:
        p.error("--start is after --end")
    if (args.start or args.end) and args.older_than_days is not None:
        p.error("--older-than-days goes without --start/--end")
    if args.older_than_days is not None and args.older_than_days <= 0:
        p.error("--older-than-days must be positive")
    if args.every_day_at is not None and (args.start or args.end):
        p.error("--every-day-at cleans by age; it takes no --start/--end")
    return args


def local_midnight(day: dt.date) -> float:
    """Unix time of 00:00 local time on `day`."""
    return dt.datetime(day.year, day.month, day.day).timestamp()


def window_for(start: dt.date | None, end: dt.date | None, older_than_days: float, now: float) -> Window:
    """The modification-time window: whole local days from --start to --end, else older than N days."""
    if start is None and end is None:
        return Window(until=now - older_than_days * 86400)
    until = local_midnight(end + dt.timedelta(days=1)) if end is not None else now
    return Window(until=until, since=local_midnight(start) if start is not None else None)


def run_once(settings: Settings, store: Any, window: Window, *, dry_run: bool,
             clock: Callable[[], float] = time.time) -> Report:
    """Scan, read the active tasks, select, re-read them, remove, clear the cache paths."""
    data_dir = settings.data_dir
    files = cleanup.scan(data_dir)
    active = [ActiveTask(*row) for row in store.active_task_files()]
    plan = cleanup.select(files, active, now=clock(), window=window, grace_s=settings.cleanup_grace_s)
    # Tasks read again after the scan: one enqueued (or retried) meanwhile keeps its files.
    still_active = [ActiveTask(*row) for row in store.active_task_files()] if plan.remove else []
    report = cleanup.apply(data_dir, plan, still_active, grace_s=settings.cleanup_grace_s, now=clock,
                           dry_run=dry_run)
    if not dry_run:
        candidates: list[str] = []
        for f in report.removed:
            if f.kind == "videos":
                path = data_dir / f.rel
                candidates += sorted({str(path), str(path.absolute()), str(path.resolve())})
        if candidates:
            report.cache_paths_cleared = store.forget_cache_paths(candidates)
    return report


def human_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    raise AssertionError("unreachable")


def describe(report: Report, grace_s: float) -> str:
    verb = "would remove" if report.dry_run else "removed"
    kinds = ", ".join(f"{k} {n}" for k, (n, _b) in report.by_kind().items())
    freed = "would free" if report.dry_run else "freed"
    line = (f"{verb} {len(report.removed)} file(s), {freed} {human_bytes(report.bytes)}"
            + (f" ({kinds})" if kinds else ""))
    kept = []
    if report.protected:
        kept.append(f"{report.protected} of pending or running tasks")
    if report.recent:
        kept.append(f"{report.recent} changed within the last {grace_s:.0f} s")
    if report.changed:
        kept.append(f"{report.changed} changed during the run")
    if kept:
        line += "; kept " + ", ".join(kept)
    if report.errors:
        line += f"; {report.errors} could not be removed (see the log)"
    return line


def _print(report: Report, args: argparse.Namespace, settings: Settings, out: TextIO) -> None:
    if args.json:
        out.write(json.dumps(report.as_dict()) + "\n")
        return
    if args.verbose:
        for f in report.removed:
            out.write(f"{f.size:>12}  {f.rel}\n")
    out.write(describe(report, settings.cleanup_grace_s) + "\n")


class NoDatabase(RuntimeError):
    pass


def _open_store(settings: Settings) -> Any:
    """The task store, once the database answers. Refuses a database without the tasks table:
    pointed at the wrong one, the cleanup could not see which files running tasks need."""
    from sqlalchemy import inspect

    from app.db import make_engine, make_sessionmaker
    from app.readiness import wait_for_services
    from app.store import Store

    wait_for_services(settings)
    engine = make_engine(settings.effective_database_url)
    if not inspect(engine).has_table("tasks"):
        engine.dispose()
        raise NoDatabase("the database has no tasks table (start the service once: it creates the schema)")
    return Store(make_sessionmaker(engine))


def loop(at: dt.time, job: Callable[[], object], stop: threading.Event, *,
         now: Callable[[], dt.datetime] = dt.datetime.now, wait: Callable[[float], object] | None = None) -> None:
    """Run `job` every day at `at` (local time) until `stop` is set; a failed run waits for the next day.

    `wait(seconds)` pauses (default: `stop.wait`, so a stop request ends the pause at once)."""
    pause = wait or stop.wait
    while not stop.is_set():
        due = cleanup.next_run(now(), at)
        log.info("next cleanup at %s", due.isoformat(timespec="minutes"))
        while not stop.is_set():
            left = (due - now()).total_seconds()
            if left <= 0:
                break
            pause(min(left, 300.0))  # then re-read the clock: suspend and clock changes
        if stop.is_set():
            return
        try:
            job()
        except Exception:
            log.exception("cleanup run failed; next try tomorrow")


def main(argv: list[str] | None = None, *, out: TextIO | None = None, store: Any = None,
         stop: threading.Event | None = None) -> int:
    args = parse(argv)
    setup_logging()
    out = out or sys.stdout
    settings = Settings()
    if store is None:
        try:
            store = _open_store(settings)
        except Exception as exc:
            log.error("cannot open the database: %s", exc)
            return 2
    older = args.older_than_days if args.older_than_days is not None else settings.cleanup_max_age_days

    def once() -> int:
        window = window_for(args.start, args.end, older, time.time())
        report = run_once(settings, store, window, dry_run=args.dry_run)
        log.info(describe(report, settings.cleanup_grace_s),
                 extra={"files": len(report.removed), "bytes": report.bytes, "dry_run": report.dry_run})
        _print(report, args, settings, out)
        return 1 if report.errors else 0

    if args.every_day_at is None:
        return once()
    at = args.every_day_at if args.every_day_at != "" else _clock(settings.cleanup_at)
    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
    log.info("cleaning every day at %s (files older than %g days; DATA_DIR %s)", at.strftime("%H:%M"), older,
             Path(settings.data_dir))
    loop(at, once, stop)
    return 0
