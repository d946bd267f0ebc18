"""What a rule may read beyond its own parameter: the model-level inputs.

The four leading parameters of a rule (`w`, `g`, `lr`, `t`) are its own. A rule may also read
these *context inputs* by name, without declaring them (they are reserved names):

* ``loss``: the loss at the current parameters on this step's minibatch, the value whose
  gradient is `g`; a scalar (one per replica). AEGD, Polyak- and SANIA-style steps read it.
* ``hess``: a Hutchinson estimate of the Hessian diagonal at `w`, ``z * (H z)`` with `z` a
  Rademacher vector (entries ±1) drawn afresh every step; a tensor of `w`'s shape.
  AdaHessian and Sophia-H read it.
* ``rows``, ``cols``, ``numel``: the shape of the parameter's matrix view (`shape_scalars`),
  scalars; Muon's ``sqrt(max(1, rows / cols))`` reads them.

and call the model-level ops of the op table: the whole-model reductions (`global_sum`,
`global_norm`: over every parameter of the group, see `dsl.model_ops`) and ``grad_at(e)``,
the gradient of the same minibatch loss at ``w + e``, where the perturbation `e` is itself
computed by the rule for every parameter (SAM).

Whoever runs a rule supplies what it reads through a `StepContext`: the trainer from its
batched model, an exported optimizer from its closure, a test from its problem. A rule that
reads an input its caller did not supply fails with `MissingContextError`, naming both.
`needs(program)` says which ones a rule reads, so that callers compute only those.

Randomness: the Rademacher vectors come from `rademacher`, drawn in parameter order from a
generator the caller owns (the exported optimizer's own, the trainer's per seed), so that a
run reproduces and a test can hand the reference the same vectors.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import torch

__all__ = ["CONTEXT_INPUTS", "SCALAR_CONTEXT", "SHAPE_INPUTS", "CLOSURE_INPUTS",
           "StepContext", "MissingContextError", "shape_scalars", "rademacher", "hutchinson"]

SHAPE_INPUTS: tuple[str, ...] = ("rows", "cols", "numel")
CONTEXT_INPUTS: tuple[str, ...] = ("loss", "hess") + SHAPE_INPUTS
SCALAR_CONTEXT = frozenset({"loss"} | set(SHAPE_INPUTS))
# what an exported optimizer can only get from a closure (with the op `grad_at`)
CLOSURE_INPUTS = frozenset({"loss", "hess"})


class MissingContextError(ValueError):
    """A rule reads a context input (or calls `grad_at`) that its caller did not supply."""

    def __init__(self, rule: str, name: str, caller: str = "the caller"):
        self.rule, self.name = rule, name
        super().__init__(f"rule {rule!r} reads {name!r}, which {caller} did not supply "
                         f"(a StepContext with {name!r}; an exported optimizer gets it "
                         f"from step(closure))")


@dataclass(frozen=True)
class StepContext:
    """The model-level inputs of one step, for one group of parameters (see module doc).

    `loss`: a number, a 0-d tensor, or (``lead=1``) one value per replica, ``[R]``.
    `hess`: one tensor per parameter, shaped like it (``[R, *shape]`` with ``lead=1``).
    `grad_at(es)`: given one perturbation per parameter (full shape), the gradient of this
    step's minibatch loss at ``w + e`` for every parameter, in the same order; the
    parameters themselves must be left as they were.
    """

    loss: torch.Tensor | float | None = None
    hess: Sequence[torch.Tensor] | None = None
    grad_at: Callable[[Sequence[torch.Tensor]], Sequence[torch.Tensor]] | None = None


def shape_scalars(shape: Sequence[int]) -> tuple[int, int, int]:
    """``(rows, cols, numel)`` of the matrix view of a parameter of `shape` (without replica
    axes): ``(d0, d1 * ... * dk, numel)``; a vector of n entries is an ``n x 1`` column, a
    0-d parameter ``1 x 1`` (as `dsl.ops.matrix_view` sees them)."""
    numel = math.prod(shape)
    rows = shape[0] if len(shape) >= 1 else 1
    return rows, (numel // rows if rows else 0) if len(shape) >= 2 else 1, numel


def rademacher(shapes: Sequence[Sequence[int]], generator: torch.Generator,
               dtype: torch.dtype, device: torch.device | str) -> list[torch.Tensor]:
    """One tensor of independent ±1 entries per shape, drawn in order from `generator` (on
    the generator's device, then moved): the Hutchinson probe vectors."""
    out = []
    for shape in shapes:
        bits = torch.randint(0, 2, tuple(shape), generator=generator, device=generator.device)
        out.append(bits.to(device=device, dtype=dtype) * 2 - 1)
    return out


def hutchinson(grads: Sequence[torch.Tensor], params: Sequence[torch.Tensor],
               z: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """The Hutchinson estimate of the Hessian diagonal, ``z * (H z)`` per parameter. `grads`
    must be the gradients of the loss with respect to `params` computed with
    ``create_graph=True``; the graph is kept (``retain_graph=True``)."""
    hz = torch.autograd.grad(list(grads), list(params), grad_outputs=list(z),
                             retain_graph=True)
    return [zi * hzi for zi, hzi in zip(z, hz)]
