"""The generated parts of docs/language.md, from the op table (`dsl/ops.py`).

    python docs/ops_table.py            # print them
    python docs/ops_table.py --write    # rewrite them in docs/language.md, and README's copy

Each part sits in docs/language.md between ``<!-- begin generated: NAME -->`` and
``<!-- end generated: NAME -->``; `tests/test_docs.py` fails when one differs from what this
script prints, so a new op or a changed domain note reaches the page by running it:

* ``ops``: `optforge ops`, verbatim;
* ``math``: each op as written, its LaTeX (the template `optforge show` and `dsl.to_latex`
  fill in), its definition (the op's sympy form; for reductions and matrix ops, whose sympy
  form is opaque, the op's `definition`), its cost and its behaviour on its whole domain;
* ``edges``: values at the edges of the domains, computed by the ops' own torch
  implementations (the interpreter's, in float64).
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from pathlib import Path

import sympy
import torch
from optforge.dsl.latex import latex_expr
from optforge.dsl.ops import OPS, OpKind
from optforge.dsl.printer import Node
from optforge.search.commands.ops_cmd import ops_table, signature

PAGE = Path(__file__).resolve().parent / "language.md"
README = Path(__file__).resolve().parent.parent / "README.md"
# README's copy of `optforge ops`, indented in its list item (tests/test_cli_ops.py checks it)
_README_COPY = re.compile(r"(  ```text\n)(  OP +SIGNATURE.*?\n)(  ```\n)", re.S)

# Edge cases of the ops that are not unary: (the op, its arguments as written).
BINARY_EDGES = [
    ("add", ("inf", "(-inf)")), ("sub", ("inf", "inf")), ("mul", ("0", "inf")),
    ("div", ("1", "0")), ("div", ("-1", "0")), ("div", ("0", "0")),
    ("pow", ("0", "(-1)")), ("pow", ("(-8)", "(1/3)")), ("pow", ("(-2)", "2")),
    ("min", ("nan", "1")), ("max", ("nan", "1")), ("clip", ("5", "1", "0")),
    ("clip", ("nan", "0", "1")), ("interp", ("0", "1", "2")),
]
UNARY_EDGE_INPUTS = ("-inf", "-1", "0", "1", "inf", "nan")


def _cell(text: str) -> str:
    """Text for a Markdown table cell: a pipe would end the cell."""
    return text.replace("|", r"\|")


def _definition(name: str) -> str:
    """The op's math: its `definition` where its sympy form is opaque (reductions and matrix
    ops; the matrix view X has r rows and c columns, see `dsl.ops`), else its sympy form."""
    op = OPS[name]
    if op.definition:
        return op.definition
    return sympy.latex(op.sympy_fn(*sympy.symbols(op.params, real=True)))


def math_table() -> str:
    rows = ["| op | written | LaTeX | definition | cost | on its whole domain |",
            "|---|---|---|---|---|---|"]
    for name, op in OPS.items():
        latex = latex_expr(Node(name, tuple(op.params)))
        rows.append("| " + " | ".join(_cell(c) for c in (
            f"`{name}`", f"`{signature(op)}`", f"${latex}$", f"${_definition(name)}$",
            str(op.cost), op.domain)) + " |")
    return "\n".join(rows) + "\n"


def _value(text: str) -> float:
    return float(eval(text, {"inf": math.inf, "nan": math.nan}))  # our own constants only


def _show(x: torch.Tensor) -> str:
    v = float(x)
    return "nan" if math.isnan(v) else f"{v:.6g}"


def _apply(name: str, args: tuple[str, ...]) -> str:
    with torch.no_grad():
        values = [torch.tensor(_value(a), dtype=torch.float64) for a in args]
        return _show(OPS[name].torch_fn(0, *values))


def edges_table() -> str:
    unary = [n for n, op in OPS.items() if op.arity == 1 and op.kind is OpKind.ELEMENTWISE]
    rows = ["| op | " + " | ".join(f"x = {x}" for x in UNARY_EDGE_INPUTS) + " |",
            "|---|" + "---|" * len(UNARY_EDGE_INPUTS)]
    rows += [f"| `{n}` | " + " | ".join(_apply(n, (x,)) for x in UNARY_EDGE_INPUTS) + " |"
             for n in unary]
    out = "\n".join(rows) + "\n\n| expression | value |\n|---|---|\n"
    for name, args in BINARY_EDGES:
        op = OPS[name]
        written = (f"{args[0]} {op.symbol} {args[1]}" if op.symbol
                   else f"{name}({', '.join(args)})")
        out += f"| `{written}` | {_apply(name, args)} |\n"
    return out


def parts() -> dict[str, str]:
    return {"ops": f"```text\n{ops_table()}```\n", "math": math_table(),
            "edges": edges_table()}


def _block(name: str) -> re.Pattern:
    return re.compile(rf"(<!-- begin generated: {name} -->\n)(.*?)(<!-- end generated: "
                      rf"{name} -->)", re.S)


def current(page: str) -> dict[str, str]:
    """The generated parts as the page holds them (a missing part is absent)."""
    found = {name: _block(name).search(page) for name in parts()}
    return {name: m.group(2) for name, m in found.items() if m}


def write(path: Path = PAGE, readme: Path = README) -> None:
    page = path.read_text(encoding="utf-8")
    for name, text in parts().items():
        page, n = _block(name).subn(lambda m: m.group(1) + text + m.group(3), page)
        if n != 1:
            sys.exit(f"{path}: no single block 'generated: {name}'")
    path.write_text(page, encoding="utf-8")
    copy = "".join(("  " + line if line else "") + "\n" for line in ops_table().splitlines())
    text, n = _README_COPY.subn(lambda m: m.group(1) + copy + m.group(3),
                                readme.read_text(encoding="utf-8"))
    if n != 1:
        sys.exit(f"{readme}: no single copy of `optforge ops`")
    readme.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description="the generated parts of docs/language.md")
    ap.add_argument("--write", action="store_true", help="rewrite them in docs/language.md")
    if ap.parse_args().write:
        write()
    else:
        for name, text in parts().items():
            print(f"<!-- {name} -->\n{text}")
