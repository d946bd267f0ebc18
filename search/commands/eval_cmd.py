"""`optforge eval FILE|SEED`: score one rule on a suite of proxy tasks.

Prints each task's score (tuned AdamW's final loss over the rule's: 1 = AdamW, higher is
better), best learning rate and loss, and the suite score (their geometric mean); `--json` prints ``{"rule", "suite", "status", "score", "tasks": {NAME:
{"score", "loss", "best_lr", ...}}, ...}``. With ``--workers 1`` (the default) the rule
trains in this process, on one torch thread; with more, its tasks are spread over a pool of
worker processes that share the cores.

One thread in-process because these batched tasks gain little from intra-op threads and
lose a lot when a core is busy with anything else (OpenMP threads waiting on each other:
5-10x slower on a shared 2-core machine, measured); processes are the way to use cores.
"""

from __future__ import annotations

import argparse
import json
import sys

from optforge import dsl, evaluators

from ..errors import UserError


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def suite_name(text: str) -> str:
    """`--suite`: a known suite's name; else argparse's "invalid choice", with the closest
    name when one is close."""
    if text in evaluators.SUITES:
        return text
    hint = dsl.did_you_mean(text, evaluators.SUITES)
    raise argparse.ArgumentTypeError(
        f"invalid choice: {text!r}" + (f"; {hint}" if hint else "")
        + f" (choose from {', '.join(evaluators.SUITES)})")


def register(sub) -> None:
    p = sub.add_parser("eval", help="score a rule file or seed on a suite of proxy tasks",
                       description="Train a rule on every task of a suite (all learning "
                                   "rates and seeds at once) and print its scores.")
    p.add_argument("rule", metavar="FILE|SEED",
                   help="a .rule file, or the name of a seed (see `optforge seeds`)")
    p.add_argument("--suite", type=suite_name, choices=evaluators.SUITES, default="small",
                   help="task suite (default: small)")
    p.add_argument("--workers", type=_positive_int, default=1, metavar="K",
                   help="worker processes (default 1: train in this process)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=run_eval)


def load_rule(spec: str) -> dsl.Program:
    """A rule file or a seed name (`optforge.seeds.load_rule`, the one resolver without a
    store); an unknown name is a `UserError`, a bad file a positioned `RuleError`."""
    from optforge import seeds  # loads the language (and torch): not at start-up

    try:
        return seeds.load_rule(spec)
    except seeds.UnknownRule as e:
        raise UserError(str(e)) from None


def run_eval(args) -> int:
    program = load_rule(args.rule)

    def progress(message: str) -> None:
        print(f"optforge eval: {message}", file=sys.stderr, flush=True)

    try:
        if args.workers == 1:
            import torch

            torch.set_num_threads(1)
            suite = evaluators.get_suite(args.suite)
            baselines = evaluators.ensure_baselines(suite, progress=progress)
            result = evaluators.evaluate(program, suite, baselines=baselines)
        else:
            result = next(evaluators.evaluate_many([program], args.suite,
                                                   workers=args.workers, progress=progress))
    except (evaluators.EvaluationError, evaluators.SuiteError) as e:
        raise UserError(str(e)) from None

    if args.json:
        print(json.dumps(result.to_json(), indent=2))
    else:
        print(format_result(result))
    return 0 if result.status == evaluators.Status.OK else 1


def _num(x: float | None, fmt: str) -> str:
    return "-" if x is None else format(x, fmt)


def format_result(result: evaluators.EvalResult) -> str:
    lines = [f"{result.rule} on suite {result.suite} (version {result.version}): "
             f"{result.status}, score {result.score:.3f}   "
             f"(1 = tuned AdamW, higher is better; {result.wall_time:.1f} s of training)",
             "",
             f"{'task':<17} {'score':>7} {'loss':>10} {'best lr':>9}  status"]
    for t in result.tasks:
        lines.append(f"{t.task:<17} {t.score:>7.3f} {_num(t.loss, '10.4g'):>10} "
                     f"{_num(t.best_lr, '9.3g'):>9}  {t.status}")
    if result.error:
        lines.append("")
        lines.append(f"error: {result.error}")
    return "\n".join(lines)
