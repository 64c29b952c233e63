"""`python -m chroma_migrate_testkit.fuzz`: run a campaign and write its summary (what `make fuzz` runs)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from chroma_migrate_testkit.fuzz.campaign import CampaignConfig, run_campaign
from chroma_migrate_testkit.fuzz.report import render_summary
from chroma_migrate_testkit.fuzz.seeds import SEED_VERSIONS

REPO = Path(__file__).resolve().parents[3]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m chroma_migrate_testkit.fuzz", description=__doc__)
    parser.add_argument("--cases", type=int, default=500, help="cases to draw (default 500)")
    parser.add_argument("--seconds", type=float, help="stop drawing after this long")
    parser.add_argument("--versions", default=",".join(SEED_VERSIONS), help="source versions, comma-separated")
    parser.add_argument("--seed", type=int, default=15, help="hypothesis seed (the same seed draws the same cases)")
    parser.add_argument("--oracle", type=int, default=40,
                        help="cases at most whose changed records are checked against the writing version (slow)")
    parser.add_argument("--out", type=Path, default=REPO / ".cache" / "fuzz" / "summary.json")
    args = parser.parse_args(argv)
    versions = tuple(v.strip() for v in args.versions.split(",") if v.strip())
    unknown = sorted(set(versions) - set(SEED_VERSIONS))
    if unknown:
        parser.error(f"no seed for {', '.join(unknown)}; choose from {', '.join(SEED_VERSIONS)}")
    out = args.out
    config = CampaignConfig(cache=REPO / ".cache" / "fixtures", work=out.parent / "work", versions=versions,
                            cases=args.cases, seconds=args.seconds, random_seed=args.seed, oracle=args.oracle,
                            findings=out.parent / "findings")
    campaign = run_campaign(config, log=lambda m: print(m, file=sys.stderr))
    summary = campaign.summary()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=2) + "\n")
    out.with_suffix(".md").write_text(render_summary(summary))
    print(render_summary(summary))
    print(f"summary: {out}", file=sys.stderr)
    return 1 if summary["findings"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
