"""Mutations that reach beyond one tensor: the context inputs, whole-model reductions, the
second gradient and factored state (`dsl.context`, `dsl.model_ops`, `dsl.slots`).

    read_context       an argument becomes a context input of its value class: a tensor
                       argument becomes `hess`, a scalar one `loss`, `rows`, `cols` or `numel`
    globalize          a per-tensor reduction becomes its whole-model counterpart:
                       norm(x) -> global_norm(x), dot(x, y) -> global_sum(x * y),
                       mean(x) -> global_sum(x) / global_sum(1),
                       rms(x)  -> global_norm(x) / sqrt(global_sum(1))
                       (a constant stands for a tensor filled with it: global_sum(1) counts
                       the group's entries)
    clip_global_norm   g -> g * min(1, c / (global_norm(g) + 1e-6)) everywhere, c drawn:
                       gradient clipping by the whole model's norm
    sharpness          g -> grad_at(rho * g / (global_norm(g) + 1e-12)) everywhere, rho
                       drawn: SAM's step (Foret et al., 2021); once per program
    factor_state       a full state slot is stored as a row, a column or a scalar where the
                       checker proves the rule's value for it has that shape (same math,
                       less memory)

Each is ``fn(program, rng, limits) -> Program | None`` like those of `search.mutations`.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from optforge.dsl.context import CONTEXT_INPUTS, SCALAR_CONTEXT
from optforge.dsl.ir import INPUTS, SCALAR_INPUTS, Program, Stmt, temp_name
from optforge.dsl.ops import OPS, OpKind
from optforge.dsl.slots import SlotShape

from optforge import dsl

from .mutation_defaults import Limits
from .program_edits import fresh_name, rebuild

__all__ = ["REACH_MUTATIONS", "tensor_sites", "read_context", "globalize",
           "clip_global_norm", "sharpness", "factor_state"]

_TENSOR_CONTEXT = tuple(n for n in CONTEXT_INPUTS if n not in SCALAR_CONTEXT)  # ("hess",)
_SCALAR_CONTEXT = tuple(n for n in CONTEXT_INPUTS if n in SCALAR_CONTEXT)


def _round_sig(x: float, digits: int = 2) -> float:
    return float(f"{x:.{digits}g}")


def _is_tensor_op(op: str, args_tensor: list[bool]) -> bool:
    kind = OPS[op].kind
    if kind is OpKind.GLOBAL:
        return False  # one value for the whole group
    if kind in (OpKind.GRADIENT, OpKind.MATRIX):
        return True
    return any(args_tensor)


def tensor_sites(p: Program) -> list[tuple[int, int, bool]]:
    """``(statement, argument, is_tensor)`` for every argument of the body: whether the value
    read there is a tensor of the parameter's shape or a scalar (the checker's kinds)."""
    tensor: dict[str, bool] = {n: n not in SCALAR_INPUTS for n in INPUTS}
    tensor.update({n: n not in SCALAR_CONTEXT for n in CONTEXT_INPUTS})
    tensor.update({s: True for s in p.state})
    tensor.update({h: False for h, _ in p.hyperparams})
    sites = []
    for i, s in enumerate(p.body):
        kinds = [isinstance(a, str) and tensor[a] for a in s.args]
        sites += [(i, k, t) for k, t in enumerate(kinds)]
        tensor[s.target] = _is_tensor_op(s.op, kinds)
    return sites


def _temp(p: Program, j: int) -> str:
    """A placeholder temporary for the j-th new statement (renumbered afterwards)."""
    return temp_name(len(p.body) + 1000 + j)


def read_context(p: Program, rng: np.random.Generator, limits: Limits) -> Program | None:
    sites = tensor_sites(p)
    if not sites:
        return None
    i, k, is_tensor = sites[int(rng.integers(len(sites)))]
    s = p.body[i]
    choices = [n for n in (_TENSOR_CONTEXT if is_tensor else _SCALAR_CONTEXT) if n != s.args[k]]
    if not choices:
        return None
    args = list(s.args)
    args[k] = str(rng.choice(choices))
    body = list(p.body)
    body[i] = Stmt(s.target, s.op, tuple(args))
    return rebuild(p, body)


def _global_form(p: Program, s: Stmt) -> list[Stmt] | None:
    """Statements computing `s`'s whole-model counterpart into `s.target` (None: none)."""
    t = [_temp(p, j) for j in range(3)]
    if s.op == "norm":
        return [Stmt(s.target, "global_norm", s.args)]
    if s.op == "dot":
        return [Stmt(t[0], "mul", s.args), Stmt(s.target, "global_sum", (t[0],))]
    if s.op == "mean":
        return [Stmt(t[0], "global_sum", s.args), Stmt(t[1], "global_sum", (1.0,)),
                Stmt(s.target, "div", (t[0], t[1]))]
    if s.op == "rms":
        return [Stmt(t[0], "global_norm", s.args), Stmt(t[1], "global_sum", (1.0,)),
                Stmt(t[2], "sqrt", (t[1],)), Stmt(s.target, "div", (t[0], t[2]))]
    return None


def globalize(p: Program, rng: np.random.Generator, limits: Limits) -> Program | None:
    sites = [i for i, s in enumerate(p.body) if _global_form(p, s) is not None]
    if not sites:
        return None
    i = sites[int(rng.integers(len(sites)))]
    new = _global_form(p, p.body[i])
    if len(p.body) - 1 + len(new) > limits.max_statements:
        return None
    return rebuild(p, list(p.body[:i]) + new + list(p.body[i + 1:]))


def _replace_gradient(p: Program, prefix: list[Stmt], name: str) -> Program:
    """`prefix` (which computes `name` from g) first, then the body and returns with every
    read of `g` reading `name` instead."""
    body = [Stmt(s.target, s.op, tuple(name if a == "g" else a for a in s.args))
            for s in p.body]
    returns = [name if a == "g" else a for a in p.returns]
    return rebuild(p, prefix + body, returns)


def clip_global_norm(p: Program, rng: np.random.Generator, limits: Limits) -> Program | None:
    if len(p.body) + 5 > limits.max_statements:
        return None
    c = _round_sig(10 ** rng.uniform(-1, 1))
    t, name = [_temp(p, j) for j in range(4)], fresh_name(p, "gc")
    prefix = [Stmt(t[0], "global_norm", ("g",)), Stmt(t[1], "add", (t[0], 1e-6)),
              Stmt(t[2], "div", (c, t[1])), Stmt(t[3], "min", (t[2], 1.0)),
              Stmt(name, "mul", ("g", t[3]))]
    return _replace_gradient(p, prefix, name)


def sharpness(p: Program, rng: np.random.Generator, limits: Limits) -> Program | None:
    if len(p.body) + 5 > limits.max_statements:
        return None
    if any(OPS[s.op].kind is OpKind.GRADIENT for s in p.body):
        return None  # one second gradient per step at most: each costs a pass
    rho = _round_sig(0.05 * 2.0 ** rng.normal())
    t, name = [_temp(p, j) for j in range(4)], fresh_name(p, "gs")
    prefix = [Stmt(t[0], "global_norm", ("g",)), Stmt(t[1], "add", (t[0], 1e-12)),
              Stmt(t[2], "div", ("g", t[1])), Stmt(t[3], "mul", (rho, t[2])),
              Stmt(name, "grad_at", (t[3],))]
    return _replace_gradient(p, prefix, name)


_REDUCED = (SlotShape.ROW, SlotShape.COL, SlotShape.SCALAR)


def factor_state(p: Program, rng: np.random.Generator, limits: Limits) -> Program | None:
    full = [s for s in p.state if p.slot_shape(s) is SlotShape.FULL]
    options = [(slot, shape) for slot in full for shape in _REDUCED]
    for j in rng.permutation(len(options)):
        slot, shape = options[int(j)]
        shapes = dict(p.slot_shapes) | {slot: shape}
        child = replace(p, origin=None,
                        slot_shapes=tuple((s, shapes[s]) for s in p.state if s in shapes))
        if dsl.check(child).ok:
            return child
    return None


REACH_MUTATIONS = {
    "read_context": read_context,
    "globalize": globalize,
    "clip_global_norm": clip_global_norm,
    "sharpness": sharpness,
    "factor_state": factor_state,
}
