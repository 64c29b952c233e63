"""Hypothesis strategies for mutations: which file, which structure in it, which value.

Structure-aware rather than blind: SQLite is damaged page by page, `header.bin` field by field,
the pickle opcode by opcode, `data_level0.bin` element field by element field, `link_lists.bin`
word by word, the write log row by row through SQLite; plain byte flips, truncations and
extensions of every file besides. Values lean to the ones that break readers (0, -1, a count
plus one, 2**31, 2**63, NaN) but also come from the whole range.
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from chroma_migrate_testkit.fuzz.inventory import HEADER_FIELDS, INDEX_FILES, LOG, SQLITE, Inventory

U32_EDGES = [0, 1, 2, 3, 0xFF, 0xFFFF, 0x10000, 0x10001, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFE, 0xFFFFFFFF]
U64_EDGES = [2**31, 2**32, 2**53 + 1, 2**63 - 1, 2**63, 2**64 - 1]
FLOAT_BITS = [0x7FC00000, 0x7F800000, 0xFF800000, 0x00000001, 0x80000000, 0x7F7FFFFF]  # NaN, inf, -inf, tiny, -0
ODD_JSON = [None, True, 0, -1, 2**70, -(2**70), 1e308, 5e-324, -0.0, "", "x" * 300, "\u0000", "🧾", [], [1, "a"],
            {"nested": {"deeper": [1]}}, [None]]


def _edge_int(limit: int | None = None) -> st.SearchStrategy[int]:
    edges = U32_EDGES + U64_EDGES
    if limit is not None:
        edges = [*edges, max(0, limit - 1), limit, limit + 1, 2 * limit]
    return st.one_of(st.sampled_from(edges), st.integers(0, 2**32 - 1), st.integers(0, 2**64 - 1))


def _bytes_ops(size: int) -> st.SearchStrategy[dict[str, Any]]:
    size = max(1, size)
    flip = st.builds(lambda edits: {"op": "flip", "edits": edits},
                     st.lists(st.tuples(st.integers(0, size - 1), st.integers(1, 255)).map(list), min_size=1,
                              max_size=8))
    truncate = st.builds(lambda n: {"op": "truncate", "size": n},
                         st.one_of(st.integers(0, size - 1), st.sampled_from([0, 1, size // 2, size - 1])))
    extend = st.builds(lambda data: {"op": "extend", "data": data.hex()}, st.binary(min_size=1, max_size=64))
    return st.one_of(flip, flip, truncate, extend)


def _sqlite_ops(inv: Inventory) -> st.SearchStrategy[dict[str, Any]]:
    roots = sorted(set(inv.root_pages.values()))
    page_number = st.one_of(st.sampled_from([r - 1 for r in roots] or [0]), st.integers(0, max(0, inv.pages - 1)))
    page = st.builds(lambda p, how, seed, count: {"op": "page", "page": p, "how": how, "seed": seed, "count": count},
                     page_number, st.sampled_from(["zero", "garbage", "flip", "flip"]), st.integers(0, 2**16),
                     st.integers(1, 6))
    return st.one_of(page, page, _bytes_ops(inv.sqlite_size))


def _log_ops(inv: Inventory) -> st.SearchStrategy[dict[str, Any]]:
    row = st.integers(0, 10_000)
    blob = st.builds(lambda b: {"hex": b.hex()}, st.binary(max_size=40))
    vector = st.one_of(
        st.builds(lambda r, how, n: {"op": "log", "column": "vector", "row": r, "how": how, "size": n}, row,
                  st.sampled_from(["truncate", "extend", "nan"]), st.integers(0, 64)),
        st.builds(lambda r, v: {"op": "log", "column": "vector", "row": r, "how": "value", "value": v}, row,
                  st.one_of(st.sampled_from([None, "not a vector", 7, 1.5]), blob)))
    metadata = st.one_of(
        st.builds(lambda r, n: {"op": "log", "column": "metadata", "row": r, "how": "cut", "size": n}, row,
                  st.integers(0, 200)),
        st.builds(lambda r, k, j: {"op": "log", "column": "metadata", "row": r, "how": "key", "key": k, "json": j},
                  row, st.integers(0, 20), st.sampled_from(ODD_JSON)),
        st.builds(lambda r, v: {"op": "log", "column": "metadata", "row": r, "how": "value", "value": v}, row,
                  st.sampled_from([None, "not json", "[]", "null", "1", '{"a": NaN}', '{"a": 1e999}', 5])))
    other = st.builds(lambda column, r, v: {"op": "log", "column": column, "row": r, "how": "value", "value": v},
                      st.sampled_from(["operation", "id", "topic", "encoding"]), row,
                      st.one_of(st.sampled_from([None, -1, 4, 99, 2**62, "ADD", "", "FLOAT64", "INT32", 2.5]), blob))
    watermark = st.builds(lambda r, v: {"op": "watermark", "row": r, "value": v}, row,
                          st.one_of(st.sampled_from([None, -1, 0, 1, 2**62, 2**63 - 1, "text", 1.5]), blob))
    return st.one_of(vector, metadata, metadata, other, watermark)


def _index_ops(inv: Inventory, collection: str, role: str) -> st.SearchStrategy[dict[str, Any]]:
    facts = inv.segments[collection]
    size = facts.sizes[role]
    header = dict(zip(HEADER_FIELDS, facts.header, strict=True))
    count = int(header["element_count"])
    plain = _bytes_ops(size)
    if role == "header.bin":
        field = st.builds(lambda f, v: {"op": "header_field", "field": f, "value": v},
                          st.sampled_from([f for f in HEADER_FIELDS if f != "mult"]), _edge_int(count))
        return st.one_of(field, field, field, plain)
    if role == "data_level0.bin":
        element = st.builds(lambda e, f, s, v: {"op": "element", "element": e, "field": f, "slot": s, "value": v},
                            st.integers(0, max(0, count - 1)),
                            st.sampled_from(["count_word", "link_count", "link", "label", "vector"]),
                            st.integers(0, 64), st.one_of(_edge_int(count), st.sampled_from(FLOAT_BITS)))
        return st.one_of(element, element, plain)
    if role == "link_lists.bin":
        word = st.builds(lambda i, shift, v: {"op": "link_word", "index": i, "shift": shift, "value": v},
                         st.integers(0, max(0, len(facts.link_words) - 1)), st.sampled_from([0, 0, 1, 2]),
                         _edge_int(count))
        return st.one_of(word, word, plain) if facts.link_words else plain
    if role == "length.bin":
        norm = st.builds(lambda i, bits: {"op": "set_bytes", "offset": 4 * i, "data": bits.to_bytes(4, "little").hex()},
                         st.integers(0, max(0, count - 1)), st.sampled_from(FLOAT_BITS))
        return st.one_of(norm, plain)
    opcode = st.builds(lambda i, how, v: {"op": "pickle_opcode", "index": i, "how": how, "value": v},
                       st.integers(0, max(0, len(facts.pickle_ops) - 1)),
                       st.sampled_from(["argument", "argument", "opcode", "drop", "duplicate"]), _edge_int(count))
    return st.one_of(opcode, opcode, plain)


ROLES = (SQLITE, LOG, *INDEX_FILES)  # the kinds of input, in the order a rotating campaign visits them


def mutations(inv: Inventory, role: str | None = None) -> st.SearchStrategy[dict[str, Any]]:
    """Mutations of the seed `inv` describes (of files of kind `role`, if given); a write-log one comes now and
    then after every watermark is set to 0, so that the replay reads the row it damages (a healthy database
    replays almost none). A closure, so hypothesis never renders the inventory in a repr."""
    targets = [t for t in inv.targets() if role is None or t == role or t.endswith(f"/{role}")]

    @st.composite
    def one(draw: st.DrawFn) -> dict[str, Any]:
        target = draw(st.sampled_from(targets))
        if target == LOG and draw(st.integers(0, 3)) == 0:
            log = {"target": LOG, **draw(_log_ops(inv).filter(lambda m: m["op"] == "log"))}
            reset = {"target": LOG, "op": "watermark", "row": "all", "value": 0}
            return {"target": LOG, "op": "steps", "steps": [reset, log]}
        return _single(draw, inv, target)

    return one()


def _single(draw: st.DrawFn, inv: Inventory, target: str) -> dict[str, Any]:
    if target == SQLITE:
        op = draw(_sqlite_ops(inv))
    elif target == LOG:
        op = draw(_log_ops(inv))
    else:
        collection, role = target.split("/", 1)
        op = draw(_index_ops(inv, collection, role))
    return {"target": target, **op}
