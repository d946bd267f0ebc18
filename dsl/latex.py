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

from .ir import Program, is_temp
from .ops import OPS
from .printer import ADD, ATOM, MUL, POW, UNARY, Expr, Node, layout

__all__ = ["to_latex", "latex_expr"]

_GREEK = {"alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "kappa",
          "lambda", "mu", "nu", "xi", "rho", "sigma", "tau", "phi", "chi", "psi", "omega"}
_SPECIAL = {"lr": "\\eta", "eps": "\\epsilon", "weight_decay": "\\lambda"}
_PRECEDENCE = {"add": ADD, "sub": ADD, "mul": MUL, "neg": UNARY, "pow": POW}


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
        return text, UNARY if text.startswith("-") else ATOM
    kids = [_render(c) for c in e.children]
    mine = _PRECEDENCE.get(e.op, ATOM)
    if e.op in ("add", "sub", "mul"):
        (lt, lp), (rt, rp) = kids
        args = (_paren(lt, lp < mine), _paren(rt, rp <= mine))
    elif e.op == "pow":
        (lt, lp), (rt, _) = kids
        args = (_paren(lt, lp <= POW), rt)
    elif e.op == "neg":
        args = (_paren(kids[0][0], kids[0][1] <= UNARY),)
    else:  # templates that delimit their arguments themselves
        args = tuple(t for t, _ in kids)
    return OPS[e.op].latex.format(*args), mine


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
    rows.append(f"w &\\leftarrow w - {_paren(step, prec <= ADD)}")
    return "\\begin{aligned}\n" + " \\\\\n".join(rows) + "\n\\end{aligned}"
