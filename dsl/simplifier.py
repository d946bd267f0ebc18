"""The simplifier: pure passes that shorten a program without changing what it computes.

`simplify` runs, to a fixed point:
  1. `fold_constants`: ops on constants become constants (float64, by the op's own torch code);
  2. `eliminate_dead_code`: statements whose value reaches no return go;
  3. `eliminate_dead_state`: state slots that never affect the step go, and slots that are
     never written (always zero) become the constant 0;
  4. `merge_repeated_group_ops`: a whole-model op repeated on the same arguments is
     computed once;
  5. `simplify_algebra`: variables read once are inlined into their reader, and each
     expression is rewritten through sympy (real symbols) where that makes it cheaper, e.g.
     ``c / sqrt(c * c) -> sign(c)``, ``u + 0 * x -> u``. The context inputs are symbols
     too (`rows`, `cols`, `numel` positive integers); whole-model ops and `grad_at` stay
     on their own lines (never inlined, so never duplicated or reordered).
The storage of state slots is kept (a dropped slot's with it); a result that the checker
refuses (a factored slot whose value now varies along a dropped axis) is not taken.
The algebraic step is accepted only when it lowers (complexity, statements) and the result
behaves the same on the fingerprint probes, so a sympy identity that fails at the edges of
the domain (``x / x = 1`` at 0) never slips through.

Bounds. sympy computes exactly and cannot be cancelled, so a rule such as
``lr * g * 10 ** 10 ** 10`` (an integer with ten billion digits) or ``(g + 1) ** 100000`` (a
polynomial to expand) would run for hours; in the rule's own float semantics the first is
just ``inf``. Three bounds keep every call finite:
  * power (hard): on every path from the root of an expression to a leaf, the product of
    the exponents' magnitudes (``square`` counts 2; a non-constant exponent counts the sum
    of the magnitudes of its constants, which sympy may split off: ``x**(t + 3)``) is at
    most `MAX_POWER`. Constants reach sympy as integers below 2**53, halves or floats, so
    no exact number sympy builds has more than about ``53 * MAX_POWER`` bits per constant;
  * expansion (soft): `sympy.simplify` runs only on expressions whose multiplied-out form
    has at most `MAX_EXPANDED_TERMS` terms by the estimate of `expanded_terms` (other
    expressions still go through sympy's automatic evaluation, which never expands), as
    it runs only on expressions of at most `SYMPY_SIMPLIFY_MAX_NODES` nodes;
  * time (hard): one `simplify` call may use `SIMPLIFY_CPU_SECONDS` of the process's CPU
    time (the main thread only: a one-shot ``ITIMER_VIRTUAL`` timer whose handler raises
    between two bytecodes; in other threads the structural bounds alone apply).
A hard bound makes `simplify_bounded` return the input program unsimplified together with
the bound it hit; `simplify` then returns the input. The bounds are far above what real
rules need: every seed simplifies well inside them.

Modules: this one holds the passes; `dsl.simplify_bounds` the bounds, `dsl.simplify_sympy`
the sympy round trip, and `dsl.sympy_forms` the op table as sympy sees it (both ways,
derived from the ops' sympy forms).
"""


from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from .checker import check, complexity, live_statements, live_states, unchanged_states
from .hashing import probe_trajectory
from .ir import Arg, Program, Stmt, renumber_temps, temp_name
from .ops import OPS, OpKind, fold_constant
from .printer import Expr, Node, statement_count
from .simplify_bounds import (
    MAX_EXPANDED_TERMS,
    MAX_POWER,
    SYMPY_SIMPLIFY_MAX_NODES,
    _BoundHit,
    _CpuDeadline,
    algebra_bound,
    expanded_terms,
)
from .simplify_sympy import simplest
from .sympy_forms import context_symbols

__all__ = ["MAX_EXPANDED_TERMS", "MAX_POWER", "SIMPLIFY_CPU_SECONDS", "SYMPY_SIMPLIFY_MAX_NODES",
           "Simplification", "algebra_bound", "eliminate_dead_code", "eliminate_dead_state",
           "expanded_terms", "fold_constants", "merge_repeated_group_ops", "same_behaviour",
           "simplify", "simplify_algebra", "simplify_bounded"]

SIMPLIFY_CPU_SECONDS = 10.0  # every seed simplifies in under 1 s


@dataclass(frozen=True)
class Simplification:
    """What `simplify_bounded` found. `bound_hit` names the bound that stopped it (None when
    it ran to the end); the `program` is then the input, unsimplified."""
    program: Program
    bound_hit: str | None = None


def simplify(p: Program) -> Program:
    """The simplest equivalent program found (see module doc). Its name, hyperparameters and
    docstring are kept; state slots may be dropped. When a bound is hit, `p` itself."""
    return simplify_bounded(p).program


def simplify_bounded(p: Program) -> Simplification:
    """`simplify`, saying whether a bound (see module doc) stopped it."""
    deadline = _CpuDeadline(SIMPLIFY_CPU_SECONDS)
    try:
        try:
            deadline.start()
            return Simplification(_simplify(p))
        finally:
            deadline.stop()
    except _BoundHit as hit:
        deadline.stop()  # again: the first stop may be what the timer interrupted
        return Simplification(p, str(hit))


def _simplify(p: Program) -> Program:
    current = _exact_passes(p)
    # e.g. a zero state read by an op that needs a tensor; or by logsumexp, whose value on a
    # tensor of zeros (log n) is not its value on the constant 0 (0)
    if not check(current).ok or (current != p and not same_behaviour(p, current)):
        return p
    while True:
        candidate = _exact_passes(_algebra(current))
        if (_size(candidate) >= _size(current) or not check(candidate).ok
                or not same_behaviour(current, candidate)):
            return current
        current = candidate


def _exact_passes(p: Program) -> Program:
    while True:
        q = eliminate_dead_state(eliminate_dead_code(merge_repeated_group_ops(
            fold_constants(p))))
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


def merge_repeated_group_ops(p: Program) -> Program:
    """A whole-model op (`global_sum`, `global_norm`) on the same arguments as an earlier
    one, where nothing it reads was reassigned in between, is dropped: later reads take the
    earlier value (whose name is assigned once, so it still holds it). `grad_at` is not
    merged: an exported optimizer's closure may draw a new minibatch or dropout mask."""
    assigned: dict[str, int] = {}
    for s in p.body:
        assigned[s.target] = assigned.get(s.target, 0) + 1
    alias: dict[str, str] = {}  # a dropped statement's target -> the earlier name
    seen: dict[tuple, str] = {}  # (op, args) of a whole-model op -> the name holding it
    body: list[Stmt] = []
    for s in p.body:
        args = tuple(alias.get(a, a) if isinstance(a, str) else a for a in s.args)
        alias.pop(s.target, None)  # reassigned: later reads see the new value
        seen = {k: v for k, v in seen.items() if s.target not in k[1]}
        key = (s.op, args)
        if OPS[s.op].kind is OpKind.GLOBAL and key in seen:
            alias[s.target] = seen[key]
            continue
        body.append(s if args == s.args else Stmt(s.target, s.op, args))
        if (OPS[s.op].kind is OpKind.GLOBAL and assigned[s.target] == 1
                and s.target not in args):
            seen[key] = s.target
    if len(body) == len(p.body):
        return p
    returns = tuple(alias.get(a, a) if isinstance(a, str) else a for a in p.returns)
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
                returns=(returns[0],) + tuple(returns[1 + k] for k in keep),
                slot_shapes=tuple((s, k) for s, k in p.slot_shapes if s not in drop))
    return eliminate_dead_code(renumber_temps(q))


# ---- algebra -------------------------------------------------------------------------------

Line = tuple[str, Expr]


def simplify_algebra(p: Program) -> Program:
    """One round of inlining and sympy rewriting; `p` itself when an expression is beyond
    the power bound (see module doc)."""
    try:
        return _algebra(p)
    except _BoundHit:
        return p


def _algebra(p: Program) -> Program:
    lines, returns = _inline_single_use(p, *_to_lines(p))
    symbols: dict = context_symbols()
    lines = [(target, simplest(tree, symbols)) for target, tree in lines]
    returns = [simplest(tree, symbols) for tree in returns]
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
        if target in states or _group_level(tree):
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


def _group_level(tree: Expr) -> bool:
    """A whole-model op or grad_at: kept on its own line, where it was (sympy sees its
    value as a symbol), so that the simplifier never duplicates one nor moves a grad_at
    call past another."""
    return isinstance(tree, Node) and OPS[tree.op].kind in (OpKind.GLOBAL, OpKind.GRADIENT)


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
