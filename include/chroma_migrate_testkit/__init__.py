"""Test and demo support, apart from the engine: databases written by the real chromadb versions
from a spec (fixtures.py), and the local stand-ins for AWS (a moto server) and the compactor's
publishing (standins.py). The tests, `make demo` and the bench use it; a migration never does."""
