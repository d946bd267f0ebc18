"""The evaluator kernel's code generator: a rule as straight-line Python over torch.

`plan(p)` writes the source `dsl.kernel.Kernel` executes (see that module for the API and
where the speed comes from). Two forms:

* per tensor (`apply`): the rule on one parameter tensor of R replicas, ``[R, *shape]``;
  what every rule without a model-level op compiles to. Context inputs are arguments
  (`v_loss` laid out like `lr`, `v_hess` like `w`); `rows`, `cols` and `numel` are computed
  from `w`'s shape in `apply` (never hoisted: `prepare` is shared by every tensor).
* grouped (`apply_group`): a rule with a GLOBAL or GRADIENT op needs the whole group at
  once. Every value that is not hoisted is a list with one entry per parameter; a
  statement is one list comprehension running the op on each parameter's operands, a
  GLOBAL op one call of the op table's function on the whole list, ``grad_at`` one call of
  the context's ``grad_at`` (the interpreter's order, statement by statement).

Factored slots arrive and leave in their stored shape (`dsl.slots`): loaded as broadcast
views on entry, narrowed by `slots.store` on return.
"""

from __future__ import annotations

from dataclasses import dataclass

from .context import SHAPE_INPUTS
from .ir import INPUTS, Arg, Program, validate
from .ops import OpKind, op_for
from .slots import SlotShape

__all__ = ["Plan", "is_grouped", "plan"]


def _inline(expr: str | None) -> bool:
    """An elementwise op whose torch expression is plain arithmetic (no call) is written
    inline; every other op calls its own implementation, `op_NAME(1, ...)`."""
    return expr is not None and "(" not in expr and "." not in expr


# Ops whose torch expression reads a scalar function of one argument: when that argument is
# a constant-class scalar (and the op's value is not), the function is hoisted to prepare().
# op -> (the argument, the hoisted function of it, the expression over the hoisted value).
_HOISTED_WEIGHT: dict[str, tuple[int, str, str]] = {
    "interp": (2, "1 - {0}", "torch.lerp({1}, {0}, {weight})"),
}

# value classes, from the cheapest to compute to the dearest
_CONST = 0  # constants, hyperparameters, t and what is computed from them only: prepare()
_SHAPE = 1  # depends on rows/cols/numel: a 0-d tensor per parameter tensor
_REP = 2  # depends on lr, loss or a global op: per-replica scalar, [R, 1, ..., 1]
_TENSOR = 3  # depends on w, g, hess, a state slot or grad_at: [R, *shape]


@dataclass(frozen=True)
class Plan:
    source: str
    elementwise: bool
    grouped: bool
    constants: tuple[float, ...]
    slot_shapes: tuple[SlotShape, ...]  # one per state slot


def is_grouped(p: Program) -> bool:
    """Whether `p` needs its whole group at once (a GLOBAL or GRADIENT op)."""
    return any(op_for(s.op, "kernel").kind in (OpKind.GLOBAL, OpKind.GRADIENT)
               for s in p.body)


def _ident(prefix: str, name: str) -> str:
    mangled = f"{prefix}{name}"
    if not mangled.isidentifier():
        raise ValueError(f"invalid identifier {name!r} in program")
    return mangled


def _tuple(names: list[str]) -> str:
    return f"({''.join(n + ', ' for n in names)})"


def plan(p: Program, per_replica: frozenset[str] = frozenset()) -> Plan:
    """The kernel's source for `p`. Hyperparameters named in `per_replica` take one value
    per replica (``[R]``, like `lr`) instead of one for all."""
    for s in p.body:  # before validate(), so that the error names the kernel
        op_for(s.op, "kernel")
    validate(p)
    grouped = is_grouped(p)
    hypers = [h for h, _ in p.hyperparams]
    slot_shapes = tuple(p.slot_shape(s) for s in p.state)
    names: dict[str, str] = {n: _ident("v_", n) for n in INPUTS + ("loss", "hess")}
    names.update({n: _ident("v_", n) for n in SHAPE_INPUTS})
    names.update({s: _ident("v_", s) for s in p.state})
    names.update({h: _ident("h_", h) for h in hypers})
    klass: dict[str, int] = {"w": _TENSOR, "g": _TENSOR, "lr": _REP, "t": _CONST,
                             "loss": _REP, "hess": _TENSOR}
    klass.update({n: _SHAPE for n in SHAPE_INPUTS})
    klass.update({s: _TENSOR for s in p.state})
    klass.update({h: _REP if h in per_replica else _CONST for h in hypers})
    read = {a for s in p.body for a in s.args if isinstance(a, str)} | \
        {a for a in p.returns if isinstance(a, str)}
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

    def each(template: str, args: list[tuple[str, int]]) -> str:
        """`template` over per-parameter operands: as it stands in per-tensor form, a list
        comprehension over the list-valued operands in grouped form."""
        if not grouped:
            return template.format(*(e for e, _ in args))
        items = [f"x{j}" if c > _CONST else e for j, (e, c) in enumerate(args)]
        lists = [(f"x{j}", e) for j, (e, c) in enumerate(args) if c > _CONST]
        loop = f"for {lists[0][0]} in {lists[0][1]}" if len(lists) == 1 else \
            f"for {', '.join(v for v, _ in lists)} in zip({', '.join(e for _, e in lists)})"
        return f"[{template.format(*items)} {loop}]"

    def listed(expr: str, cls: int) -> str:
        """A value as a per-parameter list (grouped form)."""
        return expr if cls > _CONST else f"[{expr} for w_ in ws]"

    scalar_lines: list[str] = []  # body of prepare(): _CONST statements
    lines: list[str] = []  # body of apply() / apply_group(): everything else
    hoisted: list[str] = ["v_t"]  # names computed in prepare() and read in apply()
    elementwise = not grouped and not any(s is not SlotShape.FULL for s in slot_shapes) \
        and not (read & set(SHAPE_INPUTS))
    for i, s in enumerate(p.body):
        op = op_for(s.op, "kernel")
        args = [ref(a) for a in s.args]
        cls = max(c for _, c in args)
        exprs = [e for e, _ in args]
        target = _ident(f"s{i}_", s.target)
        comment = f"  # {s.target} = {s.op}({', '.join(str(a) for a in s.args)})"
        if op.kind is OpKind.GLOBAL:
            cls = _REP
            lines.append(f"{target} = per_param(op_{s.op}(1, {listed(exprs[0], args[0][1])}, "
                         f"ws), ws){comment}")
        elif op.kind is OpKind.GRADIENT:
            cls = _TENSOR
            lines.append(f"{target} = grad_at(context, {listed(exprs[0], args[0][1])}, ws)"
                         f"{comment}")
        else:
            if op.kind is not OpKind.ELEMENTWISE and cls == _TENSOR:
                elementwise = False
            hoist = _HOISTED_WEIGHT.get(s.op)
            if hoist is not None and cls > _CONST and args[hoist[0]][1] == _CONST:
                weight = f"w{i}"
                scalar_lines.append(f"{weight} = {hoist[1].format(exprs[hoist[0]])}")
                hoisted.append(weight)
                template = hoist[2].replace("{weight}", weight)
            elif _inline(op.torch_expr):
                template = f"({op.torch_expr})"
            else:
                template = f"op_{s.op}(1, {', '.join(f'{{{j}}}' for j in range(len(args)))})"
            if cls == _CONST:
                scalar_lines.append(f"{target} = {template.format(*exprs)}{comment}")
                hoisted.append(target)
            else:
                lines.append(f"{target} = {each(template, args)}{comment}")
        names[s.target], klass[s.target] = target, cls

    returns = [ref(a) for a in p.returns]
    const_names = [f"c{k}" for k in range(len(constants))]
    bound_names = const_names + [names[h] for h in hypers]
    state_names = [_ident("v_", s) for s in p.state]
    src: list[str] = ["def bind(dtype, device, hyper):",
                      "    # constants and hyperparameters as 0-d tensors of the parameter's dtype"]
    for k, cname in enumerate(constants.values()):
        src.append(f"    {cname} = torch.tensor(CONSTANTS[{k}], dtype=dtype, device=device)")
    for h in hypers:
        src.append(f"    {names[h]} = torch.as_tensor(hyper[{h!r}], dtype=dtype, device=device)")
    src += [f"    return {_tuple(bound_names)}", "",
            "def prepare(v_t, bound):",
            "    # scalars that depend on constants, hyperparameters and t only",
            f"    {_tuple(bound_names)} = bound"]
    src += ["    " + line for line in scalar_lines]
    src += [f"    return {_tuple(hoisted)}", ""]
    if grouped:
        src += ["def apply_group(ws, gs, lrs, states, scalars, bound, context):",
                f"    {_tuple(hoisted)} = scalars", f"    {_tuple(bound_names)} = bound",
                "    v_w, v_g, v_lr = ws, gs, lrs"]
        for k, (slot, shape) in enumerate(zip(state_names, slot_shapes)):
            load = f"st_[{k}]" if shape is SlotShape.FULL else \
                f"slot_load(SLOT_{shape.name}, st_[{k}], w_.shape)"
            src.append(f"    {slot} = [{load} for st_, w_ in zip(states, ws)]")
        for h in hypers:
            if h in per_replica:  # [R] -> [R, 1, ..., 1] per parameter, as lr
                src.append(f"    {names[h]} = per_param({names[h]}, ws)")
        if "loss" in read:
            src.append("    v_loss = group_loss(context, ws)")
        if "hess" in read:
            src.append("    v_hess = group_hess(context, ws)")
        if read & set(SHAPE_INPUTS):
            src.append("    v_rows, v_cols, v_numel = group_shapes(ws)")
        src += ["    " + line for line in lines]
        step = listed(*returns[0])
        new = []
        for (expr, cls), shape in zip(returns[1:], slot_shapes):
            value = listed(expr, cls)
            if shape is not SlotShape.FULL:
                value = f"[slot_store(SLOT_{shape.name}, x_, w_.shape, 1) " \
                        f"for x_, w_ in zip({value}, ws)]"
            new.append(value)
        states = f"list(zip({', '.join(new)}))" if new else "[() for w_ in ws]"
        src.append(f"    return {step}, {states}")
    else:
        src += ["def apply(v_w, v_g, v_lr, state, scalars, bound, v_loss=None, v_hess=None):",
                f"    {_tuple(state_names)} = state"]
        for slot, shape in zip(state_names, slot_shapes):
            if shape is not SlotShape.FULL:
                src.append(f"    {slot} = slot_load(SLOT_{shape.name}, {slot}, v_w.shape)")
        src += [f"    {_tuple(hoisted)} = scalars", f"    {_tuple(bound_names)} = bound"]
        for h in hypers:
            if h in per_replica:  # [R] -> [R, 1, ..., 1], as the interpreter lays out lr
                src.append(f"    {names[h]} = {names[h]}.reshape((v_w.shape[0],) + "
                           f"(1,) * (v_w.dim() - 1))")
        for name in ("loss", "hess"):
            if name in read:
                src.append(f"    v_{name} = required(v_{name}, {name!r})")
        if read & set(SHAPE_INPUTS):
            src.append("    v_rows, v_cols, v_numel = tensor_shape(v_w)")
        src += ["    " + line for line in lines]
        new = [expr if shape is SlotShape.FULL else
               f"slot_store(SLOT_{shape.name}, {expr}, v_w.shape, 1)"
               for (expr, _), shape in zip(returns[1:], slot_shapes)]
        src.append(f"    return {returns[0][0]}, {_tuple(new)}")
    return Plan("\n".join(src) + "\n", elementwise, grouped, tuple(constant_values),
                slot_shapes)
