"""Logging set-up shared by the API, consumers and the command-line tools.

    setup_logging(level=None, fmt=None)   one stderr handler on the root logger (idempotent)
    bind(task_id=..., stage=...)          fields added to every line logged in this context
                                          (an asyncio task, and threads started from it)
    redact(text)                          what every line goes through before it is written

Two formats (`LOG_FORMAT`): `text`, human-readable, the default in the embedded mode;
`json`, one JSON object per line, the default in production (DATABASE_URL set):

    {"ts": "2025-01-01T03:00:00.123Z", "level": "INFO", "logger": "consumer",
     "message": "task 5f0c... completed in 1.20 s", "task_id": "5f0c...", "stage": "completed",
     "duration_s": 1.2}

Fields come from `bind()` and from `extra=` on the call (`extra` wins). No secrets: every
line, tracebacks included, passes `redact`, which masks Google API keys (`AIza...`),
bearer tokens, API-key headers, credentials in URLs (`//user:pass@`), secret-looking
query parameters (`?key=`, `token=`, `sig=`...) and any value registered with
`register_secret` (the client API keys, the metrics token).
"""

from __future__ import annotations

import contextvars
import datetime as dt
import json
import logging
import re
import sys
import threading
from collections.abc import Iterable
from typing import Any

# Attributes every LogRecord has; anything else on a record came from `extra=`.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}
_context: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar("vtt_log_context", default=None)
_HANDLER_MARK = "_vtt_handler"
MASK = "***"

_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # Google API keys: "AIza" + 35 characters; shorter tails are masked too (truncated copies).
    (re.compile(r"AIza[0-9A-Za-z_\-]{8,}"), "AIza" + MASK),
    # Credentials in URLs: scheme://user:password@host -> scheme://user:***@host
    (re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://[^/\s:@\"']*):[^@/\s\"']+@"), r"\1:" + MASK + "@"),
    # Secret-looking query parameters.
    (re.compile(r"(?i)([?&;](?:key|api_key|apikey|api-key|token|access_token|refresh_token|auth|password|passwd"
                r"|secret|client_secret|sig|signature|x-goog-api-key|x-amz-signature|x-amz-credential)=)[^&\s\"'#]+"),
     r"\1" + MASK),
    # Authorization headers and API-key headers echoed into a message.
    (re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9._~+/\-]+=*"), r"\1 " + MASK),
    (re.compile(r"(?i)\b(x-api-key|x-goog-api-key|api[_-]?key|authorization)([\"']?\s*[:=]\s*[\"']?)"
                r"(?!\*\*\*)[^\s\"',;&}]+"), r"\1\2" + MASK),
)
_secrets: set[str] = set()
_secrets_lock = threading.Lock()
_secrets_re: re.Pattern[str] | None = None


def register_secret(*values: str) -> None:
    """Values masked wherever they appear in a log line (client API keys, tokens)."""
    global _secrets_re
    with _secrets_lock:
        _secrets.update(v for v in values if v and len(v) >= 4)
        ordered = sorted(_secrets, key=len, reverse=True)
        _secrets_re = re.compile("|".join(re.escape(v) for v in ordered)) if ordered else None


def redact(text: str) -> str:
    """Mask anything in `text` that looks like a secret."""
    pattern = _secrets_re
    if pattern is not None:
        text = pattern.sub(MASK, text)
    for regex, repl in _PATTERNS:
        text = regex.sub(repl, text)
    return text


def bind(**fields: Any) -> None:
    """Add fields to every line logged from now on in this context (None removes a field).

    Each asyncio task has its own context (copied when it is created), so a worker's
    `bind(task_id=...)` at the top of a task's coroutine stays with that task.
    """
    current = dict(_context.get() or {})
    for k, v in fields.items():
        if v is None:
            current.pop(k, None)
        else:
            current[k] = v
    _context.set(current)


def bound() -> dict[str, Any]:
    return dict(_context.get() or {})


def record_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The structured fields of a record: bound context, then `extra=` (which wins)."""
    fields = dict(_context.get() or {})
    for k, v in vars(record).items():
        if k not in _STANDARD and not k.startswith("_"):
            fields[k] = v
    return fields


def _jsonable(v: Any) -> Any:
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    return str(v)


def _redacted(v: Any) -> Any:
    """Redact every string in a JSON-ready value (before serialising: escapes stay intact)."""
    if isinstance(v, str):
        return redact(v)
    if isinstance(v, list):
        return [_redacted(x) for x in v]
    if isinstance(v, dict):
        return {k: _redacted(x) for k, x in v.items()}
    return v


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, message, the record's fields, exc."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for k, v in record_fields(record).items():
            if k not in out:
                out[k] = _jsonable(v)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            out["exc"] = record.exc_text
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        return json.dumps(_redacted(out), ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """`time LEVEL logger: message key=value ...`, for people reading a terminal."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = record_fields(record)
        if fields:
            extra = " ".join(f"{k}={v}" for k, v in fields.items())
            head, sep, tail = line.partition("\n")  # fields go on the message line, before a traceback
            line = f"{head} [{extra}]{sep}{tail}"
        return redact(line)


class StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever sys.stderr is at emit time (test runners and daemons swap it)."""

    def __init__(self) -> None:
        super().__init__()

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


def choose_format(fmt: str, *, embedded: bool) -> str:
    """`auto` is text in the embedded mode and json in production."""
    if fmt == "auto":
        return "text" if embedded else "json"
    if fmt not in ("json", "text"):
        raise ValueError(f"unknown log format {fmt!r}")
    return fmt


def setup_logging(level: str | None = None, fmt: str | None = None, *, secrets: Iterable[str] = (),
                  stream: Any = None) -> None:
    """Install the one handler on the root logger (replacing ours from an earlier call).

    Level and format default to the settings (LOG_LEVEL, LOG_FORMAT); when the settings
    cannot be read yet, INFO and text, and the caller's own `Settings()` reports why.
    """
    embedded = True
    if level is None or fmt is None:
        try:
            from app.config import Settings

            s = Settings()
        except Exception:
            s = None
        if s is not None:
            level = level or s.log_level
            fmt = fmt or s.log_format
            embedded = s.embedded
            register_secret(*(k.get_secret_value() for k in s.api_keys))
            if s.metrics_token is not None:
                register_secret(s.metrics_token.get_secret_value())
    register_secret(*secrets)
    handler: logging.Handler = logging.StreamHandler(stream) if stream is not None else StderrHandler()
    setattr(handler, _HANDLER_MARK, True)
    handler.setFormatter(JsonFormatter() if choose_format(fmt or "auto", embedded=embedded) == "json"
                         else TextFormatter())
    root = logging.getLogger()
    for h in list(root.handlers):
        if getattr(h, _HANDLER_MARK, False):
            root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel((level or "INFO").upper())
    # Client libraries' request logs would echo full URLs with their query strings.
    for noisy in ("httpx", "httpcore", "urllib3", "elastic_transport", "alembic.runtime.plugins"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

