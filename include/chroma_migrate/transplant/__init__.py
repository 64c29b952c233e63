"""`transplant`: a target database written natively, carrying the source's HNSW graph where it is sound.

The target's chromadb creates the empty database and collections (`target_collections.py`);
`database_writer` fills them from the native reader (rows, full-text, watermarks, the graph
carried or built by `vectors`, as `graph_choice` decides); the target's runtime writes the
id maps in its own pickle form and `proof` has it read back and keep writing a copy.
Verification then runs as for every strategy. Modules are imported on use (the DAG file
imports none of this).
"""
