"""Analysis: a program as a scalar section and a tensor section of single ops.

* The *scalar section* holds every statement whose arguments are all scalars (``lr``, ``t``,
  hyperparameters, constants). Its code (``c3 = k[0] - h1``) runs once per group and step
  count on 0-d float64 tensors; statements on constants alone are folded now, by the op's own
  torch code. Values the tensor code reads are delivered in *slots* (``S[i]`` / ``F[i]``).
* The *tensor section* is a list of `TStmt`, one op each, over `Val`s.

`interp` and `clip` are lowered here, by their rules in `dsl.rewrites` (``interp_as_lerp``,
``clip_is_min_max``); each node of a rule's replacement goes to the scalar section when all its
arguments are scalars, else to the tensor section.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..checker import live_statements
from ..context import SHAPE_INPUTS
from ..ir import Arg, Program
from ..needs import needs
from ..ops import OPS, OpKind
from ..rewrites import LOWERED, rule, substitute
from ..slots import SlotShape
from .tables import LOWERED_BY_RULE, Helper, form, helper_call, is_elementwise
from .text import _arg_text, _num


@dataclass(frozen=True)
class Val:
    """A value in generated code.

    kind "tensor": `name` is the SSA name of a tensor (``w``, ``g``, ``s0``, ``x4``); `full`
    says it has the parameter's full shape (else it is a reduced, broadcastable shape).
    kind "scalar": a value of the scalar section, delivered in slot `slot`.
    kind "const": the number `value`, also delivered in slot `slot` (for the pure path)."""

    kind: str
    name: str = ""
    full: bool = False
    slot: int = -1
    value: float = 0.0
    negated: bool = False  # eager code reads -F[slot] (set by the axpy lowering)

    @property
    def is_tensor(self) -> bool:
        return self.kind == "tensor"


@dataclass(frozen=True)
class TStmt:
    """``result = op(args)`` in the tensor section; `comment` is the rule statement it came
    from. `op` is an op of the table or a lowered torch form of `dsl.rewrites.LOWERED`."""

    op: str
    args: tuple[Val, ...]
    result: str
    full: bool
    comment: str


@dataclass
class Analysis:
    program: Program
    scalar_lines: list[str] = field(default_factory=list)  # code of the scalar section
    constants: list[float] = field(default_factory=list)  # k[i] in the scalar section
    slots: list[str] = field(default_factory=list)  # scalar-section expression per slot
    slot_notes: list[str] = field(default_factory=list)
    tensor: list[TStmt] = field(default_factory=list)
    step: Val = field(default_factory=lambda: Val("tensor", "g", True))
    finals: list[Val | None] = field(default_factory=list)  # None: the state is unchanged
    helpers: set[str] = field(default_factory=set)  # runtime_ops helpers the code calls


BARRIER_KINDS = (OpKind.GLOBAL, OpKind.GRADIENT)
LOSS_CODE = "a2"  # the scalar section's name of the loss, after lr (a0) and t (a1)


def is_barrier(op: str) -> bool:
    """A whole-group op (`global_sum`, `global_norm`, `grad_at`): the tensor code of every
    parameter stops before it and resumes after it (`dsl.export.group`)."""
    return op in OPS and OPS[op].kind in BARRIER_KINDS


def pure_code(path: str, op: str, args: list[str], small: list[bool] | None = None,
              shape: str = "w.shape") -> str:
    """`op` as a pure expression (the scalar section and `_rule`)."""
    entry = form(path, op)
    if isinstance(entry, Helper):
        return helper_call(op, args, small or [False] * len(args), shape)
    return entry(*args)


def fold(op: str, args: list[float]) -> float:
    """An op on constants, computed now in float64 by the op's own torch code."""
    with torch.no_grad():
        xs = [torch.tensor(x, dtype=torch.float64) for x in args]
        value = LOWERED[op].torch_fn(*xs) if op in LOWERED else OPS[op].torch_fn(0, *xs)
    return float(value)


@dataclass(frozen=True)
class _Scalar:
    """A value of the scalar section (its code there) that tensor code may read."""

    code: str
    note: str


class _Builder:
    """The state of one analysis: names of scalar-section values and of tensors so far."""

    def __init__(self, p: Program) -> None:
        self.a = Analysis(p)
        # scalar-section names of the inputs: a0 = lr, a1 = t, h{j} = hyperparameters
        self.scalar_code: dict[str, str] = {"lr": "a0", "t": "a1"}
        for j, (name, _) in enumerate(p.hyperparams):
            self.scalar_code[name] = f"h{j}"
        self.env: dict[str, Val] = {"w": Val("tensor", "w", True), "g": Val("tensor", "g", True)}
        for k, s in enumerate(p.state):  # a factored slot arrives stored, reduced
            self.env[s] = Val("tensor", f"s{k}", p.slot_shape(s) is SlotShape.FULL)
        read = needs(p)
        # context inputs (dsl.context): the loss is a scalar-section input; the shape scalars
        # (0-d tensors of the compute dtype) and the Hessian estimate are tensors per parameter
        if "loss" in read:
            self.scalar_code["loss"] = LOSS_CODE
        for name in SHAPE_INPUTS:
            if name in read:
                self.env[name] = Val("tensor", name, False)
        if "hess" in read:
            self.env["hess"] = Val("tensor", "hess", True)
        self.slot_of: dict[str, Val] = {}  # scalar-section code -> slotted value (dedup)
        self.const_index: dict[str, int] = {}
        self.computed: dict[str, str] = {}  # expression -> the scalar already holding it
        self.comment = ""

    # -- the scalar section
    def const_code(self, v: float) -> str:
        key = repr(float(v))  # keeps -0.0 apart from 0.0
        if key not in self.const_index:
            self.const_index[key] = len(self.a.constants)
            self.a.constants.append(float(v))
        return f"k[{self.const_index[key]}]"

    def new_scalar(self, op: str, codes: list[str]) -> str:
        if not is_elementwise(op):
            self.a.helpers.add(form("scalar", op).name)
        expr = pure_code("scalar", op, codes)
        if expr in self.computed:  # scalar-section names are assigned once: reuse is sound
            return self.computed[expr]
        name = self.computed[expr] = f"c{len(self.computed)}"
        self.a.scalar_lines.append(f"{name} = {expr}")
        return name

    def folded(self, value: float) -> str:
        name = f"c{len(self.computed)}"
        self.computed[f"<folded {name}>"] = name
        literal = _num(value)
        self.a.scalar_lines.append(f"{name} = torch.tensor({literal}, dtype=torch.float64)")
        return name

    def slotted(self, code: str, note: str) -> Val:
        v = self.slot_of.get(code)
        if v is None:
            v = self.slot_of[code] = Val("scalar", slot=len(self.a.slots))
            self.a.slots.append(code)
            self.a.slot_notes.append(note)
        return v

    def const_val(self, value: float) -> Val:
        slot = self.slotted(self.const_code(value), _num(value)).slot
        return Val("const", slot=slot, value=float(value))

    def as_val(self, arg: Arg) -> Val | _Scalar | float:
        """The value of `arg` for the tensor section: a tensor, or a scalar not yet slotted
        (only what tensor code reads gets a slot)."""
        if isinstance(arg, str):
            return self.env[arg] if arg in self.env else _Scalar(self.scalar_code[arg], arg)
        return float(arg)

    def slot(self, x: Val | _Scalar | float) -> Val:
        """`x` as tensor code reads it: a tensor, or a slotted scalar or constant."""
        if isinstance(x, Val):
            return x
        if isinstance(x, _Scalar):
            return self.slotted(x.code, x.note)
        return self.const_val(x)

    # -- one op of a statement (or of a rule's replacement)
    def scalar_node(self, op: str, args: tuple[str | float, ...]) -> str | float:
        """`op` on scalar-section codes (str) and constants (float): folded, or a line."""
        if all(isinstance(x, float) for x in args):
            return fold(op, [float(x) for x in args])
        return self.new_scalar(op, [x if isinstance(x, str) else self.const_code(x)
                                    for x in args])

    def tensor_node(self, op: str, args: tuple[Val | _Scalar | float, ...]
                    ) -> Val | _Scalar | float:
        """`op` in the tensor section: a tensor statement, or (all arguments scalars) a value
        of the scalar section."""
        if is_barrier(op):  # a whole-group op: never folded, never in the scalar section
            vals = [self.slot(x) for x in args]
            name = f"x{len(self.a.tensor)}"
            full = OPS[op].kind is OpKind.GRADIENT  # a gradient per parameter; else a 0-d value
            self.a.tensor.append(TStmt(op, tuple(vals), name, full, self.comment))
            return Val("tensor", name, full)
        if not any(isinstance(x, Val) for x in args):
            codes = tuple(x.code if isinstance(x, _Scalar) else x for x in args)
            code = self.scalar_node(op, codes)  # type: ignore[arg-type]
            if isinstance(code, float):
                return code
            notes = [x.note if isinstance(x, _Scalar) else _num(x) for x in args]
            return _Scalar(code, pure_code("scalar", op, notes))
        vals = [self.slot(x) for x in args]
        name = f"x{len(self.a.tensor)}"
        if is_elementwise(op):
            full = any(v.is_tensor and v.full for v in vals)
        else:
            helper = form("pure", op)
            self.a.helpers.add(helper.name)
            full = not helper.reduced
        self.a.tensor.append(TStmt(op, tuple(vals), name, full, self.comment))
        return Val("tensor", name, full)


def _lowered(op: str, args: tuple, make):
    """`op(*args)`, rewritten by its rule when the analysis lowers it, built by `make`."""
    if op in LOWERED_BY_RULE:
        r = rule(LOWERED_BY_RULE[op])
        bindings = {v.name: x for v, x in zip(r.lhs.args, args)}
        return substitute(r.rhs, bindings, make)
    return make(op, args)


def analyse(p: Program) -> Analysis:
    b = _Builder(p)
    a = b.a
    live = live_statements(p)
    for i, s in enumerate(p.body):
        if i not in live:
            continue
        b.comment = f"{s.target} = {s.op}({', '.join(_arg_text(x) for x in s.args)})"
        if not is_barrier(s.op) and all(not isinstance(x, str) or x not in b.env
                                        for x in s.args):  # scalars only
            if all(not isinstance(x, str) for x in s.args):
                name = b.folded(fold(s.op, [float(x) for x in s.args]))
            else:
                codes = tuple(b.scalar_code[x] if isinstance(x, str) else float(x)
                              for x in s.args)
                result = _lowered(s.op, codes, b.scalar_node)
                name = result if isinstance(result, str) else b.folded(result)
            b.scalar_code[s.target] = name
            b.env.pop(s.target, None)
            if a.scalar_lines and a.scalar_lines[-1].startswith(f"{name} = "):
                a.scalar_lines[-1] += f"  # {b.comment}"
            continue
        val = _lowered(s.op, tuple(b.as_val(x) for x in s.args), b.tensor_node)
        if isinstance(val, Val) and val.is_tensor:
            b.env[s.target] = val
            b.scalar_code.pop(s.target, None)
        else:  # a rule whose replacement drops the tensor arguments (none does today)
            b.scalar_code[s.target] = (val.code if isinstance(val, _Scalar)
                                       else b.folded(float(val)))  # type: ignore[arg-type]
            b.env.pop(s.target, None)

    a.step = b.slot(b.as_val(p.returns[0]))
    for k, ret in enumerate(p.returns[1:]):
        v = b.slot(b.as_val(ret))
        a.finals.append(None if v.is_tensor and v.name == f"s{k}" else v)
    return a
