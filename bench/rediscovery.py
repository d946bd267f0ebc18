"""Rediscovery benchmark: does evolution, started from SGD with momentum alone, reach AdamW's
level (score 1.0) on the `small` suite, and does it beat random search with the same budget
and the same evaluator?

    python bench/rediscovery.py --budget 2000 --workers 1 --concurrent --db sqlite:///r.db

The random-search control has no screening hurdle by default (`--control-screen`): a hurdle
is selection, and the control selects nothing; it still has the checker, the caches and the
probes. `--concurrent` runs the two strategies at the same time, each in its own process; with
`--workers 1` each campaign is serial (one process, one torch thread: reproducible).

Scores are in the product's unit (`evaluators.scoring`): tuned AdamW's final loss over the
candidate's, geometric mean over tasks, so 1.0 is AdamW's level.

Prints, for evolution and for the random-search control: the best stage-1 (`small`) score,
the number of evaluations after which a stage-1 score >= 1.0 was first committed, the best
stage-2 (`medium`) score of the funnel, and the fraction of proposed children that needed a
full evaluation (the rest were cache hits, or rejected by the checker, the probes or the
screening hurdle). Screenings (stage 0, `tiny`) are not full evaluations, but they are
trainings: their number and their share of all training time are printed beside it.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from concurrent.futures import ProcessPoolExecutor

import torch
from optforge.evaluators import evaluate_many
from optforge.evaluators.pool import EvaluatorPool
from optforge.evaluators.validation import validate
from optforge.search.config import (
    CampaignConfig,
    Evolution,
    Funnel,
    Simplify,
    Validation,
)
from optforge.search.engine import Campaign
from optforge.store import Store


def run(store: Store, strategy: str, args) -> dict:
    config = CampaignConfig(
        seeds=("sgd_momentum",), seed=args.seed, budget=args.budget, workers=args.workers,
        evolution=Evolution(strategy=strategy, population=args.population,
                            tournament=args.tournament, restart_after=args.restart_after),
        funnel=Funnel(stage1="small", stage2="medium", threshold=1.0,
                      stage2_max=args.stage2_max, hurdle=args.hurdle,
                      screen=args.screen if strategy == "evolution" else args.control_screen),
        simplify=Simplify(enabled=False),
        # the winner is validated by `--report ... --rescore K --validate`, chosen on stage 2
        # over every milestone's best
        validation=Validation(enabled=False))
    name = f"rediscovery-{strategy}-{args.seed}-{time.strftime('%Y%m%d-%H%M%S')}"
    campaign = Campaign.create(store, config, name)
    start = time.perf_counter()
    summary = campaign.run(workers=args.workers)
    return report(store, campaign, summary, time.perf_counter() - start)


MILESTONES = (100, 250, 500, 1000, 1500, 2000)


def report(store: Store, campaign: Campaign, summary: dict, wall: float | None) -> dict:
    """The benchmark's figures for a campaign, from its summary and its stored evaluations."""
    strategy, name = campaign.config.evolution.strategy, store.get_campaign(campaign.id).name
    evals = sorted(store.evaluations(campaign=campaign.id), key=lambda e: e.id)
    stage1 = [e for e in evals if e.stage == 1]
    running = [e.score for e in stage1 if e.score is not None and math.isfinite(e.score)]
    best_by = {n: max((e.score for e in stage1[:n] if e.score is not None), default=None)
               for n in MILESTONES if n <= len(stage1)}
    stage2 = [e.score for e in evals if e.stage == 2 and e.score is not None]
    reached = next((k + 1 for k, e in enumerate(stage1)
                    if e.score is not None and e.score >= 1.0), None)
    seconds = {stage: sum(e.wall_time or 0.0 for e in evals if e.stage == stage)
               for stage in (0, 1, 2)}
    best1 = max((e.score for e in stage1 if e.score is not None), default=-math.inf)
    return {"strategy": strategy, "campaign": name, "evaluations": summary["evaluations"],
            "stage1_evaluations": len(stage1), "children": summary["children"],
            "best_stage1": best1, "evaluations_to_1.0": reached,
            "best_stage1_after": best_by, "finite_stage1_scores": len(running),
            "best_stage2": max(stage2, default=None),
            "full_evaluation_fraction": summary["full_evaluation_fraction"],
            "screenings": summary["screenings"],
            "screen_cache_hits": summary["screen_cache_hits"],
            "training_seconds_by_stage": {k: round(v, 1) for k, v in seconds.items()},
            "screening_share_of_training_time": (seconds[0] / sum(seconds.values())
                                                 if sum(seconds.values()) else None),
            "cache_hit_rate": summary["hit_rate"], "rejections": summary["rejections"],
            "wall_s": None if wall is None else round(wall, 1)}


def rescore(store: Store, campaign: Campaign, k: int, workers: int,
            validate_winner: bool = False) -> dict:
    """Stage 2 (`funnel.stage2`) after each milestone: the best stage-2 score among the best
    `k` stage-1 programs (seeds excluded) of the campaign's first n stage-1 evaluations, for
    n in `MILESTONES`. Scores its own stage 2 stored are read from the store, the rest are
    scored now, outside the campaign (nothing is stored). With `validate_winner`, the
    stage-2 winner (the best stage-2 score of all those programs, chosen on stage 2 only)
    is trained on the held-out `validation` suite beside tuned AdamW, Lion and SGD with
    momentum (`evaluators.validation`)."""
    funnel = campaign.config.funnel
    seeds = set(campaign.counters.seed_ids)
    stage1 = [e for e in sorted(store.evaluations(campaign=campaign.id), key=lambda e: e.id)
              if e.stage == 1 and e.score is not None and e.program_id not in seeds]
    tops = {}
    for n in [m for m in MILESTONES if m < len(stage1)] + [len(stage1)]:
        best: dict[int, float] = {}
        for e in stage1[:n]:
            best[e.program_id] = max(best.get(e.program_id, -math.inf), e.score)
        tops[n] = sorted(best, key=lambda pid: -best[pid])[:k]
    stored = {e.program_id: e.score for e in store.evaluations(campaign=campaign.id)
              if e.suite == funnel.stage2 and e.score is not None}
    todo = sorted({pid for ids in tops.values() for pid in ids} - set(stored))
    out: dict = {}
    with EvaluatorPool(workers) as pool:
        results = evaluate_many([campaign.program(pid) for pid in todo], funnel.stage2,
                                pool=pool)
        scores = dict(stored)
        scores.update({todo[res.index]: res.score for res in results})
        out["best_stage2_after"] = {n: max(scores[pid] for pid in ids) if ids else None
                                    for n, ids in tops.items()}
        out["stage2_scored_now"] = len(todo)
        final = tops[len(stage1)]
        out["rescored_on_stage2 (id: stage-2)"] = {pid: scores[pid] for pid in final}
        out["best_rescored_stage2"] = max((scores[pid] for pid in final), default=None)
        if validate_winner and final:
            winner = max((pid for ids in tops.values() for pid in ids),
                         key=lambda pid: scores[pid])
            report = validate(campaign.program(winner), pool=pool)
            out["winner"] = {"program": winner, "stage2": scores[winner],
                             "source": store.get_program(winner).source,
                             "validation": report.to_json()}
    return out


def run_alone(strategy: str, args) -> dict:
    """`run` in a process of its own, with its own connection to the store."""
    torch.set_num_threads(args.threads)
    with Store(args.db) as store:
        return run(store, strategy, args)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--budget", type=int, default=2000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--population", type=int, default=64)
    ap.add_argument("--tournament", type=int, default=8)
    ap.add_argument("--restart-after", type=int, default=600)
    ap.add_argument("--stage2-max", type=int, default=8)
    ap.add_argument("--screen", default="tiny", help='screening suite ("" for none)')
    ap.add_argument("--hurdle", type=float, default=0.7)
    ap.add_argument("--control-screen", default="",
                    help='screening suite of the random-search control (default "": none, '
                         'the control selects nothing)')
    ap.add_argument("--db", default="sqlite:///rediscovery.db")
    ap.add_argument("--only", choices=["evolution", "random"])
    ap.add_argument("--concurrent", action="store_true",
                    help="run both strategies at once, each in its own process")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per campaign")
    ap.add_argument("--json", help="also write the results to this file")
    ap.add_argument("--report", nargs=2, metavar=("EVOLUTION", "RANDOM"),
                    help="run nothing: report two stored campaigns (e.g. after `optforge "
                         "resume` finished them)")
    ap.add_argument("--validate", action="store_true",
                    help="with --rescore: train each campaign's stage-2 winner on the held-out "
                         "validation suite beside AdamW, Lion and SGD with momentum")
    ap.add_argument("--rescore", type=int, metavar="K",
                    help="with --report: each campaign's best K stage-1 programs on stage 2 "
                         "(stored scores where its own stage 2 has them, else scored now)")
    args = ap.parse_args()
    if args.report:
        with Store(args.db, create=False) as store:
            results = []
            for ref in args.report:
                campaign = Campaign.resume(store, int(ref) if ref.isdigit() else ref)
                status = store.get_campaign(campaign.id).status
                results.append(report(store, campaign, campaign.summary(status), None))
                if args.rescore:
                    results[-1].update(rescore(store, campaign, args.rescore, args.workers,
                                               args.validate))
        return finish(results, args)
    strategies = [s for s in ("evolution", "random") if not args.only or s == args.only]
    with Store(args.db):
        pass  # create the database once, before any campaign process opens it
    if args.concurrent:
        with ProcessPoolExecutor(len(strategies)) as ex:
            results = list(ex.map(run_alone, strategies, [args] * len(strategies)))
    else:
        results = [run_alone(s, args) for s in strategies]
    finish(results, args)


def finish(results: list[dict], args) -> None:
    for r in results:
        print(json.dumps(r, indent=2), flush=True)
    by_strategy = {r["strategy"]: r for r in results}
    if len(by_strategy) == 2:
        evo, rnd = by_strategy["evolution"], by_strategy["random"]
        print(f"\nevolution best stage-1 {evo['best_stage1']:.3f} vs random search "
              f"{rnd['best_stage1']:.3f}: margin {evo['best_stage1'] - rnd['best_stage1']:+.3f} "
              f"(target >= +0.3)")
        print(f"evolution reached 1.0 after {evo['evaluations_to_1.0']} evaluations; "
              f"best stage-2 {evo['best_stage2']}; full-evaluation fraction "
              f"{evo['full_evaluation_fraction']:.1%} (target <= 25%); screenings took "
              f"{evo['screening_share_of_training_time'] or 0:.1%} of the training time")
        if "best_rescored_stage2" in evo and "best_rescored_stage2" in rnd:
            e2, r2 = evo["best_rescored_stage2"], rnd["best_rescored_stage2"]
            print(f"stage 2, best of each campaign's top {args.rescore} on stage 1: evolution "
                  f"{e2:.3f} vs random search {r2:.3f}: margin {e2 - r2:+.3f}")
    for r in results:
        if "best_stage2_after" in r:
            print(f"{r['strategy']}: best stage-1 / stage-2 score after n evaluations: " +
                  ", ".join(f"{n}: {r['best_stage1_after'].get(n, r['best_stage1']):.3f} / "
                            f"{s2:.3f}" for n, s2 in r["best_stage2_after"].items()))
        if "winner" in r:
            v = r["winner"]["validation"]
            comps = ", ".join(f"{name} {score:.3f}" for name, score in v["comparators"].items())
            print(f"{r['strategy']} winner (program {r['winner']['program']}, stage 2 "
                  f"{r['winner']['stage2']:.3f}): score on validation {v['score']:.3f} "
                  f"(tuned {comps})")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
