"""Whether a collection's source graph can be carried into the target, or must be built anew.

A graph is carried only when it is sound and the target would have built the same kind of
graph: a flushed index that the native reader opens, that passes the deterministic health
check (`native/hnsw_health.py`), and whose space, `M` and `ef_construction` are what the
target collection is configured with. Anything else is built natively, and the reason says why.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from chroma_migrate.native.collection import NativeCollection
from chroma_migrate.native.errors import CorruptDatabaseError
from chroma_migrate.native.hnsw_health import check_index_health


class GraphPath(StrEnum):
    CARRIED = "carried"
    BUILT = "built"
    EMPTY = "empty"


@dataclass(frozen=True)
class GraphChoice:
    path: GraphPath
    reason: str


def setting_differences(source: NativeCollection, target_index: dict[str, Any]) -> list[str]:
    """Where the target's configured index differs from the graph the source built."""
    header = source.vectors.files.header if source.vectors.files else None
    if header is None:
        return []
    built = {"space": source.space, "M": header.m, "construction_ef": header.ef_construction}
    return [f"{name} {built[name]} in the source graph, {target_index.get(name)} in the target's configuration"
            for name in built if str(target_index.get(name)) != str(built[name])]


def choose_graph(source: NativeCollection, target_index: dict[str, Any]) -> GraphChoice:
    if source.count == 0:
        return GraphChoice(GraphPath.EMPTY, "the collection holds no records, so it has no index")
    try:
        files = source.vectors.files
    except CorruptDatabaseError as exc:
        return GraphChoice(GraphPath.BUILT, f"the source index cannot be read ({exc.problem})")
    if files is None:
        return GraphChoice(GraphPath.BUILT, "the source never flushed an index: its vectors are only in the write log")
    differences = setting_differences(source, target_index)
    if differences:
        return GraphChoice(GraphPath.BUILT, "the target builds another graph: " + "; ".join(differences))
    health = check_index_health(source, source.name)
    if not health.passed:
        return GraphChoice(GraphPath.BUILT, "the source graph failed its health check: "
                           + "; ".join(health.problems[:2]))
    pending = len(source.vectors.sources.from_log) + len(source.vectors.sources.removed)
    tail = f", with {pending} write-log changes applied to the copy" if pending else ""
    return GraphChoice(GraphPath.CARRIED, f"the source graph is sound and built with the target's settings{tail}")
