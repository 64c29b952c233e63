"""`check_integrity`: every check the reader makes, on the whole database, without reading vectors.

SQLite's own page check, the schema history, and per collection: the segment folder and
its pickle, the hnswlib header and file sizes, labels against the pickle both ways, the
write log's rows, and a vector source for every record. The first problem raises.
"""

from __future__ import annotations

from pathlib import Path

from chroma_migrate.native.database import open_database
from chroma_migrate.native.errors import CorruptDatabaseError


def check_integrity(path: Path | str) -> dict[str, int]:
    """Record count per collection when the database is sound; a CorruptDatabaseError (or subclass) otherwise."""
    with open_database(path) as db:
        problems = db.sql.quick_check()
        if problems:
            raise CorruptDatabaseError("sqlite_corrupt", db.sql.path, f"fails SQLite's page check: "
                                                                      f"{'; '.join(problems[:3])}")
        return {collection.name: collection.check() for collection in db.collections()}
