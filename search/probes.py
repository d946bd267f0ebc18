"""Cheap probes: reject a child before any training if it is obviously useless.

On a small ill-conditioned quadratic (float64, a few steps, three learning rates) a useful
rule must keep the parameters finite, move them, and lower the loss for at least one learning
rate. A probe costs about a millisecond; a `small` suite evaluation about a second.

A rule that reads the model-level inputs (`dsl.context`) runs on the quadratic as a group of
one tensor, given what the quadratic knows exactly: `loss` is its value at the current
parameters, `hess` its Hessian diagonal (the curvature: a Hutchinson estimate of a diagonal
Hessian is exact for every Rademacher vector), and ``grad_at(e)`` its gradient at ``w + e``,
``curvature * (w + e)``. Any other rule runs as before, without a context.
"""

from __future__ import annotations

import torch
from optforge.dsl import Program
from optforge.dsl.context import StepContext
from optforge.dsl.needs import needs

from optforge import dsl

__all__ = ["probe", "quadratic_context", "PROBE_LRS"]

PROBE_LRS = (1e-3, 1e-2, 1e-1)
PROBE_STEPS = 12


def _quadratic():
    gen = torch.Generator().manual_seed(1234)
    w0 = torch.randn(6, 4, generator=gen, dtype=torch.float64)
    curvature = torch.logspace(-1, 1, 24, dtype=torch.float64).reshape(6, 4)
    return w0, curvature


_W0, _CURVATURE = _quadratic()


def _loss(w: torch.Tensor) -> float:
    return float(0.5 * (_CURVATURE * w * w).sum())


def quadratic_context(w: torch.Tensor) -> StepContext:
    """What the quadratic supplies at parameters `w` to a rule that reads it."""
    return StepContext(loss=torch.tensor(_loss(w), dtype=w.dtype), hess=[_CURVATURE],
                       grad_at=lambda es: [_CURVATURE * (w + es[0])])


def probe(p: Program) -> str | None:
    """None if `p` passes, else the reason it fails ('probe: ...')."""
    start = _loss(_W0)
    reads_context = bool(needs(p))
    moved = finite = False
    with torch.no_grad():
        for lr in PROBE_LRS:
            w, state = _W0, dsl.init_state(p, _W0)
            ok = True
            for t in range(1, PROBE_STEPS + 1):
                if reads_context:
                    step, state = dsl.run_step(p, w, _CURVATURE * w, lr, t, state,
                                               context=quadratic_context(w))
                else:  # as before context inputs existed
                    step, state = dsl.run_step(p, w, _CURVATURE * w, lr, t, state)
                w = w - step
                if not bool(torch.isfinite(w).all()):
                    ok = False
                    break
            if not ok:
                continue
            finite = True
            moved = moved or not torch.equal(w, _W0)
            if _loss(w) < start * 0.999:
                return None
    if not finite:
        return "probe: not finite"
    if not moved:
        return "probe: constant"
    return "probe: does not descend"
