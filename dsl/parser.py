"""Parser: rule source text (Python syntax, read with `ast`, never executed) -> `Program`.

The surface language is a Python function:

    def NAME(w, g, lr, t, STATE..., HYPER=NUMBER...):
        \"\"\"optional docstring\"\"\"
        NAME = EXPR            # also NAME += EXPR (and -=, *=, /=, **=)
        ...
        return STEP, NEW_STATE...

where EXPR is built from names, numbers, `+ - * / **`, unary minus and calls of the ops in
`dsl.ops.OPS`. Nested expressions become temporaries (see `dsl.ir`). Everything else Python
has is refused with a positioned error; the parser raises only `RuleError`.

Every error, not only the first
-------------------------------
The parser goes on after an error, statement by statement, and a `RuleError` holds every
error of the file in source order (`parse_with_errors` returns them instead of raising):

* a syntax error: Python's parser stops at the first, so the statement holding it (its line
  and the lines indented under it, or a whole rule for an error on its `def` line) is set
  aside as if it were `pass`, and the file is read again, up to `MAX_SYNTAX_ERRORS` times;
* any other error: the statement is dropped, and the rule is read on.

Either way, the names a dropped statement assigns still count as assigned, to a value of
unknown kind, so that reading them later is no second error. A rule with errors is still
checked (`dsl.checker.check_source`) when its parameters could be read: through a stand-in
program that computes each value it could not read (a dropped statement's, a broken
return's) as ``add(g, g)``, a tensor that depends on `g`, a value on which the checker's
errors (a matrix op on a scalar, a step without `g`) cannot fire: the stand-in adds no error
of its own.
"""

from __future__ import annotations

import ast
import inspect
import keyword
import math
import re
import warnings
from dataclasses import dataclass, field

from .errors import Diagnostic, RuleError, did_you_mean, in_source_order, line_of
from .ir import INPUTS, Arg, Origin, Program, Stmt, is_temp, temp_name
from .ops import OPS, UNARY_MINUS

MAX_SOURCE_CHARS = 50_000
MAX_STATEMENTS = 1_000
MAX_DEPTH = 100  # nesting of one expression; the printer stays well below it
MAX_SYNTAX_ERRORS = 20  # each one costs a re-parse of the whole file
_MAX_SOURCE_BYTES = 4 * MAX_SOURCE_CHARS  # each character takes 1 to 4 bytes in UTF-8
_TOO_LONG = f"source is longer than {MAX_SOURCE_CHARS:,} characters; not a rule file?"
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}\Z")

_BINOPS = {ast.Add: "add", ast.Sub: "sub", ast.Mult: "mul", ast.Div: "div", ast.Pow: "pow"}
_OPERATOR_TEXT = {ast.Mod: "%", ast.FloorDiv: "//", ast.MatMult: "@", ast.LShift: "<<",
                  ast.RShift: ">>", ast.BitOr: "|", ast.BitAnd: "&", ast.BitXor: "^",
                  ast.Invert: "~", ast.Not: "not"}

# What the language does not have, by AST node type: "<this> is not part of the rule language".
_CONSTRUCTS = {
    "For": "a 'for' loop", "AsyncFor": "a 'for' loop", "While": "a 'while' loop",
    "If": "an 'if' statement", "IfExp": "a conditional expression ('x if c else y')",
    "Attribute": "attribute access ('a.b')", "Import": "an import", "ImportFrom": "an import",
    "Lambda": "a lambda", "ListComp": "a comprehension", "SetComp": "a comprehension",
    "DictComp": "a comprehension", "GeneratorExp": "a comprehension",
    "Subscript": "indexing ('a[i]')", "Slice": "slicing", "Compare": "a comparison",
    "BoolOp": "'and'/'or'", "List": "a list", "Tuple": "a tuple", "Set": "a set",
    "Dict": "a dict", "With": "a 'with' statement", "AsyncWith": "a 'with' statement",
    "Try": "a 'try' statement", "TryStar": "a 'try' statement", "Raise": "'raise'",
    "Assert": "'assert'", "Delete": "'del'", "Global": "'global'", "Nonlocal": "'nonlocal'",
    "Pass": "'pass'", "Break": "'break'", "Continue": "'continue'",
    "ClassDef": "a class definition", "FunctionDef": "a nested function definition",
    "AsyncFunctionDef": "an async function", "Await": "'await'", "Yield": "'yield'",
    "YieldFrom": "'yield'", "NamedExpr": "an assignment expression (':=')",
    "Starred": "unpacking ('*x')", "JoinedStr": "an f-string", "FormattedValue": "an f-string",
    "Match": "a 'match' statement", "AnnAssign": "an annotated assignment",
    "TypeAlias": "a type alias", "Expr": "an expression statement (it has no effect)",
}


@dataclass(frozen=True)
class ParsedRule:
    """One rule definition as read. Without `errors`, `program` is the rule. With errors,
    `program` is a stand-in for the checker (see the module doc), or None where the rule's
    parameters could not be read."""

    name: str
    program: Program | None
    errors: tuple[Diagnostic, ...]


@dataclass(frozen=True)
class ParsedFile:
    """Every rule of a source text and every parse error in it, in source order (the errors
    of each rule are among `errors` too)."""

    rules: tuple[ParsedRule, ...]
    errors: tuple[Diagnostic, ...]

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def programs(self) -> tuple[Program, ...]:
        """The rules, when there are no errors."""
        if self.errors:
            raise RuleError(self.errors)
        return tuple(r.program for r in self.rules if r.program is not None)


def parse_with_errors(source: str, filename: str = "<rule>") -> ParsedFile:
    """Every rule in `source` and every error in it; raises nothing."""
    try:
        return _Module(source, filename).parse()
    except (RecursionError, MemoryError):
        return ParsedFile((), (Diagnostic("rule is nested too deeply to parse", filename),))


def parse_rules(source: str, filename: str = "<rule>") -> tuple[Program, ...]:
    """All rules defined in `source`. Raises `RuleError`, holding every error found, for
    anything that is not a valid rule, and never any other exception."""
    return parse_with_errors(source, filename).programs


def parse(source: str, filename: str = "<rule>") -> Program:
    """The single rule defined in `source` (see `parse_rules`)."""
    rules = parse_rules(source, filename)
    if len(rules) != 1:
        origin = rules[1].origin
        line, col = origin.def_pos if origin else (0, 0)
        raise RuleError(Diagnostic(
            f"expected one rule, found {len(rules)}: {', '.join(r.name for r in rules)}",
            filename, line, col, line_of(source, line)))
    return rules[0]


def load(path) -> Program:
    """Parse the rule file at `path`; a missing or unreadable file is a `RuleError` too."""
    return parse(read_rule_file(path), str(path))


def load_rules(path) -> tuple[Program, ...]:
    return parse_rules(read_rule_file(path), str(path))


def read_rule_file(path) -> str:
    """The text of the rule file at `path` (UTF-8; newlines read as text mode reads them).
    A UTF-8 character takes at most 4 bytes, so at most ``4 * MAX_SOURCE_CHARS + 1`` bytes
    are read: a huge file, or ``/dev/zero``, is refused without being read whole."""
    try:
        with open(path, "rb") as f:
            data = f.read(_MAX_SOURCE_BYTES + 1)
    except OSError as e:
        raise RuleError(Diagnostic(e.strerror or str(e), str(path))) from None
    if len(data) > _MAX_SOURCE_BYTES:  # then it holds more than MAX_SOURCE_CHARS characters
        raise RuleError(Diagnostic(_TOO_LONG, str(path)))
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise RuleError(Diagnostic(f"not UTF-8 text ({e.reason} at byte {e.start})",
                                   str(path))) from None
    source = text.replace("\r\n", "\n").replace("\r", "\n")
    if len(source) > MAX_SOURCE_CHARS:
        raise RuleError(Diagnostic(_TOO_LONG, str(path)))
    return source


class _Fail(Exception):
    """An error in the statement being read. A `fatal` one ends the reading of its rule."""

    def __init__(self, diagnostic: Diagnostic, fatal: bool = False):
        self.diagnostic = diagnostic
        self.fatal = fatal


# what a line's text says it assigns, or that it returns
_ASSIGNED = re.compile(r"\s*([A-Za-z_]\w*(?:\s*,\s*[A-Za-z_]\w*)*)\s*(?:\*\*|[-+*/])?=(?!=)")
_RETURN = re.compile(r"\s*return\b")


@dataclass(frozen=True)
class _SetAside:
    """A statement set aside for a syntax error (read as `pass`), as far as its text tells
    (it has no syntax tree): whether it is a return, whether it holds one (a block may), and
    the names its lines assign."""

    is_return: bool
    holds_return: bool
    names: tuple[str, ...]

    @classmethod
    def of(cls, lines: list[str]) -> _SetAside:
        names = [n.strip() for line in lines if (m := _ASSIGNED.match(line))
                 for n in m.group(1).split(",")]
        return cls(_RETURN.match(lines[0]) is not None,
                   any(_RETURN.match(line) for line in lines), tuple(dict.fromkeys(names)))


@dataclass
class _Module:
    source: str
    filename: str
    # first line of each statement set aside for a syntax error -> what it was
    set_aside: dict[int, _SetAside] = field(default_factory=dict)

    def line(self, number: int) -> str:
        if not hasattr(self, "_lines"):
            self._lines = self.source.splitlines()
        return self._lines[number - 1] if 0 < number <= len(self._lines) else ""

    def fail(self, node: ast.AST | None, message: str, hint: str = "",
             fatal: bool = False) -> _Fail:
        if node is None or not hasattr(node, "lineno"):
            return _Fail(Diagnostic(message, self.filename, hint=hint), fatal)
        line = node.lineno
        text = self.line(line)
        return _Fail(Diagnostic(message, self.filename, line, _char_col(text, node.col_offset),
                                text, hint=hint), fatal)

    def parse(self) -> ParsedFile:
        if len(self.source) > MAX_SOURCE_CHARS:
            return ParsedFile((), (Diagnostic(_TOO_LONG, self.filename),))
        tree, errors = self.syntax_tree()
        if tree is None:
            return ParsedFile((), tuple(errors))
        rules: list[ParsedRule] = []
        body = tree.body
        if body and _is_docstring(body[0]):
            body = body[1:]
        for node in body:
            if isinstance(node, ast.Pass) and node.lineno in self.set_aside:
                continue  # its syntax error is reported
            if not isinstance(node, ast.FunctionDef):
                what = _CONSTRUCTS.get(type(node).__name__, type(node).__name__)
                if isinstance(node, (ast.Assign, ast.AugAssign)):
                    what = "an assignment"
                errors.append(self.fail(node, f"{what} at the top level: a rule file holds "
                                              f"only rule definitions ('def NAME(w, g, lr, t, "
                                              f"...)')").diagnostic)
                continue
            rule = _Rule(self, node).parse()
            errors.extend(rule.errors)
            if any(r.name == rule.name for r in rules):
                twice = self.fail(node, f"rule '{rule.name}' is defined twice")
                errors.append(twice.diagnostic)
                continue
            rules.append(rule)
        if not rules and not errors:
            errors.append(Diagnostic("no rule definition found ('def NAME(w, g, lr, t, ...)')",
                                     self.filename, 1 if self.source else 0, 1,
                                     line_of(self.source, 1)))
        return ParsedFile(tuple(rules), in_source_order(errors))

    def syntax_tree(self) -> tuple[ast.Module | None, list[Diagnostic]]:
        """Python's syntax tree of the source, with each statement that holds a syntax error
        set aside (see the module doc), and those errors; no tree when an error cannot be
        set aside, or after MAX_SYNTAX_ERRORS of them."""
        lines = self.source.split("\n")
        errors: list[Diagnostic] = []
        blanked: set[int] = set()  # 1-based lines set aside so far
        while True:
            try:
                with warnings.catch_warnings():  # e.g. SyntaxWarning: invalid escape sequence
                    warnings.simplefilter("ignore")
                    return ast.parse("\n".join(lines), self.filename), errors
            except SyntaxError as e:
                line = e.lineno or 0
                if errors and (line in blanked or line <= 0):
                    return None, errors  # the error is in what was set aside: give up
                errors.append(self.syntax_error(e))
                statement = _statement_lines(lines, line)
                if (statement is None or len(errors) >= MAX_SYNTAX_ERRORS
                        or "unterminated triple-quoted" in e.msg):
                    return None, errors
                first, last = statement
                self.set_aside[first] = _SetAside.of(lines[first - 1:last])
                head = lines[first - 1]
                lines[first - 1] = head[:len(head) - len(head.lstrip())] + "pass"
                for k in range(first + 1, last + 1):
                    lines[k - 1] = ""
                blanked.update(range(first, last + 1))
            except ValueError as e:  # e.g. null bytes in the source
                return None, errors + [Diagnostic(f"syntax error: {e}", self.filename)]

    def syntax_error(self, e: SyntaxError) -> Diagnostic:
        line = e.lineno or 0
        text = line_of(self.source, line)
        col = max(e.offset or 1, 1)
        hint = ""
        if "default" in e.msg and "follows" in e.msg:
            # `def f(w, g, lr, t, beta=0.9, eps)`: 'non-default argument follows default
            # argument' (3.11), 'parameter without a default follows parameter with a default'
            name = re.match(r"[A-Za-z_]\w*", text[col - 1:]) if text else None
            name_text = name.group(0) if name else "beta"
            hint = (f"give '{name_text}' a default if it is a hyperparameter, e.g. "
                    f"`{name_text}=0.9`; state parameters (no default) come before the "
                    f"hyperparameters")
        return Diagnostic(f"syntax error: {e.msg}", self.filename, line, col, text, hint=hint)


def _statement_lines(lines: list[str], line: int) -> tuple[int, int] | None:
    """(first, last) line of the statement holding `line`, 1-based: back over continuation
    lines (indented deeper than the line before them, which does not open a block) to the
    statement's first line, then on over the lines indented deeper than it (the rest of the
    statement, or the block it opens). None when `line` is not in the text."""
    def indent(text: str) -> int:
        return len(text) - len(text.lstrip())

    def is_code(text: str) -> bool:
        return bool(text.strip()) and not text.lstrip().startswith("#")

    def opens_block(text: str) -> bool:
        return re.sub(r"#.*", "", text).rstrip().endswith(":")

    line = min(line, len(lines))
    while line > 0 and not is_code(lines[line - 1]):
        line -= 1  # an error at the end of the file, or on a blank line
    if line <= 0:
        return None
    first = line
    while True:
        before = first - 1
        while before > 0 and not is_code(lines[before - 1]):
            before -= 1
        if before <= 0 or indent(lines[before - 1]) >= indent(lines[first - 1]) or \
                opens_block(lines[before - 1]):
            break
        first = before
    last = line
    k = line + 1
    while k <= len(lines):
        if is_code(lines[k - 1]):
            if indent(lines[k - 1]) <= indent(lines[first - 1]):
                break
            last = k
        k += 1
    return first, last


def normalize_doc(doc: str) -> str:
    """`inspect.cleandoc` to its fixed point, so that a printed docstring reads back the
    same (one pass of cleandoc is not idempotent)."""
    for _ in range(10):
        cleaned = inspect.cleandoc(doc)
        if cleaned == doc:
            break
        doc = cleaned
    return doc


def _is_docstring(node: ast.stmt) -> bool:
    return (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str))


def _char_col(line: str, byte_offset: int) -> int:
    """1-based character column from ast's UTF-8 byte offset."""
    return len(line.encode("utf-8")[:byte_offset].decode("utf-8", errors="ignore")) + 1


# Stand-in for a value the parser could not read (see the module doc): a tensor that
# depends on g, for which no checker error can fire.
_UNKNOWN_VALUE = ("add", ("g", "g"))


@dataclass
class _Rule:
    module: _Module
    node: ast.FunctionDef
    body: list[Stmt] = field(default_factory=list)
    positions: list[tuple[int, int]] = field(default_factory=list)
    # What a name currently means: itself (an assigned variable), or, after a plain copy
    # `x = y` / `x = 0.5`, the argument it stands for.
    env: dict[str, Arg] = field(default_factory=dict)
    immutable: set[str] = field(default_factory=set)
    temps: dict[str, str] = field(default_factory=dict)  # user-written _N -> positional name
    errors: list[Diagnostic] = field(default_factory=list)

    def fail(self, node, message, hint: str = "") -> _Fail:
        return self.module.fail(node, message, hint)

    def report(self, node, message, hint: str = "") -> None:
        self.errors.append(self.fail(node, message, hint).diagnostic)

    def attempt(self, check, *args) -> bool:
        """Run `check(*args)`; a `_Fail` it raises is reported. True when it passed."""
        try:
            check(*args)
            return True
        except _Fail as f:
            self.errors.append(f.diagnostic)
            return False

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
                          origin)
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
        for i, p in enumerate(params):
            if p.annotation is not None:
                self.report(p.annotation, "type annotations are not part of the rule language")
            self.attempt(self.check_name, p, p.arg, "parameter")
            param_pos[p.arg] = self.pos(p)
            if i < len(INPUTS):
                continue
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
        for name in INPUTS + tuple(state):
            self.env[name] = name
        for name, _ in hyper:
            self.env[name] = name
        self.immutable = set(INPUTS) | {n for n, _ in hyper}
        if not well_formed:
            others = [x.arg for x in a.posonlyargs + a.args + a.kwonlyargs]
            others += [x.arg for x in (a.vararg, a.kwarg) if x is not None]
            for name in others:
                self.env.setdefault(name, name)
            return None
        return state, hyper, param_pos

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
            op = _BINOPS.get(type(st.op))
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

    def unknown(self, names, node: ast.AST) -> None:
        """The names a dropped statement assigns hold a value of unknown kind from here on."""
        for name in names:
            if name not in self.immutable:
                self.unknown_value(node, name)

    def unknown_value(self, node: ast.AST, target: str | None = None) -> str:
        op, args = _UNKNOWN_VALUE
        return self.emit(node, op, args, target)

    def each(self, nodes, depth: int) -> tuple[Arg, ...]:
        """The values of `nodes`, each read even after an error in another (so that every
        error is found); the first error is raised, the others reported."""
        args: list[Arg] = []
        failures: list[_Fail] = []
        for node in nodes:
            try:
                args.append(self.expr(node, depth=depth))
            except _Fail as f:
                if f.fatal:
                    raise
                failures.append(f)
        if failures:
            self.errors.extend(f.diagnostic for f in failures[1:])
            raise failures[0]
        return tuple(args)

    def pos(self, node) -> tuple[int, int]:
        line = getattr(node, "lineno", 0)
        return line, _char_col(self.module.line(line), getattr(node, "col_offset", 0))

    def check_name(self, node, name: str, what: str) -> None:
        if not _IDENTIFIER.match(name):
            raise self.fail(node, f"{what} '{name}' must be ASCII letters, digits and '_', "
                                  f"starting with a letter or '_', at most 64 characters")
        if keyword.iskeyword(name) or name == "__debug__":
            raise self.fail(node, f"{what} '{name}' is a Python keyword; choose another name")
        if name in OPS:
            raise self.fail(node, f"{what} '{name}' is the name of an op; choose another name")

    # ---- statements -----------------------------------------------------------------------
    def assign(self, target: ast.Name, value: ast.expr, st: ast.stmt, index: int) -> None:
        name = target.id
        self.check_name(target, name, "variable")
        if name in self.immutable:
            kind = "input" if name in INPUTS else "hyperparameter"
            raise self.fail(target, f"cannot assign to the {kind} '{name}'")
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

    # ---- expressions ----------------------------------------------------------------------
    def expr(self, node: ast.expr, target: str | None = None,
             target_node: ast.AST | None = None, depth: int = 0) -> Arg:
        """Emit statements computing `node`; return the argument holding its value. With a
        `target`, the outermost op assigns to that name."""
        if depth > MAX_DEPTH:
            raise self.fail(node, f"expression nested more than {MAX_DEPTH} levels deep; "
                                  f"split it with assignments")
        depth += 1
        value = _number(node)
        if value is not None:
            if not math.isfinite(value):
                raise self.fail(node, "numbers must be finite")
            return value
        if isinstance(node, ast.Name):
            return self.lookup(node)
        if isinstance(node, ast.Constant):
            what = "a string" if isinstance(node.value, (str, bytes)) else (
                "a boolean" if isinstance(node.value, bool) else repr(node.value))
            raise self.fail(node, f"{what} is not a number; only numbers may appear in rules")
        if isinstance(node, ast.UnaryOp):
            if isinstance(node.op, ast.UAdd):
                return self.expr(node.operand, target, target_node, depth)
            if isinstance(node.op, ast.USub):
                return self.emit(node, UNARY_MINUS, (self.expr(node.operand, depth=depth),),
                                 target)
            raise self.fail(node, f"operator '{_OPERATOR_TEXT.get(type(node.op), '?')}' is not "
                                  f"part of the rule language")
        if isinstance(node, ast.BinOp):
            op = _BINOPS.get(type(node.op))
            if op is None:
                raise self.fail(node, f"operator '{_OPERATOR_TEXT.get(type(node.op), '?')}' is "
                                      f"not part of the rule language")
            return self.emit(node, op, self.each((node.left, node.right), depth), target)
        if isinstance(node, ast.Call):
            return self.call(node, target, depth)
        what = _CONSTRUCTS.get(type(node).__name__, type(node).__name__)
        raise self.fail(node, f"{what} is not part of the rule language")

    def call(self, node: ast.Call, target: str | None, depth: int) -> Arg:
        try:
            name = self.callee(node)
        except _Fail as bad_call:
            if not bad_call.fatal:  # the arguments may hold errors of their own
                try:
                    self.each([a for a in node.args if not isinstance(a, ast.Starred)], depth)
                except _Fail as bad_argument:
                    if bad_argument.fatal:
                        raise
                    self.errors.append(bad_argument.diagnostic)
            raise
        return self.emit(node, name, self.each(node.args, depth), target)

    def callee(self, node: ast.Call) -> str:
        """The op that `node` calls, if the call is well formed."""
        if not isinstance(node.func, ast.Name):
            if isinstance(node.func, ast.Attribute):
                raise self.fail(node.func, "attribute access ('a.b') is not part of the rule "
                                           "language; call ops by name, e.g. sqrt(x)")
            what = _CONSTRUCTS.get(type(node.func).__name__)
            if what:
                raise self.fail(node.func, f"{what} is not part of the rule language")
            raise self.fail(node.func, "only ops can be called, by name (e.g. sqrt(x))")
        name = node.func.id
        op = OPS.get(name)
        if op is None:
            if name in self.env:
                raise self.fail(node.func, f"'{name}' is a variable, not a function")
            hint = did_you_mean(name, OPS)
            raise self.fail(node.func, f"unknown function '{name}'"
                                       + (f"; {hint}" if hint else ""))
        if node.keywords:
            raise self.fail(node.keywords[0], f"{name}() takes positional arguments only")
        for a in node.args:
            if isinstance(a, ast.Starred):
                raise self.fail(a, "unpacking ('*x') is not part of the rule language")
        if len(node.args) != op.arity:
            plural = "argument" if op.arity == 1 else "arguments"
            raise self.fail(node, f"{name}() takes {op.arity} {plural}, got {len(node.args)}")
        return name

    def lookup(self, node: ast.Name) -> Arg:
        name = node.id
        if name in self.env:
            return self.env[name]
        if is_temp(name) and name in self.temps:
            return self.temps[name]
        if name in OPS:
            raise self.fail(node, f"'{name}' is a function; call it, e.g. {name}(x)")
        hint = did_you_mean(name, [n for n in self.env if not is_temp(n)])
        raise self.fail(node, f"undefined name '{name}'" + (f"; {hint}" if hint else ""))

    def emit(self, node: ast.AST, op: str, args: tuple[Arg, ...], target: str | None) -> str:
        if len(self.body) >= MAX_STATEMENTS:
            raise self.module.fail(node, f"rule has more than {MAX_STATEMENTS} operations",
                                   fatal=True)
        index = len(self.body)
        if target is None or is_temp(target):
            name = temp_name(index)
            if target is not None:
                self.temps[target] = name
        else:
            name = target
            self.env[name] = name
        self.body.append(Stmt(name, op, args))
        self.positions.append(self.pos(node))
        return name


def _number(node: ast.AST) -> float | None:
    """The value of a numeric literal, optionally signed (`-1e-8`), else None."""
    sign = 1.0
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        sign = -1.0 if isinstance(node.op, ast.USub) else 1.0
        node = node.operand
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        try:
            return sign * float(node.value)
        except OverflowError:
            return math.inf
    return None


def _last_assignments(stmts: list[ast.stmt]) -> dict[str, int]:
    """For each name, the index of the last statement of the body that assigns it."""
    last: dict[str, int] = {}
    for k, st in enumerate(stmts):
        targets = st.targets if isinstance(st, ast.Assign) else (
            [st.target] if isinstance(st, ast.AugAssign) else [])
        for t in targets:
            if isinstance(t, ast.Name):
                last[t.id] = k
    return last


def _reads(stmts: list[ast.stmt], name: str) -> bool:
    """Whether any of `stmts` reads the variable `name`."""
    return any(isinstance(n, ast.Name) and n.id == name and isinstance(n.ctx, ast.Load)
               for st in stmts for n in ast.walk(st))


def _assigned_names(st: ast.stmt) -> list[str]:
    """The names a statement assigns (``x = ...``, ``a, b = ...``, a loop variable...)."""
    return [n.id for n in ast.walk(st)
            if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)]
