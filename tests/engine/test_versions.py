"""The supported versions come from the runtime files, with their measured facts."""

from __future__ import annotations

import pytest

from chroma_migrate.errors import UnsupportedVersionError
from chroma_migrate.inspection import reader_for
from chroma_migrate.versions import RUNTIME_FILES_DIR, get_version, supported_version_names

SHIPPED = ["0.4.24", "0.5.23", "0.6.3", "1.0.20", "1.3.7", "1.5.9"]


def test_every_required_version_has_a_runtime_file():
    assert sorted(p.name for p in RUNTIME_FILES_DIR.glob("chromadb-*.txt")) == [f"chromadb-{v}.txt" for v in SHIPPED]
    assert set(SHIPPED) <= set(supported_version_names())


def test_runtime_files_are_fully_pinned_and_0_4_keeps_numpy_1():
    for name in SHIPPED:
        lines = [ln for ln in get_version(name).requirements.read_text().splitlines()
                 if ln.strip() and not ln.lstrip().startswith("#")]
        assert all("==" in ln for ln in lines), f"chromadb {name}: unpinned line"
        assert f"chromadb=={name}" in lines
    assert "numpy==1.26.4" in get_version("0.4.24").requirements.read_text()


def test_unknown_version_names_the_supported_ones():
    with pytest.raises(UnsupportedVersionError) as caught:
        get_version("0.9.9")
    assert "0.4.24" in caught.value.fix and "1.5.9" in caught.value.fix


def test_reader_for_a_schema_newer_than_any_version_is_refused():
    with pytest.raises(UnsupportedVersionError, match="sysdb migration 11"):
        reader_for({"sysdb": 11, "metadb": 6, "embeddings_queue": 2})


def test_reader_for_shared_and_intermediate_schemas():
    assert reader_for({"sysdb": 9, "metadb": 4, "embeddings_queue": 2}).version == "0.5.23"
    # A schema between two releases is read by the oldest release that knows all of it.
    assert reader_for({"sysdb": 7, "metadb": 4, "embeddings_queue": 2}).version == "0.5.23"
