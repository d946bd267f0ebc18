"""Reading one rule's expressions into statements: the state of a rule being read (its
statements so far, what each name means, the errors found) and the expression grammar.
Part of `dsl.parser` (see its module doc); `dsl.parse_rule` reads the signature and the body.
"""

from __future__ import annotations

import ast
import keyword
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .errors import Diagnostic, did_you_mean
from .ir import Arg, Stmt, is_temp, temp_name
from .ops import OPS, UNARY_MINUS
from .parse_syntax import (
    _CONSTRUCTS,
    _IDENTIFIER,
    _OPERATOR_TEXT,
    MAX_DEPTH,
    MAX_STATEMENTS,
    _char_col,
    _Fail,
    _infix_op,
    _number,
)

if TYPE_CHECKING:
    from .parser import _Module


# Stand-in for a value the parser could not read (see `dsl.parser`'s module doc): a tensor that
# depends on g, for which no checker error can fire.
_UNKNOWN_VALUE = ("add", ("g", "g"))


@dataclass
class _Reader:
    """A rule being read: what it has emitted and what its names mean (see `_Rule`)."""

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
            op = _infix_op(node.op)
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

