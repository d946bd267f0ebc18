"""Add evolved programs of a stored campaign to the fidelity panel (`bench/panel/*.rule`).

    python bench/panel/harvest.py DB CAMPAIGN PREFIX [--best 6] [--spread 6] [--failed 1]

Takes the campaign's stage-1 programs (distinct by structural hash, seeds excluded): its
`--best` highest-scoring, `--spread` more evenly spaced through the rest of the ranking,
and `--failed` whose every run failed, so that the panel holds good and bad programs of a
real search. Each is written as ``PREFIX_<program id>.rule``, its docstring saying where it
came from and what it scored there (in that campaign's own unit and suite version).
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from optforge.store import Store  # noqa: E402

from optforge import dsl  # noqa: E402

HERE = Path(__file__).resolve().parent


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("db")
    ap.add_argument("campaign")
    ap.add_argument("prefix")
    ap.add_argument("--best", type=int, default=6)
    ap.add_argument("--spread", type=int, default=6)
    ap.add_argument("--failed", type=int, default=1)
    args = ap.parse_args()
    with Store(args.db, create=False) as store:
        campaign = store.get_campaign(int(args.campaign) if args.campaign.isdigit()
                                      else args.campaign)
        checkpoint = store.load_checkpoint(campaign.id)
        seeds = set(checkpoint.counters.get("seed_ids", []) if checkpoint else [])
        evals = [e for e in store.evaluations(campaign=campaign.id, stage=1)
                 if e.program_id not in seeds]
        by_hash = {}
        for e in evals:
            rec = store.get_program(e.program_id)
            by_hash.setdefault(rec.structural_hash, (e, rec))
        ok = sorted((v for v in by_hash.values() if v[0].status == "ok"),
                    key=lambda v: -v[0].score)
        failed = [v for v in by_hash.values() if v[0].status != "ok"]
        picks = ok[:args.best]
        rest = ok[args.best:]
        if rest and args.spread:
            step = len(rest) / args.spread
            picks += [rest[int(k * step)] for k in range(args.spread) if int(k * step) < len(rest)]
        picks += failed[:args.failed]
        for e, rec in picks:
            program = dsl.parse(rec.source)
            name = f"{args.prefix}_{rec.id}"
            score = "failed" if e.status != "ok" else f"{e.score:.3f}"
            doc = (f"Evolved: program {rec.id} of campaign {campaign.name!r} ({args.db}); "
                   f"its stage-1 score there: {score} on suite {e.suite!r} "
                   f"(the protocol of its day).")
            program = replace(program, name=name, doc=doc)
            path = HERE / f"{name}.rule"
            path.write_text(dsl.format_program(program))
            print(f"{path.name}: {score}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
