"""`optforge ops [--json]`: the ops of the rule language, generated from the op table.

One row per op of `dsl.ops.OPS`, in the table's order: its signature (the argument names;
an infix op as it is written), arity, kind and one-line meaning, from the table's `params`
and `doc` columns. `--json` prints one array of objects with the same facts plus each op's
cost (its weight in a rule's complexity), its infix symbol and its behaviour on its whole
domain.

The kind of an op's argument follows from the op's kind: a matrix op and `grad_at` need a
tensor (the checker refuses a scalar there), every other op takes a scalar or a tensor. Every
per-tensor op's result has its tensor argument's shape: reductions and matrix ops broadcast
back (`dsl.ops`); a whole-model op (kind "global") gives a scalar, one value for the whole
group of parameters, and `grad_at` a tensor of the parameter's shape.
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the op table imports torch: loaded when `ops` runs, not at start-up
    from optforge.dsl.ops import Op

_ARITY_NAMES = {1: "unary", 2: "binary", 3: "ternary"}
_NOTES = ("Reductions and matrix ops return a value of their input's shape (broadcast back).",
          "Global ops reduce over every parameter of the group: one scalar for all of them.",
          ("Matrix ops and grad_at need a tensor argument; the other ops take tensors or "
           "scalars."),
          "A rule also reads loss, hess, rows, cols and numel (docs/language.md).")


def register(sub) -> None:
    p = sub.add_parser("ops", help="list the ops of the rule language: signature, arity, "
                                   "kind and meaning",
                       description="List every op of the rule language, from the op table "
                                   "(dsl/ops.py).")
    p.add_argument("--json", action="store_true", help="print one JSON array")
    p.set_defaults(func=run_ops)


def argument_kind(op: Op) -> str:
    """What each argument of `op` may be: "tensor", or "tensor or scalar"."""
    from optforge.dsl.ops import OpKind

    return "tensor" if op.kind in (OpKind.MATRIX, OpKind.GRADIENT) else "tensor or scalar"


def kind_text(op: Op) -> str:
    """e.g. "elementwise binary", "reduction unary", "matrix unary"."""
    return f"{op.kind.value} {_ARITY_NAMES.get(op.arity, f'{op.arity}-ary')}"


def signature(op: Op) -> str:
    """How the op is written: ``x + y`` for an infix op, else ``name(x, y)``."""
    if op.symbol:
        left, right = op.params
        return f"{left} {op.symbol} {right}"
    return f"{op.name}({', '.join(op.params)})"


def op_record(op: Op) -> dict:
    return {
        "name": op.name,
        "signature": signature(op),
        "arity": op.arity,
        "params": [{"name": p, "kind": argument_kind(op)} for p in op.params],
        "kind": op.kind.value,
        "symbol": op.symbol,
        "doc": op.doc,
        "cost": op.cost,
        "domain": op.domain,
    }


def ops_table() -> str:
    """The text `optforge ops` prints (README's op table is a copy of it)."""
    from optforge.dsl.ops import OPS

    header = ("OP", "SIGNATURE", "ARITY", "KIND", "MEANING")
    rows = [(op.name, signature(op), str(op.arity), kind_text(op), op.doc)
            for op in OPS.values()]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header) - 1)]
    lines = ["  ".join([*(cell.ljust(w) for cell, w in zip(row, widths)), row[-1]]).rstrip()
             for row in [header, *rows]]
    return "\n".join([*lines, "", *_NOTES]) + "\n"


def run_ops(args) -> int:
    from optforge.dsl.ops import OPS

    if args.json:
        json.dump([op_record(op) for op in OPS.values()], sys.stdout, indent=2,
                  ensure_ascii=False)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(ops_table())
    return 0
