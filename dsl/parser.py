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
"""

from __future__ import annotations

import ast
import difflib
import inspect
import keyword
import math
import re
import warnings
from dataclasses import dataclass, field

from .errors import Diagnostic, RuleError, line_of
from .ir import INPUTS, Arg, Origin, Program, Stmt, is_temp, temp_name
from .ops import OPS, UNARY_MINUS

MAX_SOURCE_CHARS = 50_000
MAX_STATEMENTS = 1_000
MAX_DEPTH = 100  # nesting of one expression; the printer stays well below it
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


def parse_rules(source: str, filename: str = "<rule>") -> tuple[Program, ...]:
    """All rules defined in `source`. Raises `RuleError` for anything that is not a valid
    rule, and never any other exception."""
    try:
        return _Module(source, filename).parse()
    except _Fail as fail:
        raise RuleError(fail.diagnostic) from None
    except (RecursionError, MemoryError):
        raise RuleError(Diagnostic("rule is nested too deeply to parse", filename)) from None


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
    def __init__(self, diagnostic: Diagnostic):
        self.diagnostic = diagnostic


@dataclass
class _Module:
    source: str
    filename: str

    def line(self, number: int) -> str:
        if not hasattr(self, "_lines"):
            self._lines = self.source.splitlines()
        return self._lines[number - 1] if 0 < number <= len(self._lines) else ""

    def fail(self, node: ast.AST | None, message: str) -> _Fail:
        if node is None or not hasattr(node, "lineno"):
            return _Fail(Diagnostic(message, self.filename))
        line = node.lineno
        text = self.line(line)
        return _Fail(Diagnostic(message, self.filename, line, _char_col(text, node.col_offset),
                                text))

    def parse(self) -> tuple[Program, ...]:
        if len(self.source) > MAX_SOURCE_CHARS:
            raise _Fail(Diagnostic(_TOO_LONG, self.filename))
        try:
            with warnings.catch_warnings():  # e.g. SyntaxWarning: invalid escape sequence
                warnings.simplefilter("ignore")
                tree = ast.parse(self.source, self.filename)
        except SyntaxError as e:
            line = e.lineno or 0
            text = line_of(self.source, line)
            raise _Fail(Diagnostic(f"syntax error: {e.msg}", self.filename, line,
                                   max(e.offset or 1, 1), text)) from None
        except ValueError as e:  # e.g. null bytes in the source
            raise _Fail(Diagnostic(f"syntax error: {e}", self.filename)) from None
        rules: list[Program] = []
        body = tree.body
        if body and _is_docstring(body[0]):
            body = body[1:]
        for node in body:
            if not isinstance(node, ast.FunctionDef):
                what = _CONSTRUCTS.get(type(node).__name__, type(node).__name__)
                if isinstance(node, (ast.Assign, ast.AugAssign)):
                    what = "an assignment"
                raise self.fail(node, f"{what} at the top level: a rule file holds only rule "
                                      f"definitions ('def NAME(w, g, lr, t, ...)')")
            rule = _Rule(self, node).parse()
            if any(r.name == rule.name for r in rules):
                raise self.fail(node, f"rule '{rule.name}' is defined twice")
            rules.append(rule)
        if not rules:
            raise _Fail(Diagnostic("no rule definition found ('def NAME(w, g, lr, t, ...)')",
                                   self.filename, 1 if self.source else 0, 1,
                                   line_of(self.source, 1)))
        return tuple(rules)


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

    def fail(self, node, message) -> _Fail:
        return self.module.fail(node, message)

    # ---- the signature ---------------------------------------------------------------------
    def parse(self) -> Program:
        fn = self.node
        self.check_name(fn, fn.name, "rule name")
        if fn.decorator_list:
            raise self.fail(fn.decorator_list[0], "decorators are not part of the rule language")
        a = fn.args
        if a.vararg or a.kwarg:
            raise self.fail(a.vararg or a.kwarg, "'*args' and '**kwargs' are not part of the "
                                                 "rule language")
        if a.posonlyargs or a.kwonlyargs:
            bad = (a.posonlyargs or a.kwonlyargs)[0]
            raise self.fail(bad, "positional-only and keyword-only parameters are not part "
                                 "of the rule language")
        if fn.returns is not None:
            raise self.fail(fn.returns, "type annotations are not part of the rule language")
        params = a.args
        for i, name in enumerate(INPUTS):
            if i >= len(params) or params[i].arg != name:
                where = params[i] if i < len(params) else fn
                found = f"; found '{params[i].arg}'" if i < len(params) else ""
                raise self.fail(where, f"a rule's parameters start with (w, g, lr, t){found}")
        n_plain = len(params) - len(a.defaults)
        state: list[str] = []
        hyper: list[tuple[str, float]] = []
        param_pos: dict[str, tuple[int, int]] = {}
        for i, p in enumerate(params):
            if p.annotation is not None:
                raise self.fail(p.annotation, "type annotations are not part of the rule "
                                              "language")
            self.check_name(p, p.arg, "parameter")
            param_pos[p.arg] = self.pos(p)
            if i < len(INPUTS):
                continue
            if i < n_plain:
                state.append(p.arg)
            else:
                default = a.defaults[i - n_plain]
                value = _number(default)
                if value is None:
                    raise self.fail(default, f"hyperparameter '{p.arg}' must default to a "
                                             f"number")
                if not math.isfinite(value):
                    raise self.fail(default, f"hyperparameter '{p.arg}' must default to a "
                                             f"finite number")
                hyper.append((p.arg, value))
        for name in INPUTS + tuple(state):
            self.env[name] = name
        for name, _ in hyper:
            self.env[name] = name
        self.immutable = set(INPUTS) | {n for n, _ in hyper}

        # ---- the body ----------------------------------------------------------------------
        stmts = list(fn.body)
        doc = ""
        if stmts and _is_docstring(stmts[0]):
            doc = normalize_doc(stmts.pop(0).value.value)
        self.last_assignment = _last_assignments(stmts)
        returns: tuple[Arg, ...] | None = None
        return_pos = (0, 0)
        for k, st in enumerate(stmts):
            if returns is not None:
                raise self.fail(st, "code after 'return' is never run")
            if isinstance(st, ast.Assign):
                if len(st.targets) != 1 or not isinstance(st.targets[0], ast.Name):
                    raise self.fail(st.targets[-1] if len(st.targets) == 1 else st,
                                    "assign to one name at a time ('x = ...')")
                self.assign(st.targets[0], st.value, st, k)
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
                self.assign(st.target, binop, st, k)
            elif isinstance(st, ast.Return):
                return_pos = self.pos(st)
                returns = self.returns(st, state)
            else:
                what = _CONSTRUCTS.get(type(st).__name__, type(st).__name__)
                if _is_docstring(st):
                    what = "a string"
                raise self.fail(st, f"{what} is not part of the rule language")
        if returns is None:
            raise self.fail(fn, f"rule '{fn.name}' has no 'return'; it must return the step"
                                + "".join(f", the new {s}" for s in state))
        origin = Origin(self.module.filename, self.module.source, self.pos(fn),
                        tuple(self.positions), param_pos, return_pos)
        return Program(fn.name, tuple(state), tuple(hyper), tuple(self.body), returns, doc,
                       origin)

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

    def returns(self, st: ast.Return, state: list[str]) -> tuple[Arg, ...]:
        if st.value is None:
            raise self.fail(st, "return the step" + "".join(f", the new {s}" for s in state))
        values = st.value.elts if isinstance(st.value, ast.Tuple) else [st.value]
        expected = 1 + len(state)
        if len(values) < expected:
            missing = state[len(values) - 1:]
            raise self.fail(st, f"state input '{missing[0]}' is never returned: return the "
                                f"step, then the new {', '.join(state)}")
        if len(values) > expected:
            want = "the step" + (f", then the new {', '.join(state)}" if state else " only")
            raise self.fail(values[expected], f"return has {len(values)} values; expected "
                                              f"{expected}: {want}")
        return tuple(self.expr(v) for v in values)

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
            left = self.expr(node.left, depth=depth)
            right = self.expr(node.right, depth=depth)
            return self.emit(node, op, (left, right), target)
        if isinstance(node, ast.Call):
            return self.call(node, target, depth)
        what = _CONSTRUCTS.get(type(node).__name__, type(node).__name__)
        raise self.fail(node, f"{what} is not part of the rule language")

    def call(self, node: ast.Call, target: str | None, depth: int) -> Arg:
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
            close = difflib.get_close_matches(name, list(OPS), n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise self.fail(node.func, f"unknown function '{name}'{hint}")
        if node.keywords:
            raise self.fail(node.keywords[0], f"{name}() takes positional arguments only")
        for a in node.args:
            if isinstance(a, ast.Starred):
                raise self.fail(a, "unpacking ('*x') is not part of the rule language")
        if len(node.args) != op.arity:
            plural = "argument" if op.arity == 1 else "arguments"
            raise self.fail(node, f"{name}() takes {op.arity} {plural}, got {len(node.args)}")
        args = tuple(self.expr(a, depth=depth) for a in node.args)
        return self.emit(node, name, args, target)

    def lookup(self, node: ast.Name) -> Arg:
        name = node.id
        if name in self.env:
            return self.env[name]
        if is_temp(name) and name in self.temps:
            return self.temps[name]
        if name in OPS:
            raise self.fail(node, f"'{name}' is a function; call it, e.g. {name}(x)")
        close = difflib.get_close_matches(name, [n for n in self.env if not is_temp(n)], n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise self.fail(node, f"undefined name '{name}'{hint}")

    def emit(self, node: ast.AST, op: str, args: tuple[Arg, ...], target: str | None) -> str:
        if len(self.body) >= MAX_STATEMENTS:
            raise self.fail(node, f"rule has more than {MAX_STATEMENTS} operations")
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
