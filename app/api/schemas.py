"""Request and response schemas of the HTTP API (apart from the ORM models)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator

Dimensions = Literal["all", "vision", "audio", "text"]


class Envelope(BaseModel):
    """Every reply: `code` mirrors the HTTP status, `message` says what happened."""

    code: int = 200
    message: str = "success"
    task_id: str | None = None
    data: dict[str, Any] = Field(default_factory=dict)


class TaskFields(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    platform: str = Field(min_length=1, max_length=64, description="caller's platform, e.g. rpa, miaobi")
    uid: int | None = Field(default=None, ge=0, le=2**63 - 1)
    dimensions: Dimensions = Field(
        default="all", validation_alias=AliasChoices("dimensions", "dismensions"),
        description="which analysers run; the seed's spelling `dismensions` is accepted too",
    )
    env: str | None = Field(default=None, max_length=64)


class CreateTask(TaskFields):
    url: str = Field(min_length=1, max_length=4096, description="http(s) URL of the video")


class SyncTag(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    url: str = Field(min_length=1, max_length=4096)

    @field_validator("url")
    @classmethod
    def _no_blank(cls, v: str) -> str:
        return v
