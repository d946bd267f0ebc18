"""`optforge validate ID|SEED|FILE`: a rule on the held-out `validation` suite, beside tuned
AdamW, Lion and SGD with momentum (`evaluators.validation`).

The rule is a stored program (its id or a structural-hash prefix, from `--db`), a seed name
or a .rule file, resolved as `optforge export` resolves its argument. Prints per task the
rule's score, Lion's and SGD with momentum's (AdamW scores 1 everywhere by construction),
the rule's final loss, best learning rate and seed spread, then each rule's suite score;
`--json` prints the same as ``ValidationReport.to_json()`` plus ``source``. The comparators
are trained once per suite version and cached, so a second validation trains only the rule.

`format_validation` also prints the validations a campaign stores (`stored_validation`), in
`optforge show` and at the end of `optforge run`.
"""

from __future__ import annotations

import json
import math
import sys
from typing import Any, Mapping

from ..errors import UserError
from .eval_cmd import _positive_int

VALIDATION_SUITE = "validation"  # evaluators.validation.VALIDATION_SUITE, without importing it
COMPARATOR_LABELS = {"adamw": "AdamW", "lion": "Lion", "sgd_momentum": "SGD with momentum"}
_SHORT = {"lion": "Lion", "sgd_momentum": "SGD-m"}  # the table's comparator columns


def register(sub) -> None:
    from optforge import evaluators

    p = sub.add_parser(
        "validate", help="score a rule on the held-out validation suite beside tuned AdamW, "
                         "Lion and SGD with momentum",
        description="Train a rule on every task of the held-out validation suite (each "
                    "learning-rate tuned) and print its scores beside tuned AdamW's, Lion's "
                    "and SGD with momentum's. The comparators are trained once per suite "
                    "version and cached.")
    p.add_argument("rule", metavar="ID|SEED|FILE",
                   help="a program in the database (its id or a structural-hash prefix), a "
                        "seed name (see `optforge seeds`) or a .rule file")
    p.add_argument("--suite", choices=evaluators.SUITES, default=VALIDATION_SUITE,
                   help="task suite (default: validation, the held-out one)")
    p.add_argument("--workers", type=_positive_int, default=1, metavar="K",
                   help="worker processes (default 1: train in this process)")
    p.add_argument("--db", metavar="URL", help="database URL for a program id (default: "
                                               "$OPTFORGE_DB or ./optforge.db)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=run_validate)


def resolve(arg: str, db: str | None):
    """``(program, where it came from)``: the checked rule `arg` names (`seeds.resolve_rule`:
    a rule file, a seed, or a stored program); a `UserError` for anything else."""
    from optforge import dsl

    from .seeds_export import resolve_rule

    resolved = resolve_rule(arg, db)
    return dsl.ensure_valid(resolved.program), resolved.provenance


def run_validate(args) -> int:
    import time

    import torch
    from optforge.evaluators import EvaluationError, SuiteError
    from optforge.evaluators.validation import validate

    program, source = resolve(args.rule, args.db)

    def progress(message: str) -> None:
        print(f"optforge validate: {message}", file=sys.stderr, flush=True)

    start = time.perf_counter()
    try:
        if args.workers == 1:
            torch.set_num_threads(1)  # as `optforge eval`: processes are the way to use cores
        report = validate(program, args.suite, workers=args.workers, progress=progress)
    except (EvaluationError, SuiteError) as e:
        raise UserError(str(e)) from None
    elapsed = time.perf_counter() - start

    data = {"source": source, **report.to_json(), "elapsed_s": elapsed}
    if args.json:
        print(json.dumps(_plain(data), indent=2, allow_nan=False))
    else:
        title = f"validation of {report.rule} ({source})"
        print(format_validation(data, title))
        how = "comparators from the cache" if report.comparators_cached else \
            "comparators trained and cached for this suite version"
        print(f"\n{report.result.wall_time:.1f} s of training for the rule, {elapsed:.1f} s "
              f"in all; {how}")
    from optforge.evaluators import Status

    return 0 if report.status == Status.OK else 1


# ---- formatting, shared with `optforge show` and `optforge run` --------------------------------

def _num(x: float | None, spec: str) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    return format(x, spec)


def format_validation(data: Mapping[str, Any], title: str) -> str:
    """A validation (the JSON form of `ValidationReport.to_json`, or `stored_validation`) as
    text: a header naming the suite, the per-task table and every rule's suite score."""
    suite = data["suite"]
    held_out = "held out: never selected on" if suite == VALIDATION_SUITE else \
        "NOT the held-out validation suite"
    version = f"version {data['version']}; " if data.get("version") else ""
    lines = [f"{title}: {data['status']}",
             f"suite {suite} ({version}{held_out})",
             f"task scores on {suite}: tuned AdamW's final loss over each rule's (AdamW = 1.000 "
             f"on every task by construction; higher is better)",
             "seed spread: the lowest and highest seed's score at the rule's best learning "
             "rate", ""]
    tasks = data["tasks"]
    width = max([4] + [len(name) for name in tasks])
    head = (f"{'task':<{width}}  {'rule':>6}  " + "  ".join(f"{v:>6}" for v in _SHORT.values())
            + f"  {'loss':>10}  {'best lr':>8}  {'seed spread':>13}  status")
    lines.append(head)
    for name, t in tasks.items():
        comps = t.get("comparators") or {}
        cells = [_num((comps.get(c) or {}).get("score"), "6.3f") for c in _SHORT]
        spread = t.get("seed_spread")
        spread_text = "-" if not spread else f"{spread[0]:.3f}-{spread[1]:.3f}"
        lines.append(f"{name:<{width}}  {_num(t['score'], '6.3f'):>6}  "
                     + "  ".join(f"{c:>6}" for c in cells)
                     + f"  {_num(t.get('loss'), '10.4g'):>10}  {_num(t.get('best_lr'), '8.3g'):>8}"
                     f"  {spread_text:>13}  {t['status']}")
    n = len(tasks)
    lines += ["", f"score on {suite} (geometric mean over {n} task{'' if n == 1 else 's'}):"]
    rows = [(f"{data['rule']} (the rule)", data["score"])]
    rows += [(COMPARATOR_LABELS.get(n, n), s) for n, s in (data.get("comparators") or {}).items()]
    label_width = max(len(label) for label, _ in rows)
    lines += [f"  {label:<{label_width}}  {_num(score, '.3f')}" for label, score in rows]
    if data.get("error"):
        lines += ["", f"error: {data['error']}"]
    return "\n".join(lines)


def stored_validation(evaluation, rule: str) -> dict[str, Any]:
    """A stored validation (an `EvaluationRecord` a campaign wrote, see
    `search.engine.Campaign`) in the JSON form of `ValidationReport.to_json`: the
    comparators' per-task results are in each task's metrics, their suite scores are the
    geometric means of those."""
    from optforge.evaluators.scoring import geometric_mean

    tasks: dict[str, Any] = {}
    per_comparator: dict[str, list[float]] = {}
    for t in evaluation.tasks:
        metrics = dict(t.metrics)
        comps = metrics.get("comparators") or {}
        for name, c in comps.items():
            per_comparator.setdefault(name, []).append(c["score"])
        seeds = metrics.get("seed_scores") or []
        tasks[t.task] = {"score": t.score, "loss": t.loss, "best_lr": t.best_lr,
                         "status": t.status, "wall_time": t.wall_time,
                         "error": metrics.get("error"), "seed_scores": list(seeds),
                         "seed_spread": [min(seeds), max(seeds)] if seeds else None,
                         "comparators": comps}
    complete = [n for n, s in per_comparator.items() if len(s) == len(tasks)]
    versions = {dict(t.metrics).get("suite_version") for t in evaluation.tasks}
    return {"rule": rule, "suite": evaluation.suite,
            "version": versions.pop() if len(versions) == 1 else None,
            "status": evaluation.status, "score": evaluation.score,
            "wall_time": evaluation.wall_time, "error": evaluation.error,
            "comparators": {n: geometric_mean(per_comparator[n]) for n in complete},
            "tasks": tasks}


def _plain(obj: Any) -> Any:
    """JSON-ready: non-finite floats as the strings "NaN", "Infinity", "-Infinity"."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return "NaN" if math.isnan(obj) else ("Infinity" if obj > 0 else "-Infinity")
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj
