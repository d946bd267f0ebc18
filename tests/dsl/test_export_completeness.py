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
import re

import pytest
import sympy
import torch
from optforge.dsl import OPS, Op, OpKind, Program, Stmt
from optforge.dsl import ops as ops_module
from optforge.dsl.export import (
    ExportError,
    export_module,
    group,
    inline,
    runtime_group,
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
    staged = group.is_staged(seeds.load_seed(name))
    assert (inline.group_methods() if staged else inline.shell_methods()) in source
    for fn in runtime_shell.INLINED[1:]:
        assert inspect.getsource(getattr(runtime_shell, fn)) in source
    if staged:
        for fn in runtime_group.INLINED:
            assert inspect.getsource(getattr(runtime_group, fn)) in source
    for helper in inline.helper_names():
        if re.search(rf"(?<!\w){helper}\(", source.split("def _scalars", 1)[1]):
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


STAGED = """def staged(w, g, lr, t, r: row, m):
    r = interp(row_mean(hess * g), r, 0.9)
    m = grad_at(0.01 * g / global_norm(g)) * loss / global_sum(rows * cols * numel)
    return lr * m * r, r, m
"""


def test_a_staged_export_holds_the_model_ops_and_the_group_shell_by_source():
    """A staged module copies the whole-group reductions of dsl.model_ops and the Hutchinson
    functions of dsl.context (annotations dropped: the same code), the shell's methods with
    GroupShell's in place of the replaced ones, and still imports torch alone."""
    from optforge.dsl import context, model_ops, parse
    source = export_module(parse(STAGED))
    assert _imports(source) == {"torch"}
    assert inline.group_methods() in source and inline.shell_methods() not in source
    for name in ("step", "_step_group"):  # replaced: GroupShell's, once
        assert source.count(f"    def {name}(") == 1
        assert inline._methods(runtime_group, "GroupShell")[
            [n for n, _ in inline._methods(runtime_group, "GroupShell")].index(name)][1] in source
    namespace: dict = {}
    exec(compile(source, "<staged>", "exec"), namespace)  # noqa: S102 - our generated code
    gen = torch.Generator().manual_seed(0)
    params = [torch.randn(s, generator=gen, dtype=torch.float64) for s in [(3, 4), (5,), ()]]
    xs = [torch.randn(3, 1, generator=gen, dtype=torch.float64),
          torch.randn(5, generator=gen, dtype=torch.float64), torch.tensor(2.0).double()]
    for fn in ("global_sum", "global_norm"):
        assert torch.equal(namespace[fn](0, xs, params), getattr(model_ops, fn)(0, xs, params))
    z1 = namespace["rademacher"]([p.shape for p in params], torch.Generator().manual_seed(5),
                                 torch.float64, "cpu")
    z2 = context.rademacher([p.shape for p in params], torch.Generator().manual_seed(5),
                            torch.float64, "cpu")
    assert all(torch.equal(a, b) for a, b in zip(z1, z2))
