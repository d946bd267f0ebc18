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

A STATE parameter may be annotated with its storage, ``r: row``, ``c: col``, ``s: scalar``
(or ``m: full``, the default, which is not stored in `Program.slot_shapes`; see
`dsl.slots`). The context inputs (`dsl.context.CONTEXT_INPUTS`: loss, hess, rows, cols,
numel) are read by name anywhere; like w, g, lr and t they are reserved: no parameter or
variable may take their names.

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

Modules: this one reads a file (its rules, syntax errors and their recovery);
`dsl.parse_rule` one rule's signature and body; `dsl.parse_expr` its expressions;
`dsl.parse_syntax` holds the limits, what the language refuses and small AST readers.
"""

from __future__ import annotations

import ast
import re
import warnings
from dataclasses import dataclass, field

from .errors import Diagnostic, RuleError, in_source_order, line_of
from .ir import Program
from .parse_rule import ParsedRule, _Rule
from .parse_syntax import (
    _CONSTRUCTS,
    _MAX_SOURCE_BYTES,
    _TOO_LONG,
    MAX_DEPTH,
    MAX_SOURCE_CHARS,
    MAX_STATEMENTS,
    MAX_SYNTAX_ERRORS,
    SetAside,
    _char_col,
    _Fail,
    _is_docstring,
    normalize_doc,
    statement_lines,
)

__all__ = ["MAX_DEPTH", "MAX_SOURCE_CHARS", "MAX_STATEMENTS", "MAX_SYNTAX_ERRORS", "ParsedFile",
           "ParsedRule", "load", "load_rules", "normalize_doc", "parse", "parse_rules",
           "parse_with_errors", "read_rule_file"]


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



@dataclass
class _Module:
    source: str
    filename: str
    # first line of each statement set aside for a syntax error -> what it was
    set_aside: dict[int, SetAside] = field(default_factory=dict)

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
                statement = statement_lines(lines, line)
                if (statement is None or len(errors) >= MAX_SYNTAX_ERRORS
                        or "unterminated triple-quoted" in e.msg):
                    return None, errors
                first, last = statement
                self.set_aside[first] = SetAside.of(lines[first - 1:last])
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

