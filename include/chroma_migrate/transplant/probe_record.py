"""The record the transplant's proof writes into a copy of the result (never into the result itself).

Shared by the engine and the runtime workers: no imports.
"""

PROBE_ID = "chroma-migrate-transplant-probe"
PROBE_DOCUMENT = "written after the transplant"
