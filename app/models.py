"""ORM models: MySQL (or embedded SQLite) is the record of truth.

    videos   one row per distinct content (sha256); probe facts
    tasks    one row per accepted job; status, stage, progress, error, timings
    results  one versioned result document per completed task (upsert by task id)
    tags     the result's tags as rows, unique per (task, name), for filtering
    accounts the Gemini API keys of the account pool (Redis holds the live counters)
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


class Base(DeclarativeBase):
    pass


class Video(Base):
    __tablename__ = "videos"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    container: Mapped[str] = mapped_column(String(16))
    duration_s: Mapped[float | None] = mapped_column(Float)
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    fps: Mapped[float | None] = mapped_column(Float)
    video_codec: Mapped[str | None] = mapped_column(String(32))
    audio_codec: Mapped[str | None] = mapped_column(String(32))
    has_audio: Mapped[bool] = mapped_column(Boolean, default=False)
    rotation: Mapped[int] = mapped_column(Integer, default=0)
    cache_path: Mapped[str | None] = mapped_column(String(512))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class Task(Base):
    __tablename__ = "tasks"
    __table_args__ = (
        Index("ix_tasks_status_created", "status", "created_at"),
        Index("ix_tasks_platform_uid", "platform", "uid"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    source: Mapped[str] = mapped_column(String(8))  # url | upload
    url: Mapped[str] = mapped_column(Text)
    platform: Mapped[str] = mapped_column(String(64))
    uid: Mapped[int | None] = mapped_column(BigInteger)
    env: Mapped[str | None] = mapped_column(String(64))
    dimensions: Mapped[str] = mapped_column(String(8), default="all")
    status: Mapped[str] = mapped_column(String(16), default="pending")
    stage: Mapped[str | None] = mapped_column(String(32))
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    retry_count: Mapped[int] = mapped_column(Integer, default=0)
    error_code: Mapped[str | None] = mapped_column(String(32))
    error_message: Mapped[str | None] = mapped_column(Text)
    timings: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    video_id: Mapped[int | None] = mapped_column(ForeignKey("videos.id"))
    worker_id: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)
    started_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime)


class Result(Base):
    __tablename__ = "results"

    task_id: Mapped[str] = mapped_column(ForeignKey("tasks.id", ondelete="CASCADE"), primary_key=True)
    video_id: Mapped[int | None] = mapped_column(ForeignKey("videos.id"))
    provider: Mapped[str] = mapped_column(String(32))
    schema_version: Mapped[int] = mapped_column(Integer)
    document: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class Tag(Base):
    __tablename__ = "tags"
    __table_args__ = (UniqueConstraint("task_id", "name", name="uq_tags_task_name"), Index("ix_tags_name", "name"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    task_id: Mapped[str] = mapped_column(ForeignKey("tasks.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(191))
    confidence: Mapped[float] = mapped_column(Float)
    sources: Mapped[list[str]] = mapped_column(JSON)


class Account(Base):
    """A Gemini API key and its quota. `id` is the key's non-secret fingerprint.

    The key itself is kept (it is needed to call the API); the password is kept only as
    a salted scrypt hash, to tell a changed entry on re-import. status: active |
    disabled (by an operator) | inactive (the key was refused: 401/403/invalid).
    """

    __tablename__ = "accounts"

    id: Mapped[str] = mapped_column(String(12), primary_key=True)
    api_key: Mapped[str] = mapped_column(String(256))
    project: Mapped[str | None] = mapped_column(String(128))
    model: Mapped[str | None] = mapped_column(String(64))
    minute_limit: Mapped[int] = mapped_column(Integer)
    daily_limit: Mapped[int] = mapped_column(Integer)
    username: Mapped[str] = mapped_column(String(191))
    email: Mapped[str] = mapped_column(String(191))
    phone: Mapped[str] = mapped_column(String(64))
    password_hash: Mapped[str] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(16), default="active")
    status_reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)


class IndexOutbox(Base):
    """One pending search-index change per task (app/search/outbox.py).

    Written in the transaction that completes (or deletes) the task, so the search index
    can never miss a committed result; the drainer deletes the row once the index took it.
    `token` changes on every enqueue: a drainer only deletes the version it indexed.
    No foreign key to tasks: a row must outlive its task to remove it from the index.
    """

    __tablename__ = "index_outbox"
    __table_args__ = (Index("ix_index_outbox_due", "due_at"),)

    task_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    op: Mapped[str] = mapped_column(String(8))  # index | delete
    token: Mapped[str] = mapped_column(String(32))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    due_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
