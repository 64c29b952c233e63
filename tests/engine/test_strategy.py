"""What `auto` means (strategy.py), decided once for the CLI and the DAG, on each kind of source."""

from __future__ import annotations

import pytest

from chroma_migrate.errors import MigrationError
from chroma_migrate.inspection import DatabaseInfo
from chroma_migrate.strategy import Strategy, choose_strategy, requested_strategy
from chroma_migrate.versions import get_version

LATEST, OLDER = get_version("1.5.9"), get_version("1.0.20")


def source(signature: dict[str, int]) -> DatabaseInfo:
    return DatabaseInfo(path="/db", size_bytes=0, signature=dict(signature), written_by=[], reader_version="x",
                        collections=[])


def test_an_older_schema_is_upgraded_with_a_transplant_then_a_rebuild_to_fall_back_on():
    choice = choose_strategy(source(OLDER.signature), LATEST, Strategy.AUTO)
    assert choice.order == [Strategy.UPGRADE, Strategy.TRANSPLANT, Strategy.REBUILD]
    assert "applies migrations" in choice.reason


def test_a_newer_schema_is_transplanted_and_a_forced_upgrade_of_it_refused():
    newer = source(LATEST.signature)
    assert choose_strategy(newer, OLDER, Strategy.AUTO).order == [Strategy.TRANSPLANT, Strategy.REBUILD]
    with pytest.raises(MigrationError, match="cannot open a newer schema"):
        choose_strategy(newer, OLDER, Strategy.UPGRADE)


def test_the_same_schema_is_noop_only_when_it_reads_back_whole():
    same = source(LATEST.signature)
    assert choose_strategy(same, LATEST, Strategy.AUTO, (True, "read")).order == [Strategy.NOOP, Strategy.REBUILD]
    broken = choose_strategy(same, LATEST, Strategy.AUTO, (False, "the native reader found it inconsistent"))
    assert broken.order == [Strategy.REBUILD] and "inconsistent" in broken.reason


def test_forced_strategies_never_fall_back_but_a_transplant_to_the_rebuild():
    older = source(OLDER.signature)
    assert choose_strategy(older, LATEST, Strategy.UPGRADE).order == [Strategy.UPGRADE]
    assert choose_strategy(older, LATEST, Strategy.REBUILD).order == [Strategy.REBUILD]
    assert choose_strategy(older, LATEST, Strategy.TRANSPLANT).order == [Strategy.TRANSPLANT, Strategy.REBUILD]


def test_an_unknown_strategy_names_the_ones_there_are():
    with pytest.raises(MigrationError, match="auto, upgrade, transplant, rebuild"):
        requested_strategy("noop")
