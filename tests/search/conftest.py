"""Search fixtures: both index backends (one contract suite runs over each) and result documents.

The Elasticsearch backend runs against `osmem-server` (PyPI), an in-memory server with an
OpenSearch-compatible API, started once per session on a free loopback port. The client
talks to it through the TEST setting ELASTICSEARCH_COMPAT=osmem (plain JSON, no vectors).
"""

from __future__ import annotations

import datetime as dt
import os
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from app.config import Settings
from app.search.base import SearchIndex
from app.search.documents import TaskFacts, build_search_document
from app.search.elastic import ElasticIndex
from app.search.embedded import EmbeddedIndex

BASE_TIME = dt.datetime(2025, 3, 1, 12, 0, 0)


@pytest.fixture(scope="session")
def es_url() -> Iterator[str]:
    from osmem_server import OsmemServer

    server = OsmemServer.start(japanese=False, addr="127.0.0.1:0")
    try:
        yield server.url
    finally:
        server.close()


def elastic_settings(url: str, alias: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {"elasticsearch_url": url, "elasticsearch_index": alias,
                              "elasticsearch_compat": "osmem", "elasticsearch_retries": 1}
    values.update(overrides)
    return Settings(_env_file=None, **values)


@pytest.fixture(params=["embedded", "elastic"])
async def index(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SearchIndex]:
    """A fresh, opened index of each backend."""
    idx: SearchIndex
    if request.param == "embedded":
        idx = EmbeddedIndex(tmp_path / "search")
    else:
        alias = f"t-{uuid.uuid4().hex[:12]}"
        idx = ElasticIndex.from_settings(elastic_settings(request.getfixturevalue("es_url"), alias))
    await idx.open()
    yield idx
    if isinstance(idx, ElasticIndex):
        await idx.client.indices.delete(index=f"{idx.alias}-*", ignore_unavailable=True)
        await idx.client.indices.delete_index_template(name=idx.template_name)
    await idx.close()


def shared_models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where MiniLM is exported once per run (TEST_MODEL_DIR keeps it across runs)."""
    path = Path(os.environ.get("TEST_MODEL_DIR") or tmp_path_factory.getbasetemp() / "search-models")
    path.mkdir(parents=True, exist_ok=True)  # one folder per run, whichever test asks first
    return path


@pytest.fixture(scope="session")
def search_models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return shared_models_dir(tmp_path_factory)


def result_document(task_id: str, *, tags: Sequence[tuple[str, float, list[list[float]], list[str]]] = (),
                    ocr: Sequence[tuple[str, float, float]] = (),
                    speech: Sequence[tuple[str, float, float]] | None = None,
                    description: str | None = None, duration_s: float = 30.0) -> dict[str, Any]:
    """A result document in the pipeline's schema v1 shape (app/pipeline.py)."""
    doc: dict[str, Any] = {
        "schema_version": 1, "task_id": task_id, "provider": "local", "dimensions": "all",
        "video": {"sha256": uuid.uuid4().hex * 2, "format_name": "mp4", "size_bytes": 1000, "duration_s": duration_s,
                  "start_s": 0.0, "width": 640, "height": 360, "display_width": 640, "display_height": 360,
                  "fps": 25.0, "nb_frames": int(duration_s * 25), "video_codec": "h264", "audio_codec": "aac",
                  "has_audio": True, "rotation": 0},
        "tags": [{"name": n, "confidence": c, "sources": s, "ranges": r, "count": len(r)} for n, c, r, s in tags],
        "text": [{"text": t, "confidence": 0.9, "start_s": a, "end_s": b, "box": [[0, 0], [10, 0], [10, 5], [0, 5]]}
                 for t, a, b in ocr],
        "frames": [{"time_s": 0.5, "labels": [{"name": n, "confidence": c} for n, c, _r, _s in tags]}],
        "audio": {"has_audio": True, "codec": "aac"},
        "partial": False, "warnings": [], "usage": {}, "reused_from": None,
    }
    if speech is not None:
        doc["transcript"] = [{"text": t, "start_s": a, "end_s": b} for t, a, b in speech]
    if description is not None:
        doc["description"] = description
    return doc


def search_doc(task_id: str, *, platform: str = "douyin", uid: int | None = 7, env: str | None = "prod",
               created: dt.datetime | None = None, **result: Any) -> dict[str, Any]:
    facts = TaskFacts(task_id=task_id, platform=platform, uid=uid, env=env, source="url", dimensions="all",
                      created_at=created or BASE_TIME, finished_at=(created or BASE_TIME) + dt.timedelta(minutes=1))
    return build_search_document(facts, result_document(task_id, **result))
