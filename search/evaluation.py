"""Training children: in this process (a serial campaign, deterministic order) or through an
evaluator pool (any object with `evaluators.pool.EvaluatorPool`'s interface)."""

from __future__ import annotations

from typing import Iterable, Iterator

import torch
from optforge.dsl import Program
from optforge.evaluators import EvalResult, evaluate, evaluate_many

from .individuals import Child

__all__ = ["evaluate_children", "evaluate_here"]


def evaluate_children(children: Iterable[Child], suite: str,
                      pool) -> Iterator[tuple[Child, EvalResult]]:
    """(child, result) as each finishes: in this process when `pool` is None, in the order
    given, else lazily through the pool (a child is drawn when a worker frees up)."""
    if pool is None:
        for child in children:
            yield child, evaluate(child.program, suite)
        return
    drawn: list[Child] = []

    def programs():
        for child in children:
            drawn.append(child)
            yield child.program
    for result in evaluate_many(programs(), suite, pool=pool):
        yield drawn[result.index], result


def evaluate_here(program: Program, suite: str) -> EvalResult:
    """`program` on `suite` in this process, on one thread (a screening beside the pool's
    workers, or in a serial campaign)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return evaluate(program, suite)
    finally:
        torch.set_num_threads(threads)
