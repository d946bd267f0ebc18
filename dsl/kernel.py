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

Model-level inputs (issue #16, `dsl.context`): a rule with a GLOBAL op or ``grad_at`` is
`Kernel.grouped` and compiles to `apply_group`, one call for every parameter of the group
(values are lists with an entry per parameter, a GLOBAL op is one call of its
`dsl.model_ops` function, ``grad_at`` one call of the context's); every other rule keeps the
per-tensor `apply`, which takes the loss and the Hessian estimate as arguments and computes
`rows`, `cols`, `numel` from its tensor. Factored slots are passed in and returned in their
stored shape (`dsl.slots`). The code generator is `dsl.kernel_plan`.

The generated source (`Kernel.source`) reads like the rule. Names are mangled so that no
rule identifier can collide with the namespace: inputs and state slots are ``v_NAME``,
hyperparameters ``h_NAME``, constants ``c<k>`` and the value of statement i ``s<i>_TARGET``
(every assignment gets its own name, so hoisting a statement can never read a later value).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any

import torch

from . import slots
from .context import MissingContextError, StepContext, shape_scalars
from .ir import Program
from .kernel_plan import _HOISTED_WEIGHT, Plan, plan  # noqa: F401 - the per-op table, for tests
from .needs import needs, passes_per_step
from .ops import OPS
from .slots import SlotShape

__all__ = ["RUNTIME_NAMES", "Kernel", "compile_kernel", "kernel_source"]


def kernel_source(p: Program) -> str:
    """The Python source `compile_kernel` generates for `p`."""
    return plan(p).source


# ---- what the generated code calls besides torch and the op table ----------------------------

def _lead_shape(w: torch.Tensor) -> tuple[int, ...]:
    return (w.shape[0],) + (1,) * (w.dim() - 1)


def _per_param(x: torch.Tensor, ws: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """A per-replica value ``[R]`` laid out like `lr` for every parameter (a 0-d value as
    it is), as the interpreter lays out scalars."""
    if x.dim() != 1:
        return [x for _ in ws]
    return [x.reshape(_lead_shape(w)) for w in ws]


def _required(value: Any, name: str, rule: str = "the rule") -> Any:
    if value is None:
        raise MissingContextError(rule, name, "the kernel's caller")
    return value


def _group_loss(context: StepContext | None, ws: Sequence[torch.Tensor],
                rule: str = "the rule") -> list:
    loss = _required(None if context is None else context.loss, "loss", rule)
    w = ws[0]
    return _per_param(torch.as_tensor(loss, dtype=w.dtype, device=w.device), ws)


def _group_hess(context: StepContext | None, ws: Sequence[torch.Tensor],
                rule: str = "the rule") -> list:
    return list(_required(None if context is None else context.hess, "hess", rule))


def _tensor_shape(w: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """`rows`, `cols`, `numel` of a parameter ``[R, *shape]``: 0-d tensors of its dtype."""
    return tuple(torch.tensor(v, dtype=w.dtype, device=w.device)
                 for v in shape_scalars(w.shape[1:]))


def _group_shapes(ws: Sequence[torch.Tensor]) -> tuple[list, list, list]:
    rows, cols, numel = zip(*(_tensor_shape(w) for w in ws))
    return list(rows), list(cols), list(numel)


def _grad_at(context: StepContext | None, es: Sequence[torch.Tensor],
             ws: Sequence[torch.Tensor], rule: str = "the rule") -> list[torch.Tensor]:
    """One call of the context's ``grad_at`` with every parameter's perturbation, each at
    its parameter's full shape."""
    fn = _required(None if context is None else context.grad_at, "grad_at", rule)
    full = [e if e.shape == w.shape else e.expand(w.shape) for e, w in zip(es, ws)]
    return OPS["grad_at"].torch_fn(1, full, ws, fn)


_RUNTIME: dict[str, Any] = {
    "zip": zip, "list": list, "per_param": _per_param, "tensor_shape": _tensor_shape,
    "group_shapes": _group_shapes, "slot_load": slots.load, "slot_store": slots.store,
    **{f"SLOT_{s.name}": s for s in SlotShape},
}
# helpers that name the rule in a MissingContextError
_NAMING = {"required": _required, "group_loss": _group_loss, "group_hess": _group_hess,
           "grad_at": _grad_at}
RUNTIME_NAMES = frozenset(_RUNTIME) | frozenset(_NAMING)
"""What the generated code may call besides torch and the op table."""


class Kernel:
    """A compiled rule (see module doc). Call it like the interpreter::

        step, new_state = kernel(w, g, lr, t, state, hyper=None, context=None)
            # == run_step(..., lead=1)
        steps, new_states = kernel.call_group(ws, gs, lr, t, states, hyper, context)
            # == run_group_step(..., lead=1)

    or, in a training loop, bind once, prepare once per step, then apply per tensor (a rule
    that is not `grouped`) or once per group (a `grouped` one)::

        bound = kernel.bind(dtype, device, hyper)        # once
        scalars = kernel.prepare(t, bound)               # once per step (t a 0-d tensor)
        step, new_state = kernel.apply(w, g, lr_r, state, scalars, bound,
                                       loss_r, hess)     # per tensor
        steps, new_states = kernel.apply_group(ws, gs, lrs, states, scalars, bound,
                                               context)  # per group

    where ``lr_r`` (and ``loss_r``, the per-replica loss, when the rule reads `loss`) is
    shaped ``[R, 1, ..., 1]`` like `w` (`Kernel.shape_lr`), ``lrs`` one such per parameter
    and `context` a `dsl.context.StepContext` (its `loss` ``[R]``, its `hess` one tensor per
    parameter). State is in stored shape (`slot_shapes`; `init_state` makes it). `apply`
    and `apply_group` return steps and full-shape slots as the rule computes them: values
    the rule leaves scalar are not broadcast (`__call__` and `call_group` broadcast them, as
    the interpreter does). `bind`, `prepare` and `apply` take one value per hyperparameter;
    `__call__` and `call_group` also accept per-replica hyperparameters (``[R]`` tensors),
    for which they compile a variant of the kernel.

    `needs` names the context inputs the rule reads (`dsl.needs`), `passes` a step's cost in
    forward-and-backward passes, `grouped` whether it needs the whole group at once.
    """

    def __init__(self, program: Program):
        self.program = program
        self.n_state = len(program.state)
        self._variants: dict[frozenset[str], tuple[Plan, dict[str, Any]]] = {}
        p, namespace = self._variant(frozenset())
        self.source = p.source
        self.grouped = p.grouped
        self.elementwise = p.elementwise
        self.slot_shapes: tuple[SlotShape, ...] = p.slot_shapes
        self.needs = needs(program)
        self.passes = passes_per_step(program)
        self._bind: Callable = namespace["bind"]
        self.prepare: Callable = namespace["prepare"]
        self.apply: Callable | None = namespace.get("apply")
        self.apply_group: Callable | None = namespace.get("apply_group")

    def _variant(self, per_replica: frozenset[str]) -> tuple[Plan, dict[str, Any]]:
        if per_replica not in self._variants:
            code = plan(self.program, per_replica)
            # Only torch, the op table's implementations and the few helpers above: the
            # generated code needs nothing else, and no builtins means a mistake in it
            # cannot reach anything else.
            namespace: dict[str, Any] = {"__builtins__": {}, "torch": torch,
                                         "CONSTANTS": code.constants, **_RUNTIME}
            namespace.update({k: partial(f, rule=self.program.name)
                              for k, f in _NAMING.items()})
            namespace.update({f"op_{name}": op.torch_fn for name, op in OPS.items()})
            exec(compile(code.source, f"<kernel {self.program.name}>", "exec"), namespace)
            self._variants[per_replica] = (code, namespace)
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

    def init_state(self, w: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Zero state for a parameter ``[R, *shape]``, each slot in its stored shape."""
        return tuple(slots.zeros(s, w, lead=1) for s in self.slot_shapes)

    @staticmethod
    def shape_lr(lr: Any, like: torch.Tensor) -> torch.Tensor:
        """`lr` (a number or R per-replica values) in the interpreter's ``lead=1`` layout."""
        x = torch.as_tensor(lr, dtype=like.dtype, device=like.device)
        if x.dim() == 1:
            return x.reshape(_lead_shape(like))
        return x

    def full_state(self, w: torch.Tensor, new_state: Sequence[torch.Tensor]) -> tuple:
        """`new_state` as stored: full slots broadcast to `w`'s shape (reduced ones are
        stored already)."""
        return tuple(n.expand(w.shape) if shape is SlotShape.FULL and n.shape != w.shape
                     else n for n, shape in zip(new_state, self.slot_shapes))

    def call_group(self, ws: Sequence[torch.Tensor], gs: Sequence[torch.Tensor], lr: Any,
                   t: float, states: Sequence[Sequence[torch.Tensor]],
                   hyper: Mapping[str, Any] | None = None,
                   context: StepContext | None = None) -> tuple[list, list]:
        """One step of the whole group: exactly ``run_group_step(..., lead=1)``."""
        for state in states:
            if len(state) != self.n_state:
                raise ValueError(f"{self.program.name} has {self.n_state} state slots, "
                                 f"got {len(state)}")
        values = self._values(hyper)
        per_replica = frozenset(h for h, v in values.items()
                                if isinstance(v, torch.Tensor) and v.dim() == 1)
        _, ns = self._variant(per_replica)
        w0 = ws[0]
        bound = ns["bind"](w0.dtype, w0.device, values)
        scalars = ns["prepare"](torch.as_tensor(t, dtype=w0.dtype, device=w0.device), bound)
        lrs = [self.shape_lr(lr, w) for w in ws]
        if self.grouped:
            steps, new_states = ns["apply_group"](list(ws), list(gs), lrs,
                                                  [tuple(s) for s in states], scalars, bound,
                                                  context)
        else:
            ctx = context or StepContext()
            losses = None if ctx.loss is None else _group_loss(ctx, ws, self.program.name)
            hess = ctx.hess
            steps, new_states = [], []
            for i, (w, g, state) in enumerate(zip(ws, gs, states)):
                step, new = ns["apply"](w, g, lrs[i], tuple(state), scalars, bound,
                                        None if losses is None else losses[i],
                                        None if hess is None else hess[i])
                steps.append(step)
                new_states.append(new)
        steps = [s.expand(w.shape) if s.shape != w.shape else s for s, w in zip(steps, ws)]
        return steps, [self.full_state(w, new) for w, new in zip(ws, new_states)]

    def __call__(self, w: torch.Tensor, g: torch.Tensor, lr: Any, t: float,
                 state: Sequence[torch.Tensor], hyper: Mapping[str, Any] | None = None,
                 context: StepContext | None = None,
                 ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """A group of one: exactly ``run_step(..., lead=1)``."""
        steps, states = self.call_group([w], [g], lr, t, [state], hyper, context)
        return steps[0], states[0]

    def __repr__(self) -> str:
        return (f"<Kernel {self.program.name} elementwise={self.elementwise} "
                f"grouped={self.grouped}>")


def compile_kernel(program: Program) -> Kernel:
    """Compile `program` to a batched step function (see `Kernel`). The program must be
    structurally valid (`dsl.ir.validate`); raises ValueError otherwise."""
    return Kernel(program)
