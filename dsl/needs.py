"""What running a rule takes beyond its parameter and gradient, and what a step of it costs.

`needs(p)` names the context inputs `p` reads (`dsl.context`) and ``"grad_at"`` when it
calls that op, so that a caller computes only those (a Hessian-vector product is not free).
`passes_per_step(p)` is a step's cost in forward-and-backward passes of the model: 1 for the
gradient every rule gets, 1 more per `grad_at` statement, 2 more when the rule reads `hess`
(a Hessian-vector product differentiates the backward pass: about two passes). The
evaluators scale a rule's time budget by it and a campaign can charge by it.
"""

from __future__ import annotations

from .context import CLOSURE_INPUTS, CONTEXT_INPUTS
from .ir import Program, iter_reads
from .ops import OPS, OpKind

__all__ = ["needs", "passes_per_step", "needs_closure", "HESS_PASSES"]

HESS_PASSES = 2


def needs(p: Program) -> frozenset[str]:
    read = {a for _, a in iter_reads(p) if isinstance(a, str) and a in CONTEXT_INPUTS}
    if any(_kind(s.op) is OpKind.GRADIENT for s in p.body):
        read.add("grad_at")
    return frozenset(read)


def needs_closure(p: Program) -> bool:
    """Whether an exported optimizer of `p` needs ``step(closure)``."""
    return bool(needs(p) & (CLOSURE_INPUTS | {"grad_at"}))


def passes_per_step(p: Program) -> int:
    grad_at = sum(1 for s in p.body if _kind(s.op) is OpKind.GRADIENT)
    return 1 + grad_at + (HESS_PASSES if "hess" in needs(p) else 0)


def _kind(op: str) -> OpKind | None:
    """An op's kind; None for a name not in the table (the backends report those)."""
    entry = OPS.get(op)
    return entry.kind if entry is not None else None
