"""Tagging providers, looked up by name (`TAGGER`).

A provider turns decoded frames (and, for remote models, the file) into tag sightings
and insights. Heavy imports live inside each provider's module.
"""

from __future__ import annotations

from app.providers.base import MediaInput, Provider, ProviderOutput, get_provider, register

__all__ = ["MediaInput", "Provider", "ProviderOutput", "get_provider", "register"]
