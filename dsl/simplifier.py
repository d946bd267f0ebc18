"""The simplifier: pure passes that shorten a program without changing what it computes.

`simplify` runs, to a fixed point:
  1. `fold_constants`: ops on constants become constants (float64, by the op's own torch code);
  2. `eliminate_dead_code`: statements whose value reaches no return go;
  3. `eliminate_dead_state`: state slots that never affect the step go, and slots that are
     never written (always zero) become the constant 0;
  4. `simplify_algebra`: variables read once are inlined into their reader, and each
     expression is rewritten through sympy (real symbols) where that makes it cheaper, e.g.
     ``c / sqrt(c * c) -> sign(c)``, ``u + 0 * x -> u``.
The algebraic step is accepted only when it lowers (complexity, statements) and the result
behaves the same on the fingerprint probes, so a sympy identity that fails at the edges of
the domain (``x / x = 1`` at 0) never slips through.
"""

from __future__ import annotations

from dataclasses import replace

import sympy
import torch

from .checker import check, complexity, live_statements, live_states, unchanged_states
from .hashing import probe_trajectory
from .ir import Arg, Program, Stmt, renumber_temps, temp_name
from .ops import OPS, fold_constant
from .printer import Expr, Node, statement_count

__all__ = ["simplify", "fold_constants", "eliminate_dead_code", "eliminate_dead_state",
           "simplify_algebra"]

SYMPY_SIMPLIFY_MAX_NODES = 40  # sympy.simplify is slow on big trees; auto-evaluation only


def simplify(p: Program) -> Program:
    """The simplest equivalent program found (see module doc). Its name, hyperparameters and
    docstring are kept; state slots may be dropped."""
    current = _exact_passes(p)
    if not check(current).ok:  # e.g. a zero state read by an op that needs a tensor
        return p
    while True:
        candidate = _exact_passes(simplify_algebra(current))
        if (_size(candidate) >= _size(current) or not check(candidate).ok
                or not same_behaviour(current, candidate)):
            return current
        current = candidate


def _exact_passes(p: Program) -> Program:
    while True:
        q = eliminate_dead_state(eliminate_dead_code(fold_constants(p)))
        if q == p:
            return q
        p = q


def _size(p: Program) -> tuple[int, int]:
    return complexity(p), statement_count(p)


def same_behaviour(p: Program, q: Program, rtol: float = 1e-7) -> bool:
    """Equal trajectories (NaN where NaN) on the fingerprint probes."""
    for a, b in zip(probe_trajectory(p), probe_trajectory(q)):
        if not torch.allclose(a, b, rtol=rtol, atol=1e-12, equal_nan=True):
            return False
    return True


# ---- exact passes ----------------------------------------------------------------------------

def fold_constants(p: Program) -> Program:
    env: dict[str, Arg] = {}  # names currently known to hold a constant
    body: list[Stmt] = []
    for s in p.body:
        args = tuple(env.get(a, a) if isinstance(a, str) else a for a in s.args)
        env.pop(s.target, None)
        if all(isinstance(a, float) for a in args):
            value = fold_constant(s.op, args)
            if value is not None:
                env[s.target] = value
                continue
        body.append(s if args == s.args else Stmt(s.target, s.op, args))
    returns = tuple(env.get(a, a) if isinstance(a, str) else a for a in p.returns)
    if len(body) == len(p.body) and returns == p.returns and all(
            a is b for a, b in zip(body, p.body)):
        return p
    return renumber_temps(replace(p, body=tuple(body), returns=returns, origin=None))


def eliminate_dead_code(p: Program) -> Program:
    live = live_statements(p)
    if len(live) == len(p.body):
        return p
    return p.with_body(s for i, s in enumerate(p.body) if i in live)


def eliminate_dead_state(p: Program) -> Program:
    unchanged = unchanged_states(p)
    live = live_states(p)
    drop = {s for s in p.state if s in unchanged or s not in live}
    if not drop:
        return p
    zeros = {s: 0.0 for s in drop & unchanged}  # never written: reads see the initial zeros
    body = tuple(Stmt(s.target, s.op, tuple(zeros.get(a, a) if isinstance(a, str) else a
                                             for a in s.args)) for s in p.body)
    keep = [k for k, s in enumerate(p.state) if s not in drop]
    returns = tuple(zeros.get(a, a) if isinstance(a, str) else a for a in p.returns)
    q = replace(p, state=tuple(p.state[k] for k in keep), body=body, origin=None,
                returns=(returns[0],) + tuple(returns[1 + k] for k in keep))
    return eliminate_dead_code(renumber_temps(q))


# ---- algebra -------------------------------------------------------------------------------

Line = tuple[str, Expr]


def simplify_algebra(p: Program) -> Program:
    lines, returns = _inline_single_use(p, *_to_lines(p))
    symbols: dict[str, sympy.Symbol] = {}
    lines = [(target, _simplest(tree, symbols)) for target, tree in lines]
    returns = [_simplest(tree, symbols) for tree in returns]
    built = _from_lines(p, lines, returns)
    return p if built is None else built


def _to_lines(p: Program) -> tuple[list[Line], list[Expr]]:
    lines: list[Line] = [(s.target, Node(s.op, tuple(s.args))) for s in p.body]
    return lines, list(p.returns)


def _inline_single_use(p: Program, lines: list[Line], returns: list[Expr]):
    """Substitute each definition read exactly once into its reader, when nothing it reads
    is reassigned in between. State updates keep their names."""
    states = set(p.state)
    i = 0
    while i < len(lines):
        target, tree = lines[i]
        if target in states:
            i += 1
            continue
        reader = _single_reader(lines, returns, i)
        if reader is None:
            i += 1
            continue
        j = reader
        free = _names(tree)
        end = len(lines) if j == -1 else j
        if any(lines[k][0] in free for k in range(i + 1, end)):
            i += 1
            continue
        if j == -1:
            returns = [_substitute(r, target, tree) for r in returns]
        else:
            lines[j] = (lines[j][0], _substitute(lines[j][1], target, tree))
        del lines[i]
    return lines, returns


def _single_reader(lines: list[Line], returns: list[Expr], i: int) -> int | None:
    """The index of the only line reading the value defined at line `i` (-1: the returns),
    or None when it is read more or less than once."""
    target = lines[i][0]
    reads, reader = 0, None
    for k in range(i + 1, len(lines)):
        n = _count(lines[k][1], target)
        if n:
            reads, reader = reads + n, k
        if lines[k][0] == target:
            return reader if reads == 1 else None
    n = sum(_count(r, target) for r in returns)
    if n:
        reads, reader = reads + n, -1
    return reader if reads == 1 else None


def _count(tree: Expr, name: str) -> int:
    if isinstance(tree, Node):
        return sum(_count(c, name) for c in tree.children)
    return int(tree == name)


def _names(tree: Expr) -> set[str]:
    if isinstance(tree, Node):
        return set().union(*(_names(c) for c in tree.children))
    return {tree} if isinstance(tree, str) else set()


def _substitute(tree: Expr, name: str, value: Expr) -> Expr:
    if isinstance(tree, Node):
        return Node(tree.op, tuple(_substitute(c, name, value) for c in tree.children))
    return value if tree == name else tree


def _from_lines(p: Program, lines: list[Line], returns: list[Expr]) -> Program | None:
    body: list[Stmt] = []
    alias: dict[str, Arg] = {}
    fresh = len(p.body)  # new temporaries are numbered past the old ones until renumbering

    def emit(tree: Expr, target: str | None = None) -> Arg:
        if not isinstance(tree, Node):
            return alias.get(tree, tree) if isinstance(tree, str) else tree
        args = tuple(emit(c) for c in tree.children)
        body.append(Stmt(target or temp_name(fresh + len(body)), tree.op, args))
        return body[-1].target

    for target, tree in lines:
        value = emit(tree, target)
        if value != target:
            # the expression simplified to a plain name or constant: later reads use it,
            # which is only sound if that name is not reassigned before they happen
            if isinstance(value, str) and any(t == value for t, _ in lines):
                return None
            alias[target] = value
        else:
            alias.pop(target, None)
    outs = tuple(emit(r) for r in returns)
    return renumber_temps(replace(p, body=tuple(body), returns=outs, origin=None))


# ---- sympy round trip ----------------------------------------------------------------------

_OPAQUE = frozenset({"interp"})  # kept whole: expanding it never shortens a rule


def _simplest(tree: Expr, symbols: dict[str, sympy.Symbol]) -> Expr:
    if not isinstance(tree, Node):
        return tree
    try:
        expr = _to_sympy(tree, symbols)
        candidates = [expr]
        if _size_of(tree) <= SYMPY_SIMPLIFY_MAX_NODES:
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
    return OPS[tree.op].cost + sum(_cost(c) for c in tree.children)


def _to_sympy(tree: Expr, symbols: dict[str, sympy.Symbol]) -> sympy.Expr:
    if isinstance(tree, str):
        if tree not in symbols:
            symbols[tree] = sympy.Symbol(tree, real=True)
        return symbols[tree]
    if isinstance(tree, float):
        return _sympy_number(tree)
    args = [_to_sympy(c, symbols) for c in tree.children]
    if tree.op in _OPAQUE:
        return sympy.Function(tree.op)(*args)
    return OPS[tree.op].sympy_fn(*args)


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


_FUNCTIONS = {sympy.Abs: "abs", sympy.sign: "sign", sympy.exp: "exp", sympy.log: "log",
              sympy.tanh: "tanh", sympy.atan: "arctan"}


def _from_sympy(e: sympy.Expr, symbols: dict[str, sympy.Symbol]) -> Expr | None:
    """An expression tree for `e`, or None when it uses something the language lacks."""
    names = {v: k for k, v in symbols.items()}

    def number(x) -> float | None:
        try:
            v = float(x)
        except (TypeError, ValueError):
            return None
        return v if v == v and abs(v) != float("inf") else None

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
            if exp == 2:
                return Node("square", (base,))
            if exp == sympy.Rational(1, 2):
                return Node("sqrt", (base,))
            if exp == sympy.Rational(-1, 2):
                return Node("rsqrt", (base,))
            if exp == -1:
                return Node("div", (1.0, base))
            return Node("pow", (base, go(exp)))
        if isinstance(x, (sympy.Min, sympy.Max)):
            return _chain("min" if isinstance(x, sympy.Min) else "max",
                          [go(a) for a in x.args])
        for cls, op in _FUNCTIONS.items():
            if isinstance(x, cls):
                return Node(op, (go(x.args[0]),))
        name = getattr(x.func, "__name__", "")
        if isinstance(x, sympy.core.function.AppliedUndef) and name in OPS:
            if len(x.args) == OPS[name].arity:
                return Node(name, tuple(go(a) for a in x.args))
        raise ValueError(f"no op for {x.func}")

    try:
        return go(e)
    except ValueError:
        return None


def _is_negative(term: sympy.Expr) -> bool:
    coeff, _ = term.as_coeff_Mul()
    return bool(coeff.is_number and coeff < 0)


def _chain(op: str, items: list[Expr]) -> Expr:
    acc = items[0]
    for item in items[1:]:
        acc = Node(op, (acc, item))
    return acc
