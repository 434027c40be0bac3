"""Log lines: JSON shape with task fields, human text, the format choice, and no secrets."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator

import pytest

from app import logs


@pytest.fixture
def root() -> Iterator[logging.Logger]:
    """Leave the root logger as it was (setup_logging changes process-wide state)."""
    r = logging.getLogger()
    handlers, level = list(r.handlers), r.level
    yield r
    r.handlers[:] = handlers
    r.setLevel(level)
    logs.bind(task_id=None, stage=None, worker=None)


def capture(fmt: str) -> io.StringIO:
    buf = io.StringIO()
    logs.setup_logging("DEBUG", fmt, stream=buf)
    return buf


def json_lines(buf: io.StringIO) -> list[dict]:  # type: ignore[type-arg]
    return [json.loads(line) for line in buf.getvalue().splitlines()]


def test_json_lines_carry_task_fields(root: logging.Logger) -> None:
    buf = capture("json")
    logging.getLogger("consumer").info("task %s completed in %.2f s", "t1", 1.234,
                                       extra={"task_id": "t1", "stage": "completed", "duration_s": 1.234})
    [rec] = json_lines(buf)
    assert rec["level"] == "INFO" and rec["logger"] == "consumer" and rec["message"] == "task t1 completed in 1.23 s"
    assert (rec["task_id"], rec["stage"], rec["duration_s"]) == ("t1", "completed", 1.234)
    assert rec["ts"].endswith("Z") and "T" in rec["ts"]


def test_one_handler_however_often_it_is_set_up(root: logging.Logger) -> None:
    logs.setup_logging("INFO", "json", stream=io.StringIO())
    buf = capture("json")
    logging.getLogger("x").warning("once")
    ours = [h for h in root.handlers if getattr(h, "_vtt_handler", False)]
    assert len(ours) == 1 and len(json_lines(buf)) == 1


async def test_bound_fields_follow_each_asyncio_task(root: logging.Logger) -> None:
    buf = capture("json")
    log = logging.getLogger("consumer")

    async def work(task_id: str) -> None:
        logs.bind(task_id=task_id, stage="decoding")
        await asyncio.sleep(0)
        log.info("step")
        await asyncio.to_thread(log.info, "in a thread")  # to_thread copies the context
        log.info("overridden", extra={"stage": "labelling"})

    await asyncio.gather(work("a"), work("b"))
    log.info("outside")
    recs = json_lines(buf)
    by_task = {t: [(r["message"], r["stage"]) for r in recs if r.get("task_id") == t] for t in "ab"}
    for t in "ab":
        assert sorted(by_task[t]) == [("in a thread", "decoding"), ("overridden", "labelling"), ("step", "decoding")]
    assert "task_id" not in recs[-1] and recs[-1]["message"] == "outside"


def test_exceptions_are_one_json_line(root: logging.Logger) -> None:
    buf = capture("json")
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("api").exception("unhandled")
    [rec] = json_lines(buf)
    assert rec["message"] == "unhandled" and "ValueError: boom" in rec["exc"]


def test_text_is_for_people(root: logging.Logger) -> None:
    buf = capture("text")
    logging.getLogger("cleanup").info("removed %d file(s)", 3, extra={"bytes": 10})
    line = buf.getvalue().strip()
    assert " INFO cleanup: removed 3 file(s) [bytes=10]" in line and not line.startswith("{")


@pytest.mark.parametrize("fmt,embedded,expected", [
    ("auto", True, "text"), ("auto", False, "json"), ("json", True, "json"), ("text", False, "text"),
])
def test_format_choice(fmt: str, embedded: bool, expected: str) -> None:
    assert logs.choose_format(fmt, embedded=embedded) == expected


def test_settings_choose_level_and_format(root: logging.Logger, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "mysql://u:p@db/vtt")
    monkeypatch.setenv("REDIS_URL", "redis://r:6379/0")
    monkeypatch.setenv("LOG_LEVEL", "warning")
    monkeypatch.delenv("LOG_FORMAT", raising=False)
    logs.setup_logging()
    [ours] = [h for h in root.handlers if getattr(h, "_vtt_handler", False)]
    assert isinstance(ours.formatter, logs.JsonFormatter) and root.level == logging.WARNING  # production: json
    monkeypatch.delenv("DATABASE_URL")
    monkeypatch.delenv("REDIS_URL")
    logs.setup_logging()
    [ours] = [h for h in root.handlers if getattr(h, "_vtt_handler", False)]
    assert isinstance(ours.formatter, logs.TextFormatter)  # embedded: text


GOOGLE_KEY = "AIzaSyD-1234567890abcdefghijklmnopqrstu"


@pytest.mark.parametrize("message,secret", [
    (f"gemini call with key {GOOGLE_KEY} failed", GOOGLE_KEY[4:]),
    ("GET https://generativelanguage.googleapis.com/v1/models?key=AIzaSyXX_secret_tail_123&alt=json",
     "secret_tail_123"),
    ("connecting to mysql+pymysql://vtt:hunter2-pass@db:3306/vtt", "hunter2-pass"),
    ("redis://:r3dis-pass@redis:6379/0 unreachable", "r3dis-pass"),
    ("fetch https://cdn.example.com/v.mp4?X-Amz-Signature=abcdef0123456789&x=1", "abcdef0123456789"),
    ("fetch https://cdn.example.com/v.mp4?token=tok-SECRET-1&sig=sig-SECRET-2", "SECRET"),
    ("header Authorization: Bearer sk-live-0123456789", "sk-live-0123456789"),
    ("client sent x-api-key: client-key-0123456789", "client-key-0123456789"),
    ("options {'api_key': 'plain-0123456789'}", "plain-0123456789"),
])
@pytest.mark.parametrize("fmt", ["json", "text"])
def test_secrets_are_masked(root: logging.Logger, message: str, secret: str, fmt: str) -> None:
    buf = capture(fmt)
    logging.getLogger("x").error(message)
    out = buf.getvalue()
    assert secret not in out and logs.MASK in out
    if fmt == "json":
        assert json_lines(buf)[0]["message"].count(logs.MASK) >= 1  # still valid JSON


def test_masking_keeps_what_is_not_secret() -> None:
    assert logs.redact("task 5f0c done: https://example.com/v.mp4?w=640") == \
        "task 5f0c done: https://example.com/v.mp4?w=640"
    assert logs.redact("mysql+pymysql://vtt:pw@db/vtt") == "mysql+pymysql://vtt:***@db/vtt"


def test_registered_secrets_and_tracebacks(root: logging.Logger, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("API_KEYS", "client-key-registered-0001,other-key-registered-0002")
    buf = io.StringIO()
    logs.setup_logging("INFO", "json", stream=buf)  # level/format given: settings are not read here ...
    logs.setup_logging(stream=buf)                  # ... but here they are, and their keys registered
    try:
        raise RuntimeError("refused client-key-registered-0001")
    except RuntimeError:
        logging.getLogger("x").exception("while handling other-key-registered-0002")
    out = buf.getvalue()
    assert "registered-000" not in out and out.count(logs.MASK) >= 2
