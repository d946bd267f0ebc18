"""What a rule reads beyond its gradient, computed by the trainers (`dsl.context`, issue #16).

A compiled rule says what it reads (`Kernel.needs`, from `dsl.needs`); the batched trainers
(`evaluators.trainer`, `evaluators.population`) compute only that, for the rows of the
batch still training:

* ``loss``: each row's minibatch loss, the one whose gradient is `g` (already computed);
* ``hess``: a Hutchinson estimate ``z * (H z)`` of the Hessian diagonal at the row's
  parameters, from its own forward and backward with ``create_graph=True`` (only when
  some rule of the batch reads it; `hessian` says why its own). The probe `z` of a row comes from its SEED's own generator
  (`stream_seed(task, seed, "hutchinson")`), one draw per training step in step order, so
  a row's `z` depends on (task, seed, step) only: every rate of a seed sees the same
  probes, alone or in a population batch, whatever was dropped (`Probes`);
* ``grad_at(es)``: a second forward and backward of the same step's minibatch at the
  leaves ``w + e`` (`grad_at_fn`): the rows' own sampling plan, the rows only;
* ``rows``, ``cols``, ``numel``: the kernel computes them from each tensor's shape.

`features(kernel)` reads a kernel's flags with defaults, so that a stand-in kernel (tests
wrap one) is a plain per-tensor rule reading nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from ..dsl.context import hutchinson, rademacher
from ..dsl.slots import SlotShape

__all__ = ["Features", "Probes", "features", "grad_at_fn", "hessian", "loss_and_grads"]


@dataclass(frozen=True)
class Features:
    needs: frozenset[str]
    grouped: bool
    slot_shapes: tuple[SlotShape, ...]
    passes: int

    @property
    def hess(self) -> bool:
        return "hess" in self.needs

    @property
    def loss(self) -> bool:
        return "loss" in self.needs


def features(kernel) -> Features:
    n_state = kernel.n_state
    return Features(frozenset(getattr(kernel, "needs", frozenset())),
                    bool(getattr(kernel, "grouped", False)),
                    tuple(getattr(kernel, "slot_shapes", (SlotShape.FULL,) * n_state)),
                    int(getattr(kernel, "passes", 1)))


class Probes:
    """The Hutchinson probes of one task's seeds: `for_rows(k, seed_index)` gives step k's
    probe of every row (row i of seed ``seeds[seed_index[i]]``), one ``[n, *shape]``
    tensor per parameter. Draws are made in step order, lazily: step k's probe of a seed is
    its generator's (k+1)-th draw, however many steps were skipped before asking."""

    def __init__(self, stream_seed: Callable[[int], int], seeds: Sequence[int],
                 shapes: Sequence[Sequence[int]]):
        self.gens = [torch.Generator().manual_seed(stream_seed(s)) for s in seeds]
        self.shapes = [tuple(s) for s in shapes]
        self.drawn = 0
        self.current: list[list[torch.Tensor]] = []

    def for_rows(self, k: int, seed_index: torch.Tensor,
                 device: torch.device) -> list[torch.Tensor]:
        if k < self.drawn - 1:
            raise ValueError(f"probe of step {k} asked after step {self.drawn - 1}'s")
        while self.drawn <= k:
            self.current = [rademacher(self.shapes, gen, torch.float32, "cpu")
                            for gen in self.gens]
            self.drawn += 1
        index = seed_index.cpu()
        return [torch.stack([z[j] for z in self.current])[index].to(device)
                for j in range(len(self.shapes))]


def loss_and_grads(problem, leaves: Sequence[torch.Tensor], plan: torch.Tensor,
                   z: Sequence[torch.Tensor] | None = None):
    """Each row's minibatch loss ``[n]`` and gradients at `leaves` (``[n, *shape]``
    autograd leaves), and with probes `z` the Hutchinson estimate of each row's Hessian
    diagonal (`hessian`; None without): ``(losses, grads, hess)``."""
    losses = problem.loss(leaves, plan)
    grads = list(torch.autograd.grad(losses.sum(), leaves))
    return losses, grads, None if z is None else hessian(problem, leaves, plan, z)


def hessian(problem, params: Sequence[torch.Tensor], plan: torch.Tensor,
            z: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """The Hutchinson estimate ``z * (H z)`` of each row's Hessian diagonal at `params`
    (``[n, *shape]``; detached), from its own forward and backward with
    ``create_graph=True``.

    Its own pass, on contiguous copies of at least two rows: under ``create_graph`` torch
    differentiates strided views and one-row batches along other paths than contiguous
    batches (other bits), so a row's estimate would depend on how many rows train beside
    it. The gradient the rule gets stays the plain pass's, the same as any rule's."""
    n = params[0].shape[0]
    copies = 1 if n >= 2 else 2
    leaves = [torch.cat([v.detach()] * copies).contiguous().requires_grad_() for v in params]
    plan = torch.cat([plan] * copies)
    z = [torch.cat([x] * copies) for x in z]
    with torch.enable_grad():
        losses = problem.loss(leaves, plan)
        grads = torch.autograd.grad(losses.sum(), leaves, create_graph=True)
        return [h[:n].detach() for h in hutchinson(grads, leaves, z)]


def grad_at_fn(problem, views: Sequence[torch.Tensor], plan: torch.Tensor):
    """`StepContext.grad_at` for rows whose parameters are `views` (``[n, *shape]`` each)
    and whose step batch is `plan` (``[n, ...]``): the gradient of each row's minibatch
    loss at ``w + e``. The parameters are left as they are. Works from inside
    ``torch.no_grad()`` or ``torch.inference_mode()``."""

    def grad_at(es: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        with torch.inference_mode(False), torch.enable_grad():
            leaves = [(w + e).detach().clone().requires_grad_() for w, e in zip(views, es)]
            losses = problem.loss(leaves, plan.clone())
            return list(torch.autograd.grad(losses.sum(), leaves))
    return grad_at
