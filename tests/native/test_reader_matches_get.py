"""The native reader returns exactly what each version's own get() returns, on databases that version wrote.

The fixtures hold deletes, upserts and re-adds flushed into the index, a tail still in the
write log (0.x serves it raw from its brute-force buffer), a collection that lives only in
the log, cosine, l2 and ip spaces, 1536 dimensions, and list metadata in 1.5. The reader
must leave every file byte-identical.
"""

from __future__ import annotations

import numpy as np
import pytest

from chroma_migrate.exchange import canonical_metadata
from chroma_migrate.native import check_integrity, open_database
from chroma_migrate.versions import shipped_version_names
from chroma_migrate_testkit.fixtures import receipt_spec
from tests.conftest import dump_records, tree_digest

pytestmark = pytest.mark.integration

CASES = [(version, receipt_spec()) for version in shipped_version_names()]
CASES.append(("1.5.9", receipt_spec(with_lists=True, big_dim=None)))


def read_everything(db, batch_size: int) -> dict[str, dict]:
    """Every record of every collection, read natively in batches, keyed like a get() dump."""
    found = {}
    with open_database(db) as native:
        for collection in native.collections():
            records, previous = {}, None
            for batch in collection.iter_batches(batch_size):
                assert batch.ids == sorted(batch.ids) and len(batch) <= batch_size
                assert previous is None or not batch.ids or batch.ids[0] > previous, "batches overlap"
                previous = batch.ids[-1] if batch.ids else previous
                for i, record_id in enumerate(batch.ids):
                    records[record_id] = (batch.embeddings[i], batch.documents[i], batch.uris[i], batch.metadatas[i])
            assert collection.count == len(records)
            found[collection.name] = {"space": collection.space, "metadata": collection.metadata, "records": records}
    return found


@pytest.mark.parametrize(("version", "spec"), CASES, ids=[f"{v}{'-lists' if s['collections'][0]['with_lists'] else ''}"
                                                         for v, s in CASES])
def test_every_record_equals_the_versions_own_get(copy_of, version, spec):
    db = copy_of(version, spec)
    before = tree_digest(db)
    expected = dump_records(version, db)
    got = read_everything(db, batch_size=97)
    assert check_integrity(db) == {name: len(c["records"]) for name, c in got.items()}
    assert tree_digest(db) == before, "the native reader changed a file"
    assert sorted(got) == sorted(expected)
    for name, collection in expected.items():
        records = got[name]["records"]
        assert got[name]["metadata"] == collection["metadata"], name
        assert set(records) == set(collection["records"]), f"{name}: id sets differ"
        for record_id, record in collection["records"].items():
            embedding, document, uri, metadata = records[record_id]
            wanted = np.asarray(record["embedding"], dtype=np.float32)
            assert embedding.tobytes() == wanted.tobytes(), f"{name}/{record_id}: embedding not bit-exact"
            assert (document, uri) == (record["document"], record["uri"]), f"{name}/{record_id}"
            assert metadata == canonical_metadata(record["metadata"]), f"{name}/{record_id}: metadata"
    spaces = {name: c["space"] for name, c in got.items()}
    assert {"cosine", "l2", "ip"} <= set(spaces.values())
    if spec["collections"][0]["with_lists"]:
        assert any('"labels":[' in (r[3] or "") for r in got["words"]["records"].values())


@pytest.mark.parametrize("version", ["0.4.24", "0.6.3", "1.5.9"])
def test_the_fixtures_exercise_every_vector_source(copy_of, version):
    """The equality above covers vectors from the index, from the log after the index round trip, and (0.x)
    raw from the brute-force buffer; re-adds (0.5+) flushed into the index; a collection only in the log."""
    with open_database(copy_of(version)) as native:
        words = native.collection("words").vectors
        sources = list(words.sources.from_log.values())
        assert words.files is not None and words.files.deleted.any(), "deletes reached the index"
        assert any(not raw for _, raw in sources), "log vectors that went through the index"
        assert any(raw for _, raw in sources) == version.startswith("0."), "0.x's unflushed tail is served raw"
        tail = [seq for seq, raw in sources if raw] if version.startswith("0.") else sources
        assert 0 < len(tail) < 100, "a tail of fewer than 100 records the index has not taken in"
        log_only = native.collection("log_only").vectors
        assert log_only.files is None and len(log_only.sources.from_log) == 60
        if version != "0.4.24":  # 0.4 cannot read re-adds back itself, so its fixtures have none
            batch = native.collection("words").read_range(None, None)
            readded = [i for i, doc in zip(batch.ids, batch.documents, strict=True) if doc and "(re-added)" in doc]
            assert readded and any(words.sources.label_of(i) is not None for i in readded), "re-adds in the index"
