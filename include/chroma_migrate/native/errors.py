"""What the native reader refuses, each naming the file, the problem and the fix.

The classes and their `kind` codes are a stable interface: other parts of the project
(the fault-injection suite among them) match on them, so add kinds, never rename them.
"""

from __future__ import annotations

from pathlib import Path

from chroma_migrate.errors import MigrationError

RESTORE_FIX = ("Restore the database from a backup or an earlier snapshot, or copy the whole folder again; "
               "nothing was modified.")


class NativeReadError(MigrationError):
    """The native reader cannot read this database; `kind` says why, `file` says where.

    Kinds raised as this class itself: not_a_database, unknown_collection.
    """

    def __init__(self, kind: str, file: Path | str, problem: str, fix: str = RESTORE_FIX) -> None:
        self.kind = kind
        self.file = str(file)
        super().__init__(f"{self.file}: {problem}", fix)

    def to_dict(self) -> dict[str, str]:
        return {**super().to_dict(), "kind": self.kind, "file": self.file}


class CorruptDatabaseError(NativeReadError):
    """A file is damaged or the files disagree with each other (integrity check failed).

    Kinds: sqlite_corrupt, missing_segment_folder, missing_index_metadata, bad_header,
    data_level0_size, data_level0_truncated, length_truncated, label_not_in_index,
    label_not_in_pickle, pickle_unreadable, pickle_forbidden_global, vector_missing,
    bad_log_vector, bad_log_metadata; since issue 15: pickle_out_of_bounds (refused before
    unpickling: a memo index, length or object count the file cannot need), link_lists_corrupt,
    level0_links_corrupt (the graph cannot be walked), bad_watermark (a max_seq_id row no
    chromadb writes), hot_journal (copied mid-transaction), index_ahead_of_sqlite (index files
    written after the chroma.sqlite3 beside them).
    """


class UnsafePickleError(CorruptDatabaseError):
    """index_metadata.pickle names a global other than chromadb's PersistentData (kind pickle_forbidden_global)."""


class UnsupportedFormatError(NativeReadError):
    """The schema history holds a migration no supported chromadb version writes (kind unknown_migration)."""
