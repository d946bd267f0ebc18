"""Every op of the op table has code in every export path, and the runtime is inlined.

`dsl/export/tables.py` holds one table per path (pure, per parameter, foreach; the scalar
section reads the pure one), keyed by the op table. `missing_forms` lists every (path, op)
an export could need and no table covers; it must stay empty, so adding an op to `dsl.ops`
without its export code fails here. An op that is missing anyway is a clear `ExportError`
naming the op and the path, never an AssertionError.
"""

from __future__ import annotations

import ast
import inspect

import pytest
import sympy
import torch
from optforge.dsl import OPS, Op, OpKind, Program, Stmt
from optforge.dsl import ops as ops_module
from optforge.dsl.export import (
    ExportError,
    export_module,
    inline,
    runtime_ops,
    runtime_shell,
    tables,
)

from optforge import seeds


def test_every_op_has_code_in_every_path():
    assert tables.missing_forms() == []


@pytest.mark.parametrize("path", tables.PATHS)
@pytest.mark.parametrize("op", sorted(OPS))
def test_each_op_in_each_path(op, path):
    """Each op has a form in the path, or reaches it only through its lowering rule (interp,
    clip), or cannot reach it (a matrix op of a scalar, which the checker refuses), or is a
    whole-group op, which the staged optimizer runs between stages (dsl.export.group)."""
    if OPS[op].kind in tables.WHOLE_GROUP:
        with pytest.raises(ExportError, match=rf"{op}\(\) is a whole-group op: it has no code "
                                              rf"in the {path} path"):
            tables.form(path, op)
        return
    if op in tables.LOWERED_BY_RULE or (path == "scalar" and OPS[op].kind is OpKind.MATRIX):
        with pytest.raises(ExportError, match=op):
            tables.form(path, op)
        return
    entry = tables.form(path, op)
    if isinstance(entry, tables.Helper):
        assert OPS[op].kind is not OpKind.ELEMENTWISE
        assert entry.name in inline.helper_names()


def test_helpers_named_by_the_tables_exist_in_the_runtime():
    defined = {n for n, f in vars(runtime_ops).items() if inspect.isfunction(f)}
    assert {h.name for h in tables.HELPERS.values()} <= defined
    assert set(tables.HELPERS) == {n for n, op in OPS.items() if op.kind is not OpKind.ELEMENTWISE
                                   and op.kind not in tables.WHOLE_GROUP}


def _fake(name: str, kind: OpKind) -> Op:
    return Op(name, 1, kind, lambda lead, x: x / (1 + x.abs()),
              lambda x: x / (1 + sympy.Abs(x)), "\\operatorname{{fake}}({0})", 1,
              "all reals", params=("x",), doc="a fake op no export table knows")


@pytest.mark.parametrize("kind", [OpKind.ELEMENTWISE, OpKind.REDUCTION])
def test_an_op_missing_from_the_tables_is_a_clear_export_error(kind, monkeypatch):
    monkeypatch.setitem(ops_module.OPS, "softsign", _fake("softsign", kind))
    assert {op for _, op in tables.missing_forms()} == {"softsign"}
    for path in tables.PATHS:
        with pytest.raises(ExportError, match=f"the {path} path of the export has no code "
                                              f"for op 'softsign'"):
            tables.form(path, "softsign")
    program = Program("r", (), (), (Stmt("_1", "softsign", ("g",)), Stmt("_2", "mul", ("lr", "_1"))),
                      ("_2",))
    with pytest.raises(ExportError, match=r"path of the export has no code for op 'softsign'"):
        export_module(program)


def _imports(source: str) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            names.add("from " + (node.module or "."))
    return names


@pytest.mark.parametrize("name", seeds.seed_names())
def test_an_export_imports_torch_alone_and_holds_the_runtime_by_source(name):
    source = export_module(seeds.load_seed(name))
    assert _imports(source) == {"torch"}
    assert "optforge" not in source.replace("exported by optforge", "").replace(
        "an optforge rule", "").replace("optforge's rule language", "")
    # the shell and the functions are copied verbatim from the linted runtime modules
    assert inline.shell_methods() in source
    for fn in runtime_shell.INLINED[1:]:
        assert inspect.getsource(getattr(runtime_shell, fn)) in source
    for helper in inline.helper_names():
        if f"{helper}(" in source.split("def _scalars", 1)[1]:
            assert inspect.getsource(getattr(runtime_ops, helper)) in source


def test_the_newton_schulz_constants_come_from_the_op_table():
    source = export_module(seeds.load_seed("muon"))
    namespace: dict = {}
    exec(compile(source, "<muon>", "exec"), namespace)  # noqa: S102 - our generated code
    assert namespace["_NS_COEFFS"] == tuple(ops_module.NS_COEFFS)
    assert namespace["_NS_EPS"] == ops_module.NS_EPS
    assert namespace["_NS_STEPS"] == ops_module.NS_STEPS
    x = torch.randn(6, 4, dtype=torch.float64)
    expected = ops_module.newton_schulz(x)
    torch.testing.assert_close(namespace["_orth"](x), expected, rtol=0, atol=0)
