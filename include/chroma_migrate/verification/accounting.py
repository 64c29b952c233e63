"""Closed-world accounting of a persistent chromadb directory, with SQL on the file alone.

Verification compares what the native reader exports; a blind spot of that reader would be
the same on both sides and hide there. This module counts the same facts a second way:
plain SQL on `chroma.sqlite3` (opened `mode=ro`), standard library only, without
`chroma_migrate.native` or exchange files. It is closed-world: every table, every segment,
every row kind must be one it knows, either carried to the target, derived by the target,
or left behind for a written reason; anything else is refused (`MigrationError`, exit 2)
rather than silently skipped.

Records are what `get()` returns: the METADATA segment's tables plus the write-log rows
above that segment's watermark. 0.x applies the log to the tables synchronously, but
1.x commits the log rows first and applies them in a second step, so a 1.x process killed
in between (measured: 1.5.9 killed during a 5,000-record `add`) leaves records that exist
only in the log until the next open. Those rows are replayed here in SQL (window functions
over the log, `json_each` over its metadata) with chromadb's record rules; the only count
that cannot be proved that way, the full-text index such records will get, is marked
`unprovable` instead of guessed.
"""

from __future__ import annotations

import json
import math
import re
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chroma_migrate.errors import MigrationError, NotAChromaDatabaseError

SQLITE_FILE = "chroma.sqlite3"
DEFAULT_TENANT = "default_tenant"
DEFAULT_DATABASE = "default_database"

CARRIED, DERIVED, LEFT_BEHIND = "carried", "derived", "left behind"
METADATA_SEGMENT = ("urn:chroma:segment/metadata/sqlite", "METADATA")
VECTOR_SEGMENT = ("urn:chroma:segment/vector/hnsw-local-persisted", "VECTOR")
DOCUMENT_KEY, URI_KEY = "chroma:document", "chroma:uri"
VALUE_TYPES = ("string", "int", "float", "bool")
FTS = "embedding_fulltext_search"
# What 0.x copies from `hnsw:*` collection metadata onto the VECTOR segment (hnsw_params.py validators).
HNSW_SEGMENT_KEYS = {"hnsw:space", "hnsw:construction_ef", "hnsw:search_ef", "hnsw:M", "hnsw:num_threads",
                     "hnsw:resize_factor", "hnsw:batch_size", "hnsw:sync_threshold"}
QUEUE_CONFIG_TYPE = "EmbeddingsQueueConfigurationInternal"
TOPIC = re.compile(r"^persistent://[^/]+/[^/]+/([0-9a-fA-F-]{36})$")
UUID_NAME = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")

# Every table a supported version writes (checked on real files of 0.4.24, 0.5.23, 0.6.3, 1.0.20,
# 1.3.7, 1.5.9), its class, why, and the columns it may have: a column outside the set would hold
# data nobody carries, so it is refused like an unknown table.
KNOWN_TABLES: dict[str, tuple[str, str, frozenset[str]]] = {
    "tenants": (CARRIED, "tenant ids; every database names one", frozenset({"id"})),
    "databases": (CARRIED, "databases by (tenant, name); the default one has a fixed id",
                  frozenset({"id", "name", "tenant_id"})),
    "collections": (CARRIED, "id, name, dimension, database and configuration (config_json_str 0.5+, "
                             "schema_str 1.3+); 0.4's topic column is derived from the id",
                    frozenset({"id", "name", "topic", "dimension", "database_id", "config_json_str",
                               "schema_str"})),
    "collection_metadata": (CARRIED, "collection metadata, hnsw:* settings included (no bool_value column "
                                     "in 0.4.24)",
                            frozenset({"collection_id", "key", "str_value", "int_value", "float_value",
                                       "bool_value"})),
    "embeddings": (CARRIED, "one row per record of a METADATA segment: the user id",
                   frozenset({"id", "segment_id", "embedding_id", "seq_id", "created_at"})),
    "embedding_metadata": (CARRIED, "scalar metadata, the document (chroma:document) and the uri (chroma:uri)",
                           frozenset({"id", "key", "string_value", "int_value", "float_value", "bool_value"})),
    "embedding_metadata_array": (CARRIED, "1.5+: one row per element of a list-valued metadata key",
                                 frozenset({"id", "key", "string_value", "int_value", "float_value",
                                            "bool_value"})),
    "embeddings_queue": (CARRIED, "the write log: rows above a METADATA segment's watermark are records not "
                                  "yet in the tables (replayed into the counts here); rows above the VECTOR "
                                  "watermark hold vectors the index lacks (the vector reader's part)",
                         frozenset({"seq_id", "created_at", "operation", "topic", "id", "vector", "encoding",
                                    "metadata"})),
    "segments": (DERIVED, "the target creates one METADATA and one VECTOR segment per collection itself",
                 frozenset({"id", "type", "scope", "topic", "collection"})),
    "segment_metadata": (DERIVED, "0.x copies the hnsw:* collection metadata onto the VECTOR segment; the "
                                  "target derives its own from the collection metadata",
                         frozenset({"segment_id", "key", "str_value", "int_value", "float_value",
                                    "bool_value"})),
    "max_seq_id": (DERIVED, "segment watermarks are positions in the source's own log; the target's segments "
                            "get positions in its own", frozenset({"segment_id", "seq_id"})),
    "migrations": (DERIVED, "schema history; the target version writes its own",
                   frozenset({"dir", "version", "filename", "sql", "hash"})),
    "embeddings_queue_config": (DERIVED, "the log's purge setting (0.5+); the target writes its own",
                                frozenset({"id", "config_json_str"})),
    FTS: (DERIVED, "the FTS5 trigram index of documents; the target indexes the documents it is given "
                   "(compared as fulltext_rows of live records)", frozenset({"string_value"})),
    "acquire_write": (LEFT_BEHIND, "1.x's write-lock row, written on every open, even a read; no data",
                      frozenset({"id", "lock_status"})),
    "maintenance_log": (LEFT_BEHIND, "history of maintenance runs (vacuum) on this file, not on the target",
                        frozenset({"id", "timestamp", "operation"})),
}
FTS_SHADOWS = {f"{FTS}_{suffix}" for suffix in ("config", "content", "data", "docsize", "idx")}
SQLITE_INTERNAL = re.compile(r"^sqlite_(sequence|stat[1-4])$")
# Tables without which a file is not a chromadb database at all.
CORE_TABLES = ("tenants", "databases", "collections", "collection_metadata", "segments", "embeddings",
               "embedding_metadata", "embeddings_queue", "max_seq_id", "migrations")


@dataclass(frozen=True)
class TableEntry:
    """One table of `sqlite_master` and what happens to it in a migration."""

    name: str
    kind: str  # CARRIED, DERIVED or LEFT_BEHIND
    reason: str
    rows: int | None = None  # counted where that is cheap


@dataclass(frozen=True)
class LeftBehind:
    """Rows or files a migration does not move, and why that loses nothing."""

    what: str
    count: int
    reason: str


@dataclass(frozen=True)
class Refusal:
    """Something that fits no known kind: the problem names table and row, the fix what to do."""

    problem: str
    fix: str


@dataclass
class CollectionAccount:
    """Counts of one collection as `get()` would return it, computed with SQL only."""

    tenant: str
    database: str
    name: str
    id: str
    records: int = 0
    documents: int = 0
    uris: int = 0
    without_metadata: int = 0  # records whose metadata is None (no keys but document/uri)
    metadata_rows: dict[str, int] = field(default_factory=dict)  # scalar rows by type, document/uri excluded
    array_rows: dict[str, int] = field(default_factory=dict)  # 1.5 list elements by type
    fulltext_rows: int | None = None  # live full-text rows holding text
    collection_metadata: dict[str, tuple[str, Any]] = field(default_factory=dict)  # key -> (type, value)
    pending_log_rows: int = 0  # log rows above the METADATA watermark, replayed into the counts
    unprovable: dict[str, str] = field(default_factory=dict)  # count -> why the tables cannot prove it

    @property
    def key(self) -> tuple[str, str, str]:
        return self.tenant, self.database, self.name

    @property
    def qualified(self) -> str:
        return _qualified(*self.key)


@dataclass
class DatabaseAccount:
    """Everything `account_database` found in one persistent directory."""

    path: str
    tenants: list[str]
    databases: list[tuple[str, str]]  # (tenant, database name)
    collections: dict[tuple[str, str, str], CollectionAccount]
    tables: list[TableEntry]
    left_behind: list[LeftBehind]
    refusals: list[Refusal]
    migrations: dict[str, int]  # highest applied migration per directory
    collection_bool_column: bool  # False for 0.4.24: collection metadata bools are stored as int
    fulltext_null_rows: int = 0  # 0.x indexes a NULL for every record without a document

    def collection(self, qualified: str) -> CollectionAccount:
        return self.collections[_split(qualified)]

    def table(self, name: str) -> TableEntry:
        return next(entry for entry in self.tables if entry.name == name)


def _qualified(tenant: str, database: str, name: str) -> str:
    """The engine's naming (dbfile.qualified_name): a bare name in the default tenant and database."""
    return name if (tenant, database) == (DEFAULT_TENANT, DEFAULT_DATABASE) else f"{tenant}/{database}/{name}"


def _split(qualified: str | tuple[str, str, str]) -> tuple[str, str, str]:
    if isinstance(qualified, tuple):
        return qualified
    parts = qualified.split("/")
    if len(parts) == 1:
        return DEFAULT_TENANT, DEFAULT_DATABASE, qualified
    if len(parts) != 3:
        raise ValueError(f"{qualified!r} is neither a collection name nor tenant/database/name")
    return parts[0], parts[1], parts[2]


def decode_watermark(raw: object) -> int | None:
    """0.4-0.6 store a segment's max seq id as 8 big-endian bytes, 1.x as an INTEGER (docs/FORMAT.md).

    The same rule as `native.write_log.decode_watermark`, restated here so this module stays
    stdlib-only (that one pulls numpy in); None means a value neither encoding explains.
    """
    if isinstance(raw, bytes) and len(raw) == 8:
        return int.from_bytes(raw, "big")
    if isinstance(raw, int) and not isinstance(raw, bool) and raw >= 0:
        return raw
    return None


@contextmanager
def _open(db_path: Path) -> Iterator[sqlite3.Connection]:
    sqlite_path = Path(db_path) / SQLITE_FILE
    if not sqlite_path.is_file():
        raise NotAChromaDatabaseError(f"{db_path} has no {SQLITE_FILE}, so it is not a ChromaDB persistent "
                                      "directory.", "Pass the folder chromadb.PersistentClient(path=...) uses.")
    try:
        with closing(sqlite3.connect(f"file:{sqlite_path.resolve()}?mode=ro", uri=True)) as conn:
            conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
            yield conn
    except sqlite3.DatabaseError as exc:
        journal = sqlite_path.with_name(SQLITE_FILE + "-journal")
        hint = (f" {journal.name} is present: an interrupted write left a hot journal a read-only reader cannot "
                "roll back." if journal.exists() else "")
        raise NotAChromaDatabaseError(
            f"{sqlite_path} cannot be accounted: {exc}.{hint}",
            "Open a copy once with the chromadb version that wrote it (it recovers the journal), or restore "
            "the database from a backup; nothing was modified.").tagged(
                "hot_journal" if hint else "sqlite_corrupt", journal if hint else sqlite_path) from exc


def account_database(path: Path | str, *, refuse: bool = True) -> DatabaseAccount:
    """Inventory, validate and count one persistent directory; raise on anything unknown unless refuse=False."""
    with _open(Path(path)) as conn:
        account = _Accountant(conn, Path(path)).run()
    if refuse:
        refuse_unknown(account)
    return account


_ACCOUNTED: dict[tuple[str, int, int], DatabaseAccount] = {}


def cached_account(path: Path | str) -> DatabaseAccount:
    """`account_database`, done once per state of the file: describing a database and verifying it
    both need its account, and the file does not change in between (same size and mtime)."""
    sqlite_path = Path(path).resolve() / SQLITE_FILE
    stat = sqlite_path.stat()
    key = (str(sqlite_path), stat.st_mtime_ns, stat.st_size)
    if key not in _ACCOUNTED:
        while len(_ACCOUNTED) >= 2:  # a source and a target at a time: memory stays flat
            _ACCOUNTED.pop(next(iter(_ACCOUNTED)))
        _ACCOUNTED[key] = account_database(path)
    return _ACCOUNTED[key]


def refuse_unknown(account: DatabaseAccount) -> None:
    """Raise one MigrationError naming every refusal; a partial migration of such a file would be a guess."""
    if not account.refusals:
        return
    sqlite_path = Path(account.path) / SQLITE_FILE
    if len(account.refusals) == 1:
        raise MigrationError(account.refusals[0].problem, account.refusals[0].fix).tagged("unknown_content",
                                                                                        sqlite_path)
    problems = " ".join(f"({number}) {item.problem}" for number, item in enumerate(account.refusals, 1))
    fixes = " ".join(dict.fromkeys(item.fix for item in account.refusals))
    raise MigrationError(f"{account.path} holds {len(account.refusals)} things no known chromadb version "
                         f"writes: {problems}", fixes).tagged("unknown_content", sqlite_path)


_FIX_UNKNOWN = ("Find out which tool wrote it; the file may come from an unsupported chromadb version or have "
                "been modified. Nothing is migrated until every table and row is one this package knows.")
_FIX_DAMAGED = ("The file is inconsistent; open a copy with the chromadb version that wrote it to see whether it "
                "still reads, or restore the database from a backup.")


class _Accountant:
    """One pass over one file; collects refusals instead of stopping at the first."""

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self.conn = conn
        self.path = path
        self.refusals: list[Refusal] = []
        self.left: list[LeftBehind] = []
        self.counts: dict[str, int] = {}
        self.deleted_segments: set[str] = set()  # segment ids only a left-behind watermark row still names
        self.columns: dict[str, set[str]] = {}  # known table -> its columns in this file
        self.segments: dict[str, tuple[str, str]] = {}  # segment id -> (scope, collection id)

    def refuse(self, problem: str, fix: str = _FIX_UNKNOWN) -> None:
        self.refusals.append(Refusal(problem, fix))

    def leave(self, what: str, count: int, reason: str) -> None:
        if count:
            self.left.append(LeftBehind(what, count, reason))

    def rows(self, sql: str, params: tuple[Any, ...] | dict[str, Any] = ()) -> list[tuple]:
        try:
            return self.conn.execute(sql, params).fetchall()
        except sqlite3.DatabaseError as exc:
            raise NotAChromaDatabaseError(f"{self.path / SQLITE_FILE}: reading failed ({exc}) on: {sql.strip()[:120]}",
                                          _FIX_DAMAGED).tagged("sqlite_corrupt", self.path / SQLITE_FILE) from exc

    def example(self, sql: str, params: tuple[Any, ...] = ()) -> tuple:
        """The first row of a query that a count already said has rows. A file whose count and rows
        disagree (a damaged page in a table or in one of its indexes) is refused as damaged."""
        rows = self.rows(sql, params)
        if not rows:
            raise NotAChromaDatabaseError(
                f"{self.path / SQLITE_FILE}: a count and the rows it counts disagree on: {sql.strip()[:120]} "
                "(a damaged page in a table or its index)", _FIX_DAMAGED).tagged("sqlite_corrupt",
                                                                                 self.path / SQLITE_FILE)
        return rows[0]

    def run(self) -> DatabaseAccount:
        tables = self.inventory()
        self.columns = {name: {row[1] for row in self.rows(f"PRAGMA table_info('{name}')")}
                        for name in tables if name in KNOWN_TABLES}
        migrations = {directory: int(version) for directory, version in
                      self.rows("SELECT dir, MAX(version) FROM migrations GROUP BY dir")}
        tenants, databases, collections = self.structure()
        watermarks = self.watermarks()
        log = self.log_summary(collections, watermarks)
        self.segment_settings()
        self.queue_config(tables)
        accounts = self.records(collections, watermarks, log, "embedding_metadata_array" in tables)
        self.folders()
        entries = [TableEntry(name, kind, reason, self.counts.get(name)) for name, (kind, reason) in tables.items()]
        return DatabaseAccount(
            path=str(self.path), tenants=sorted(tenants), databases=sorted(databases.values()),
            collections=dict(sorted(accounts.items())), tables=entries, left_behind=self.left,
            refusals=self.refusals, migrations=migrations,
            collection_bool_column="bool_value" in self.columns["collection_metadata"],
            fulltext_null_rows=self.counts.get("fulltext_null", 0))

    # --- tables ------------------------------------------------------------------------------

    def inventory(self) -> dict[str, tuple[str, str]]:
        """Class every sqlite_master entry; unknown tables, views and triggers are refusals."""
        found: dict[str, tuple[str, str]] = {}
        for kind, name, table, sql in self.rows("SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY name"):
            if kind == "index":
                continue  # indexes of known tables: the target builds its own; of unknown ones, refused below
            if kind in ("view", "trigger"):
                self.refuse(f"sqlite_master holds a {kind} {name!r} (on {table!r}); no chromadb version writes "
                            "views or triggers, and one could change what the tables mean.")
                continue
            virtual = (sql or "").upper().startswith("CREATE VIRTUAL TABLE")
            if name in KNOWN_TABLES and virtual == (name == FTS):
                found[name] = KNOWN_TABLES[name][:2]
            elif name in FTS_SHADOWS and not virtual:
                found[name] = (DERIVED, f"FTS5 shadow table of {FTS}; SQLite maintains it")
            elif SQLITE_INTERNAL.match(name):
                found[name] = (DERIVED, "SQLite's own bookkeeping (AUTOINCREMENT counters, ANALYZE statistics)")
            else:
                what = "virtual table" if virtual else "table"
                self.refuse(f"chroma.sqlite3 holds an unknown {what} {name!r}; no supported chromadb version "
                            "(0.4.24 .. 1.5.9) writes it, so its rows would be lost or misread.")
        missing = [name for name in CORE_TABLES if name not in found]
        if missing:
            raise NotAChromaDatabaseError(
                f"{self.path / SQLITE_FILE} lacks the chromadb table(s) {', '.join(missing)}, so it is not a "
                "ChromaDB persistent database.", "Pass the folder chromadb.PersistentClient(path=...) uses.").tagged(
                    "not_a_database", self.path / SQLITE_FILE)
        if FTS in found and not set(found) >= FTS_SHADOWS:
            self.refuse(f"{FTS} lacks shadow tables {sorted(FTS_SHADOWS - set(found))}; the full-text index is "
                        "damaged.", _FIX_DAMAGED)
        return found

    def check_columns(self) -> None:
        for name, present in self.columns.items():
            extra = sorted(present - KNOWN_TABLES[name][2])
            if extra:
                self.refuse(f"table {name!r} has column(s) {', '.join(extra)} no chromadb version writes; their "
                            "values would not be carried.")

    # --- tenants, databases, collections, segments ----------------------------------------------

    def structure(self) -> tuple[set[str], dict[str, tuple[str, str]], dict[str, dict[str, Any]]]:
        self.check_columns()
        tenants = {row[0] for row in self.rows("SELECT id FROM tenants")}
        databases: dict[str, tuple[str, str]] = {}
        for db_id, name, tenant in self.rows("SELECT id, name, tenant_id FROM databases"):
            if tenant not in tenants:
                self.refuse(f"databases row {db_id!r} ({name!r}) names tenant {tenant!r}, which has no tenants row.",
                            _FIX_DAMAGED)
            databases[db_id] = (tenant, name)
        self.counts.update(tenants=len(tenants), databases=len(databases))
        topic_col = "topic" if "topic" in self.columns["collections"] else "NULL"
        collections: dict[str, dict[str, Any]] = {}
        for cid, name, db_id, topic in self.rows(f"SELECT id, name, database_id, {topic_col} FROM collections"):
            if db_id not in databases:
                self.refuse(f"collections row {cid!r} ({name!r}) names database {db_id!r}, which has no databases "
                            "row.", _FIX_DAMAGED)
                continue
            if topic is not None and not (TOPIC.match(topic) and topic.endswith(cid)):
                self.refuse(f"collections row {cid!r} ({name!r}) has topic {topic!r}, not persistent://…/<its id>.")
            collections[cid] = {"key": (*databases[db_id], name), "segments": {}}
        self.counts["collections"] = len(collections)
        segment_rows = self.rows("SELECT id, type, scope, collection FROM segments")
        self.counts["segments"] = len(segment_rows)
        for sid, seg_type, scope, cid in segment_rows:
            if (seg_type, scope) not in (METADATA_SEGMENT, VECTOR_SEGMENT):
                self.refuse(f"segments row {sid!r} has type {seg_type!r} and scope {scope!r}; a persistent "
                            f"directory only holds {METADATA_SEGMENT} and {VECTOR_SEGMENT} segments.")
                continue
            if cid not in collections:
                self.refuse(f"segments row {sid!r} ({scope}) names collection {cid!r}, which has no collections row.",
                            _FIX_DAMAGED)
                continue
            collections[cid]["segments"].setdefault(scope, []).append(sid)
            self.segments[sid] = (scope, cid)
        for cid, item in collections.items():
            scoped = item["segments"]
            if len(scoped.get("METADATA", [])) != 1 or len(scoped.get("VECTOR", [])) != 1:
                counts = {scope: len(scoped.get(scope, [])) for scope in ("METADATA", "VECTOR")}
                self.refuse(f"collection {_qualified(*item['key'])!r} ({cid}) has {counts['METADATA']} METADATA and "
                            f"{counts['VECTOR']} VECTOR segments in table segments; every chromadb version makes "
                            "exactly one of each.", _FIX_DAMAGED)
        return tenants, databases, collections

    def watermarks(self) -> dict[str, int]:
        """Decoded max_seq_id per existing segment; rows of deleted segments are left behind."""
        found: dict[str, int] = {}
        orphans = 0
        for sid, raw in self.rows("SELECT segment_id, seq_id FROM max_seq_id"):
            value = decode_watermark(raw)
            if value is None:
                self.refuse(f"max_seq_id row of segment {sid!r} holds {raw!r}, neither an 8-byte big-endian BLOB "
                            "(0.x) nor a non-negative INTEGER (1.x).", _FIX_DAMAGED)
            elif sid in self.segments:
                found[sid] = value
            else:
                orphans += 1
                self.deleted_segments.add(sid)
        self.leave("max_seq_id rows of segments no segments row names", orphans,
                   "the watermark of a deleted collection's segment: 0.4-0.6 delete_collection leaves it")
        return found

    def log_summary(self, collections: dict[str, dict[str, Any]], watermarks: dict[str, int],
                    ) -> dict[str, dict[str, Any]]:
        """One scan of the log: op codes, topics, and per collection the rows above its METADATA watermark."""
        per_collection: dict[str, dict[str, Any]] = {}
        total = 0
        for topic, operation, count, top in self.rows(
                "SELECT topic, operation, COUNT(*), MAX(seq_id) FROM embeddings_queue GROUP BY topic, operation"):
            total += count
            if not isinstance(operation, int) or isinstance(operation, bool) or not 0 <= operation <= 3:
                first = self.rows("SELECT MIN(seq_id) FROM embeddings_queue WHERE topic = ? AND operation IS ?",
                                  (topic, operation))[0][0]
                self.refuse(f"embeddings_queue has {count} row(s) with operation {operation!r} (first seq_id {first}, "
                            f"topic {topic!r}); chromadb writes only 0 ADD, 1 UPDATE, 2 UPSERT, 3 DELETE.")
                continue
            match = TOPIC.match(topic) if isinstance(topic, str) else None  # a BLOB topic is no chromadb's
            if not match:
                self.refuse(f"embeddings_queue has {count} row(s) with topic {topic!r}, not "
                            "persistent://<tenant>/<namespace>/<collection id>.")
                continue
            cid = match.group(1)
            item = per_collection.setdefault(cid, {"topic": topic, "rows": 0, "top": 0})
            if item["topic"] != topic:
                self.refuse(f"embeddings_queue rows of collection {cid} use two topics, {item['topic']!r} and "
                            f"{topic!r}; chromadb writes one per collection.")
            item["rows"] += count
            item["top"] = max(item["top"], top)
        self.counts["embeddings_queue"] = total
        for cid, item in per_collection.items():
            if cid not in collections:
                self.leave(f"embeddings_queue rows of collection {cid}, which no collections row names", item["rows"],
                           "write-log rows of a deleted collection; get() cannot reach them")
                continue
            metadata_segment = (collections[cid]["segments"].get("METADATA") or [None])[0]
            item["watermark"] = watermarks.get(metadata_segment, 0)
        applied = 0
        for item in per_collection.values():
            if "watermark" in item and item["top"] > item["watermark"]:
                item["pending"] = self.rows("SELECT COUNT(*) FROM embeddings_queue WHERE topic = ? AND seq_id > ?",
                                            (item["topic"], item["watermark"]))[0][0]
            if "watermark" in item:
                applied += item["rows"] - item.get("pending", 0)
        self.leave("embeddings_queue rows at or below their collection's METADATA watermark", applied,
                   "already applied to embeddings/embedding_metadata (0.4 keeps the whole history; the target "
                   "writes its own log); vectors among them that the index lacks are the vector reader's part")
        return per_collection

    def segment_settings(self) -> None:
        orphans = 0
        for sid, key in self.rows("SELECT segment_id, key FROM segment_metadata"):
            if sid not in self.segments:
                orphans += 1
            elif key not in HNSW_SEGMENT_KEYS or self.segments[sid][0] != "VECTOR":
                self.refuse(f"segment_metadata row ({sid!r}, {key!r}) is not one of the hnsw:* settings 0.x copies "
                            "onto a VECTOR segment.")
        self.leave("segment_metadata rows of segments no segments row names", orphans,
                   "settings of a deleted segment")

    def queue_config(self, tables: dict[str, tuple[str, str]]) -> None:
        if "embeddings_queue_config" not in tables:
            return
        for row_id, text in self.rows("SELECT id, config_json_str FROM embeddings_queue_config"):
            try:
                config = json.loads(text)
            except (TypeError, json.JSONDecodeError):
                config = None
            known = (isinstance(config, dict) and config.get("_type") == QUEUE_CONFIG_TYPE
                     and set(config) <= {"_type", "automatically_purge"}
                     and isinstance(config.get("automatically_purge", True), bool))
            if row_id != 1 or not known:
                self.refuse(f"embeddings_queue_config row {row_id!r} holds {text!r}; chromadb writes one row 1 "
                            f'{{"automatically_purge": true|false, "_type": "{QUEUE_CONFIG_TYPE}"}}.')

    # --- records ---------------------------------------------------------------------------------

    def records(self, collections: dict[str, dict[str, Any]], watermarks: dict[str, int],
                log: dict[str, dict[str, Any]], with_arrays: bool) -> dict[tuple[str, str, str], CollectionAccount]:
        live = {sid: cid for sid, (scope, cid) in self.segments.items() if scope == "METADATA"}
        per_segment = self.segment_counts(live, with_arrays)
        fulltext = self.fulltext(live)
        metadata = self.collection_metadata(collections)
        accounts: dict[tuple[str, str, str], CollectionAccount] = {}
        for cid, item in collections.items():
            tenant, database, name = item["key"]
            account = CollectionAccount(tenant, database, name, cid, collection_metadata=metadata.get(cid, {}))
            sids = item["segments"].get("METADATA", [])
            if len(sids) == 1:
                sid = sids[0]
                counts = per_segment.get(sid, _Counts())
                pending = log.get(cid, {}).get("pending", 0)
                if pending:
                    counts = self.replay(sid, log[cid]["topic"], log[cid]["watermark"], counts, with_arrays)
                    account.pending_log_rows = pending
                    account.unprovable["fulltext_rows"] = (
                        f"{pending} write-log row(s) above the METADATA watermark are not applied yet; chromadb "
                        "indexes their documents when it applies them")
                else:
                    account.fulltext_rows = fulltext.get(sid, 0)
                counts.fill(account)
            accounts[item["key"]] = account
        return accounts

    def segment_counts(self, live: dict[str, str], with_arrays: bool) -> dict[str, _Counts]:
        """Per METADATA segment: records, metadata rows by type, documents, uris, records without metadata."""
        counts: dict[str, _Counts] = {}
        for sid, records in self.rows("SELECT segment_id, COUNT(*) FROM embeddings GROUP BY segment_id"):
            counts[sid] = _Counts(records=records)
        self.counts["embeddings"] = sum(c.records for c in counts.values())
        dead = {sid: c.records for sid, c in counts.items() if sid not in live}
        for sid, records in dead.items():
            if sid in self.segments:
                self.refuse(f"embeddings holds {records} row(s) in segment {sid!r}, a VECTOR segment; records "
                            "belong to a collection's METADATA segment.", _FIX_DAMAGED)
            elif sid not in self.deleted_segments:
                example = self.example("SELECT id, embedding_id FROM embeddings WHERE segment_id = ? LIMIT 1", (sid,))
                self.refuse(f"embeddings holds {records} row(s) in segment {sid!r} that no live collection owns (e.g. "
                            f"row {example[0]}, id {example[1]!r}); no segments row names it and no watermark marks "
                            "it as a deleted collection's.", _FIX_DAMAGED)
        self.leave("embeddings rows of deleted segments", sum(dead[s] for s in dead if s in self.deleted_segments),
                   "records of a deleted collection: 0.5/0.6 delete_collection leaves its METADATA segment's rows "
                   "(recognised by the watermark row it also leaves)")
        deleted = [s for s in dead if s in self.deleted_segments]
        # Records with any metadata row and with a metadata key besides document and uri, per segment;
        # every distinct metadata id not among the former has no embeddings row (cheaper than a probe per row).
        with_any = 0
        for sid, any_rows, with_keys in self.rows(f"""
                SELECT e.segment_id, SUM(EXISTS (SELECT 1 FROM embedding_metadata m WHERE m.id = e.id)),
                       SUM(EXISTS (SELECT 1 FROM embedding_metadata m WHERE m.id = e.id
                                   AND m.key NOT IN ('{DOCUMENT_KEY}', '{URI_KEY}')))
                FROM embeddings e GROUP BY e.segment_id"""):
            with_any += any_rows
            if sid in live:
                counts[sid].with_keys += with_keys
        distinct = self.rows("SELECT COUNT(*) FROM (SELECT DISTINCT id FROM embedding_metadata)")[0][0]
        if distinct > with_any:
            example = self.example("SELECT m.id, m.key FROM embedding_metadata m WHERE NOT EXISTS "
                                   "(SELECT 1 FROM embeddings e WHERE e.id = m.id) LIMIT 1")
            self.refuse(f"embedding_metadata holds rows of {distinct - with_any} id(s) that have no embeddings row "
                        f"(e.g. id {example[0]}, key {example[1]!r}); metadata always belongs to a record.",
                        _FIX_DAMAGED)
        for sid, values in self.value_rows("embedding_metadata", list(counts), orphans_checked=True).items():
            if sid in deleted:
                self.leave("embedding_metadata rows of deleted segments' records", values[0],
                           "metadata of a deleted collection's records (0.5/0.6)")
            elif sid in live:
                if _bad_values(values):
                    self.refuse(self.bad_rows_problem("embedding_metadata", sid), _FIX_UNKNOWN)
                counts[sid].add_values(values)
        if with_arrays:
            self.array_counts(counts, live, deleted)
        for c in counts.values():
            c.without = c.records - c.with_keys
        return counts

    def value_rows(self, table: str, owners: list[str], *, orphans_checked: bool = False,
                   ) -> dict[str | None, tuple[int, ...]]:
        """_VALUE_COUNTS of a value table per owning segment (None: rows whose id has no embeddings row).

        The hot query of the whole account (one row per metadata value): it scans the table in
        rowid order, because fetching the values through the (id, key) index costs twice as much.
        With one segment holding records, the usual shape, no join is needed, only an orphan check.
        """
        if len(owners) > 1:
            return {sid: tuple(values) for sid, *values in self.rows(
                f"SELECT e.segment_id, {_VALUE_COUNTS} FROM {table} m NOT INDEXED "
                f"LEFT JOIN embeddings e ON e.id = m.id GROUP BY e.segment_id")}
        values = self.rows(f"SELECT {_VALUE_COUNTS} FROM {table} m")[0]
        if not values[0]:
            return {}
        orphans = 0 if orphans_checked else self.rows(
            f"SELECT COUNT(*) FROM {table} m WHERE NOT EXISTS (SELECT 1 FROM embeddings e WHERE e.id = m.id)")[0][0]
        if orphans or not owners:
            return {None: (orphans, *values[1:])}
        return {owners[0]: tuple(values)}

    def array_counts(self, counts: dict[str, _Counts], live: dict[str, str], deleted: list[str]) -> None:
        for sid, values in self.value_rows("embedding_metadata_array", list(counts)).items():
            if sid is None:
                self.refuse("embedding_metadata_array holds row(s) whose id has no embeddings row; list metadata "
                            "always belongs to a record.", _FIX_DAMAGED)
            elif sid in deleted:
                self.leave("embedding_metadata_array rows of deleted segments' records", values[0],
                           "list metadata of a deleted collection's records")
            elif sid in live:
                if _bad_values(values) or values[6] or values[7]:  # a document or uri is never a list
                    self.refuse(self.bad_rows_problem("embedding_metadata_array", sid), _FIX_UNKNOWN)
                counts[sid].add_values(values, arrays=True)
        for sid, only_lists in self.rows(f"""
                SELECT e.segment_id, COUNT(*) FROM embeddings e
                WHERE EXISTS (SELECT 1 FROM embedding_metadata_array a WHERE a.id = e.id)
                  AND NOT EXISTS (SELECT 1 FROM embedding_metadata m WHERE m.id = e.id
                                  AND m.key NOT IN ('{DOCUMENT_KEY}', '{URI_KEY}'))
                GROUP BY e.segment_id"""):
            if sid in live:
                counts[sid].with_keys += only_lists  # a record whose only metadata is lists has metadata

    def bad_rows_problem(self, table: str, sid: str) -> str:
        example = self.rows(f"""SELECT e.embedding_id, m.key FROM {table} m JOIN embeddings e ON e.id = m.id
            WHERE e.segment_id = ? AND ({_bad_row_sql('m')} OR (m.key LIKE 'chroma:%' AND m.key NOT IN
            ('{DOCUMENT_KEY}', '{URI_KEY}'))) LIMIT 1""", (sid,))
        record, key = example[0] if example else ("?", "?")
        return (f"{table} row (record {record!r}, key {key!r}) of segment {sid!r} fits no known kind: a row holds "
                "exactly one of string_value/int_value/float_value/bool_value, the document and uri are strings, "
                f"and chromadb reserves no other chroma:* key than {DOCUMENT_KEY} and {URI_KEY}.")

    def fulltext(self, live: dict[str, str]) -> dict[str, int]:
        """Live full-text rows with text, per METADATA segment; 0.x's NULL rows and rows of deleted records apart."""
        if FTS not in self.columns:
            return {}
        found: dict[str, int] = {}
        dead = nulls = 0
        for sid, rows, with_text in self.rows(f"""
                SELECT e.segment_id, COUNT(*), COUNT(f.string_value) FROM {FTS} f
                LEFT JOIN embeddings e ON e.id = f.rowid GROUP BY e.segment_id"""):
            if sid in live:
                found[sid] = with_text
                nulls += rows - with_text
            else:
                dead += rows
        self.counts["fulltext_null"] = nulls
        self.counts[FTS] = sum(found.values()) + nulls + dead
        self.leave(f"{FTS} rows of records that no longer exist", dead,
                   "0.4 leaves a deleted record's document in the index; 0.5/0.6 keep a deleted collection's")
        return found

    def collection_metadata(self, collections: dict[str, dict[str, Any]]) -> dict[str, dict[str, tuple[str, Any]]]:
        names = [c for c in ("str_value", "int_value", "float_value", "bool_value")
                 if c in self.columns["collection_metadata"]]
        found: dict[str, dict[str, tuple[str, Any]]] = {}
        orphans = 0
        for cid, key, *values in self.rows(f"SELECT collection_id, key, {', '.join(names)} FROM collection_metadata"):
            if cid not in collections:
                orphans += 1
                continue
            typed = [(name, value) for name, value in zip(names, values, strict=True) if value is not None]
            if len(typed) != 1:
                self.refuse(f"collection_metadata row ({cid!r}, {key!r}) holds {len(typed)} values; chromadb writes "
                            "exactly one.", _FIX_DAMAGED)
                continue
            column, value = typed[0]
            kind = {"str_value": "string", "int_value": "int", "float_value": "float", "bool_value": "bool"}[column]
            found.setdefault(cid, {})[key] = (kind, bool(value) if kind == "bool" else value)
        self.leave("collection_metadata rows of collections no collections row names", orphans,
                   "metadata of a deleted collection: 0.x delete_collection leaves it")
        return found

    def replay(self, sid: str, topic: str, watermark: int, table: _Counts, with_arrays: bool) -> _Counts:
        """The counts once the log rows above the watermark are applied, chromadb's way, in SQL.

        ADD creates an absent id (and is ignored for a present one), UPSERT creates or merges,
        UPDATE merges into a present id, DELETE removes; a merge overwrites the keys it names and
        a null value removes its key. The records these rows touch are taken out of the table's
        counts and put back as the log leaves them.
        """
        bad = self.rows("SELECT seq_id FROM embeddings_queue WHERE topic = ? AND seq_id > ? AND metadata IS NOT NULL "
                        "AND NOT (json_valid(metadata) AND json_type(metadata) = 'object') LIMIT 1",
                        (topic, watermark))
        if bad:
            self.refuse(f"embeddings_queue row {bad[0][0]} ({topic!r}) holds metadata that is not a JSON object.",
                        _FIX_DAMAGED)
            return table
        params = {"topic": topic, "wm": watermark, "seg": sid}
        array_table = "embedding_metadata_array" if with_arrays else None
        before = self._touched_table_counts(params, array_table)
        after = self._replayed_counts(params, array_table)
        result = _Counts(records=table.records - before.records + after.records)
        result.documents = table.documents - before.documents + after.documents
        result.uris = table.uris - before.uris + after.uris
        result.with_keys = table.with_keys - before.with_keys + after.with_keys
        for kind in VALUE_TYPES:
            result.metadata[kind] = table.metadata.get(kind, 0) - before.metadata.get(kind, 0) + after.metadata.get(
                kind, 0)
            result.arrays[kind] = table.arrays.get(kind, 0) - before.arrays.get(kind, 0) + after.arrays.get(kind, 0)
        result.without = result.records - result.with_keys
        return result

    def _touched_table_counts(self, params: dict[str, Any], array_table: str | None) -> _Counts:
        touched = ("SELECT e.id FROM embeddings e WHERE e.segment_id = :seg AND e.embedding_id IN "
                   "(SELECT q.id FROM embeddings_queue q WHERE q.topic = :topic AND q.seq_id > :wm)")
        counts = _Counts(records=self.rows(f"SELECT COUNT(*) FROM ({touched})", params)[0][0])
        docs, uris, s, i, f, b, with_keys = self.rows(f"""
            SELECT SUM(r.docs), SUM(r.uris), SUM(r.s), SUM(r.i), SUM(r.f), SUM(r.b), SUM(r.keys > 0)
            FROM (SELECT m.id, {_scalar_sql('m')} FROM embedding_metadata m WHERE m.id IN ({touched})
                  GROUP BY m.id) r""", params)[0]
        counts.add(docs, uris, {"string": s, "int": i, "float": f, "bool": b}, with_keys)
        if array_table:
            s, i, f, b, only_lists = self.rows(f"""
                SELECT SUM(r.s), SUM(r.i), SUM(r.f), SUM(r.b),
                       SUM(NOT EXISTS (SELECT 1 FROM embedding_metadata m WHERE m.id = r.id
                                       AND m.key NOT IN ('{DOCUMENT_KEY}', '{URI_KEY}')))
                FROM (SELECT a.id, {_scalar_sql('a')} FROM {array_table} a WHERE a.id IN ({touched})
                      GROUP BY a.id) r""", params)[0]
            counts.add_arrays({"string": s, "int": i, "float": f, "bool": b}, only_lists)
        return counts

    def _replayed_counts(self, params: dict[str, Any], array_table: str | None) -> _Counts:
        base_arrays = (f"""UNION ALL
              SELECT f.rid, a.key, {_row_type_sql('a')}, 1 FROM final f
              JOIN embeddings e ON e.segment_id = :seg AND e.embedding_id = f.rid
              JOIN {array_table} a ON a.id = e.id
              WHERE f.present AND f.from_table
                AND NOT EXISTS (SELECT 1 FROM last_kv l WHERE l.rid = f.rid AND l.key = a.key)"""
                       if array_table else "")
        sql = f"""
        WITH log AS (
          SELECT q.seq_id AS seq, q.operation AS op, q.id AS rid, COALESCE(q.metadata, '{{}}') AS meta,
                 EXISTS (SELECT 1 FROM embeddings e WHERE e.segment_id = :seg AND e.embedding_id = q.id) AS in_table
          FROM embeddings_queue q WHERE q.topic = :topic AND q.seq_id > :wm),
        epochs AS (  -- epoch: how many DELETEs of this id came before the row
          SELECT log.*, COUNT(CASE WHEN op = 3 THEN 1 END) OVER (PARTITION BY rid ORDER BY seq
                   ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS epoch,
                 COUNT(CASE WHEN op = 3 THEN 1 END) OVER (PARTITION BY rid) AS deletes
          FROM log),
        staged AS (  -- whether the id exists just before the row
          SELECT epochs.*, CASE WHEN epoch = 0 THEN in_table OR creates > 0 ELSE creates > 0 END AS existed
          FROM (SELECT epochs.*, COUNT(CASE WHEN op IN (0, 2) THEN 1 END) OVER (PARTITION BY rid, epoch
                         ORDER BY seq ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS creates
                FROM epochs) epochs),
        effective AS (  -- rows after the last DELETE that set values: the creating row and the merges after it
          SELECT * FROM staged WHERE epoch = deletes
            AND ((op IN (0, 2) AND NOT existed) OR (op IN (1, 2) AND existed))),
        final AS (
          SELECT rid, MAX(epoch = deletes AND (op IN (0, 2) OR in_table AND deletes = 0)) AS present,
                 MAX(deletes = 0 AND in_table) AS from_table
          FROM staged GROUP BY rid),
        last_kv AS (
          SELECT rid, key, type, value FROM (
            SELECT r.rid, j.key, j.type, j.value,
                   ROW_NUMBER() OVER (PARTITION BY r.rid, j.key ORDER BY r.seq DESC) AS newest
            FROM effective r, json_each(r.meta) j) WHERE newest = 1),
        final_kv(rid, key, type, element) AS (  -- (record, key, value type, is a list element)
          SELECT l.rid, l.key, CASE l.type WHEN 'text' THEN 'string' WHEN 'integer' THEN 'int'
                 WHEN 'real' THEN 'float' WHEN 'true' THEN 'bool' WHEN 'false' THEN 'bool' ELSE l.type END, 0
          FROM last_kv l JOIN final f ON f.rid = l.rid WHERE f.present AND l.type NOT IN ('null', 'array')
          UNION ALL
          SELECT l.rid, l.key, CASE j.type WHEN 'text' THEN 'string' WHEN 'integer' THEN 'int'
                 WHEN 'real' THEN 'float' WHEN 'true' THEN 'bool' WHEN 'false' THEN 'bool' ELSE j.type END, 1
          FROM last_kv l JOIN final f ON f.rid = l.rid, json_each(l.value) j WHERE f.present AND l.type = 'array'
          UNION ALL
          SELECT f.rid, m.key, {_row_type_sql('m')}, 0 FROM final f
          JOIN embeddings e ON e.segment_id = :seg AND e.embedding_id = f.rid
          JOIN embedding_metadata m ON m.id = e.id
          WHERE f.present AND f.from_table
            AND NOT EXISTS (SELECT 1 FROM last_kv l WHERE l.rid = f.rid AND l.key = m.key)
          {base_arrays})
        SELECT 'records', NULL, 0, COUNT(*) FROM final WHERE present
        UNION ALL
        SELECT 'with_keys', NULL, 0, COUNT(DISTINCT rid) FROM final_kv
          WHERE key NOT IN ('{DOCUMENT_KEY}', '{URI_KEY}')
        UNION ALL
        SELECT CASE WHEN key IN ('{DOCUMENT_KEY}', '{URI_KEY}') THEN key ELSE '' END, type, element, COUNT(*)
        FROM final_kv GROUP BY 1, 2, 3"""
        counts = _Counts()
        for label, kind, element, number in self.rows(sql, params):
            if label == "records":
                counts.records = number
            elif label == "with_keys":
                counts.with_keys = number
            elif label in (DOCUMENT_KEY, URI_KEY):
                if kind != "string" or element:
                    self.refuse(f"embeddings_queue rows of segment {params['seg']!r} set {label} to a {kind} "
                                f"{'list' if element else 'value'}; chromadb writes a string.", _FIX_DAMAGED)
                if label == DOCUMENT_KEY:
                    counts.documents += number
                else:
                    counts.uris += number
            elif kind not in VALUE_TYPES:
                self.refuse(f"embeddings_queue rows of segment {params['seg']!r} hold a metadata value of JSON type "
                            f"{kind!r}; chromadb writes strings, numbers, booleans and (1.5) lists.",
                            _FIX_UNKNOWN)
            else:
                target = counts.arrays if element else counts.metadata
                target[kind] = target.get(kind, 0) + number
        return counts

    # --- the directory ---------------------------------------------------------------------------

    def folders(self) -> None:
        """Segment folders: the VECTOR segments' own, a deleted collection's (left behind), anything else."""
        orphan_folders, strangers = 0, []
        for entry in sorted(self.path.iterdir()):
            if entry.name == SQLITE_FILE:
                continue
            if entry.is_dir() and UUID_NAME.match(entry.name):
                if self.segments.get(entry.name, ("",))[0] != "VECTOR":
                    orphan_folders += 1
            elif entry.name == SQLITE_FILE + "-journal":
                self.leave(f"{entry.name} (a journal SQLite did not need to roll back)", 1,
                           "a cold rollback journal of an interrupted write; the committed state was read")
            elif entry.name in (SQLITE_FILE + "-wal", SQLITE_FILE + "-shm"):
                self.refuse(f"{entry.name} is present: chromadb uses a rollback journal, and a write-ahead log "
                            "beside the file may hold committed rows a read-only reader would miss.",
                            "Open a copy with the chromadb version that wrote it and close it cleanly "
                            "(that checkpoints the log), then migrate the copy.")
            else:
                strangers.append(entry.name)
        self.leave("segment folders no segments row names as a VECTOR segment", orphan_folders,
                   "chromadb (0.5+) leaves a deleted collection's index folder behind; no segment reads it")
        self.leave(f"other entries of the directory ({', '.join(strangers[:5])})", len(strangers),
                   "not written by chromadb; not part of the database")


# --- counting helpers ---------------------------------------------------------------------------

def _bad_row_sql(t: str) -> str:
    """A value row that is not exactly one value, or a document/uri that is not a string."""
    return (f"(({t}.string_value IS NOT NULL) + ({t}.int_value IS NOT NULL) + ({t}.float_value IS NOT NULL)"
            f" + ({t}.bool_value IS NOT NULL) != 1"
            f" OR ({t}.key IN ('{DOCUMENT_KEY}', '{URI_KEY}') AND {t}.string_value IS NULL))")


# Per value table (alias m): rows, non-null string/int/float/bool values, rows holding any value, documents,
# uris, and rows in chromadb's reserved chroma:* range that are not a string document or uri.
_VALUE_COUNTS = (
    "COUNT(*), COUNT(m.string_value), COUNT(m.int_value), COUNT(m.float_value), COUNT(m.bool_value), "
    "COUNT(COALESCE(m.string_value, m.int_value, m.float_value, m.bool_value)), "
    f"SUM(m.key = '{DOCUMENT_KEY}'), SUM(m.key = '{URI_KEY}'), "
    f"SUM(m.key >= 'chroma:' AND m.key < 'chroma;' AND (m.key NOT IN ('{DOCUMENT_KEY}', '{URI_KEY}') "
    "OR m.string_value IS NULL))")


def _bad_values(values: tuple[int, ...]) -> int:
    """Rows without a value, extra values in a row, and reserved keys, from _VALUE_COUNTS."""
    rows, s, i, f, b, with_value, _docs, _uris, reserved = (v or 0 for v in values)
    return (rows - with_value) + (s + i + f + b - with_value) + reserved


def _row_type_sql(t: str) -> str:
    """A value row's type in chromadb's precedence: string, int, float, bool."""
    return (f"CASE WHEN {t}.string_value IS NOT NULL THEN 'string' WHEN {t}.int_value IS NOT NULL THEN 'int' "
            f"WHEN {t}.float_value IS NOT NULL THEN 'float' WHEN {t}.bool_value IS NOT NULL THEN 'bool' "
            "ELSE 'none' END")


def _scalar_sql(t: str) -> str:
    """Per-record aggregates of value rows (used inside GROUP BY id)."""
    user = f"{t}.key NOT IN ('{DOCUMENT_KEY}', '{URI_KEY}')"
    kind = _row_type_sql(t)
    return (f"SUM({t}.key = '{DOCUMENT_KEY}') AS docs, SUM({t}.key = '{URI_KEY}') AS uris, "
            f"SUM({user} AND {kind} = 'string') AS s, SUM({user} AND {kind} = 'int') AS i, "
            f"SUM({user} AND {kind} = 'float') AS f, SUM({user} AND {kind} = 'bool') AS b, "
            f"SUM({_bad_row_sql(t)}) AS bad, "
            f"SUM({t}.key LIKE 'chroma:%' AND {user}) AS reserved, SUM({user}) AS keys")


@dataclass
class _Counts:
    records: int = 0
    documents: int = 0
    uris: int = 0
    with_keys: int = 0  # records with at least one metadata key besides document and uri
    without: int = 0
    metadata: dict[str, int] = field(default_factory=dict)
    arrays: dict[str, int] = field(default_factory=dict)

    def add(self, docs: int | None, uris: int | None, by_type: dict[str, int | None], with_keys: int | None) -> None:
        self.documents += docs or 0
        self.uris += uris or 0
        self.with_keys += with_keys or 0
        for kind, number in by_type.items():
            self.metadata[kind] = self.metadata.get(kind, 0) + (number or 0)

    def add_values(self, values: tuple[int, ...], arrays: bool = False) -> None:
        """Add _VALUE_COUNTS; the document and uri are string rows, not metadata."""
        _rows, s, i, f, b, _with_value, docs, uris, _reserved = (v or 0 for v in values)
        target = self.arrays if arrays else self.metadata
        if not arrays:
            self.documents += docs
            self.uris += uris
            s -= docs + uris
        for kind, number in zip(VALUE_TYPES, (s, i, f, b), strict=True):
            target[kind] = target.get(kind, 0) + number

    def add_arrays(self, by_type: dict[str, int | None], only_lists: int | None) -> None:
        """List elements by type; a record whose only metadata is lists still has metadata."""
        self.with_keys += only_lists or 0
        for kind, number in by_type.items():
            self.arrays[kind] = self.arrays.get(kind, 0) + (number or 0)

    def fill(self, account: CollectionAccount) -> None:
        account.records, account.documents, account.uris = self.records, self.documents, self.uris
        account.without_metadata = self.without
        account.metadata_rows = {k: v for k, v in sorted(self.metadata.items()) if v}
        account.array_rows = {k: v for k, v in sorted(self.arrays.items()) if v}


# --- comparison ---------------------------------------------------------------------------------

COUNTED = ("records", "documents", "uris", "without_metadata", "metadata_rows", "array_rows", "fulltext_rows")


def compare_accounts(source: DatabaseAccount, target: DatabaseAccount,
                     collections: Iterable[str | tuple[str, str, str]] | None = None,
                     *, notes: list[str] | None = None) -> list[str]:
    """Problems that make target not hold what source holds; empty when every count agrees.

    `collections` (qualified names as the engine writes them, or (tenant, database, name) keys)
    limits the check to those collections; without it, tenants, databases and the set of
    collections must be equal too. Rules for facts that legitimately differ between versions
    are written out below, each with its reason; a count one side cannot prove from its tables
    is skipped and, if `notes` is given, named there.
    """
    problems: list[str] = []
    keys = sorted(source.collections) if collections is None else [_split(c) for c in collections]
    if collections is None:
        if set(source.tenants) != set(target.tenants):
            problems.append(f"tenants differ: source {sorted(source.tenants)}, target {sorted(target.tenants)}")
        if set(source.databases) != set(target.databases):
            problems.append(f"databases (tenant, name) differ: source {sorted(source.databases)}, target "
                            f"{sorted(target.databases)}")
        for extra in sorted(set(target.collections) - set(source.collections)):
            problems.append(f"collection {_qualified(*extra)!r} is in the target but not in the source")
    for key in keys:
        name = _qualified(*key)
        if key not in source.collections:
            problems.append(f"collection {name!r} is not in the source")
            continue
        ours = source.collections[key]
        theirs = target.collections.get(key)
        if theirs is None:
            problems.append(f"collection {name!r} is missing from the target")
            continue
        if ours.id != theirs.id:
            problems.append(f"collection {name!r} has id {theirs.id} in the target, {ours.id} in the source")
        for attribute in COUNTED:
            skipped = ours.unprovable.get(attribute) or theirs.unprovable.get(attribute)
            if skipped:
                if notes is not None:
                    notes.append(f"{name}: {attribute} not compared: {skipped}")
                continue
            mine, other = getattr(ours, attribute), getattr(theirs, attribute)
            if mine != other:
                problems.append(f"collection {name!r}: {attribute} {mine} in the source, {other} in the target")
        problems += [f"collection {name!r}: {p}" for p in _metadata_problems(source, target, ours, theirs)]
    return problems


def _metadata_problems(source: DatabaseAccount, target: DatabaseAccount, ours: CollectionAccount,
                       theirs: CollectionAccount) -> list[str]:
    problems = []
    for key in sorted(set(ours.collection_metadata) | set(theirs.collection_metadata)):
        mine, other = ours.collection_metadata.get(key), theirs.collection_metadata.get(key)
        # Rule: hnsw:* keys are index settings, which 1.x keeps in the collection configuration and 0.x only
        # in metadata; a migration may pin the source's effective setting as a key on one side only (e.g.
        # hnsw:search_ef on a 1.x -> 0.x downgrade). verify compares the index settings themselves.
        if (mine is None or other is None) and key.startswith("hnsw:"):
            continue
        if mine is None or other is None:
            problems.append(f"collection metadata {key!r} is {mine} in the source, {other} in the target")
        elif not _same_value(mine, other, source.collection_bool_column, target.collection_bool_column):
            problems.append(f"collection metadata {key!r} is {mine[0]} {mine[1]!r} in the source, {other[0]} "
                            f"{other[1]!r} in the target")
    return problems


def _same_value(mine: tuple[str, Any], other: tuple[str, Any], source_bools: bool, target_bools: bool) -> bool:
    """Equal, or equal under a rule that a version change explains."""
    if mine == other:
        return True
    kinds = {mine[0], other[0]}
    # Rule: 0.4.24's collection_metadata has no bool_value column, so it stores True/False as int 1/0;
    # on the side without the column, an int 0/1 equals the bool of the same truth on the other side.
    if kinds == {"int", "bool"}:
        int_side_lacks_bools = not source_bools if mine[0] == "int" else not target_bools
        number = mine[1] if mine[0] == "int" else other[1]
        truth = other[1] if mine[0] == "int" else mine[1]
        return int_side_lacks_bools and number in (0, 1) and bool(number) == truth
    # Rule: chromadb 1.x re-parses floats with serde_json, sometimes 1 ulp from Python's float() of the
    # same text (docs/DESIGN.md); a float within 1 ulp is the same value written by another parser.
    if kinds == {"float"}:
        return math.isfinite(mine[1]) and abs(mine[1] - other[1]) <= math.ulp(mine[1])
    return False
