"""The embedded search index: SQLite FTS5 files in DATA_DIR/search (no server to run).

Layout:
    DATA_DIR/search/CURRENT                   the live file's name (replaced atomically)
    DATA_DIR/search/index-v1-<stamp>.sqlite   one generation: docs, tags, text units, FTS

Tables of one generation:
    docs       one row per task: filter columns, the search document (JSON), embedding (float32)
    doc_tags   (tag name, doc) for tag filters and facets
    units      searchable text pieces: the description, each moment (tag range, scene, OCR,
               speech segment, with start/end) and the tags that have no time range
    units_word FTS5 over units, `porter unicode61`: English (and other spaced) words, stemmed;
               CJK characters are blanked out of this column so `iPhone新品` yields `iphone`
    units_tri  FTS5 over units, `trigram`: Chinese (any CJK run) as substrings; runs of one or
               two characters, below the trigram size, are found with LIKE over `units`

Matching: every query term must occur in the video (AND). Score: sum over terms of
idf(term) x the weight of the best field it hit (documents.FIELD_WEIGHTS). Semantic:
cosine over the stored embeddings of the filtered videos (documents.SEMANTIC_*).
Reindex writes a new generation and swaps CURRENT; open readers finish on the old file,
which is deleted one rebuild later.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import fcntl
import json
import os
import sqlite3
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from app.errors import InvalidRequest, Unavailable
from app.search.base import FacetValue, Hit, Moment, SearchIndex, SearchPage
from app.search.documents import (
    FACET_SIZE,
    FIELD_WEIGHTS,
    KEYWORD_WEIGHT,
    MAX_WINDOW,
    MOMENTS_PER_HIT,
    SEARCH_SCHEMA_VERSION,
    SEMANTIC_CANDIDATES,
    SEMANTIC_MIN_SIMILARITY,
    TOP_TAGS_PER_HIT,
    SearchQuery,
    Term,
    cjk_spans,
    idf,
    keyset_after,
    marked_spans,
    page_start,
    render_highlight,
    semantic_score,
    without_cjk,
)

if TYPE_CHECKING:
    from app.config import Settings

T = TypeVar("T")
POINTER = "CURRENT"
TIMED_KINDS = ("tag", "scene", "ocr", "speech")

SCHEMA = f"""
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT OR IGNORE INTO meta(key, value) VALUES ('schema_version', '{SEARCH_SCHEMA_VERSION}');
CREATE TABLE IF NOT EXISTS docs(
    id INTEGER PRIMARY KEY, task_id TEXT NOT NULL UNIQUE, platform TEXT NOT NULL, uid INTEGER, env TEXT,
    created_at_ms INTEGER NOT NULL, body TEXT NOT NULL, embedding BLOB);
CREATE INDEX IF NOT EXISTS ix_docs_created ON docs(created_at_ms, task_id);
CREATE INDEX IF NOT EXISTS ix_docs_platform ON docs(platform, created_at_ms);
CREATE TABLE IF NOT EXISTS doc_tags(name TEXT NOT NULL, doc INTEGER NOT NULL, PRIMARY KEY(name, doc)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS ix_doc_tags_doc ON doc_tags(doc);
CREATE TABLE IF NOT EXISTS units(
    id INTEGER PRIMARY KEY, doc INTEGER NOT NULL, kind TEXT NOT NULL, start_s REAL, end_s REAL,
    text TEXT NOT NULL, words TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS ix_units_doc ON units(doc);
CREATE VIRTUAL TABLE IF NOT EXISTS units_word USING fts5(
    words, content='units', content_rowid='id', tokenize='porter unicode61 remove_diacritics 2');
CREATE VIRTUAL TABLE IF NOT EXISTS units_tri USING fts5(
    text, content='units', content_rowid='id', tokenize='trigram');
"""


def _stamp() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y%m%d%H%M%S%f") + "-" + uuid.uuid4().hex[:6]


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(str(path), timeout=30.0, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA busy_timeout=30000")
    return conn


def _fts_phrase(text: str) -> str:
    return '"' + text.replace('"', '""') + '"'


class EmbeddedIndex(SearchIndex):
    name = "embedded"

    def __init__(self, root: Path) -> None:
        self.root = root
        self._current: tuple[int, Path] | None = None  # (pointer mtime_ns, file)

    @classmethod
    def from_settings(cls, settings: Settings) -> EmbeddedIndex:
        return cls(settings.data_dir / "search")

    # --- files ---------------------------------------------------------------------
    def _create_generation(self) -> Path:
        path = self.root / f"index-v{SEARCH_SCHEMA_VERSION}-{_stamp()}.sqlite"
        conn = _connect(path)
        try:
            conn.executescript(SCHEMA)
        finally:
            conn.close()
        return path

    def _write_pointer(self, name: str) -> None:
        tmp = self.root / f"{POINTER}.tmp{os.getpid()}"
        tmp.write_text(name + "\n")
        os.replace(tmp, self.root / POINTER)  # atomic: readers see the old or the new name

    def _open_sync(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / "lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not (self.root / POINTER).exists():
                self._write_pointer(self._create_generation().name)
        self._live()

    def _live(self) -> Path:
        pointer = self.root / POINTER
        try:
            mtime = pointer.stat().st_mtime_ns
        except FileNotFoundError:
            raise Unavailable("the embedded search index is not created yet (open() it first)") from None
        if self._current is None or self._current[0] != mtime:
            self._current = (mtime, self.root / pointer.read_text().strip())
        return self._current[1]

    def _path(self, target: str | None) -> Path:
        if target is None:
            return self._live()
        if "/" in target or not target.endswith(".sqlite"):
            raise ValueError(f"not a rebuild of this index: {target!r}")
        path = self.root / target
        if not path.exists():
            raise ValueError(f"no such rebuild: {target!r}")
        return path

    @contextlib.contextmanager
    def _conn(self, target: str | None = None) -> Iterator[sqlite3.Connection]:
        try:
            conn = _connect(self._path(target))
        except sqlite3.Error as exc:
            raise Unavailable(f"the embedded search index cannot be opened: {exc}") from exc
        try:
            yield conn
        except sqlite3.OperationalError as exc:  # locked, disk full, I/O: retry later
            raise Unavailable(f"the embedded search index failed: {exc}") from exc
        finally:
            conn.close()

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.to_thread(fn, *args)

    # --- contract ------------------------------------------------------------------
    async def open(self) -> None:
        await self._run(self._open_sync)

    async def upsert(self, docs: Sequence[dict[str, Any]], *, target: str | None = None) -> dict[str, str]:
        return await self._run(self._upsert_sync, list(docs), target)

    async def delete(self, task_ids: Sequence[str]) -> None:
        await self._run(self._delete_sync, list(task_ids))

    async def get(self, task_id: str) -> dict[str, Any] | None:
        return await self._run(self._get_sync, task_id)

    async def count(self) -> int:
        return await self._run(self._count_sync)

    async def search(self, query: SearchQuery) -> SearchPage:
        return await self._run(self._search_sync, query)

    async def begin_rebuild(self) -> str:
        return await self._run(lambda: self._create_generation().name)

    async def finish_rebuild(self, target: str) -> None:
        await self._run(self._finish_sync, target)

    async def abort_rebuild(self, target: str) -> None:
        await self._run(self._drop_files, self._path(target).name)

    # --- writes --------------------------------------------------------------------
    def _remove(self, conn: sqlite3.Connection, doc: int) -> None:
        for uid, text, words in conn.execute("SELECT id, text, words FROM units WHERE doc = ?", (doc,)).fetchall():
            conn.execute("INSERT INTO units_word(units_word, rowid, words) VALUES ('delete', ?, ?)", (uid, words))
            conn.execute("INSERT INTO units_tri(units_tri, rowid, text) VALUES ('delete', ?, ?)", (uid, text))
        conn.execute("DELETE FROM units WHERE doc = ?", (doc,))
        conn.execute("DELETE FROM doc_tags WHERE doc = ?", (doc,))

    def _units(self, doc: dict[str, Any]) -> list[tuple[str, float | None, float | None, str]]:
        units: list[tuple[str, float | None, float | None, str]] = []
        if doc.get("description"):
            units.append(("description", None, None, str(doc["description"])))
        timed_tags = set()
        for m in doc.get("moments", []):
            units.append((str(m["kind"]), float(m["start_s"]), float(m["end_s"]), str(m["text"])))
            if m["kind"] == "tag":
                timed_tags.add(m["text"])
        units.extend(("tag", None, None, name) for name in doc.get("tag_names", []) if name not in timed_tags)
        return units

    def _upsert_sync(self, docs: list[dict[str, Any]], target: str | None) -> dict[str, str]:
        failed: dict[str, str] = {}
        with self._conn(target) as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                for doc in docs:
                    task_id = str(doc.get("task_id", ""))
                    try:
                        self._put(conn, doc)
                    except (KeyError, TypeError, ValueError) as exc:
                        failed[task_id] = f"malformed search document: {type(exc).__name__}: {exc}"
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        return failed

    def _put(self, conn: sqlite3.Connection, doc: dict[str, Any]) -> None:
        body = {k: v for k, v in doc.items() if k != "embedding"}
        vector = doc.get("embedding")
        blob = np.asarray(vector, dtype=np.float32).tobytes() if vector is not None else None
        units = self._units(doc)  # validates before anything is written
        values = (doc["platform"], doc.get("uid"), doc.get("env"), int(doc["created_at_ms"]),
                  json.dumps(body, ensure_ascii=False), blob)
        row = conn.execute("SELECT id FROM docs WHERE task_id = ?", (doc["task_id"],)).fetchone()
        if row is not None:
            doc_id = int(row[0])
            self._remove(conn, doc_id)
            conn.execute("UPDATE docs SET platform=?, uid=?, env=?, created_at_ms=?, body=?, embedding=? WHERE id=?",
                         (*values, doc_id))
        else:
            cur = conn.execute("INSERT INTO docs(task_id, platform, uid, env, created_at_ms, body, embedding) "
                               "VALUES (?, ?, ?, ?, ?, ?, ?)", (doc["task_id"], *values))
            doc_id = int(cur.lastrowid or 0)
        conn.executemany("INSERT OR IGNORE INTO doc_tags(name, doc) VALUES (?, ?)",
                         [(name, doc_id) for name in doc.get("tag_names", [])])
        for kind, start, end, text in units:
            words = without_cjk(text)
            cur = conn.execute("INSERT INTO units(doc, kind, start_s, end_s, text, words) VALUES (?, ?, ?, ?, ?, ?)",
                               (doc_id, kind, start, end, text, words))
            conn.execute("INSERT INTO units_word(rowid, words) VALUES (?, ?)", (cur.lastrowid, words))
            conn.execute("INSERT INTO units_tri(rowid, text) VALUES (?, ?)", (cur.lastrowid, text))

    def _delete_sync(self, task_ids: list[str]) -> None:
        with self._conn() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                for task_id in task_ids:
                    row = conn.execute("SELECT id FROM docs WHERE task_id = ?", (task_id,)).fetchone()
                    if row is not None:
                        self._remove(conn, int(row[0]))
                        conn.execute("DELETE FROM docs WHERE id = ?", (row[0],))
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

    def _finish_sync(self, target: str) -> None:
        path = self._path(target)
        with open(self.root / "lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            previous = (self.root / POINTER).read_text().strip() if (self.root / POINTER).exists() else None
            self._write_pointer(path.name)
            # Keep the generation just replaced (readers may still be on it); drop older ones.
            for old in self.root.glob("index-*.sqlite"):
                if old.name not in (path.name, previous):
                    self._drop_files(old.name)

    def _drop_files(self, name: str) -> None:
        for suffix in ("", "-wal", "-shm"):
            (self.root / (name + suffix)).unlink(missing_ok=True)

    # --- reads ---------------------------------------------------------------------
    def _get_sync(self, task_id: str) -> dict[str, Any] | None:
        with self._conn() as conn:
            row = conn.execute("SELECT body FROM docs WHERE task_id = ?", (task_id,)).fetchone()
        return json.loads(row[0]) if row else None

    def _count_sync(self) -> int:
        with self._conn() as conn:
            return int(conn.execute("SELECT COUNT(*) FROM docs").fetchone()[0])

    @staticmethod
    def _filters(q: SearchQuery) -> tuple[str, list[Any]]:
        where: list[str] = ["1=1"]
        params: list[Any] = []
        for column, value in (("d.platform", q.platform), ("d.uid", q.uid), ("d.env", q.env)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        if q.created_from is not None:
            where.append("d.created_at_ms >= ?")
            params.append(int(q.created_from.timestamp() * 1000))
        if q.created_to is not None:
            where.append("d.created_at_ms < ?")
            params.append(int(q.created_to.timestamp() * 1000))
        for tag in q.tags:
            where.append("d.id IN (SELECT doc FROM doc_tags WHERE name = ?)")
            params.append(tag)
        return " AND ".join(where), params

    @staticmethod
    def _term_source(term: Term) -> tuple[str, str]:
        """(FROM ... WHERE for the units a term matches, its parameter); `u` is the units row."""
        if not term.cjk:
            return ("units_word JOIN units u ON u.id = units_word.rowid WHERE units_word MATCH ?",
                    _fts_phrase(term.text))
        if len(term.text) >= 3:
            return ("units_tri JOIN units u ON u.id = units_tri.rowid WHERE units_tri MATCH ?",
                    _fts_phrase(term.text))
        # Below the trigram size: a scan (the only way FTS5 can answer it either).
        return "units u WHERE u.text LIKE ?", f"%{term.text}%"

    def _match(self, conn: sqlite3.Connection, terms: list[Term]) -> None:
        """Fill TEMP cand(doc, score) with the videos every term matches, scored (module docstring)."""
        total = int(conn.execute("SELECT COUNT(*) FROM docs").fetchone()[0])
        weight = "CASE u.kind " + " ".join(f"WHEN '{k}' THEN {w}" for k, w in FIELD_WEIGHTS.items()) + " ELSE 1.0 END"
        parts = []
        for i, term in enumerate(terms):
            source, param = self._term_source(term)
            conn.execute(f"CREATE TEMP TABLE m{i}(doc INTEGER PRIMARY KEY, w REAL NOT NULL)")
            conn.execute(f"INSERT INTO m{i}(doc, w) SELECT u.doc, MAX({weight}) FROM {source} GROUP BY u.doc", (param,))
            matching = int(conn.execute(f"SELECT COUNT(*) FROM m{i}").fetchone()[0])
            if matching == 0:
                return
            parts.append(f"{idf(total, matching)!r} * m{i}.w")
        joins = " ".join(f"JOIN m{i} ON m{i}.doc = m0.doc" for i in range(1, len(terms)))
        conn.execute(f"INSERT INTO cand(doc, score) SELECT m0.doc, ROUND(({' + '.join(parts)}) * {KEYWORD_WEIGHT!r}, 6) "
                     f"FROM m0 {joins}")

    def _semantic(self, conn: sqlite3.Connection, q: SearchQuery, where: str, params: list[Any]) -> dict[int, float]:
        rows = conn.execute(f"SELECT d.id, d.embedding FROM docs d WHERE {where} AND d.embedding IS NOT NULL",
                            params).fetchall()
        if not rows or q.vector is None:
            return {}
        matrix = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(len(rows), -1)
        cosine = matrix @ np.asarray(q.vector, dtype=np.float32)
        order = np.argsort(-cosine, kind="stable")[:SEMANTIC_CANDIDATES]
        return {int(rows[i][0]): float(cosine[i]) for i in order if cosine[i] >= SEMANTIC_MIN_SIMILARITY}

    def _search_sync(self, q: SearchQuery) -> SearchPage:
        terms = q.terms
        offset, after = (page_start(q), None) if terms else (0, keyset_after(q))
        where, params = self._filters(q)
        with self._conn() as conn:
            if terms:
                conn.execute("CREATE TEMP TABLE cand(doc INTEGER PRIMARY KEY, score REAL NOT NULL)")
                self._match(conn, terms)
                if q.semantic:
                    if q.vector is None:
                        raise InvalidRequest("semantic search needs the query embedding")
                    conn.executemany(
                        "INSERT INTO cand(doc, score) VALUES (?, ?) "
                        "ON CONFLICT(doc) DO UPDATE SET score = ROUND(score + excluded.score, 6)",
                        [(doc, round(semantic_score(cos), 6))
                         for doc, cos in self._semantic(conn, q, where, params).items()])
                # CROSS JOIN fixes the join order (SQLite's planner would scan every doc_tags row).
                source = "cand c CROSS JOIN docs d ON d.id = c.doc"
                order = "c.score DESC, d.created_at_ms DESC, d.task_id ASC"
                score_col = "c.score"
            else:
                source, order, score_col = "docs d", "d.created_at_ms DESC, d.task_id ASC", "NULL"
            page_where, page_params = where, list(params)
            if after is not None:
                page_where += " AND (d.created_at_ms < ? OR (d.created_at_ms = ? AND d.task_id > ?))"
                page_params += [after[0], after[0], after[1]]
            rows = conn.execute(
                f"SELECT d.id, d.task_id, d.created_at_ms, {score_col} FROM {source} "
                f"WHERE {page_where} ORDER BY {order} LIMIT ? OFFSET ?", [*page_params, q.limit + 1, offset]).fetchall()
            total = int(conn.execute(f"SELECT COUNT(*) FROM {source} WHERE {where}", params).fetchone()[0])
            tags = conn.execute(
                f"SELECT t.name, COUNT(*) AS n FROM {source} CROSS JOIN doc_tags t ON t.doc = d.id WHERE {where} "
                f"GROUP BY t.name ORDER BY n DESC, t.name ASC LIMIT {FACET_SIZE}", params).fetchall()
            platforms = conn.execute(
                f"SELECT d.platform, COUNT(*) AS n FROM {source} WHERE {where} "
                f"GROUP BY d.platform ORDER BY n DESC, d.platform ASC LIMIT {FACET_SIZE}", params).fetchall()
            more = len(rows) > q.limit
            rows = rows[: q.limit]
            page_ids = [int(r[0]) for r in rows]
            bodies = dict(conn.execute(f"SELECT id, body FROM docs WHERE id IN ({','.join('?' * len(page_ids))})",
                                       page_ids).fetchall()) if page_ids else {}
            moments = self._moments(conn, page_ids, terms) if terms else {}
            hits = [self._hit(json.loads(bodies[int(r[0])]), r[3], moments.get(int(r[0]), [])) for r in rows]
        next_after: tuple[Any, ...] | None = None
        if more and rows:
            next_after = (offset + len(rows),) if terms else (int(rows[-1][2]), str(rows[-1][1]))
            if terms and offset + len(rows) >= MAX_WINDOW:
                next_after = None
        return SearchPage(total=total, hits=hits, tags=[FacetValue(str(n), int(c)) for n, c in tags],
                          platforms=[FacetValue(str(n), int(c)) for n, c in platforms], next_after=next_after)

    @staticmethod
    def _hit(body: dict[str, Any], score: float | None, moments: list[Moment]) -> Hit:
        return Hit(task_id=body["task_id"], platform=body["platform"], uid=body.get("uid"), env=body.get("env"),
                   created_at_ms=int(body["created_at_ms"]), duration_s=body.get("duration_s"),
                   score=float(score) if score is not None else None,
                   tags=list(body.get("tags", []))[:TOP_TAGS_PER_HIT], moments=moments)

    def _moments(self, conn: sqlite3.Connection, docs: list[int], terms: list[Term]) -> dict[int, list[Moment]]:
        """The best timed units of each page video that any term matches, highlighted, in time order."""
        if not docs:
            return {}
        marks = ",".join("?" * len(docs))
        units: dict[int, tuple[Any, ...]] = {r[0]: r for r in conn.execute(
            f"SELECT id, doc, kind, start_s, end_s, text FROM units WHERE doc IN ({marks}) AND start_s IS NOT NULL",
            docs)}
        spans: dict[int, list[tuple[int, int]]] = {}
        hit_terms: dict[int, set[str]] = {}
        for unit_id, r in units.items():
            for term in terms:
                found = cjk_spans(r[5], [term]) if term.cjk else []
                if found:
                    spans.setdefault(unit_id, []).extend(found)
                    hit_terms.setdefault(unit_id, set()).add(term.text)
        words = [t for t in terms if not t.cjk]
        if words:
            matched: list[int] = []
            for term in words:
                source, param = self._term_source(term)
                for (unit_id,) in conn.execute(f"SELECT u.id FROM {source} AND u.doc IN ({marks}) "
                                               f"AND u.start_s IS NOT NULL", [param, *docs]):
                    hit_terms.setdefault(unit_id, set()).add(term.text)
                    matched.append(unit_id)
            if matched:
                expr = " OR ".join(_fts_phrase(t.text) for t in words)
                ids = sorted(set(matched))
                for unit_id, marked in conn.execute(
                        f"SELECT rowid, highlight(units_word, 0, char(1), char(2)) FROM units_word "
                        f"WHERE units_word MATCH ? AND rowid IN ({','.join('?' * len(ids))})", [expr, *ids]):
                    spans.setdefault(int(unit_id), []).extend(marked_spans(marked))
        by_doc: dict[int, list[tuple[Any, ...]]] = {}
        for unit_id in hit_terms:
            by_doc.setdefault(units[unit_id][1], []).append(units[unit_id])
        out: dict[int, list[Moment]] = {}
        for doc, rows in by_doc.items():
            # Best first: more query terms, a heavier field, earlier; then shown in time order.
            rows.sort(key=lambda r: (-len(hit_terms[r[0]]), -FIELD_WEIGHTS.get(r[2], 1.0), r[3], r[0]))
            chosen = [Moment(kind=r[2], start_s=float(r[3]), end_s=float(r[4]), text=r[5],
                             highlight=render_highlight(r[5], spans.get(r[0], [])))
                      for r in rows[:MOMENTS_PER_HIT]]
            out[doc] = sorted(chosen, key=lambda m: (m.start_s, m.end_s, m.kind, m.text))
        return out
