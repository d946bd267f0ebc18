"""`optforge ops`: every op of the language, generated from the op table (issue 13)."""

import json
from pathlib import Path

import pytest
from optforge.dsl.ops import OPS, OpKind
from optforge.search.cli import main

README = Path(__file__).resolve().parent.parent / "README.md"


def ops_table() -> str:
    from optforge.search.commands.ops_cmd import ops_table
    return ops_table()


@pytest.mark.parametrize("name", sorted(OPS))
def test_every_op_row_names_its_arguments_and_meaning(name):
    op = OPS[name]
    assert len(op.params) == op.arity
    assert len(set(op.params)) == op.arity and all(p.isidentifier() for p in op.params)
    assert op.doc.strip() and "\n" not in op.doc


def test_ops_lists_every_op_with_signature_arity_kind_and_meaning(capsys):
    assert main(["ops"]) == 0
    out = capsys.readouterr().out
    assert out == ops_table()
    lines = out.splitlines()
    assert lines[0].split() == ["OP", "SIGNATURE", "ARITY", "KIND", "MEANING"]
    rows = {line.split()[0]: line for line in lines[1:1 + len(OPS)]}
    assert list(rows) == list(OPS)  # the table's order
    assert "interp(x, y, a)  3      elementwise ternary  (1 - a) * x + a * y" in rows["interp"]
    assert "x + y" in rows["add"] and "elementwise binary" in rows["add"]
    assert "clip(x, lo, hi)" in rows["clip"]
    assert "reduction binary" in rows["dot"]
    assert "matrix unary" in rows["orth"]
    for name, op in OPS.items():
        assert f"  {op.arity}  " in rows[name] and op.doc in rows[name]


def test_ops_json_is_the_table_for_machines(capsys):
    assert main(["ops", "--json"]) == 0
    records = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in records] == list(OPS)
    for r in records:
        op = OPS[r["name"]]
        assert r["arity"] == op.arity == len(r["params"])
        assert [p["name"] for p in r["params"]] == list(op.params)
        assert r["kind"] == op.kind.value
        assert r["doc"] == op.doc and r["domain"] == op.domain and r["cost"] == op.cost
        needs_tensor = op.kind in (OpKind.MATRIX, OpKind.GRADIENT)
        assert {p["kind"] for p in r["params"]} == {"tensor" if needs_tensor
                                                    else "tensor or scalar"}
    by_name = {r["name"]: r for r in records}
    assert by_name["mul"]["signature"] == "x * y" and by_name["mul"]["symbol"] == "*"
    assert by_name["sqrt"]["signature"] == "sqrt(x)" and by_name["sqrt"]["symbol"] is None


def test_readme_op_list_is_the_commands_output():
    # README's op table is a copy of `optforge ops` (indented in its list item): a new op or
    # a changed meaning must be pasted there too
    expected = "\n".join(("  " + line) if line else "" for line in ops_table().splitlines())
    assert expected in README.read_text(encoding="utf-8")
