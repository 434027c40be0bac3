"""`python -m app.cli.batch links.txt`: tag every video link of a file, then write a report folder.

One URL per line; blank lines and `#` comments are skipped; malformed lines are reported
with their line numbers and not submitted. Links go to a running service (--api, --api-key)
or, with --embedded, to one this command starts (`main.py` in the embedded mode, on a spare
port, stopped at the end). At most --in-flight tasks are open at once. Interrupt with
Ctrl-C and run the same command again: finished and running tasks are picked up from
<report>/state.json, never submitted twice.

Report folder (default: <links file>.report/): results.jsonl, durations.csv, durations.png,
report.html (self-contained), summary.json, state.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from app.batch import BatchState, Counts, fetch_topics, parse_links, run_batch
from app.batch_report import write_report

ROOT = Path(__file__).resolve().parents[2]


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m app.cli.batch", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("links", type=Path, help="text file: one video URL per line")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--api", default=None, help="service root, e.g. http://127.0.0.1:8000 (default: HOST:PORT)")
    where.add_argument("--embedded", action="store_true", help="start the embedded service for this run")
    p.add_argument("--api-key", default=os.environ.get("VTT_API_KEY"),
                   help="client key for /api/v1 (default: $VTT_API_KEY)")
    p.add_argument("--out", type=Path, default=None, help="report folder (default: <links>.report)")
    p.add_argument("--in-flight", type=int, default=8, help="tasks open at once (default 8)")
    p.add_argument("--platform", default="batch", help="platform recorded on the tasks (default batch)")
    p.add_argument("--task-timeout", type=float, default=3600.0, help="give up waiting on one task after s")
    p.add_argument("--poll", type=float, default=0.5, help="seconds between status checks of a task")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    if args.in_flight < 1:
        p.error("--in-flight must be at least 1")
    return args


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.asynccontextmanager
async def embedded_service(log_path: Path, wait_s: float = 180.0) -> AsyncIterator[str]:
    """`main.py` on a spare loopback port (the embedded mode when DATABASE_URL/REDIS_URL are unset).

    Its output goes to `log_path` (a pipe nobody reads would fill up and stall it).
    """
    import httpx

    port = _free_port()
    log = await asyncio.to_thread(log_path.open, "ab")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(ROOT / "main.py"), "--host", "127.0.0.1", "--port", str(port),
        stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + wait_s
        async with httpx.AsyncClient(base_url=url, timeout=2) as c:
            while True:
                if proc.returncode is not None:
                    raise RuntimeError(f"the embedded service exited ({proc.returncode}); see {log_path}")
                with contextlib.suppress(httpx.HTTPError):
                    if (await c.get("/healthz")).status_code == 200:
                        break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the embedded service did not start within {wait_s:.0f} s; see {log_path}")
                await asyncio.sleep(0.3)
        yield url
    finally:
        if proc.returncode is None:
            proc.terminate()  # SIGTERM: the consumer drains, the private redis-server stops
            try:
                await asyncio.wait_for(proc.wait(), 60)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        log.close()


class Progress:
    """The live bar: done / failed / in flight, with tqdm's rate and ETA."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.bar: Any = None
        if enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="video", dynamic_ncols=True, file=sys.stderr)
        self._finished = 0

    def __call__(self, c: Counts) -> None:
        if self.bar is None:
            return
        self.bar.set_postfix(done=c.done, failed=c.failed, in_flight=c.in_flight, refresh=False)
        finished = c.done + c.failed
        if finished > self._finished:
            self.bar.update(finished - self._finished)  # refreshes, with the new postfix
            self._finished = finished
        else:
            self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def report_folder(args: argparse.Namespace) -> Path:
    folder: Path = args.out or args.links.with_name(args.links.name + ".report")
    return folder


async def run(args: argparse.Namespace, *, api: str | None = None) -> int:
    """The batch for parsed `args`; `api` overrides where the service is (tests, --embedded)."""
    import httpx

    text = args.links.read_text(encoding="utf-8", errors="replace")
    links, bad = parse_links(text)
    folder = report_folder(args)
    await asyncio.to_thread(folder.mkdir, parents=True, exist_ok=True)
    for b in bad:
        print(f"{args.links}:{b.line}: skipped, {b.reason}: {b.text[:100]}", file=sys.stderr)
    state = BatchState.load(folder, str(args.links))
    if api is None:
        from app.config import Settings

        s = Settings()
        api = args.api or f"http://{s.host}:{s.port}"
    headers = {"X-API-Key": args.api_key} if args.api_key else {}
    limits = httpx.Limits(max_connections=args.in_flight + 4, max_keepalive_connections=args.in_flight + 4)
    thumbs: dict[str, list[str]] = {}
    progress = Progress(len(links), not args.no_progress)
    async with httpx.AsyncClient(base_url=api.rstrip("/"), headers=headers, timeout=60, limits=limits) as client:
        try:
            outcomes = await run_batch(client, links, state, in_flight=args.in_flight, platform=args.platform,
                                       poll_s=args.poll, task_timeout_s=args.task_timeout, on_change=progress,
                                       thumbs=thumbs)
        finally:
            progress.close()
        topics = await fetch_topics(client, [o.task_id for o in outcomes if o.status == "completed" and o.task_id])
    summary = write_report(folder, outcomes, bad, thumbs, topics, f"Batch report: {args.links.name}")
    print(f"{summary['completed']} completed, {summary['failed'] + summary['rejected']} failed, "
          f"{summary['malformed']} malformed lines; report in {folder}/report.html", file=sys.stderr)
    return 0 if summary["failed"] + summary["rejected"] + summary["malformed"] == 0 else 1


async def amain(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if not args.links.is_file():
        print(f"no such file: {args.links}", file=sys.stderr)
        return 2
    if args.embedded:
        folder = report_folder(args)
        await asyncio.to_thread(folder.mkdir, parents=True, exist_ok=True)
        async with embedded_service(folder / "embedded-service.log") as url:
            return await run(args, api=url)
    return await run(args)


def main(argv: list[str] | None = None) -> int:
    try:
        return asyncio.run(amain(argv))
    except KeyboardInterrupt:
        print("\ninterrupted: run the same command again to resume (state.json keeps the task ids)",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
