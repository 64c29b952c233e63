"""The fault suite runs on the DAG tests' snapshot system: a moto server, the real Airflow, seeded snapshots.

Its seeds are the DAG tests' small receipts database cut to two collections (words, cosine, and
lines, l2, both with upserts, deletes and a write-log tail): every extra collection would add
a chromadb process to each export, load and verification without testing anything new here.
"""

from tests.dags.conftest import SMALL_SPEC, airflow_session, system  # noqa: F401  (fixtures shared with tests/dags)

FAULT_SPEC = {**SMALL_SPEC, "collections": SMALL_SPEC["collections"][:2]}
