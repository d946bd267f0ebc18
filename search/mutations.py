"""Mutations: a weighted registry of pure edits of a program.

Each mutation is ``fn(program, rng, limits) -> Program | None`` (None: not applicable to this
program, e.g. no constant to perturb). `mutate` draws mutations by weight and re-draws until
the child passes the checker and differs structurally from its parent, counting why each
rejected child was rejected.

    insert_statement   wrap an argument of a statement in a new op: x -> op(x, y)
    delete_statement   drop a statement; its readers read one of its arguments instead
    change_op          another op of the same arity on the same arguments
    change_argument    one argument becomes another variable or a constant
    perturb_constant   a constant (or hyperparameter default) times 2^N(0, 1)
    redraw_constant    a constant drawn afresh from the prior
    add_state          a new state slot holding a moving average, read by one statement
    drop_state         a state slot goes; its reads see zeros

and those that reach beyond one tensor (`search.reach_mutations`): read_context,
globalize, clip_global_norm, sharpness, factor_state. A fresh op (`insert`, `change_op`) is
drawn by `OP_DRAW_WEIGHTS`: whole-model reductions less often, `grad_at` seldom.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, replace
from typing import Callable

import numpy as np
from optforge.dsl.ir import INPUTS, Arg, Program, Stmt, temp_name
from optforge.dsl.ops import OPS
from optforge.dsl.simplifier import eliminate_dead_code

from optforge import dsl

from . import mutation_defaults
from .mutation_defaults import DEFAULT_WEIGHTS, Limits
from .program_edits import fresh_name, rebuild
from .reach_mutations import REACH_MUTATIONS

__all__ = ["Limits", "MUTATIONS", "DEFAULT_WEIGHTS", "MutationResult", "mutate",
           "bypass_statement", "draw_constant"]


@dataclass(frozen=True)
class MutationResult:
    child: Program | None  # None when no valid child was found within `max_tries`
    kind: str  # the mutation that produced the child
    rejections: Counter  # reason -> count, for the rejected attempts


Mutation = Callable[[Program, np.random.Generator, Limits], "Program | None"]

# Ops a fresh statement draws from, by arity (all ops; matrix ops only take tensors).
_BY_ARITY: dict[int, tuple[str, ...]] = {}
for _name, _op in sorted(OPS.items()):
    _BY_ARITY.setdefault(_op.arity, ())
    _BY_ARITY[_op.arity] += (_name,)
_ALL_OPS = tuple(sorted(OPS))


def _draw_op(rng: np.random.Generator, names) -> str | None:
    """One of `names` by `OP_DRAW_WEIGHTS` (an op not named there weighs 1; None when every
    weight is 0). Equal weights draw uniformly as `rng.choice(names)` does, so a table of
    equally weighted ops draws what it drew before weights existed."""
    table = mutation_defaults.OP_DRAW_WEIGHTS
    weighted = [(n, table.get(n, 1.0)) for n in names]
    weighted = [(n, w) for n, w in weighted if w > 0]
    if not weighted:
        return None
    names = [n for n, _ in weighted]
    if len({w for _, w in weighted}) == 1:
        return str(rng.choice(names))
    probs = np.array([w for _, w in weighted], dtype=float)
    return names[int(rng.choice(len(names), p=probs / probs.sum()))]


# The constant prior: sign * 10^U(-4, 0.5), plus the values that optimizers use most.
_COMMON_CONSTANTS = (0.5, 0.9, 0.99, 0.999, 1.0, 2.0, 1e-8, 0.1, 0.01)


def draw_constant(rng: np.random.Generator) -> float:
    if rng.random() < 0.5:
        return float(rng.choice(_COMMON_CONSTANTS))
    value = 10 ** rng.uniform(-4, 0.5)
    return float(_round_sig(value if rng.random() < 0.8 else -value))


def _round_sig(x: float, digits: int = 3) -> float:
    return float(f"{x:.{digits}g}")


# ---- helpers --------------------------------------------------------------------------------

def _defined_before(p: Program, index: int) -> list[str]:
    """Names readable by a statement at `index` (inputs, state, hyperparameters, earlier
    targets), without duplicates, in a stable order."""
    names = list(INPUTS) + list(p.state) + [h for h, _ in p.hyperparams]
    seen = set(names)
    for s in p.body[:index]:
        if s.target not in seen:
            seen.add(s.target)
            names.append(s.target)
    return names


def _random_arg(p: Program, index: int, rng: np.random.Generator) -> Arg:
    if rng.random() < 0.2:
        return draw_constant(rng)
    names = _defined_before(p, index)
    return str(rng.choice(names))


def _substitute_reads(p: Program, start: int, name: str, value: Arg) -> tuple[list, list]:
    """Body and returns with reads of `name` from statement `start` on replaced by `value`,
    up to (and including the arguments of) the next statement that reassigns `name`."""
    body = list(p.body)
    for k in range(start, len(body)):
        s = body[k]
        if name in s.args:
            body[k] = Stmt(s.target, s.op, tuple(value if a == name else a for a in s.args))
        if s.target == name:
            return body, list(p.returns)
    return body, [value if a == name else a for a in p.returns]


# ---- the mutations --------------------------------------------------------------------------

def insert_statement(p: Program, rng: np.random.Generator, limits: Limits) -> Program | None:
    if len(p.body) >= limits.max_statements:
        return None
    # a read to wrap: an argument of a statement, or a return value
    reads = [(i, k) for i, s in enumerate(p.body) for k, a in enumerate(s.args)]
    reads += [(len(p.body), k) for k in range(len(p.returns))]
    i, k = reads[rng.integers(len(reads))]
    old = p.body[i].args[k] if i < len(p.body) else p.returns[k]
    op = _draw_op(rng, _ALL_OPS)
    if op is None:
        return None
    arity = OPS[op].arity
    args = [old] + [_random_arg(p, i, rng) for _ in range(arity - 1)]
    if arity > 1:
        rng.shuffle(args)
    new = Stmt(temp_name(len(p.body) + 1000), op, tuple(args))
    body = list(p.body[:i]) + [new] + list(p.body[i:])
    returns = list(p.returns)
    if i < len(p.body):
        s = body[i + 1]
        body[i + 1] = Stmt(s.target, s.op, tuple(new.target if j == k else a
                                                 for j, a in enumerate(s.args)))
    else:
        returns[k] = new.target
    return rebuild(p, body, returns)


def bypass_statement(p: Program, i: int, k: int) -> Program:
    """Statement `i` deleted; whatever read its value reads its argument `k` instead."""
    s = p.body[i]
    replacement = s.args[k]
    if replacement == s.target:  # `m = f(m, ...)` deleted: readers keep the old m
        body, returns = list(p.body), list(p.returns)
    else:
        body, returns = _substitute_reads(p, i + 1, s.target, replacement)
    del body[i]
    return rebuild(p, body, returns)


def delete_statement(p: Program, rng: np.random.Generator, limits: Limits) -> Program | None:
    if not p.body:
        return None
    i = int(rng.integers(len(p.body)))
    return bypass_statement(p, i, int(rng.integers(len(p.body[i].args))))


def change_op(p: Program, rng: np.random.Generator, limits: Limits) -> Program | None:
    if not p.body:
        return None
    i = int(rng.integers(len(p.body)))
    s = p.body[i]
    op = _draw_op(rng, [o for o in _BY_ARITY[len(s.args)] if o != s.op])
    if op is None:
        return None
    body = list(p.body)
    body[i] = Stmt(s.target, op, s.args)
    return rebuild(p, body)


def change_argument(p: Program, rng: np.random.Generator, limits: Limits) -> Program | None:
    if not p.body:
        return None
    i = int(rng.integers(len(p.body)))
    s = p.body[i]
    k = int(rng.integers(len(s.args)))
    args = list(s.args)
    args[k] = _random_arg(p, i, rng)
    body = list(p.body)
    body[i] = Stmt(s.target, s.op, tuple(args))
    return rebuild(p, body)


def _constant_sites(p: Program) -> list[tuple[str, int, int]]:
    sites = [("body", i, k) for i, s in enumerate(p.body) for k, a in enumerate(s.args)
             if isinstance(a, float)]
    sites += [("hyper", j, 0) for j in range(len(p.hyperparams))]
    return sites


def _set_constant(p: Program, site: tuple[str, int, int], value: float) -> Program:
    where, i, k = site
    if where == "hyper":
        hyper = list(p.hyperparams)
        hyper[i] = (hyper[i][0], value)
        return replace(p, hyperparams=tuple(hyper), origin=None)
    body = list(p.body)
    s = body[i]
    body[i] = Stmt(s.target, s.op, tuple(value if j == k else a for j, a in enumerate(s.args)))
    return rebuild(p, body)


def _get_constant(p: Program, site: tuple[str, int, int]) -> float:
    where, i, k = site
    return p.hyperparams[i][1] if where == "hyper" else p.body[i].args[k]


def perturb_constant(p: Program, rng: np.random.Generator, limits: Limits) -> Program | None:
    sites = _constant_sites(p)
    if not sites:
        return None
    site = sites[int(rng.integers(len(sites)))]
    value = _get_constant(p, site)
    if value == 0.0:
        value = draw_constant(rng)
    new = value * 2.0 ** rng.normal()
    # moving-average coefficients live near 1: perturb their distance to 1 instead
    if 0.5 < value < 1.0:
        new = 1.0 - (1.0 - value) * 2.0 ** rng.normal()
    return _set_constant(p, site, _round_sig(new, 4))


def redraw_constant(p: Program, rng: np.random.Generator, limits: Limits) -> Program | None:
    sites = _constant_sites(p)
    if not sites:
        return None
    site = sites[int(rng.integers(len(sites)))]
    return _set_constant(p, site, draw_constant(rng))


def add_state(p: Program, rng: np.random.Generator, limits: Limits) -> Program | None:
    if len(p.state) >= limits.max_state:
        return None
    name = fresh_name(p, "s")
    # the new slot tracks a moving average of some tensor value, and one read sees it
    reads = [(i, k) for i, s in enumerate(p.body) for k, a in enumerate(s.args)]
    if not reads:
        return None
    i, k = reads[rng.integers(len(reads))]
    source = p.body[i].args[k]
    if not isinstance(source, str):
        source = "g"
    beta = float(rng.choice((0.9, 0.99, 0.999)))
    update = Stmt(name, "interp", (source, name, beta))
    body = list(p.body[:i]) + [update] + list(p.body[i:])
    s = body[i + 1]
    body[i + 1] = Stmt(s.target, s.op, tuple(name if j == k else a for j, a in enumerate(s.args)))
    returns = list(p.returns) + [name]
    return rebuild(p, body, returns, state=p.state + (name,))


def drop_state(p: Program, rng: np.random.Generator, limits: Limits) -> Program | None:
    if not p.state:
        return None
    k = int(rng.integers(len(p.state)))
    name = p.state[k]
    body, _ = _substitute_reads(p, 0, name, 0.0)
    # the slot's later assignments become plain variables; its return goes
    returns = list(p.returns[:1 + k]) + list(p.returns[2 + k:])
    return rebuild(p, body, returns, state=p.state[:k] + p.state[k + 1:],
                    slot_shapes=tuple(x for x in p.slot_shapes if x[0] != name))


MUTATIONS: dict[str, Mutation] = {
    "insert": insert_statement,
    "delete": delete_statement,
    "change_op": change_op,
    "change_arg": change_argument,
    "perturb_constant": perturb_constant,
    "redraw_constant": redraw_constant,
    "add_state": add_state,
    "drop_state": drop_state,
    **REACH_MUTATIONS,
}

def mutate(parent: Program, rng: np.random.Generator, weights: dict[str, float] | None = None,
           limits: Limits = Limits()) -> MutationResult:
    """A valid child of `parent`: drawn by mutation weight, re-drawn (at most
    ``limits.max_tries`` times) until it passes the checker and its structural hash differs
    from the parent's."""
    weights = weights or DEFAULT_WEIGHTS
    names = [n for n in weights if weights[n] > 0]
    unknown = set(names) - set(MUTATIONS)
    if unknown:
        raise ValueError(f"unknown mutation {sorted(unknown)[0]!r}; known: {sorted(MUTATIONS)}")
    probs = np.array([weights[n] for n in names], dtype=float)
    probs /= probs.sum()
    parent_hash = dsl.structural_hash(parent)
    rejections: Counter = Counter()
    kind = names[0]
    for _ in range(limits.max_tries):
        kind = names[int(rng.choice(len(names), p=probs))]
        child = MUTATIONS[kind](parent, rng, limits)
        if child is not None:
            child = eliminate_dead_code(child)  # children stay lean; hashes ignore it anyway
        if child is None:
            rejections["not applicable"] += 1
            continue
        report = dsl.check(child)
        if not report.ok:
            rejections[_reason(report.errors[0].message)] += 1
            continue
        if len(child.body) > limits.max_statements:
            rejections["too long"] += 1
            continue
        if dsl.structural_hash(child) == parent_hash:
            rejections["same as parent"] += 1
            continue
        return MutationResult(child, kind, rejections)
    return MutationResult(None, kind, rejections)


def _reason(message: str) -> str:
    if "does not depend on the gradient" in message:
        return "step ignores g"
    if "grad_at() needs a tensor" in message:
        return "grad_at of a scalar"
    if "needs a tensor" in message:
        return "matrix op on a scalar"
    if "is stored as" in message and "varies along" in message:
        return "factored slot varies"
    return "invalid program"

