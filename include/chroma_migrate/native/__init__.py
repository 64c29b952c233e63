"""A native reader of ChromaDB 0.4.24 – 1.5.9 persistent databases: standard library and numpy, no chromadb.

    with open_database(path) as db:
        for collection in db.collections():
            collection.info                      # metadata, index settings, dimension, count
            for batch in collection.iter_batches(5000):
                ...                              # exchange.RecordBatch, sorted by id

`check_integrity(path)` runs every check without reading the vectors themselves.
The reader never writes a byte (see database.py); the format facts are in docs/FORMAT.md.
"""

from chroma_migrate.native.collection import NativeCollection, NativeCollectionInfo
from chroma_migrate.native.database import NativeDatabase, open_database
from chroma_migrate.native.errors import (
    CorruptDatabaseError,
    NativeReadError,
    UnsafePickleError,
    UnsupportedFormatError,
)
from chroma_migrate.native.integrity import check_integrity

__all__ = [
    "CorruptDatabaseError", "NativeCollection", "NativeCollectionInfo", "NativeDatabase", "NativeReadError",
    "UnsafePickleError", "UnsupportedFormatError", "check_integrity", "open_database",
]
