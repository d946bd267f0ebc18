"""Properties of the language on random programs (hypothesis; strategies in `strategies.py`).

1. the printer and the parser are inverse: ``parse(format_program(p)) == p``;
2. the simplifier and the canonicalisation keep behaviour (fresh random problems, not only
   the probes the simplifier itself checks against; NaN where NaN);
3. the batched interpreter (``lead=1``, per-replica ``lr`` and hyperparameters) equals running
   each replica alone, in float32 and float64, on 1-, 2- and 3-D parameters;
4. `structural_hash` ignores names, dead code and the order of independent statements;
   `canonical_hash` also commutativity, ``interp(x, y, a) == interp(y, x, 1 - a)`` and
   constant folding; both tell apart programs that behave differently;
5. the simplifier keeps the fingerprint.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st
from optforge.dsl.ir import INPUTS, Program, Stmt, is_temp, validate
from optforge.dsl.kernel import compile_kernel

from optforge import dsl

from .strategies import (
    ALL_OPS,
    ARITHMETIC_OPS,
    ELEMENTWISE_OPS,
    FINITE_OPS,
    GROUP_OPS,
    MATRIX_OPS,
    REDUCTION_OPS,
    any_constants,
    docstrings,
    insert_statement,
    programs,
)

# Modest budgets: the whole file runs in well under a minute on two busy cores. The
# simplifier goes through sympy, so its properties get fewer examples.
FAST = settings(max_examples=100, deadline=None,
                suppress_health_check=[HealthCheck.too_slow])
CHEAP = settings(FAST, max_examples=200)  # printing and parsing only
SLOW = settings(max_examples=30, deadline=None,
                suppress_health_check=[HealthCheck.too_slow])

COMMUTATIVE = ("add", "mul", "min", "max")

# Minimal inputs of bugs these properties found (fixed since). Each stays an explicit
# example of the property it broke, so a regression fails deterministically.
DEAD_STATE_RETURNED_AS_UPDATE = dsl.parse(  # simplify: KeyError 'v'
    "def f(w, g, lr, t, m, v):\n    return g + m, v, v\n")
ORTH_OF_ZERO_STATE = dsl.parse(  # simplify gives orth(0.0), which fails the checker
    "def f(w, g, lr, t, m):\n    return orth(m) + g, m\n")
INTERP_FLIPPED_BACK = dsl.parse(  # canonical_hash: interp(m, g, 1 - b) != interp(g, m, b)
    "def f(w, g, lr, t, m, b=0.9):\n    m = interp(g, m, b)\n    return lr * m, m\n")
# fingerprint: the first 0.0 unfolded to neg(-0.0) left -0.0 in the interpreter's constant
# cache, where the 0.0 of 1.0 / 0.0 found it (as dict keys 0.0 == -0.0): -inf instead of inf
ZERO_BEFORE_DIVISION_BY_ZERO = dsl.parse(
    "def f(w, g, lr, t):\n    a = 0.0 + 0.0\n    return 1.0 / 0.0 + g\n")


# ---- helpers -----------------------------------------------------------------------------

def _problems(dtype=torch.float64, seed=1234):
    """Two noisy quadratics (a matrix and a vector parameter) drawn independently of the
    fingerprint probes: ``g = curvature * w + noise``."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for shape in ((4, 3), (5,)):
        w0 = torch.randn(shape, generator=gen, dtype=dtype)
        curvature = torch.rand(shape, generator=gen, dtype=dtype) * 2 + 0.1
        noise = [0.1 * torch.randn(shape, generator=gen, dtype=dtype) for _ in range(4)]
        out.append((w0, curvature, noise))
    return out


PROBLEMS = _problems()


def trajectory(p: Program, problems=PROBLEMS, lr: float = 0.05) -> list[torch.Tensor]:
    """The parameter after each step, then the final step, on each problem."""
    out = []
    with torch.no_grad():
        for w, curvature, noise in problems:
            state = dsl.init_state(p, w)
            for t, n in enumerate(noise, start=1):
                step, state = dsl.run_step(p, w, curvature * w + n, lr, t, state)
                w = w - step
                out.append(w)
            out.append(step)
    return out


def assert_same_behaviour(p: Program, q: Program, rtol=1e-6, atol=1e-9) -> None:
    for a, b in zip(trajectory(p), trajectory(q), strict=True):
        torch.testing.assert_close(a, b, rtol=rtol, atol=atol, equal_nan=True)


def with_stmt(p: Program, index: int, stmt: Stmt) -> Program:
    body = list(p.body)
    body[index] = stmt
    return replace(p, body=tuple(body))


# ---- 0. the strategies themselves --------------------------------------------------------------

@FAST
@given(programs(valid=True))
def test_valid_programs_pass_the_checker(p):
    validate(p)
    report = dsl.check(p)
    assert report.ok, report.errors


# ---- 1. printer and parser are inverse ------------------------------------------------------

@CHEAP
@given(programs(ops=ALL_OPS, constants=any_constants(), docs=docstrings()))
@example(Program("f", (), (), (), ("g",), doc="NUL \x00 and CR \r in a docstring"))
def test_parse_inverts_format_on_random_programs(p):
    text = dsl.format_program(p)
    q = dsl.parse(text)
    assert q == p, text
    assert dsl.format_program(q) == text


@CHEAP
@given(programs(ops=ALL_OPS + GROUP_OPS, context=True, slot_shapes=True))
def test_parse_inverts_format_with_context_inputs_group_ops_and_slot_shapes(p):
    text = dsl.format_program(p)
    q = dsl.parse(text)
    assert q == p and q.slot_shapes == p.slot_shapes, text
    assert dsl.format_program(q) == text


@CHEAP
@given(programs(ops=ARITHMETIC_OPS + ("interp", "sqrt"), min_statements=1, max_statements=10,
                constants=any_constants(), const_prob=0.4, max_state=2))
def test_parse_inverts_format_on_arithmetic_with_negative_constants(p):
    """Operators, precedence, unary minus, ``**`` (right-associative) and signed constants:
    where a printer goes wrong."""
    text = dsl.format_program(p)
    assert dsl.parse(text) == p, text


@pytest.mark.parametrize("source", [
    "def f(w, g, lr, t):\n    return lr * -g ** -2.0\n",
    "def f(w, g, lr, t):\n    return (-g) ** 2.0 - -0.5 * g\n",
    "def f(w, g, lr, t):\n    return neg(-0.5) * g ** t ** (0.5 - g)\n",
    "def f(w, g, lr, t):\n    return neg(0.5) - g / (w / g)\n",
    ("def f(w, g, lr, t, m, k=-3.0):\n    m = m * k\n    m = m + g\n    m = -m\n"
     "    return lr * m, m\n"),
    "def f(w, g, lr, t):\n    _1 = g * g\n    return _1 + _1\n",
    'def f(w, g, lr, t):\n    """Doc.\n      """\n    return g\n',
    'def f(w, g, lr, t):\n    """\n  """\n    return g\n',
    'def f(w, g, lr, t):\n    """\nA\n    B"""\n    return g\n',
])
def test_parse_inverts_format_on_tricky_rules(source):
    p = dsl.parse(source)
    assert dsl.parse(dsl.format_program(p)) == p


def test_keywords_folded_from_fullwidth_letters_are_not_names():
    # Python folds U+FF49 U+FF46 to the keyword 'if' (NFKC); it must not become a variable
    with pytest.raises(dsl.RuleError, match="Python keyword"):
        dsl.parse("def f(w, g, lr, t):\n    \uff49\uff46 = g * g\n    return \uff49\uff46\n")


def chain(op: str, n: int) -> Program:
    """``op(op(...op(g, g)...))``: n nested statements, each read once (valid IR of at most
    1,000 statements, as mutations can build)."""
    arity = dsl.OPS[op].arity
    body = [Stmt("_1", op, ("g",) * arity)]
    for i in range(1, n):
        body.append(Stmt(f"_{i + 1}", op, (f"_{i}",) + ("g",) * (arity - 1)))
    return Program("deep", (), (), tuple(body), (f"_{n}",))


@pytest.mark.parametrize("p", [chain("neg", 202), chain("pow", 500), chain("add", 950)],
                         ids=["neg202", "pow500", "add950"])
def test_parse_inverts_format_on_deep_programs(p):
    validate(p)
    assert dsl.parse(dsl.format_program(p)) == p


# ---- 2. simplification and canonicalisation keep behaviour -----------------------------------

@SLOW
@given(programs(ops=ELEMENTWISE_OPS + REDUCTION_OPS, max_statements=7, valid=True))
@example(DEAD_STATE_RETURNED_AS_UPDATE)
def test_simplify_keeps_behaviour_on_fresh_problems(p):
    q = dsl.simplify(p)
    validate(q)
    assert dsl.check(q).ok
    assert dsl.complexity(q) <= dsl.complexity(p)
    assert dsl.parse(dsl.format_program(q)) == q
    assert_same_behaviour(p, q)


@SLOW
@given(programs(ops=FINITE_OPS + ("orth", "row_mean", "col_mean"), max_statements=7, valid=True,
                max_state=2))
@example(ORTH_OF_ZERO_STATE)
def test_simplify_keeps_behaviour_with_matrix_ops(p):
    q = dsl.simplify(p)
    assert dsl.check(q).ok
    assert_same_behaviour(p, q)


def swap_commutative(p: Program, flips: list[bool]) -> Program:
    body = list(p.body)
    for i, s in enumerate(body):
        if s.op in COMMUTATIVE and flips[i % len(flips)]:
            body[i] = Stmt(s.target, s.op, s.args[::-1])
    return replace(p, body=tuple(body))


@FAST
@given(programs(valid=True), st.lists(st.booleans(), min_size=1, max_size=8))
def test_commutative_swaps_keep_behaviour_and_hashes(p, flips):
    q = swap_commutative(p, flips)
    validate(q)
    assert dsl.canonical_hash(q) == dsl.canonical_hash(p)
    assert dsl.fingerprint(q) == dsl.fingerprint(p)  # IEEE + and * commute exactly
    assert_same_behaviour(p, q, rtol=0, atol=0)


def flip_interp(p: Program, i: int) -> Program:
    """``interp(x, y, a) -> interp(y, x, 1 - a)`` at statement `i`; ``1 - a`` is a new
    statement for a variable `a`, the folded constant for a constant."""
    x, y, a = p.body[i].args
    if isinstance(a, float):
        return with_stmt(p, i, Stmt(p.body[i].target, "interp", (y, x, 1.0 - a)))
    q = insert_statement(p, i, Stmt("_0", "sub", (1.0, a)))
    return with_stmt(q, i + 1, Stmt(q.body[i + 1].target, "interp", (y, x, q.body[i].target)))


def interp_sites(p: Program) -> list[int]:
    return [i for i, s in enumerate(p.body) if s.op == "interp"]


# programs with at least one interp (its weight is a constant in about a third of them), over
# ops that never turn finite values into infinities, where the symmetry holds only up to NaN
# (found by this test: interp(rsqrt(0), g, -1) and interp(g, rsqrt(0), 2) differ after steps)
INTERP_PROGRAMS = programs(ops=FINITE_OPS + ("interp",) * 6, min_statements=1, valid=True,
                           const_prob=0.3).filter(interp_sites)


@FAST
@given(INTERP_PROGRAMS, st.integers(0, 20))
def test_interp_symmetry_keeps_behaviour(p, which):
    sites = interp_sites(p)
    q = flip_interp(p, sites[which % len(sites)])
    validate(q)
    assert dsl.check(q).ok
    assert_same_behaviour(p, q)


def unfold_constant(p: Program, which: int) -> Program:
    """Replace the `which`-th constant argument c (mod their number) by a new statement
    ``neg(-c)``, which constant folding turns back into c exactly."""
    sites = [(i, k) for i, s in enumerate(p.body) for k, a in enumerate(s.args)
             if isinstance(a, float)]
    i, k = sites[which % len(sites)]
    q = insert_statement(p, i, Stmt("_0", "neg", (-p.body[i].args[k],)))
    s = q.body[i + 1]
    args = s.args[:k] + (q.body[i].target,) + s.args[k + 1:]
    return with_stmt(q, i + 1, Stmt(s.target, s.op, args))


@FAST
@given(programs(valid=True, const_prob=0.4).filter(
    lambda p: any(isinstance(a, float) for s in p.body for a in s.args)), st.integers(0, 50))
@example(ZERO_BEFORE_DIVISION_BY_ZERO, 0)
def test_constant_folding_keeps_behaviour_and_canonical_hash(p, which):
    q = unfold_constant(p, which)
    validate(q)
    assert dsl.canonical_hash(q) == dsl.canonical_hash(p)
    assert dsl.fingerprint(q) == dsl.fingerprint(p)
    assert_same_behaviour(p, q, rtol=0, atol=0)


@pytest.mark.parametrize("expr", ["sign(1.0 / 0.0) * g + sign(1.0 / -0.0)",
                                  "sign(1.0 / -0.0) + sign(1.0 / 0.0) * g"])
def test_signed_zero_constants_stay_apart(expr):
    """-0.0 and 0.0 are one dict key but two constants (1 / -0.0 = -inf), in either order,
    in the interpreter and in the kernel."""
    p = dsl.parse(f"def f(w, g, lr, t):\n    return {expr}\n")
    g = torch.tensor([[0.5, -2.0], [3.0, 0.0]], dtype=torch.float64)
    step, _ = dsl.run_step(p, torch.zeros_like(g), g, 0.1, 1, ())
    assert torch.equal(step, g - 1)
    step, _ = compile_kernel(p)(torch.zeros_like(g)[None], g[None],
                                torch.tensor([0.1], dtype=torch.float64), 1, ())
    assert torch.equal(step[0], g - 1)


# ---- 3. the batched interpreter equals the per-replica one ------------------------------------

REPLICAS = 3


@FAST
@given(p=programs(ops=ALL_OPS + REDUCTION_OPS * 2 + MATRIX_OPS * 4, max_statements=10,
                  valid=True, const_prob=0.1),  # about half reach the step through a matrix op
       dtype=st.sampled_from([torch.float32, torch.float64]),
       shape=st.sampled_from([(6,), (4, 3), (2, 5), (3, 2, 2)]),
       seed=st.integers(0, 2**16))
def test_batched_interpreter_equals_each_replica_alone(p, dtype, shape, seed):
    """Three steps of R replicas at once, with per-replica learning rates and
    hyperparameters; each step is compared with the replicas run one by one from the same
    parameter and state, so rounding differences cannot compound over steps."""
    if dtype == torch.float32 and any(s.op in MATRIX_OPS for s in p.body):
        # A batched float32 matmul rounds differently from a single one (~1e-7), and an op
        # such as sqrt near zero magnifies that past any fixed tolerance: sqrt(orth(w))
        # differed by 2.6e-6. Matrix ops are compared in float64 here; the kernel's tests
        # check float32 bit for bit against the interpreter on the same layout.
        dtype = torch.float64
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn((REPLICAS,) + shape, generator=gen, dtype=dtype)
    curvature = torch.rand(w.shape, generator=gen, dtype=dtype) + 0.5
    lr = torch.tensor([0.01, 0.1, 0.03], dtype=dtype)
    hyper = {h: torch.tensor([v, 0.5 * v, v + 0.25], dtype=dtype) for h, v in p.hyperparams}
    tol = ({"rtol": 1e-5, "atol": 1e-6} if dtype == torch.float32
           else {"rtol": 1e-12, "atol": 1e-14})

    state = dsl.init_state(p, w)
    for t in range(1, 4):
        g = curvature * w + 0.1 * torch.randn(w.shape, generator=gen, dtype=dtype)
        step, new_state = dsl.run_step(p, w, g, lr, t, state, hyper, lead=1)
        assert step.shape == w.shape and step.dtype == dtype
        assert all(s.shape == w.shape for s in new_state)
        for r in range(REPLICAS):
            step_r, state_r = dsl.run_step(p, w[r], g[r], float(lr[r]), t,
                                           tuple(s[r] for s in state),
                                           {h: float(v[r]) for h, v in hyper.items()}, lead=0)
            torch.testing.assert_close(step[r], step_r, equal_nan=True, **tol)
            for sb, sr in zip(new_state, state_r, strict=True):
                torch.testing.assert_close(sb[r], sr, equal_nan=True, **tol)
        w, state = w - step, new_state


# ---- 4. hashes -----------------------------------------------------------------------------

def rename_variables(p: Program) -> Program:
    """Every state slot, hyperparameter and named variable (and the rule) renamed."""
    names = [n for n in p.params if n not in INPUTS]
    names += [s.target for s in p.body if not is_temp(s.target) and s.target not in names]
    mapping = {n: f"renamed_{k}" for k, n in enumerate(names)}

    def rn(a):
        return mapping.get(a, a) if isinstance(a, str) else a

    return Program("renamed", tuple(rn(s) for s in p.state),
                   tuple((rn(h), v) for h, v in p.hyperparams),
                   tuple(Stmt(rn(s.target), s.op, tuple(rn(a) for a in s.args)) for s in p.body),
                   tuple(rn(a) for a in p.returns), "another docstring")


@st.composite
def with_dead_code(draw, p: Program) -> Program:
    """`p` with up to four statements inserted whose values nothing reads."""
    always_defined = list(p.params)
    for k in range(draw(st.integers(1, 4))):
        op = dsl.OPS[draw(st.sampled_from(ALL_OPS))]
        args = tuple(draw(st.sampled_from(["w", "g"])) if j == 0 and op.kind.value == "matrix"
                     else draw(st.one_of(st.sampled_from(always_defined),
                                         st.floats(-3, 3, allow_nan=False)))
                     for j in range(op.arity))
        target = draw(st.sampled_from(["_0", f"dead_{k}"]))
        p = insert_statement(p, draw(st.integers(0, len(p.body))), Stmt(target, op.name, args))
    return p


@FAST
@given(st.data())
def test_hashes_ignore_names_and_dead_code(data):
    p = data.draw(programs(valid=True))
    renamed = rename_variables(p)
    validate(renamed)
    q = data.draw(with_dead_code(renamed))
    validate(q)
    assert dsl.structural_hash(renamed) == dsl.structural_hash(p)
    assert dsl.structural_hash(q) == dsl.structural_hash(p)
    assert dsl.canonical_hash(q) == dsl.canonical_hash(p)
    assert dsl.fingerprint(q) == dsl.fingerprint(p)


def independent(a: Stmt, b: Stmt) -> bool:
    """Whether `a; b` may run as `b; a`: neither reads or overwrites what the other writes."""
    return (a.target != b.target and a.target not in b.args and b.target not in a.args)


@FAST
@given(programs(min_statements=2, valid=True), st.lists(st.integers(0, 30), max_size=6))
def test_structural_hash_ignores_order_of_independent_statements(p, swaps):
    q = p
    for k in swaps:
        i = k % (len(q.body) - 1)
        a, b = q.body[i], q.body[i + 1]
        if independent(a, b):
            body = list(q.body)
            body[i], body[i + 1] = b, a
            q = q.with_body(body)
    validate(q)
    assert dsl.structural_hash(q) == dsl.structural_hash(p)
    assert dsl.fingerprint(q) == dsl.fingerprint(p)


@FAST
@given(INTERP_PROGRAMS, st.integers(0, 20))
@example(INTERP_FLIPPED_BACK, 0)
def test_canonical_hash_sees_interp_symmetry(p, which):
    sites = interp_sites(p)
    q = flip_interp(p, sites[which % len(sites)])
    assert dsl.canonical_hash(q) == dsl.canonical_hash(p), (
        dsl.format_program(p), dsl.format_program(q))


def _rule(body: str, params: str = "") -> Program:
    return dsl.parse(f"def f(w, g, lr, t{params}):\n" + "".join(
        f"    {line}\n" for line in body.split("; ")))


DIFFERENT = [  # (a, b): programs that behave differently
    ("return g - w", "return w - g"),
    ("return g / (w + 2.0)", "return (w + 2.0) / g"),
    ("return g ** 2.0", "return 2.0 ** g"),
    ("return sign(g)", "return tanh(g)"),
    ("return lr * g", "return lr * g * g"),
    ("return g * 0.5", "return g * 0.25"),
    ("return interp(g, w, 0.3)", "return interp(w, g, 0.3)"),
    ("return clip(g, -1.0, 1.0)", "return clip(g, 1.0, -1.0)"),
    ("return norm(g) * w", "return rms(g) * w"),
    ("return row_mean(g)", "return col_mean(g)"),
    ("return orth(g)", "return g / norm(g)"),
    ("return dot(g, w) * g", "return dot(g, g) * w"),
]
DIFFERENT_STATE = [  # (params, a, b)
    (", m, beta=0.9", "m = interp(g, m, beta); return lr * m, m",
     "c = interp(g, m, beta); return lr * c, m"),
    (", m, beta=0.9", "m = interp(g, m, beta); return lr * m, m",
     "m = interp(m, g, beta); return lr * m, m"),
    (", m, v", "m = m + g; v = v + m; return v, m, v", "m = m + g; v = v + m; return m, m, v"),
    (", m, v", "m = interp(g, m, 0.9); v = interp(g * g, v, 0.99); return m / sqrt(v), m, v",
     "m = interp(g, m, 0.9); v = interp(g * g, v, 0.99); return m / sqrt(v), v, m"),
]


@pytest.mark.parametrize("a, b", [(_rule(a), _rule(b)) for a, b in DIFFERENT]
                         + [(_rule(a, ps), _rule(b, ps)) for ps, a, b in DIFFERENT_STATE])
def test_hashes_tell_apart_programs_that_behave_differently(a, b):
    assert dsl.fingerprint(a) != dsl.fingerprint(b)
    assert dsl.structural_hash(a) != dsl.structural_hash(b)
    assert dsl.canonical_hash(a) != dsl.canonical_hash(b)


def test_hashes_tell_apart_hyperparameter_defaults():
    a = _rule("m = interp(g, m, beta); return lr * m, m", ", m, beta=0.9")
    b = _rule("m = interp(g, m, beta); return lr * m, m", ", m, beta=0.5")
    assert dsl.fingerprint(a) != dsl.fingerprint(b)
    assert dsl.structural_hash(a) != dsl.structural_hash(b)
    assert dsl.canonical_hash(a) != dsl.canonical_hash(b)


@FAST
@given(programs(valid=True), st.sampled_from(["add", "mul", "sub", "div", "max"]),
       st.sampled_from([2.0, -1.0, 0.5]))
def test_changed_step_changes_the_hashes(p, op, c):
    """Post-composing the step with a non-identity op changes both hashes whenever it
    changes behaviour."""
    q = p.with_body(p.body + (Stmt("_0", op, (p.step, c)),), ("_0",) + p.returns[1:])
    validate(q)
    assert dsl.structural_hash(q) != dsl.structural_hash(p)
    if dsl.fingerprint(q) != dsl.fingerprint(p):
        assert dsl.canonical_hash(q) != dsl.canonical_hash(p)


# ---- 5. the simplifier keeps the fingerprint ------------------------------------------------

@SLOW
@given(programs(ops=ELEMENTWISE_OPS + REDUCTION_OPS, max_statements=7, valid=True))
@example(DEAD_STATE_RETURNED_AS_UPDATE)
def test_simplify_keeps_the_fingerprint(p):
    q = dsl.simplify(p)
    assume(q != p)
    assert dsl.fingerprint(q) == dsl.fingerprint(p), (dsl.format_program(p),
                                                      dsl.format_program(q))


@SLOW
@given(programs(ops=ELEMENTWISE_OPS + REDUCTION_OPS + GROUP_OPS * 3, max_statements=7,
                valid=True, context=True))
def test_simplify_keeps_the_fingerprint_of_rules_that_read_the_group(p):
    q = dsl.simplify(p)
    assert dsl.check(q).ok
    assume(q != p)
    assert dsl.fingerprint(q) == dsl.fingerprint(p), (dsl.format_program(p),
                                                      dsl.format_program(q))
    # group-level ops are never duplicated, and grad_at calls keep their order
    for kind in (dsl.OpKind.GLOBAL, dsl.OpKind.GRADIENT):
        assert sum(dsl.OPS[s.op].kind is kind for s in q.body) <= \
            sum(dsl.OPS[s.op].kind is kind for s in p.body)
