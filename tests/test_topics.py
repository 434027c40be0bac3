"""Collection topics: the pure pieces by table, then real MiniLM vectors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from app.search.embeddings import Embedder
from app.topics import (
    build_topics,
    choose_k,
    collection_topics,
    kmeans,
    llm_groups,
    terms,
    top_terms,
    topic_name,
    video_text,
)
from tests.conftest import make_settings


@pytest.mark.parametrize("n,k", [(0, 0), (1, 1), (2, 1), (3, 1), (8, 2), (18, 3), (50, 5), (200, 10), (5000, 10)])
def test_choose_k(n: int, k: int) -> None:
    assert choose_k(n) == k


@pytest.mark.parametrize("doc,expected", [
    ({}, ""),
    ({"tags": [{"name": "cat"}, {"name": "sofa"}]}, "cat, sofa."),
    ({"gemini": {"description": "A cat sleeps.", "categories": ["pets"]}}, "A cat sleeps. pets."),
    ({"speech": {"transcript": "hello there"}, "text": [{"text": "SALE"}, {"text": "SALE"}, {"text": "50%"}]},
     "hello there SALE 50%"),
    ({"tags": [{"name": "dog"}], "gemini": None, "speech": {"status": "skipped"}}, "dog."),
])
def test_video_text(doc: dict[str, Any], expected: str) -> None:
    assert video_text(doc) == expected


def test_terms_drop_stopwords_numbers_and_short_words() -> None:
    assert terms("The 2 cats and a DOG play in the garden, 42 times.") == ["cats", "dog", "play", "garden", "times"]


def test_kmeans_separates_obvious_groups_deterministically() -> None:
    a, b = np.array([1.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0])
    rows = [a, b, a * 0.9 + b * 0.1, b * 0.95 + a * 0.05, a]
    x = np.array([r / np.linalg.norm(r) for r in rows])
    labels = kmeans(x, 2)
    assert labels == kmeans(x, 2)  # no randomness
    assert labels[0] == labels[2] == labels[4] != labels[1] == labels[3]
    assert labels[0] == 0  # numbered by first appearance
    assert kmeans(x, 9) == kmeans(x, 5) and len(set(kmeans(x, 9))) <= 5 and kmeans(x[:0], 2) == []


def test_top_terms_prefer_words_that_set_a_cluster_apart() -> None:
    docs = [["video", "goal", "football"], ["video", "football", "stadium"], ["video", "recipe", "pasta"],
            ["video", "pasta", "kitchen"]]
    out = top_terms(docs, [0, 0, 1, 1], n=2)
    assert out == {0: ["football", "goal"], 1: ["pasta", "kitchen"]}
    assert topic_name(out[0]) == "football / goal" and topic_name([]) == "misc"


def test_build_topics_orders_by_size_and_keeps_textless_videos_apart() -> None:
    x = np.array([[1, 0], [0, 1], [1, 0], [1, 0], [0, 0]], dtype=np.float32)
    texts = ["goal football", "pasta recipe", "football match", "football stadium", ""]
    res = build_topics(["a", "b", "c", "d", "e"], texts, x, k=2)
    assert [t.task_ids for t in res.topics] == [["a", "c", "d"], ["b"]]
    assert res.topics[0].terms[0] == "football" and res.topics[0].size == 3 and res.topics[0].id == 0
    assert res.unclustered == ["e"] and res.method == "offline"
    groups = llm_groups(res, dict(zip("abcde", texts, strict=True)))
    assert groups[1] == {"cluster": 1, "terms": res.topics[1].terms, "samples": ["pasta recipe"]}


async def test_collection_topics_with_real_minilm(tmp_path: Path, model_dir: Path) -> None:
    docs: dict[str, dict[str, Any]] = {
        "t1": {"tags": [{"name": "football"}], "speech": {"transcript": "The striker scores a goal in the match."}},
        "t2": {"tags": [{"name": "soccer"}], "speech": {"transcript": "A penalty kick, the goalkeeper dives."}},
        "t3": {"tags": [{"name": "kitchen"}], "speech": {"transcript": "Stir the pasta sauce and add basil."}},
        "t4": {"tags": [{"name": "cooking"}], "speech": {"transcript": "Bake the bread dough in the oven."}},
        "t5": {"tags": [{"name": "football"}], "text": [{"text": "league final tonight"}]},
        "t6": {},
    }
    settings = make_settings(tmp_path, model_dir=model_dir)
    res = await collection_topics(docs, settings, Embedder(model_dir))
    groups = sorted(sorted(t.task_ids) for t in res.topics)
    assert groups == [["t1", "t2", "t5"], ["t3", "t4"]], res.as_dict()
    assert res.unclustered == ["t6"] and res.method == "offline"
