"""The simplifier's sympy round trip: an expression tree to sympy and back, keeping the
cheapest form (see `dsl.simplifier`). Which sympy function is which op comes from the op
table (`dsl.sympy_forms`)."""

from __future__ import annotations

import math

import sympy
from sympy.core.operations import LatticeOp

from . import rewrites
from .ops import OPS, op_for
from .printer import Expr, Node
from .simplify_bounds import (
    MAX_EXPANDED_TERMS,
    SYMPY_SIMPLIFY_MAX_NODES,
    _BoundHit,
    algebra_bound,
    expanded_terms,
)
from .sympy_forms import forms, sympy_form

__all__ = ["simplest"]


def simplest(tree: Expr, symbols: dict[str, sympy.Symbol]) -> Expr:
    if not isinstance(tree, Node):
        return tree
    try:
        reason = algebra_bound(tree)
        if reason is not None:
            raise _BoundHit(reason)
        expr = _to_sympy(tree, symbols)
        candidates = [expr]
        if (_size_of(tree) <= SYMPY_SIMPLIFY_MAX_NODES
                and expanded_terms(tree) <= MAX_EXPANDED_TERMS):
            candidates.append(sympy.simplify(expr))
        best, best_cost = tree, _cost(tree)
        for c in candidates:
            back = _from_sympy(_sign_rule(c), symbols)
            if back is not None and _cost(back) < best_cost:
                best, best_cost = back, _cost(back)
        return best
    except (TypeError, ValueError, ZeroDivisionError, RecursionError, AttributeError):
        return tree  # sympy could not handle it: keep the expression as it is


def _size_of(tree: Expr) -> int:
    return 1 + sum(_size_of(c) for c in tree.children) if isinstance(tree, Node) else 1


def _cost(tree: Expr) -> int:
    if not isinstance(tree, Node):
        return 0
    return op_for(tree.op, "simplifier").cost + sum(_cost(c) for c in tree.children)


def _to_sympy(tree: Expr, symbols: dict[str, sympy.Symbol]) -> sympy.Expr:
    if isinstance(tree, str):
        if tree not in symbols:
            symbols[tree] = sympy.Symbol(tree, real=True)
        return symbols[tree]
    if isinstance(tree, float):
        return _sympy_number(tree)
    args = [_to_sympy(c, symbols) for c in tree.children]
    return sympy_form(tree.op)(*args)


def _sympy_number(v: float) -> sympy.Expr:
    if v.is_integer() and abs(v) < 2**53:
        return sympy.Integer(int(v))
    if (2 * v).is_integer() and abs(v) < 2**52:
        return sympy.Rational(int(2 * v), 2)
    return sympy.Float(v, 17)


def _sign_rule(e: sympy.Expr) -> sympy.Expr:
    """``x / |x| -> sign(x)`` (and ``|x| / x``), which sympy leaves alone."""
    def rewrite(m: sympy.Mul) -> sympy.Expr:
        factors = list(m.args)
        for f in factors:
            if isinstance(f, sympy.Pow) and f.exp == -1 and isinstance(f.base, sympy.Abs):
                x = f.base.args[0]
                if x in factors:
                    factors.remove(f)
                    factors.remove(x)
                    return sympy.Mul(sympy.sign(x), *factors)
            if isinstance(f, sympy.Pow) and f.exp == -1 and sympy.Abs(f.base) in factors:
                factors.remove(f)
                factors.remove(sympy.Abs(f.base))
                return sympy.Mul(sympy.sign(f.base), *factors)
        return m
    return e.replace(lambda x: isinstance(x, sympy.Mul), rewrite)


def _from_sympy(e: sympy.Expr, symbols: dict[str, sympy.Symbol]) -> Expr | None:
    """An expression tree for `e`, or None when it uses something the language lacks."""
    names = {v: k for k, v in symbols.items()}
    table = forms()

    def number(x) -> float | None:
        try:
            v = float(x)
        except (TypeError, ValueError):
            return None
        return v if math.isfinite(v) else None

    def go(x) -> Expr:
        if x in names:
            return names[x]
        if x.is_number:
            v = number(x)
            if v is not None:
                return v
        if isinstance(x, sympy.Add):
            terms = sorted(x.args, key=lambda a: _is_negative(a))
            acc = None
            for term in terms:
                if _is_negative(term):
                    pos = go(-term)
                    acc = Node("neg", (pos,)) if acc is None else Node("sub", (acc, pos))
                else:
                    t = go(term)
                    acc = t if acc is None else Node("add", (acc, t))
            return acc
        if isinstance(x, sympy.Mul):
            coeff, rest = x.as_coeff_Mul()
            if coeff < 0:
                return Node("neg", (go(-x),))
            num, den = [], []
            for f in sympy.Mul.make_args(rest):
                if isinstance(f, sympy.Pow) and f.exp.is_number and f.exp < 0:
                    den.append(go(sympy.Pow(f.base, -f.exp)))
                else:
                    num.append(go(f))
            if coeff != 1:
                num.insert(0, go(coeff))
            top = _chain("mul", num) if num else 1.0
            return Node("div", (top, _chain("mul", den))) if den else top
        if isinstance(x, sympy.Pow):
            base, exp = go(x.base), x.exp
            if exp in table.powers:
                return Node(table.powers[exp], (base,))
            if exp == -1:
                return Node("div", (1.0, base))
            return Node("pow", (base, go(exp)))
        op = table.functions.get(x.func)
        if op is not None:
            arity = OPS[op].arity
            if len(x.args) == arity:
                return _folded(Node(op, tuple(go(a) for a in x.args)))
            if arity == 2 and isinstance(x, LatticeOp):  # Min(a, b, c): a chain
                return _folded(_chain(op, [go(a) for a in x.args]))
        raise ValueError(f"no op for {x.func}")

    try:
        return go(e)
    except ValueError:
        return None


def _folded(node: Expr) -> Expr:
    """``min(max(x, lo), hi)`` back to ``clip(x, lo, hi)`` by the rewrite table's
    `clip_is_min_max` fact, in any argument order of min and max (both commute), with a
    number as a bound rather than as `x` when it can be; any other node as it is."""
    if not (isinstance(node, Node) and node.op == "min"):
        return node
    found = []
    for inner, hi in (node.children, node.children[::-1]):
        if isinstance(inner, Node) and inner.op == "max":
            for args in (inner.children, inner.children[::-1]):
                clip = rewrites.apply("clip_is_min_max", Node("min", (Node("max", args), hi)),
                                      reverse=True, make=Node)
                if clip is not None:
                    found.append(clip)
    found.sort(key=lambda c: isinstance(c.children[0], float))  # stable: x a number last
    return found[0] if found else node


def _is_negative(term: sympy.Expr) -> bool:
    coeff, _ = term.as_coeff_Mul()
    return bool(coeff.is_number and coeff < 0)


def _chain(op: str, items: list[Expr]) -> Expr:
    acc = items[0]
    for item in items[1:]:
        acc = Node(op, (acc, item))
    return acc
