"""Move ChromaDB persistent databases between chromadb versions without losing a record.

Kept import-free on purpose: the worker subpackage runs inside each chromadb runtime,
whose interpreter has only chromadb, numpy and pyarrow.
"""

__version__ = "0.1.0"
