"""Every backend knows every op of the table, and one that meets an op it does not know says
which op and which backend.

The backends are tables keyed by `dsl.ops.OPS` (the interpreter, the evaluator kernel, the
printer and parser, LaTeX, the simplifier's sympy forms both ways, the checker, the
mutations). Three kinds of test:

* every op of OPS goes through every backend, and agrees with the interpreter;
* per-backend tables keyed by op name hold only ops of the table;
* a new op added as one row of the table (an elementwise binary op like atan2, a reduction
  like logsumexp) reaches every backend with no other edit.
"""

from __future__ import annotations

import math

import pytest
import sympy
import torch
from optforge.dsl import kernel, ops, printer
from optforge.dsl.checker import complexity
from optforge.dsl.context import StepContext
from optforge.dsl.ir import Program, Stmt
from optforge.dsl.kernel import compile_kernel
from optforge.dsl.latex import latex_expr, to_latex
from optforge.dsl.needs import needs
from optforge.dsl.ops import INFIX, OPS, SYNTAX, OpKind, UnknownOpError
from optforge.dsl.parse_syntax import _OPERATOR_TEXT
from optforge.dsl.printer import Node, format_program
from optforge.dsl.simplify_sympy import _cost, _from_sympy, _to_sympy
from optforge.dsl.sympy_forms import ARITHMETIC, OPAQUE, forms, sympy_form
from optforge.search import mutations

from optforge import dsl


def _rule(name: str, arity: int) -> str:
    """A rule applying op `name` to the gradient and the parameter (a tensor first: matrix
    ops need one)."""
    args = ", ".join(["g", "w", "g"][:arity])
    return f"def r(w, g, lr, t):\n    return lr * {name}({args})\n"


def _run_both(p: Program) -> None:
    """The kernel agrees with the interpreter bit for bit, on 3 replicas of a 4x3 tensor."""
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(3, 4, 3, generator=gen, dtype=torch.float64)
    g = torch.randn(3, 4, 3, generator=gen, dtype=torch.float64)
    lr = torch.tensor([0.1, 0.2, 0.3], dtype=torch.float64)
    ctx = None
    if needs(p):  # grad_at: a gradient at the perturbed point of a quadratic
        ctx = StepContext(grad_at=lambda es: [2.0 * (w + e) for e in es])
    ref, _ = dsl.run_step(p, w, g, lr, 2, (), lead=1, context=ctx)
    kernel_fn = compile_kernel(p)
    got, _ = kernel_fn(w, g, lr, 2, ()) if ctx is None else \
        kernel_fn(w, g, lr, 2, (), context=ctx)
    assert torch.equal(torch.nan_to_num(ref, 7.0), torch.nan_to_num(got, 7.0))


# ---- every op through every backend ----------------------------------------------------------

@pytest.mark.parametrize("name", sorted(OPS))
def test_every_op_goes_through_every_backend(name):
    op = OPS[name]
    p = dsl.parse(_rule(name, op.arity))
    assert p.body[0].op == name
    assert dsl.parse(format_program(p)) == p  # printer and parser
    assert complexity(p) >= op.cost  # checker
    assert "\\begin{aligned}" in to_latex(p)
    # sympy, both ways: the form reads back into the language, to the same sympy form
    xs = sympy.symbols(f"x0:{op.arity}", real=True)
    symbols = {str(x): x for x in xs}
    form = sympy_form(name)(*xs)
    back = _from_sympy(form, symbols)
    assert back is not None, f"the simplifier cannot read {name}'s sympy form back"
    assert _to_sympy(back, dict(symbols)) == form
    # mutations can draw it (change_op, insert)
    assert name in mutations._BY_ARITY[op.arity] and name in mutations._ALL_OPS
    _run_both(p)  # interpreter and kernel


@pytest.mark.parametrize("name", sorted(OPS))
def test_every_op_renders_in_latex_with_its_arguments(name):
    op = OPS[name]
    tree = Node(name, tuple(Node("add", ("a", f"b{i}")) for i in range(op.arity)))
    text = latex_expr(tree)
    assert all(f"b_{{{i}}}" in text for i in range(op.arity))


def test_every_infix_op_has_one_precedence_and_python_syntax():
    assert set(SYNTAX) == set(INFIX)
    assert set(INFIX) <= set(_OPERATOR_TEXT.values())  # the parser reads each symbol


def test_printer_and_latex_share_the_precedence_table():
    # a - (b - c) and (a ** b) ** c need parentheses in both; (a - b) - c in neither
    for tree, text in [(Node("sub", ("a", Node("sub", ("b", "c")))), "a - (b - c)"),
                       (Node("sub", (Node("sub", ("a", "b")), "c")), "a - b - c"),
                       (Node("pow", (Node("pow", ("a", "b")), "c")), "(a ** b) ** c"),
                       (Node("pow", ("a", Node("neg", ("b",)))), "a ** -b")]:
        assert printer.format_expr(tree) == text
    assert latex_expr(Node("sub", ("a", Node("sub", ("b", "c"))))) == \
        "a - \\left(b - c\\right)"
    assert latex_expr(Node("sub", (Node("sub", ("a", "b")), "c"))) == "a - b - c"
    # square is written as a power: its base is parenthesised like a power's
    assert latex_expr(Node("square", (Node("add", ("a", "b")),))) == \
        "\\left(a + b\\right)^{2}"


# ---- per-backend tables hold only ops of the table ------------------------------------------

def test_per_backend_tables_name_only_ops_of_the_table():
    assert set(kernel._HOISTED_WEIGHT) <= set(OPS)
    # the kernel's hoisted forms are the op's own torch expression, with the weight hoisted
    for name, (k, weight, expr) in kernel._HOISTED_WEIGHT.items():
        names = [f"a{i}" for i in range(OPS[name].arity)]
        assert expr.format(*names, weight=weight.format(names[k])) == \
            OPS[name].torch_expr.format(*names)
    assert OPAQUE <= set(OPS)
    assert ARITHMETIC <= set(OPS)
    assert ops.UNARY_MINUS in OPS
    # the arithmetic names are the ops whose sympy forms are sympy's own arithmetic
    for name in ARITHMETIC:
        xs = sympy.symbols(f"x0:{OPS[name].arity}", real=True)
        assert isinstance(OPS[name].sympy_fn(*xs), (sympy.Add, sympy.Mul, sympy.Pow))


def test_elementwise_ops_have_one_torch_expression_and_the_others_none():
    for name, op in OPS.items():
        assert (op.torch_expr is not None) == (op.kind is OpKind.ELEMENTWISE), name
        assert bool(op.definition) == (op.kind is not OpKind.ELEMENTWISE), name


# ---- a backend that meets an unknown op says which --------------------------------------------

def _bad_program() -> Program:
    return Program("r", (), (), (Stmt("x", "frobnicate", ("g",)),), ("x",))


@pytest.mark.parametrize("backend, call", [
    ("interpreter", lambda p: dsl.run_step(p, torch.ones(2), torch.ones(2), 0.1, 1, ())),
    ("kernel", compile_kernel),
    ("printer", format_program),
    ("LaTeX renderer", to_latex),
    ("checker", complexity),
    ("simplifier", lambda p: _cost(Node("frobnicate", ("g",)))),
    ("simplifier", lambda p: _to_sympy(Node("frobnicate", ("g",)), {})),
])
def test_an_unknown_op_is_a_clear_error_naming_op_and_backend(backend, call):
    with pytest.raises(UnknownOpError) as info:
        call(_bad_program())
    message = str(info.value)
    assert "'frobnicate'" in message and message.startswith(backend)
    assert isinstance(info.value, ValueError)


# ---- a new op is one row of the table ---------------------------------------------------------

def _with_op(monkeypatch, op: ops.Op) -> None:
    monkeypatch.setitem(OPS, op.name, op)


def test_an_elementwise_binary_op_is_one_row(monkeypatch):
    _with_op(monkeypatch, ops._op(
        "atan2", 2, OpKind.ELEMENTWISE, "torch.atan2({0}, {1})", sympy.atan2,
        "\\operatorname{{atan2}}({0}, {1})", 3, "all reals; atan2(0, 0) = 0",
        params=("y", "x"), doc="angle of the point (x, y)"))
    p = dsl.parse("def r(w, g, lr, t):\n    return lr * atan2(g, w + 1)\n")
    _run_both(p)
    one = torch.tensor([1.0], dtype=torch.float64)
    ref, _ = dsl.run_step(p, one, one, 1.0, 1, ())
    assert math.isclose(float(ref), math.atan2(1.0, 2.0))
    assert dsl.parse(format_program(p)) == p
    assert "\\operatorname{atan2}(g, w + 1)" in to_latex(p)
    assert "op_atan2(1, " in compile_kernel(p).source
    x, y = sympy.symbols("x y", real=True)
    assert forms().functions[sympy.atan2] == "atan2"
    assert _from_sympy(sympy.atan2(y, x), {"x": x, "y": y}) == Node("atan2", ("y", "x"))
    assert dsl.simplify(p) == p  # the simplifier reads it and leaves it alone


def _logsumexp(x, dims):
    return x if dims is None else torch.logsumexp(x, dim=dims, keepdim=True)


def test_a_reduction_is_one_row_and_its_helper(monkeypatch):
    _with_op(monkeypatch, ops._op(
        "logsumexp", 1, OpKind.REDUCTION,
        lambda lead, x: ops._broadcast_reduction(lead, x, _logsumexp),
        ops._opaque("logsumexp"), "\\operatorname{{LSE}}({0})", 3,
        "log(sum(exp(x))) over the tensor; of a scalar, itself",
        params=("x",), doc="log-sum-exp of the tensor",
        definition=r"\log \textstyle\sum_i e^{x_i}"))
    p = dsl.parse("def r(w, g, lr, t):\n    return lr * g / logsumexp(g)\n")
    _run_both(p)
    assert not compile_kernel(p).elementwise
    assert dsl.parse(format_program(p)) == p
    assert "\\operatorname{LSE}(g)" in to_latex(p)
    x = sympy.Symbol("x", real=True)
    assert _from_sympy(sympy_form("logsumexp")(x), {"x": x}) == Node("logsumexp", ("x",))
    assert dsl.check(dsl.parse("def r(w, g, lr, t):\n    return logsumexp(lr) * g\n")).ok


def test_constant_folding_of_matrix_ops_reads_the_table():
    # a constant stands for a tensor filled with it
    assert ops.fold_constant("row_mean", [0.1]) == 0.1
    assert ops.fold_constant("col_mean", [-3.0]) == -3.0
    assert ops.fold_constant("orth", [0.0]) == 0.0
    assert ops.fold_constant("orth", [2.0]) is None  # depends on the shape
    assert ops.fold_constant("norm", [-2.0]) == 2.0  # a scalar's norm is its abs
    with pytest.raises(UnknownOpError, match="constant folder"):
        ops.fold_constant("frobnicate", [1.0])
