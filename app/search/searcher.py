"""The search service one process holds: the configured index, opened lazily, and the embedder.

The API calls `Searcher.search`; it opens the index on first use (so the API starts
while the index is down and recovers when it returns) and embeds the query text for
semantic=true. Never imports FastAPI.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import TYPE_CHECKING

from app.errors import InvalidRequest
from app.search.base import SearchIndex, SearchPage, create_index
from app.search.documents import SearchQuery

if TYPE_CHECKING:
    from app.config import Settings
    from app.search.embeddings import Embedder


class Searcher:
    def __init__(self, index: SearchIndex, embedder: Embedder | None) -> None:
        self.index = index
        self.embedder = embedder
        self._opened = False
        self._lock = asyncio.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> Searcher:
        embedder = None
        if settings.search_semantic:
            from app.search.embeddings import Embedder

            embedder = Embedder(settings.models_dir)
        return cls(create_index(settings), embedder)

    async def search(self, query: SearchQuery) -> SearchPage:
        """Run a query; semantic=true needs the embedder and an index with vectors (else InvalidRequest)."""
        if not self._opened:
            async with self._lock:
                if not self._opened:
                    await self.index.open()
                    self._opened = True
        if query.semantic and query.vector is None:
            if self.embedder is None or not self.index.supports_vectors:
                raise InvalidRequest("semantic search is not enabled on this server")
            try:
                vector = await asyncio.to_thread(self.embedder.embed_one, query.text)
            except RuntimeError as exc:  # the model package is missing
                raise InvalidRequest(f"semantic search is unavailable: {exc}") from None
            query = dataclasses.replace(query, vector=vector)
        return await self.index.search(query)

    async def aclose(self) -> None:
        await self.index.close()
