"""The checker: abstract execution of a program over kinds and dependencies.

Each value is abstracted to its kind (a scalar, or a tensor of the parameter's shape: every
tensor value has that shape, see `dsl.ops`) and the set of inputs it depends on. That is
enough to find what makes a rule meaningless before any training is spent on it:

errors
  * a matrix op (`orth`, `row_mean`, `col_mean`) or `grad_at` applied to a scalar;
  * a step that does not depend on the gradient `g` (`grad_at(...)`, a gradient, counts);
  * a factored state slot (`dsl.slots`) whose new value varies along an axis its storage
    drops (see `varies_along`);
  * a broken IR (an unknown op, a name read before assignment), from mutations, not parsing.
warnings (the simplifier removes what they point at)
  * a state slot that is neither read nor written, or read but never written (it stays 0);
  * a state slot that never affects the step (dead state);
  * a statement whose value is never used (dead code); a hyperparameter never read.

`check_source` (and `check_file`) report a whole rule file: every parse error and every
checker error of every rule, in source order. A rule with parse errors is checked through
the parser's stand-in program (see `dsl.parser`) for errors only: its warnings would be about
a program with statements missing.
"""

from __future__ import annotations

from dataclasses import dataclass

from .context import CONTEXT_INPUTS, SCALAR_CONTEXT
from .errors import Diagnostic, RuleError, in_source_order
from .ir import INPUTS, RESERVED, SCALAR_INPUTS, Program, validate
from .ops import OPS, OpKind, op_for
from .parser import parse_with_errors, read_rule_file
from .slots import SlotShape

__all__ = ["FileReport", "Report", "check", "check_file", "check_source", "complexity",
           "ensure_valid", "live_statements", "live_states", "unchanged_states",
           "varies_along"]

# the axes of the matrix view a value may vary along (see `varies_along`)
ROWS, COLS = "rows", "columns"
BOTH: frozenset[str] = frozenset((ROWS, COLS))
NEITHER: frozenset[str] = frozenset()
# the axes a slot's storage keeps
SLOT_AXES = {SlotShape.FULL: BOTH, SlotShape.ROW: frozenset((ROWS,)),
             SlotShape.COL: frozenset((COLS,)), SlotShape.SCALAR: NEITHER}
# what a matrix op keeps of its argument's axes (orth mixes every entry: both)
_MATRIX_AXES = {"row_mean": frozenset((ROWS,)), "col_mean": frozenset((COLS,))}


@dataclass(frozen=True)
class Report:
    errors: tuple[Diagnostic, ...]
    warnings: tuple[Diagnostic, ...]

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def first_reason(self) -> str:
        """A short machine-friendly reason for the first error (for rejection counters)."""
        return self.errors[0].message.split(":")[0] if self.errors else ""


@dataclass(frozen=True)
class FileReport:
    """A rule file, checked: its valid rules (parsed, no checker error) in the order they
    are defined, and every error and warning in it, each in source order."""

    valid: tuple[Program, ...]
    errors: tuple[Diagnostic, ...]
    warnings: tuple[Diagnostic, ...]

    @property
    def ok(self) -> bool:
        return not self.errors


def check_source(source: str, filename: str = "<rule>") -> FileReport:
    """Parse and check every rule of `source`; every error found, never an exception."""
    parsed = parse_with_errors(source, filename)
    errors = list(parsed.errors)
    warnings: list[Diagnostic] = []
    valid: list[Program] = []
    for rule in parsed.rules:
        if rule.program is None:
            continue
        if rule.errors:
            try:
                validate(rule.program)
            except ValueError:  # not expected of a stand-in; its parse errors are reported
                continue
            errors.extend(check(rule.program).errors)
            continue
        report = check(rule.program)
        errors.extend(report.errors)
        warnings.extend(report.warnings)
        if report.ok:
            valid.append(rule.program)
    return FileReport(tuple(valid), in_source_order(errors), in_source_order(warnings))


def check_file(path) -> FileReport:
    """`check_source` of the rule file at `path` (an unreadable file is one error)."""
    try:
        source = read_rule_file(path)
    except RuleError as e:
        return FileReport((), e.diagnostics, ())
    return check_source(source, str(path))


def ensure_valid(p: Program) -> Program:
    """`p` if it passes the checker, else raise `RuleError` with the errors."""
    report = check(p)
    if not report.ok:
        raise RuleError(list(report.errors))
    return p


def check(p: Program) -> Report:
    errors: list[Diagnostic] = []
    warnings: list[Diagnostic] = []

    lines: list[str] = []

    def at(index: int | None, message: str, severity: str = "error",
           hint: str = "") -> Diagnostic:
        o = p.origin
        if o is None:
            return Diagnostic(message, p.name, severity=severity, hint=hint)
        if index is None:
            line, col = o.def_pos
        elif index >= len(p.body):
            line, col = o.return_pos
        else:
            line, col = o.stmt_pos[index]
        if not lines:
            lines.extend(o.source.splitlines())
        text = lines[line - 1] if 0 < line <= len(lines) else ""
        return Diagnostic(message, o.filename, line, col, text, severity, hint)

    try:
        validate(p)
    except ValueError as e:
        return Report((at(None, f"invalid program: {e}"),), ())

    # kind: True for a tensor; deps: the inputs and state slots a value depends on
    tensor: dict[str, bool] = {name: name not in SCALAR_INPUTS for name in INPUTS}
    tensor.update({name: name not in SCALAR_CONTEXT for name in CONTEXT_INPUTS})
    deps: dict[str, frozenset[str]] = {name: frozenset((name,)) for name in RESERVED}
    for s in p.state:
        tensor[s], deps[s] = True, frozenset((s,))
    for h, _ in p.hyperparams:
        tensor[h], deps[h] = False, frozenset((h,))
    empty: frozenset[str] = frozenset()
    for i, s in enumerate(p.body):
        op = OPS[s.op]
        arg_tensor = [isinstance(a, str) and tensor[a] for a in s.args]
        if op.kind in (OpKind.MATRIX, OpKind.GRADIENT) and not arg_tensor[0]:
            errors.append(at(i, f"{s.op}() needs a tensor, but its argument is a scalar"))
        # a whole-model op gives a scalar; grad_at a gradient (a tensor that depends on g)
        tensor[s.target] = op.kind is not OpKind.GLOBAL and (
            any(arg_tensor) or op.kind is OpKind.GRADIENT)
        deps[s.target] = empty.union(*(deps[a] for a in s.args if isinstance(a, str)))
        if op.kind is OpKind.GRADIENT:
            deps[s.target] |= {"g"}

    def deps_of(a) -> frozenset[str]:
        return deps[a] if isinstance(a, str) else empty

    if "g" not in deps_of(p.step):
        errors.append(at(len(p.body), "the step does not depend on the gradient 'g'"))

    errors.extend(_slot_errors(p, at))
    live = live_states(p, deps_of)
    unchanged = unchanged_states(p)
    updates = [a for a, s in zip(p.returns[1:], p.state) if s not in unchanged]
    read = deps_of(p.step).union(*(deps_of(a) for a in updates))
    for k, s in enumerate(p.state):
        written = s not in unchanged
        if s not in read and not written:
            warnings.append(at(None, f"state '{s}' is neither read nor written", "warning"))
        elif not written:
            warnings.append(at(None, f"state '{s}' is never updated: it stays zero", "warning",
                               f"if '{s}' is a hyperparameter, give it a default, e.g. "
                               f"`{s}=0.9`"))
        elif s not in live:
            warnings.append(at(None, f"state '{s}' never affects the step", "warning"))

    used = live_statements(p)
    for i, s in enumerate(p.body):
        if i not in used:
            warnings.append(at(i, f"the value of '{s.target}' is never used", "warning"))
    for h, _ in p.hyperparams:
        if h not in read:
            warnings.append(at(None, f"hyperparameter '{h}' is never used", "warning"))
    return Report(tuple(errors), tuple(warnings))


def varies_along(p: Program) -> dict[str, frozenset[str]]:
    """For each name after the body has run, the axes of the matrix view its value may
    vary along (`ROWS`, `COLS`): w, g, hess, grad_at(...) and orth(...) vary along both;
    row_mean(x) along x's rows only, col_mean(x) along its columns only; a per-tensor
    reduction, a whole-model op, a scalar input, a constant and rows/cols/numel/loss along
    neither; an elementwise op along the union of its arguments'; a slot, as stored."""
    axes: dict[str, frozenset[str]] = {name: NEITHER for name in p.params + CONTEXT_INPUTS}
    axes.update({"w": BOTH, "g": BOTH, "hess": BOTH})
    axes.update({slot: SLOT_AXES[p.slot_shape(slot)] for slot in p.state})
    for s in p.body:
        axes[s.target] = _op_axes(s.op, [axes[a] if isinstance(a, str) else NEITHER
                                         for a in s.args])
    return axes


def _op_axes(op: str, args: list[frozenset[str]]) -> frozenset[str]:
    kind = OPS[op].kind
    if kind is OpKind.ELEMENTWISE:
        return NEITHER.union(*args)
    if kind is OpKind.MATRIX:
        return args[0] & _MATRIX_AXES[op] if op in _MATRIX_AXES else BOTH
    if kind is OpKind.GRADIENT:
        return BOTH
    return NEITHER  # a per-tensor or whole-model reduction


def _slot_errors(p: Program, at) -> list[Diagnostic]:
    """A factored slot whose new value varies along an axis its storage drops."""
    if not p.slot_shapes:
        return []
    axes = varies_along(p)
    defined_at = {s.target: i for i, s in enumerate(p.body)}
    errors = []
    for slot, shape in p.slot_shapes:
        value = p.returns[1 + p.state.index(slot)]
        extra = (axes[value] if isinstance(value, str) else NEITHER) - SLOT_AXES[shape]
        if not extra:
            continue
        where = defined_at.get(value, len(p.body)) if isinstance(value, str) else len(p.body)
        along = " and ".join(a for a in (ROWS, COLS) if a in extra)
        keeps = {SlotShape.ROW: "one value per row", SlotShape.COL: "one value per column",
                 SlotShape.SCALAR: "one value per tensor"}[shape]
        errors.append(at(where, f"state '{slot}' is stored as {shape.value} ({keeps}), but "
                                f"its new value varies along {along}",
                         hint="reduce it first, e.g. row_mean(x) for a row slot, "
                              "col_mean(x) for a col slot, mean(x) for a scalar slot; or drop "
                              f"the annotation ': {shape.value}'"))
    return errors


def live_states(p: Program, deps_of=None) -> frozenset[str]:
    """State slots that affect the step, directly or through other state slots."""
    if deps_of is None:
        deps_of = _dependencies(p)
    states = frozenset(p.state)
    live = deps_of(p.step) & states
    while True:
        grown = live.union(*(deps_of(p.returns[1 + p.state.index(s)]) & states for s in live))
        if grown == live:
            return live
        live = grown


def complexity(p: Program) -> int:
    """The sum of the op costs of the statements that reach a return."""
    live = live_statements(p)
    return sum(op_for(s.op, "checker").cost for i, s in enumerate(p.body) if i in live)


def unchanged_states(p: Program) -> frozenset[str]:
    """State slots returned as they came in (never assigned, returned under their own name)."""
    assigned = {st.target for st in p.body}
    return frozenset(s for s, a in zip(p.state, p.returns[1:]) if a == s and s not in assigned)


def live_statements(p: Program) -> set[int]:
    """Indices of the statements whose value reaches a return."""
    needed = {a for a in p.returns if isinstance(a, str)}
    live: set[int] = set()
    for i in range(len(p.body) - 1, -1, -1):
        s = p.body[i]
        if s.target in needed:
            live.add(i)
            needed.discard(s.target)  # earlier assignments of this name are overwritten
            needed.update(a for a in s.args if isinstance(a, str))
    return live


def _dependencies(p: Program):
    deps: dict[str, frozenset[str]] = {name: frozenset((name,))
                                       for name in p.params + CONTEXT_INPUTS}
    empty: frozenset[str] = frozenset()
    for s in p.body:
        deps[s.target] = empty.union(*(deps[a] for a in s.args if isinstance(a, str)))
    return lambda a: deps[a] if isinstance(a, str) else empty
