"""Export: a rule as the source of a standalone, drop-in `torch.optim.Optimizer` module.

    >>> source = export_module(program, "MyAdam", provenance="seed 'adam'")
    >>> open("my_adam.py", "w").write(source)           # imports torch and nothing else
    >>> MyAdam = optimizer_class(program)               # or import it in memory

The generated module holds one `torch.optim.Optimizer` subclass:

* constructor ``(params, lr=<default>, <each hyperparameter by name>=<default>, *,
  betas=None, maximize=False, foreach=None, compile=False)``; where the rule has
  ``beta1, beta2, ...`` the param groups carry them as one ``betas`` tuple, as torch's
  optimizers do (so schedulers that cycle ``betas[0]`` work), and ``betas=(...)`` is accepted;
* hyperparameters are named as `dsl.roles.export_names` decides: a torch convention name
  (``weight_decay``, ``beta1``..., ``momentum``, ``eps``) only where the rule still uses it in
  that role, else ``c_<name>``; one the rule never reads is dropped. A param group (or a
  loaded state dict) that sets a renamed or dropped name is refused, since the rule would
  ignore it;
* values are checked as torch.optim.Adam checks them, with its messages: ``lr`` NaN or
  negative, betas outside [0, 1), negative ``eps``, ``weight_decay`` or ``momentum``;
  ``maximize=True`` runs the rule on -g;
* ``step(closure=None)`` with torch's closure semantics; parameters without a gradient are
  skipped; sparse gradients and complex parameters are refused with a clear message;
* per-parameter state: the rule's state tensors (zeros at the first step, stored under the
  rule's state names) and ``step``, the parameter's own 1-based step count ``t``;
* three paths computing the same rule: per parameter (the default on CPU), ``foreach``
  (``torch._foreach_*`` over all parameters of a group; the default when they are all on
  CUDA) and ``compile=True`` (one ``torch.compile``d function for a group);
* float64 and float32 parameters are updated in their own dtype; bfloat16 and float16
  parameters keep their state in float32, the rule runs in float32 and the parameter is
  rounded once per step;
* ``state_dict()`` / ``load_state_dict()`` round trip exactly (float32 state of low-precision
  parameters included, which torch's loader would otherwise cast down); a state dict of
  another optimizer (other state names, missing hyperparameters) is a ValueError naming what
  is missing and extra, at load time rather than as a KeyError at the next step.

How the rule becomes code
-------------------------
The program (dead statements dropped) is split by the checker's kinds:

* the *scalar section*, every statement whose arguments are all scalars (``lr``, ``t``,
  hyperparameters, constants: bias corrections, schedules). It runs once per group and step
  count on 0-d float64 tensors, so it follows IEEE-754 exactly as the interpreter does
  (``0 ** -1 == inf``, ``sqrt(-1)`` is NaN), in double precision as torch.optim computes its
  scalars; its results reach the tensor code as Python floats (eager paths) or as one 0-d
  tensor each in the parameter's compute dtype (compiled path);
* the *tensor section*, everything else, rendered three times: a pure function ``_rule``
  (what ``compile=True`` traces, and the clearest statement of the rule), and two eager
  updaters (per parameter and foreach) that write results into buffers that die at the same
  statement and into the state tensors directly, the way hand-written optimizers use
  in-place ops, so that the eager paths allocate little.

Reductions keep their reduced shape (``norm(x)`` is a 0-d or all-ones-shaped tensor) and
broadcast where they are used, instead of materialising the broadcast copy the interpreter
makes; their values are the same. Generated identifiers are positional (``x3``, ``s0``,
``F[2]``), so no name in a rule can collide with Python, torch or the generated code. Only
hyperparameters keep their names (or take ``c_`` names, above), as the constructor's
keywords; where Python would mangle one inside a class (``__x``), the constructor is defined
outside it. The rule's docstring and
source are embedded as string literals that read back exactly, whatever characters they hold.

`tests/dsl/test_export.py` checks every path against the reference interpreter;
`tests/dsl/test_export_inputs.py` checks odd docstrings and names;
`tests/dsl/test_export_faithful.py` checks names, roles, maximize and validation.
"""

from __future__ import annotations

import builtins
import dataclasses
import importlib.machinery
import keyword
import linecache
import math
import re
import sys
import types
import unicodedata
from dataclasses import dataclass, field

import torch

from .checker import ensure_valid, live_statements
from .hashing import structural_hash
from .ir import INPUTS, Arg, Program
from .latex import to_latex
from .ops import NS_COEFFS, NS_EPS, NS_STEPS, OPS, OpKind
from .printer import format_program
from .roles import ExportNames, export_names

__all__ = ["ExportError", "export_module", "optimizer_class", "default_class_name",
           "DEFAULT_LR", "RESERVED_HYPERPARAMETER_NAMES"]

DEFAULT_LR = 1e-3
RESERVED_HYPERPARAMETER_NAMES = frozenset(
    {"params", "self", "lr", "betas", "foreach", "compile", "maximize", "initial_lr"})
"""Names a hyperparameter cannot have: the constructor's own arguments and the param-group
keys that torch (or its lr schedulers) use."""

# Names the generated module imports or defines at top level; a class name may not shadow
# them. tests/dsl/test_export_inputs.py checks that every global an export reads or binds is
# one of these, a builtin or a dunder.
_MODULE_NAMES = frozenset({
    "torch", "RULE_NAME", "RULE_SOURCE", "PROVENANCE", "STRUCTURAL_HASH", "_STATE_KEYS",
    "_HYPER_NAMES", "_BETA_NAMES", "_LOW_PRECISION", "_scalars", "_rule", "_update_param",
    "_update_foreach", "_update_fused", "_compiled_update", "_COMPILED", "_scalar_like",
    "_norm", "_rms", "_mean", "_sum", "_orth", "_row_mean", "_col_mean", "_NS_COEFFS",
    "_DEFAULT_BETAS", "_number", "_betas_tuple", "_init", "_RENAMED", "_CHECKED",
    "_check_ranges", "_refuse_renamed"})
# The generated module calls builtins (float, super, zip, isinstance, ...); a class named like
# any builtin could shadow one of them.
_BUILTIN_NAMES = frozenset(dir(builtins))


class ExportError(ValueError):
    """A program that cannot be exported as asked (an invalid class name, a hyperparameter
    whose name clashes with the optimizer's own arguments). Invalid rules raise
    `dsl.RuleError` instead, with the checker's positioned diagnostics."""


# =============================================================================================
# Analysis: the program as a scalar section and a tensor section of single ops
# =============================================================================================

_ELEMENTWISE_INPLACE = frozenset({
    "add", "sub", "mul", "div", "pow", "neg", "abs", "sign", "sqrt", "rsqrt", "square", "exp",
    "log", "tanh", "arctan", "min", "max", "lerp", "axpy"})
_REDUCTIONS = frozenset({"norm", "rms", "mean", "dot"})
_UNARY_TORCH = {"neg": "neg", "abs": "abs", "sign": "sign", "sqrt": "sqrt", "rsqrt": "rsqrt",
                "exp": "exp", "log": "log", "tanh": "tanh", "arctan": "atan"}


@dataclass(frozen=True)
class _Val:
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
    negated: bool = False  # eager code reads -F[slot] (set by the axpy fusion)

    @property
    def is_tensor(self) -> bool:
        return self.kind == "tensor"


@dataclass(frozen=True)
class _TStmt:
    """``result = op(args)`` in the tensor section; `comment` is the rule statement it came
    from. `op` is an op of the table, or "lerp" (``torch.lerp(start, end, weight)``), the form
    `interp` is lowered to."""

    op: str
    args: tuple[_Val, ...]
    result: str
    full: bool
    comment: str


@dataclass
class _Analysis:
    program: Program
    scalar_lines: list[str] = field(default_factory=list)  # code of the scalar section
    constants: list[float] = field(default_factory=list)  # k[i] in the scalar section
    slots: list[str] = field(default_factory=list)  # scalar-section expression per slot
    slot_notes: list[str] = field(default_factory=list)
    tensor: list[_TStmt] = field(default_factory=list)
    step: _Val = field(default_factory=lambda: _Val("tensor", "g", True))
    finals: list[_Val | None] = field(default_factory=list)  # None: the state is unchanged
    uses_math_helpers: set[str] = field(default_factory=set)


def _analyse(p: Program) -> _Analysis:
    a = _Analysis(p)
    live = live_statements(p)
    # scalar-section names of the inputs: a0 = lr, a1 = t, h{j} = hyperparameters
    scalar_code: dict[str, str] = {"lr": "a0", "t": "a1"}
    for j, (name, _) in enumerate(p.hyperparams):
        scalar_code[name] = f"h{j}"
    env: dict[str, _Val] = {"w": _Val("tensor", "w", True), "g": _Val("tensor", "g", True)}
    for k, s in enumerate(p.state):
        env[s] = _Val("tensor", f"s{k}", True)
    scalar_val: dict[str, _Val] = {}  # scalar-section code -> slotted value (dedup)
    const_index: dict[str, int] = {}

    def const_code(v: float) -> str:
        key = repr(float(v))  # keeps -0.0 apart from 0.0
        if key not in const_index:
            const_index[key] = len(a.constants)
            a.constants.append(float(v))
        return f"k[{const_index[key]}]"

    def scalar_arg_code(arg: Arg) -> str:
        if isinstance(arg, str):
            return scalar_code[arg]
        return const_code(arg)

    def slotted(code: str, note: str) -> _Val:
        v = scalar_val.get(code)
        if v is None:
            v = scalar_val[code] = _Val("scalar", slot=len(a.slots))
            a.slots.append(code)
            a.slot_notes.append(note)
        return v

    def as_val(arg: Arg, note: str) -> _Val:
        """The value of `arg` for the tensor section."""
        if isinstance(arg, str):
            if arg in env:
                return env[arg]
            return slotted(scalar_code[arg], note or arg)
        slot = slotted(const_code(arg), _num(arg)).slot
        return _Val("const", slot=slot, value=float(arg))

    counter = [0]
    computed: dict[str, str] = {}  # expression -> the scalar already holding it

    def new_scalar(op: str, args: list[str]) -> str:
        expr = _pure_expr(op, args, [False] * len(args))
        if expr in computed:  # scalar-section names are assigned once: reuse is sound
            return computed[expr]
        name = computed[expr] = f"c{counter[0]}"
        counter[0] += 1
        a.scalar_lines.append(f"{name} = {expr}")
        return name

    for i, s in enumerate(p.body):
        if i not in live:
            continue
        comment = f"{s.target} = {s.op}({', '.join(_arg_text(x) for x in s.args)})"
        is_scalar = all(not isinstance(x, str) or x not in env for x in s.args)
        if is_scalar:
            args = [scalar_arg_code(x) for x in s.args]
            op = OPS[s.op]
            if op.kind is OpKind.MATRIX:  # the checker refuses this; never reached
                raise ExportError(f"{s.op}() of a scalar")
            if all(not isinstance(x, str) for x in s.args) and s.op != "interp":
                name = f"c{counter[0]}"  # folded now, by the op's own torch code
                counter[0] += 1
                literal = _folded_literal(s.op, [float(x) for x in s.args])
                a.scalar_lines.append(f"{name} = torch.tensor({literal}, dtype=torch.float64)")
            elif s.op == "interp":
                weight = new_scalar("sub", [const_code(1.0), args[2]])
                name = new_scalar("lerp", [args[1], args[0], weight])
            elif s.op in ("norm", "rms"):
                name = new_scalar("abs", args)
            elif s.op == "mean":
                name = new_scalar("pos", args)
            elif s.op == "dot":
                name = new_scalar("mul", args)
            elif s.op == "clip":
                low = new_scalar("max", args[:2])
                name = new_scalar("min", [low, args[2]])
            else:
                name = new_scalar(s.op, args)
            scalar_code[s.target] = name
            env.pop(s.target, None)
            if a.scalar_lines and a.scalar_lines[-1].startswith(f"{name} = "):
                a.scalar_lines[-1] += f"  # {comment}"
            continue

        def emit(op: str, vals: list[_Val]) -> _Val:
            name = f"x{len(a.tensor)}"
            full = _is_full(op, vals)
            a.tensor.append(_TStmt(op, tuple(vals), name, full, comment))
            if op in ("norm", "rms", "mean", "dot", "orth", "row_mean", "col_mean"):
                a.uses_math_helpers.add("_sum" if op == "dot" else f"_{op}")
            return _Val("tensor", name, full)

        if s.op == "interp":  # torch.lerp(y, x, 1 - a), as the interpreter computes it
            x, y = as_val(s.args[0], ""), as_val(s.args[1], "")
            a_arg = s.args[2]
            if isinstance(a_arg, str) and a_arg in env:
                weight = emit("sub", [as_val(1.0, "1"), env[a_arg]])
            else:  # 1 - a, once per step in the scalar section
                code = new_scalar("sub", [const_code(1.0), scalar_arg_code(a_arg)])
                weight = slotted(code, f"1 - {_arg_text(a_arg)}")
                if not isinstance(a_arg, str):
                    weight = _Val("const", slot=weight.slot, value=1.0 - float(a_arg))
            val = emit("lerp", [y, x, weight])
        elif s.op == "clip":
            x, lo, hi = (as_val(v, "") for v in s.args)
            if x.is_tensor or lo.is_tensor:
                low = emit("max", [x, lo])
            else:  # max of two scalars belongs to the scalar section
                low = slotted(new_scalar("max", [a.slots[x.slot], a.slots[lo.slot]]),
                              f"max({_arg_text(s.args[0])}, {_arg_text(s.args[1])})")
            val = emit("min", [low, hi])
        else:
            val = emit(s.op, [as_val(v, "") for v in s.args])
        env[s.target] = val
        scalar_code.pop(s.target, None)

    def final(arg: Arg) -> _Val:
        if isinstance(arg, str) and arg in env:
            return env[arg]
        if isinstance(arg, str):
            return slotted(scalar_code[arg], arg)
        return as_val(arg, "")

    a.step = final(p.returns[0])
    for k, (s, ret) in enumerate(zip(p.state, p.returns[1:])):
        v = final(ret)
        a.finals.append(None if v.is_tensor and v.name == f"s{k}" else v)
    return a


def _is_full(op: str, vals: list[_Val]) -> bool:
    if op in _REDUCTIONS or op in ("row_mean", "col_mean"):
        return False
    if op == "orth":
        return True
    return any(v.is_tensor and v.full for v in vals)


def _folded_literal(op: str, args: list[float]) -> str:
    """An op on constants, computed now in float64 by the op's own torch code."""
    with torch.no_grad():
        value = float(OPS[op].torch_fn(0, *(torch.tensor(x, dtype=torch.float64)
                                             for x in args)))
    return _num(value)


def _num(v: float) -> str:
    """A Python literal for the float `v` (non-finite values included)."""
    v = float(v)
    if math.isnan(v):
        return 'float("nan")'
    if math.isinf(v):
        return 'float("inf")' if v > 0 else '-float("inf")'
    return repr(v)


def _arg_text(a: Arg) -> str:
    return a if isinstance(a, str) else _num(a)


# =============================================================================================
# Rendering: pure code (0-d tensors for every scalar), used by the scalar section and _rule
# =============================================================================================

def _pure_expr(op: str, args: list[str], small: list[bool], shape: str = "w.shape") -> str:
    """One op as an expression over tensors (scalars are 0-d tensors), as the interpreter
    computes it. `small[i]` marks a tensor argument of reduced shape, expanded to `shape`
    before a reduction or matrix op reads it."""
    if op in ("norm", "rms", "mean", "row_mean", "col_mean", "orth", "dot"):
        if op == "dot":
            prod = f"{args[0]} * {args[1]}"
            inner = f"({prod}).expand({shape})" if any(small) else prod
            return f"_sum({inner})"
        x = f"{args[0]}.expand({shape})" if small[0] else args[0]
        return f"_{op}({x})"
    binary = {"add": "+", "sub": "-", "mul": "*", "div": "/"}
    if op in binary:
        return f"{args[0]} {binary[op]} {args[1]}"
    if op == "pow":
        return f"torch.pow({args[0]}, {args[1]})"
    if op == "square":
        return f"{args[0]} * {args[0]}"
    if op == "pos":
        return args[0]
    if op in _UNARY_TORCH:
        return f"torch.{_UNARY_TORCH[op]}({args[0]})"
    if op == "min":
        return f"torch.minimum({args[0]}, {args[1]})"
    if op == "max":
        return f"torch.maximum({args[0]}, {args[1]})"
    if op == "lerp":
        return f"torch.lerp({args[0]}, {args[1]}, {args[2]})"
    raise AssertionError(f"no pure form for {op}")


def _render_scalars(a: _Analysis, hyper_names: list[str]) -> list[str]:
    inputs = ["a0", "a1"] + [f"h{j}" for j in range(len(hyper_names))]
    doc = ("The rule's scalar-only values for one step, in float64 (IEEE-754, like the "
           "interpreter):\n    values = [lr, t" + "".join(f", {h}" for h in hyper_names)
           + "]. Returns one float64 tensor of slots, read by the tensor code as F[i] / S[i].")
    out = ["def _scalars(values):", f'    """{doc}"""']
    out.append(f"    {', '.join(inputs)} = torch.tensor(values, dtype=torch.float64).unbind()")
    if a.constants:
        consts = ", ".join(_num(c) for c in a.constants)
        out.append(f"    k = torch.tensor([{consts}], dtype=torch.float64).unbind()")
    out.extend("    " + line for line in a.scalar_lines)
    if a.slots:
        notes = "".join(f"\n    # S[{i}]: {n}" for i, n in enumerate(a.slot_notes))
        out.append(notes.lstrip("\n"))
        out.append(f"    return torch.stack([{', '.join(a.slots)}])")
    else:
        out.append("    return torch.empty(0, dtype=torch.float64)")
    return out


def _pure_arg(v: _Val) -> str:
    return v.name if v.is_tensor else f"S[{v.slot}]"


def _render_rule(a: _Analysis) -> list[str]:
    p = a.program
    states = [f"s{k}" for k in range(len(p.state))]
    sig = ", ".join(["w", "g"] + states + ["S"])
    rets = ["step"] + [f"new {s}" for s in p.state]
    out = [f"def _rule({sig}):",
           f'    """One step of the rule on one tensor, without side effects: returns '
           f'({", ".join(rets)}).\n    Scalars arrive as 0-d tensors S[i] of the compute '
           f'dtype (see _scalars)."""']
    for st in a.tensor:
        small = [v.is_tensor and not v.full for v in st.args]
        expr = _pure_expr(st.op, [_pure_arg(v) for v in st.args], small)
        out.append(f"    {st.result} = {expr}  # {st.comment}")
    inputs = {"w", "g", *states}

    def ret(v: _Val) -> str:
        code = _pure_arg(v)
        # an input returned as is must not alias the tensor the caller overwrites
        return f"{code}.clone()" if v.is_tensor and v.name in inputs else code

    values = [ret(a.step)] + [("s%d" % k) if f is None else ret(f)
                              for k, f in enumerate(a.finals)]
    out.append(f"    return {', '.join(values)}")
    return out


# =============================================================================================
# Rendering: eager code with in-place buffers (per parameter and foreach)
# =============================================================================================

@dataclass
class _Plan:
    """Where each tensor value lives in the eager updaters. `buffer[v]` is the variable that
    holds value v (itself, a dying operand's buffer it was computed into, or a state)."""

    stmts: list[_TStmt]
    dest: list[str | None]  # per statement: the buffer written in place, or None (fresh)
    buffer: dict[str, str]
    alpha: tuple[_Val, _Val] | None  # (X, s): apply w.add_(X, alpha=-s) instead of a step
    free_after: list[list[str]]  # per statement: temporaries dead after it (del them)


def _plan(a: _Analysis, inplace_ok) -> _Plan:
    """Decide in-place destinations. `inplace_ok(stmt, dest_buffer, buffer_of)` says whether
    the renderer can write `stmt` into `dest_buffer`."""
    stmts = list(a.tensor)
    alpha = None
    step = a.step
    # step = s * X with a scalar s, read by nothing else: apply w.add_(X, alpha=-s) and never
    # materialise the step (one pass over memory less)
    producer = [j for j, st in enumerate(stmts) if st.result == step.name]
    if producer and stmts[producer[0]].op == "mul":
        j = producer[0]
        x, y = stmts[j].args
        read_later = any(v.is_tensor and v.name == step.name for st in stmts for v in st.args)
        is_final = any(f is not None and f.is_tensor and f.name == step.name
                       for f in a.finals)
        if x.is_tensor != y.is_tensor and not read_later and not is_final:
            alpha = (x, y) if x.is_tensor else (y, x)
            stmts = stmts[:j] + stmts[j + 1:]
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
    final_of = {}
    for k, f in enumerate(a.finals):
        if f is not None and f.is_tensor:
            final_of.setdefault(f.name, k)
    returned = {v.name for v in end_reads if v.is_tensor}

    buffer: dict[str, str] = {"w": "w", "g": "g"}
    for k in range(len(a.program.state)):
        buffer[f"s{k}"] = f"s{k}"
    holder: dict[str, str] = {b: b for b in buffer}  # buffer -> value it holds now
    dest: list[str | None] = []
    for i, st in enumerate(stmts):
        chosen = None
        if st.op in _ELEMENTWISE_INPLACE and st.full:
            k = final_of.get(st.result)
            if k is not None:
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
    return _Plan(stmts, dest, buffer, alpha, free_after)


def _fuse_axpy(stmts: list[_TStmt], protected: set[str]) -> list[_TStmt]:
    """``X = s * B`` read only by ``A + X``, ``X + A`` or ``A - X`` (A, B tensors, s a
    scalar) becomes one ``axpy(A, B, ±s)``: torch's ``add(A, B, alpha=s)``, without the
    temporary X."""
    reads: dict[str, int] = {}
    for st in stmts:
        for v in st.args:
            if v.is_tensor:
                reads[v.name] = reads.get(v.name, 0) + 1
    producer = {st.result: j for j, st in enumerate(stmts)}
    dropped: set[int] = set()
    out = list(stmts)
    for i, st in enumerate(stmts):
        if st.op not in ("add", "sub") or not all(v.is_tensor for v in st.args):
            continue
        candidates = [1, 0] if st.op == "add" else [1]
        for pos in candidates:
            x = st.args[pos]
            j = producer.get(x.name)
            if (j is None or j in dropped or reads.get(x.name) != 1 or x.name in protected
                    or stmts[j].op != "mul"):
                continue
            u, v = stmts[j].args
            if u.is_tensor == v.is_tensor:
                continue
            b, scale = (u, v) if u.is_tensor else (v, u)
            if st.op == "sub":
                scale = dataclasses.replace(scale, negated=not scale.negated,
                                            value=-scale.value)
            a_ = st.args[1 - pos]
            out[i] = _TStmt("axpy", (a_, b, scale), st.result, a_.full or b.full,
                            f"{st.comment}; {stmts[j].comment}")
            dropped.add(j)
            break
    return [st for j, st in enumerate(out) if j not in dropped]


def _eager_arg(v: _Val, plan: _Plan) -> str:
    if v.is_tensor:
        return plan.buffer[v.name]
    if v.kind == "const":
        text = _num(v.value)
        return f"({text})" if text.startswith("-") else text
    return f"(-F[{v.slot}])" if v.negated else f"F[{v.slot}]"


class _PerParam:
    """Per-parameter eager rendering: `torch.op(..., out=dest)` or `x.op_()`."""

    @staticmethod
    def inplace_ok(st: _TStmt, dest: str, buffer) -> bool:
        return True  # every elementwise form has an out= variant

    @staticmethod
    def render(st: _TStmt, dest: str | None, plan: _Plan) -> str:
        args = [_eager_arg(v, plan) for v in st.args]
        tens = [v.is_tensor for v in st.args]
        op = st.op
        if op in ("norm", "rms", "mean", "row_mean", "col_mean", "orth", "dot"):
            small = [v.is_tensor and not v.full for v in st.args]
            return f"{st.result} = {_pure_expr(op, args, small)}"
        if dest is None:
            return f"{st.result} = {_PerParam.expr(op, args, tens)}"
        return _PerParam.inplace(op, args, tens, dest)

    @staticmethod
    def expr(op: str, args: list[str], tens: list[bool]) -> str:
        if op in ("add", "sub", "mul"):
            sym = {"add": "+", "sub": "-", "mul": "*"}[op]
            return f"{args[0]} {sym} {args[1]}"  # number - tensor is torch.rsub: exact
        if op == "div":
            if tens[0]:
                return f"{args[0]} / {args[1]}"
            # not `number / tensor`: torch computes that as reciprocal(tensor) * number
            return f"torch.div(_scalar_like({args[0]}, {args[1]}), {args[1]})"
        if op == "pow":
            return f"torch.pow({args[0]}, {args[1]})"
        if op == "square":
            return f"{args[0]} * {args[0]}"
        if op in _UNARY_TORCH:
            return f"torch.{_UNARY_TORCH[op]}({args[0]})"
        if op in ("min", "max"):
            fn = "minimum" if op == "min" else "maximum"
            bound = "max" if op == "min" else "min"
            if tens[0] and tens[1]:
                return f"torch.{fn}({args[0]}, {args[1]})"
            x, s = (args[0], args[1]) if tens[0] else (args[1], args[0])
            return f"torch.clamp({x}, {bound}={s})"
        if op == "axpy":
            return f"torch.add({args[0]}, {args[1]}, alpha={args[2]})"
        if op == "lerp":
            start, end, weight = args
            like = next(a for a, t in zip(args, tens) if t)
            if not tens[0]:
                start = f"_scalar_like({start}, {like}, True)"
            if not tens[1]:
                end = f"_scalar_like({end}, {like}, True)"
            return f"torch.lerp({start}, {end}, {weight})"
        raise AssertionError(op)

    @staticmethod
    def inplace(op: str, args: list[str], tens: list[bool], d: str) -> str:
        if op == "axpy":
            return (f"{d}.add_({args[1]}, alpha={args[2]})" if d == args[0]
                    else f"torch.add({args[0]}, {args[1]}, alpha={args[2]}, out={d})")
        if op in ("add", "mul"):
            x, y = (args[0], args[1]) if tens[0] else (args[1], args[0])
            if d == x:
                return f"{d}.{op}_({y})"
            return f"torch.{op}({x}, {y}, out={d})"
        if op == "sub":
            if tens[0]:
                return (f"{d}.sub_({args[1]})" if d == args[0]
                        else f"torch.sub({args[0]}, {args[1]}, out={d})")
            return f"torch.sub({args[1]}, {args[0]}, out={d}).neg_()"  # -(x - s) == s - x
        if op == "div":
            if tens[0]:
                return (f"{d}.div_({args[1]})" if d == args[0]
                        else f"torch.div({args[0]}, {args[1]}, out={d})")
            return f"torch.div(_scalar_like({args[0]}, {args[1]}), {args[1]}, out={d})"
        if op == "pow":
            if tens[0] and d == args[0]:
                return f"{d}.pow_({args[1]})"
            return f"torch.pow({args[0]}, {args[1]}, out={d})"
        if op == "square":
            return f"{d}.mul_({d})" if d == args[0] else f"torch.mul({args[0]}, {args[0]}, out={d})"
        if op in _UNARY_TORCH:
            fn = _UNARY_TORCH[op]
            return f"{d}.{fn}_()" if d == args[0] else f"torch.{fn}({args[0]}, out={d})"
        if op in ("min", "max"):
            fn = "minimum" if op == "min" else "maximum"
            bound = "max" if op == "min" else "min"
            if tens[0] and tens[1]:
                return f"torch.{fn}({args[0]}, {args[1]}, out={d})"
            x, s = (args[0], args[1]) if tens[0] else (args[1], args[0])
            return f"{d}.clamp_({bound}={s})" if d == x else f"torch.clamp({x}, {bound}={s}, out={d})"
        if op == "lerp":
            if tens[0] and tens[1] and d == args[0]:
                return f"{d}.lerp_({args[1]}, {args[2]})"
            expr = _PerParam.expr(op, args, tens)
            return expr[:-1] + f", out={d})"
        raise AssertionError(op)


class _Foreach:
    """foreach rendering over lists: `torch._foreach_op(_)`; an op without a foreach form
    (reductions, matrix ops, a number divided by a tensor, lerp from a number) becomes a list
    comprehension over the per-parameter form."""

    @staticmethod
    def inplace_ok(st: _TStmt, dest: str, buffer) -> bool:
        return _Foreach.inplace(st, dest, buffer) is not None

    @staticmethod
    def inplace(st: _TStmt, d: str, buffer, plan: _Plan | None = None) -> str | None:
        """The in-place form writing into `d`, or None: foreach ops write into their first
        operand only (add, mul, min and max commute)."""
        op, vals = st.op, st.args
        names = [buffer[v.name] if v.is_tensor else None for v in vals]
        tens = [v.is_tensor for v in vals]
        # while planning only the shape of the answer matters; rendering needs the arguments
        args = [_eager_arg(v, plan) for v in vals] if plan else [str(n) for n in names]
        if op == "axpy":
            return (f"torch._foreach_add_({d}, {args[1]}, alpha={args[2]})" if names[0] == d
                    else None)
        if op in ("add", "mul") and any(n == d for n in names):
            other = args[1] if names[0] == d else args[0]
            return f"torch._foreach_{op}_({d}, {other})"
        if op in ("sub", "div") and names[0] == d:
            return f"torch._foreach_{op}_({d}, {args[1]})"
        if op == "sub" and not tens[0] and names[1] == d:
            return f"torch._foreach_neg_({d})\n    torch._foreach_add_({d}, {args[0]})"
        if op == "pow" and names[0] == d:
            return f"torch._foreach_pow_({d}, {args[1]})"
        if op == "square" and names[0] == d:
            return f"torch._foreach_mul_({d}, {d})"
        if op in _UNARY_TORCH and names[0] == d:
            return f"torch._foreach_{_UNARY_TORCH[op]}_({d})"
        if op in ("min", "max") and any(n == d for n in names):
            other = args[1] if names[0] == d else args[0]
            other_tensor = tens[1] if names[0] == d else tens[0]
            if other_tensor:
                fn = "minimum" if op == "min" else "maximum"
            else:
                fn = "clamp_max" if op == "min" else "clamp_min"
            return f"torch._foreach_{fn}_({d}, {other})"
        if op == "lerp" and names[0] == d and tens[1]:
            return f"torch._foreach_lerp_({d}, {args[1]}, {args[2]})"
        return None

    @staticmethod
    def render(st: _TStmt, dest: str | None, plan: _Plan) -> str:
        if dest is not None:
            code = _Foreach.inplace(st, dest, plan.buffer, plan=plan)
            assert code is not None
            return code
        op = st.op
        args = [_eager_arg(v, plan) for v in st.args]
        tens = [v.is_tensor for v in st.args]
        expr = None
        if op == "axpy":
            expr = f"torch._foreach_add({args[0]}, {args[1]}, alpha={args[2]})"
        elif op in ("add", "mul"):
            x, y = (args[0], args[1]) if tens[0] else (args[1], args[0])
            expr = f"torch._foreach_{op}({x}, {y})"
        elif op == "sub":
            expr = (f"torch._foreach_sub({args[0]}, {args[1]})" if tens[0] else
                    f"torch._foreach_add(torch._foreach_neg({args[1]}), {args[0]})")
        elif op == "div" and tens[0]:
            expr = f"torch._foreach_div({args[0]}, {args[1]})"
        elif op == "pow":
            expr = f"torch._foreach_pow({args[0]}, {args[1]})"
        elif op == "square":
            expr = f"torch._foreach_mul({args[0]}, {args[0]})"
        elif op in _UNARY_TORCH:
            expr = f"torch._foreach_{_UNARY_TORCH[op]}({args[0]})"
        elif op in ("min", "max"):
            if tens[0] and tens[1]:
                fn = "minimum" if op == "min" else "maximum"
                expr = f"torch._foreach_{fn}({args[0]}, {args[1]})"
            else:
                x, s = (args[0], args[1]) if tens[0] else (args[1], args[0])
                fn = "clamp_max" if op == "min" else "clamp_min"
                expr = f"torch._foreach_{fn}({x}, {s})"
        elif op == "lerp" and tens[0] and tens[1]:
            expr = f"torch._foreach_lerp({args[0]}, {args[1]}, {args[2]})"
        if expr is None:
            expr = _Foreach.comprehension(st, plan)
        return f"{st.result} = {expr}"

    @staticmethod
    def comprehension(st: _TStmt, plan: _Plan) -> str:
        """The per-parameter expression, once per tensor of the lists."""
        lists = []
        per: list[str] = []
        for v in st.args:
            if v.is_tensor:
                lists.append(plan.buffer[v.name])
                per.append(f"e{len(lists) - 1}")
            else:
                per.append(_eager_arg(v, plan))
        tens = [v.is_tensor for v in st.args]
        op = st.op
        if op in ("norm", "rms", "mean", "row_mean", "col_mean", "orth", "dot"):
            small = [v.is_tensor and not v.full for v in st.args]
            inner = _pure_expr(op, per, small, shape="ew.shape")
        else:
            inner = _PerParam.expr(op, per, tens)
        names = ", ".join(f"e{i}" for i in range(len(lists)))
        zipped = ", ".join(lists)
        if "ew.shape" in inner:
            return f"[{inner} for ew, {names} in zip(w, {zipped})]"
        if len(lists) == 1:
            return f"[{inner} for {names} in {zipped}]"
        return f"[{inner} for {names} in zip({zipped})]"


def _render_eager(a: _Analysis, style) -> list[str]:
    p = a.program
    foreach = style is _Foreach
    plan = _plan(a, style.inplace_ok)
    states = [f"s{k}" for k in range(len(p.state))]
    if foreach:
        head = f"def _update_foreach({', '.join(['w', 'g'] + states + ['F'])}):"
        doc = ('    """One step of the rule on lists of tensors with torch._foreach_* ops: '
               'updates the\n    parameters w and the state lists in place. F: the '
               'scalars as floats."""')
    else:
        head = f"def _update_param({', '.join(['w', 'g'] + states + ['F'])}):"
        doc = ('    """One step of the rule on one tensor: updates the parameter w and the '
               'state in place.\n    F: the scalars as floats (see _scalars)."""')
    out = [head, doc]
    for st, dest, free in zip(plan.stmts, plan.dest, plan.free_after):
        code = style.render(st, dest, plan)
        lines = code.split("\n")
        lines[0] = f"{lines[0]}  # {st.comment}"
        out.extend("    " + line.strip() if j else "    " + line for j, line in enumerate(lines))
        if free:
            out.append(f"    del {', '.join(free)}")

    # Finalise: state copies, then the parameter update; a value read there from a buffer
    # written earlier in this sequence is cloned first.
    seq: list[tuple[str, int | None, _Val]] = []
    for k, f in enumerate(a.finals):
        if f is None:
            continue
        if f.is_tensor and plan.buffer[f.name] == f"s{k}":
            continue
        seq.append(("copy", k, f))
    if plan.alpha:
        seq.append(("alpha", None, plan.alpha[0]))
    else:
        seq.append(("step", None, a.step))
    written: set[str] = set()
    clones: dict[str, str] = {}
    for what, k, v in seq:
        if v.is_tensor and plan.buffer[v.name] in written and v.name not in clones:
            clones[v.name] = f"c_{v.name}"
        written.add("w" if k is None else f"s{k}")
    for name, clone in clones.items():
        src = plan.buffer[name]
        out.append(f"    {clone} = " + (f"[e.clone() for e in {src}]" if foreach
                                        else f"{src}.clone()"))

    def read(v: _Val) -> str:
        return clones.get(v.name, plan.buffer[v.name]) if v.is_tensor else _eager_arg(v, plan)

    for what, k, v in seq:
        if what == "copy":
            target = f"s{k}"
            if not v.is_tensor:
                out.append(f"    for e in {target}:\n        e.fill_({read(v)})" if foreach
                           else f"    {target}.fill_({read(v)})")
            elif foreach:
                out.append(f"    torch._foreach_copy_({target}, {read(v)})")
            else:
                out.append(f"    {target}.copy_({read(v)})")
        elif what == "alpha":
            s = _eager_arg(plan.alpha[1], plan)
            out.append(f"    torch._foreach_add_(w, {read(v)}, alpha=-{s})" if foreach
                       else f"    w.add_({read(v)}, alpha=-{s})")
        else:
            out.append(f"    torch._foreach_sub_(w, {read(v)})" if foreach
                       else f"    w.sub_({read(v)})")
    return out


# =============================================================================================
# The module
# =============================================================================================

_HELPERS = {
    "_norm": '''
def _norm(x):
    """L2 norm over the whole tensor, in a broadcastable shape; |x| for a 0-d x."""
    if x.dim() == 0:
        return x.abs()
    return torch.linalg.vector_norm(x, dim=tuple(range(x.dim())), keepdim=True)
''',
    "_rms": '''
def _rms(x):
    """sqrt(mean(x ** 2)) over the whole tensor, in a broadcastable shape; |x| for a 0-d x."""
    if x.dim() == 0:
        return x.abs()
    return x.square().mean(dim=tuple(range(x.dim())), keepdim=True).sqrt()
''',
    "_mean": '''
def _mean(x):
    """Mean over the whole tensor, in a broadcastable shape."""
    if x.dim() == 0:
        return x.clone()
    return x.mean(dim=tuple(range(x.dim())), keepdim=True)
''',
    "_sum": '''
def _sum(x):
    """Sum over the whole tensor, in a broadcastable shape."""
    if x.dim() == 0:
        return x.clone()
    return x.sum(dim=tuple(range(x.dim())), keepdim=True)
''',
    "_row_mean": '''
def _row_mean(x):
    """Mean of each row of the matrix view (rows: the first dimension; columns: the rest),
    in a broadcastable shape; a vector is a column, so this is x itself."""
    if x.dim() <= 1:
        return x.clone()
    return x.mean(dim=tuple(range(1, x.dim())), keepdim=True)
''',
    "_col_mean": '''
def _col_mean(x):
    """Mean of each column of the matrix view, in a broadcastable shape (the mean of a
    vector)."""
    if x.dim() == 0:
        return x.clone()
    return x.mean(dim=0, keepdim=True)
''',
    "_orth": f'''
_NS_COEFFS = {tuple(NS_COEFFS)!r}


def _orth(x):
    """Muon's quintic Newton–Schulz iteration ({NS_STEPS} steps) towards U V^T of the matrix
    view of x (rows: the first dimension), in x's dtype; a vector is a column."""
    rows = x.shape[0] if x.dim() >= 1 else 1
    m = x.reshape(rows, -1)
    a, b, c = _NS_COEFFS
    y = m / (torch.linalg.matrix_norm(m, keepdim=True) + {NS_EPS!r})
    transposed = m.shape[-2] > m.shape[-1]
    if transposed:
        y = y.mT
    for _ in range({NS_STEPS}):
        gram = y @ y.mT
        y = a * y + (b * gram + c * gram @ gram) @ y
    return (y.mT if transposed else y).reshape(x.shape)
''',
}

_SCALAR_LIKE = '''
def _scalar_like(value, like, on_device=False):
    """A 0-d tensor holding `value` in `like`'s dtype, for the ops that need a tensor."""
    return torch.tensor(value, dtype=like.dtype, device=like.device if on_device else "cpu")
'''


def default_class_name(program: Program) -> str:
    """``sgd_momentum`` -> ``SgdMomentum``; names that would not be valid get a prefix or a
    suffix (``exception`` -> ``ExceptionOptimizer``, not the builtin)."""
    parts = [part for part in re.split(r"_+", program.name) if part]
    name = "".join(part[:1].upper() + part[1:] for part in parts) or "Exported"
    if not name[0].isalpha():
        name = "Rule" + name
    if _class_name_problem(name) is not None:
        name += "Optimizer"
    return name


def _class_name_problem(name: str) -> str | None:
    """Why `name` cannot name the exported class, or None when it can."""
    if not isinstance(name, str) or not name.isidentifier():
        return "is not a Python identifier (letters, digits and '_', not starting with a digit)"
    normal = unicodedata.normalize("NFKC", name)
    if normal != name:
        return f"is not in Python's normal form: Python would read it as {normal!r}"
    if keyword.iskeyword(name):
        return "is a Python keyword"
    if name.startswith("__"):
        return "starts with '__', which Python reserves for its own names (__all__, __name__)"
    if name in _BUILTIN_NAMES:
        return ("is a Python builtin, which the generated module may use (float, super, zip, "
                "isinstance, ...)")
    if name in _MODULE_NAMES:
        return "is a name the generated module imports or defines itself (torch, RULE_NAME, ...)"
    return None


def _check_names(program: Program, class_name: str) -> None:
    problem = _class_name_problem(class_name)
    if problem is not None:
        raise ExportError(f"class name {class_name!r} {problem}; choose another name")
    for name, _ in program.hyperparams:
        if not name.isidentifier() or keyword.iskeyword(name):
            raise ExportError(f"hyperparameter {name!r} of rule {program.name!r} is not a "
                              f"Python identifier; rename it in the rule")
        if name in RESERVED_HYPERPARAMETER_NAMES:
            raise ExportError(
                f"hyperparameter '{name}' of rule '{program.name}' has the name of an "
                f"optimizer argument or param-group key "
                f"({', '.join(sorted(RESERVED_HYPERPARAMETER_NAMES))}); rename it in the rule")


def _beta_names(program: Program) -> list[str]:
    """beta1, beta2, ... (consecutive from beta1) among the hyperparameters."""
    names = {n for n, _ in program.hyperparams}
    out = []
    while f"beta{len(out) + 1}" in names:
        out.append(f"beta{len(out) + 1}")
    return out


def _state_keys(program: Program) -> list[str]:
    """State dict keys: the rule's state names; "step" is the step counter's."""
    keys: list[str] = []
    for s in program.state:
        key = s
        while key == "step" or key in keys:
            key += "_"
        keys.append(key)
    return keys


def _literal(text: str) -> str:
    """A Python string literal that reads back as `text`, whatever it holds. Plain triple
    quotes where they can (raw where there are backslashes: LaTeX stays readable), else triple
    quotes with escapes for backslashes, runs of three quotes, a final quote and every
    character that is not printable (NUL and other control characters, lone surrogates), which
    a source file cannot hold."""
    plain = text.replace("\n", "").replace("\t", "")
    if '"""' not in text and not text.endswith(("\\", '"')) and plain.isprintable():
        return ('r"""' if "\\" in text else '"""') + text + '"""'
    tail = '\\"' if text.endswith('"') else ""  # else it would run into the closing quotes
    body = text[:-1] if tail else text
    escaped = "".join(map(_escape, body)).replace('"""', '\\"\\"\\"')
    return '"""' + escaped + tail + '"""'


def _escape(c: str) -> str:
    """One character as it stands in a non-raw string literal."""
    if c == "\\":
        return "\\\\"
    if c in "\n\t" or c.isprintable():
        return c
    return c.encode("unicode_escape").decode("ascii")  # \x00, \r, \u2028, \ud800, ...


def _exported_program(p: Program, names: ExportNames) -> Program:
    """`p` as the export computes it: dead statements dropped (they may read a dropped
    hyperparameter), hyperparameters renamed or dropped as `names` says."""
    live = live_statements(p)
    if len(live) != len(p.body):
        p = p.with_body(s for i, s in enumerate(p.body) if i in live)
    new = names.names

    def arg(x: Arg) -> Arg:
        return (new.get(x) or x) if isinstance(x, str) else x

    body = tuple(dataclasses.replace(s, args=tuple(arg(x) for x in s.args)) for s in p.body)
    hyper = tuple((new[h], v) for h, v in p.hyperparams if new[h] is not None)
    return dataclasses.replace(p, body=body, hyperparams=hyper,
                               returns=tuple(arg(x) for x in p.returns), origin=None)


_RANGE_LABELS = {"weight_decay": "weight_decay value", "eps": "epsilon value",
                 "momentum": "momentum value"}


def _checked_ranges(hyper_names: list[str], betas: list[str]) -> dict[str, str]:
    """Hyperparameters (by their exported names) whose values are checked as torch.optim
    checks them: "nonnegative: <label>" or "unit: <label>" (in [0, 1)). Only a name that
    kept its role keeps its conventional name, so these are exactly the checked ones."""
    out: dict[str, str] = {}
    for n in hyper_names:
        if n in _RANGE_LABELS:
            out[n] = "nonnegative:" + _RANGE_LABELS[n]
        elif re.fullmatch(r"beta[1-9][0-9]*", n) and n not in betas:
            out[n] = f"unit:{n} value"
    return out


def export_module(program: Program, class_name: str | None = None, provenance: str = "",
                  default_lr: float | None = None, lr_note: str = "") -> str:
    """The source of a standalone module defining `class_name`, a torch optimizer that
    applies `program` (see the module doc). `provenance` says where the rule comes from (a
    seed name, a file, a database id); the structural hash is always recorded. `lr_note`
    says where `default_lr` comes from (e.g. the rate a campaign tuned); it goes into the
    docstrings. Hyperparameters are named as `dsl.roles.export_names` decides. Raises
    `dsl.RuleError` for a program that fails the checker and `ExportError` for names that
    cannot be used."""
    program = ensure_valid(program)
    if class_name is None:  # "" is a name, and refused
        class_name = default_class_name(program)
    _check_names(program, class_name)
    lr = DEFAULT_LR if default_lr is None else float(default_lr)
    if not (math.isfinite(lr) and lr >= 0):
        raise ExportError(f"default learning rate {default_lr!r} is not a number >= 0")

    original = program
    names = export_names(program, RESERVED_HYPERPARAMETER_NAMES)
    program = _exported_program(program, names)
    a = _analyse(program)
    hyper_names = [n for n, _ in program.hyperparams]
    betas = _beta_names(program)
    keys = _state_keys(program)
    shash = structural_hash(original)
    source = format_program(original)
    bare = format_program(dataclasses.replace(program, doc=""))
    checked = _checked_ranges(hyper_names, betas)
    out: list[str] = [_module_doc(program, class_name, provenance, shash, lr, bare, betas,
                                  keys, names, lr_note), ""]
    out += ["import torch", "", f"__all__ = [{class_name!r}]", ""]
    out += [f"RULE_NAME = {program.name!r}",
            f"RULE_SOURCE = {_literal(source)}",
            f"PROVENANCE = {provenance or 'an optforge rule'!r}",
            f"STRUCTURAL_HASH = {shash!r}",
            f"_STATE_KEYS = {tuple(keys)!r}",
            f"_HYPER_NAMES = {tuple(hyper_names)!r}",
            f"_BETA_NAMES = {tuple(betas)!r}",
            f"_DEFAULT_BETAS = {tuple(float(program.hyper_defaults[b]) for b in betas)!r}",
            f"_RENAMED = {names.renamed!r}",
            f"_CHECKED = {checked!r}",
            "_LOW_PRECISION = (torch.bfloat16, torch.float16)", "", ""]
    helpers = sorted(a.uses_math_helpers)
    if "_orth" in helpers:  # keep the constant next to its function
        helpers.remove("_orth")
        helpers.append("_orth")
    for name in helpers:
        out.append(_HELPERS[name].strip("\n"))
        out += ["", ""]
    out.append(_SCALAR_LIKE.strip("\n"))
    out += ["", ""]
    out += _render_scalars(a, hyper_names)
    out += ["", ""]
    out += _render_rule(a)
    out += ["", ""]
    out += _render_eager(a, _PerParam)
    out += ["", ""]
    out += _render_eager(a, _Foreach)
    out += ["", ""]
    out += _render_fused(a)
    out += ["", ""]
    out += _render_class(program, class_name, lr, hyper_names, betas, keys, lr_note,
                         {new: old for old, new in names.renamed.items() if new})
    text = "\n".join(out).rstrip() + "\n"
    compile(text, f"<export of {program.name}>", "exec")  # a generator bug fails here, loudly
    return text


def _module_doc(program: Program, class_name: str, provenance: str, shash: str, lr: float,
                source: str, betas: list[str], keys: list[str], names: ExportNames,
                lr_note: str) -> str:
    hyper = ", ".join(f"{n}={_num(v)}" for n, v in program.hyperparams)
    lines = [f"{class_name}: the update rule '{program.name}' as a torch optimizer, exported by "
             f"optforge.", ""]
    if program.doc:
        lines += [program.doc, ""]
    lines += [f"Provenance: {provenance or 'an optforge rule'}; structural hash {shash}.", "",
              "Each step, for every parameter w with a gradient g (t counts that parameter's "
              "steps from 1):", "", "    " + to_latex(program).replace("\n", "\n    "), "",
              ("The rule, in optforge's rule language (interp(x, y, a) = (1 - a) * x + a * y),"
               " as exported:"),
              "", "    " + source.rstrip("\n").replace("\n", "\n    "), "",
              f"Constructor: {class_name}(params, lr={_num(lr)}"
              + (f", {hyper}" if hyper else "") + ", *, "
              + (f"betas=None ({', '.join(betas)} as one tuple), " if betas else "")
              + "maximize=False, foreach=None, compile=False)."]
    if lr_note:
        lines += [f"{lr_note}."]
    for old, new in names.renamed.items():
        why = names.reasons[old]
        if new is None:
            lines += [f"The rule's hyperparameter {old} is not an argument: {why}."]
        else:
            lines.append(f"The rule's hyperparameter {old} is exported as {new}: {why}, so "
                         f"it does not play the role torch code gives the name {old}.")
    lines += ["State per parameter: " + ", ".join(keys + ["step"])
              + (" (the rule's state, zeros at the first step, shaped like the parameter; "
                 "step is an int)."),
              "bfloat16 and float16 parameters keep their state in float32.",
              "", "This file needs only torch (2.1 or later)."]
    return _literal("\n".join(lines).replace("\n\n\n", "\n\n"))


def _render_fused(a: _Analysis) -> list[str]:
    p = a.program
    states = [f"s{k}" for k in range(len(p.state))]
    lists = ["params", "grads"] + [f"l{k}" for k in range(len(p.state))]
    news = [f"n{k}" for k in range(len(p.state))]
    out = [f"def _update_fused({', '.join(lists + ['S'])}):",
           '    """The compile=True path: one traced function for all tensors of a group; '
           'S holds the scalars\n    as 0-d tensors of the compute dtype."""',
           f"    for {', '.join(['p', 'g'] + states)} in zip({', '.join(lists)}):",
           "        low = p.dtype in _LOW_PRECISION",
           "        w = p.float() if low else p",
           "        g = g.float() if low else g",
           f"        {', '.join(['step'] + news)} = _rule({', '.join(['w', 'g'] + states + ['S'])})"]
    for k, f in enumerate(a.finals):
        if f is not None:
            out.append(f"        s{k}.copy_(n{k})")
    out += ["        if low:", "            p.copy_(w - step)", "        else:",
            "            p.sub_(step)", "", "",
            "_COMPILED = None", "", "",
            "def _compiled_update():",
            "    global _COMPILED",
            "    if _COMPILED is None:",
            "        _COMPILED = torch.compile(_update_fused, dynamic=False)",
            "    return _COMPILED"]
    return out


def _render_class(program: Program, class_name: str, lr: float, hyper_names: list[str],
                  betas: list[str], keys: list[str], lr_note: str = "",
                  renamed_from: dict[str, str] | None = None) -> list[str]:
    defaults = dict(program.hyperparams)
    sig = ", ".join(["self", "params", f"lr={_num(lr)}"]
                    + [f"{n}={_num(defaults[n])}" for n in hyper_names]
                    + ["*", "betas=None", "maximize=False", "foreach=None", "compile=False"])
    hyper_dict = "{" + ", ".join(f"{n!r}: {n}" for n in hyper_names) + "}"
    renamed_from = renamed_from or {}

    def what(n: str) -> str:
        if n in renamed_from:
            return (f"the rule's {renamed_from[n]}, which does not play the role of torch's "
                    f"{renamed_from[n]} (see the module docstring)")
        return "hyperparameter of the rule"

    args_doc = "\n".join(f"        {n}: {what(n)} (default {_num(defaults[n])})."
                         for n in hyper_names)
    betas_doc = (f"        betas: ({', '.join(betas)}) as one tuple, as torch's optimizers "
                 f"take them.\n" if betas else "")
    doc = (f"The rule '{program.name}' as a torch optimizer (see the module docstring for "
           f"its math).\n\n    Args:\n        params: parameters or param groups, as for any "
           f"torch optimizer.\n        lr: learning rate "
           + (f"({lr_note})" if lr_note else f"(default {_num(lr)})") + ".\n"
           + (args_doc + "\n" if args_doc else "") + betas_doc +
           "        maximize: maximize the objective (the rule sees -g), as torch's "
           "optimizers.\n" +
           "        foreach: use torch._foreach_* ops over a group (default: when all its\n"
           "            parameters are on CUDA).\n"
           "        compile: run each step as one torch.compile'd function per group.\n    ")
    init = f"self._setup(params, lr, {hyper_dict}, betas, maximize, foreach, compile)"
    mangled = [n for n in hyper_names if n.startswith("__") and not n.endswith("__")]
    if not mangled:
        return [f"class {class_name}(torch.optim.Optimizer):", "    " + _literal(doc), "",
                f"    def __init__({sig}):", f"        {init}", "",
                _CLASS_BODY.strip("\n")]
    # Inside a class body Python renames (mangles) an argument named __x to _Class__x, and
    # Class(params, __x=...) would fail: the constructor is defined outside the class.
    private = f"_{class_name.lstrip('_')}{mangled[0]}"
    return [f"def _init({sig}):",
            f"    # {class_name}.__init__, defined here: inside the class, Python would rename",
            f"    # the argument {mangled[0]} to {private}.",
            f"    {init}", "", "",
            f"class {class_name}(torch.optim.Optimizer):", "    " + _literal(doc), "",
            "    __init__ = _init  # see there", "",
            _CLASS_BODY.strip("\n")]


_CLASS_BODY = '''
    def _setup(self, params, lr, hyper, betas, maximize, foreach, compile):
        lr = _number("lr", lr)
        if not 0.0 <= lr:  # NaN too
            raise ValueError(f"Invalid learning rate: {lr}")
        defaults = {"lr": lr}
        hyper = {name: _number(name, value) for name, value in hyper.items()}
        if _BETA_NAMES:
            given = tuple(hyper.pop(name) for name in _BETA_NAMES)
            if betas is not None:
                betas = _betas_tuple(betas)
                declared = _DEFAULT_BETAS
                if any(b != d and b != x for b, d, x in zip(given, declared, betas)):
                    raise ValueError(f"pass either betas or {', '.join(_BETA_NAMES)}, not both")
                given = betas
            defaults["betas"] = given
        elif betas is not None:
            raise TypeError("this rule has no beta1, beta2, ... hyperparameters; betas is not "
                            "an argument of it")
        defaults.update(hyper)
        _check_ranges(defaults)
        defaults["maximize"] = bool(maximize)
        defaults["foreach"] = foreach
        defaults["compile"] = bool(compile)
        super().__init__(params, defaults)

    def add_param_group(self, param_group):
        if isinstance(param_group, dict):
            _refuse_renamed(type(self).__name__, param_group, "a param group")
        # Accept beta1=..., beta2=... in a param group as well as betas=(...).
        if _BETA_NAMES and isinstance(param_group, dict) and any(
                name in param_group for name in _BETA_NAMES):
            param_group = dict(param_group)
            betas = list(_betas_tuple(param_group.get("betas", self.defaults["betas"])))
            for i, name in enumerate(_BETA_NAMES):
                if name in param_group:
                    betas[i] = _number(name, param_group.pop(name))
            param_group["betas"] = tuple(betas)
        if isinstance(param_group, dict):
            _check_ranges(param_group)
        super().add_param_group(param_group)

    def __setstate__(self, state):
        super().__setstate__(state)
        for group in self.param_groups:
            group.setdefault("foreach", None)
            group.setdefault("compile", False)
            group.setdefault("maximize", False)

    @torch.no_grad()
    def step(self, closure=None):
        """Performs a single optimization step.

        Args:
            closure: a callable that re-evaluates the model and returns the loss (optional).
        """
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for index, group in enumerate(self.param_groups):
            self._step_group(index, group)
        return loss

    def _step_group(self, index, group):
        values = [float(group["lr"]), 0.0]
        if _BETA_NAMES:
            betas = _betas_tuple(group["betas"])
        for name in _HYPER_NAMES:
            if name in _BETA_NAMES:
                values.append(float(betas[_BETA_NAMES.index(name)]))
            else:
                values.append(float(group[name]))
        scalars = {}
        buckets = {}
        for p in group["params"]:
            g = p.grad
            if g is None:
                continue
            if g.is_sparse:
                raise RuntimeError(f"{type(self).__name__} does not support sparse gradients "
                                   f"(param group {index}); use dense gradients, e.g. "
                                   f"torch.nn.Embedding(..., sparse=False)")
            if torch.is_complex(p):
                raise RuntimeError(f"{type(self).__name__} does not support complex "
                                   f"parameters (param group {index})")
            if p.numel() == 0:
                continue
            state = self.state[p]
            cdtype = torch.float32 if p.dtype in _LOW_PRECISION else p.dtype
            if not state:
                state["step"] = 0
                for key in _STATE_KEYS:
                    state[key] = torch.zeros_like(p, dtype=cdtype,
                                                  memory_format=torch.preserve_format)
            state["step"] += 1
            t = state["step"]
            if t not in scalars:
                values[1] = float(t)
                scalars[t] = _scalars(values)
            key = (p.device, p.dtype, t)
            bucket = buckets.setdefault(key, ([], [], [[] for _ in _STATE_KEYS]))
            bucket[0].append(p)
            g = g if g.dtype == p.dtype else g.to(p.dtype)
            bucket[1].append(torch.neg(g) if group["maximize"] else g)
            for lst, skey in zip(bucket[2], _STATE_KEYS):
                lst.append(state[skey])
        for (device, dtype, t), (params, grads, states) in buckets.items():
            if group["compile"]:
                # 0-d parameters take the eager path: torch.compile drops in-place updates
                # of 0-d float64 inputs (seen with torch 2.13 on CPU).
                traced = [i for i, p in enumerate(params) if p.dim() > 0]
                if traced:
                    cdtype = torch.float32 if dtype in _LOW_PRECISION else dtype
                    S = scalars[t].to(dtype=cdtype, device=device)
                    _compiled_update()([params[i] for i in traced], [grads[i] for i in traced],
                                       *[[s[i] for i in traced] for s in states], S)
                if len(traced) == len(params):
                    continue
                rest = [i for i, p in enumerate(params) if p.dim() == 0]
                params, grads = [params[i] for i in rest], [grads[i] for i in rest]
                states = [[s[i] for i in rest] for s in states]
            F = scalars[t].tolist()
            foreach = group["foreach"] and not group["compile"]
            if foreach is None:
                foreach = device.type == "cuda"
            if foreach:
                if dtype in _LOW_PRECISION:
                    w = [p.float() for p in params]
                    _update_foreach(w, [g.float() for g in grads], *states, F)
                    torch._foreach_copy_(params, w)
                else:
                    _update_foreach(params, grads, *states, F)
                continue
            for i, p in enumerate(params):
                tensors = [s[i] for s in states]
                if dtype in _LOW_PRECISION:
                    w = p.float()
                    _update_param(w, grads[i].float(), *tensors, F)
                    p.copy_(w)
                else:
                    _update_param(p, grads[i], *tensors, F)

    def load_state_dict(self, state_dict):
        """Loads the optimizer state; the float32 state of bfloat16/float16 parameters is
        restored at full precision (torch's loader casts state to the parameter's dtype).
        A state dict of another optimizer (other state names or hyperparameters) is refused
        with a ValueError naming what is missing and what is extra."""
        self._check_loadable(state_dict)
        super().load_state_dict(state_dict)
        for group in self.param_groups:  # state dicts of exports without these keys
            group.setdefault("maximize", False)
            group.setdefault("foreach", None)
            group.setdefault("compile", False)
        saved_groups = state_dict["param_groups"]
        saved_state = state_dict["state"]
        for saved, group in zip(saved_groups, self.param_groups):
            for saved_id, p in zip(saved["params"], group["params"]):
                entry = saved_state.get(saved_id)
                if entry is None or p not in self.state:
                    continue
                cdtype = torch.float32 if p.dtype in _LOW_PRECISION else p.dtype
                for key in _STATE_KEYS:
                    value = entry.get(key)
                    if isinstance(value, torch.Tensor):
                        self.state[p][key] = value.to(device=p.device, dtype=cdtype, copy=True)


    def _check_loadable(self, state_dict):
        name = type(self).__name__
        expected = (*_STATE_KEYS, "step")
        for pid, entry in dict(state_dict.get("state", {})).items():
            keys = list(entry) if isinstance(entry, dict) else []
            missing = [k for k in expected if k not in keys]
            extra = [k for k in keys if k not in expected]
            if missing or extra:
                raise ValueError(
                    f"cannot load this state dict into {name}: the state of parameter {pid} "
                    f"lacks {', '.join(missing) or 'nothing'} and has "
                    f"{', '.join(map(str, extra)) or 'nothing'} extra; {name} keeps "
                    f"{', '.join(expected)} per parameter (was it saved by another "
                    f"optimizer or rule?)")
        required = ["lr"] + (["betas"] if _BETA_NAMES else []) + [
            n for n in _HYPER_NAMES if n not in _BETA_NAMES]
        for i, group in enumerate(state_dict.get("param_groups", [])):
            missing = [k for k in required if k not in group]
            if missing:
                extra = sorted(str(k) for k in group if k not in self.defaults
                               and k not in ("params", "initial_lr"))
                raise ValueError(
                    f"cannot load this state dict into {name}: param group {i} lacks "
                    f"{', '.join(missing)}" + (f" and has {', '.join(extra)} extra" if extra
                                               else "")
                    + " (was it saved by another optimizer or rule?)")
            _refuse_renamed(name, group, f"param group {i} of the state dict")


def _refuse_renamed(name, group, where):
    """A conventional key (weight_decay, momentum, ...) that this rule renamed or dropped
    would be ignored silently; refuse it instead."""
    for old, new in _RENAMED.items():
        if old in group:
            if new is None:
                raise ValueError(f"{where} sets {old}, which {name} does not use (the rule "
                                 f"never reads it); remove it")
            raise ValueError(f"{where} sets {old}, but {name}'s coefficient named {old} in "
                             f"the rule is not a {old} in torch's sense and is called {new}; "
                             f"set {new} to change it (see the module docstring)")


def _check_ranges(values):
    """Refuse out-of-range values as torch.optim does (Invalid ... value: ...)."""
    if _BETA_NAMES and "betas" in values:
        for i, b in enumerate(_betas_tuple(values["betas"])):
            if not 0.0 <= b < 1.0:
                raise ValueError(f"Invalid beta parameter at index {i}: {b}")
    for name, check in _CHECKED.items():
        if name not in values:
            continue
        value = _number(name, values[name])
        kind, label = check.split(":", 1)
        if not 0.0 <= value or (kind == "unit" and not value < 1.0):
            raise ValueError(f"Invalid {label}: {value}")


def _number(name, value):
    """A hyperparameter value as a float (0-d tensors are accepted, as torch does for lr)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, torch.Tensor)):
        raise TypeError(f"{name} must be a number, not {type(value).__name__}")
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ValueError(f"{name} must be a single number, got a tensor of shape "
                             f"{tuple(value.shape)}")
        value = value.item()
    return float(value)


def _betas_tuple(betas):
    try:
        betas = tuple(betas)
    except TypeError:
        raise TypeError(f"betas must be a tuple of {len(_BETA_NAMES)} numbers") from None
    if len(betas) != len(_BETA_NAMES):
        raise ValueError(f"betas must have {len(_BETA_NAMES)} values "
                         f"({', '.join(_BETA_NAMES)}), got {len(betas)}")
    return tuple(_number(name, b) for name, b in zip(_BETA_NAMES, betas))
'''


def optimizer_class(program: Program, class_name: str | None = None, provenance: str = "",
                    default_lr: float | None = None) -> type:
    """Export `program` and import the module in memory; returns the optimizer class. The
    module is registered in `sys.modules` (so its optimizers pickle) under a name derived
    from the structural hash."""
    source = export_module(program, class_name, provenance, default_lr)
    name = default_class_name(program) if class_name is None else class_name
    module_name = f"optforge_exported_{structural_hash(program)[:16]}_{name}"
    filename = f"<optforge export {module_name}>"
    module = types.ModuleType(module_name)
    module.__file__ = filename
    module.__loader__ = importlib.machinery.SourceFileLoader(module_name, filename)
    # let inspect/linecache (tracebacks, torch.compile diagnostics) see the generated source
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    exec(compile(source, filename, "exec"), module.__dict__)
    sys.modules[module_name] = module
    return getattr(module, name)


# keep the inputs tuple referenced for readers: the generated code names them w, g
assert INPUTS == ("w", "g", "lr", "t")
