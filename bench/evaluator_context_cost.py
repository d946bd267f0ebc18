"""What rules that read more than their gradient cost to evaluate (issue #16), on this machine.

    python bench/evaluator_context_cost.py [--suite small] [--rounds 3] [--steps N]

Trains AdamW, a SAM-like rule (one `grad_at`: a second forward/backward) and an
AdaHessian-like rule (`hess`: a Hutchinson Hessian-vector product in its own pass) on
every task of the suite, one process, one torch thread, rounds interleaved (AdamW, SAM,
AdaHessian, then again), with the task's full steps and no time budget. Prints each
rule's seconds per task and per evaluation (all tasks) and their ratio to AdamW's, beside
`dsl.needs.passes_per_step` (the factor the evaluator scales a rule's budget by). The
machine may be shared: the load average is printed with the figures.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch
from optforge.dsl.kernel import compile_kernel
from optforge.evaluators import get_suite
from optforge.evaluators.models import build_problem
from optforge.evaluators.trainer import train_task

from optforge import dsl

RULES = {
    "adamw": None,
    "sam": ("def sam(w, g, lr, t, rho=0.05):\n"
            "    e = rho * g / (global_norm(g) + 1e-12)\n"
            "    return lr * grad_at(e)\n"),
    "adahessian": ("def adahessian(w, g, lr, t, m, v, b1=0.9, b2=0.999):\n"
                   "    m = interp(g, m, b1)\n"
                   "    v = interp(hess * hess, v, b2)\n"
                   "    return lr * m / (sqrt(v) + 1e-8), m, v\n"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", default="small")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=0, help="override every task's steps")
    args = parser.parse_args()
    torch.set_num_threads(1)
    from optforge import seeds

    kernels = {name: compile_kernel(seeds.load_seed("adamw") if src is None
                                    else dsl.parse(src)) for name, src in RULES.items()}
    suite = get_suite(args.suite)
    tasks = [t.with_(steps=args.steps) if args.steps else t for t in suite.tasks]
    problems = {t.name: build_problem(t.model, t.model_kwargs, t.data, t.data_args, "cpu")
                for t in tasks}
    seconds: dict[tuple[str, str], list[float]] = {}
    for _ in range(args.rounds):
        for t in tasks:
            for name, kernel in kernels.items():
                began = time.perf_counter()
                run = train_task(t, kernel, problem=problems[t.name], time_budget_s=1e9)
                seconds.setdefault((name, t.name), []).append(time.perf_counter() - began)
                assert run.error is None, (name, t.name, run.error)
    print(f"suite {args.suite}, {args.rounds} rounds, median seconds, 1 thread, "
          f"load {os.getloadavg()[0]:.1f}")
    print(f"{'task':18s}" + "".join(f"{n:>12s}" for n in kernels)
          + "".join(f"{n + '/adamw':>18s}" for n in list(kernels)[1:]))
    total = dict.fromkeys(kernels, 0.0)
    for t in tasks:
        med = {n: statistics.median(seconds[n, t.name]) for n in kernels}
        for n in kernels:
            total[n] += med[n]
        print(f"{t.name:18s}" + "".join(f"{med[n]:12.3f}" for n in kernels)
              + "".join(f"{med[n] / med['adamw']:18.2f}" for n in list(kernels)[1:]))
    print(f"{'evaluation':18s}" + "".join(f"{total[n]:12.3f}" for n in kernels)
          + "".join(f"{total[n] / total['adamw']:18.2f}" for n in list(kernels)[1:]))
    print("candidates/minute " + ", ".join(f"{n} {60 / total[n]:.1f}" for n in kernels))
    print("passes_per_step   " + ", ".join(f"{n} {k.passes}" for n, k in kernels.items()))


if __name__ == "__main__":
    main()
