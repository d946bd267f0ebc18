"""Throughput of the search's cheap filters: `dsl.check` + `dsl.structural_hash` per program.

    python bench/check_hash_throughput.py               # 20,000 programs of 20 statements
    python bench/check_hash_throughput.py --n 50000 --statements 40 --seed 3

The search will propose hundreds of thousands of children; each is checked and hashed before
anything is trained, so this pair must keep up (AutoML-Zero screened 2,000-10,000 candidates
per second per core). The programs are random IR, as mutations produce them: statements over
the whole op table with arguments drawn from the names defined so far and constants, two
state slots, two hyperparameters, temporaries named by position, no source positions.

Printed, per core (one process, one torch thread): programs/s for check + structural hash
(the figure that matters), and for information check alone, structural_hash alone,
canonical_hash and fingerprint (which runs the interpreter on the probes, so it is measured
on fewer programs). Each rate is the best of `--repeats` passes over the same programs;
the spread between passes is printed too, since other work on the machine slows a pass.
Deterministic: programs come from ``numpy.random.default_rng(--seed)``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from optforge.dsl.ir import INPUTS, Program, Stmt, temp_name, validate
from optforge.dsl.ops import OPS, OpKind

from optforge import dsl

OP_NAMES = list(OPS)
CONSTANTS = [0.0, 1.0, -1.0, 0.5, 2.0, 0.9, 0.999, 1e-8]


def random_program(rng: np.random.Generator, n_statements: int, index: int) -> Program:
    """A random valid-IR program of exactly `n_statements` statements (see module doc)."""
    state = ("m", "v")
    hyper = (("beta1", 0.9), ("beta2", 0.999))
    tensors = ["w", "g", "m", "v"]
    defined = list(INPUTS) + list(state) + [h for h, _ in hyper]
    named = list(state) + ["a", "b", "c"]
    body = []
    for i in range(n_statements):
        op = OPS[OP_NAMES[int(rng.integers(len(OP_NAMES)))]]
        args = []
        for k in range(op.arity):
            if k == 0 and op.kind is OpKind.MATRIX:
                args.append(tensors[int(rng.integers(len(tensors)))])
            elif rng.random() < 0.15:
                args.append(CONSTANTS[int(rng.integers(len(CONSTANTS)))])
            else:  # favour recent values, as evolved programs chain their statements
                args.append(defined[-1 - min(int(rng.geometric(0.3)) - 1, len(defined) - 1)])
        if i == n_statements - 1:  # the step: make it depend on g, as the checker asks
            target = temp_name(i)
            args[-1] = "g"
        elif rng.random() < 0.3:
            target = named[int(rng.integers(len(named)))]
        else:
            target = temp_name(i)
        body.append(Stmt(target, op.name, tuple(args)))
        if target not in defined:
            defined.append(target)
        is_tensor = any(isinstance(a, str) and a in tensors for a in args)
        if is_tensor and target not in tensors:
            tensors.append(target)
        elif not is_tensor and target in tensors:
            tensors.remove(target)
    returns = (body[-1].target, "m", "v")
    p = Program(f"child{index}", state, hyper, tuple(body), returns)
    validate(p)
    return p


def rate(fn, programs, repeats: int) -> tuple[float, list[float], float]:
    """(best programs/s, every pass's programs/s, best programs per CPU second) of `fn` over
    `programs`. Wall-clock rates drop when other work shares the core; the CPU-time rate
    much less so."""
    rates, cpu_rates = [], []
    for _ in range(repeats):
        start, cpu = time.perf_counter(), time.process_time()
        for p in programs:
            fn(p)
        rates.append(len(programs) / (time.perf_counter() - start))
        cpu_rates.append(len(programs) / max(time.process_time() - cpu, 1e-9))
    return max(rates), rates, max(cpu_rates)


def check_and_hash(p: Program):
    report = dsl.check(p)
    return report.ok, dsl.structural_hash(p)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=20_000, help="programs (default 20000)")
    ap.add_argument("--statements", type=int, default=20)
    ap.add_argument("--fingerprints", type=int, default=300,
                    help="programs to fingerprint (slower; default 300)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)

    rng = np.random.default_rng(args.seed)
    programs = [random_program(rng, args.statements, i) for i in range(args.n)]
    ok = sum(dsl.check(p).ok for p in programs)
    distinct = len({dsl.structural_hash(p) for p in programs})

    print(f"check_hash_throughput: {args.n} random programs of {args.statements} statements "
          f"(seed {args.seed}); {ok} pass the checker, {distinct} distinct structural hashes; "
          f"one process, torch threads {torch.get_num_threads()}, best of {args.repeats}")
    rows = [
        ("check + structural_hash", check_and_hash, programs),
        ("check", dsl.check, programs),
        ("structural_hash", dsl.structural_hash, programs),
        ("canonical_hash", dsl.canonical_hash, programs),
        ("fingerprint", dsl.fingerprint, programs[:args.fingerprints]),
    ]
    if hasattr(os, "getloadavg"):
        print(f"  load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    results = {}
    for name, fn, ps in rows:
        best, rates, cpu_rate = rate(fn, ps, args.repeats)
        results[name] = best
        spread = ", ".join(f"{r:,.0f}" for r in rates)
        print(f"  {name:24s} {best:9,.0f} programs/s per core ({1e6 / best:7.1f} us each; "
              f"{cpu_rate:9,.0f} per CPU second; {len(ps)} programs; passes {spread})")
    print(f"  for comparison: AutoML-Zero screened 2,000-10,000 candidates/s per core; "
          f"check + structural_hash: {results['check + structural_hash']:,.0f}/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
