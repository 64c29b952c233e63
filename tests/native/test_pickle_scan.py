"""The pickle is bounded before it is unpickled: memo slots, length prefixes and object counts against the file.

Crafted byte strings (no chromadb needed): each would make CPython's Unpickler allocate far
more than the file holds; a sound pickle, and merely broken ones (left to the Unpickler's own
error, which allocates nothing), pass the scan.
"""

from __future__ import annotations

import pickle
import resource
import struct
from pathlib import Path

import pytest

from chroma_migrate.native.errors import CorruptDatabaseError
from chroma_migrate.native.id_map import load_id_map
from chroma_migrate.native.pickle_scan import OBJECTS_PER_ELEMENT, OBJECTS_SLACK, scan_pickle

PATH = Path("seg/index_metadata.pickle")


def sound(count: int = 50) -> bytes:
    ids = [f"id-{i}" for i in range(count)]
    return pickle.dumps({"dimensionality": None, "total_elements_added": count, "max_seq_id": None,
                         "id_to_label": {k: i + 1 for i, k in enumerate(ids)},
                         "label_to_id": {i + 1: k for i, k in enumerate(ids)}, "id_to_seq_id": {}}, protocol=4)


@pytest.mark.parametrize(("name", "data"), [
    ("LONG_BINPUT far past the memo", b"\x80\x04N" + b"r" + struct.pack("<I", 0x08000000) + b"."),
    ("BINPUT past the memo", b"\x80\x02N" + b"q\x05" + b"."),
    ("PUT with a huge text index", b"N" + b"p99999999999\n" + b"."),
])
def test_a_memo_index_beyond_the_file_is_refused_before_unpickling(name, data):
    with pytest.raises(CorruptDatabaseError) as caught:
        scan_pickle(data, PATH)
    assert caught.value.kind == "pickle_out_of_bounds" and "memo slot" in caught.value.problem, name


@pytest.mark.parametrize("data", [
    b"\x80\x04\x8e" + struct.pack("<Q", 2**40) + b"abc.",  # BINBYTES8: CPython allocates before it reads
    b"\x80\x04\x95" + struct.pack("<Q", 2**40) + b"N.",  # FRAME
    b"\x80\x04X" + struct.pack("<I", 2**31) + b"abc.",  # BINUNICODE
])
def test_a_length_past_the_end_is_unreadable_not_allocated(data):
    with pytest.raises(CorruptDatabaseError) as caught:
        scan_pickle(data, PATH)
    assert caught.value.kind == "pickle_unreadable" and "announces" in caught.value.problem


def test_more_objects_than_the_header_allows_are_refused():
    data = sound(2000)
    with pytest.raises(CorruptDatabaseError) as caught:
        scan_pickle(data, PATH, max_elements=3)
    assert caught.value.kind == "pickle_out_of_bounds"
    assert scan_pickle(data, PATH, max_elements=2000) <= OBJECTS_PER_ELEMENT * 2000 + OBJECTS_SLACK


@pytest.mark.parametrize("data", [b"\x80\x04not a pickle at all", pickle.dumps({"a": [1, 2]}, protocol=2)[:-3], b""])
def test_a_broken_stream_is_left_to_the_unpicklers_own_error(data):
    scan_pickle(data, PATH)  # no bound broken: the Unpickler fails at the same opcode without allocating


def test_a_copy_cut_inside_a_frame_is_unreadable():
    with pytest.raises(CorruptDatabaseError) as caught:
        scan_pickle(sound()[:-40], PATH)
    assert caught.value.kind == "pickle_unreadable" and "cut short" in caught.value.problem


def test_load_id_map_refuses_the_nine_byte_file_at_once_and_small(tmp_path):
    path = tmp_path / "index_metadata.pickle"
    path.write_bytes(b"\x80\x04N" + b"r" + struct.pack("<I", 0x08000000) + b".")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(CorruptDatabaseError) as caught:
        load_id_map(path, max_elements=100)
    assert caught.value.kind == "pickle_out_of_bounds" and caught.value.file == str(path)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 50 * 1024  # KiB: not the 1 GiB memo


@pytest.mark.parametrize(("label", "why"), [(-1, "label -1"), (0, "label 0"), (2**64, "label 18446744073709551616")])
def test_a_label_outside_hnswlibs_range_is_refused(tmp_path, label, why):
    path = tmp_path / "index_metadata.pickle"
    path.write_bytes(pickle.dumps({"id_to_label": {"a": label}, "label_to_id": {label: "a"}}, protocol=4))
    with pytest.raises(CorruptDatabaseError) as caught:
        load_id_map(path)
    assert caught.value.kind == "pickle_unreadable" and why in caught.value.problem


def test_more_ids_than_header_elements_are_refused(tmp_path):
    path = tmp_path / "index_metadata.pickle"
    path.write_bytes(sound(20))
    assert len(load_id_map(path, max_elements=20).id_to_label) == 20
    with pytest.raises(CorruptDatabaseError, match=r"maps 20 ids, but header\.bin counts only 19"):
        load_id_map(path, max_elements=19)


def test_a_pickle_already_scanned_is_not_walked_again_and_a_refused_one_always_is(monkeypatch):
    from chroma_migrate.native import pickle_scan

    walked = []
    real = pickle_scan.scan_pickle
    monkeypatch.setattr(pickle_scan, "scan_pickle", lambda data, path, bound=None: walked.append(data) or real(
        data, path, bound))
    data, crafted = sound(70), b"\x80\x04N" + b"r" + struct.pack("<I", 0x08000000) + b"."
    for _ in range(3):
        pickle_scan.scan_pickle_once(data, PATH, 100)
        with pytest.raises(CorruptDatabaseError, match="memo"):
            pickle_scan.scan_pickle_once(crafted, PATH, 100)
    assert walked == [data, crafted, crafted, crafted]
    pickle_scan.scan_pickle_once(data, PATH, 60)  # another bound is another verdict
    pickle_scan.scan_pickle_once(sound(71), PATH, 100)  # other bytes too
    assert len(walked) == 6


def test_the_same_bytes_give_the_same_map_without_unpickling_and_changed_bytes_are_read_again(tmp_path):
    path = tmp_path / "index_metadata.pickle"
    path.write_bytes(sound(30))
    first = load_id_map(path, max_elements=30)
    assert load_id_map(path, max_elements=30) is first  # one verification opens a map several times
    path.write_bytes(sound(31))  # the file changed between two opens: its own map, checked again
    assert len(load_id_map(path, max_elements=31).id_to_label) == 31
    with pytest.raises(CorruptDatabaseError, match="counts only 30"):
        load_id_map(path, max_elements=30)
    path.write_bytes(sound(30)[:-5])  # damaged: never the map an earlier open cached
    with pytest.raises(CorruptDatabaseError):
        load_id_map(path, max_elements=30)
