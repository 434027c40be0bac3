"""Pure decisions: search-document building, query parsing, cursors, highlighting, backoff."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from app.errors import InvalidRequest
from app.search.base import backoff_s
from app.search.documents import (
    MAX_MOMENTS,
    MAX_WINDOW,
    SearchQuery,
    TaskFacts,
    Term,
    build_search_document,
    cjk_spans,
    decode_cursor,
    encode_cursor,
    keyset_after,
    make_query,
    marked_spans,
    page_start,
    parse_terms,
    parse_time_bound,
    render_highlight,
    split_tags,
    without_cjk,
)
from tests.search.conftest import result_document

UTC = dt.UTC
FACTS = TaskFacts(task_id="a" * 32, platform="douyin", uid=42, env="prod", source="url", dimensions="all",
                  created_at=dt.datetime(2025, 1, 2, 3, 4, 5), finished_at=dt.datetime(2025, 1, 2, 3, 5, 0))


def test_document_from_a_pipeline_result() -> None:
    result = result_document("a" * 32, tags=[("Cat ", 0.91234, [[1.0, 2.5], [4.0, 5.0]], ["visual", "ocr"])],
                             ocr=[("欢迎来到北京", 1.0, 3.0)], speech=[("hello there", 0.5, 1.5)],
                             description="A cat video")
    result["scenes"] = [{"start_s": 0.0, "end_s": 6.0, "labels": [{"name": "indoor"}, "sofa"]}]
    doc = build_search_document(FACTS, result)
    assert doc["task_id"] == "a" * 32 and doc["platform"] == "douyin" and doc["uid"] == 42 and doc["env"] == "prod"
    assert doc["created_at_ms"] == 1735787045000 and doc["finished_at_ms"] == 1735787100000
    assert doc["duration_s"] == 30.0
    assert doc["tags"] == [{"name": "cat", "count": 2, "confidence": 0.9123, "sources": ["ocr", "visual"]}]
    assert doc["tag_names"] == ["cat"]
    assert doc["moments"] == [
        {"kind": "tag", "text": "cat", "start_s": 1.0, "end_s": 2.5},
        {"kind": "tag", "text": "cat", "start_s": 4.0, "end_s": 5.0},
        {"kind": "scene", "text": "indoor, sofa", "start_s": 0.0, "end_s": 6.0},
        {"kind": "ocr", "text": "欢迎来到北京", "start_s": 1.0, "end_s": 3.0},
        {"kind": "speech", "text": "hello there", "start_s": 0.5, "end_s": 1.5},
    ]
    assert (doc["description"], doc["ocr_text"], doc["transcript"], doc["scene_text"]) == (
        "A cat video", "欢迎来到北京", "hello there", "indoor, sofa")
    assert doc["embedding_text"] == "A cat video. cat. indoor, sofa. hello there. 欢迎来到北京"
    assert build_search_document(FACTS, result) == doc  # deterministic: re-indexing is idempotent


@pytest.mark.parametrize(("segment", "expected"), [
    ({"text": "  ", "start_s": 1, "end_s": 2}, None),               # empty text
    ({"text": "x", "start_s": None, "end_s": 2}, None),             # no start
    ({"text": "x", "start_s": "nan", "end_s": 2}, None),            # not finite
    ({"text": "x", "start_s": 3, "end_s": 1}, (3.0, 3.0)),          # end before start
    ({"text": "x", "start_s": 1.23456, "end_s": None}, (1.235, 1.235)),
])
def test_odd_segments(segment: dict[str, Any], expected: tuple[float, float] | None) -> None:
    result = result_document("a" * 32)
    result["text"] = [segment]
    moments = build_search_document(FACTS, result)["moments"]
    assert [(m["start_s"], m["end_s"]) for m in moments] == ([expected] if expected else [])


def test_transcript_as_segments_object_and_moment_cap() -> None:
    result = result_document("a" * 32)
    result["transcript"] = {"segments": [{"text": f"w{i}", "start_s": i, "end_s": i + 1} for i in range(MAX_MOMENTS + 5)]}
    doc = build_search_document(FACTS, result)
    assert len(doc["moments"]) == MAX_MOMENTS
    assert doc["transcript"].startswith("w0 w1 ")


@pytest.mark.parametrize(("text", "terms"), [
    ("Hello, World!", [Term("hello", False), Term("world", False)]),
    ("北京欢迎你", [Term("北京欢迎你", True)]),
    ("iPhone新品 发布", [Term("iphone", False), Term("新品", True), Term("发布", True)]),
    ("ＡＢＣ１２３", [Term("abc123", False)]),           # full-width folded
    ("cat cat CAT", [Term("cat", False)]),
    ("___ -- !!", []),
    ("すし 寿司", [Term("すし", True), Term("寿司", True)]),
])
def test_parse_terms(text: str, terms: list[Term]) -> None:
    assert parse_terms(text) == terms


@pytest.mark.parametrize(("value", "upper", "expected"), [
    ("2025-03-02", False, dt.datetime(2025, 3, 2, tzinfo=UTC)),
    ("2025-03-02", True, dt.datetime(2025, 3, 3, tzinfo=UTC)),
    ("2025-03-02T10:00:00", True, dt.datetime(2025, 3, 2, 10, tzinfo=UTC)),
    ("2025-03-02T10:00:00Z", False, dt.datetime(2025, 3, 2, 10, tzinfo=UTC)),
    ("2025-03-02T18:00:00+08:00", False, dt.datetime(2025, 3, 2, 10, tzinfo=UTC)),
    ("", False, None),
    (None, True, None),
])
def test_parse_time_bound(value: str | None, upper: bool, expected: dt.datetime | None) -> None:
    assert parse_time_bound(value, upper=upper) == expected


@pytest.mark.parametrize("value", ["yesterday", "2025-13-01", "2025-03-02T25:00"])
def test_parse_time_bound_refuses(value: str) -> None:
    with pytest.raises(InvalidRequest):
        parse_time_bound(value, upper=False)


def test_split_tags() -> None:
    assert split_tags(" Cat,dog,,cat , 北京 ") == ("cat", "dog", "北京")
    assert split_tags(["a,b", "c"]) == ("a", "b", "c")
    assert split_tags(None) == ()
    with pytest.raises(InvalidRequest):
        split_tags(",".join(f"t{i}" for i in range(21)))


@pytest.mark.parametrize("params", [
    {"limit": 0}, {"limit": 101}, {"q": "x" * 501}, {"semantic": True}, {"semantic": True, "q": "!!"},
    {"from_": "2025-03-02", "to": "2025-03-01"}, {"cursor": "garbage"},
])
def test_make_query_refuses(params: dict[str, Any]) -> None:
    with pytest.raises(InvalidRequest):
        make_query(**params)


def test_make_query_values() -> None:
    q = make_query(q=" cat ", tags="Dog", platform="", uid=0, env=None, from_="2025-01-01", limit=5, semantic=True)
    assert (q.text, q.tags, q.platform, q.uid, q.limit, q.semantic) == ("cat", ("dog",), None, 0, 5, True)
    assert q.created_from == dt.datetime(2025, 1, 1, tzinfo=UTC) and q.created_to is None
    assert q.scored and not SearchQuery().scored


@pytest.mark.parametrize("position", [(0,), (20,), (1735787045000, "a" * 32)])
def test_cursor_round_trip(position: tuple[Any, ...]) -> None:
    assert decode_cursor(encode_cursor(position)) == position


@pytest.mark.parametrize("position", [[], [1, 2, 3], ["x"], [-1], [MAX_WINDOW], [1.5, "a"], [1, 2], [True]])
def test_cursor_refuses_foreign_positions(position: list[Any]) -> None:
    with pytest.raises(InvalidRequest):
        decode_cursor(encode_cursor(position))


def test_cursor_kind_must_match_the_query() -> None:
    ranked, newest = encode_cursor((20,)), encode_cursor((1, "a"))
    assert page_start(make_query(q="cat", cursor=ranked)) == 20
    assert keyset_after(make_query(cursor=newest)) == (1, "a")
    with pytest.raises(InvalidRequest):
        page_start(make_query(q="cat", cursor=newest))
    with pytest.raises(InvalidRequest):
        keyset_after(make_query(cursor=ranked))
    with pytest.raises(InvalidRequest):
        page_start(make_query(q="cat", cursor=encode_cursor((MAX_WINDOW - 5,)), limit=10))


def test_highlighting_helpers() -> None:
    text = "<b>iPhone新品</b> & 北京"
    assert without_cjk(text) == "<b>iPhone  </b> &   " and len(without_cjk(text)) == len(text)
    assert cjk_spans(text, [Term("北京", True), Term("iphone", False)]) == [(18, 20)]
    assert marked_spans("a \x01bc\x02 d \x01e\x02") == [(2, 4), (7, 8)]
    assert render_highlight(text, [(3, 9), (18, 20), (5, 7)]) == "&lt;b&gt;<em>iPhone</em>新品&lt;/b&gt; &amp; <em>北京</em>"
    assert render_highlight("abc", []) == "abc"


@pytest.mark.parametrize(("attempt", "rand", "expected"), [
    (0, 0.0, 1.0), (0, 1.0, 2.0), (3, 1.0, 16.0), (10, 1.0, 600.0), (10, 0.0, 300.0), (99, 0.5, 450.0),
])
def test_backoff(attempt: int, rand: float, expected: float) -> None:
    assert backoff_s(attempt, base=2.0, cap=600.0, rand=rand) == expected
