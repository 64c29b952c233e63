"""A campaign's summary as Markdown: the tables docs/faults.md quotes."""

from __future__ import annotations

from typing import Any


def render_summary(summary: dict[str, Any]) -> str:
    lines = [f"# Fuzz campaign: {summary['cases']} cases in {summary['seconds']} s "
             f"(hypothesis seed {summary['random_seed']})", "",
             "| source version | cases |", "| --- | --- |"]
    lines += [f"| {v} | {n} |" for v, n in summary["by_version"].items()]
    lines += ["", "| input file | cases | outcomes |", "| --- | --- | --- |"]
    for role, n in summary["by_file"].items():
        outcomes = ", ".join(f"{k} {v}" for k, v in summary["outcomes_by_file"][role].items())
        lines.append(f"| {role} | {n} | {outcomes} |")
    lines += ["", "| outcome | cases |", "| --- | --- |"]
    lines += [f"| {k} | {v} |" for k, v in summary["outcomes"].items()]
    longest = summary["longest_case"] or {}
    lines += ["", f"Peak memory of a case: {summary['peak_rss_mib']} MiB (what its child added to its size "
                  "at the fork). "
                  f"Longest case: {longest.get('seconds')} s ({longest.get('version')}, "
                  f"{longest.get('mutation', {}).get('target')} {longest.get('mutation', {}).get('op')}: "
                  f"{longest.get('outcome')}). Changed answers checked against the writing version: "
                  f"{summary['oracle_checked']}.", "",
              f"Findings: {len(summary['findings'])}"]
    for item in summary["findings"]:
        lines.append(f"- {item['version']} {item['outcome']}: {item['finding'][:300]}")
    return "\n".join(lines) + "\n"
