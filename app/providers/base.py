"""The provider contract and the registry."""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.config import Settings
from app.media.frames import Frames
from app.media.probe import Probe
from app.tags import Sighting


@dataclass
class MediaInput:
    path: Path
    probe: Probe
    frames: Frames
    dimensions: str  # all | vision | audio | text
    windows: list[tuple[float, float]]  # the span each frame stands for

    def wants(self, dimension: str) -> bool:
        return self.dimensions in ("all", dimension)


@dataclass
class ProviderOutput:
    sightings: list[Sighting] = field(default_factory=list)
    insights: dict[str, Any] = field(default_factory=dict)  # e.g. "text": [...], "frames": [...]
    usage: dict[str, Any] = field(default_factory=dict)
    stage_seconds: dict[str, float] = field(default_factory=dict)


class Provider(ABC):
    name: str = ""

    @abstractmethod
    async def analyse(self, media: MediaInput, progress: Callable[[str, float], Any]) -> ProviderOutput:
        """Analyse one video; call `progress(stage, fraction)` (thread-safe, non-blocking) as work advances."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        return None


# name -> "module:Class", imported on first use so a missing extra fails only when chosen.
_REGISTRY: dict[str, str] = {"local": "app.providers.local:LocalProvider", "gemini": "app.providers.gemini:GeminiProvider",
                             "openai": "app.providers.openai_compat:OpenAIProvider"}


def register(name: str, target: str) -> None:
    _REGISTRY[name] = target


def get_provider(name: str, settings: Settings) -> Provider:
    try:
        target = _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown provider {name!r}; known: {', '.join(sorted(_REGISTRY))}") from None
    module_name, _, cls_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise RuntimeError(f"provider {name!r} needs a package that is missing: install {exc.name}") from exc
    cls = getattr(module, cls_name)
    provider: Provider = cls(settings)
    return provider
