"""The evaluator kernel: a rule compiled to Python source over torch, for R replicas at once.

`compile_kernel(p)` turns a program into straight-line torch code with a leading replica
axis (tensors ``[R, ...]``, a per-replica learning rate, reductions over the non-replica
axes), executes that source in a namespace holding only `torch` and the op table's
implementations, and returns a `Kernel`. The kernel means exactly what the reference
interpreter `dsl.run_step(p, ..., lead=1)` means, value for value: it runs the same torch
operations on the same operands (scalars are tensors of the parameter's dtype, constants
and hyperparameters 0-d tensors, `lr` shaped ``[R, 1, ..., 1]``); what it saves is the
interpretation. `tests/dsl/test_kernel.py` checks the agreement on every op and seed rule.

Where the speed comes from
--------------------------
* No dispatch: each statement is one line of Python calling torch directly.
* Scalar hoisting. A statement whose operands are constants, hyperparameters or `t` only
  (``1 - beta1 ** t``) is the same for every replica and every parameter tensor: it runs
  once per training step in `Kernel.prepare(t, ...)`, not once per tensor. `interp`'s
  ``1 - a`` is hoisted the same way when `a` is such a scalar. Constants and hyperparameters
  become 0-d tensors once per training run (`Kernel.bind`).
* `Kernel.elementwise`: when every non-elementwise op of the rule acts on scalars only, the
  step of a whole model can run as one call on all its parameters flattened into one
  ``[R, P]`` buffer (elementwise math does not care about shapes). A trainer uses this to
  replace one call per parameter tensor by one call per step.

The generated source (`Kernel.source`) reads like the rule. Names are mangled so that no
rule identifier can collide with the namespace: inputs and state slots are ``v_NAME``,
hyperparameters ``h_NAME``, constants ``c<k>`` and the value of statement i ``s<i>_TARGET``
(every assignment gets its own name, so hoisting a statement can never read a later value).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import torch

from .ir import INPUTS, Arg, Program, validate
from .ops import OPS, OpKind, op_for

__all__ = ["Kernel", "compile_kernel", "kernel_source"]

# How each op is emitted, by its row of the op table: an elementwise op whose torch
# expression is plain arithmetic (no call: `+`, `*`, prefix `-`) is written inline; every
# other op calls its own implementation, `op_NAME(1, ...)`, in the kernel's namespace. Either
# way the kernel runs the op table's own torch code, so values agree bit for bit.
def _inline(expr: str | None) -> bool:
    return expr is not None and "(" not in expr and "." not in expr


# Ops whose torch expression reads a scalar function of one argument: when that argument is
# a constant-class scalar (and the op's value is not), the function is hoisted to prepare().
# op -> (the argument, the hoisted function of it, the expression over the hoisted value).
# interp(x, y, a) = torch.lerp(y, x, 1 - a): `1 - a` once per step.
_HOISTED_WEIGHT: dict[str, tuple[int, str, str]] = {
    "interp": (2, "1 - {0}", "torch.lerp({1}, {0}, {weight})"),
}


# value classes, from the cheapest to compute to the dearest
_CONST = 0  # constants, hyperparameters, t and what is computed from them only
_REP = 1  # depends on lr (per-replica scalar, shape [R, 1, ..., 1]) but on no tensor
_TENSOR = 2  # depends on w, g or a state slot: shape [R, *shape]


@dataclass(frozen=True)
class _Plan:
    source: str
    elementwise: bool
    constants: tuple[float, ...]


def _ident(prefix: str, name: str) -> str:
    mangled = f"{prefix}{name}"
    if not mangled.isidentifier():
        raise ValueError(f"invalid identifier {name!r} in program")
    return mangled


def _plan(p: Program, per_replica: frozenset[str] = frozenset()) -> _Plan:
    """The kernel's source. Hyperparameters named in `per_replica` take one value per
    replica (``[R]``, like `lr`) instead of one for all."""
    for s in p.body:  # before validate(), so that the error names the kernel
        op_for(s.op, "kernel")
    validate(p)
    hypers = [h for h, _ in p.hyperparams]
    names: dict[str, str] = {n: _ident("v_", n) for n in INPUTS}
    names.update({s: _ident("v_", s) for s in p.state})
    names.update({h: _ident("h_", h) for h in hypers})
    klass: dict[str, int] = {"w": _TENSOR, "g": _TENSOR, "lr": _REP, "t": _CONST}
    klass.update({s: _TENSOR for s in p.state})
    klass.update({h: _REP if h in per_replica else _CONST for h in hypers})
    constants: dict[str, str] = {}  # by repr: keeps -0.0 apart from 0.0 (1 / -0.0 = -inf)
    constant_values: list[float] = []

    def const(c: float) -> str:
        key = repr(c)
        if key not in constants:
            constants[key] = f"c{len(constants)}"
            constant_values.append(c)
        return constants[key]

    def ref(a: Arg) -> tuple[str, int]:
        if isinstance(a, str):
            return names[a], klass[a]
        return const(float(a)), _CONST

    scalar_lines: list[str] = []  # body of prepare(): _CONST statements
    tensor_lines: list[str] = []  # body of apply(): everything else
    hoisted: list[str] = ["v_t"]  # names computed in prepare() and read in apply()
    elementwise = True
    for i, s in enumerate(p.body):
        op = op_for(s.op, "kernel")
        args = [ref(a) for a in s.args]
        cls = max(c for _, c in args)
        exprs = [e for e, _ in args]
        target = _ident(f"s{i}_", s.target)
        if op.kind is not OpKind.ELEMENTWISE and cls == _TENSOR:
            elementwise = False
        hoist = _HOISTED_WEIGHT.get(s.op)
        if hoist is not None and cls > _CONST and args[hoist[0]][1] == _CONST:
            weight = f"w{i}"
            scalar_lines.append(f"{weight} = {hoist[1].format(exprs[hoist[0]])}")
            hoisted.append(weight)
            expr = hoist[2].format(*exprs, weight=weight)
        elif _inline(op.torch_expr):
            expr = f"({op.torch_expr.format(*exprs)})"
        else:
            expr = f"op_{s.op}(1, {', '.join(exprs)})"
        line = f"{target} = {expr}  # {s.target} = {s.op}(" \
               f"{', '.join(str(a) for a in s.args)})"
        (scalar_lines if cls == _CONST else tensor_lines).append(line)
        if cls == _CONST:
            hoisted.append(target)
        names[s.target], klass[s.target] = target, cls

    returns = [ref(a)[0] for a in p.returns]
    # apply() reads hoisted scalars, constants and hyperparameters through two tuples
    const_names = [f"c{k}" for k in range(len(constants))]
    bound_names = const_names + [names[h] for h in hypers]
    src: list[str] = []
    src.append("def bind(dtype, device, hyper):")
    src.append("    # constants and hyperparameters as 0-d tensors of the parameter's dtype")
    for k, cname in enumerate(constants.values()):
        src.append(f"    {cname} = torch.tensor(CONSTANTS[{k}], dtype=dtype, device=device)")
    for h in hypers:
        src.append(f"    {names[h]} = torch.as_tensor(hyper[{h!r}], dtype=dtype, device=device)")
    src.append(f"    return ({''.join(n + ', ' for n in bound_names)})")
    src.append("")
    src.append("def prepare(v_t, bound):")
    src.append("    # scalars that depend on constants, hyperparameters and t only")
    src.append(f"    ({''.join(n + ', ' for n in bound_names)}) = bound")
    src.extend("    " + line for line in scalar_lines)
    src.append(f"    return ({''.join(n + ', ' for n in hoisted)})")
    src.append("")
    state_names = [_ident("v_", s) for s in p.state]
    src.append("def apply(v_w, v_g, v_lr, state, scalars, bound):")
    src.append(f"    ({''.join(n + ', ' for n in state_names)}) = state")
    src.append(f"    ({''.join(n + ', ' for n in hoisted)}) = scalars")
    src.append(f"    ({''.join(n + ', ' for n in bound_names)}) = bound")
    for h in hypers:
        if h in per_replica:  # [R] -> [R, 1, ..., 1], as the interpreter lays out lr
            src.append(f"    {names[h]} = {names[h]}.reshape((v_w.shape[0],) + "
                       f"(1,) * (v_w.dim() - 1))")
    src.extend("    " + line for line in tensor_lines)
    src.append(f"    return {returns[0]}, ({''.join(r + ', ' for r in returns[1:])})")
    return _Plan("\n".join(src) + "\n", elementwise, tuple(constant_values))


def kernel_source(p: Program) -> str:
    """The Python source `compile_kernel` generates for `p`."""
    return _plan(p).source


class Kernel:
    """A compiled rule (see module doc). Call it like the interpreter::

        step, new_state = kernel(w, g, lr, t, state, hyper=None)   # == run_step(..., lead=1)

    or, in a training loop, bind once, prepare once per step and apply per tensor::

        bound = kernel.bind(dtype, device, hyper)        # once
        scalars = kernel.prepare(t, bound)               # once per step (t a 0-d tensor)
        step, new_state = kernel.apply(w, g, lr_r, state, scalars, bound)   # per tensor

    where ``lr_r`` is the per-replica learning rate shaped ``[R, 1, ..., 1]`` like `w`
    (`Kernel.shape_lr`). `apply` returns the step and the new state as the rule computes
    them: values the rule leaves scalar are not broadcast (`__call__` broadcasts them, as
    the interpreter does). `bind`, `prepare` and `apply` take one value per hyperparameter;
    `__call__` also accepts per-replica hyperparameters (``[R]`` tensors), for which it
    compiles a variant of the kernel.
    """

    def __init__(self, program: Program):
        self.program = program
        self.n_state = len(program.state)
        self._variants: dict[frozenset[str], tuple[_Plan, dict[str, Any]]] = {}
        plan, namespace = self._variant(frozenset())
        self.source = plan.source
        self.elementwise = plan.elementwise
        self._bind: Callable = namespace["bind"]
        self.prepare: Callable = namespace["prepare"]
        self.apply: Callable = namespace["apply"]

    def _variant(self, per_replica: frozenset[str]) -> tuple[_Plan, dict[str, Any]]:
        if per_replica not in self._variants:
            plan = _plan(self.program, per_replica)
            # Only torch and the op table's implementations: the generated code needs nothing
            # else, and no builtins means a mistake in it cannot reach anything else.
            namespace: dict[str, Any] = {"__builtins__": {}, "torch": torch,
                                         "CONSTANTS": plan.constants}
            namespace.update({f"op_{name}": op.torch_fn for name, op in OPS.items()})
            exec(compile(plan.source, f"<kernel {self.program.name}>", "exec"), namespace)
            self._variants[per_replica] = (plan, namespace)
        return self._variants[per_replica]

    def _values(self, hyper: Mapping[str, Any] | None) -> dict[str, Any]:
        values = self.program.hyper_defaults
        if hyper:
            unknown = set(hyper) - set(values)
            if unknown:
                raise ValueError(f"{self.program.name} has no hyperparameter "
                                 f"{sorted(unknown)[0]!r}")
            values = {**values, **hyper}
        return values

    def bind(self, dtype: torch.dtype, device: torch.device | str,
             hyper: Mapping[str, float] | None = None) -> tuple:
        """Constants and hyperparameters (defaults overridden by `hyper`) as 0-d tensors."""
        return self._bind(dtype, device, self._values(hyper))

    @staticmethod
    def shape_lr(lr: Any, like: torch.Tensor) -> torch.Tensor:
        """`lr` (a number or R per-replica values) in the interpreter's ``lead=1`` layout."""
        x = torch.as_tensor(lr, dtype=like.dtype, device=like.device)
        if x.dim() == 1:
            return x.reshape((like.shape[0],) + (1,) * (like.dim() - 1))
        return x

    def __call__(self, w: torch.Tensor, g: torch.Tensor, lr: Any, t: int | float,
                 state: Sequence[torch.Tensor], hyper: Mapping[str, Any] | None = None,
                 ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        if len(state) != self.n_state:
            raise ValueError(f"{self.program.name} has {self.n_state} state slots, "
                             f"got {len(state)}")
        values = self._values(hyper)
        per_replica = frozenset(h for h, v in values.items()
                                if isinstance(v, torch.Tensor) and v.dim() == 1)
        _, ns = self._variant(per_replica)
        bound = ns["bind"](w.dtype, w.device, values)
        scalars = ns["prepare"](torch.as_tensor(t, dtype=w.dtype, device=w.device), bound)
        step, new_state = ns["apply"](w, g, self.shape_lr(lr, w), tuple(state), scalars, bound)
        outs = [o.expand(w.shape) if o.shape != w.shape else o for o in (step, *new_state)]
        return outs[0], tuple(outs[1:])

    def __repr__(self) -> str:
        return f"<Kernel {self.program.name} elementwise={self.elementwise}>"


def compile_kernel(program: Program) -> Kernel:
    """Compile `program` to a batched step function (see `Kernel`). The program must be
    structurally valid (`dsl.ir.validate`); raises ValueError otherwise."""
    return Kernel(program)
