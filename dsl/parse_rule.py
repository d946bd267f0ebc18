"""Reading one rule: its signature and its body, statement by statement, going on after an
error (see `dsl.parser`'s module doc). The expressions are `dsl.parse_expr`'s."""

from __future__ import annotations

import ast
import math
from dataclasses import dataclass, field

from .errors import Diagnostic
from .ir import INPUTS, RESERVED, Arg, Origin, Program, is_temp
from .parse_expr import _Reader
from .parse_syntax import (
    _CONSTRUCTS,
    _OPERATOR_TEXT,
    RESERVED_TEXT,
    _assigned_names,
    _Fail,
    _infix_op,
    _is_docstring,
    _last_assignments,
    _number,
    _reads,
    normalize_doc,
)
from .slots import SlotShape


@dataclass(frozen=True)
class ParsedRule:
    """One rule definition as read. Without `errors`, `program` is the rule. With errors,
    `program` is a stand-in for the checker (see `dsl.parser`'s module doc), or None where
    the rule's parameters could not be read."""

    name: str
    program: Program | None
    errors: tuple[Diagnostic, ...]


@dataclass
class _Rule(_Reader):
    """One rule definition being read (the state and expressions are `_Reader`'s)."""

    # the state slots annotated with a reduced storage, in state order (`dsl.slots`)
    slot_shapes: list[tuple[str, SlotShape]] = field(default_factory=list)

    # ---- the signature ---------------------------------------------------------------------
    def parse(self) -> ParsedRule:
        fn = self.node
        signature = self.signature()
        try:
            returns, return_pos, doc = self.statements(signature)
        except _Fail as f:  # fatal: the rule is too long to read on
            self.errors.append(f.diagnostic)
            return ParsedRule(fn.name, None, tuple(self.errors))
        if signature is None:
            return ParsedRule(fn.name, None, tuple(self.errors))
        state, hyper, param_pos = signature
        if returns is None:  # reported; the stand-in returns values of unknown kind
            try:
                returns = tuple(self.unknown_value(fn) for _ in range(1 + len(state)))
            except _Fail:  # too long: no stand-in
                return ParsedRule(fn.name, None, tuple(self.errors))
        origin = Origin(self.module.filename, self.module.source, self.pos(fn),
                        tuple(self.positions), param_pos, return_pos)
        program = Program(fn.name, tuple(state), tuple(hyper), tuple(self.body), returns, doc,
                          origin, tuple(self.slot_shapes))
        return ParsedRule(fn.name, program, tuple(self.errors))

    def signature(self) -> tuple[list[str], list[tuple[str, float]],
                                 dict[str, tuple[int, int]]] | None:
        """(state, hyperparameters, parameter positions); None when the parameters are not
        a rule's (reported), in which case every parameter still names a value."""
        fn = self.node
        self.attempt(self.check_name, fn, fn.name, "rule name")
        if fn.decorator_list:
            self.report(fn.decorator_list[0], "decorators are not part of the rule language")
        a = fn.args
        well_formed = True
        if a.vararg or a.kwarg:
            well_formed = False
            self.report(a.vararg or a.kwarg, "'*args' and '**kwargs' are not part of the "
                                             "rule language")
        if a.posonlyargs or a.kwonlyargs:
            well_formed = False
            bad = (a.posonlyargs or a.kwonlyargs)[0]
            self.report(bad, "positional-only and keyword-only parameters are not part of the "
                             "rule language")
        if fn.returns is not None:
            self.report(fn.returns, "type annotations are not part of the rule language")
        params = a.args
        if well_formed:
            for i, name in enumerate(INPUTS):
                if i >= len(params) or params[i].arg != name:
                    where = params[i] if i < len(params) else fn
                    found = f"; found '{params[i].arg}'" if i < len(params) else ""
                    self.report(where, f"a rule's parameters start with (w, g, lr, t){found}")
                    well_formed = False
                    break
        n_plain = len(params) - len(a.defaults)
        state: list[str] = []
        hyper: list[tuple[str, float]] = []
        param_pos: dict[str, tuple[int, int]] = {}
        seen: set[str] = set()
        for i, p in enumerate(params):
            self.attempt(self.check_name, p, p.arg, "parameter")
            if p.arg in seen:
                self.report(p, f"parameter '{p.arg}' appears twice")
            seen.add(p.arg)
            param_pos[p.arg] = self.pos(p)
            is_slot = len(INPUTS) <= i < n_plain
            if p.annotation is not None and well_formed:
                self.annotation(p, is_slot)
            if i < len(INPUTS):
                continue
            if p.arg in RESERVED:
                kind = "a state slot" if i < n_plain else "a hyperparameter"
                self.report(p, f"'{p.arg}' is a reserved input ({RESERVED_TEXT}); "
                               f"{kind} cannot take its name")
            if i < n_plain:
                state.append(p.arg)
                continue
            default = a.defaults[i - n_plain]
            value = _number(default)
            if value is None:
                self.report(default, f"hyperparameter '{p.arg}' must default to a number")
            elif not math.isfinite(value):
                self.report(default, f"hyperparameter '{p.arg}' must default to a finite "
                                     f"number")
            hyper.append((p.arg, value if value is not None and math.isfinite(value) else 0.0))
        for name in RESERVED + tuple(state):
            self.env[name] = name
        for name, _ in hyper:
            self.env[name] = name
        self.immutable = set(RESERVED) | {n for n, _ in hyper}
        self.slot_shapes = [(n, s) for n, s in self.slot_shapes if n in state]
        if not well_formed:
            others = [x.arg for x in a.posonlyargs + a.args + a.kwonlyargs]
            others += [x.arg for x in (a.vararg, a.kwarg) if x is not None]
            for name in others:
                self.env.setdefault(name, name)
            return None
        return state, hyper, param_pos

    def annotation(self, p: ast.arg, is_slot: bool) -> None:
        """A parameter's annotation: the storage of a state slot (`dsl.slots`)."""
        note = p.annotation
        kinds = ", ".join(s.value for s in SlotShape if s is not SlotShape.FULL)
        if not is_slot:
            self.report(note, f"only state slots take an annotation (their storage: {kinds}); "
                              f"'{p.arg}' is not a state slot")
            return
        shape = None
        if isinstance(note, ast.Name):
            shape = next((s for s in SlotShape if s.value == note.id), None)
        if shape is None:
            self.report(note, f"unknown slot storage '{ast.unparse(note)}': annotate a state "
                              f"slot with one of {kinds} (or full, the default)")
        elif shape is not SlotShape.FULL:
            self.slot_shapes.append((p.arg, shape))

    # ---- the body ----------------------------------------------------------------------
    def statements(self, signature) -> tuple[tuple[Arg, ...] | None, tuple[int, int], str]:
        """Read the body: (the returned values, the return's position, the docstring). The
        returns are None when the return could not be read (reported). Each statement that
        fails is reported and dropped (see the module doc)."""
        fn = self.node
        state = signature[0] if signature is not None else []
        stmts = list(fn.body)
        doc = ""
        if stmts and _is_docstring(stmts[0]):
            doc = normalize_doc(stmts.pop(0).value.value)
        self.last_assignment = _last_assignments(stmts)
        returns: tuple[Arg, ...] | None = None
        return_seen = False
        return_lost = False  # in a statement set aside for a syntax error
        return_pos = (0, 0)
        for k, st in enumerate(stmts):
            if return_seen:
                self.report(st, "code after 'return' is never run")
                break
            set_aside = self.module.set_aside.get(st.lineno) if isinstance(st, ast.Pass) \
                else None
            if set_aside is not None:  # a syntax error, reported
                return_seen = set_aside.is_return
                return_lost = return_lost or set_aside.holds_return
                self.unknown(set_aside.names, st)
                continue
            mark = len(self.body)
            try:
                if isinstance(st, ast.Return):
                    return_seen = True
                    return_pos = self.pos(st)
                    returns = self.returns(st, state, signature is not None)
                else:
                    self.statement(st, k)
            except _Fail as f:
                if f.fatal:
                    raise
                self.errors.append(f.diagnostic)
                del self.body[mark:], self.positions[mark:]
                self.unknown(_assigned_names(st), st)
        if not return_seen and not return_lost:
            self.report(fn, f"rule '{fn.name}' has no 'return'; it must return the step"
                            + "".join(f", the new {s}" for s in state))
        return returns, return_pos, doc

    def statement(self, st: ast.stmt, index: int) -> None:
        if isinstance(st, ast.Assign):
            if len(st.targets) != 1 or not isinstance(st.targets[0], ast.Name):
                raise self.fail(st.targets[-1] if len(st.targets) == 1 else st,
                                "assign to one name at a time ('x = ...')")
            self.assign(st.targets[0], st.value, st, index)
        elif isinstance(st, ast.AugAssign):
            if not isinstance(st.target, ast.Name):
                raise self.fail(st.target, "assign to one name at a time ('x = ...')")
            op = _infix_op(st.op)
            if op is None:
                raise self.fail(st, f"operator '{_OPERATOR_TEXT.get(type(st.op), '?')}=' "
                                    f"is not part of the rule language")
            binop = ast.BinOp(left=ast.Name(st.target.id, ast.Load()), op=st.op,
                              right=st.value)
            ast.copy_location(binop, st)
            ast.copy_location(binop.left, st.target)
            self.assign(st.target, binop, st, index)
        else:
            what = _CONSTRUCTS.get(type(st).__name__, type(st).__name__)
            if _is_docstring(st):
                what = "a string"
            raise self.fail(st, f"{what} is not part of the rule language")

    # ---- statements -----------------------------------------------------------------------
    def assign(self, target: ast.Name, value: ast.expr, st: ast.stmt, index: int) -> None:
        name = target.id
        self.check_name(target, name, "variable")
        if name in self.immutable:
            if name in RESERVED:
                raise self.fail(target, f"cannot assign to the input '{name}' (a reserved "
                                        f"input: {RESERVED_TEXT})")
            raise self.fail(target, f"cannot assign to the hyperparameter '{name}'")
        if is_temp(name) and name in self.temps:
            raise self.fail(target, f"'{name}' names a temporary and may be assigned only once")
        arg = self.expr(value, target=name, target_node=target)
        if arg == name or (is_temp(name) and self.temps.get(name) == arg):
            return
        # A plain copy (`x = y`, `x = 0.5`) creates no statement: the name stands for the
        # value. That is only sound while the copied variable keeps its value.
        if is_temp(name):
            raise self.fail(target, f"a temporary ('{name}') must be computed by an op")
        if isinstance(arg, str) and arg not in self.immutable and (
                self.last_assignment.get(arg, -1) > index):
            raise self.fail(st, f"'{name} = {arg}' copies a variable that is assigned again "
                                f"later; the language has no copies: compute with '{arg}' "
                                f"before reassigning it")
        self.env[name] = arg

    def returns(self, st: ast.Return, state: list[str],
                check_count: bool) -> tuple[Arg, ...] | None:
        """The returned values, or None (reported). Every value is read, so that errors in
        each are found; `check_count` is False when the parameters were not a rule's."""
        if st.value is None:
            self.report(st, "return the step" + "".join(f", the new {s}" for s in state))
            return None
        values = st.value.elts if isinstance(st.value, ast.Tuple) else [st.value]
        args: list[Arg] = []
        for v in values:
            try:
                args.append(self.expr(v))
            except _Fail as f:
                if f.fatal:
                    raise
                self.errors.append(f.diagnostic)
        expected = 1 + len(state)
        if check_count and len(values) < expected:
            missing = state[len(values) - 1:]
            first = missing[0]
            hint = ""
            if first not in self.last_assignment and _reads(self.node.body, first):
                hint = (f"'{first}' is read but never assigned; if it is a hyperparameter, "
                        f"give it a default, e.g. `{first}=0.9`")
            self.report(st, f"state input '{first}' is never returned: return the step, then "
                            f"the new {', '.join(state)}", hint)
            return None
        if check_count and len(values) > expected:
            want = "the step" + (f", then the new {', '.join(state)}" if state else " only")
            self.report(values[expected], f"return has {len(values)} values; expected "
                                          f"{expected}: {want}")
            return None
        return tuple(args) if len(args) == len(values) and check_count else None
