"""Every seed optimizer's score on a suite (default `small`): the table a search is judged
against.

    python bench/seed_leaderboard.py [--suite small] [--workers 2] [--seeds S ...] [--json FILE]

Scores are already ratios against references measured on this machine: per task, tuned
AdamW's final loss over the seed's, both at their own best learning rates, so AdamW scores
exactly 1 and higher is better (the baselines are computed in this run unless the cache
holds them for this suite version). The table also
marks every task on which a seed's best learning rate sits at an edge of the grid (``<``
lowest rate, ``>`` highest): the grid is meant to be wide enough that this never happens.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from optforge import (
    evaluators,  # noqa: E402
    seeds,  # noqa: E402
)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--suite", default="small", choices=evaluators.SUITES)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    ap.add_argument("--seeds", nargs="+", metavar="SEED", help="only these seeds")
    args = ap.parse_args()

    names = seeds.seed_names()
    if args.seeds:
        unknown = sorted(set(args.seeds) - set(names))
        if unknown:
            ap.error(f"unknown seeds: {', '.join(unknown)}")
        names = tuple(args.seeds)
    programs = [seeds.load_seed(n) for n in names]
    start = time.perf_counter()
    with evaluators.EvaluatorPool(args.workers) as pool:
        suite = evaluators.get_suite(args.suite, pool.device_kind)
        t0 = time.perf_counter()
        baselines = evaluators.ensure_baselines(suite, pool=pool)
        baseline_time = time.perf_counter() - t0
        t0 = time.perf_counter()
        results = sorted(evaluators.evaluate_many(programs, suite, pool=pool),
                         key=lambda r: -r.score)
        eval_time = time.perf_counter() - t0

    tasks = [t.name for t in suite.tasks]
    short = {n: n[:9] for n in tasks}
    print(f"suite {suite.name} (version {suite.version}), {len(programs)} seeds, "
          f"{args.workers} workers on {pool.device_kind}")
    print("baselines (best learning rate, loss):")
    for t in suite.tasks:
        b = baselines[t.name]
        print(f"  {t.name:<16} SGD-momentum lr {b.sgd_lr:<8.3g} loss {b.sgd_loss:<10.4g}"
              f"AdamW lr {b.adamw_lr:<8.3g} loss {b.adamw_loss:<10.4g}"
              f"grid {t.lrs[0]:g}..{t.lrs[-1]:g} ({len(t.lrs)} rates x {len(t.seeds)} seeds)")
    print()
    header = f"{'#':>2} {'seed':<17}{'score':>7}  {'status':<8}" + \
        "".join(f"{short[n]:>10}" for n in tasks)
    print(header)
    print("-" * len(header))
    edges = []
    for rank, r in enumerate(results, 1):
        cells = []
        for t in suite.tasks:
            ts = r.task(t.name)
            mark = " "
            if ts.best_lr is not None and ts.best_lr == t.lrs[0]:
                mark = "<"
            elif ts.best_lr is not None and ts.best_lr == t.lrs[-1]:
                mark = ">"
            if mark != " ":
                edges.append((r.rule, t.name, ts.best_lr))
            cells.append(f"{ts.score:>9.2f}{mark}")
        print(f"{rank:>2} {r.rule:<17}{r.score:>7.3f}  {r.status:<8}" + "".join(cells))
    print()
    total_train = sum(r.wall_time for r in results)
    print(f"time: baselines {baseline_time:.1f} s (0 if cached), seeds {eval_time:.1f} s wall "
          f"for {len(results)} candidates = {60 * len(results) / eval_time:.1f} candidates/min "
          f"on {args.workers} workers; {total_train / len(results):.2f} s of training per "
          f"candidate; total {time.perf_counter() - start:.1f} s")
    if edges:
        print(f"best learning rate at a grid edge ({len(edges)} seed-task pairs):")
        for rule, task, lr in edges:
            print(f"  {rule:<17} {task:<16} lr {lr:g}")
    else:
        print("no seed's best learning rate is at an edge of the grid")
    if args.json:
        with open(args.json, "w") as f:
            json.dump([r.to_json() for r in results], f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
