"""A batch of video links run through the service: parsing, resumable state, the run, its outcome.

    parse_links(text)           one URL per line; blanks and `#` comments skipped; malformed lines
                                kept apart with their line numbers (never submitted)
    BatchState                  state.json in the report folder: link line -> task id, written after
                                every submission, so an interrupted run resumes without resubmitting
    outcome_from(line, url, view)  GET /api/v1/task/{id} data -> one Outcome (pure)
    run_batch(...)              keeps at most `in_flight` tasks open at once: a slot is refilled as
                                soon as one finishes (no fixed groups waiting on their slowest member)

The HTTP client is passed in (httpx.AsyncClient with base_url and auth headers).
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

STATE_NAME = "state.json"
THUMBS_PER_VIDEO = 3


@dataclass(frozen=True)
class Link:
    line: int  # 1-based line number in the links file
    url: str


@dataclass(frozen=True)
class BadLine:
    line: int
    text: str
    reason: str


def check_url(url: str) -> str | None:
    """Why `url` is not a submittable http(s) URL, or None (pure)."""
    if any(c.isspace() for c in url):
        return "contains spaces"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        return f"not a URL ({exc})"
    if parts.scheme.lower() not in ("http", "https"):
        return "not an http(s) URL" if parts.scheme else "no scheme (http:// or https://)"
    if not parts.hostname:
        return "no host"
    if port == 0:
        return "port 0"
    if len(url) > 4096:
        return "longer than 4096 characters"
    return None


def parse_links(text: str) -> tuple[list[Link], list[BadLine]]:
    """A links file -> the links to submit and the malformed lines (pure).

    A line is stripped; empty lines and lines starting with `#` are skipped. A repeated URL
    is submitted once (the first line wins) and its later lines are reported.
    """
    links: list[Link] = []
    bad: list[BadLine] = []
    seen: dict[str, int] = {}
    for n, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip().lstrip("\ufeff")
        if not line or line.startswith("#"):
            continue
        why = check_url(line)
        if why is not None:
            bad.append(BadLine(n, line[:200], why))
        elif line in seen:
            bad.append(BadLine(n, line[:200], f"duplicate of line {seen[line]}"))
        else:
            seen[line] = n
            links.append(Link(n, line))
    return links, bad


@dataclass
class Outcome:
    """One link's fate: what results.jsonl holds per line."""

    line: int
    url: str
    task_id: str | None
    status: str                     # completed | failed | rejected (refused at submission)
    error_code: str | None = None
    error_message: str | None = None
    duration_s: float | None = None     # the video's length
    processing_s: float | None = None   # created -> finished, as the service recorded it
    tags: list[str] = field(default_factory=list)
    description: str | None = None
    thumbnails: list[str] = field(default_factory=list)  # names under GET .../thumbs/{name}

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _seconds_between(a: str | None, b: str | None) -> float | None:
    if not a or not b:
        return None
    try:
        t0 = dt.datetime.fromisoformat(a.rstrip("Z"))
        t1 = dt.datetime.fromisoformat(b.rstrip("Z"))
    except ValueError:
        return None
    return round((t1 - t0).total_seconds(), 3)


def outcome_from(line: int, url: str, view: dict[str, Any]) -> Outcome:
    """A finished task's API view -> its Outcome (pure)."""
    out = Outcome(line, url, view.get("task_id"), str(view.get("status")))
    out.processing_s = _seconds_between(view.get("created_at"), view.get("finished_at"))
    if out.status == "failed":
        err = view.get("error") or {}
        out.error_code, out.error_message = err.get("code") or "internal_error", err.get("message")
        return out
    doc = view.get("result") or {}
    duration = (doc.get("video") or {}).get("duration_s")
    out.duration_s = float(duration) if isinstance(duration, (int, float)) else None
    out.tags = [str(t["name"]) for t in doc.get("tags") or [] if isinstance(t, dict) and t.get("name")]
    out.description = (doc.get("gemini") or {}).get("description") or None
    for scene in doc.get("scenes") or []:
        thumb = ((scene or {}).get("keyframe") or {}).get("thumbnail")
        if thumb and len(out.thumbnails) < THUMBS_PER_VIDEO:
            out.thumbnails.append(str(thumb).rsplit("/", 1)[-1])
    return out


class BatchState:
    """The resumable part of a run: link line -> {url, task_id}; atomic rewrite on every change."""

    def __init__(self, path: Path, links_file: str, tasks: dict[int, dict[str, str]] | None = None) -> None:
        self.path, self.links_file = path, links_file
        self.tasks: dict[int, dict[str, str]] = tasks or {}

    @classmethod
    def load(cls, folder: Path, links_file: str) -> BatchState:
        path = folder / STATE_NAME
        if not path.exists():
            return cls(path, links_file)
        data = json.loads(path.read_text())
        return cls(path, data.get("links_file", links_file),
                   {int(k): v for k, v in (data.get("tasks") or {}).items()})

    def task_for(self, link: Link) -> str | None:
        entry = self.tasks.get(link.line)
        # A line edited since the last run is a new link: submit it again.
        return entry["task_id"] if entry and entry.get("url") == link.url else None

    def record(self, link: Link, task_id: str) -> None:
        self.tasks[link.line] = {"url": link.url, "task_id": task_id}
        self.save()

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps({"links_file": self.links_file,
                                   "tasks": {str(k): v for k, v in sorted(self.tasks.items())}}, indent=1))
        os.replace(tmp, self.path)


@dataclass
class Counts:
    total: int
    done: int = 0
    failed: int = 0
    in_flight: int = 0
    resumed: int = 0     # links whose task id came from state.json (not submitted again)
    submitted: int = 0


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message = status, code, message


def _api_error(r: Any) -> ApiError:
    try:
        body = r.json()
        err = (body.get("data") or {}).get("error") or {}
        return ApiError(r.status_code, str(err.get("code") or "http_" + str(r.status_code)),
                        str(err.get("message") or body.get("message") or ""))
    except Exception:
        return ApiError(r.status_code, f"http_{r.status_code}", r.text[:200])


async def run_batch(client: Any, links: list[Link], state: BatchState, *, in_flight: int = 8,
                    platform: str = "batch", poll_s: float = 0.5, task_timeout_s: float = 3600.0,
                    on_change: Callable[[Counts], Any] | None = None,
                    thumbs: dict[str, list[str]] | None = None) -> list[Outcome]:
    """Submit (or resume) every link, wait for each, return outcomes in link order.

    `thumbs`, when given, is filled with task id -> base64 JPEGs of its first keyframes.
    Cancelling this coroutine leaves state.json describing every submitted task.
    """
    counts = Counts(total=len(links))
    outcomes: dict[int, Outcome] = {}
    todo: asyncio.Queue[Link] = asyncio.Queue()
    for link in links:
        todo.put_nowait(link)

    def changed() -> None:
        if on_change is not None:
            on_change(counts)

    async def one(link: Link) -> Outcome:
        task_id = state.task_for(link)
        if task_id is None:
            r = await client.post("/api/v1/task/create", json={"url": link.url, "platform": platform})
            if r.status_code != 200:
                e = _api_error(r)
                return Outcome(link.line, link.url, None, "rejected", e.code, e.message)
            task_id = str(r.json()["task_id"])
            state.record(link, task_id)
            counts.submitted += 1
        else:
            counts.resumed += 1
        deadline = time.monotonic() + task_timeout_s
        while True:
            r = await client.get(f"/api/v1/task/{task_id}")
            if r.status_code == 404:  # the service forgot it (another database?): submit afresh
                state.tasks.pop(link.line, None)
                return await one(link)
            if r.status_code != 200:
                raise _api_error(r)
            view = r.json()["data"]
            if view["status"] in ("completed", "failed"):
                break
            if time.monotonic() > deadline:
                return Outcome(link.line, link.url, task_id, "failed", "batch_timeout",
                               f"not finished within {task_timeout_s:.0f} s")
            await asyncio.sleep(poll_s)
        out = outcome_from(link.line, link.url, view)
        if thumbs is not None and out.status == "completed":
            thumbs[task_id] = await _thumbnails(client, task_id, out.thumbnails)
        return out

    async def worker() -> None:
        while True:
            try:
                link = todo.get_nowait()
            except asyncio.QueueEmpty:
                return
            counts.in_flight += 1
            changed()
            try:
                out = await one(link)
            except (OSError, ApiError) as exc:  # transport trouble on our side: recorded, the run goes on
                out = Outcome(link.line, link.url, state.task_for(link), "failed", "batch_client_error", str(exc))
            except Exception as exc:
                if type(exc).__module__.startswith("httpx"):
                    out = Outcome(link.line, link.url, state.task_for(link), "failed", "batch_client_error",
                                  f"{type(exc).__name__}: {exc}")
                else:
                    raise
            finally:
                counts.in_flight -= 1
            outcomes[link.line] = out
            if out.status == "completed":
                counts.done += 1
            else:
                counts.failed += 1
            changed()

    await asyncio.gather(*(worker() for _ in range(max(1, in_flight))))
    return [outcomes[link.line] for link in links]


async def _thumbnails(client: Any, task_id: str, names: list[str]) -> list[str]:
    """Base64 JPEGs of the named keyframes; a missing one (evicted cache) is skipped."""
    out: list[str] = []
    for name in names:
        try:
            r = await client.get(f"/api/v1/task/{task_id}/thumbs/{name}")
        except Exception:
            continue
        if r.status_code == 200 and r.content[:3] == b"\xff\xd8\xff":
            out.append(base64.b64encode(r.content).decode())
    return out


async def fetch_topics(client: Any, task_ids: list[str]) -> dict[str, Any]:
    """POST /api/v1/collections/topics; {"error": ...} instead when it cannot be had."""
    if not task_ids:
        return {"method": "none", "topics": [], "unclustered": [], "warnings": ["no completed videos"]}
    try:
        r = await client.post("/api/v1/collections/topics", json={"task_ids": task_ids}, timeout=300)
    except Exception as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}
    if r.status_code != 200:
        return {"error": str(_api_error(r))}
    data: dict[str, Any] = r.json()["data"]
    return data
