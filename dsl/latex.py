"""LaTeX rendering of a rule's math, from the op table's templates.

    >>> print(to_latex(lion))
    \\begin{aligned}
    c &\\leftarrow \\operatorname{interp}(g, m, \\beta_{1}) \\\\
    m &\\leftarrow \\operatorname{interp}(g, m, \\beta_{2}) \\\\
    w &\\leftarrow w - \\eta \\, \\left(\\operatorname{sign}(c) + \\lambda \\, w\\right)
    \\end{aligned}
"""

from __future__ import annotations

import re
from functools import cache
from string import Formatter

from .ir import Program, is_temp
from .ops import SYNTAX, Infix, Prec, op_for
from .printer import ATOM, Expr, layout

__all__ = ["to_latex", "latex_expr"]

_GREEK = {"alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "kappa",
          "lambda", "mu", "nu", "xi", "rho", "sigma", "tau", "phi", "chi", "psi", "omega"}
_SPECIAL = {"lr": "\\eta", "eps": "\\epsilon", "weight_decay": "\\lambda",
            # the context inputs (dsl.context): the loss, the Hessian diagonal's estimate,
            # the matrix view's rows and columns and the number of entries
            "loss": "\\mathcal{L}", "hess": "\\hat{H}", "rows": "n_{r}", "cols": "n_{c}",
            "numel": "n"}
# Delimiters a template may enclose an argument in; an enclosed argument is printed bare.
_OPENING = ("{", "(", "\\left", "\\lVert", "\\langle")
_CLOSING = ("}", ")", "\\right", "\\rVert", "\\rangle")
# A template that leaves an argument bare is an operator. With an infix symbol it binds as
# the symbol does (`dsl.ops.SYNTAX`); without, it is a superscript (`{0}^{2}`: binds as a
# power's base) or a prefix (`-{0}`: its operand binds tighter than a prefix minus, so that
# no `--x` is printed).
_SUPERSCRIPT = SYNTAX["**"]
_PREFIX = Infix(Prec.UNARY, Prec.POW, Prec.POW)


@cache
def _form(template: str, symbol: str | None) -> tuple[Prec, tuple[Prec | None, ...]]:
    """How a LaTeX template binds: its precedence, and for each argument the loosest
    precedence printed bare there (None: the template delimits it)."""
    depth = 0
    bare: dict[int, int] = {}  # argument -> the position of its first bare slot
    parts = list(Formatter().parse(template))
    for position, (text, field, _, _) in enumerate(parts):
        depth += sum(text.count(o) for o in _OPENING) - sum(text.count(c) for c in _CLOSING)
        if field is not None and depth <= 0:
            bare.setdefault(int(field), position)
    n = 1 + max(int(f) for _, f, _, _ in parts if f is not None)
    if not bare:
        return ATOM, (None,) * n
    if symbol is not None:
        infix = SYNTAX[symbol]
    else:
        infix = _SUPERSCRIPT if "^" in template else _PREFIX
    first = min(bare.values())
    sides = tuple(None if k not in bare else (infix.left if bare[k] == first else infix.right)
                  for k in range(n))
    return infix.precedence, sides


def latex_name(name: str) -> str:
    if name in _SPECIAL:
        return _SPECIAL[name]
    if is_temp(name):
        return f"\\tau_{{{name[1:]}}}"
    m = re.fullmatch(r"([A-Za-z]+)_?([0-9]+)", name)
    base, sub = (m.group(1), m.group(2)) if m else (name, "")
    if base in _GREEK:
        base = "\\" + base
    elif len(base) > 1:
        base = "\\mathrm{" + base.replace("_", "\\_") + "}"
    return f"{base}_{{{sub}}}" if sub else base


def _number(v: float) -> str:
    text = repr(v)
    if "e" in text:
        mantissa, exp = text.split("e")
        mantissa = "" if mantissa in ("1.0", "1") else mantissa.rstrip("0").rstrip(".") + " \\cdot "
        return f"{mantissa}10^{{{int(exp)}}}"
    return text[:-2] if text.endswith(".0") else text


def _render(e: Expr) -> tuple[str, int]:
    if isinstance(e, str):
        return latex_name(e), ATOM
    if isinstance(e, float):
        text = _number(e)
        return text, Prec.UNARY if text.startswith("-") else ATOM
    op = op_for(e.op, "LaTeX renderer")
    kids = [_render(c) for c in e.children]
    mine, sides = _form(op.latex, op.symbol)
    args = tuple(text if side is None else _paren(text, prec < side)
                 for (text, prec), side in zip(kids, sides))
    return _signs(op.latex.format(*args)), mine


def _signs(text: str) -> str:
    """``a + -b`` as ``a - b``, ``a - -b`` as ``a + b``: a bare operand that starts with a
    minus is a negation binding tighter than the sum around it (`_form`)."""
    return text.replace("+ -", "- ").replace("- -", "+ ")


def _paren(text: str, needed: bool) -> str:
    return f"\\left({text}\\right)" if needed else text


def latex_expr(e: Expr) -> str:
    return _render(e)[0]


def to_latex(p: Program) -> str:
    """The rule as an `aligned` block: each assignment, each state update, then the update
    of the parameter ``w <- w - step``."""
    lay = layout(p)
    rows = [f"{latex_name(t)} &\\leftarrow {latex_expr(e)}" for t, e in lay.lines]
    for s, e in zip(p.state, lay.returns[1:]):
        if e != s:
            rows.append(f"{latex_name(s)} &\\leftarrow {latex_expr(e)}")
    step, prec = _render(lay.returns[0])
    rows.append(f"w &\\leftarrow {_signs('w - ' + _paren(step, prec < SYNTAX['-'].right))}")
    return "\\begin{aligned}\n" + " \\\\\n".join(rows) + "\n\\end{aligned}"
