"""Rendering: the analysed rule as the functions of an exported module.

* `render_scalars`: ``_scalars(values)``, the scalar section in float64;
* `render_rule`: ``_rule(w, g, *states, S)``, the pure function ``compile=True`` traces;
* `render_eager`: ``_update_param`` and ``_update_foreach``, the eager updaters (see
  `lowering` for their in-place plan);
* `render_fused`: ``_update_fused`` and its ``torch.compile`` cache.

Every op's code comes from the path's table (`tables`).
"""

from __future__ import annotations

from ..context import SHAPE_INPUTS
from ..needs import needs
from .analysis import LOSS_CODE, Analysis, TStmt, Val, pure_code
from .lowering import Plan, plan
from .tables import Eager, Helper, form, helper_call
from .text import _num


def render_scalars(a: Analysis, hyper_names: list[str]) -> list[str]:
    inputs = ["a0", "a1"] + [f"h{j}" for j in range(len(hyper_names))]
    loss = "loss" in needs(a.program)
    if loss:  # a staged rule that reads the loss: one more value, last
        inputs.append(LOSS_CODE)
    doc = ("The rule's scalar-only values for one step, in float64 (IEEE-754, like the "
           "interpreter):\n    values = [lr, t" + "".join(f", {h}" for h in hyper_names)
           + (", loss" if loss else "") + "]. Returns one float64 tensor of slots, read by the tensor code as F[i] / S[i].")
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


def _pure_arg(v: Val) -> str:
    return v.name if v.is_tensor else f"S[{v.slot}]"


def render_rule(a: Analysis) -> list[str]:
    p = a.program
    states = [f"s{k}" for k in range(len(p.state))]
    sig = ", ".join(["w", "g"] + states + ["S"])
    rets = ["step"] + [f"new {s}" for s in p.state]
    out = [f"def _rule({sig}):",
           (f'    """One step of the rule on one tensor, without side effects: returns '
           f'({", ".join(rets)}).\n    Scalars arrive as 0-d tensors S[i] of the compute '
           f'dtype (see _scalars)."""')]
    for st in a.tensor:
        small = [v.is_tensor and not v.full for v in st.args]
        expr = pure_code("pure", st.op, [_pure_arg(v) for v in st.args], small)
        out.append(f"    {st.result} = {expr}  # {st.comment}")
    inputs = {"w", "g", *states}

    def ret(v: Val) -> str:
        code = _pure_arg(v)
        # an input returned as is must not alias the tensor the caller overwrites
        return f"{code}.clone()" if v.is_tensor and v.name in inputs else code

    values = [ret(a.step)] + [f"s{k}" if f is None else ret(f)
                              for k, f in enumerate(a.finals)]
    out.append(f"    return {', '.join(values)}")
    return out


def eager_arg(v: Val, buffer: dict[str, str]) -> str:
    if v.is_tensor:
        return buffer[v.name]
    if v.kind == "const":
        text = _num(v.value)
        return f"({text})" if text.startswith("-") else text
    return f"(-F[{v.slot}])" if v.negated else f"F[{v.slot}]"


class _Path:
    """One eager path: its name (as the tables call it) and how a statement is written."""

    def __init__(self, name: str) -> None:
        self.name = name

    def eager(self, st: TStmt) -> Eager | Helper:
        return form(self.name, st.op)

    def into(self, st: TStmt, dest: str, buffer: dict[str, str]) -> str | None:
        entry = self.eager(st)
        if isinstance(entry, Helper):
            return None
        return entry.into([eager_arg(v, buffer) for v in st.args],
                          [v.is_tensor for v in st.args], dest)

    def inplace_ok(self, st: TStmt, dest: str, buffer: dict[str, str]) -> bool:
        return self.into(st, dest, buffer) is not None

    def per_param_expr(self, st: TStmt, args: list[str], shape: str) -> str:
        entry = form("per-parameter", st.op)
        if isinstance(entry, Helper):
            small = [v.is_tensor and not v.full for v in st.args]
            return helper_call(st.op, args, small, shape)
        code = entry.fresh(args, [v.is_tensor for v in st.args])
        assert code is not None  # every per-parameter form gives a fresh value
        return code

    def render(self, st: TStmt, dest: str | None, p: Plan) -> str:
        if dest is not None:
            code = self.into(st, dest, p.buffer)
            assert code is not None  # the plan asked inplace_ok
            return code
        args = [eager_arg(v, p.buffer) for v in st.args]
        if self.name == "per-parameter":
            return f"{st.result} = {self.per_param_expr(st, args, 'w.shape')}"
        entry = self.eager(st)
        code = None if isinstance(entry, Helper) else entry.fresh(
            args, [v.is_tensor for v in st.args])
        return f"{st.result} = {code if code is not None else self.comprehension(st, p)}"

    def comprehension(self, st: TStmt, p: Plan) -> str:
        """The per-parameter expression, once per tensor of the lists (foreach)."""
        lists: list[str] = []
        per: list[str] = []
        for v in st.args:
            if v.is_tensor:
                lists.append(p.buffer[v.name])
                per.append(f"e{len(lists) - 1}")
            else:
                per.append(eager_arg(v, p.buffer))
        inner = self.per_param_expr(st, per, "ew.shape")
        names = ", ".join(f"e{i}" for i in range(len(lists)))
        zipped = ", ".join(lists)
        if "ew.shape" in inner:
            return f"[{inner} for ew, {names} in zip(w, {zipped})]"
        if len(lists) == 1:
            return f"[{inner} for {names} in {zipped}]"
        return f"[{inner} for {names} in zip({zipped})]"


PER_PARAM_PATH = _Path("per-parameter")
FOREACH_PATH = _Path("foreach")


def render_eager(a: Analysis, path: _Path) -> list[str]:
    p = a.program
    foreach = path is FOREACH_PATH
    pl = plan(a, path.inplace_ok)
    states = [f"s{k}" for k in range(len(p.state))] + shape_inputs(a)
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
    for st, dest, free in zip(pl.stmts, pl.dest, pl.free_after):
        lines = path.render(st, dest, pl).split("\n")
        lines[0] = f"{lines[0]}  # {st.comment}"
        out.extend("    " + line.strip() if j else "    " + line for j, line in enumerate(lines))
        if free:
            out.append(f"    del {', '.join(free)}")

    # Finalise: state copies, then the parameter update; a value read there from a buffer
    # written earlier in this sequence is cloned first.
    seq: list[tuple[str, int | None, Val]] = []
    for k, f in enumerate(a.finals):
        if f is None:
            continue
        if f.is_tensor and pl.buffer[f.name] == f"s{k}":
            continue
        seq.append(("copy", k, f))
    if pl.alpha:
        seq.append(("alpha", None, pl.alpha[0]))
    else:
        seq.append(("step", None, a.step))
    written: set[str] = set()
    clones: dict[str, str] = {}
    for _, k, v in seq:
        if v.is_tensor and pl.buffer[v.name] in written and v.name not in clones:
            clones[v.name] = f"c_{v.name}"
        written.add("w" if k is None else f"s{k}")
    for name, clone in clones.items():
        src = pl.buffer[name]
        out.append(f"    {clone} = " + (f"[e.clone() for e in {src}]" if foreach
                                        else f"{src}.clone()"))

    def read(v: Val) -> str:
        return clones.get(v.name, pl.buffer[v.name]) if v.is_tensor else eager_arg(v, pl.buffer)

    kinds = [p.slot_shape(s).value for s in p.state]
    for what, k, v in seq:
        if what == "copy":
            target = f"s{k}"
            if not v.is_tensor:
                out.append(f"    for e in {target}:\n        e.fill_({read(v)})" if foreach
                           else f"    {target}.fill_({read(v)})")
            elif kinds[k] != "full":  # stored reduced: narrowed first (dsl.slots)
                out.append(f"    for e, x, ew in zip({target}, {read(v)}, w):\n"
                           f"        e.copy_(_narrow({kinds[k]!r}, x, ew.shape))" if foreach
                           else f"    {target}.copy_(_narrow({kinds[k]!r}, {read(v)}, w.shape))")
            elif foreach:
                out.append(f"    torch._foreach_copy_({target}, {read(v)})")
            else:
                out.append(f"    {target}.copy_({read(v)})")
        elif what == "alpha":
            assert pl.alpha is not None
            s = eager_arg(pl.alpha[1], pl.buffer)
            out.append(f"    torch._foreach_add_(w, {read(v)}, alpha=-{s})" if foreach
                       else f"    w.add_({read(v)}, alpha=-{s})")
        else:
            out.append(f"    torch._foreach_sub_(w, {read(v)})" if foreach
                       else f"    w.sub_({read(v)})")
    return out


def shape_inputs(a: Analysis) -> list[str]:
    """The shape scalars (dsl.context) the rule reads: arguments of the eager updaters after
    the state, as 0-d tensors (lists of them, foreach)."""
    read = needs(a.program)
    return [n for n in SHAPE_INPUTS if n in read]


def render_fused(a: Analysis) -> list[str]:
    p = a.program
    states = [f"s{k}" for k in range(len(p.state))]
    lists = ["params", "grads"] + [f"l{k}" for k in range(len(p.state))]
    news = [f"n{k}" for k in range(len(p.state))]
    out = [f"def _update_fused({', '.join(lists + ['S'])}):",
           ('    """The compile=True path: one traced function for all tensors of a group; '
           'S holds the scalars\n    as 0-d tensors of the compute dtype."""'),
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
