"""Lowering of the tensor section for the eager paths, and where each value lives there.

The eager updaters (per parameter and foreach) apply rules of `dsl.rewrites` that the pure
path does not need:

* ``min_scalar_is_clamp`` / ``max_scalar_is_clamp``: min or max against a scalar bound is
  ``torch.clamp``; the commutativity rules put the tensor of ``add`` and ``mul`` first;
* ``axpy`` / ``axpy_sub``: ``A ± s * B`` with the product read nowhere else is one
  ``torch.add(A, B, alpha=±s)``; and the parameter update ``w - s * X`` is
  ``w.add_(X, alpha=-s)``, so the step is never materialised.

Then `plan` decides in-place destinations: a value is written into the buffer of an operand
that dies at that statement, or straight into the state it becomes, and temporaries are
released as soon as they are dead.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

from ..rewrites import Node, apply, commutative_ops, rule
from ..slots import SlotShape
from .analysis import Analysis, TStmt, Val
from .tables import is_elementwise

_COMMUTATIVE = commutative_ops()
_AXPY_RULES = {rule(name).lhs.op: name for name in ("axpy", "axpy_sub")}  # add, sub


def _kind(v: object) -> str:
    return "tensor" if isinstance(v, Node) or (isinstance(v, Val) and v.is_tensor) else "scalar"


def _commute_and_clamp(st: TStmt) -> TStmt:
    for name in ("min_scalar_is_clamp", "max_scalar_is_clamp"):
        lowered = apply(name, Node(st.op, st.args), kind_of=_kind)
        if lowered is not None:
            return dataclasses.replace(st, op=lowered.op, args=lowered.args)
    if st.op in _COMMUTATIVE and not st.args[0].is_tensor and st.args[1].is_tensor:
        return dataclasses.replace(st, args=(st.args[1], st.args[0]))
    return st


def _scale(v: Val | Node) -> Val:
    """The alpha of an axpy: a scalar, or ``neg`` of one (read as -F[i] or a negated constant)."""
    if isinstance(v, Node):
        (s,) = v.args
        return dataclasses.replace(s, negated=not s.negated, value=-s.value)
    return v


def _fuse_axpy(stmts: list[TStmt], protected: set[str]) -> list[TStmt]:
    """``X = s * B`` read only by ``A + X``, ``X + A`` or ``A - X`` (A, B tensors, s a
    scalar) becomes one ``axpy(A, B, ±s)``, without the temporary X (rules ``axpy`` and
    ``axpy_sub``)."""
    reads: dict[str, int] = {}
    for st in stmts:
        for v in st.args:
            if v.is_tensor:
                reads[v.name] = reads.get(v.name, 0) + 1
    producer = {st.result: j for j, st in enumerate(stmts)}
    dropped: set[int] = set()
    out = list(stmts)
    for i, st in enumerate(stmts):
        name = _AXPY_RULES.get(st.op)
        if name is None:
            continue
        lhs = rule(name).lhs
        # the product's position in the pattern, then the other one where the op commutes
        product = [k for k, p in enumerate(lhs.args) if isinstance(p, Node)]
        if st.op in _COMMUTATIVE:
            product += [1 - k for k in product]
        for pos in product:
            x = st.args[pos]
            j = producer.get(x.name) if x.is_tensor else None
            if (j is None or j in dropped or reads.get(x.name) != 1 or x.name in protected
                    or stmts[j].op != lhs.args[product[0]].op):
                continue
            args = list(st.args)
            args[pos] = Node(stmts[j].op, stmts[j].args)
            fused = apply(name, Node(st.op, tuple(args)), kind_of=_kind)
            if fused is None:
                continue
            a_, b, s = fused.args
            out[i] = TStmt("axpy", (a_, b, _scale(s)), st.result, a_.full or b.full,
                           f"{st.comment}; {stmts[j].comment}")
            dropped.add(j)
            break
    return [st for j, st in enumerate(out) if j not in dropped]


@dataclass
class Plan:
    """Where each tensor value lives in the eager updaters. `buffer[v]` is the variable that
    holds value v (itself, a dying operand's buffer it was computed into, or a state)."""

    stmts: list[TStmt]
    dest: list[str | None]  # per statement: the buffer written in place, or None (fresh)
    buffer: dict[str, str]
    alpha: tuple[Val, Val] | None  # (X, s): apply w.add_(X, alpha=-s) instead of a step
    free_after: list[list[str]]  # per statement: temporaries dead after it (del them)


def _parameter_axpy(a: Analysis, stmts: list[TStmt]) -> tuple[tuple[Val, Val] | None,
                                                                list[TStmt]]:
    """``w - step`` with ``step = s * X`` read by nothing else: rule ``axpy_sub`` gives
    ``w.add_(X, alpha=-s)``; returns (X, s) and the statements without the product."""
    step = a.step
    producer = [j for j, st in enumerate(stmts) if st.result == step.name]
    if not producer:
        return None, stmts
    j = producer[0]
    read_later = any(v.is_tensor and v.name == step.name for st in stmts for v in st.args)
    is_final = any(f is not None and f.is_tensor and f.name == step.name for f in a.finals)
    if read_later or is_final:
        return None, stmts
    w = Val("tensor", "w", True)
    fused = apply("axpy_sub", Node("sub", (w, Node(stmts[j].op, stmts[j].args))), kind_of=_kind)
    if fused is None:
        return None, stmts
    _, x, s = fused.args
    (s,) = s.args  # neg(s): the update adds alpha=-s
    return (x, s), stmts[:j] + stmts[j + 1:]


def plan(a: Analysis, inplace_ok: Callable[[TStmt, str, dict[str, str]], bool]) -> Plan:
    """Lower the tensor section for the eager paths and decide in-place destinations.
    `inplace_ok(stmt, dest_buffer, buffer_of)` says whether the path can write `stmt` into
    `dest_buffer`."""
    stmts = [_commute_and_clamp(st) for st in a.tensor]
    alpha, stmts = _parameter_axpy(a, stmts)
    step = a.step
    protected = {v.name for v in [step] + [f for f in a.finals if f is not None] if v.is_tensor}
    stmts = _fuse_axpy(stmts, protected | ({alpha[0].name} if alpha else set()))
    n = len(stmts)
    last_use: dict[str, int] = {}
    for i, st in enumerate(stmts):
        for v in st.args:
            if v.is_tensor:
                last_use[v.name] = i
    end_reads = [alpha[0]] if alpha else [step]
    end_reads += [f for f in a.finals if f is not None]
    for v in end_reads:
        if v.is_tensor:
            last_use[v.name] = n
    final_of: dict[str, int] = {}
    for k, f in enumerate(a.finals):
        if f is not None and f.is_tensor:
            final_of.setdefault(f.name, k)
    returned = {v.name for v in end_reads if v.is_tensor}

    buffer: dict[str, str] = {"w": "w", "g": "g"}
    for k in range(len(a.program.state)):
        buffer[f"s{k}"] = f"s{k}"
    produced = {st.result for st in stmts}
    # the context inputs a rule reads (rows, cols, numel), returned ones too: their own names
    for v in [a.step, *a.finals, *(v for st in stmts for v in st.args)]:
        if v is not None and v.is_tensor and v.name not in produced:
            buffer.setdefault(v.name, v.name)
    # a factored slot (dsl.slots) is stored reduced: no full-size value is written into it
    full_slots = {f"s{k}" for k, s in enumerate(a.program.state)
                  if a.program.slot_shape(s) is SlotShape.FULL}
    holder: dict[str, str] = {b: b for b in buffer}  # buffer -> value it holds now
    dest: list[str | None] = []
    for i, st in enumerate(stmts):
        chosen = None
        if is_elementwise(st.op) and st.full:
            k = final_of.get(st.result)
            if k is not None and f"s{k}" in full_slots:
                sb = f"s{k}"
                if holder.get(sb) == sb and last_use.get(sb, -1) <= i and inplace_ok(
                        st, sb, buffer):
                    chosen = sb
            if chosen is None:
                for v in st.args:
                    if (v.is_tensor and v.full and v.name not in returned
                            and last_use.get(v.name) == i):
                        b = buffer[v.name]
                        if b.startswith("x") and holder.get(b) == v.name and inplace_ok(
                                st, b, buffer):
                            chosen = b
                            break
        dest.append(chosen)
        b = chosen or st.result
        buffer[st.result] = b
        holder[b] = st.result
    # temporaries whose value is dead: release them at once, so that the allocator reuses
    # their memory for the next temporaries instead of growing (and faulting in fresh pages)
    free_after: list[list[str]] = [[] for _ in stmts]
    freed: set[str] = set()
    holder = {}
    for i, st in enumerate(stmts):
        holder[buffer[st.result]] = st.result
        for b, v in holder.items():
            if b not in freed and b.startswith("x") and last_use.get(v, -1) <= i:
                free_after[i].append(b)
                freed.add(b)
    return Plan(stmts, dest, buffer, alpha, free_after)
