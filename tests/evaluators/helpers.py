"""Helpers for the evaluator tests. `faulty_runner` is a pool job runner that misbehaves on
purpose, by candidate name; it lives in an importable module because workers unpickle it
by reference."""

from __future__ import annotations

import math
import os
import signal
import time

import torch
from optforge.evaluators.jobs import Job, run_job

from optforge import dsl

NAN_RULE = "def nan_rule(w, g, lr, t):\n    return lr * g * sqrt(-1.0)\n"
EXPLODING_RULE = "def exploding(w, g, lr, t):\n    return g * 1e30\n"
# rules reading more than their gradient (issue #16): a second gradient, a Hessian estimate
SAM = ("def sam(w, g, lr, t, rho=0.05):\n"
       "    e = rho * g / (global_norm(g) + 1e-12)\n"
       "    return lr * grad_at(e)\n")
ADAHESSIAN = ("def adahessian(w, g, lr, t, m, v, b1=0.9, b2=0.999):\n"
              "    m = interp(g, m, b1)\n"
              "    v = interp(hess * hess, v, b2)\n"
              "    return lr * m / (sqrt(v) + 1e-8), m, v\n")


def rule(source: str) -> dsl.Program:
    return dsl.ensure_valid(dsl.parse(source))


def renamed(p: dsl.Program, name: str) -> dsl.Program:
    from dataclasses import replace

    return replace(p, name=name)


def faulty_runner(job: Job):
    name = job.program.name
    if name == "crash_exit":
        os._exit(3)
    if name == "crash_kill":  # what the out-of-memory killer does
        os.kill(os.getpid(), signal.SIGKILL)
    if name == "crash_segv":
        os.kill(os.getpid(), signal.SIGSEGV)
    if name == "hang":
        time.sleep(3600)
    return run_job(job)


class torch_threads:
    """Run a block with `n` torch threads, then restore the previous count."""

    def __init__(self, n: int):
        self.n = n

    def __enter__(self):
        self.before = torch.get_num_threads()
        torch.set_num_threads(self.n)

    def __exit__(self, *exc):
        torch.set_num_threads(self.before)


def same_floats(a, b) -> bool:
    """Nested tuples of floats equal, NaN equal to NaN."""
    if isinstance(a, (tuple, list)):
        return len(a) == len(b) and all(same_floats(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b
