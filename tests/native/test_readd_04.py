"""chromadb 0.4.24 cannot read back a delete followed by a re-add of the same id (chroma-core/chroma#1987);
the native reader can: the vector 0.4.24 dropped from its index is still in its never-purged write log."""

from __future__ import annotations

import numpy as np
import pytest

from chroma_migrate.errors import WorkerFailedError
from chroma_migrate.exchange import canonical_metadata
from chroma_migrate.native import open_database
from tests.conftest import dump_records

pytestmark = pytest.mark.integration

# l2, so every vector must match bit for bit; a small batch so the re-add meets its delete in one batch.
SPEC = {"seed": 0, "collections": [{"name": "lines", "kind": "line", "dim": 16, "records": 300, "readd": True,
                                    "metadata": {"hnsw:space": "l2", "hnsw:batch_size": 50,
                                                 "hnsw:sync_threshold": 100}}]}


def test_reader_returns_what_the_same_writes_give_in_0_5(copy_of):
    broken = copy_of("0.4.24", SPEC)
    with pytest.raises(WorkerFailedError, match="NoneType"):
        dump_records("0.4.24", broken)
    # The same operations, written by 0.5.23 (which applies re-adds), read by 0.5.23's own get().
    expected = dump_records("0.5.23", copy_of("0.5.23", SPEC))["lines"]["records"]
    with open_database(broken) as native:
        lines = native.collection("lines")
        batch = lines.read_range(None, None)
        assert lines.recovered > 0
    assert sorted(expected) == batch.ids
    for i, record_id in enumerate(batch.ids):
        record = expected[record_id]
        assert batch.embeddings[i].tobytes() == np.asarray(record["embedding"], dtype=np.float32).tobytes(), record_id
        assert (batch.documents[i], batch.uris[i], batch.metadatas[i]) == (
            record["document"], record["uri"], canonical_metadata(record["metadata"])), record_id
