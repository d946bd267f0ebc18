"""The reference interpreter: the meaning of a program, in torch.

Every generated form (the evaluator kernel, the exported optimizer) is tested against this.
It runs in float32 or float64 (the dtype of `w`), on one parameter (``lead=0``) or on R
replicas at once (``lead=1``: `w`, `g` and the state are ``[R, *shape]``, `lr` is a float or a
tensor of R per-replica learning rates, reductions run over the non-replica axes).

A rule runs on a *group* of parameters (`run_group_step`: every tensor of a model, or of an
optimizer's param_group), statement by statement. Per-tensor ops run for each parameter; a
whole-model op (`OpKind.GLOBAL`) is computed once for the group, from its argument's value
at every parameter, and gives every parameter the same scalar; ``grad_at(e)`` evaluates `e`
at every parameter and calls the caller's `StepContext.grad_at` once. The context inputs
(`dsl.context`) are read from the `StepContext` (`loss`, `hess`) or from the parameter's
shape (`rows`, `cols`, `numel`). State slots are passed in and returned in their stored
shape (`dsl.slots`): a reduced slot is loaded as a broadcast view and stored exactly.
`run_step` is a group of one.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import torch

from . import slots
from .context import SHAPE_INPUTS, MissingContextError, StepContext, shape_scalars
from .ir import Arg, Program
from .needs import needs
from .ops import OPS, OpKind, UnknownOpError
from .slots import SlotShape

__all__ = ["run_step", "run_group_step", "init_state", "run_steps"]


def init_state(p: Program, w: torch.Tensor, lead: int = 0) -> tuple[torch.Tensor, ...]:
    """Zero-initialised state, one tensor per state slot, in its stored shape (`w`'s shape
    for a full slot; `lead` leading replica axes are kept)."""
    return tuple(torch.zeros_like(w) if p.slot_shape(s) is SlotShape.FULL
                 else slots.zeros(p.slot_shape(s), w, lead) for s in p.state)


def _check_context(p: Program, read: frozenset[str], context: StepContext | None,
                   n: int) -> None:
    """Raise `MissingContextError` for the first input `p` reads (`read`) that `context`
    lacks."""
    for name in sorted(read - set(SHAPE_INPUTS)):
        if context is None or getattr(context, name) is None:
            raise MissingContextError(p.name, name)
    if "hess" in read and len(context.hess) != n:
        raise ValueError(f"{p.name}: context.hess holds {len(context.hess)} tensors for a "
                         f"group of {n} parameters")


class _Param:
    """One parameter of the group while a step runs: its values by name."""

    def __init__(self, w: torch.Tensor, lead: int):
        self.w, self.lead = w, lead
        self.dtype, self.device = w.dtype, w.device
        self.scalar_shape = (w.shape[0],) + (1,) * (w.dim() - 1) if lead else ()
        self.env: dict[str, torch.Tensor] = {}
        # keyed by repr: as dict keys -0.0 == 0.0, but 1 / -0.0 = -inf and rsqrt(-0.0) = -inf
        self.constants: dict[str, torch.Tensor] = {}

    def scalar(self, x) -> torch.Tensor:
        """A scalar in this parameter's layout (per-replica values as ``[R, 1, ..., 1]``)."""
        x = torch.as_tensor(x, dtype=self.dtype, device=self.device)
        if self.lead and x.dim() == 1:
            return x.reshape(self.scalar_shape)
        return x

    def value(self, a: Arg) -> torch.Tensor:
        if isinstance(a, str):
            return self.env[a]
        key = repr(float(a))
        c = self.constants.get(key)
        if c is None:
            c = self.constants[key] = torch.tensor(a, dtype=self.dtype, device=self.device)
        return c

    def full(self, a: Arg) -> torch.Tensor:
        """The value of `a` at this parameter's full shape (a broadcast view)."""
        v = self.value(a)
        return v if v.shape == self.w.shape else v.expand(self.w.shape)


def run_group_step(p: Program, ws: Sequence[torch.Tensor], gs: Sequence[torch.Tensor], lr, t,
                   states: Sequence[Sequence[torch.Tensor]],
                   hyper: Mapping[str, float] | None = None, lead: int = 0,
                   context: StepContext | None = None,
                   ) -> tuple[list[torch.Tensor], list[tuple[torch.Tensor, ...]]]:
    """One step of rule `p` on a group of parameters: returns ``(steps, new_states)``, one
    step per parameter at its full shape (the optimizer then applies ``w <- w - step``) and
    one tuple of new state per parameter, in stored shape. `t` is the 1-based step count;
    `hyper` overrides hyperparameter defaults by name; `context` supplies what `p` reads
    beyond its parameter (`dsl.context`; `MissingContextError` when it lacks something)."""
    if not (len(ws) == len(gs) == len(states)):
        raise ValueError(f"{p.name}: {len(ws)} parameters, {len(gs)} gradients and "
                         f"{len(states)} states")
    for state in states:
        if len(state) != len(p.state):
            raise ValueError(f"{p.name} has {len(p.state)} state slots, got {len(state)}")
    hyper = dict(hyper or {})
    unknown = set(hyper) - set(p.hyper_defaults)
    if unknown:
        raise ValueError(f"{p.name} has no hyperparameter {sorted(unknown)[0]!r}")
    read = needs(p)
    _check_context(p, read, context, len(ws))
    group = [_Param(w, lead) for w in ws]
    for i, (param, w, g, state) in enumerate(zip(group, ws, gs, states)):
        env = param.env
        env.update({"w": w, "g": g, "lr": param.scalar(lr), "t": param.scalar(t)})
        for slot, stored in zip(p.state, state):
            shape = p.slot_shape(slot)
            env[slot] = stored if shape is SlotShape.FULL else slots.load(shape, stored, w.shape)
        for name, default in p.hyperparams:
            env[name] = param.scalar(hyper.get(name, default))
        if "loss" in read:
            env["loss"] = param.scalar(context.loss)
        if "hess" in read:
            env["hess"] = context.hess[i]
        if read & set(SHAPE_INPUTS):
            for name, n in zip(SHAPE_INPUTS, shape_scalars(w.shape[lead:])):
                env[name] = torch.tensor(float(n), dtype=w.dtype, device=w.device)
    for s in p.body:
        op = OPS.get(s.op)
        if op is None:
            raise UnknownOpError(s.op, "interpreter")
        if op.kind is OpKind.GLOBAL:
            total = op.torch_fn(lead, [q.value(s.args[0]) for q in group], ws)
            for q in group:
                q.env[s.target] = q.scalar(total)
        elif op.kind is OpKind.GRADIENT:
            results = op.torch_fn(lead, [q.full(s.args[0]) for q in group], ws,
                                  context.grad_at)
            if len(results) != len(group):
                raise ValueError(f"{p.name}: grad_at returned {len(results)} gradients for "
                                 f"a group of {len(group)} parameters")
            for q, r in zip(group, results):
                q.env[s.target] = r
        else:
            for q in group:
                q.env[s.target] = op.torch_fn(lead, *(q.value(a) for a in s.args))
    steps, new_states = [], []
    for q in group:
        steps.append(q.full(p.returns[0]))
        new_states.append(tuple(
            slots.store(p.slot_shape(slot), q.value(a), q.w.shape, lead)
            if p.slot_shape(slot) is not SlotShape.FULL else q.full(a)
            for slot, a in zip(p.state, p.returns[1:])))
    return steps, new_states


def run_step(p: Program, w: torch.Tensor, g: torch.Tensor, lr, t,
             state: Sequence[torch.Tensor], hyper: Mapping[str, float] | None = None,
             lead: int = 0, context: StepContext | None = None,
             ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    """One step of rule `p` on one parameter (a group of one, see `run_group_step`):
    ``(step, new_state)``, the step shaped like `w`, the state in stored shape. A
    `context`'s `hess`, if given, is a list of one tensor."""
    steps, states = run_group_step(p, [w], [g], lr, t, [state], hyper, lead, context)
    return steps[0], states[0]


def run_steps(p: Program, w: torch.Tensor, grads: Sequence[torch.Tensor], lr,
              hyper: Mapping[str, float] | None = None, lead: int = 0,
              ) -> list[torch.Tensor]:
    """Apply `p` for ``len(grads)`` steps from `w` with the given gradients; return the
    parameter after every step (a convenience for tests and fingerprints)."""
    state = init_state(p, w, lead)
    out = []
    for t, g in enumerate(grads, start=1):
        step, state = run_step(p, w, g, lr, t, state, hyper, lead)
        w = w - step
        out.append(w)
    return out
