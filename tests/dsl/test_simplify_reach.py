"""The simplifier, LaTeX and roles on the language's reach (#16): context inputs as sympy
symbols, whole-model ops and grad_at kept where they are, factored storage kept."""

from __future__ import annotations

from dataclasses import replace

import pytest
from optforge.dsl import simplifier
from optforge.dsl.ir import Stmt
from optforge.dsl.latex import to_latex
from optforge.dsl.roles import role_problem
from optforge.dsl.slots import SlotShape

from optforge import dsl


def test_simplify_keeps_slot_storage_and_drops_a_dropped_slots():
    p = dsl.parse("def r(w, g, lr, t, vr: row, junk: scalar, m, beta=0.9):\n"
                  "    vr = interp(row_mean(g * g), vr, beta)\n"
                  "    junk = interp(mean(g), junk, beta)\n"
                  "    m = interp(g, m, beta)\n"
                  "    return lr * m * rsqrt(vr + 1e-8) * (1.0 + 0.0 * g), vr, junk, m\n")
    q = dsl.simplify(p)
    assert q.state == ("vr", "m") and q.slot_shapes == (("vr", SlotShape.ROW),)
    assert dsl.fingerprint(q) == dsl.fingerprint(p)
    assert dsl.parse(dsl.format_program(q)) == q


def test_context_inputs_are_symbols_with_their_assumptions():
    p = dsl.parse("def r(w, g, lr, t):\n"
                  "    return lr * g * sqrt(rows * rows) / rows + 0.0 * loss * numel\n")
    q = dsl.simplify(p)
    assert dsl.format_program(q).endswith("return g * lr\n"), dsl.format_program(q)


def test_group_level_ops_are_never_duplicated_nor_reordered():
    p = dsl.parse("def sam(w, g, lr, t, rho=0.05):\n"
                  "    n = global_norm(g)\n"
                  "    a = grad_at(rho * g / n)\n"
                  "    b = grad_at(-rho * g / n)\n"
                  "    return lr * (a - b) * (1.0 + n) + 0.0 * global_sum(g), \n")
    q = dsl.simplify(p)
    ops = [s.op for s in q.body if s.op in ("grad_at", "global_norm", "global_sum")]
    assert ops == ["global_norm", "grad_at", "grad_at"], dsl.format_program(q)
    first = next(s for s in q.body if s.op == "grad_at")
    assert dsl.fingerprint(q) == dsl.fingerprint(p)
    # the first call still perturbs by +rho * g / n
    assert "neg" not in {s.op for s in q.body[:q.body.index(first)]}


def test_a_simplification_that_breaks_a_factored_slot_is_not_taken(monkeypatch):
    p = dsl.parse("def r(w, g, lr, t, vr: row):\n"
                  "    vr = row_mean(g * g) + vr\n"
                  "    return lr * g * rsqrt(vr + 1.0) * (2.0 - 1.0), vr\n")

    def broken(q):  # a rewrite that computes vr as a full tensor
        body = tuple(Stmt(s.target, "mul", (s.args[0], 1.0)) if s.op == "row_mean" else s
                     for s in q.body)
        return replace(q, body=body)

    assert dsl.check(p).ok and not dsl.check(broken(p)).ok
    monkeypatch.setattr(simplifier, "_algebra", broken)
    q = dsl.simplify(p)
    assert dsl.check(q).ok and q.slot_shapes == p.slot_shapes


def test_latex_names_the_context_inputs():
    p = dsl.parse("def r(w, g, lr, t):\n"
                  "    return lr * g * loss * hess * rows / cols / numel\n")
    text = to_latex(p)
    for piece in ("\\mathcal{L}", "\\hat{H}", "n_{r}", "n_{c}", "{n}"):
        assert piece in text, text


def test_a_repeated_whole_model_op_is_computed_once():
    p = dsl.parse("def r(w, g, lr, t, m, mu: scalar, beta=0.9):\n"
                  "    a = global_norm(g)\n"
                  "    m = interp(g, m, beta)\n"
                  "    b = global_norm(g)\n"
                  "    c = global_norm(m)\n"
                  "    m = m * 0.5\n"
                  "    d = global_norm(m)\n"
                  "    mu = global_norm(g)\n"
                  "    return lr * (g * a / (b + 1.0) + c + d + mu), m, mu\n")
    q = simplifier.merge_repeated_group_ops(p)
    ops = [(s.target, s.op, s.args) for s in q.body if s.op == "global_norm"]
    # global_norm(g) once; global_norm(m) of the two values of m, each once
    assert ops == [("a", "global_norm", ("g",)), ("c", "global_norm", ("m",)),
                   ("d", "global_norm", ("m",))]
    assert q.returns[2] == "a"  # the scalar slot takes the one value
    assert dsl.check(q).ok and simplifier.same_behaviour(p, q)
    assert dsl.canonical_hash(q) == dsl.canonical_hash(p)
    assert sum(s.op == "global_norm" for s in dsl.simplify(p).body) == 3


def test_a_whole_model_op_is_not_merged_past_a_reassignment_or_into_grad_at():
    kept = dsl.parse("def r(w, g, lr, t):\n"
                     "    a = global_norm(g)\n"
                     "    a = a * 2.0\n"  # the first name no longer holds the norm
                     "    b = global_norm(g)\n"
                     "    e = 0.01 * g\n"
                     "    return lr * (grad_at(e) + grad_at(e)) * a / b\n")
    q = simplifier.merge_repeated_group_ops(kept)
    assert [s.op for s in q.body].count("global_norm") == 2
    assert [s.op for s in q.body].count("grad_at") == 2


@pytest.mark.parametrize("body, shown", [
    ("lr * grad_at(-0.05 * g)", "\\nabla f(w - 0.05 \\, g)"),
    ("lr * (g + (-g) * t)", "\\left(g - g \\, t\\right)"),
    ("lr * (g - -0.05)", "\\left(g + 0.05\\right)"),
    ("-0.05 * g", "w &\\leftarrow w + 0.05 \\, g"),
])
def test_latex_writes_a_negated_operand_as_a_subtraction(body, shown):
    """Not `w + -e`: a negation after a plus or a minus folds into the sign, which is the
    same math (the parsed rule's interpreter agrees, so only the printing changed)."""
    text = to_latex(dsl.parse(f"def r(w, g, lr, t):\n    return {body}\n"))
    assert shown in text, text
    assert "+ -" not in text and "- -" not in text


def test_roles_see_data_inputs_as_tensors_and_shape_scalars_as_numbers():
    decayed = dsl.parse("def r(w, g, lr, t, weight_decay=0.01):\n"
                        "    return lr * (g + weight_decay * numel * w), \n")
    assert role_problem(decayed, "weight_decay") is None
    guarded = dsl.parse("def r(w, g, lr, t, eps=1e-8):\n"
                        "    return lr * g / (hess + eps), \n")
    assert role_problem(guarded, "eps") is None
    averaged = dsl.parse("def r(w, g, lr, t, m, beta1=0.9):\n"
                         "    m = interp(grad_at(0.0 * w), m, beta1)\n"
                         "    return lr * m, m\n")
    assert role_problem(averaged, "beta1") is None
