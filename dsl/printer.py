"""Printer: `Program` -> rule source text, with ``parse(format_program(p)) == p``.

Temporaries are folded back into nested expressions where the parser would recreate exactly
the same statements: a temporary read once, by the statement that follows its whole
expression in post-order (the order the parser emits). Any other temporary is printed as its
own line (``_3 = ...``), which the parser reads back under the same positional name.
"""

from __future__ import annotations

from dataclasses import dataclass

from .ir import INPUTS, Arg, Program, is_temp
from .ops import SYNTAX, UNARY_MINUS, Prec, op_for

MAX_PRINT_DEPTH = 48  # deeper expressions are split into `_k = ...` lines (parser: 100)

# Precedence of the printed forms: the op table's (Python's, see `dsl.ops.SYNTAX`).
ADD, MUL, UNARY, POW, ATOM = Prec.ADD, Prec.MUL, Prec.UNARY, Prec.POW, Prec.ATOM


@dataclass(frozen=True)
class Node:
    """An expression tree over the IR: `op` applied to children (Nodes or plain args)."""

    op: str
    children: tuple["Expr", ...]


Expr = Node | str | float


@dataclass(frozen=True)
class Layout:
    """A program as the printer sees it: named assignments and the return expressions."""

    lines: tuple[tuple[str, Expr], ...]
    returns: tuple[Expr, ...]


def layout(p: Program) -> Layout:
    body = p.body
    reads: dict[str, int] = {}
    for s in body:
        for a in s.args:
            if isinstance(a, str):
                reads[a] = reads.get(a, 0) + 1
    for a in p.returns:
        if isinstance(a, str):
            reads[a] = reads.get(a, 0) + 1

    def fold(args: tuple[Arg, ...], pos: int, depth: int = 0) -> tuple[tuple[Expr, ...], int]:
        """Fold the temporaries ending at `pos` into `args` (right to left, as post-order
        reversed); return the children and the first statement index not consumed."""
        children: list[Expr] = [0.0] * len(args)
        for j in range(len(args) - 1, -1, -1):
            a = args[j]
            if (is_temp(a) and pos >= 0 and body[pos].target == a and reads.get(a) == 1
                    and depth < MAX_PRINT_DEPTH):
                s = body[pos]
                sub, start = fold(s.args, pos - 1, depth + 1)
                children[j] = Node(s.op, sub)
                pos = start - 1
            else:
                children[j] = a
        return tuple(children), pos + 1

    returns, start = fold(p.returns, len(body) - 1)
    lines: list[tuple[str, Expr]] = []
    pos = start - 1
    while pos >= 0:
        s = body[pos]
        children, start = fold(s.args, pos - 1)
        lines.append((s.target, Node(s.op, children)))
        pos = start - 1
    lines.reverse()
    return Layout(tuple(lines), returns)


def statement_count(p: Program) -> int:
    """Assignments in the printed rule (nested expressions count once)."""
    return len(layout(p).lines)


def format_expr(e: Expr) -> str:
    return _render(e)[0]


def format_program(p: Program) -> str:
    lay = layout(p)
    shapes = dict(p.slot_shapes)
    state = [f"{n}: {shapes[n].value}" if n in shapes else n for n in p.state]
    params = list(INPUTS) + state + [f"{n}={_number(v)}" for n, v in p.hyperparams]
    out = [f"def {p.name}({', '.join(params)}):"]
    if p.doc:
        out.append(_docstring(p.doc))
    for target, e in lay.lines:
        out.append(f"    {target} = {format_expr(e)}")
    out.append(f"    return {', '.join(format_expr(e) for e in lay.returns)}")
    return "\n".join(out) + "\n"


def _docstring(doc: str) -> str:
    if ('"""' in doc or "\\" in doc or doc.endswith('"') or doc != doc.strip()
            or not doc.replace("\n", "").isprintable()):  # NUL, CR, ... only as escapes
        return f"    {doc!r}"
    if "\n" not in doc:
        return f'    """{doc}"""'
    body = "\n".join(("    " + line) if line else "" for line in doc.split("\n"))
    return f'    """{body.lstrip()}\n    """'


def _number(v: float) -> str:
    return repr(float(v))


def _render(e: Expr) -> tuple[str, int]:
    """(text, precedence) of an expression."""
    if isinstance(e, str):
        return e, ATOM
    if isinstance(e, float):
        text = _number(e)
        return text, UNARY if text.startswith("-") else ATOM
    op = op_for(e.op, "printer")
    kids = [_render(c) for c in e.children]
    if e.op == UNARY_MINUS:
        (text, prec), = kids
        if isinstance(e.children[0], float):  # `-0.5` would read back as a constant
            return f"{e.op}({text})", ATOM
        return f"-{_paren(text, prec < UNARY)}", UNARY
    if op.symbol:
        (lt, lp), (rt, rp) = kids
        infix = SYNTAX[op.symbol]
        return (f"{_paren(lt, lp < infix.left)} {op.symbol} {_paren(rt, rp < infix.right)}",
                infix.precedence)
    return f"{e.op}({', '.join(t for t, _ in kids)})", ATOM


def _paren(text: str, needed: bool) -> str:
    return f"({text})" if needed else text
