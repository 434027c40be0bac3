"""The one place the environment is read.

`Settings()` reads environment variables and `.env`; everything deeper receives plain
values. Unsafe or inconsistent values are refused here, at start-up, with the field named.
"""

from __future__ import annotations

import ipaddress
import re
from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _check_api_key(v: SecretStr) -> SecretStr:
    """A client key: at least 16 printable characters, or `sha256:` + 64 hex digits (its digest)."""
    key = v.get_secret_value()
    if key.startswith("sha256:"):
        if re.fullmatch(r"[0-9a-fA-F]{64}", key[7:]) is None:
            raise ValueError("an API key digest is sha256: followed by 64 hex digits")
    elif len(key) < 16 or re.fullmatch(r"[\x21-\x7e]+", key) is None:
        raise ValueError("an API key needs at least 16 printable characters, no spaces or commas")
    return v


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    # Where things live. Unset DATABASE_URL / REDIS_URL means the embedded mode.
    database_url: str | None = Field(default=None, description="SQLAlchemy URL; unset = SQLite in DATA_DIR")
    redis_url: str | None = Field(default=None, description="redis:// URL; unset = private redis-server in DATA_DIR")
    data_dir: Path = Path("./data")
    model_dir: Path | None = Field(default=None, description="exported models; default DATA_DIR/models")

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)

    # Media limits.
    max_video_mb: int = Field(default=50, ge=1, le=4096)
    max_video_seconds: float = Field(default=3600.0, gt=0)
    download_allowed_hosts: Annotated[list[str], NoDecode] = Field(default_factory=list)
    download_concurrency: int = Field(default=8, ge=1, le=256)
    download_per_host: int = Field(default=4, ge=1, le=64)
    download_connect_timeout_s: float = Field(default=10.0, gt=0)
    download_read_timeout_s: float = Field(default=30.0, gt=0)
    download_retries: int = Field(default=3, ge=0, le=10)
    probe_timeout_s: float = Field(default=20.0, gt=0)
    decode_timeout_s: float = Field(default=300.0, gt=0)
    max_frames: int = Field(default=48, ge=1, le=1000)
    frame_interval_s: float = Field(default=1.0, gt=0)
    frame_max_side: int = Field(default=640, ge=64, le=4096)

    # Tagging.
    tagger: Literal["local", "gemini", "openai"] = "local"
    label_min_confidence: float = Field(default=0.2, ge=0, le=1)
    ocr_min_confidence: float = Field(default=0.6, ge=0, le=1)

    # Video analysis (app/analysis): scenes, speech, faces, moderation, storylines.
    scene_width: int = Field(default=256, ge=32, le=1024, description="px width of the every-frame scene stream")
    scene_threshold: float = Field(default=3.0, gt=1, le=50, description="adaptive ratio: score / neighbours' mean")
    scene_min_content: float = Field(default=20.0, ge=0, le=500, description="Lab content score a cut needs")
    scene_min_len_frames: int = Field(default=15, ge=1, le=10000, description="frames between two cuts, at least")
    speech_engine: Literal["whisper", "pocketsphinx", "none"] = "whisper"
    face_min_confidence: float = Field(default=0.75, ge=0, le=1)
    moderation_min_confidence: float = Field(default=0.8, ge=0, le=1)
    storyline_similarity: float = Field(default=0.5, ge=-1, le=1, description="cosine a scene needs to join a storyline")

    # Gemini (TAGGER=gemini): accounts come from the Redis pool (import_accounts.py).
    gemini_model: str = Field(default="gemini-2.0-flash", min_length=1, max_length=64,
                              pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", description="an account's own model wins")
    gemini_base_url: str | None = Field(default=None, pattern=r"^https?://[^\s/?#]+/?$",
                                        description="API root; unset = Google's; a loopback server in tests")
    gemini_api_version: str | None = Field(default=None, pattern=r"^v[0-9a-z]+$", description="unset = SDK default")
    gemini_inline_max_mb: float = Field(default=14.0, ge=0, le=20,
                                        description="larger videos go through the Files API (20 MB request cap)")
    gemini_pool_wait_s: float = Field(default=60.0, ge=0, le=3600,
                                      description="wait this long for a free account, then re-queue the task")
    gemini_timeout_s: float = Field(default=120.0, gt=0, le=3600, description="one HTTP request")
    gemini_file_active_timeout_s: float = Field(default=300.0, gt=0, le=3600, description="Files API processing")
    gemini_max_attempts: int = Field(default=4, ge=1, le=20, description="calls per task, failovers included")
    gemini_window_margin_s: float = Field(default=1.0, ge=0, le=30,
                                          description="added to the 60 s window: absorbs send-time jitter")

    # OpenAI-compatible chat-completions servers (TAGGER=openai): keys come from the same account pool.
    openai_base_url: str | None = Field(default=None, pattern=r"^https?://[^\s?#]+$",
                                        description="API root incl. /v1; unset = api.openai.com")
    openai_model: str = Field(default="gpt-4o-mini", min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/-]*$",
                              description="an account's own model wins")
    openai_max_images: int = Field(default=8, ge=1, le=64, description="sampled frames sent per video")
    openai_image_detail: Literal["low", "high", "auto"] = "low"
    openai_response_format: Literal["json_schema", "json_object"] = Field(
        default="json_schema", description="json_object for servers without structured output")
    openai_pool_wait_s: float = Field(default=60.0, ge=0, le=3600, description="wait for a free account")
    openai_timeout_s: float = Field(default=120.0, gt=0, le=3600, description="one HTTP request")
    openai_max_attempts: int = Field(default=4, ge=1, le=20, description="calls per request, failovers included")
    topics_llm: bool = Field(default=True, description="with TAGGER=openai, let the model name collection topics")

    # Consumer and queue.
    consumer_concurrency: int = Field(default=2, ge=1, le=64)
    max_retries: int = Field(default=3, ge=0, le=20)
    task_timeout_s: float = Field(default=900.0, gt=0, description="a whole task, download included")
    shutdown_grace_s: float = Field(default=30.0, ge=0, description="drain time on SIGTERM")
    download_timeout_s: float = Field(default=300.0, gt=0, description="the download stage, retries included")
    analysis_timeout_s: float = Field(default=600.0, gt=0, description="probe, decode and analysers together")
    reconcile_interval_s: float = Field(default=30.0, gt=0, description="how often SQL is checked against Redis")
    reconcile_grace_s: float = Field(default=60.0, ge=0, description="only tasks untouched this long are re-enqueued")
    task_lease_s: int = Field(default=300, ge=10, description="seed: task_queue_lock 5-minute TTL")
    task_info_ttl_s: int = Field(default=7 * 24 * 3600, ge=60)
    dedup_ttl_s: int = Field(default=7 * 24 * 3600, ge=0, description="reuse a result for the same video bytes")
    sync_wait_s: float = Field(default=30.0, ge=0, le=600, description="/vision_to_tag/google wait")

    # Search (app/search). Unset ELASTICSEARCH_URL = the embedded SQLite FTS5 index in DATA_DIR/search.
    elasticsearch_url: str | None = Field(default=None, pattern=r"^https?://[^\s?#]+$",
                                          description="http(s)://[user:pass@]host:port of Elasticsearch 9")
    elasticsearch_index: str = Field(default="vtt-videos", min_length=1, max_length=64,
                                     pattern=r"^[a-z0-9][a-z0-9_-]*$",
                                     description="the alias searched and written; indices are <alias>-v<N>-<stamp>")
    elasticsearch_timeout_s: float = Field(default=10.0, gt=0, le=300, description="one HTTP request")
    elasticsearch_retries: int = Field(default=3, ge=0, le=10, description="extra attempts, with backoff")
    # A TEST setting: "osmem" talks to the osmem-server stand-in (plain JSON, no dense_vector/kNN).
    elasticsearch_compat: Literal["none", "osmem"] = "none"
    search_semantic: bool = Field(default=True, description="embed documents with MiniLM for semantic=true")
    search_outbox_batch: int = Field(default=200, ge=1, le=5000, description="documents per indexing round")

    # Operations (issue 7): logs, client auth, metrics, start-up waits, cache cleanup.
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    log_format: Literal["auto", "json", "text"] = Field(default="auto", description="auto = text embedded, json in production")
    api_keys: Annotated[list[Annotated[SecretStr, AfterValidator(_check_api_key)]], NoDecode] = Field(
        default_factory=list, description="client keys for /api/v1 (plain or sha256:<hex>); empty = open")
    api_rate_limit: int = Field(default=600, ge=0, le=1_000_000, description="requests per minute per client key; 0 = off")
    metrics_token: SecretStr | None = Field(default=None, description="bearer token for /metrics; unset = open")
    metrics_port: int = Field(default=0, ge=0, le=65535, description="a consumer's own /metrics port; 0 = off")
    metrics_host: str = Field(default="127.0.0.1", min_length=1, description="bind address of METRICS_PORT")
    startup_wait_attempts: int = Field(default=30, ge=1, le=1000, description="tries for DB/Redis at start-up")
    startup_wait_delay_s: float = Field(default=2.0, gt=0, le=60, description="pause between those tries")
    cleanup_max_age_days: float = Field(default=7.0, gt=0, le=3650, description="clean_videos.py without dates")
    cleanup_grace_s: int = Field(default=3600, ge=0, le=7 * 24 * 3600,
                                 description="files changed this recently are never removed")
    cleanup_at: str = Field(default="03:00", pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$",
                            description="daily run time (HH:MM, local) of clean_videos.py --every-day-at")

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, v: object) -> object:
        return v.upper() if isinstance(v, str) else v

    @field_validator("api_keys", mode="before")
    @classmethod
    def _split_keys(cls, v: object) -> object:
        # Wrapped before item validation, so an error shows SecretStr('****'), never the key.
        if isinstance(v, str):
            v = [k.strip() for k in v.split(",") if k.strip()]
        if isinstance(v, (list, tuple)):
            return [k if isinstance(k, SecretStr) else SecretStr(str(k)) for k in v]
        return v

    @field_validator("download_allowed_hosts", mode="before")
    @classmethod
    def _split_hosts(cls, v: object) -> object:
        if isinstance(v, str):
            return [h.strip().lower() for h in v.split(",") if h.strip()]
        return v

    @field_validator("download_allowed_hosts")
    @classmethod
    def _check_hosts(cls, v: list[str]) -> list[str]:
        for item in v:
            if "/" in item:
                ipaddress.ip_network(item, strict=False)  # raises ValueError with the bad value
            elif not item or any(c in item for c in " @:?#"):
                raise ValueError(f"not a host name or CIDR: {item!r}")
        return v

    @model_validator(mode="after")
    def _check_mode(self) -> Settings:
        if (self.database_url is None) != (self.redis_url is None):
            raise ValueError(
                "set both DATABASE_URL and REDIS_URL (production) or neither (embedded mode)"
            )
        return self

    @property
    def embedded(self) -> bool:
        return self.database_url is None

    @property
    def max_video_bytes(self) -> int:
        return self.max_video_mb * 1024 * 1024

    @cached_property
    def allowed_networks(self) -> tuple[Network, ...]:
        return tuple(ipaddress.ip_network(h, strict=False) for h in self.download_allowed_hosts if "/" in h)

    @cached_property
    def allowed_hostnames(self) -> frozenset[str]:
        return frozenset(h for h in self.download_allowed_hosts if "/" not in h)

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'vision_to_tag.db').resolve()}"

    @property
    def redis_socket(self) -> Path:
        return (self.data_dir / "redis.sock").resolve()

    @property
    def cache_dir(self) -> Path:
        return self.data_dir / "cache"

    @property
    def models_dir(self) -> Path:
        return self.model_dir or self.data_dir / "models"
