"""The right answer for a damaged file that the reader accepted: what the writing version's get() returns.

Run only for cases whose records differ from the undamaged seed's (damage the reader cannot
see, such as a changed vector float or a changed norm): the writing version opens a copy of
the damaged database in its own runtime and dumps every record; the reader must agree. When
that version cannot open the copy either, the case is counted as such and listed for review.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import numpy as np

from chroma_migrate.errors import MigrationError
from chroma_migrate.exchange import canonical_metadata
from chroma_migrate.worker_client import run_worker
from chroma_migrate_testkit.fuzz.case import records_digest

ORACLE_TIMEOUT = 120.0


def writer_digests(db: Path, version: str) -> dict[str, str] | str:
    """Per collection, the digest of what `version`'s get() returns from a copy of `db`; a reason string when it
    cannot read it."""
    with tempfile.TemporaryDirectory(prefix="chroma-fuzz-oracle-") as scratch:
        copy = Path(scratch) / "db"
        shutil.copytree(db, copy)
        out = Path(scratch) / "dump.json"
        try:
            run_worker(version, "dump", {"path": str(copy), "out_file": str(out)}, timeout_s=ORACLE_TIMEOUT)
        except MigrationError as exc:
            return f"chromadb {version} cannot read it either: {exc.problem[:300]}"
        dumped = json.loads(out.read_text())
    digests = {}
    for name, collection in dumped.items():
        ids = list(collection["records"])
        records = [collection["records"][i] for i in ids]
        embeddings = (np.asarray([r["embedding"] for r in records], dtype=np.float32) if records
                      else np.zeros((0, 0), dtype=np.float32))
        metadatas = [canonical_metadata(r["metadata"]) for r in records]
        digests[name] = records_digest(ids, embeddings, [r["document"] for r in records], [r["uri"] for r in records],
                                       metadatas)
    return digests
