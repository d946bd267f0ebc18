"""Rediscovery benchmark: does evolution, started from SGD with momentum alone, reach AdamW's
level (score 1.0) on the `small` suite, and does it beat random search with the same budget
and the same evaluator?

    python bench/rediscovery.py --budget 2000 --workers 2 --db sqlite:///rediscovery.db

Prints, for evolution and for the random-search control: the best stage-1 (`small`) score,
the number of evaluations after which a stage-1 score >= 1.0 was first committed, the best
stage-2 (`medium`) score of the funnel, and the fraction of proposed children that needed a
full evaluation (the rest were cache hits or rejected by the checker and the probes).
"""

from __future__ import annotations

import argparse
import json
import math
import time

from search.config import CampaignConfig, Evolution, Funnel, Simplify
from search.engine import Campaign
from store import Store


def run(store: Store, strategy: str, args) -> dict:
    config = CampaignConfig(
        seeds=("sgd_momentum",), seed=args.seed, budget=args.budget, workers=args.workers,
        evolution=Evolution(strategy=strategy, population=args.population,
                            tournament=args.tournament, restart_after=args.restart_after),
        funnel=Funnel(stage1="small", stage2="medium", threshold=1.0,
                      stage2_max=args.stage2_max),
        simplify=Simplify(enabled=False))
    name = f"rediscovery-{strategy}-{args.seed}-{time.strftime('%Y%m%d-%H%M%S')}"
    campaign = Campaign.create(store, config, name)
    start = time.perf_counter()
    summary = campaign.run(workers=args.workers)
    wall = time.perf_counter() - start
    evals = sorted(store.evaluations(campaign=campaign.id), key=lambda e: e.id)
    stage1 = [e for e in evals if e.stage == 1]
    stage2 = [e.score for e in evals if e.stage == 2 and e.score is not None]
    reached = next((k + 1 for k, e in enumerate(stage1)
                    if e.score is not None and e.score >= 1.0), None)
    best1 = max((e.score for e in stage1 if e.score is not None), default=-math.inf)
    return {"strategy": strategy, "campaign": name, "evaluations": summary["evaluations"],
            "stage1_evaluations": len(stage1), "children": summary["children"],
            "best_stage1": best1, "evaluations_to_1.0": reached,
            "best_stage2": max(stage2, default=None),
            "full_evaluation_fraction": summary["full_evaluation_fraction"],
            "cache_hit_rate": summary["hit_rate"], "rejections": summary["rejections"],
            "wall_s": round(wall, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--budget", type=int, default=2000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--population", type=int, default=64)
    ap.add_argument("--tournament", type=int, default=8)
    ap.add_argument("--restart-after", type=int, default=600)
    ap.add_argument("--stage2-max", type=int, default=8)
    ap.add_argument("--db", default="sqlite:///rediscovery.db")
    ap.add_argument("--only", choices=["evolution", "random"])
    ap.add_argument("--json", help="also write the results to this file")
    args = ap.parse_args()
    results = []
    with Store(args.db) as store:
        for strategy in ("evolution", "random"):
            if args.only and strategy != args.only:
                continue
            results.append(run(store, strategy, args))
            print(json.dumps(results[-1], indent=2), flush=True)
    if len(results) == 2:
        evo, rnd = results
        print(f"\nevolution best stage-1 {evo['best_stage1']:.3f} vs random search "
              f"{rnd['best_stage1']:.3f}: margin {evo['best_stage1'] - rnd['best_stage1']:+.3f} "
              f"(target >= +0.3)")
        print(f"evolution reached 1.0 after {evo['evaluations_to_1.0']} evaluations; "
              f"best stage-2 {evo['best_stage2']}; full-evaluation fraction "
              f"{evo['full_evaluation_fraction']:.1%} (target <= 25%)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
