"""Write-log replay rules, on log rows as the reader sees them (no files: the rules themselves)."""

from __future__ import annotations

from chroma_migrate.native.formats import FAMILY_04, FAMILY_05, FAMILY_RUST
from chroma_migrate.native.replay import apply_record_changes, plan_record_changes, replay_vectors
from chroma_migrate.native.write_log import ADD, DELETE, UPDATE, UPSERT, LogEntry


def rows(*ops: tuple[int, str, bool]) -> list[LogEntry]:
    return [LogEntry(seq, op, record_id, vector, True) for seq, (op, record_id, vector) in enumerate(ops, start=10)]


def test_1x_applies_every_row_to_the_index():
    log = rows((ADD, "new", True), (ADD, "old", True), (UPDATE, "gone", True), (UPSERT, "old", True),
               (DELETE, "del", False), (UPDATE, "kept", False))
    sources = replay_vectors(log, {"old": 1, "del": 2, "kept": 3}, FAMILY_RUST, 0)
    assert sources.from_log == {"new": (10, False), "old": (13, False)}
    assert not sources.has("gone") and not sources.has("del") and sources.label_of("kept") == 3


def test_0x_serves_the_unfilled_batch_raw():
    log = rows(*[(ADD, f"id{i}", True) for i in range(7)])
    sources = replay_vectors(log, {}, FAMILY_05, 3)
    assert [sources.from_log[f"id{i}"][1] for i in range(7)] == [False] * 6 + [True]


def test_0_4_counts_distinct_changes_and_0_5_counts_rows():
    log = rows((ADD, "a", True), (UPSERT, "a", True), (UPSERT, "a", True), (ADD, "b", True))
    assert replay_vectors(log, {}, FAMILY_05, 3).from_log == {"a": (12, False), "b": (13, True)}
    assert replay_vectors(log, {}, FAMILY_04, 3).from_log == {"a": (12, True), "b": (13, True)}


def test_0x_readd_after_delete_in_one_batch_is_applied():
    """0.4.24 drops this ADD and then cannot return the record; the reader takes the logged vector."""
    log = rows((DELETE, "x", False), (ADD, "x", True))
    for family in (FAMILY_04, FAMILY_05):
        assert replay_vectors(log, {"x": 5}, family, 100).from_log == {"x": (11, True)}


def test_0x_rows_before_the_first_vector_only_count():
    log = rows((DELETE, "a", False), (UPDATE, "a", False), (ADD, "b", True))
    assert replay_vectors(log, {}, FAMILY_05, 3).from_log == {"b": (12, False)}
    assert replay_vectors(log, {}, FAMILY_04, 3).from_log == {"b": (12, True)}


def test_record_rows_merge_metadata_and_respect_existence():
    log = rows((ADD, "t", False), (UPDATE, "t", False), (UPSERT, "t", False), (DELETE, "u", False),
               (UPDATE, "ghost", False), (ADD, "n", False))
    changes = plan_record_changes(log, lambda ids: {"t", "u"} & set(ids))
    assert changes.added() == ["n"] and changes.deleted() == ["u"] and not changes.exists_after["ghost"]
    payloads = {10: {"k": 1}, 11: {"a": 1, "gone": None}, 12: {"chroma:document": "d", "a": 2.5}}
    stored = {"a": 0, "gone": "x", "chroma:document": "old"}
    assert apply_record_changes(dict(stored), changes.entries["t"], payloads) == {"a": 2.5, "chroma:document": "d"}
    assert apply_record_changes(None, changes.entries["n"], {15: {"k": None, "z": 1}}) == {"z": 1}
    assert apply_record_changes(None, changes.entries["ghost"], payloads) is None
