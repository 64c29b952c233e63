"""Airflow DAGs: one migration DAG and one rollback DAG per collection in
include/config/chroma_migration.yaml (or $CHROMA_MIGRATION_CONFIG)."""

from chroma_migration.dag_factory import build_all

globals().update(build_all())
