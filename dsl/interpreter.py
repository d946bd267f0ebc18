"""The reference interpreter: the meaning of a program, in torch.

Every generated form (the evaluator kernel, the exported optimizer) is tested against this.
It runs in float32 or float64 (the dtype of `w`), on one parameter (``lead=0``) or on R
replicas at once (``lead=1``: `w`, `g` and the state are ``[R, *shape]``, `lr` is a float or a
tensor of R per-replica learning rates, reductions run over the non-replica axes).
"""

from __future__ import annotations

from typing import Mapping, Sequence

import torch

from .ir import Arg, Program
from .ops import OPS, UnknownOpError

__all__ = ["run_step", "init_state", "run_steps"]


def init_state(p: Program, w: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Zero-initialised state, one tensor per state slot, shaped like `w`."""
    return tuple(torch.zeros_like(w) for _ in p.state)


def run_step(p: Program, w: torch.Tensor, g: torch.Tensor, lr, t,
             state: Sequence[torch.Tensor], hyper: Mapping[str, float] | None = None,
             lead: int = 0) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    """One step of rule `p`: returns ``(step, new_state)``, both shaped like `w`; the
    optimizer then applies ``w <- w - step``. `t` is the 1-based step count; `hyper`
    overrides hyperparameter defaults by name."""
    if len(state) != len(p.state):
        raise ValueError(f"{p.name} has {len(p.state)} state slots, got {len(state)}")
    dtype, device = w.dtype, w.device
    scalar_shape = (w.shape[0],) + (1,) * (w.dim() - 1) if lead else ()

    def scalar(x) -> torch.Tensor:
        x = torch.as_tensor(x, dtype=dtype, device=device)
        if lead and x.dim() == 1:  # per-replica values
            return x.reshape(scalar_shape)
        return x

    hyper = dict(hyper or {})
    unknown = set(hyper) - set(p.hyper_defaults)
    if unknown:
        raise ValueError(f"{p.name} has no hyperparameter {sorted(unknown)[0]!r}")
    env: dict[str, torch.Tensor] = {"w": w, "g": g, "lr": scalar(lr), "t": scalar(t)}
    env.update(zip(p.state, state))
    for name, default in p.hyperparams:
        env[name] = scalar(hyper.get(name, default))
    # keyed by repr: as dict keys -0.0 == 0.0, but 1 / -0.0 = -inf and rsqrt(-0.0) = -inf
    constants: dict[str, torch.Tensor] = {}

    def value(a: Arg) -> torch.Tensor:
        if isinstance(a, str):
            return env[a]
        key = repr(float(a))
        c = constants.get(key)
        if c is None:
            c = constants[key] = torch.tensor(a, dtype=dtype, device=device)
        return c

    for s in p.body:
        op = OPS.get(s.op)
        if op is None:
            raise UnknownOpError(s.op, "interpreter")
        env[s.target] = op.torch_fn(lead, *(value(a) for a in s.args))
    outs = [value(a) for a in p.returns]
    outs = [o.expand(w.shape) if o.shape != w.shape else o for o in outs]
    return outs[0], tuple(outs[1:])


def run_steps(p: Program, w: torch.Tensor, grads: Sequence[torch.Tensor], lr,
              hyper: Mapping[str, float] | None = None, lead: int = 0,
              ) -> list[torch.Tensor]:
    """Apply `p` for ``len(grads)`` steps from `w` with the given gradients; return the
    parameter after every step (a convenience for tests and fingerprints)."""
    state = init_state(p, w)
    out = []
    for t, g in enumerate(grads, start=1):
        step, state = run_step(p, w, g, lr, t, state, hyper, lead)
        w = w - step
        out.append(w)
    return out
