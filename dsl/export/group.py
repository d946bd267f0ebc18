"""Rules that reach beyond their own tensor: the staged form of an exported optimizer.

A rule that reads a context input (``loss``, ``hess``, ``rows``, ``cols``, ``numel``), calls
a whole-group op (``global_sum``, ``global_norm``, ``grad_at``) or keeps factored state
(`dsl.slots`) is exported in this form; every other rule keeps the per-tensor form of
`render` unchanged.

The tensor section (`analysis`) is cut at each whole-group op (a *barrier*) into *stages*.
A stage is a pure function of one parameter's values, ``_stage<k>(w, ..., S)``, returning
the values that later stages, barriers or the results read; the last stage returns the step
and the new state, as ``_rule`` does. The optimizer (`runtime_group`) runs stage k for every
parameter of a param group, then barrier k once for the group (the reduction over all
parameters, or one call of the closure), then stage k + 1, ...; parameters and state change
only after the last stage. ``compile=True`` runs each stage through ``torch.compile``; the
per-parameter and ``foreach`` paths run the stage functions as they are (``foreach`` is then
the same code: a stage is per tensor; the docstring says so), except for a rule without
whole-group steps or closure inputs (`is_per_tensor`: shape scalars, factored state), which
keeps the in-place updaters of `render` (a factored slot is never written in place there;
its new value is narrowed to the stored shape).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..ir import Program
from ..needs import needs
from ..ops import OPS, OpKind
from ..slots import SlotShape
from .analysis import Analysis, TStmt, Val, is_barrier, pure_code


def is_per_tensor(p: Program) -> bool:
    """A staged rule without whole-group steps and closure inputs (shape scalars, factored
    state): its eager paths also use the in-place updaters of the per-tensor form."""
    return not (needs(p) & {"loss", "hess", "grad_at"}) and not any(
        is_barrier(s.op) for s in p.body)


def is_staged(p: Program) -> bool:
    """Whether `p` is exported in the staged form (see the module doc)."""
    return bool(needs(p) or p.slot_shapes or any(is_barrier(s.op) for s in p.body))


@dataclass(frozen=True)
class Stage:
    stmts: tuple[TStmt, ...]
    inputs: tuple[str, ...]  # per-parameter values it reads (w always first)
    outputs: tuple[str, ...]  # values it returns for later (not the last stage)


@dataclass(frozen=True)
class Barrier:
    op: str
    arg: Val
    result: str


def _reads(v: Val) -> list[str]:
    return [v.name] if v.is_tensor else []


def split(a: Analysis) -> tuple[list[Stage], list[Barrier]]:
    """The tensor section cut at its whole-group ops."""
    chunks: list[list[TStmt]] = [[]]
    barriers: list[Barrier] = []
    for st in a.tensor:
        if is_barrier(st.op):
            barriers.append(Barrier(st.op, st.args[0], st.result))
            chunks.append([])
        else:
            chunks[-1].append(st)
    ends = [a.step] + [f for f in a.finals if f is not None]
    needed = {n for v in ends for n in _reads(v)}
    stages: list[Stage] = []
    for k in range(len(chunks) - 1, -1, -1):
        defined = {st.result for st in chunks[k]}
        outputs = tuple(sorted(defined & needed, key=_order)) if k < len(chunks) - 1 else ()
        reads = {n for st in chunks[k] for v in st.args for n in _reads(v)}
        needed = (needed - defined) | (reads - defined)
        inputs = tuple(["w"] + sorted(needed - {"w"}, key=_order))
        stages.append(Stage(tuple(chunks[k]), inputs, outputs))
        if k:
            b = barriers[k - 1]
            needed = (needed - {b.result}) | set(_reads(b.arg))
    return stages[::-1], barriers


def _order(name: str) -> tuple[int, int, str]:
    """Inputs in a readable order: w, g, states, context, then temporaries by number."""
    fixed = ["w", "g", "rows", "cols", "numel", "hess"]
    if name in fixed:
        return (0, fixed.index(name), "")
    if name[0] == "s" and name[1:].isdigit():
        return (1, int(name[1:]), "")
    return (2, int(name[1:]) if name[1:].isdigit() else 0, name)


def _arg(v: Val) -> str:
    return v.name if v.is_tensor else f"S[{v.slot}]"


def render_stages(a: Analysis) -> list[str]:
    """The stage functions and the tables the optimizer runs them by."""
    stages, barriers = split(a)
    p = a.program
    states = {f"s{k}" for k in range(len(p.state))}
    out: list[str] = []
    for k, stage in enumerate(stages):
        last = k == len(stages) - 1
        upto = ("the step and the new state" if last else
                f"what later stages read, before {barriers[k].op} ({barriers[k].result})")
        out += [f"def _stage{k}({', '.join(list(stage.inputs) + ['S'])}):",
                (f'    """Stage {k} of the rule on one tensor, without side effects: returns '
                 f'{upto}.\n    Scalars arrive as 0-d tensors S[i] of the compute dtype."""')]
        for st in stage.stmts:
            small = [v.is_tensor and not v.full for v in st.args]
            expr = pure_code("pure", st.op, [_arg(v) for v in st.args], small)
            out.append(f"    {st.result} = {expr}  # {st.comment}")
        if last:
            def ret(v: Val) -> str:
                # an input returned as is must not alias a tensor the optimizer overwrites
                return f"{_arg(v)}.clone()" if v.is_tensor and v.name in states | {"w"} else \
                    _arg(v)
            values = [ret(a.step)] + ["None" if f is None else ret(f) for f in a.finals]
            out.append(f"    return ({', '.join(values)},)")
        else:
            out.append(f"    return ({''.join(o + ', ' for o in stage.outputs)})")
        out += ["", ""]
    rows = [f"    (_stage{k}, {stage.inputs!r}, {stage.outputs!r}),"
            for k, stage in enumerate(stages)]
    out += ["# (stage function, the values it reads, the values it returns for later)",
            "_STAGES = (", *rows, ")",
            "# (whole-group op, its argument: a value's name or a scalar slot S[i], its result)",
            "_BARRIERS = ("]
    for b in barriers:
        arg = repr(b.arg.name) if b.arg.is_tensor else str(b.arg.slot)
        out.append(f"    ({b.op!r}, {arg}, {b.result!r}),")
    out += [")", "", "", "_COMPILED_STAGES = {}", "", "",
            "def _compiled_stage(k):",
            "    if k not in _COMPILED_STAGES:",
            "        _COMPILED_STAGES[k] = torch.compile(_STAGES[k][0], dynamic=False)",
            "    return _COMPILED_STAGES[k]"]
    return out


def group_constants(p: Program) -> list[str]:
    """The module constants the staged optimizer reads (see `runtime_group`)."""
    read = needs(p)
    closure = sorted(read & {"loss", "hess", "grad_at"})
    return [f"_SLOT_KINDS = {tuple(p.slot_shape(s).value for s in p.state)!r}",
            f"_NEEDS = {tuple(closure)!r}",
            f"_SHAPE_READS = {tuple(n for n in ('rows', 'cols', 'numel') if n in read)!r}",
            f"_READS_HESS = {'hess' in read!r}",
            f"_READS_LOSS = {'loss' in read!r}",
            f"_EAGER = {is_per_tensor(p)!r}"]


def features(p: Program) -> list[str]:
    """What makes `p` staged, in words (for docstrings)."""
    read = needs(p)
    out = []
    if "loss" in read:
        out.append("the loss")
    if "hess" in read:
        out.append("a Hutchinson estimate of the Hessian diagonal (hess)")
    if "grad_at" in read:
        out.append("the gradient at a perturbed point (grad_at)")
    shapes = [n for n in ("rows", "cols", "numel") if n in read]
    if shapes:
        out.append("the shape of each parameter's matrix view (" + ", ".join(shapes) + ")")
    globals_ = sorted({s.op for s in p.body if OPS[s.op].kind is OpKind.GLOBAL})
    if globals_:
        out.append("values over the whole param group (" + ", ".join(globals_) + ")")
    if p.slot_shapes:
        out.append("factored state (" + ", ".join(f"{s}: {k.value}" for s, k in p.slot_shapes)
                   + ")")
    return out


def state_doc(p: Program, keys: list[str]) -> str:
    """How each state entry is stored."""
    parts = []
    for s, key in zip(p.state, keys):
        kind = p.slot_shape(s)
        parts.append(key if kind is SlotShape.FULL else f"{key} ({_STORED[kind]})")
    return ", ".join(parts + ["step"])


_STORED = {SlotShape.ROW: "one value per row of the matrix view, shape (d0, 1, ..., 1)",
           SlotShape.COL: "one value per column of the matrix view, shape (1, d1, ..., dk)",
           SlotShape.SCALAR: "one value, shape (1, ..., 1)"}


def closure_doc(p: Program, class_name: str) -> str:
    """How to call ``step`` for a rule that needs a closure (empty when it does not)."""
    read = needs(p)
    closure = sorted(read & {"loss", "hess", "grad_at"})
    if not closure:
        return ""
    backward = ("loss.backward(create_graph=True)" if "hess" in read else "loss.backward()")
    text = (f"This rule reads {', '.join(closure)}, so step() needs a closure, as "
            f"torch.optim.LBFGS does:\n\n"
            f"        def closure():\n"
            f"            opt.zero_grad()\n"
            f"            loss = loss_fn(model(x), y)\n"
            f"            {backward}\n"
            f"            return loss\n\n"
            f"        opt.step(closure)\n\n")
    if "hess" in read:
        text += ("    hess needs the second derivative: the closure's backward must keep its "
                 "graph\n    (create_graph=True). The Rademacher vectors come from the "
                 "optimizer's own\n    torch.Generator, seeded by hessian_seed.\n")
    if "grad_at" in read:
        text += ("    grad_at calls the closure again at the perturbed parameters of the group "
                 "(same\n    minibatch: the closure must not draw a new one) and restores the "
                 "parameters\n    and the first gradients exactly.\n")
    return text
