"""Verification, one package: does the target hold exactly what the source held?

One request (`verify.VerifyRequest`) and one entry point (`verify.verify_databases`) run every
check, each a module of its own that returns problems and notes:
- accounting.py: closed-world SQL counts of both files, independent of the readers;
- compare.py: every record, range by range, through the native reader (exact, two tolerances);
- verify.py's settings checks: ids, typed metadata, configuration, tenants and databases;
- index_gate.py with native/hnsw_health.py: every stored vector is served by the target's index;
- fulltext.py, fulltext_queries.py, text_sample.py: the full-text index and where/where_document;
- report.py renders the report in one place, for the CLI and the DAG alike.
"""

# Nothing is imported here: inspection.py uses the accounting, and verify.py uses inspection.
