"""Prove a database's full-text index holds exactly its live documents, with SQL on the file.

chromadb answers `where_document` from `embedding_fulltext_search`, an FTS5 table (trigram
tokenizer in every version) whose rowid is the record's `embeddings.id`. Nothing else checks
it: the record comparison reads documents from `embedding_metadata`. Checked here, strictly
read-only: per collection (its METADATA segment), every document has an FTS row with the same
rowid and text and no record without a document has text there; database-wide, FTS rows that
point to no record; and the index itself, by FTS5's own integrity-check on a scratch copy of
the FTS tables (measured: 0.4 s for 200,000 short documents, 1 s for 20 MB of text, plus 0.14 s
to copy them) and by trigram MATCH probes on the file itself.

Measured facts behind the rules:
- 0.x writes a NULL-text row for a record without a document; it matches nothing, and 1.5.9
  replaces it on update: allowed.
- 0.4 leaves the rows of deleted records behind (and replaces one itself when its rowid is
  reused). A file 1.x has migrated keeps them (1.5.9 opening a 0.4 database deletes none), and
  1.5.9 does not replace them: a record without a document that reuses the rowid inherits the
  deleted text (`$contains` finds it), one with a document fails ("Failed to apply logs to the
  metadata segment") and the collection stops answering get(). So rows pointing nowhere are a
  problem in a file 1.x has migrated (metadb migration 5 or later), a note in a 0.x file.
- 0.4.24 answers `$contains` through the trigram index (a row whose index disagrees with its
  content is not found); 1.5.9 reads the content. Either way a broken index is a problem.
"""

from __future__ import annotations

import sqlite3
import tempfile
import time
from collections.abc import Mapping
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chroma_migrate import dbfile

FTS_TABLE = "embedding_fulltext_search"
DOCUMENT_KEY = "chroma:document"
SAMPLE_IDS = 5
PROBES = 50
# metadb migration 5 is the first one only 1.x applies (runtimes/chromadb-*.txt).
RUST_CORE_METADB = 5
DATABASE_LABEL = "(database)"


@dataclass
class FulltextReport:
    """What the check found; `problems` block a migration, `notes` are shown to the approver."""

    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    collections: dict[str, dict[str, int]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"problems": self.problems, "notes": self.notes, "collections": self.collections,
                "seconds": self.seconds}


def metadata_segments(db_path: Path) -> dict[str, str]:
    """Collection label (the engine's qualified name) -> METADATA segment id, from the file."""
    with dbfile.open_readonly(Path(db_path)) as conn:
        return {item.name: item.metadata_segment for item in dbfile.collections(conn) if item.metadata_segment}


def fulltext_problems(db_path: Path, segments_by_label: Mapping[str, str], **options: Any) -> list[str]:
    """Only the problems of `check_fulltext`: an empty list means the index answers truthfully."""
    return check_fulltext(db_path, segments_by_label, **options).problems


def check_fulltext(db_path: Path, segments_by_label: Mapping[str, str], *, rust_core: bool | None = None,
                   integrity: bool = True, probes: int = PROBES, scratch_dir: Path | None = None) -> FulltextReport:
    """Check the FTS rows of the given collections against their documents, and the index itself.

    `rust_core` says whether 1.x reads and writes the file (rows pointing nowhere are then a
    problem); by default the file's own migrations say. `integrity=False` skips FTS5's
    integrity-check (and its scratch copy), leaving the MATCH probes.
    """
    report = FulltextReport()
    started = time.perf_counter()
    with dbfile.open_readonly(Path(db_path)) as conn:
        if not _has_trigram_table(conn, report):
            return report
        if rust_core is None:
            rust_core = dbfile.migration_signature(conn).get("metadb", 0) >= RUST_CORE_METADB
        source = _text_source(conn)
        for label, segment in segments_by_label.items():
            report.collections[label] = _check_collection(conn, label, segment, report, source)
        _check_orphans(conn, rust_core, report, source)
        report.seconds["rows"] = round(time.perf_counter() - started, 4)
        lap = time.perf_counter()
        _probe_index(conn, segments_by_label, probes, report)
        report.seconds["probes"] = round(time.perf_counter() - lap, 4)
    if integrity:
        lap = time.perf_counter()
        _integrity_check(Path(db_path), report, scratch_dir)
        report.seconds["integrity_check"] = round(time.perf_counter() - lap, 4)
    return report


def _has_trigram_table(conn: sqlite3.Connection, report: FulltextReport) -> bool:
    row = conn.execute("SELECT sql FROM sqlite_master WHERE name = ?", (FTS_TABLE,)).fetchone()
    if row is None:
        report.problems.append(f"{DATABASE_LABEL}: there is no {FTS_TABLE} table, so where_document cannot answer")
        return False
    if "fts5" not in row[0].lower() or "trigram" not in row[0].lower():
        report.problems.append(f"{DATABASE_LABEL}: {FTS_TABLE} is not an FTS5 trigram table ({row[0]!r}): "
                               "where_document would answer differently")
    return True


# One row per record whose FTS row disagrees with its document (NULL-safe comparisons). {fts} is
# the table the FTS rows' text is read from (see _text_source).
_MISMATCHES = f"""
SELECT embedding_id, rowid, category FROM (
  SELECT e.embedding_id, e.id AS rowid,
    CASE
      WHEN d.string_value IS NOT NULL AND f.{{key}} IS NULL THEN 'missing'
      WHEN d.string_value IS NOT NULL AND f.{{text}} IS NOT d.string_value THEN 'differs'
      WHEN d.string_value IS NULL AND f.{{text}} IS NOT NULL THEN 'undocumented'
    END AS category
  FROM embeddings e
  LEFT JOIN embedding_metadata d ON d.id = e.id AND d.key = '{DOCUMENT_KEY}'
  LEFT JOIN {{fts}} f ON f.{{key}} = e.id
  WHERE e.segment_id = ?
) WHERE category IS NOT NULL ORDER BY embedding_id
"""


@dataclass(frozen=True)
class _TextSource:
    """Where the FTS rows' text is read from: FTS5 keeps an ordinary table's text in its `_content`
    shadow table (columns id, c0), which a join reads about three times faster than the virtual
    table; an external-content or contentless table is read through the virtual table."""

    fts: str
    key: str
    text: str


def _text_source(conn: sqlite3.Connection) -> _TextSource:
    create = conn.execute("SELECT sql FROM sqlite_master WHERE name = ?", (FTS_TABLE,)).fetchone()[0]
    content = f"{FTS_TABLE}_content"
    if "content" not in create.lower() and dbfile.columns(conn, content) == ["id", "c0"]:
        return _TextSource(content, "id", "c0")
    return _TextSource(FTS_TABLE, "rowid", "string_value")


_CATEGORY_TEXT = {
    "missing": "records with a document have no full-text row (where_document cannot find them)",
    "differs": "records have full-text text other than their document (where_document answers on the wrong text)",
    "undocumented": "records without a document have full-text text (where_document finds them)",
}


def _check_collection(conn: sqlite3.Connection, label: str, segment: str, report: FulltextReport,
                      source: _TextSource) -> dict[str, int]:
    counts = dict(zip(("records", "documents"), conn.execute(
        f"SELECT COUNT(*), COUNT(d.string_value) FROM embeddings e LEFT JOIN embedding_metadata d "
        f"ON d.id = e.id AND d.key = '{DOCUMENT_KEY}' WHERE e.segment_id = ?", (segment,)).fetchone(), strict=True))
    found: dict[str, list[str]] = {}
    mismatches = _MISMATCHES.format(fts=source.fts, key=source.key, text=source.text)
    for embedding_id, _rowid, category in conn.execute(mismatches, (segment,)):
        found.setdefault(category, []).append(embedding_id)
    for category, ids in found.items():
        counts[category] = len(ids)
        report.problems.append(f"{label}: {len(ids)} of {counts['records']} {_CATEGORY_TEXT[category]}; "
                               f"ids {_sample(ids)}")
    return counts


def _check_orphans(conn: sqlite3.Connection, rust_core: bool, report: FulltextReport, source: _TextSource) -> None:
    """FTS rows whose rowid no record holds: left by 0.4's deletes, harmful once 1.x writes the file."""
    rows = conn.execute(
        f"SELECT f.{source.key}, f.{source.text} IS NULL FROM {source.fts} f "
        f"WHERE NOT EXISTS (SELECT 1 FROM embeddings e WHERE e.id = f.{source.key}) ORDER BY f.{source.key}").fetchall()
    if not rows:
        return
    highest = conn.execute("SELECT COALESCE(MAX(id), 0) FROM embeddings").fetchone()[0]
    above = sum(1 for rowid, _ in rows if rowid > highest)
    with_text = sum(1 for _, is_null in rows if not is_null)
    detail = (f"{len(rows)} full-text rows ({with_text} with text) point to no record, rowids "
              f"{_sample([str(rowid) for rowid, _ in rows])}")
    if above:
        detail += f"; {above} lie above the highest record id {highest}, which the next record added takes"
    if rust_core:
        report.problems.append(
            f"{DATABASE_LABEL}: {detail}. chromadb 1.x does not replace such a row: a record reusing its "
            "rowid inherits the deleted text or, with a document, fails to write and breaks its collection "
            "(a rebuild writes an index without them)")
    else:
        report.notes.append(f"{DATABASE_LABEL}: {detail} (0.4 leaves deleted documents there and replaces "
                            "such a row itself when its rowid is reused)")


def _probe_index(conn: sqlite3.Connection, segments_by_label: Mapping[str, str], probes: int,
                 report: FulltextReport) -> None:
    """MATCH a trigram of sampled documents: the index in the file must return their rowids."""
    if probes <= 0:
        return
    per_collection = max(1, probes // max(len(segments_by_label), 1))
    for label, segment in segments_by_label.items():
        total = report.collections.get(label, {}).get("documents", 0)
        if not total:
            continue
        rows = _probe_rows(conn, segment, per_collection)
        missed = []
        for embedding_id, rowid, text in rows:
            middle = max(0, len(text) // 2 - 1)
            trigram = text[middle:middle + 3]
            phrase = '"' + trigram.replace('"', '""') + '"'
            try:
                hit = conn.execute(f"SELECT 1 FROM {FTS_TABLE} WHERE {FTS_TABLE} MATCH ? AND rowid = ?",
                                   (phrase, rowid)).fetchone()
            except sqlite3.DatabaseError as exc:
                report.problems.append(f"{label}: the full-text index fails a lookup of {trigram!r}: {exc}")
                return
            if hit is None:
                missed.append(embedding_id)
        if missed:
            report.problems.append(f"{label}: the full-text index does not return {len(missed)} of {len(rows)} "
                                   f"probed documents for a trigram they contain; ids {_sample(missed)}")


def _probe_rows(conn: sqlite3.Connection, segment: str, wanted: int) -> list[tuple[str, int, str]]:
    """Up to `wanted` documented records of the segment, spread evenly over its rowids: each found by
    one seek from an evenly spaced rowid (a row number over every document would read them all)."""
    low, high = conn.execute("SELECT MIN(id), MAX(id) FROM embeddings WHERE segment_id = ?", (segment,)).fetchone()
    if low is None:
        return []
    starts = sorted({low + (high - low) * i // max(wanted - 1, 1) for i in range(wanted)})
    found: dict[int, tuple[str, int, str]] = {}
    for start in starts:
        row = conn.execute(
            f"SELECT e.embedding_id, e.id, d.string_value FROM embeddings e NOT INDEXED JOIN embedding_metadata d "
            f"ON d.id = e.id AND d.key = '{DOCUMENT_KEY}' WHERE e.id >= ? AND e.segment_id = ? "
            "AND length(d.string_value) >= 3 ORDER BY e.id LIMIT 1", (start, segment)).fetchone()
        if row is not None:
            found[row[1]] = row
    return list(found.values())


def _integrity_check(db_path: Path, report: FulltextReport, scratch_dir: Path | None) -> None:
    """FTS5 'integrity-check' (index against content) on a copy of just the FTS tables.

    The command is a write, so it cannot run on the read-only file; copying the FTS tables
    costs far less than copying chroma.sqlite3 with its write log.
    """
    source = (Path(db_path) / dbfile.SQLITE_FILE).resolve()
    with tempfile.TemporaryDirectory(prefix="fts-check-", dir=scratch_dir) as scratch:
        copy = Path(scratch) / "fts.sqlite3"
        try:
            _copy_fts_tables(source, copy)
            with closing(sqlite3.connect(copy)) as conn:
                conn.execute(f"INSERT INTO {FTS_TABLE}({FTS_TABLE}) VALUES ('integrity-check')")
        except sqlite3.DatabaseError as exc:
            report.problems.append(f"{DATABASE_LABEL}: the full-text index fails FTS5's integrity-check ({exc}): "
                                   "it does not hold what its content says, so where_document answers are wrong")


def _copy_fts_tables(source: Path, copy: Path) -> None:
    """Create the FTS table with the file's own statement, then replace its shadow tables' rows."""
    with closing(sqlite3.connect(f"file:{source}?mode=ro", uri=True)) as src:
        create_sql = src.execute("SELECT sql FROM sqlite_master WHERE name = ?", (FTS_TABLE,)).fetchone()[0]
        shadows = [row[0] for row in src.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE ? ESCAPE '\\'",
            (FTS_TABLE.replace("_", "\\_") + "\\_%",))]
    with closing(sqlite3.connect(copy)) as conn:
        conn.execute(create_sql)
        conn.commit()
    # A new connection, so FTS5 reads the copied structure instead of what it cached at creation.
    with closing(sqlite3.connect(f"file:{copy}", uri=True)) as conn:
        conn.execute("ATTACH DATABASE ? AS src", (f"file:{source}?mode=ro",))
        for shadow in shadows:
            conn.execute(f'DELETE FROM main."{shadow}"')
            conn.execute(f'INSERT INTO main."{shadow}" SELECT * FROM src."{shadow}"')
        conn.commit()
        conn.execute("DETACH DATABASE src")


def _sample(ids: list[str]) -> str:
    shown = ", ".join(ids[:SAMPLE_IDS])
    return shown + (f" (+{len(ids) - SAMPLE_IDS} more)" if len(ids) > SAMPLE_IDS else "")
