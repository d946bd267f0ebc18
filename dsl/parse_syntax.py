"""The parser's syntax facts: limits, what the language refuses (by Python's AST node
types), syntax-error recovery (`statement_lines`, `SetAside`) and small readers of the AST.
Part of `dsl.parser`, whose module doc describes the language and the error recovery."""

from __future__ import annotations

import ast
import inspect
import math
import re
from dataclasses import dataclass

from .errors import Diagnostic
from .ir import RESERVED
from .ops import INFIX

__all__ = ["MAX_DEPTH", "MAX_SOURCE_CHARS", "MAX_STATEMENTS", "MAX_SYNTAX_ERRORS",
           "normalize_doc"]

MAX_SOURCE_CHARS = 50_000
MAX_STATEMENTS = 1_000
MAX_DEPTH = 100  # nesting of one expression; the printer stays well below it
MAX_SYNTAX_ERRORS = 20  # each one costs a re-parse of the whole file
_MAX_SOURCE_BYTES = 4 * MAX_SOURCE_CHARS  # each character takes 1 to 4 bytes in UTF-8
_TOO_LONG = f"source is longer than {MAX_SOURCE_CHARS:,} characters; not a rule file?"
# the names a rule reads without declaring them, as error messages list them
RESERVED_TEXT = ", ".join(RESERVED)
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}\Z")

# Python's operators as written; those in the op table's `INFIX` are the language's.
_OPERATOR_TEXT = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.Pow: "**",
                  ast.Mod: "%", ast.FloorDiv: "//", ast.MatMult: "@", ast.LShift: "<<",
                  ast.RShift: ">>", ast.BitOr: "|", ast.BitAnd: "&", ast.BitXor: "^",
                  ast.Invert: "~", ast.Not: "not"}


def _infix_op(operator: ast.AST) -> str | None:
    """The op an infix operator node stands for, or None when the language lacks it."""
    return INFIX.get(_OPERATOR_TEXT.get(type(operator), ""))

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



class _Fail(Exception):
    """An error in the statement being read. A `fatal` one ends the reading of its rule."""

    def __init__(self, diagnostic: Diagnostic, fatal: bool = False):
        self.diagnostic = diagnostic
        self.fatal = fatal



# what a line's text says it assigns, or that it returns
_ASSIGNED = re.compile(r"\s*([A-Za-z_]\w*(?:\s*,\s*[A-Za-z_]\w*)*)\s*(?:\*\*|[-+*/])?=(?!=)")
_RETURN = re.compile(r"\s*return\b")


@dataclass(frozen=True)
class SetAside:
    """A statement set aside for a syntax error (read as `pass`), as far as its text tells
    (it has no syntax tree): whether it is a return, whether it holds one (a block may), and
    the names its lines assign."""

    is_return: bool
    holds_return: bool
    names: tuple[str, ...]

    @classmethod
    def of(cls, lines: list[str]) -> SetAside:
        names = [n.strip() for line in lines if (m := _ASSIGNED.match(line))
                 for n in m.group(1).split(",")]
        return cls(_RETURN.match(lines[0]) is not None,
                   any(_RETURN.match(line) for line in lines), tuple(dict.fromkeys(names)))



def statement_lines(lines: list[str], line: int) -> tuple[int, int] | None:
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

