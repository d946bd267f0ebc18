"""Proxy fidelity: does a search suite rank optimizers the way longer training does?

    python bench/proxy_fidelity.py [--suites tiny small medium] [--workers 2] [--json FILE]

A fixed panel of programs (`bench/panel/`: every seed named in `seeds.txt`, plus evolved
programs from real campaigns, good and bad, as `.rule` files) is trained on each suite and on
the `reference` suite (`medium`'s models at 3x its steps, each rule tuned over the same grid
with the same warm-up + cosine schedule): the stand-in for the trainings users run. Per
suite it prints

* Spearman's rank correlation between the suite's scores and the reference's,
* how many of the reference's 10 best programs are among the suite's 10 best,
* seconds of training per candidate (summed over tasks, one core each; these runs also
  record validation curves, which the product's evaluations do not, and the machine may
  be loaded: `bench/evaluator_throughput.py --only-cost` measures the cost ratio that
  counts),

for each score definition measured (the reference is always ranked by the product's own
score, `evaluators.scoring`: tuned AdamW's final loss over the rule's, geometric mean):

* ``loss_ratio``: the product's score (what `optforge eval` prints);
* ``steps_to_target``: AlgoPerf's: the steps tuned AdamW needs to reach its own final
  validation loss over the steps the rule needs (at its best rate), from validation
  curves recorded every 1/20 of the horizon; a rule that never gets there scores the floor;
* ``sgd_adamw_gap``: the unit before this benchmark existed: (log L_sgd - log L) over the
  log gap between SGD with momentum and AdamW, clipped to [-1, 3], arithmetic mean.

Suites are built-in names (`evaluators.SUITES`) or the design variants in `VARIANTS` below,
e.g. ``small@2026-11``: `small` as it was before this benchmark (`bench/legacy_suites.py`,
a constant learning rate). Runs are cached per (suite version, task, program) under `--cache` (default
``~/.cache/optforge/fidelity``), so re-running after a change trains only what changed.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from dataclasses import asdict
from functools import partial
from pathlib import Path
from typing import Callable

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from legacy_suites import LEGACY, legacy_suite  # noqa: E402  (bench/legacy_suites.py)
from optforge.evaluators import EvaluatorPool, Job, Suite, get_suite  # noqa: E402
from optforge.evaluators.scoring import (  # noqa: E402
    SCORE_FLOOR,
    baseline_from_runs,
    cache_dir,
    candidate_status,
    clip_score,
    geometric_mean,
    score_task,
    suite_score,
    task_loss,
)
from optforge.evaluators.tasks import SUITES, lr_grid  # noqa: E402
from optforge.evaluators.trainer import Status, TaskRun  # noqa: E402
from scipy.stats import spearmanr  # noqa: E402  (scikit-learn's dependency)

from optforge import (
    dsl,  # noqa: E402
    seeds,  # noqa: E402
)

PANEL = Path(__file__).resolve().parent / "panel"
CURVE_POINTS = 20
TOP = 10


# ---- the panel ----------------------------------------------------------------------------

def load_panel(directory: Path = PANEL) -> list[dsl.Program]:
    """The seeds named in `seeds.txt`, then every `.rule` file, in name order; names are
    unique (they key the results)."""
    names = [line.split("#")[0].strip() for line in (directory / "seeds.txt").read_text()
             .splitlines()]
    programs = [seeds.load_seed(n) for n in names if n]
    programs += [dsl.ensure_valid(dsl.load(str(p))) for p in sorted(directory.glob("*.rule"))]
    seen = [p.name for p in programs]
    if len(set(seen)) != len(seen):
        raise SystemExit(f"panel names are not unique: {sorted(n for n in seen if seen.count(n) > 1)}")
    for required in ("adamw", "sgd_momentum"):
        if required not in seen:
            raise SystemExit(f"the panel must hold {required} (its runs are the baselines)")
    return programs


# ---- suite designs ------------------------------------------------------------------------

def _scaled(name: str, base: str, steps: float, seeds: tuple[int, ...] | None = None,
            per_decade: int | None = None, drop: tuple[str, ...] = ()) -> Callable[[], Suite]:
    """`base`'s models and data at `steps` times its horizon, with other `seeds` or a grid
    of `per_decade` rates per decade over the same range, without the tasks in `drop`: the
    shapes a stage-1 redesign tries."""
    def make() -> Suite:
        s = get_suite(base)
        tasks = tuple(t.with_(steps=max(1, round(steps * t.steps)),
                              seeds=t.seeds if seeds is None else seeds,
                              lrs=t.lrs if per_decade is None else lr_grid(
                                  math.log10(t.lrs[0]), math.log10(t.lrs[-1]), per_decade))
                      for t in s.tasks if t.name not in drop)
        return Suite(name, tasks, f"{base} at {steps:g}x its steps")
    return make


def _mixed(name: str, longer: dict[str, float], default: float = 1.0,
           seeds: tuple[int, ...] = (0,), per_decade: int = 1) -> Callable[[], Suite]:
    """`medium`'s models on `seeds` and a grid of `per_decade` rates per decade, each task at
    `longer[task]` times medium's steps (`default` where not named): the cheap tasks can
    afford the reference's horizon."""
    def make() -> Suite:
        tasks = tuple(t.with_(steps=round(longer.get(t.name, default) * t.steps), seeds=seeds,
                              lrs=lr_grid(math.log10(t.lrs[0]), math.log10(t.lrs[-1]),
                                          per_decade))
                      for t in get_suite("medium").tasks)
        return Suite(name, tasks, "medium's models, mixed horizons")
    return make


def _lean(name: str, steps: dict[str, int], drop: tuple[str, ...]) -> Callable[[], Suite]:
    """`small` without the tasks in `drop`, the named ones at other step counts."""
    def make() -> Suite:
        tasks = tuple(t.with_(steps=steps.get(t.name, t.steps)) for t in get_suite("small").tasks
                      if t.name not in drop)
        return Suite(name, tasks, "small, leaner")
    return make


VARIANTS: dict[str, Callable[[], Suite]] = {
    **{name: partial(legacy_suite, name) for name in LEGACY},
    "small*3": _scaled("small*3", "small", 3.0),
    "medium/3": _scaled("medium/3", "medium", 1 / 3, (0, 1)),
    "medium/4": _scaled("medium/4", "medium", 1 / 4, (0, 1)),
    "medium/6": _scaled("medium/6", "medium", 1 / 6, (0, 1)),
    "medium/2-1seed": _scaled("medium/2-1seed", "medium", 1 / 2, (0,)),
    "medium/2-decades": _scaled("medium/2-decades", "medium", 1 / 2, (0, 1), per_decade=1),
    "medium/3-decades": _scaled("medium/3-decades", "medium", 1 / 3, (0, 1), per_decade=1),
    "medium-1seed-decades": _scaled("medium-1seed-decades", "medium", 1.0, (0,), per_decade=1),
    "medium*1.5-1seed-decades": _scaled("medium*1.5-1seed-decades", "medium", 1.5, (0,),
                                        per_decade=1),
    "stage1-mix": _mixed("stage1-mix", {"quadratic": 3.0, "rosenbrock": 3.0,
                                        "logreg_cancer": 3.0, "teacher_student": 3.0}),
    "stage2-mix": _mixed("stage2-mix", {"quadratic": 3.0, "rosenbrock": 3.0,
                                        "logreg_cancer": 3.0, "teacher_student": 3.0},
                         default=2.0, seeds=(0, 1), per_decade=2),
    "stage1-lean": _lean("stage1-lean", {"mlp_digits": 150}, drop=("cnn_digits", "char_lm")),
    "stage1-lean2": _lean("stage1-lean2", {"logreg_cancer": 600, "teacher_student": 400}, ()),
    "stage1-lean3": _lean("stage1-lean3", {"logreg_cancer": 400, "teacher_student": 300,
                                           "rosenbrock": 2000}, ()),
    "stage1-synthetic": _lean("stage1-synthetic", {},
                              drop=("mlp_digits", "cnn_digits", "char_lm")),
    "medium*2": _scaled("medium*2", "medium", 2.0),
    "medium*2-2seeds": _scaled("medium*2-2seeds", "medium", 2.0, (0, 1)),
}


def suite_named(name: str) -> Suite:
    if name in SUITES:
        return get_suite(name)
    if name in VARIANTS:
        return VARIANTS[name]()
    raise SystemExit(f"unknown suite {name!r} (built-in: {', '.join(SUITES)}; "
                     f"variants: {', '.join(VARIANTS)})")


# ---- training, cached ---------------------------------------------------------------------

def _run_from_json(d: dict) -> TaskRun:
    d = dict(d)
    for key in ("lrs", "seeds", "initial_losses"):
        d[key] = tuple(d[key])
    for key in ("losses", "statuses"):
        d[key] = tuple(tuple(row) for row in d[key])
    d["curve"] = tuple((step, tuple(tuple(r) for r in rows)) for step, rows in d["curve"])
    return TaskRun(**d)


def task_version(task, suite: Suite) -> str:
    """What determines a task's runs: the task itself, its data, the trainer (the version
    of a one-task suite)."""
    return Suite(task.name, (task,), device_kind=suite.device_kind).version


def train_panel(suite: Suite, programs: list[dsl.Program], pool: EvaluatorPool,
                cache: Path) -> dict[str, dict[str, TaskRun]]:
    """Every program's run on every task of `suite` (name -> task -> run). Runs are cached
    per task version (a task shared by two suites trains once) and program."""
    runs: dict[str, dict[str, TaskRun]] = {p.name: {} for p in programs}
    jobs = []
    folders = {}
    for t in suite.tasks:
        folders[t.name] = cache / f"{t.name}-{task_version(t, suite)}"
        folders[t.name].mkdir(parents=True, exist_ok=True)
    for p in programs:
        digest = dsl.structural_hash(p)[:16]
        for t in suite.tasks:
            path = folders[t.name] / f"{p.name}-{digest}.json"
            if path.exists():
                runs[p.name][t.name] = _run_from_json(json.loads(path.read_text()))
            else:
                every = max(1, t.steps // CURVE_POINTS)
                jobs.append(((p.name, t.name, str(path)), Job(p, t, record_every=every)))
    # heaviest first, so the pool does not end on one long job
    jobs.sort(key=lambda kj: -kj[1].task.steps * kj[1].task.replicas)
    if jobs:
        print(f"  training {len(jobs)} of {len(programs) * len(suite.tasks)} (program, task) "
              f"runs of suite {suite.name} ({suite.version})", file=sys.stderr, flush=True)
    done = 0
    for (name, task, path), run in pool.run(jobs):
        runs[name][task] = run
        Path(path).write_text(json.dumps(asdict(run)))
        done += 1
        if done % 50 == 0:
            print(f"    {done}/{len(jobs)}", file=sys.stderr, flush=True)
    return runs


# ---- the score definitions ----------------------------------------------------------------

def _baselines(runs, suite: Suite) -> dict:
    """Each task's baselines, from the panel's own SGD-with-momentum and AdamW runs."""
    return {t.name: baseline_from_runs(runs["sgd_momentum"][t.name], runs["adamw"][t.name])
            for t in suite.tasks}


def loss_ratio_scores(runs, suite: Suite) -> dict[str, float]:
    """The product's score, assembled as `evaluators.evaluate` assembles it."""
    bases = _baselines(runs, suite)
    out = {}
    for name, by_task in runs.items():
        tasks = [score_task(by_task[t.name], bases[t.name]) for t in suite.tasks]
        ok = candidate_status(tasks) == Status.OK.value
        out[name] = suite_score(tasks) if ok else SCORE_FLOOR
    return out


def sgd_adamw_gap_scores(runs, suite: Suite) -> dict[str, float]:
    """The unit before this benchmark (see module doc), with its 2% minimum gap."""
    bases = _baselines(runs, suite)
    out = {}
    for name, by_task in runs.items():
        values = []
        for t in suite.tasks:
            base = bases[t.name]
            loss = task_loss(by_task[t.name])[0]
            if loss is None:
                values.append(-1.0)
                continue
            ls, la = math.log(max(base.sgd_loss, 1e-30)), math.log(max(base.adamw_loss, 1e-30))
            gap = max(abs(ls - la), 0.02)
            values.append(min(max((ls - math.log(max(loss, 1e-30))) / gap, -1.0), 3.0))
        out[name] = sum(values) / len(values)
    return out


def _steps_to(run: TaskRun, target: float) -> float:
    """The first recorded step at which some learning rate's mean loss over seeds (failed
    replicas at their initial loss) is at or below `target`; inf if none."""
    for step, losses in run.curve:
        for row in losses:
            vals = [v if math.isfinite(v) else l0 for v, l0 in zip(row, run.initial_losses)]
            if sum(vals) / len(vals) <= target:
                return step
    return math.inf


def steps_to_target_scores(runs, suite: Suite) -> dict[str, float]:
    out = {}
    for name, by_task in runs.items():
        values = []
        for t in suite.tasks:
            target = task_loss(runs["adamw"][t.name])[0]
            adamw_steps = _steps_to(runs["adamw"][t.name], target)
            steps = _steps_to(by_task[t.name], target)
            values.append(clip_score(adamw_steps / steps) if steps < math.inf
                          else SCORE_FLOOR)
        out[name] = geometric_mean(values)
    return out


DEFINITIONS = {"loss_ratio": loss_ratio_scores, "steps_to_target": steps_to_target_scores,
               "sgd_adamw_gap": sgd_adamw_gap_scores}


# ---- agreement ----------------------------------------------------------------------------

def agreement(scores: dict[str, float], reference: dict[str, float]) -> dict[str, float]:
    names = sorted(reference)
    rho = spearmanr([scores[n] for n in names], [reference[n] for n in names]).statistic

    def top(s):
        return set(sorted(names, key=lambda n: (-s[n], n))[:TOP])
    return {"spearman": float(rho), "top10": len(top(scores) & top(reference))}


def seconds_per_candidate(runs) -> float:
    return sum(sum(r.wall_time for r in by_task.values()) for by_task in runs.values()) \
        / len(runs)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--suites", nargs="+", default=["tiny", "small", "medium"],
                    help="suites to compare with the reference (built-in or VARIANTS)")
    ap.add_argument("--reference", default="reference")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--cache", type=Path, help="run cache (default: ~/.cache/optforge/fidelity)")
    ap.add_argument("--json", metavar="FILE", help="also write every score as JSON")
    ap.add_argument("--show", type=int, default=0, metavar="K",
                    help="also print the K best programs of each suite")
    args = ap.parse_args()
    cache = args.cache or cache_dir() / "fidelity"
    programs = load_panel()
    print(f"panel: {len(programs)} programs", flush=True)
    start = time.perf_counter()
    results = {}
    with EvaluatorPool(args.workers) as pool:
        ref_suite = suite_named(args.reference)
        ref_runs = train_panel(ref_suite, programs, pool, cache)
        truth = loss_ratio_scores(ref_runs, ref_suite)
        ref_by_def = {d: f(ref_runs, ref_suite) for d, f in DEFINITIONS.items()}
        results[args.reference] = {"seconds_per_candidate": seconds_per_candidate(ref_runs),
                                   "scores": ref_by_def}
        for name in args.suites:
            suite = suite_named(name)
            runs = train_panel(suite, programs, pool, cache)
            by_def = {d: f(runs, suite) for d, f in DEFINITIONS.items()}
            results[name] = {"seconds_per_candidate": seconds_per_candidate(runs),
                             "scores": by_def,
                             "agreement": {d: agreement(s, truth) for d, s in by_def.items()},
                             "agreement_same_definition": {
                                 d: agreement(s, ref_by_def[d]) for d, s in by_def.items()}}
    print(f"\nreference: suite {args.reference}, ranked by loss_ratio; "
          f"{results[args.reference]['seconds_per_candidate']:.1f} s of training per "
          f"candidate; {len(programs)} programs; top-{TOP} overlap out of {TOP}")
    print(f"{'suite':<18} {'s/cand':>7}  " + "  ".join(f"{d + ' rho/top10':>26}"
                                                       for d in DEFINITIONS))
    for name in args.suites:
        r = results[name]
        cells = [f"{r['agreement'][d]['spearman']:>20.3f} {r['agreement'][d]['top10']:>2}/{TOP}"
                 for d in DEFINITIONS]
        print(f"{name:<18} {r['seconds_per_candidate']:>7.2f}  " + "  ".join(cells))
    print("\nsteps_to_target against the reference's own steps_to_target: " + ", ".join(
        f"{n} {results[n]['agreement_same_definition']['steps_to_target']['spearman']:.3f}"
        for n in args.suites))
    for name in ([args.reference] + list(args.suites)) if args.show else []:
        s = results[name]["scores"]["loss_ratio"]
        best = sorted(s, key=lambda n: -s[n])[:args.show]
        print(f"\n{name} best: " + ", ".join(f"{n} {s[n]:.3f}" for n in best))
    print(f"\n{time.perf_counter() - start:.0f} s wall", file=sys.stderr)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
