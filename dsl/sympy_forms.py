"""The op table as the simplifier's sympy sees it, both ways, derived from the ops' `sympy_fn`.

Forward, `sympy_form(op)` is the op's `sympy_fn`, except for the ops in `OPAQUE`, which go
to sympy as an uninterpreted function (expanding them never shortens a rule). Backward,
`forms()` reads what each op's form is when applied to symbols ``x0, x1, ...``:

* a function applied to exactly those symbols (``Abs(x0)``, ``atan2(x0, x1)``,
  ``Min(x0, x1)``, the opaque ``norm(x0)``) maps that sympy function back to the op
  (`SympyForms.functions`); an n-ary lattice function (``Min(a, b, c)``) becomes a chain;
* a power of the argument by a number (``x0**2``, ``sqrt(x0) = x0**(1/2)``) maps that
  exponent back to the op (`SympyForms.powers`);
* how the form multiplies out (`SympyForms.shapes`: a sum, a product, a power, or a function
  whose arguments sympy never expands), which the expansion bound of `dsl.simplify_bounds`
  estimates with.

sympy writes arithmetic in its own canonical forms (``Add``, ``Mul``, ``Pow``); those come
back as the infix ops of `ARITHMETIC`. Everything else is read from the table: an op added
to it reaches the simplifier in both directions with no edit here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

import sympy

from .context import SHAPE_INPUTS
from .ops import OPS, Op, OpKind, op_for

__all__ = ["ARITHMETIC", "OPAQUE", "Shape", "SympyForms", "context_symbols", "forms",
           "sympy_form"]

# Kept whole: expanding interp's (1 - a) * x + a * y never shortens a rule.
OPAQUE = frozenset({"interp"})
# The ops sympy's canonical arithmetic (Add, Mul, Pow) is read back into by
# `dsl.simplify_sympy` (checked against the table by tests/dsl/test_backend_completeness.py).
ARITHMETIC = frozenset({"add", "sub", "neg", "mul", "div", "pow"})


def sympy_form(name: str) -> Callable[..., sympy.Expr]:
    """The sympy function the simplifier applies for op `name`."""
    op = op_for(name, "simplifier")
    return sympy.Function(name) if name in OPAQUE else op.sympy_fn


def context_symbols() -> dict[str, sympy.Symbol]:
    """The context inputs (`dsl.context`) as sympy symbols, by name: the loss and the
    curvature real, the shape scalars positive integers."""
    symbols = {name: sympy.Symbol(name, positive=True, integer=True) for name in SHAPE_INPUTS}
    symbols.update({name: sympy.Symbol(name, real=True) for name in ("loss", "hess")})
    return symbols


class Shape(str, Enum):
    """How an op's form multiplies out (for the expansion bound)."""

    SUM = "sum"  # terms add up: x + y, x - y
    PRODUCT = "product"  # terms multiply: x * y, x / y, -x
    POWER = "power"  # the first argument to a constant integer power >= 2 (square)
    POWER_OF_ARG = "power of an argument"  # x ** y: the exponent is argument 1
    FUNCTION = "function"  # never multiplied out (sqrt, exp, min, norm, ...)


@dataclass(frozen=True)
class SympyForms:
    functions: dict[object, str]  # sympy function -> op
    powers: dict[sympy.Expr, str]  # exponent k of x ** k -> unary op
    shapes: dict[str, tuple[Shape, int]]  # op -> (shape, its exponent for POWER)


def forms() -> SympyForms:
    """The reverse map and shapes of the current op table (rebuilt when the table changes)."""
    ops = tuple(OPS.values())
    built = _BUILT.get("table")
    if built is None or len(built[0]) != len(ops) or any(
            a is not b for a, b in zip(built[0], ops)):
        built = _BUILT["table"] = (ops, _forms(ops))
    return built[1]


# the forms of the last table seen, with the table's ops (kept, so that none is a new one)
_BUILT: dict[str, tuple[tuple[Op, ...], SympyForms]] = {}


def _forms(ops: tuple[Op, ...]) -> SympyForms:
    functions: dict[object, str] = {}
    powers: dict[sympy.Expr, str] = {}
    shapes: dict[str, tuple[Shape, int]] = {}
    for op in ops:
        xs = sympy.symbols(f"x0:{op.arity}", real=True)
        e = (sympy.Function(op.name) if op.name in OPAQUE else op.sympy_fn)(*xs)
        shapes[op.name] = _shape(e, xs) if op.kind is OpKind.ELEMENTWISE else (
            Shape.FUNCTION, 0)
        if isinstance(e, (sympy.Add, sympy.Mul, sympy.Pow)):
            if (isinstance(e, sympy.Pow) and op.arity == 1 and e.base == xs[0]
                    and e.exp.is_number):
                powers.setdefault(e.exp, op.name)
        elif e.args == tuple(xs):
            functions.setdefault(e.func, op.name)
    return SympyForms(functions, powers, shapes)


def _shape(e: sympy.Expr, xs) -> tuple[Shape, int]:
    if isinstance(e, sympy.Add):
        return Shape.SUM, 0
    if isinstance(e, sympy.Mul):
        return Shape.PRODUCT, 0
    if isinstance(e, sympy.Pow) and e.base == xs[0]:
        if e.exp.is_Integer and e.exp >= 2:
            return Shape.POWER, int(e.exp)
        if len(xs) > 1 and e.exp == xs[1]:
            return Shape.POWER_OF_ARG, 0
    return Shape.FUNCTION, 0
