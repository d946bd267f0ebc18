"""The algebraic facts of the language, held once, as rewrite rules that are data.

A rule is a pattern over expression trees of the IR and its replacement, with a name and a
line of documentation (tinygrad's `PatternMatcher` keeps its rules the same way):

    interp_symmetry:    interp(x, y, a)     ->  interp(y, x, 1 - a)
    clip_is_min_max:    clip(x, lo, hi)     ->  min(max(x, lo), hi)
    axpy:               add(x, mul(s, y))   ->  axpy(x, y, s)          (x + s * y in one op)

Terms are `Var` (a pattern variable; `kind` restricts it to scalars or tensors), `Node`
(an op and its arguments) and numbers. Every rule is an identity of the op table's torch
semantics: `tests/dsl/test_rewrites.py` evaluates both sides of each rule on random tensors
with `evaluate` (the op table's own torch functions) and requires equal results.

Who reads which fact:

* `canonical_hash` (dsl/hashing.py): commutativity (`commutative_ops`: the arguments of
  these ops are sorted) and `interp_symmetry` (`interp_weight_complement`).
* the export lowering (dsl/export): `clip_is_min_max`, `min_scalar_is_clamp`,
  `max_scalar_is_clamp`, `axpy`, `axpy_sub` and `interp_as_lerp`.
* the simplifier: `apply("clip_is_min_max", tree, reverse=True)` folds
  ``min(max(x, lo), hi)`` back into ``clip(x, lo, hi)``.

Rules may produce ops beyond the language, the torch forms an export renders (`LOWERED`:
``lerp``, ``axpy``, ``clamp_min``, ``clamp_max``); they never appear in a `Program`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from .ops import OPS

__all__ = [
    "LOWERED",
    "RULES",
    "LoweredOp",
    "Node",
    "Rule",
    "Var",
    "apply",
    "commutative_ops",
    "evaluate",
    "interp_weight_complement",
    "match",
    "rule",
    "substitute",
]


@dataclass(frozen=True)
class Var:
    """A pattern variable. `kind` "scalar" or "tensor" restricts what it matches (the caller
    of `match` says which values are scalars); "any" matches everything."""

    name: str
    kind: str = "any"


@dataclass(frozen=True)
class Node:
    """``op(*args)``: `op` is an op of the table (`dsl.ops.OPS`) or of `LOWERED`."""

    op: str
    args: tuple[Any, ...]


Term = Var | Node | float


@dataclass(frozen=True)
class Rule:
    name: str
    lhs: Node
    rhs: Term
    doc: str


@dataclass(frozen=True)
class LoweredOp:
    """A torch form that rules lower to, outside the language: `torch_fn` computes it."""

    name: str
    params: tuple[str, ...]
    torch_fn: Callable[..., torch.Tensor]
    doc: str


LOWERED: dict[str, LoweredOp] = {op.name: op for op in (
    LoweredOp("lerp", ("start", "end", "weight"), torch.lerp,
              "torch.lerp: start + weight * (end - start), as torch.optim's moving averages"),
    LoweredOp("axpy", ("x", "y", "alpha"), lambda x, y, s: torch.add(x, y, alpha=float(s)),
              "torch.add(x, y, alpha=s): x + s * y in one pass"),
    LoweredOp("clamp_min", ("x", "low"), lambda x, lo: torch.clamp(x, min=float(lo)),
              "torch.clamp(x, min=low), a scalar lower bound"),
    LoweredOp("clamp_max", ("x", "high"), lambda x, hi: torch.clamp(x, max=float(hi)),
              "torch.clamp(x, max=high), a scalar upper bound"),
)}


def _n(op: str, *args: Term) -> Node:
    return Node(op, args)


X, Y, A, LO, HI = Var("x"), Var("y"), Var("a"), Var("lo"), Var("hi")
T, U, S = Var("x", "tensor"), Var("y", "tensor"), Var("s", "scalar")


def _commutes(op: str) -> Rule:
    return Rule(f"{op}_commutes", _n(op, X, Y), _n(op, Y, X),
                f"{op}(x, y) == {op}(y, x): canonical_hash sorts its arguments, the export "
                f"puts a tensor first")


RULES: tuple[Rule, ...] = (
    *(_commutes(op) for op in ("add", "mul", "min", "max")),
    Rule("interp_symmetry", _n("interp", X, Y, A), _n("interp", Y, X, _n("sub", 1.0, A)),
         "(1 - a) * x + a * y is symmetric under x <-> y, a <-> 1 - a"),
    Rule("clip_is_min_max", _n("clip", X, LO, HI), _n("min", _n("max", X, LO), HI),
         "clip(x, lo, hi) == min(max(x, lo), hi), as the op table defines clip"),
    Rule("min_scalar_is_clamp", _n("min", T, S), _n("clamp_max", T, S),
         "min against a scalar bound is torch.clamp(x, max=s)"),
    Rule("max_scalar_is_clamp", _n("max", T, S), _n("clamp_min", T, S),
         "max against a scalar bound is torch.clamp(x, min=s)"),
    Rule("axpy", _n("add", T, _n("mul", S, U)), _n("axpy", T, U, S),
         "x + s * y is x.add(y, alpha=s): one op, no temporary for s * y"),
    Rule("axpy_sub", _n("sub", T, _n("mul", S, U)), _n("axpy", T, U, _n("neg", S)),
         "x - s * y is x.add(y, alpha=-s)"),
    Rule("interp_as_lerp", _n("interp", X, Y, A), _n("lerp", Y, X, _n("sub", 1.0, A)),
         "interp(x, y, a) is torch.lerp(y, x, 1 - a), as the interpreter computes it"),
)

_BY_NAME = {r.name: r for r in RULES}
assert len(_BY_NAME) == len(RULES), "duplicate rule name"


def rule(name: str) -> Rule:
    """The rule called `name` (KeyError names the known ones)."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise KeyError(f"no rewrite rule {name!r}; rules: {', '.join(_BY_NAME)}") from None


def commutative_ops() -> frozenset[str]:
    """Ops with a rule ``op(x, y) -> op(y, x)``."""
    return frozenset(r.lhs.op for r in RULES
                     if isinstance(r.rhs, Node) and r.rhs.op == r.lhs.op
                     and r.rhs.args == tuple(reversed(r.lhs.args)) and len(r.lhs.args) == 2)


_COMMUTATIVE = commutative_ops()


def interp_weight_complement() -> tuple[int, int, float]:
    """`interp_symmetry` as hashing uses it: (i, j, c) where the rule swaps arguments i and j
    and replaces the weight by ``c - weight``."""
    r = _BY_NAME["interp_symmetry"]
    lhs_names = [v.name for v in r.lhs.args]
    rhs = r.rhs
    assert isinstance(rhs, Node)
    i, j = lhs_names.index(rhs.args[1].name), lhs_names.index(rhs.args[0].name)
    weight = rhs.args[2]
    assert isinstance(weight, Node) and weight.op == "sub"
    return i, j, float(weight.args[0])


# ---- matching ------------------------------------------------------------------------------

def _parts(term: Any) -> tuple[str, tuple[Any, ...]] | None:
    """(op, args) of a tree node: `Node`, or any object with `op` and `args` or `children`
    (the simplifier's trees); None for a leaf."""
    op = getattr(term, "op", None)
    if op is None:
        return None
    args = getattr(term, "args", None)
    if args is None:
        args = getattr(term, "children", ())
    return op, tuple(args)


def match(pattern: Term, term: Any, kind_of: Callable[[Any], str] | None = None,
          bindings: Mapping[str, Any] | None = None) -> dict[str, Any] | None:
    """Bindings of the pattern's variables that make it equal `term`, or None. The arguments
    of commutative ops match in either order. `kind_of(leaf)` says "scalar" or "tensor" for
    variables restricted to one (without it, such a variable matches nothing)."""
    bound = dict(bindings or {})
    if isinstance(pattern, Var):
        if pattern.kind != "any" and (kind_of is None or kind_of(term) != pattern.kind):
            return None
        if pattern.name in bound:
            return bound if bound[pattern.name] == term else None
        bound[pattern.name] = term
        return bound
    if not isinstance(pattern, Node):  # a number
        return bound if isinstance(term, (int, float)) and float(term) == pattern else None
    parts = _parts(term)
    if parts is None or parts[0] != pattern.op or len(parts[1]) != len(pattern.args):
        return None
    orders = [parts[1]]
    if pattern.op in _COMMUTATIVE:
        orders.append(tuple(reversed(parts[1])))
    for args in orders:
        result: dict[str, Any] | None = bound
        for p, t in zip(pattern.args, args):
            result = match(p, t, kind_of, result)
            if result is None:
                break
        if result is not None:
            return result
    return None


def substitute(term: Term, bindings: Mapping[str, Any],
               make: Callable[[str, tuple[Any, ...]], Any] = Node) -> Any:
    """`term` with its variables replaced by their bindings; nodes are built by `make`."""
    if isinstance(term, Var):
        return bindings[term.name]
    if isinstance(term, Node):
        return make(term.op, tuple(substitute(a, bindings, make) for a in term.args))
    return term


def apply(name: str, term: Any, *, reverse: bool = False,
          kind_of: Callable[[Any], str] | None = None,
          make: Callable[[str, tuple[Any, ...]], Any] = Node) -> Any | None:
    """Rule `name` applied at the root of `term` (right to left when `reverse`), or None
    when it does not match. E.g. ``apply("clip_is_min_max", min(max(x, 0), 1), reverse=True)
    == clip(x, 0, 1)``."""
    r = rule(name)
    lhs, rhs = (r.rhs, r.lhs) if reverse else (r.lhs, r.rhs)
    bindings = match(lhs, term, kind_of)
    return None if bindings is None else substitute(rhs, bindings, make)


def evaluate(term: Any, env: Mapping[str, torch.Tensor], lead: int = 0) -> torch.Tensor:
    """The value of a term (variables read from `env`) by the op table's torch functions, and
    `LOWERED`'s for the lowered forms."""
    if isinstance(term, Var):
        return env[term.name]
    parts = _parts(term)
    if parts is None:
        return torch.tensor(float(term), dtype=torch.float64)
    op, args = parts
    values = [evaluate(a, env, lead) for a in args]
    if op in LOWERED:
        return LOWERED[op].torch_fn(*values)
    return OPS[op].torch_fn(lead, *values)
