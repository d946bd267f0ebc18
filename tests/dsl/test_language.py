"""The language end to end: parse, print, check, interpret, hash, simplify, render."""

from pathlib import Path

import pytest
import torch
from optforge.dsl.checker import live_states
from optforge.dsl.ir import Stmt, validate

from optforge import dsl, seeds

LION = '''def lion(w, g, lr, t, m, beta1=0.9, beta2=0.99, weight_decay=0.0):
    """Lion (Chen et al., 2023)."""
    c = interp(g, m, beta1)            # interp(x, y, a) = (1 - a) * x + a * y
    m = interp(g, m, beta2)
    return lr * (sign(c) + weight_decay * w), m
'''

MESSY = (Path(__file__).parents[1] / "data" / "messy.rule").read_text()  # becomes Lion


def test_nested_expressions_become_flat_single_op_statements():
    p = dsl.parse(LION)
    assert p.state == ("m",)
    assert p.hyperparams == (("beta1", 0.9), ("beta2", 0.99), ("weight_decay", 0.0))
    assert p.doc == "Lion (Chen et al., 2023)."
    assert [s.op for s in p.body] == ["interp", "interp", "sign", "mul", "add", "mul"]
    assert p.body[2] == Stmt("_3", "sign", ("c",))
    assert p.returns == ("_6", "m")
    validate(p)


def test_printer_round_trips_and_reads_like_the_source():
    p = dsl.parse(LION)
    text = dsl.format_program(p)
    assert "    return lr * (sign(c) + weight_decay * w), m\n" in text
    assert dsl.parse(text) == p
    assert dsl.statement_count(p) == 2


@pytest.mark.parametrize("expr", [
    "-g ** 2", "(-g) ** 2", "g ** -0.5", "(-0.5) ** t", "neg(0.5) * g", "-(-g)", "g - -0.5",
    "g - (w - g)", "g / (w * g)", "g ** t ** 2", "(g ** t) ** 2", "-(g + w)", "g * -w",
])
def test_precedence_survives_the_round_trip(expr):
    p = dsl.parse(f"def f(w, g, lr, t):\n    return lr * ({expr})\n")
    assert dsl.parse(dsl.format_program(p)) == p
    w, g = torch.rand(3, dtype=torch.float64) + 0.5, torch.rand(3, dtype=torch.float64) + 0.5
    q = dsl.parse(dsl.format_program(p))
    torch.testing.assert_close(dsl.run_step(p, w, g, 1.0, 2, ())[0],
                               dsl.run_step(q, w, g, 1.0, 2, ())[0], equal_nan=True)


def test_augmented_assignment_and_copies():
    p = dsl.parse("def f(w, g, lr, t, m, k=2.0):\n    a = k\n    m *= a\n    m += g\n"
                  "    return lr * m, m\n")
    assert [s.op for s in p.body] == ["mul", "add", "mul"]
    assert p.body[0].args == ("m", "k")


def test_user_written_temporaries_are_renumbered():
    p = dsl.parse("def f(w, g, lr, t):\n    _9 = g * g\n    return lr * _9 * _9\n")
    assert p.body[0].target == "_1"
    assert dsl.parse(dsl.format_program(p)) == p


def test_interpreter_matches_torch_adamw_and_sgd_for_100_steps():
    gen = torch.Generator().manual_seed(0)
    for name, make in [("adamw", lambda ps: torch.optim.AdamW(ps, lr=1e-2, weight_decay=0.01)),
                       ("sgd_momentum", lambda ps: torch.optim.SGD(ps, lr=1e-2, momentum=0.9))]:
        p = seeds.load_seed(name)
        w = torch.randn(7, 5, generator=gen, dtype=torch.float64)
        ref = torch.nn.Parameter(w.clone())
        opt = make([ref])
        state = dsl.init_state(p, w)
        for t in range(1, 101):
            g = torch.randn(7, 5, generator=gen, dtype=torch.float64) + 0.1 * w
            ref.grad = g.clone()
            opt.step()
            step, state = dsl.run_step(p, w, g, 1e-2, t, state)
            w = w - step
        torch.testing.assert_close(w, ref.detach(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_batched_interpreter_has_per_replica_lr(dtype):
    p = seeds.load_seed("adamw")
    w = torch.randn(3, 4, 2, dtype=dtype)
    g = torch.randn(3, 4, 2, dtype=dtype)
    lr = torch.tensor([1e-3, 1e-2, 1e-1], dtype=dtype)
    step, state = dsl.run_step(p, w, g, lr, 1, dsl.init_state(p, w), lead=1)
    assert step.dtype == dtype and state[0].shape == w.shape
    for r in range(3):
        s, st = dsl.run_step(p, w[r], g[r], float(lr[r]), 1, dsl.init_state(p, w[r]))
        torch.testing.assert_close(step[r], s)
        torch.testing.assert_close(state[1][r], st[1])


def test_hyperparameters_can_be_overridden_and_unknown_ones_refused():
    p = seeds.load_seed("sgd_momentum")
    w = torch.zeros(2, dtype=torch.float64)
    g = torch.ones(2, dtype=torch.float64)
    state = (torch.ones(2, dtype=torch.float64),)
    step, _ = dsl.run_step(p, w, g, 1.0, 1, state, hyper={"momentum": 0.5})
    assert step.tolist() == [1.5, 1.5]
    with pytest.raises(ValueError, match="no hyperparameter"):
        dsl.run_step(p, w, g, 1.0, 1, state, hyper={"beta": 0.5})


def test_checker_reports_what_makes_a_rule_meaningless():
    no_g = dsl.parse("def f(w, g, lr, t, m):\n    m = interp(g, m, 0.9)\n    return lr * w, m\n")
    report = dsl.check(no_g)
    assert not report.ok and "does not depend on the gradient" in report.errors[0].message
    assert any("never affects the step" in d.message for d in report.warnings)
    orth_scalar = dsl.parse("def f(w, g, lr, t):\n    return orth(lr) * g\n")
    assert "needs a tensor" in dsl.check(orth_scalar).errors[0].message
    report = dsl.check(dsl.parse(MESSY))
    assert report.ok
    messages = [d.message for d in report.warnings]
    assert "state 'v' is neither read nor written" in messages
    assert "the value of 'junk' is never used" in messages
    stays_zero = dsl.parse("def f(w, g, lr, t, m):\n    return lr * (g + m), m\n")
    assert any("stays zero" in d.message for d in dsl.check(stays_zero).warnings)
    assert dsl.check(dsl.parse(LION)).ok and not dsl.check(dsl.parse(LION)).warnings


def test_checker_positions_point_at_the_source():
    p = dsl.parse("def f(w, g, lr, t):\n    x = g * 2\n    return lr * w\n", "r.rule")
    err = dsl.check(p).errors[0]
    assert (err.filename, err.line, err.col) == ("r.rule", 3, 5)


def test_state_that_affects_the_step_through_other_state_is_live():
    p = dsl.parse("def f(w, g, lr, t, a, b):\n    b = interp(g, b, 0.9)\n"
                  "    a = interp(b, a, 0.9)\n    return lr * a, a, b\n")
    assert live_states(p) == {"a", "b"}


def test_structural_hash_ignores_names_and_dead_code():
    a = dsl.parse(LION)
    b = dsl.parse(LION.replace("c =", "cc =").replace("(c)", "(cc)")
                  .replace("    m = interp", "    junk = exp(g)\n    m = interp"))
    assert dsl.structural_hash(a) == dsl.structural_hash(b)
    c = dsl.parse(LION.replace("sign(c)", "tanh(c)"))
    assert dsl.structural_hash(a) != dsl.structural_hash(c)


def test_canonical_hash_sees_through_commutativity_interp_and_constants():
    a = dsl.parse("def f(w, g, lr, t, m):\n    m = interp(g, m, 0.9)\n    return lr * (m + w), m\n")
    b = dsl.parse("def f(w, g, lr, t, m):\n    m = interp(m, g, 1 - 0.9)\n"
                  "    return (w + m) * lr, m\n")
    assert dsl.structural_hash(a) != dsl.structural_hash(b)
    assert dsl.canonical_hash(a) == dsl.canonical_hash(b)
    assert dsl.fingerprint(a) == dsl.fingerprint(b)
    c = dsl.parse("def f(w, g, lr, t, m):\n    m = interp(g, m, 0.8)\n    return lr * (m + w), m\n")
    assert dsl.canonical_hash(a) != dsl.canonical_hash(c)
    assert dsl.fingerprint(a) != dsl.fingerprint(c)


def test_simplifier_turns_the_messy_rule_into_lion():
    q = dsl.simplify(dsl.parse(MESSY))
    assert q.state == ("m",)
    assert dsl.statement_count(q) == 2
    assert [s.op for s in q.body if not s.target.startswith("_")] == ["interp", "interp"]
    sign = next(s for s in q.body if s.op == "sign")
    assert sign.args == ("c",) and next(s for s in q.body if s.target == "c").op == "interp"
    assert dsl.fingerprint(q) == dsl.fingerprint(dsl.parse(LION.replace(
        "beta1=0.9, beta2=0.99, weight_decay=0.0", "beta1=0.9, beta2=0.99, weight_decay=0.01")))
    assert dsl.complexity(q) == dsl.complexity(dsl.parse(LION))


def test_simplifier_keeps_behaviour_and_never_grows():
    for name in seeds.seed_names():
        p = seeds.load_seed(name)
        q = dsl.simplify(p)
        assert dsl.complexity(q) <= dsl.complexity(p)
        assert dsl.fingerprint(q) == dsl.fingerprint(p)


def test_constant_folding_and_dead_state():
    p = dsl.parse("def f(w, g, lr, t, m, v):\n    k = 2.0 * 3.0\n    m = interp(g, m, 0.9)\n"
                  "    v = v + g\n    return lr * k * m, m, v\n")
    q = dsl.simplify(p)
    assert q.state == ("m",)
    assert any(6.0 in s.args for s in q.body)


def test_latex_renders_the_rule():
    tex = dsl.to_latex(dsl.parse(LION))
    assert tex.startswith("\\begin{aligned}")
    assert "c &\\leftarrow \\operatorname{interp}(g, m, \\beta_{1})" in tex
    assert "\\operatorname{sign}(c)" in tex and "\\eta" in tex
