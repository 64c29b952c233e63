"""Readable summaries of the JSON documents the commands produce."""

from __future__ import annotations

from typing import Any

from chroma_migrate.estimate import render_estimate
from chroma_migrate.reader_policy import render_readers_text
from chroma_migrate.verification import behaviour


def _mib(size: int) -> str:
    return f"{size / 2**20:.1f} MiB"


def render_inspect(info: dict[str, Any]) -> str:
    lines = [
        *([f"snapshot   {info['snapshot']}"] if info.get("snapshot") else []),
        f"database   {info['path']} ({_mib(info['size_bytes'])})",
        f"written by chromadb {' / '.join(info['written_by']) or 'unknown'} "
        f"(migrations {_signature(info['signature'])}; read with {info['reader_version']})",
        "databases  " + (", ".join(f"{d['tenant']}/{d['name']}" for d in info.get("databases") or []) or "-"),
        f"{'collection':<24}{'records':>10}{'dim':>7}  {'space':<7}{'M':>4}{'ef_c':>6}{'ef_s':>6}  metadata",
    ]
    for c in info["collections"]:
        index = c["index"]
        user = {k: v for k, v in (c["metadata"] or {}).items() if not k.startswith("hnsw:")}
        lines.append(f"{c['name']:<24}{c['records']:>10}{c['dimension'] or '-':>7}  {index['space']:<7}"
                     f"{index['M']:>4}{index['construction_ef']:>6}{index['search_ef']:>6}  {user or ''}")
        if c["list_metadata_keys"]:
            lines.append(f"{'':<24}list metadata: {c['list_metadata_keys']}")
        if c.get("embedding_function"):
            lines.append(f"{'':<24}embedding function: {c['embedding_function']}")
    return "\n".join(lines)


def _signature(signature: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(signature.items()))


def render_probe(result: dict[str, Any]) -> str:
    lines = [f"probe {result['path']} -> chromadb {result['target']}: {result['strategy']}",
             f"  {result['reason']}"]
    lines += [f"  {c['collection']:<24}{c['strategy']:<9}" for c in result["collections"]]
    if text := render_readers_text(result.get("readers")):
        lines.append(text)
    if result.get("readers_note"):
        lines.append(f"  {result['readers_note']}")
    if result.get("estimate"):
        lines.append(f"  {render_estimate(result['estimate'])}")
    return "\n".join(lines)


def self_retrieval_text(recall: dict[str, Any]) -> str:
    """`found/checked` sampled stored vectors the target finds as their own nearest neighbours."""
    found = recall.get("self_retrieval")
    if not found or not found.get("checked"):
        return "n/a"
    text = f"{found['found_by_target'] + found['found_by_graph_walk']}/{found['checked']}"
    return f"{text} ({found['unreachable']} unreachable)" if found.get("unreachable") else text


def render_verification(report: dict[str, Any]) -> str:
    verdict = "PASSED" if report["passed"] else "FAILED"
    lines = [f"verification {verdict}: chromadb {report['source_version']} -> {report['target_version']}"]
    for c in report["collections"]:
        records = c.get("records")
        if not records:
            lines.append(f"  {c['collection']:<24} {'; '.join(c['problems'])}")
            continue
        recall = c["recall"]
        recall_text = (f"recall {recall['source_recall']:.3f}->{recall['target_recall']:.3f}"
                       if recall.get("queries") else "recall n/a")
        if (found := self_retrieval_text(recall)) != "n/a":
            recall_text += f", self {found}"
        lines.append(
            f"  {c['collection']:<24} {'ok ' if c['passed'] else 'BAD'} {records['source_count']:>8} -> "
            f"{records['target_count']:<8} identical {records['identical']}, equivalent {records['equivalent']}, "
            f"missing {records['missing']}, extra {records['extra']}, different {records['different']}; "
            f"digest {'=' if records['digest_equal'] else '≠'} {records['target_digest'][:12]}; {recall_text}"
        )
        for reason, count in records["equivalent_reasons"].items():
            lines.append(f"  {'':<24}   equivalent: {count} × {reason}")
        for note in c.get("notes", []):
            lines.append(f"  {'':<24}   note: {note}")
        for problem in c["problems"]:
            lines.append(f"  {'':<24}   problem: {problem}")
        if records["missing_sample"]:
            lines.append(f"  {'':<24}   missing e.g. {records['missing_sample'][:3]}")
        if records["extra_sample"]:
            lines.append(f"  {'':<24}   extra e.g. {records['extra_sample'][:3]}")
        if records["different_sample"]:
            lines.append(f"  {'':<24}   different e.g. {records['different_sample'][:3]}")
    shown = {f"{c['collection']}: {p}" for c in report["collections"] for p in c["problems"]}
    lines += [f"  problem: {problem}" for problem in report["problems"] if problem not in shown]
    lines += behaviour_lines(report)
    return "\n".join(lines)


def behaviour_lines(report: dict[str, Any], limit: int = 50) -> list[str]:
    """The section "What readers will see differently": every changed answer, or "none" when measured
    (so the approver knows it was), or "not measured".

    A report from before `report["behaviour"]` existed shows its `behaviour_changes` sentences."""
    seen = report.get("behaviour")
    if seen is None:
        changes = report.get("behaviour_changes") or []
        return ([f"  What readers will see differently ({len(changes)}):"] + [f"    {c}" for c in changes[:limit]]
                if changes else [])
    lines = [f"  What readers will see differently: {behaviour.summary_line(seen)}"]
    changed = seen.get("changed", [])
    lines += [f"    [{entry['kind']}] {entry['text']}" for entry in changed[:limit]]
    if len(changed) > limit:
        lines.append(f"    ... and {len(changed) - limit} more (report[\"behaviour\"][\"changed\"])")
    lines += [f"    note: {note}" for note in seen.get("notes", [])]
    return lines


def render_phases(phases: list[dict[str, Any]]) -> str:
    lines = [f"  {'phase':<28}{'seconds':>9}{'peak RSS':>12}"]
    lines += [f"  {p['name']:<28}{p['seconds']:>9.2f}{_mib(p['peak_rss_bytes']):>12}" for p in phases]
    return "\n".join(lines)


def render_migration(result: dict[str, Any]) -> str:
    lines = [
        f"migrated {result['source']} (chromadb {'/'.join(result['written_by']) or result['source_version']}) "
        f"-> {result['out']} (chromadb {result['target_version']})",
        f"strategy {result['strategy']}; attempts: "
        + "; ".join(f"{a['strategy']} {a['outcome']} ({a['reason']})" for a in result["attempts"]),
        *transplant_lines(result["verification"]),
        render_verification(result["verification"]),
        *([text] if (text := render_readers_text(result.get("readers"))) else []),
        render_phases(result["phases"]),
        f"  total {result['total_seconds']:.2f}s"
        + (f"; {render_estimate(result['estimate'])}" if result.get("estimate") else ""),
        *([f"uploaded as {result['uploaded']} (no pointer moved: publish it with the DAG)"]
          if result.get("uploaded") else []),
    ]
    return "\n".join(lines)


def transplant_lines(report: dict[str, Any]) -> list[str]:
    """Per collection, whether its graph was carried over or built, and why (a transplant's report only)."""
    transplant = report.get("transplant")
    if not transplant:
        return []
    lines = ["transplant, per collection:"]
    for item in transplant["collections"]:
        applied = f", {item['log_changes_applied']} log changes applied" if item.get("log_changes_applied") else ""
        lines.append(f"  {item['name']}: graph {item['graph']}{applied} ({item['reason']})")
    return lines


def behaviour_markdown(report: dict[str, Any]) -> list[str]:
    """The approver's section "What readers will see differently", as Markdown lines (none: nothing)."""
    seen = report.get("behaviour")
    changes = report.get("behaviour_changes") or []
    if seen is None and not changes:
        return []
    lines = ["", "## What readers will see differently"]
    if seen is None:  # a report from before the structured section
        return lines + [f"- {change}" for change in changes]
    lines += ["", f"**{behaviour.summary_line(seen)}.** The same records, asked the same queries in each "
              "version; a change here is chromadb's own behaviour, not a loss, and never fails verification.", ""]
    lines += [f"- `{entry['kind']}` {entry['text']}" for entry in seen.get("changed", [])]
    lines += [f"- note: {note}" for note in seen.get("notes", [])]
    return lines
