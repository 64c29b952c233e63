"""The records the full-text and filter queries are asked about: a few from every source batch.

Read natively from the source in place (contiguous runs of ids at the start of each batch,
so only those records are decoded), written as one exchange file per collection for
`fulltext_queries`, which builds its queries from them and asks the target, a fresh database
of the target version and one of the source version.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from chroma_migrate import exchange
from chroma_migrate.batches import CollectionPlan
from chroma_migrate.fulltext_queries import SAMPLE_LIMIT, TextCheckInput
from chroma_migrate.native import open_database
from chroma_migrate.native.stored_records import stored_ids_between

# Records read per collection before fulltext_queries picks its sample: a few times its limit.
CANDIDATES = 4 * SAMPLE_LIMIT


def source_samples(source_db: Path, plans: dict[str, CollectionPlan], scratch: Path) -> list[TextCheckInput]:
    """One exchange file of candidate records per collection that has any."""
    checks = []
    with open_database(source_db) as native:
        for name, plan in plans.items():
            collection = native.collection(name)
            segment = collection.facts.metadata_segment
            if not segment or not collection.count or not plan.batches:
                continue
            per_batch = max(1, math.ceil(CANDIDATES / len(plan.batches)))
            parts = []
            for batch in plan.batches:
                ids = stored_ids_between(native.sql, segment, batch.low, batch.high)
                high = ids[per_batch] if len(ids) > per_batch else batch.high
                parts.append(collection.read_range(batch.low, high))
            parts = [part for part in parts if len(part)]
            if not parts:
                continue
            records = exchange.RecordBatch(
                [i for p in parts for i in p.ids], np.concatenate([p.embeddings for p in parts]),
                [d for p in parts for d in p.documents], [u for p in parts for u in p.uris],
                [m for p in parts for m in p.metadatas])
            file = scratch / f"text-sample-{len(checks):04d}.parquet"
            exchange.write_batch(records, file)
            checks.append(TextCheckInput(name, [file], collection.metadata, collection.facts.tenant,
                                         collection.facts.database, collection.facts.bare_name or name))
    return checks
