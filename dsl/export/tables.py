"""The code of each op in each export path: one table per path, keyed by the op table.

Like tinygrad's `code_for_op`, a table maps an op to a function from its arguments' code to
the op's code. The paths of an exported module (see `dsl.export`):

* ``pure``: expressions over tensors, scalars as 0-d tensors. The scalar section
  (`_scalars`, float64) and the compiled path (`_rule`) are written with it. `PURE` holds
  the elementwise ops; the reductions and matrix ops of every path call a math helper of
  `runtime_ops` (`HELPERS`).
* ``per-parameter``: eager code on one tensor, scalars as Python floats: a fresh value, or the
  result written into a dying buffer (``x.op_()``, ``torch.op(..., out=d)``): `PER_PARAM`.
* ``foreach``: eager code on lists, ``torch._foreach_*``: `FOREACH`. An entry that gives no
  code (None) falls back to a list comprehension over the per-parameter form.

Which table an op reads is decided by its kind (`OpKind`): elementwise ops by the path's
table, reductions and matrix ops by `HELPERS`. The ops `dsl.rewrites` lowers to (``lerp``,
``axpy``, ``clamp_min``, ``clamp_max``) are elementwise. `interp` and `clip` never reach a
table: the analysis lowers them by their rules (`LOWERED_BY_RULE`). The whole-group ops
(`WHOLE_GROUP`: global_sum, global_norm, grad_at) have no per-tensor code: the staged
optimizer (`dsl.export.group`) runs them between stages. An op without code in a path is an
`ExportError` naming both; `missing_forms` lists every gap (a test keeps it empty).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..ops import OPS, Op, OpKind
from ..rewrites import LOWERED, Node, commutative_ops, rule
from .names import ExportError

PATHS = ("scalar", "pure", "per-parameter", "foreach")

WHOLE_GROUP = (OpKind.GLOBAL, OpKind.GRADIENT)
"""Kinds of the ops that no per-tensor table holds: the staged optimizer of
`dsl.export.group` computes them once per param group, between the stages."""

LOWERED_BY_RULE = {"interp": "interp_as_lerp", "clip": "clip_is_min_max"}
"""Ops the analysis rewrites by a rule of `dsl.rewrites` before any table is read."""

EAGER_RULES = ("min_scalar_is_clamp", "max_scalar_is_clamp", "axpy", "axpy_sub")
"""Rules the eager paths apply to the tensor section (see `lowering`)."""


@dataclass(frozen=True)
class Helper:
    """A reduction or matrix op as a call of a `runtime_ops` helper on one tensor. `reduced`:
    its result keeps a reduced (broadcastable) shape; `combine` makes that one tensor of the
    op's arguments (``dot``: the product)."""

    name: str
    reduced: bool
    combine: Callable[..., str] | None = None


HELPERS: dict[str, Helper] = {
    "norm": Helper("_norm", True),
    "rms": Helper("_rms", True),
    "logsumexp": Helper("_logsumexp", True),
    "mean": Helper("_mean", True),
    "dot": Helper("_sum", True, lambda x, y: f"{x} * {y}"),
    "orth": Helper("_orth", False),
    "row_mean": Helper("_row_mean", True),
    "col_mean": Helper("_col_mean", True),
}


def helper_call(op: str, args: list[str], small: list[bool], shape: str = "w.shape") -> str:
    """A reduction or matrix op as a helper call; `small[i]` marks a tensor argument of reduced
    shape, expanded to `shape` first (helpers reduce over the tensor they are given)."""
    h = HELPERS[op]
    if h.combine is not None:
        inner = h.combine(*args)
        return f"{h.name}(({inner}).expand({shape}))" if any(small) else f"{h.name}({inner})"
    return f"{h.name}({args[0]}.expand({shape}))" if small[0] else f"{h.name}({args[0]})"


# ---- pure: tensors and 0-d tensors ----------------------------------------------------------

def _call(fn: str) -> Callable[..., str]:
    return lambda *a: f"torch.{fn}({', '.join(a)})"


def _infix(symbol: str) -> Callable[[str, str], str]:
    return lambda x, y: f"{x} {symbol} {y}"


_ONE_CALL = re.compile(r"torch\.(\w+)\((.*)\)")


def _one_torch_function(op: Op) -> str | None:
    """``fn`` when the op table writes elementwise `op` as ``torch.fn({0}, {1}, ...)``, its
    arguments in order; else None."""
    found = _ONE_CALL.fullmatch(op.torch_expr or "")
    in_order = ", ".join(f"{{{i}}}" for i in range(op.arity))
    return found.group(1) if found and found.group(2) == in_order else None


TORCH_FUNCTIONS = {"neg": "neg", "abs": "abs",  # the op table writes these as -x and x.abs()
                   **{name: fn for name, op in OPS.items()
                      if op.kind is OpKind.ELEMENTWISE and (fn := _one_torch_function(op))}}
"""Elementwise ops that are one torch function of tensors, ``torch.<fn>``, read off the op
table's `torch_expr` (a new op written ``torch.fn({0}, ...)`` needs nothing here). Their
code in every path: pure ``torch.fn(x, ...)``; per parameter the same (a number argument as
a 0-d tensor), in place ``d.fn_(...)`` or ``out=d``; foreach ``torch._foreach_fn`` where
torch has it (all arguments tensors), else the per-parameter form for each tensor. The
tables below list these first, so an op with a form of its own there (pow, min, max: the
clamp rules) keeps it."""

PURE: dict[str, Callable[..., str]] = {
    **{op: _call(fn) for op, fn in TORCH_FUNCTIONS.items()},
    "add": _infix("+"), "sub": _infix("-"), "mul": _infix("*"), "div": _infix("/"),
    "pow": _call("pow"),
    "square": lambda x: f"{x} * {x}",
    "min": _call("minimum"), "max": _call("maximum"),
    "lerp": _call("lerp"),
}


# ---- per parameter: Python floats for scalars; in-place where a buffer dies -----------------

@dataclass(frozen=True)
class Eager:
    """`fresh(args, tens)`: an expression for a new value; `into(args, tens, d)`: a statement
    writing the value into buffer `d` (an argument's or a state's), or None where the path
    has no such form. `tens[i]` says argument i is a tensor (else a number)."""

    fresh: Callable[[list[str], list[bool]], str | None]
    into: Callable[[list[str], list[bool], str], str | None]


def _tensors(a: list[str], t: list[bool]) -> list[str]:
    """The arguments, a number as a 0-d tensor like the first tensor argument."""
    like = next(x for x, is_tensor in zip(a, t) if is_tensor)
    return [x if is_tensor else f"_scalar_like({x}, {like}, True)" for x, is_tensor in zip(a, t)]


def _pp_function(fn: str) -> Eager:
    def into(a: list[str], t: list[bool], d: str) -> str:
        args = _tensors(a, t)
        if d == a[0]:
            return f"{d}.{fn}_({', '.join(args[1:])})"
        return f"torch.{fn}({', '.join(args)}, out={d})"
    return Eager(lambda a, t: f"torch.{fn}({', '.join(_tensors(a, t))})", into)


def _pp_method(fn: str, fresh: Callable[[list[str], list[bool]], str]) -> Eager:
    """``d.fn_(y)`` when `d` is the first argument, else ``torch.fn(x, y, out=d)``."""
    return Eager(fresh, lambda a, t, d: (f"{d}.{fn}_({a[1]})" if d == a[0] and t[0]
                                         else f"torch.{fn}({a[0]}, {a[1]}, out={d})"))


def _pp_div_fresh(a: list[str], t: list[bool]) -> str:
    if t[0]:
        return f"{a[0]} / {a[1]}"
    # not `number / tensor`: torch computes that as reciprocal(tensor) * number
    return f"torch.div(_scalar_like({a[0]}, {a[1]}), {a[1]})"


def _pp_div_into(a: list[str], t: list[bool], d: str) -> str:
    if t[0]:
        return f"{d}.div_({a[1]})" if d == a[0] else f"torch.div({a[0]}, {a[1]}, out={d})"
    return f"torch.div(_scalar_like({a[0]}, {a[1]}), {a[1]}, out={d})"


def _pp_lerp_fresh(a: list[str], t: list[bool]) -> str:
    like = next(x for x, is_tensor in zip(a, t) if is_tensor)
    start = a[0] if t[0] else f"_scalar_like({a[0]}, {like}, True)"
    end = a[1] if t[1] else f"_scalar_like({a[1]}, {like}, True)"
    return f"torch.lerp({start}, {end}, {a[2]})"


def _pp_clamp(bound: str) -> Eager:
    return Eager(lambda a, t: f"torch.clamp({a[0]}, {bound}={a[1]})",
                 lambda a, t, d: (f"{d}.clamp_({bound}={a[1]})" if d == a[0]
                                  else f"torch.clamp({a[0]}, {bound}={a[1]}, out={d})"))


PER_PARAM: dict[str, Eager] = {
    **{op: _pp_function(fn) for op, fn in TORCH_FUNCTIONS.items()},
    # add and mul arrive with a tensor first (the lowering commutes them)
    "add": _pp_method("add", lambda a, t: f"{a[0]} + {a[1]}"),
    "mul": _pp_method("mul", lambda a, t: f"{a[0]} * {a[1]}"),
    "sub": Eager(lambda a, t: f"{a[0]} - {a[1]}",  # number - tensor is torch.rsub: exact
                 lambda a, t, d: (f"torch.sub({a[1]}, {a[0]}, out={d}).neg_()" if not t[0]
                                  else f"{d}.sub_({a[1]})" if d == a[0]
                                  else f"torch.sub({a[0]}, {a[1]}, out={d})")),
    "div": Eager(_pp_div_fresh, _pp_div_into),
    "pow": _pp_method("pow", lambda a, t: f"torch.pow({a[0]}, {a[1]})"),
    "square": Eager(lambda a, t: f"{a[0]} * {a[0]}",
                    lambda a, t, d: (f"{d}.mul_({d})" if d == a[0]
                                     else f"torch.mul({a[0]}, {a[0]}, out={d})")),
    # min and max of two tensors; against a scalar they arrive as clamp_max / clamp_min
    "min": Eager(lambda a, t: f"torch.minimum({a[0]}, {a[1]})",
                 lambda a, t, d: f"torch.minimum({a[0]}, {a[1]}, out={d})"),
    "max": Eager(lambda a, t: f"torch.maximum({a[0]}, {a[1]})",
                 lambda a, t, d: f"torch.maximum({a[0]}, {a[1]}, out={d})"),
    "clamp_max": _pp_clamp("max"),
    "clamp_min": _pp_clamp("min"),
    "axpy": Eager(lambda a, t: f"torch.add({a[0]}, {a[1]}, alpha={a[2]})",
                  lambda a, t, d: (f"{d}.add_({a[1]}, alpha={a[2]})" if d == a[0]
                                   else f"torch.add({a[0]}, {a[1]}, alpha={a[2]}, out={d})")),
    "lerp": Eager(_pp_lerp_fresh,
                  lambda a, t, d: (f"{d}.lerp_({a[1]}, {a[2]})" if t[0] and t[1] and d == a[0]
                                   else _pp_lerp_fresh(a, t)[:-1] + f", out={d})")),
}


# ---- foreach: torch._foreach_* over lists; in place into the first operand only -------------

_COMMUTATIVE = commutative_ops()


def _fe(fn: str, op: str = "") -> Eager:
    """``torch._foreach_fn(x, ...)``; in place ``torch._foreach_fn_(d, ...)`` when `d` is the
    first operand, or the second where `op` commutes (`dsl.rewrites`)."""
    def into(a: list[str], t: list[bool], d: str) -> str | None:
        if d == a[0]:
            return f"torch._foreach_{fn}_({', '.join(a)})"
        if op in _COMMUTATIVE and len(a) == 2 and d == a[1]:
            return f"torch._foreach_{fn}_({d}, {a[0]})"
        return None
    return Eager(lambda a, t: f"torch._foreach_{fn}({', '.join(a)})", into)


def _fe_function(fn: str) -> Eager:
    """A `TORCH_FUNCTIONS` op in the foreach path: ``torch._foreach_fn`` on lists only."""
    if not hasattr(torch, f"_foreach_{fn}"):
        return Eager(lambda a, t: None, lambda a, t, d: None)
    plain = _fe(fn)
    return Eager(lambda a, t: plain.fresh(a, t) if all(t) else None,
                 lambda a, t, d: plain.into(a, t, d) if all(t) else None)


def _fe_sub_into(a: list[str], t: list[bool], d: str) -> str | None:
    if t[0]:
        return f"torch._foreach_sub_({d}, {a[1]})" if d == a[0] else None
    return f"torch._foreach_neg_({d})\ntorch._foreach_add_({d}, {a[0]})" if d == a[1] else None


FOREACH: dict[str, Eager] = {
    **{op: _fe_function(fn) for op, fn in TORCH_FUNCTIONS.items()},
    "add": _fe("add", "add"),
    "mul": _fe("mul", "mul"),
    "sub": Eager(lambda a, t: (f"torch._foreach_sub({a[0]}, {a[1]})" if t[0] else
                               f"torch._foreach_add(torch._foreach_neg({a[1]}), {a[0]})"),
                 _fe_sub_into),
    "div": Eager(lambda a, t: f"torch._foreach_div({a[0]}, {a[1]})" if t[0] else None,
                 lambda a, t, d: f"torch._foreach_div_({d}, {a[1]})" if d == a[0] else None),
    "pow": _fe("pow"),
    "square": Eager(lambda a, t: f"torch._foreach_mul({a[0]}, {a[0]})",
                    lambda a, t, d: f"torch._foreach_mul_({d}, {d})" if d == a[0] else None),
    "min": _fe("minimum", "min"),
    "max": _fe("maximum", "max"),
    "clamp_max": _fe("clamp_max"),
    "clamp_min": _fe("clamp_min"),
    "axpy": Eager(lambda a, t: f"torch._foreach_add({a[0]}, {a[1]}, alpha={a[2]})",
                  lambda a, t, d: (f"torch._foreach_add_({d}, {a[1]}, alpha={a[2]})"
                                   if d == a[0] else None)),
    "lerp": Eager(lambda a, t: f"torch._foreach_lerp({', '.join(a)})" if t[0] and t[1] else None,
                  lambda a, t, d: (f"torch._foreach_lerp_({', '.join(a)})"
                                   if d == a[0] and t[1] else None)),
}

_TABLES = {"scalar": PURE, "pure": PURE, "per-parameter": PER_PARAM, "foreach": FOREACH}


def is_elementwise(op: str) -> bool:
    """Ops of kind elementwise, and the lowered torch forms of `dsl.rewrites`."""
    return op in LOWERED or OPS[op].kind is OpKind.ELEMENTWISE


def form(path: str, op: str):
    """The entry of `op` in `path`'s table: a `Helper` for reductions and matrix ops, else the
    path's code. An op without one is an ExportError naming the op and the path."""
    if op in LOWERED_BY_RULE:
        raise ExportError(f"op {op!r} reached the {path} path of the export unlowered: the "
                          f"analysis rewrites it by rule {LOWERED_BY_RULE[op]!r}")
    if op not in LOWERED and op not in OPS:
        raise ExportError(f"unknown op {op!r} in the {path} path of the export")
    if op in OPS and OPS[op].kind in WHOLE_GROUP:
        raise ExportError(f"{op}() is a whole-group op: it has no code in the {path} path of "
                          f"the export, which runs per tensor; the staged optimizer "
                          f"(dsl/export/group.py) computes it between stages")
    if not is_elementwise(op):
        if OPS[op].kind is OpKind.MATRIX and path == "scalar":
            raise ExportError(f"{op}() of a scalar has no code in the scalar path of the "
                              f"export (the checker refuses it)")
        entry = HELPERS.get(op)
    else:
        entry = _TABLES[path].get(op)
    if entry is None:
        raise ExportError(f"the {path} path of the export has no code for op {op!r} "
                          f"(add it to dsl/export/tables.py)")
    return entry


def _rhs_ops(term) -> set[str]:
    if isinstance(term, Node):
        return {term.op}.union(*(_rhs_ops(a) for a in term.args))
    return set()


def missing_forms() -> list[tuple[str, str]]:
    """Every (path, op) that an export could need and no table covers: the ops of the table,
    what the lowering rules produce, in every path they can reach."""
    needed = {p: set() for p in PATHS}
    for op in OPS:
        if op in LOWERED_BY_RULE:
            produced = _rhs_ops(rule(LOWERED_BY_RULE[op]).rhs)
            for p in PATHS:
                needed[p] |= produced
        elif OPS[op].kind not in WHOLE_GROUP:
            for p in PATHS:
                if not (p == "scalar" and OPS[op].kind is OpKind.MATRIX):
                    needed[p].add(op)
    for name in EAGER_RULES:
        for p in ("per-parameter", "foreach"):
            needed[p] |= _rhs_ops(rule(name).rhs)
    gaps = []
    for p in PATHS:
        for op in sorted(needed[p]):
            try:
                form(p, op)
            except ExportError:
                gaps.append((p, op))
    return gaps
