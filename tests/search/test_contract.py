"""One contract suite over both index backends (embedded SQLite FTS5, Elasticsearch via osmem-server)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import re

import pytest

from app.errors import InvalidRequest
from app.search.base import SearchIndex, SearchPage
from app.search.documents import make_query
from tests.search.conftest import BASE_TIME, search_doc

CAT = ("cat", 0.9, [[2.0, 4.5]], ["visual"])
DOG = ("dog", 0.8, [[10.0, 12.0], [20.0, 21.5]], ["visual"])
BEIJING = ("北京", 0.7, [[1.0, 3.0]], ["ocr"])


async def put(index: SearchIndex, *docs: dict[str, object]) -> None:
    assert await index.upsert(list(docs)) == {}
    await index.refresh()


async def find(index: SearchIndex, **params: object) -> SearchPage:
    return await index.search(make_query(**params))  # type: ignore[arg-type]


def ids(page: SearchPage) -> list[str]:
    return [h.task_id for h in page.hits]


def plain(html: str) -> str:
    return re.sub(r"</?em>", "", html)


async def test_index_then_get_and_count(index: SearchIndex) -> None:
    doc = search_doc("a" * 32, tags=[CAT], ocr=[("hello world", 1.0, 2.0)])
    await put(index, doc)
    stored = await index.get("a" * 32)
    assert stored is not None
    assert stored["tags"] == doc["tags"] and stored["moments"] == doc["moments"]
    assert await index.count() == 1
    assert await index.get("b" * 32) is None


async def test_reindexing_the_same_document_is_idempotent(index: SearchIndex) -> None:
    doc = search_doc("a" * 32, tags=[CAT])
    await put(index, doc)
    await put(index, doc)
    await put(index, doc)
    assert await index.count() == 1
    page = await find(index, q="cat")
    assert page.total == 1 and ids(page) == ["a" * 32]
    assert len(page.hits[0].moments) == 1


async def test_update_replaces_the_old_version(index: SearchIndex) -> None:
    await put(index, search_doc("a" * 32, ocr=[("hello world", 1.0, 2.0)], platform="douyin"))
    await put(index, search_doc("a" * 32, ocr=[("goodbye moon", 5.0, 6.0)], platform="tiktok"))
    assert (await find(index, q="hello")).total == 0
    page = await find(index, q="goodbye")
    assert ids(page) == ["a" * 32]
    assert [(m.start_s, m.end_s) for m in page.hits[0].moments] == [(5.0, 6.0)]
    assert page.hits[0].platform == "tiktok"
    assert (await find(index, platform="douyin")).total == 0


async def test_delete_removes_and_ignores_unknown_ids(index: SearchIndex) -> None:
    await put(index, search_doc("a" * 32, tags=[CAT]), search_doc("b" * 32, tags=[CAT]))
    await index.delete(["a" * 32, "f" * 32])
    await index.refresh()
    assert await index.get("a" * 32) is None
    assert ids(await find(index, q="cat")) == ["b" * 32]
    assert await index.count() == 1


async def test_english_words_match_by_stem_with_moment_times_and_highlight(index: SearchIndex) -> None:
    await put(index,
              search_doc("a" * 32, speech=[("the dogs run along the beach", 3.25, 7.5), ("nothing here", 8.0, 9.0)]),
              search_doc("b" * 32, speech=[("a quiet library", 1.0, 2.0)]))
    page = await find(index, q="Running DOG")
    assert ids(page) == ["a" * 32]
    [moment] = page.hits[0].moments
    assert (moment.kind, moment.start_s, moment.end_s) == ("speech", 3.25, 7.5)
    assert moment.text == "the dogs run along the beach"
    assert "<em>run</em>" in moment.highlight and "<em>dogs</em>" in moment.highlight
    assert plain(moment.highlight) == moment.text


@pytest.mark.parametrize(("q", "expected"), [
    ("北京", ["a"]),            # two characters: below the trigram size
    pytest.param("京", ["a"], id="one-character"),
    ("来到北京", ["a"]),         # longer than a trigram
    ("欢迎", ["a", "b"]),
    ("上海 欢迎", ["b"]),        # every term must match
    ("广州", []),
])
async def test_chinese_queries(index: SearchIndex, q: str, expected: list[str], request: pytest.FixtureRequest) -> None:
    if len(q) == 1 and index.name == "elastic":
        # The mapping indexes CJK unigrams (cjk_bigram output_unigrams: true); osmem-server's _analyze
        # honours that but its indexing drops them (term vectors show bigrams only).
        request.applymarker(pytest.mark.xfail(strict=True, reason="osmem-server ignores output_unigrams at index time"))
    await put(index,
              search_doc("a" * 32, ocr=[("欢迎来到北京", 1.0, 3.0)], created=BASE_TIME),
              search_doc("b" * 32, ocr=[("上海欢迎你", 2.0, 4.0)], created=BASE_TIME + dt.timedelta(hours=1)))
    page = await find(index, q=q)
    assert sorted(ids(page)) == [c * 32 for c in expected]
    assert page.total == len(expected)
    for hit in page.hits:
        assert hit.moments and all(m.kind == "ocr" for m in hit.moments)
        assert all("<em>" in m.highlight for m in hit.moments)


async def test_chinese_highlight_marks_the_word(index: SearchIndex) -> None:
    await put(index, search_doc("a" * 32, ocr=[("欢迎来到北京", 1.0, 3.0)]))
    [moment] = (await find(index, q="北京")).hits[0].moments
    assert moment.highlight == "欢迎来到<em>北京</em>"
    assert (moment.start_s, moment.end_s) == (1.0, 3.0)


async def test_mixed_chinese_and_english_terms(index: SearchIndex) -> None:
    await put(index,
              search_doc("a" * 32, tags=[CAT], ocr=[("欢迎来到北京", 1.0, 3.0)]),
              search_doc("b" * 32, tags=[CAT], ocr=[("上海欢迎你", 1.0, 3.0)]))
    assert ids(await find(index, q="cat 北京")) == ["a" * 32]


async def test_tag_moments_carry_the_tag_ranges(index: SearchIndex) -> None:
    await put(index, search_doc("a" * 32, tags=[CAT, DOG]))
    page = await find(index, q="dog")
    assert [(m.kind, m.text, m.start_s, m.end_s) for m in page.hits[0].moments] == [
        ("tag", "dog", 10.0, 12.0), ("tag", "dog", 20.0, 21.5)]
    assert [t["name"] for t in page.hits[0].tags] == ["cat", "dog"]


async def test_a_tag_match_ranks_above_a_text_match(index: SearchIndex) -> None:
    await put(index,
              search_doc("a" * 32, ocr=[("my cat sleeps", 1.0, 2.0)], created=BASE_TIME + dt.timedelta(days=1)),
              search_doc("b" * 32, tags=[CAT], created=BASE_TIME))
    page = await find(index, q="cat")
    assert ids(page) == ["b" * 32, "a" * 32]
    assert page.hits[0].score is not None and page.hits[1].score is not None
    assert page.hits[0].score > page.hits[1].score


async def test_tag_filters_require_every_tag(index: SearchIndex) -> None:
    await put(index,
              search_doc("a" * 32, tags=[CAT]),
              search_doc("b" * 32, tags=[CAT, DOG]),
              search_doc("c" * 32, tags=[DOG, BEIJING]))
    assert sorted(ids(await find(index, tags="cat"))) == ["a" * 32, "b" * 32]
    assert ids(await find(index, tags="cat,dog")) == ["b" * 32]
    assert ids(await find(index, tags=" 北京 ")) == ["c" * 32]
    assert ids(await find(index, tags="cat", q="dog")) == ["b" * 32]
    assert (await find(index, tags="cat,北京")).total == 0


async def test_platform_uid_and_env_filters(index: SearchIndex) -> None:
    await put(index,
              search_doc("a" * 32, platform="douyin", uid=1, env="prod", tags=[CAT]),
              search_doc("b" * 32, platform="tiktok", uid=2, env="prod", tags=[CAT]),
              search_doc("c" * 32, platform="tiktok", uid=1, env=None, tags=[CAT]))
    assert sorted(ids(await find(index, platform="tiktok"))) == ["b" * 32, "c" * 32]
    assert sorted(ids(await find(index, uid=1))) == ["a" * 32, "c" * 32]
    assert sorted(ids(await find(index, env="prod", q="cat"))) == ["a" * 32, "b" * 32]
    assert ids(await find(index, platform="tiktok", uid=1)) == ["c" * 32]


async def test_date_ranges(index: SearchIndex) -> None:
    days = {c: BASE_TIME + dt.timedelta(days=i) for i, c in enumerate("abcd")}  # 03-01 .. 03-04, 12:00
    await put(index, *(search_doc(c * 32, created=t, tags=[CAT]) for c, t in days.items()))
    assert ids(await find(index, from_="2025-03-02")) == ["d" * 32, "c" * 32, "b" * 32]
    assert ids(await find(index, to="2025-03-02")) == ["b" * 32, "a" * 32]  # a bare date includes its day
    assert ids(await find(index, from_="2025-03-02T12:00:00Z", to="2025-03-03T12:00:00Z")) == ["b" * 32]
    assert ids(await find(index, from_="2025-03-02T20:00:01+08:00", to="2025-03-03", q="cat")) == ["c" * 32]


async def test_results_without_text_are_newest_first(index: SearchIndex) -> None:
    await put(index, *(search_doc(c * 32, created=BASE_TIME + dt.timedelta(minutes=i)) for i, c in enumerate("abc")))
    page = await find(index)
    assert ids(page) == ["c" * 32, "b" * 32, "a" * 32]
    assert all(h.score is None and h.moments == [] for h in page.hits)
    assert page.hits[0].created_at_ms == int((BASE_TIME + dt.timedelta(minutes=2)).replace(
        tzinfo=dt.UTC).timestamp() * 1000)


@pytest.mark.parametrize("q", [None, "cat"])
async def test_cursor_pages_through_every_match_once(index: SearchIndex, q: str | None) -> None:
    # Equal creation times for some, so the task-id tie-break is exercised too.
    docs = [search_doc(f"{i:032x}", created=BASE_TIME + dt.timedelta(minutes=i // 2), tags=[CAT]) for i in range(7)]
    await put(index, *docs)
    seen: list[str] = []
    cursor = None
    for _ in range(5):
        page = await find(index, q=q, limit=3, cursor=cursor)
        assert page.total == 7
        seen += ids(page)
        if page.next_after is None:
            break
        cursor = page.as_dict()["next_cursor"]
    assert len(seen) == 7 and len(set(seen)) == 7
    assert [len(seen[i:i + 3]) for i in range(0, 7, 3)] == [3, 3, 1]
    expected = sorted((d for d in docs), key=lambda d: (-d["created_at_ms"], d["task_id"]))
    assert seen == [d["task_id"] for d in expected]  # equal scores: newest first, then task id


async def test_a_cursor_from_another_kind_of_query_is_refused(index: SearchIndex) -> None:
    await put(index, *(search_doc(f"{i:032x}", tags=[CAT]) for i in range(3)))
    page = await find(index, limit=1)
    cursor = page.as_dict()["next_cursor"]
    with pytest.raises(InvalidRequest):
        await find(index, q="cat", limit=1, cursor=cursor)


async def test_facets_count_videos_over_all_matches(index: SearchIndex) -> None:
    await put(index,
              search_doc("a" * 32, platform="douyin", tags=[CAT, DOG]),
              search_doc("b" * 32, platform="tiktok", tags=[CAT]),
              search_doc("c" * 32, platform="tiktok", tags=[CAT, BEIJING]),
              search_doc("d" * 32, platform="kuaishou", tags=[DOG]))
    page = await find(index, q="cat", limit=1)
    assert page.total == 3 and len(page.hits) == 1
    assert [(f.value, f.count) for f in page.tags] == [("cat", 3), ("dog", 1), ("北京", 1)]
    assert [(f.value, f.count) for f in page.platforms] == [("tiktok", 2), ("douyin", 1)]


async def test_rebuild_switches_without_downtime(index: SearchIndex) -> None:
    await put(index, search_doc("a" * 32, tags=[CAT]), search_doc("b" * 32, tags=[CAT]))
    target = await index.begin_rebuild()
    assert await index.upsert([search_doc("a" * 32, tags=[DOG]), search_doc("c" * 32, tags=[DOG])],
                              target=target) == {}
    # Until the switch, searches answer from the live index.
    assert sorted(ids(await find(index, q="cat"))) == ["a" * 32, "b" * 32]
    await index.finish_rebuild(target)
    await index.refresh()
    assert (await find(index, q="cat")).total == 0
    assert sorted(ids(await find(index, q="dog"))) == ["a" * 32, "c" * 32]
    assert await index.count() == 2
    # Writes after the switch land in the new index.
    await put(index, search_doc("d" * 32, tags=[DOG]))
    assert (await find(index, q="dog")).total == 3


async def test_abort_rebuild_leaves_the_live_index(index: SearchIndex) -> None:
    await put(index, search_doc("a" * 32, tags=[CAT]))
    target = await index.begin_rebuild()
    await index.upsert([search_doc("z" * 32, tags=[DOG])], target=target)
    await index.abort_rebuild(target)
    assert ids(await find(index, q="cat")) == ["a" * 32]
    assert await index.count() == 1


async def test_malformed_documents_are_reported_not_stored(index: SearchIndex) -> None:
    good = search_doc("a" * 32, tags=[CAT])
    bad = dict(search_doc("b" * 32, tags=[CAT]))
    bad["moments"] = [{"kind": "ocr", "text": "x", "start_s": "soon", "end_s": 1.0}]
    failed = await index.upsert([good, bad])
    await index.refresh()
    assert list(failed) == ["b" * 32]
    assert await index.get("a" * 32) is not None and await index.get("b" * 32) is None


async def test_semantic_ranks_by_meaning_and_keywords(index: SearchIndex, search_models_dir: object) -> None:
    if not index.supports_vectors:
        pytest.skip("osmem-server has no dense_vector or kNN: semantic search is verified on the embedded backend only")
    from pathlib import Path

    from app.search.embeddings import Embedder

    embedder = Embedder(Path(str(search_models_dir)))
    docs = [search_doc("a" * 32, description="a puppy playing fetch on the grass"),
            search_doc("b" * 32, description="stock market report with charts"),
            search_doc("c" * 32, description="a dog and a cat sleeping")]
    vectors = embedder.embed([d["embedding_text"] for d in docs])
    for d, v in zip(docs, vectors, strict=True):
        d["embedding"] = [float(x) for x in v]
    await put(index, *docs)
    keyword = await find(index, q="dog")
    assert ids(keyword) == ["c" * 32]
    query = dataclasses.replace(make_query(q="dog", semantic=True), vector=embedder.embed_one("dog"))
    page = await index.search(query)
    assert ids(page)[:2] == ["c" * 32, "a" * 32]  # keyword + meaning, then meaning alone
    assert "b" * 32 not in ids(page)  # unrelated: below the similarity floor
    assert page.hits[1].moments == []  # a match by meaning has no matching words to show
