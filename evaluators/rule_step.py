"""One step of a compiled rule on rows of a batch: what the lone trainer
(`evaluators.trainer`) and the population trainer (`evaluators.population`) both run, so
that a candidate's numbers are the same either way.

`apply_rule` calls the kernel once on the flat ``[n, P]`` buffer (an elementwise rule),
once per parameter tensor, or once for the whole group (a grouped rule: whole-model
reductions, ``grad_at``); `step_context` gathers what the rule reads beyond its gradient
(`evaluators.step_inputs`); `initial_state` makes its state, factored slots at their
stored shape (`dsl.slots`).
"""

from __future__ import annotations

import torch

from ..dsl import slots
from ..dsl.context import StepContext
from ..dsl.slots import SlotShape
from .step_inputs import Features, features, grad_at_fn

__all__ = ["apply_rule", "initial_state", "next_state", "step_context"]


def lr_for(lr: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Per-row values ``[n]`` laid out like `w`'s rows, ``[n, 1, ..., 1]``."""
    return lr.view((w.shape[0],) + (1,) * (w.dim() - 1))


def step_context(feats: Features, problem, batch, k: int,
                 losses: torch.Tensor, hess: list[torch.Tensor] | None,
                 rows: slice = slice(None)) -> StepContext | None:
    """What the rule reads at step `k` (`evaluators.step_inputs`) for the batch's `rows`:
    their losses ``[n]``, Hessian estimates and second gradient; None for a rule that
    reads nothing."""
    if not (feats.needs & {"loss", "hess", "grad_at"}):
        return None
    return StepContext(
        loss=losses.detach()[rows] if feats.loss else None,
        hess=[h[rows] for h in hess] if feats.hess else None,
        grad_at=grad_at_fn(problem, [v[rows] for v in batch.views], batch.plan[k][rows])
        if "grad_at" in feats.needs else None)


def initial_state(kernel, w: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Zero state for parameter `w` (``[n, *shape]``), each slot in its stored shape."""
    return tuple(torch.zeros_like(w) if shape is SlotShape.FULL else slots.zeros(shape, w, 1)
                 for shape in features(kernel).slot_shapes)


def apply_rule(kernel, flat: torch.Tensor | None, views, grads, lr: torch.Tensor, states,
               scalars, bound, context: StepContext | None) -> None:
    """One step of `kernel` on parameters `views` (``[n, *shape]`` each, updated in place)
    with gradients `grads`, per-row rates `lr` ``[n]`` and `states` (a list, replaced
    entry by entry): one call on the flat ``[n, P]`` buffer `flat` (flat mode), one per
    tensor, or one for the whole group (a grouped rule)."""
    n = lr.shape[0]
    feats = features(kernel)
    shapes = feats.slot_shapes
    if feats.grouped:
        lrs = [lr_for(lr, w) for w in views]
        steps, new_states = kernel.apply_group(list(views), list(grads), lrs, list(states),
                                               scalars, bound, context)
        for i, (w, step, new) in enumerate(zip(views, steps, new_states)):
            states[i] = next_state(w, new, shapes)
            w.sub_(step)
        return
    loss = None if context is None or context.loss is None else context.loss
    hess = None if context is None else context.hess
    if flat is not None:
        pairs = [(flat, torch.cat([g.reshape(n, -1) for g in grads], dim=1),
                  None if hess is None else torch.cat([h.reshape(n, -1) for h in hess], 1))]
    else:
        pairs = list(zip(views, grads, hess if hess is not None else [None] * len(views)))
    for i, (w, g, h) in enumerate(pairs):
        step, new_state = kernel.apply(w, g, lr_for(lr, w), states[i], scalars, bound,
                                       None if loss is None else lr_for(loss, w), h)
        states[i] = next_state(w, new_state, shapes)
        w.sub_(step)


def next_state(w: torch.Tensor, new: tuple, shapes: tuple = ()) -> tuple:
    out = []
    for i, n in enumerate(new):
        if i < len(shapes) and shapes[i] is not SlotShape.FULL:
            pass  # stored reduced by the kernel (`dsl.slots.store`: its own copy)
        elif n is w:  # a rule that stores w itself: keep a copy, w is updated in place
            n = n.clone()
        elif n.shape != w.shape:  # a state the rule left scalar
            n = n.expand(w.shape)
        out.append(n)
    return tuple(out)


