"""The Elasticsearch backend's pure request building and reply parsing, settings and retries.

These check the bodies sent to real Elasticsearch 9 (knn, dense_vector) that osmem-server cannot run.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from app.errors import InvalidRequest, Unavailable
from app.search.documents import SEMANTIC_WEIGHT, encode_cursor, make_query
from app.search.elastic import ElasticIndex, mappings, parse_response, search_body, to_source
from tests.conftest import free_port
from tests.search.conftest import elastic_settings, search_doc


def test_filters_only_sort_newest_first() -> None:
    body = search_body(make_query(tags="cat,dog", platform="douyin", uid=3, env="prod", from_="2025-01-01",
                                  to="2025-01-31", limit=10), vectors=True)
    assert body["query"] == {"bool": {"filter": [
        {"term": {"platform": "douyin"}}, {"term": {"uid": 3}}, {"term": {"env": "prod"}},
        {"range": {"created_at_ms": {"gte": 1735689600000, "lt": 1738368000000}}},
        {"term": {"tag_names": "cat"}}, {"term": {"tag_names": "dog"}}]}}
    assert body["sort"] == [{"created_at_ms": {"order": "desc"}}, {"task_id": {"order": "asc"}}]
    assert body["size"] == 11 and body["track_total_hits"] is True
    assert "from" not in body and "search_after" not in body
    assert body["aggs"]["tags"] == {"terms": {"field": "tag_names", "size": 10}}


def test_text_query_every_term_across_fields_with_moments() -> None:
    body = search_body(make_query(q="Running, 北京!"), vectors=True)
    [must] = body["query"]["bool"]["must"]
    assert must["multi_match"]["query"] == "running 北京"
    assert must["multi_match"]["type"] == "cross_fields" and must["multi_match"]["operator"] == "and"
    assert must["multi_match"]["fields"][0] == "tag_names.text^3"
    [nested] = body["query"]["bool"]["should"]
    assert nested["nested"]["path"] == "moments" and nested["nested"]["boost"] == 0.0
    assert nested["nested"]["inner_hits"]["highlight"]["encoder"] == "html"
    assert body["sort"][0] == {"_score": {"order": "desc"}} and body["from"] == 0


def test_semantic_adds_a_boosted_knn_query() -> None:
    q = dataclasses.replace(make_query(q="dog", semantic=True), vector=(0.1, 0.2))
    body = search_body(q, vectors=True)
    [must] = body["query"]["bool"]["must"]
    keywords, knn = must["bool"]["should"]
    assert must["bool"]["minimum_should_match"] == 1 and "multi_match" in keywords
    assert knn == {"knn": {"field": "embedding", "query_vector": [0.1, 0.2], "num_candidates": 100,
                           "similarity": 0.3, "boost": SEMANTIC_WEIGHT}}
    filtered = search_body(dataclasses.replace(q, platform="douyin"), vectors=True)
    assert filtered["query"]["bool"]["must"][0]["bool"]["should"][1]["knn"]["filter"] == [{"term": {"platform": "douyin"}}]
    with pytest.raises(InvalidRequest):
        search_body(q, vectors=False)
    with pytest.raises(InvalidRequest):
        search_body(make_query(q="dog", semantic=True), vectors=True)  # no query vector


def test_cursors_become_from_or_search_after() -> None:
    assert search_body(make_query(q="cat", cursor=encode_cursor((40,))), vectors=True)["from"] == 40
    body = search_body(make_query(cursor=encode_cursor((5, "b" * 32))), vectors=True)
    assert body["search_after"] == [5, "b" * 32]
    with pytest.raises(InvalidRequest):
        search_body(make_query(cursor=encode_cursor((40,))), vectors=True)


def test_mapping_and_source() -> None:
    assert mappings(vectors=True)["properties"]["embedding"] == {"type": "dense_vector", "dims": 384, "index": True,
                                                                 "similarity": "cosine"}
    assert "embedding" not in mappings(vectors=False)["properties"]
    assert mappings(vectors=True)["properties"]["moments"]["type"] == "nested"
    doc = search_doc("a" * 32, tags=[("cat", 0.9, [[1.0, 2.0]], ["visual"])])
    src = to_source({**doc, "embedding": [0.5] * 384}, vectors=False)
    assert "embedding" not in src and "embedding_text" not in src
    assert set(src) <= set(mappings(vectors=False)["properties"])
    assert to_source({**doc, "embedding": [0.5] * 384}, vectors=True)["embedding"] == [0.5] * 384
    assert "embedding" not in to_source({**doc, "embedding": None}, vectors=True)


def test_parse_response() -> None:
    reply: dict[str, Any] = {
        "hits": {"total": {"value": 5}, "hits": [
            {"_source": {"task_id": "a", "platform": "douyin", "uid": 1, "env": None, "created_at_ms": 9,
                         "duration_s": 3.0, "tags": [{"name": "cat"}]}, "sort": [2.5, 9, "a"],
             "inner_hits": {"moments": {"hits": {"hits": [
                 {"_source": {"kind": "ocr", "text": "b", "start_s": 5, "end_s": 6}, "highlight": {"moments.text": ["<em>b</em>"]}},
                 {"_source": {"kind": "tag", "text": "a", "start_s": 1, "end_s": 2}}]}}}},
            {"_source": {"task_id": "b", "platform": "x", "created_at_ms": 8, "tags": []}, "sort": [1.0, 8, "b"]},
        ]},
        "aggregations": {"tags": {"buckets": [{"key": "cat", "doc_count": 4}]}, "platforms": {"buckets": []}},
    }
    page = parse_response(reply, make_query(q="a b", limit=1))
    assert page.total == 5 and [h.task_id for h in page.hits] == ["a"]
    assert [(m.kind, m.start_s, m.highlight) for m in page.hits[0].moments] == [("tag", 1.0, "a"), ("ocr", 5.0, "<em>b</em>")]
    assert page.hits[0].score == 2.5 and page.next_after == (1,)
    assert [(f.value, f.count) for f in page.tags] == [("cat", 4)]


def test_compat_is_a_setting_not_the_default() -> None:
    prod = ElasticIndex.from_settings(elastic_settings("http://127.0.0.1:9200", "v", elasticsearch_compat="none"))
    test = ElasticIndex.from_settings(elastic_settings("http://127.0.0.1:9200", "v"))
    assert prod.vectors and prod.supports_vectors and not prod.client._is_serverless
    assert not test.vectors and test.client._is_serverless


async def test_unreachable_server_raises_unavailable_after_retries() -> None:
    index = ElasticIndex(f"http://127.0.0.1:{free_port()}", alias="gone", retries=2, backoff_base_s=0.01)
    try:
        with pytest.raises(Unavailable, match="unreachable"):
            await index.open()
        with pytest.raises(Unavailable):
            await index.upsert([search_doc("a" * 32)])
    finally:
        await index.close()


async def test_open_is_idempotent_and_versioned(es_url: str) -> None:
    index = ElasticIndex.from_settings(elastic_settings(es_url, "idem"))
    try:
        await index.open()
        await index.open()
        aliases = (await index.client.indices.get_alias(name="idem")).body
        assert list(aliases) == ["idem-v1-0"]
        mapping = (await index.client.indices.get_mapping(index="idem")).body["idem-v1-0"]["mappings"]
        assert mapping["_meta"]["mapping_version"] == 1
        assert mapping["properties"]["moments"]["type"] == "nested"  # from the versioned template
        template = (await index.client.indices.get_index_template(name="idem-v1")).body
        assert template["index_templates"][0]["index_template"]["version"] == 1
    finally:
        await index.client.indices.delete(index="idem-*", ignore_unavailable=True)
        await index.close()
