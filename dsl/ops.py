"""The op table: the single source of truth for every operation of the language.

Every pass reads this table: the parser (names and arities), the printer and the LaTeX
renderer (symbols, templates, `SYNTAX`), the checker (kinds), the interpreter and code
generators (torch implementations), the simplifier (sympy forms, both ways) and the
complexity measure (costs). Each backend is a table keyed by this one, and branches on an
op's kind and columns, never on lists of op names: adding an elementwise op is one row here
(plus its tests). `tests/dsl/test_ops.py` checks that every op is complete in every column;
`tests/dsl/test_backend_completeness.py` that every backend knows every op, and that a
backend meeting an op it does not know says so (`UnknownOpError`).

Values and layouts
------------------
A value is either a *scalar* (`lr`, `t`, hyperparameters, constants and anything computed
from scalars only) or a *tensor* of the parameter's shape. The interpreter runs in one of
two layouts, described by `lead`, the number of leading replica axes:

* ``lead == 0``: one parameter; scalars are 0-d tensors, tensors have the parameter's shape.
* ``lead == 1``: R replicas at once; tensors are ``[R, *shape]`` and scalars ``[R, 1, ..., 1]``
  (so a per-replica learning rate broadcasts). Reductions run over the non-replica axes.

Reductions (`norm`, `rms`, `mean`, `dot`) and the matrix ops (`orth`, `row_mean`, `col_mean`)
return a value of their input's shape ("broadcast back"), so every tensor value in a
program has the parameter's shape and ops compose without shape errors.

Matrix view: a tensor of shape ``(d0, d1, ..., dk)`` is seen as the matrix
``d0 x (d1*...*dk)`` (as Muon does for convolution kernels). A 1-D tensor of n entries is seen
as an ``n x 1`` column, so ``row_mean(x) == x``, ``col_mean(x) == mean(x)`` and
``orth(x) == x / norm(x)`` up to the Newton–Schulz approximation. This choice makes the
factored Adafactor estimate reduce exactly to the unfactored one on vectors, as in the paper.

Domains
-------
The language follows IEEE-754 and torch everywhere; no op is "protected". Results outside an
op's domain are NaN or ±inf (``sqrt(-1) = nan``, ``log(0) = -inf``, ``x / 0 = ±inf`` or nan),
and the evaluators score a run that produces them as diverged. This keeps exported optimizers
plain torch and exactly equal to the interpreter.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum, IntEnum

import sympy
import torch

from .model_ops import global_norm, global_sum

__all__ = ["Op", "OpKind", "OPS", "INFIX", "UNARY_MINUS", "Prec", "Infix", "SYNTAX",
           "UnknownOpError", "op_for", "newton_schulz", "matrix_view", "fold_constant"]


class OpKind(str, Enum):
    ELEMENTWISE = "elementwise"
    REDUCTION = "reduction"  # per-tensor reduction over the non-replica axes, broadcast back
    MATRIX = "matrix"  # acts on the matrix view of a tensor, result has the input's shape
    # whole-model reduction over every parameter of the group, a scalar (dsl.model_ops);
    # its torch_fn is ``(lead, xs, params)``: the argument's value and the parameter, for
    # every parameter of the group
    GLOBAL = "global"
    # the gradient at a perturbed point (`grad_at`), computed by the caller's model
    # (dsl.context); its torch_fn is ``(lead, es, params, grad_at)``
    GRADIENT = "gradient"


@dataclass(frozen=True)
class Op:
    """One operation of the language. `torch_fn(lead, *args)` computes it (see module doc);
    `sympy_fn(*args)` gives its exact math; `latex` is a `str.format` template over the
    arguments' LaTeX; `cost` counts towards a program's complexity; `domain` documents the
    behaviour on the op's whole domain; `params` names the arguments and `doc` says in one
    line what the op means (both for people: `optforge ops` lists them).

    An elementwise op is written once, as `torch_expr`: a Python expression over `torch`, a
    `str.format` template over its arguments' code (``"torch.atan({0})"``). Its `torch_fn`
    is that expression, and code generators emit it as it stands, so they agree with the
    interpreter bit for bit. Reductions and matrix ops have no such expression (their
    `torch_fn` reshapes by `lead`); `definition` gives their math in LaTeX, as their
    `sympy_fn` is an opaque function."""

    name: str
    arity: int
    kind: OpKind
    torch_fn: Callable[..., torch.Tensor]
    sympy_fn: Callable[..., sympy.Expr]
    latex: str
    cost: int
    domain: str
    symbol: str | None = None  # infix operator in the surface syntax, if any
    params: tuple[str, ...] = ()  # argument names, `arity` of them
    doc: str = ""  # what it means, in one line
    torch_expr: str | None = None  # elementwise ops: the torch code, over the arguments' code
    definition: str = ""  # LaTeX math of an op whose sympy form is opaque
    # matrix ops: the value on a tensor filled with c (a constant stands for one), or None
    # where it depends on the shape; constant folding reads it
    on_filled: Callable[[float], float | None] | None = None


class UnknownOpError(ValueError):
    """A backend met an op it does not know: a broken program, or an op added to the table
    that the backend cannot express. The message names both."""

    def __init__(self, op: str, backend: str):
        self.op, self.backend = op, backend
        super().__init__(f"{backend}: unknown op {op!r} (not in dsl.ops.OPS, or the {backend} "
                         f"cannot express it)")


def op_for(name: str, backend: str) -> Op:
    """The op called `name`, for `backend`; `UnknownOpError` naming both when there is none."""
    op = OPS.get(name)
    if op is None:
        raise UnknownOpError(name, backend)
    return op


# ---- the surface syntax: one precedence table for the parser, the printer and LaTeX ---------

class Prec(IntEnum):
    """How tightly a written form binds (Python's grammar, which the parser reads): higher
    binds tighter. A function call or a name is an ATOM."""

    ADD = 1
    MUL = 2
    UNARY = 3  # prefix minus
    POW = 4
    ATOM = 5


@dataclass(frozen=True)
class Infix:
    """An infix operator: its precedence, and the loosest operand each side takes without
    parentheses (this encodes associativity: ``a - (b - c)`` needs them, ``(a - b) - c`` not;
    ``**`` is right-associative and its exponent may be a prefix minus, ``x ** -y``)."""

    precedence: Prec
    left: Prec
    right: Prec


SYNTAX: dict[str, Infix] = {
    "+": Infix(Prec.ADD, Prec.ADD, Prec.MUL),
    "-": Infix(Prec.ADD, Prec.ADD, Prec.MUL),
    "*": Infix(Prec.MUL, Prec.MUL, Prec.UNARY),
    "/": Infix(Prec.MUL, Prec.MUL, Prec.UNARY),
    "**": Infix(Prec.POW, Prec.ATOM, Prec.UNARY),
}


# ---- helpers shared by the torch implementations -------------------------------------------

def _reduce_dims(lead: int, x: torch.Tensor) -> tuple[int, ...]:
    return tuple(range(lead, x.dim()))


def _broadcast_reduction(lead: int, x: torch.Tensor, fn) -> torch.Tensor:
    dims = _reduce_dims(lead, x)
    if not dims:  # a scalar: reduction over nothing
        return fn(x, None)
    return fn(x, dims).expand_as(x)


def _sum(x, dims):
    return x if dims is None else x.sum(dim=dims, keepdim=True)


def _mean(x, dims):
    return x if dims is None else x.mean(dim=dims, keepdim=True)


def _norm(x, dims):
    return x.abs() if dims is None else torch.linalg.vector_norm(x, dim=dims, keepdim=True)


def _rms(x, dims):
    return x.abs() if dims is None else x.square().mean(dim=dims, keepdim=True).sqrt()


def _logsumexp(x, dims):
    return x if dims is None else torch.logsumexp(x, dim=dims, keepdim=True)


def matrix_view(lead: int, x: torch.Tensor) -> torch.Tensor:
    """The ``rows x cols`` matrix view of each replica of `x` (see module doc)."""
    shape = x.shape[lead:]
    rows = shape[0] if len(shape) >= 1 else 1
    return x.reshape(*x.shape[:lead], rows, -1)


# Muon's quintic Newton–Schulz coefficients (Jordan et al., 2024).
NS_COEFFS = (3.4445, -4.7750, 2.0315)
NS_STEPS = 5
NS_EPS = 1e-7


def newton_schulz(m: torch.Tensor, steps: int = NS_STEPS) -> torch.Tensor:
    """Approximate orthogonalisation U V^T of each matrix in `m` (``[..., rows, cols]``) by
    Muon's quintic Newton–Schulz iteration, in the input's dtype."""
    a, b, c = NS_COEFFS
    x = m / (torch.linalg.matrix_norm(m, keepdim=True) + NS_EPS)
    transposed = m.shape[-2] > m.shape[-1]
    if transposed:
        x = x.mT
    for _ in range(steps):
        gram = x @ x.mT
        x = a * x + (b * gram + c * gram @ gram) @ x
    return x.mT if transposed else x


def _orth(lead, x):
    return newton_schulz(matrix_view(lead, x)).reshape(x.shape)


def _row_mean(lead, x):
    m = matrix_view(lead, x)
    return m.mean(dim=-1, keepdim=True).expand_as(m).reshape(x.shape)


def _col_mean(lead, x):
    m = matrix_view(lead, x)
    return m.mean(dim=-2, keepdim=True).expand_as(m).reshape(x.shape)


def _opaque(name: str) -> Callable[..., sympy.Expr]:
    f = sympy.Function(name)
    return lambda *args: f(*args)


def _elementwise_fn(name: str, arity: int, expr: str) -> Callable[..., torch.Tensor]:
    """`expr` (a template over the arguments' code) as a function ``(lead, *args)``. The
    template is this table's own text, compiled once at import."""
    params = [f"x{i}" for i in range(arity)]
    source = f"lambda lead, {', '.join(params)}: {expr.format(*params)}"
    return eval(compile(source, f"<op {name}>", "eval"), {"torch": torch})


def _op(name, arity, kind, impl, sympy_fn, latex, cost, domain, symbol=None, *,
        params=(), doc="", definition="", on_filled=None) -> Op:
    """A row of the table. `impl` is the torch expression template of an elementwise op
    (see `Op`), or the function ``(lead, *args)`` of a reduction or matrix op."""
    if isinstance(impl, str):
        return Op(name, arity, kind, _elementwise_fn(name, arity, impl), sympy_fn, latex,
                  cost, domain, symbol, params, doc, impl, definition, on_filled)
    return Op(name, arity, kind, impl, sympy_fn, latex, cost, domain, symbol, params, doc,
              None, definition, on_filled)


E, R, M = OpKind.ELEMENTWISE, OpKind.REDUCTION, OpKind.MATRIX
G = OpKind.GLOBAL


def _grad_at(lead, es, params, grad_at):
    return list(grad_at(es))

_TABLE: tuple[Op, ...] = (
    # arithmetic (infix in the surface syntax)
    _op("add", 2, E, "{0} + {1}", lambda x, y: x + y, "{0} + {1}", 1,
        "all reals; inf + -inf = nan", "+",
        params=("x", "y"), doc="sum"),
    _op("sub", 2, E, "{0} - {1}", lambda x, y: x - y, "{0} - {1}", 1,
        "all reals; inf - inf = nan", "-",
        params=("x", "y"), doc="difference"),
    _op("mul", 2, E, "{0} * {1}", lambda x, y: x * y, "{0} \\, {1}", 1,
        "all reals; 0 * inf = nan", "*",
        params=("x", "y"), doc="product"),
    _op("div", 2, E, "{0} / {1}", lambda x, y: x / y, "\\frac{{{0}}}{{{1}}}", 1,
        "x / 0 = ±inf for x != 0, 0 / 0 = nan", "/",
        params=("x", "y"), doc="quotient"),
    _op("pow", 2, E, "torch.pow({0}, {1})", lambda x, y: x**y, "{0}^{{{1}}}", 2,
        "torch.pow: a negative base with a non-integer exponent gives nan; 0 ** -1 = inf", "**",
        params=("x", "y"), doc="x to the power y"),
    # unary elementwise (`{0}.abs()`, not `torch.abs({0})`: the form the interpreter always
    # had; both are the same kernel)
    _op("neg", 1, E, "-{0}", lambda x: -x, "-{0}", 1, "all reals",
        params=("x",), doc="negation, also written -x"),
    _op("abs", 1, E, "{0}.abs()", sympy.Abs, "\\left|{0}\\right|", 1, "all reals",
        params=("x",), doc="absolute value"),
    _op("sign", 1, E, "torch.sign({0})", sympy.sign, "\\operatorname{{sign}}({0})", 1,
        "-1, 0 or 1; sign(0) = 0, and sign(nan) = 0 (torch's sign: a nan makes no step)",
        params=("x",), doc="sign: -1, 0 or 1"),
    _op("sqrt", 1, E, "torch.sqrt({0})", sympy.sqrt, "\\sqrt{{{0}}}", 2,
        "x >= 0; sqrt of a negative number is nan",
        params=("x",), doc="square root"),
    _op("rsqrt", 1, E, "torch.rsqrt({0})", lambda x: 1 / sympy.sqrt(x),
        "\\frac{{1}}{{\\sqrt{{{0}}}}}", 2, "x > 0; rsqrt(0) = inf, negative x gives nan",
        params=("x",), doc="reciprocal square root, 1 / sqrt(x)"),
    _op("square", 1, E, "{0} * {0}", lambda x: x**2, "{0}^{{2}}", 1, "all reals",
        params=("x",), doc="x * x"),
    _op("exp", 1, E, "torch.exp({0})", sympy.exp, "e^{{{0}}}", 3,
        "all reals; overflows to inf above about 709 (float64) or 88 (float32)",
        params=("x",), doc="exponential, e ** x"),
    _op("log", 1, E, "torch.log({0})", sympy.log, "\\log\\left({0}\\right)", 3,
        "x > 0; log(0) = -inf, negative x gives nan",
        params=("x",), doc="natural logarithm"),
    _op("tanh", 1, E, "torch.tanh({0})", sympy.tanh, "\\tanh\\left({0}\\right)", 3,
        "all reals",
        params=("x",), doc="hyperbolic tangent"),
    _op("arctan", 1, E, "torch.atan({0})", sympy.atan, "\\arctan\\left({0}\\right)", 3,
        "all reals",
        params=("x",), doc="arctangent"),
    _op("atan2", 2, E, "torch.atan2({0}, {1})", sympy.atan2,
        "\\operatorname{{atan2}}({0}, {1})", 3,
        "all reals: the angle of the point (x, y) in (-pi, pi]; atan2(0, 0) = 0, "
        "atan2(0, -0.0) = pi; nan in either argument gives nan",
        params=("y", "x"),
        doc="the angle of the point (x, y): arctan(y / x) in the right quadrant"),
    _op("clip", 3, E, "torch.minimum(torch.maximum({0}, {1}), {2})",
        lambda x, lo, hi: sympy.Min(sympy.Max(x, lo), hi),
        "\\operatorname{{clip}}({0}, {1}, {2})", 2,
        "min(max(x, lo), hi); when lo > hi the result is hi; nan in any argument gives nan",
        params=("x", "lo", "hi"), doc="x clipped to [lo, hi]"),
    _op("min", 2, E, "torch.minimum({0}, {1})", sympy.Min,
        "\\min({0}, {1})", 1, "elementwise; nan in either argument gives nan",
        params=("x", "y"), doc="the smaller of x and y"),
    _op("max", 2, E, "torch.maximum({0}, {1})", sympy.Max,
        "\\max({0}, {1})", 1, "elementwise; nan in either argument gives nan",
        params=("x", "y"), doc="the larger of x and y"),
    # (1 - a) * x + a * y, computed as torch.optim does its moving averages
    # (`m.lerp_(g, 1 - beta)`), so seeds and exports agree with torch bit for bit
    _op("interp", 3, E, "torch.lerp({1}, {0}, 1 - {2})", lambda x, y, a: (1 - a) * x + a * y,
        "\\operatorname{{interp}}({0}, {1}, {2})", 2,
        "(1 - a) * x + a * y for all reals (a need not lie in [0, 1])",
        params=("x", "y", "a"), doc="(1 - a) * x + a * y: a moving average, decay a"),
    # per-tensor reductions, broadcast back to the input's shape
    _op("norm", 1, R, lambda lead, x: _broadcast_reduction(lead, x, _norm), _opaque("norm"),
        "\\lVert {0} \\rVert", 3, "L2 norm over the tensor; norm of a scalar is abs",
        params=("x",), doc="L2 norm of the tensor",
        definition=r"\sqrt{\textstyle\sum_i x_i^2}"),
    _op("rms", 1, R, lambda lead, x: _broadcast_reduction(lead, x, _rms), _opaque("rms"),
        "\\operatorname{{rms}}({0})", 3,
        "sqrt(mean(x ** 2)) over the tensor; rms of a scalar is abs",
        params=("x",), doc="root mean square of the tensor",
        definition=r"\sqrt{\tfrac{1}{n} \textstyle\sum_i x_i^2}"),
    _op("mean", 1, R, lambda lead, x: _broadcast_reduction(lead, x, _mean), _opaque("mean"),
        "\\overline{{{0}}}", 3, "mean over the tensor; mean of a scalar is itself",
        params=("x",), doc="mean of the tensor",
        definition=r"\tfrac{1}{n} \textstyle\sum_i x_i"),
    _op("dot", 2, R, lambda lead, x, y: _broadcast_reduction(lead, x * y, _sum), _opaque("dot"),
        "\\langle {0}, {1} \\rangle", 3, "sum(x * y) over the tensor",
        params=("x", "y"), doc="inner product of two tensors, sum(x * y)",
        definition=r"\textstyle\sum_i x_i y_i"),
    _op("logsumexp", 1, R, lambda lead, x: _broadcast_reduction(lead, x, _logsumexp),
        _opaque("logsumexp"), "\\operatorname{{logsumexp}}({0})", 3,
        "log(sum(exp(x))) over the tensor, computed without overflow (torch.logsumexp); "
        "logsumexp of a scalar is itself; -inf when every entry is -inf",
        params=("x",), doc="log of the sum of exp over the tensor: a smooth maximum",
        definition=r"\log \textstyle\sum_i e^{x_i}"),
    # matrix ops on the matrix view (see module doc)
    _op("orth", 1, M, _orth, _opaque("orth"), "\\operatorname{{orth}}({0})", 8,
        "Newton–Schulz (5 quintic steps, Muon's coefficients) towards U V^T of the matrix "
        "view, after scaling by 1 / (norm + 1e-7); orth(0) = 0; a 1-D x gives about "
        "x / norm(x)",
        params=("x",), doc="orthogonalised matrix U V^T, by Newton-Schulz (Muon)",
        definition=r"U V^\top \text{ where } X = U \Sigma V^\top",
        on_filled=lambda c: c if c == 0.0 else None),  # orth(0) = 0; else shape-dependent
    _op("row_mean", 1, M, _row_mean, _opaque("row_mean"),
        "\\operatorname{{rowmean}}({0})", 3,
        "mean of each row of the matrix view, broadcast along the row; identity on 1-D",
        params=("x",), doc="mean of each row of the matrix view",
        definition=r"\tfrac{1}{c} \textstyle\sum_j X_{ij} \text{ in row } i",
        on_filled=lambda c: c),
    _op("col_mean", 1, M, _col_mean, _opaque("col_mean"),
        "\\operatorname{{colmean}}({0})", 3,
        "mean of each column of the matrix view, broadcast down the column; mean on 1-D",
        params=("x",), doc="mean of each column of the matrix view",
        definition=r"\tfrac{1}{r} \textstyle\sum_i X_{ij} \text{ in column } j",
        on_filled=lambda c: c),
    # whole-model ops: over every parameter of the group (dsl.model_ops, dsl.context)
    _op("global_sum", 1, G, global_sum, _opaque("global_sum"),
        "\\textstyle\\sum_{{\\Theta}} {0}", 3,
        "sum over every entry of every parameter of the group; a scalar argument counts once "
        "per entry; a scalar",
        params=("x",), doc="sum of x over every parameter of the group (a scalar)",
        definition=r"\textstyle\sum_{p \in \Theta} \sum_i x_{p,i}"),
    _op("global_norm", 1, G, global_norm, _opaque("global_norm"),
        "\\lVert {0} \\rVert_{{\\Theta}}", 3,
        "L2 norm over every entry of every parameter of the group, as the norm of the "
        "per-tensor norms (torch's clip_grad_norm_); a scalar",
        params=("x",), doc="L2 norm of x over every parameter of the group (a scalar)",
        definition=r"\sqrt{\textstyle\sum_{p \in \Theta} \sum_i x_{p,i}^2}"),
    _op("grad_at", 1, OpKind.GRADIENT, _grad_at, _opaque("grad_at"),
        "\\nabla f(w + {0})", 10,
        "the gradient of this step's minibatch loss at w + e, e evaluated for every parameter "
        "(one more forward and backward pass); nan or inf where the loss there is",
        params=("e",), doc="the gradient at the perturbed point w + e (SAM)",
        definition=r"\nabla_w f(w + e)"),
)

OPS: dict[str, Op] = {op.name: op for op in _TABLE}
INFIX: dict[str, str] = {op.symbol: op.name for op in _TABLE if op.symbol}
UNARY_MINUS = "neg"

assert len(OPS) == len(_TABLE), "duplicate op name"


def fold_constant(op: str, args: tuple[float, ...] | list[float]) -> float | None:
    """The value of `op` applied to constants, computed in float64 by the op's own torch
    implementation, or None when that is not a finite number or `op` needs a tensor."""
    impl = op_for(op, "constant folder")
    if impl.kind in (OpKind.GLOBAL, OpKind.GRADIENT):  # they depend on the model
        return None
    if impl.kind is OpKind.MATRIX:  # a constant stands for a tensor filled with it
        return impl.on_filled(*args) if impl.on_filled is not None else None
    with torch.no_grad():
        value = float(impl.torch_fn(0, *(torch.tensor(a, dtype=torch.float64) for a in args)))
    return value if value == value and abs(value) != float("inf") else None
