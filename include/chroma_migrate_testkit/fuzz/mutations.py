"""Structure-aware damage, applied to a private copy of a seed database.

A mutation is a small JSON-able dict: `target` (`chroma.sqlite3`, `embeddings_queue` for the
write log, or `<collection>/<file>` for an index file) and `op` with its parameters. Every
position is resolved when it is applied, from the copy itself (the k-th pickle opcode, the
k-th non-zero link-list word, the k-th log row), so a committed case means the same damage
on any build of the seed.
"""

from __future__ import annotations

import base64
import json
import pickle
import pickletools
import random
import sqlite3
import struct
from pathlib import Path
from typing import Any

from chroma_migrate.native.hnsw_files import HEADER_LAYOUT
from chroma_migrate.native.id_map import _RestrictedUnpickler
from chroma_migrate_testkit.fuzz.inventory import HEADER_FIELDS, LOG, SQLITE, vector_folders

Mutation = dict[str, Any]


def target_path(db: Path, target: str) -> Path:
    if target in (SQLITE, LOG):
        return Path(db) / SQLITE
    collection, role = target.split("/", 1)
    folders = vector_folders(db)
    if collection not in folders:
        raise KeyError(f"no flushed vector segment for collection {collection!r} in {db}")
    return Path(db) / folders[collection] / role


def apply_mutation(db: Path, mutation: Mutation) -> Path:
    """Damage the copy at `db` as `mutation` says; returns the file it changed (the last one, for `steps`)."""
    if mutation["op"] == "steps":  # several mutations, in order: e.g. a watermark lowered, then a log row damaged
        changed = Path(db)
        for step in mutation["steps"]:
            changed = apply_mutation(db, step)
        return changed
    path = target_path(db, mutation["target"])
    op = mutation["op"]
    if mutation["target"] == LOG or op in ("watermark", "sql_value"):
        _damage_log(path, mutation)
        return path
    data = bytearray(path.read_bytes())
    handler = _BYTE_OPS[op]
    path.write_bytes(bytes(handler(data, mutation, path)))
    return path


def _flip(data: bytearray, m: Mutation, path: Path) -> bytearray:
    for offset, mask in m["edits"]:
        if data:
            data[offset % len(data)] ^= (mask & 0xFF) or 0x01
    return data


def _truncate(data: bytearray, m: Mutation, path: Path) -> bytearray:
    return data[:min(len(data), m["size"])]


def _extend(data: bytearray, m: Mutation, path: Path) -> bytearray:
    return data + bytes.fromhex(m["data"])


def _replace(data: bytearray, m: Mutation, path: Path) -> bytearray:
    return bytearray(base64.b64decode(m["data_b64"]))


def _set_bytes(data: bytearray, m: Mutation, path: Path) -> bytearray:
    raw = bytes.fromhex(m["data"])
    offset = m["offset"] % max(1, len(data))
    data[offset:offset + len(raw)] = raw
    return data


def _header_field(data: bytearray, m: Mutation, path: Path) -> bytearray:
    if len(data) < HEADER_LAYOUT.size:
        return data
    fields = list(HEADER_LAYOUT.unpack_from(data))
    index = HEADER_FIELDS.index(m["field"])
    code = HEADER_LAYOUT.format[1:][index]
    value = m["value"]
    fields[index] = float(value) if code == "d" else _wrap(int(value), code)
    data[:HEADER_LAYOUT.size] = HEADER_LAYOUT.pack(*fields)
    return data


def _wrap(value: int, code: str) -> int:
    bits = {"i": 32, "I": 32, "Q": 64}[code]
    value &= (1 << bits) - 1
    return value - (1 << bits) if code == "i" and value >= 1 << 31 else value


def _page(data: bytearray, m: Mutation, path: Path) -> bytearray:
    page_size = 4096
    if len(data) >= 100:
        page_size = int.from_bytes(data[16:18], "big")
        page_size = 65536 if page_size == 1 else page_size or 4096
    pages = max(1, len(data) // page_size)
    start = (m["page"] % pages) * page_size
    rng = random.Random(m.get("seed", 0))
    how = m["how"]
    skip = 100 if start == 0 and m.get("keep_file_header", True) else 0
    if how == "zero":
        data[start + skip:start + page_size] = bytes(page_size - skip)
    elif how == "garbage":
        data[start + skip:start + page_size] = bytes(rng.getrandbits(8) for _ in range(page_size - skip))
    else:  # a few flipped bytes within the page
        for _ in range(m.get("count", 3)):
            data[start + rng.randrange(skip, page_size)] ^= 1 << rng.randrange(8)
    return data


def _pickle_opcode(data: bytearray, m: Mutation, path: Path) -> bytearray:
    """Damage the k-th opcode: its argument set to an extreme, the opcode byte replaced, or it dropped."""
    ops = list(pickletools.genops(bytes(data)))
    if not ops:
        return data
    index = m["index"] % len(ops)
    start = ops[index][2]
    end = ops[index + 1][2] if index + 1 < len(ops) else len(data)
    how = m["how"]
    if how == "drop":
        del data[start:end]
    elif how == "opcode":
        data[start] = m["value"] & 0xFF
    elif how == "duplicate":
        data[start:start] = data[start:end]
    else:  # "argument": overwrite the argument's bytes (length prefixes and memo indices included)
        width = end - start - 1
        value = int(m["value"]) % (1 << (8 * max(1, min(width, 8))))
        raw = value.to_bytes(8, "little")[:min(width, 8)]
        data[start + 1:start + 1 + len(raw)] = raw
    return data


def _element(data: bytearray, m: Mutation, path: Path) -> bytearray:
    """One field of one level-0 element: its link-count word or count, a link slot, the label, a vector float."""
    fields = dict(zip(HEADER_FIELDS, HEADER_LAYOUT.unpack_from((path.parent / "header.bin").read_bytes()),
                      strict=True))
    header = {"element_size": fields["element_size"], "data_offset": fields["data_offset"],
              "label_offset": fields["label_offset"]}
    size, count = header["element_size"], max(1, fields["element_count"])
    base = (m["element"] % count) * size
    field, value = m["field"], int(m["value"])
    if field == "count_word":  # the whole word: the link count and, in its third byte, hnswlib's deleted mark
        offset, raw = base, struct.pack("<I", value & 0xFFFFFFFF)
    elif field == "link_count":  # only the 16-bit count, so the element stays as live or deleted as it was
        offset, raw = base, struct.pack("<H", value & 0xFFFF)
    elif field == "link":
        slots = max(1, (header["data_offset"] - 4) // 4)
        offset, raw = base + 4 + 4 * (m.get("slot", 0) % slots), struct.pack("<I", value & 0xFFFFFFFF)
    elif field == "label":
        offset, raw = base + header["label_offset"], struct.pack("<Q", value & (2**64 - 1))
    else:  # "vector": a float32 replaced by the bits given
        dim = max(1, (header["label_offset"] - header["data_offset"]) // 4)
        offset, raw = base + header["data_offset"] + 4 * (m.get("slot", 0) % dim), struct.pack("<I", value & 0xFFFFFFFF)
    if offset + len(raw) <= len(data):
        data[offset:offset + len(raw)] = raw
    return data


def _link_word(data: bytearray, m: Mutation, path: Path) -> bytearray:
    """The k-th non-zero word of link_lists.bin (a size word or a link) set to a value, or the word after it."""
    words = [i for i in range(0, len(data) - 3, 4) if data[i:i + 4] != b"\0\0\0\0"]
    if not words:
        return data
    position = words[m["index"] % len(words)] + 4 * m.get("shift", 0)
    if position + 4 <= len(data):
        data[position:position + 4] = struct.pack("<I", int(m["value"]) & 0xFFFFFFFF)
    return data


def _pickle_map(data: bytearray, m: Mutation, path: Path) -> bytearray:
    """1.x's plain-dict pickle rewritten with the k-th id moved to another label in both maps, consistently
    (so the maps stay each other's inverse and only the label's value is wrong)."""
    loaded = _RestrictedUnpickler(bytes(data), path).load()
    if not isinstance(loaded, dict):
        raise ValueError("pickle_map needs 1.x's plain-dict pickle")
    ids = sorted(loaded["id_to_label"])
    record_id = ids[m["index"] % len(ids)]
    old = loaded["id_to_label"][record_id]
    loaded["id_to_label"][record_id] = m["label"]
    del loaded["label_to_id"][old]
    loaded["label_to_id"][m["label"]] = record_id
    return bytearray(pickle.dumps(loaded, protocol=4))


_BYTE_OPS = {"flip": _flip, "truncate": _truncate, "extend": _extend, "replace": _replace, "set_bytes": _set_bytes,
             "header_field": _header_field, "page": _page, "pickle_opcode": _pickle_opcode, "element": _element,
             "link_word": _link_word, "pickle_map": _pickle_map}


def _damage_log(path: Path, m: Mutation) -> None:
    """Write-log rows (and watermarks) changed through SQLite on the copy, as a damaged or foreign writer would."""
    conn = sqlite3.connect(path)
    try:
        if m["op"] == "watermark":
            rows = conn.execute("SELECT segment_id FROM max_seq_id ORDER BY segment_id").fetchall()
            chosen = rows if m["row"] == "all" else rows[m["row"] % len(rows):][:1] if rows else []
            for (segment,) in chosen:
                conn.execute("UPDATE max_seq_id SET seq_id = ? WHERE segment_id = ?", (_decode_value(m["value"]),
                                                                                      segment))
        else:
            column = m["column"]
            condition = {"vector": "vector IS NOT NULL",
                         "metadata": "metadata IS NOT NULL AND metadata != '{}'"}.get(column, "1")
            rows = conn.execute(f"SELECT seq_id FROM embeddings_queue WHERE {condition} ORDER BY seq_id").fetchall()
            if rows:
                seq_id = rows[m["row"] % len(rows)][0]
                value = _log_value(conn, seq_id, column, m)
                conn.execute(f"UPDATE embeddings_queue SET {column} = ? WHERE seq_id = ?", (value, seq_id))
        conn.commit()
    finally:
        conn.close()


def _decode_value(value: Any) -> Any:
    """JSON cannot hold bytes: {"hex": ...} stands for a BLOB."""
    return bytes.fromhex(value["hex"]) if isinstance(value, dict) and "hex" in value else value


def _log_value(conn: sqlite3.Connection, seq_id: int, column: str, m: Mutation) -> Any:
    current = conn.execute(f"SELECT {column} FROM embeddings_queue WHERE seq_id = ?", (seq_id,)).fetchone()[0]
    how = m["how"]
    if how == "value":
        return _decode_value(m["value"])
    if column == "vector":
        blob = bytes(current or b"")
        if how == "truncate":
            return blob[:m.get("size", 3) % max(1, len(blob))]
        if how == "extend":
            return blob + b"\0\0\0\0"
        if how == "nan":
            return b"\0\0\xc0\x7f" * (len(blob) // 4)
        return blob
    text = current if isinstance(current, str) else "{}"
    if how == "cut":
        return text[:m.get("size", 1) % max(1, len(text))]
    if how == "key":  # one key's value replaced by an odd JSON value
        try:
            payload = json.loads(text)
        except ValueError:
            return text
        if isinstance(payload, dict) and payload:
            key = sorted(payload)[m.get("key", 0) % len(payload)]
            payload[key] = m["json"]
            return json.dumps(payload)
        return json.dumps(m["json"])
    return text
