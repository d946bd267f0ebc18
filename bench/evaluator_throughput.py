"""Evaluator throughput on a suite (default `small`), on this machine.

    python bench/evaluator_throughput.py [--suite small] [--workers 2] [--candidates 12]

Four figures, each a ratio against a reference measured in the same run:

1. batched vs naive: the batched trainer (all R = learning rates x seeds replicas as one
   set of tensors) against a naive per-replica Python loop doing the same work (the same
   trainer with R = 1, once per replica), per task and over the whole suite;
2. useful training FLOP/s on the digits MLP (the matrix multiplies of its forward and
   backward passes: 3 x forward FLOPs) as a fraction of the matrix-multiply peak (the best
   of a few large square float32 matmuls), both with the same torch thread count;
3. candidates per minute with K worker processes, against one process evaluating serially
   (baselines cached, workers warm);
4. seconds of training per candidate;
5. the cost of a candidate on the suite against `small` as it was before the fidelity
   redesign (`bench/legacy_suites.py`): the same rules trained on both, interleaved, in
   one single-thread process (`--only-cost` prints this figure alone);
6. population batching: candidates per minute on the pool when each task of `--group`
   candidates trains as one batched model (`evaluators.population`), against one
   candidate per job, on the same pool in the same run, rounds interleaved (one of each,
   then the other order, ...); the results of both are checked identical
   (`--only-batched` prints this figure alone).

The machine may be shared: the load average is printed with the figures.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402
from optforge.dsl.kernel import compile_kernel  # noqa: E402
from optforge.evaluators.models import build_problem  # noqa: E402
from optforge.evaluators.trainer import train_replicas, train_task  # noqa: E402

from optforge import (
    evaluators,  # noqa: E402
    seeds,  # noqa: E402
)


def load() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "?"


def matmul_peak(threads: int) -> float:
    """Best GFLOP/s of large square float32 matrix multiplies."""
    torch.set_num_threads(threads)
    best = 0.0
    for n in (512, 1024, 2048):
        a, b = torch.randn(n, n), torch.randn(n, n)
        a @ b
        reps = max(3, int(2e10 / (2 * n ** 3)))
        for _ in range(3):
            t = time.perf_counter()
            for _ in range(reps):
                a @ b
            best = max(best, 2 * n ** 3 * reps / (time.perf_counter() - t) / 1e9)
    return best


def timed(fn, repeats: int = 3) -> tuple[float, object]:
    """Best wall time of `repeats` calls (after one warm-up call), and the last result."""
    out = fn()
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def batched_vs_naive(suite, kernel, threads: int) -> None:
    torch.set_num_threads(threads)
    print(f"1. batched trainer vs a naive per-replica loop ({threads} thread"
          f"{'s' if threads > 1 else ''}, rule adamw):")
    total_b = total_n = 0.0
    for task in suite.tasks:
        problem = build_problem(task.model, task.model_kwargs, task.data, task.data_args,
                                torch.device("cpu"))
        tb, _ = timed(lambda task=task, problem=problem: train_task(task, kernel,
                                                                    problem=problem), repeats=2)

        def naive(task=task, problem=problem):
            for lr in task.lrs:
                for seed in task.seeds:
                    train_replicas(task, kernel, [lr], [seed], problem=problem)

        tn, _ = timed(naive, repeats=1)
        total_b += tb
        total_n += tn
        print(f"   {task.name:<16} R={task.replicas:<3} batched {tb * 1e3:8.1f} ms   "
              f"naive {tn * 1e3:8.1f} ms   speed-up {tn / tb:5.1f}x")
    print(f"   {'whole suite':<22} batched {total_b * 1e3:8.1f} ms   naive {total_n * 1e3:8.1f} ms"
          f"   speed-up {total_n / total_b:5.1f}x")


def mlp_flops(suite, kernel, threads: int, peak: float) -> None:
    torch.set_num_threads(threads)
    task = suite.task("mlp_digits")
    problem = build_problem(task.model, task.model_kwargs, task.data, task.data_args,
                            torch.device("cpu"))
    seconds, run = timed(lambda: train_task(task, kernel, problem=problem))
    # forward matmul FLOPs per example x 3 (forward, and the two backward matmuls per layer)
    useful = 3 * problem.flops_per_example * task.batch_size * task.replicas * run.steps
    rate = useful / seconds / 1e9
    print(f"2. digits MLP ({dict(task.model_args)['hidden']} hidden, batch {task.batch_size}, "
          f"R={task.replicas}, {run.steps} steps, {threads} thread{'s' if threads > 1 else ''}): "
          f"{rate:.1f} useful GFLOP/s = {rate / peak:.0%} of the matmul peak "
          f"{peak:.1f} GFLOP/s ({seconds * 1e3:.0f} ms per training run)")


def pool_rate(suite_name: str, workers: int, n: int) -> None:
    names = ["adamw", "lion", "sgd_momentum", "adam", "signum", "rmsprop", "adabelief",
             "lamb", "muon", "adafactor", "nesterov", "yogi"]
    programs = [seeds.load_seed(names[i % len(names)]) for i in range(n)]
    torch.set_num_threads(1)
    evaluators.ensure_baselines(evaluators.get_suite(suite_name))  # cached before timing
    t = time.perf_counter()
    serial = [evaluators.evaluate(p, suite_name) for p in programs[:max(2, n // 4)]]
    serial_rate = 60 * len(serial) / (time.perf_counter() - t)
    torch.set_num_threads(os.cpu_count() or 1)
    with evaluators.EvaluatorPool(workers) as pool:
        list(evaluators.evaluate_many(programs[:workers], suite_name, pool=pool))  # warm up
        t = time.perf_counter()
        results = list(evaluators.evaluate_many(programs, suite_name, pool=pool))
        wall = time.perf_counter() - t
    rate = 60 * len(results) / wall
    per = sum(r.wall_time for r in results) / len(results)
    print(f"3. {rate:.1f} candidates/min with {workers} workers ({len(results)} candidates in "
          f"{wall:.1f} s) vs {serial_rate:.1f}/min serially in one single-thread process "
          f"({rate / serial_rate:.2f}x)")
    print(f"4. {per:.2f} s of training per candidate in a worker "
          f"(status {sorted({r.status for r in results})})")


def legacy_cost(suite_name: str, rounds: int) -> None:
    """Figure 5 (module doc): per round, each rule on the old `small` then on the suite."""
    from legacy_suites import legacy_suite
    names = ["adamw", "lion", "sgd_momentum", "muon"]
    programs = [seeds.load_seed(n) for n in names]
    torch.set_num_threads(1)
    old, new = legacy_suite("small@2026-11"), evaluators.get_suite(suite_name)
    cached = {s.name: evaluators.ensure_baselines(s) for s in (old, new)}
    totals = {old.name: 0.0, new.name: 0.0}
    ratios = []
    for _ in range(rounds):
        per = {}
        for s in (old, new):
            per[s.name] = sum(evaluators.evaluate(p, s, baselines=cached[s.name]).wall_time
                              for p in programs)
            totals[s.name] += per[s.name]
        ratios.append(per[new.name] / per[old.name])
    ratios.sort()
    print(f"5. {new.name} costs {totals[new.name] / totals[old.name]:.2f}x small@2026-11 per "
          f"candidate ({totals[new.name] / (rounds * len(names)):.2f} s vs "
          f"{totals[old.name] / (rounds * len(names)):.2f} s of training; {', '.join(names)}; "
          f"median of {rounds} rounds {ratios[len(ratios) // 2]:.2f}x)")


SEED_MIX = ["adamw", "lion", "sgd_momentum", "adam", "signum", "rmsprop", "adabelief",
            "lamb", "muon", "adafactor", "nesterov", "yogi"]


def batched_rate(suite_name: str, workers: int, n: int, group: int, rounds: int) -> None:
    """Figure 6 (module doc)."""
    from optforge.evaluators.grouping import CPU_GROUP_SIZE

    group = group or CPU_GROUP_SIZE
    programs = [seeds.load_seed(SEED_MIX[i % len(SEED_MIX)]) for i in range(n)]
    torch.set_num_threads(1)
    evaluators.ensure_baselines(evaluators.get_suite(suite_name))  # cached before timing
    seconds = {1: 0.0, group: 0.0}
    results = {}
    with evaluators.EvaluatorPool(workers) as pool:
        list(evaluators.evaluate_many(programs[:workers], suite_name, pool=pool,
                                      group_size=1))  # warm up the workers
        for k in range(rounds):
            order = (1, group) if k % 2 == 0 else (group, 1)
            for size in order:
                t = time.perf_counter()
                out = list(evaluators.evaluate_many(programs, suite_name, pool=pool,
                                                    group_size=size))
                seconds[size] += time.perf_counter() - t
                results[size] = sorted(((r.index, r.status, r.score,
                                         tuple(x.loss for x in r.tasks)) for r in out),
                                       key=lambda x: x[0])
    same = repr(results[1]) == repr(results[group])
    single = 60 * n * rounds / seconds[1]
    batched = 60 * n * rounds / seconds[group]
    print(f"6. population batching on {suite_name}, {workers} workers, {n} candidates "
          f"({', '.join(sorted(set(SEED_MIX[:n])))}), {rounds} rounds: "
          f"{batched:.1f} candidates/min in groups of {group} vs {single:.1f}/min one "
          f"candidate per job: {batched / single:.2f}x; results identical: {same}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--suite", default="small", choices=evaluators.SUITES)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--candidates", type=int, default=12)
    ap.add_argument("--rounds", type=int, default=3, help="rounds of figure 5")
    ap.add_argument("--only-cost", action="store_true", help="print figure 5 alone")
    ap.add_argument("--group", type=int, default=0,
                    help="candidates per group job in figure 6 (default: the CPU default)")
    ap.add_argument("--batched-candidates", type=int, default=16)
    ap.add_argument("--batched-rounds", type=int, default=2)
    ap.add_argument("--only-batched", action="store_true", help="print figure 6 alone")
    args = ap.parse_args()
    if args.only_cost:
        legacy_cost(args.suite, args.rounds)
        return 0
    if args.only_batched:
        print(f"{os.cpu_count()} cores; load average {load()}")
        batched_rate(args.suite, args.workers, args.batched_candidates, args.group,
                     args.batched_rounds)
        print(f"load average at the end: {load()}")
        return 0
    suite = evaluators.get_suite(args.suite)
    kernel = compile_kernel(seeds.load_seed("adamw"))
    cores = os.cpu_count() or 1
    print(f"suite {suite.name} (version {suite.version}); {cores} cores; torch "
          f"{torch.__version__}; load average {load()}")
    batched_vs_naive(suite, kernel, 1)
    for threads in sorted({1, cores}):
        mlp_flops(suite, kernel, threads, matmul_peak(threads))
    pool_rate(args.suite, args.workers, args.candidates)
    legacy_cost(args.suite, args.rounds)
    batched_rate(args.suite, args.workers, args.batched_candidates, args.group,
                 args.batched_rounds)
    print(f"load average at the end: {load()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
