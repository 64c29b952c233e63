"""Code that runs inside a chromadb runtime's interpreter (stdlib, numpy, pyarrow, chromadb).

Started as `python -m chroma_migrate.worker REQUEST RESPONSE` by `worker_client`; never
imported by the engine itself, and never imports the engine's Airflow-free but heavier parts.
"""
