"""The interpreter on a group of parameters: whole-model ops, grad_at, the context inputs and
factored state (`dsl.interpreter.run_group_step`), against math computed by hand."""

from __future__ import annotations

import math

import pytest
import torch
from optforge.dsl.context import MissingContextError, StepContext
from optforge.dsl.interpreter import init_state, run_group_step, run_step
from optforge.dsl.slots import SlotShape

from optforge import dsl

F64 = torch.float64


def _group(seed: int = 0, lead: int = 0, replicas: int = 3):
    gen = torch.Generator().manual_seed(seed)
    shapes = [(4, 3), (5,), (2, 3, 2)]
    pre = (replicas,) if lead else ()
    ws = [torch.randn(*pre, *s, generator=gen, dtype=F64) for s in shapes]
    gs = [torch.randn(*pre, *s, generator=gen, dtype=F64) for s in shapes]
    return ws, gs


# The per-tensor gradient norms of a 5-layer tanh MLP at one step (float32): the norm of
# them along a contiguous column of one replica was summed in another order than along the
# column of one replica among two.
LAYER_NORMS = [0.617490291595459, 0.06850175559520721, 1.1593127250671387, 0.05464299023151398,
               1.3663980960845947, 0.05208742991089821, 1.238139033317566, 0.04578106105327606,
               1.4676474332809448, 0.027793705463409424]


@pytest.mark.parametrize("op", ["global_norm", "global_sum"])
def test_a_replicas_whole_model_value_does_not_depend_on_the_replicas_beside_it(op):
    from optforge.dsl.model_ops import GLOBAL_FNS

    fn = GLOBAL_FNS[op]
    gen = torch.Generator().manual_seed(3)
    rows = [torch.tensor(LAYER_NORMS)] + [torch.rand(10, generator=gen) ** 3 * 10
                                          for _ in range(2)]
    for n in (1, 2, 3):  # each value a one-entry tensor: its own norm and sum
        xs = [torch.stack([r[k] for r in rows[:n]]).view(n, 1) for k in range(10)]
        value = fn(1, xs, xs)
        if n == 1:
            alone = value[0]
        assert value.shape == (n,) and torch.equal(value[0], alone), n


def test_global_sum_and_global_norm_are_computed_once_over_the_group():
    p = dsl.parse("def r(w, g, lr, t):\n"
                  "    return lr * g * global_sum(g * w) / global_norm(g)\n")
    ws, gs = _group()
    steps, states = run_group_step(p, ws, gs, 0.1, 1, [()] * 3)
    total = sum(float((g * w).sum()) for g, w in zip(gs, ws))
    norm = math.sqrt(sum(float((g * g).sum()) for g in gs))
    for step, g in zip(steps, gs):
        assert step.shape == g.shape
        torch.testing.assert_close(step, 0.1 * g * total / norm, rtol=1e-12, atol=0)
    assert states == [(), (), ()]


def test_a_scalar_argument_of_a_global_op_counts_once_per_entry():
    p = dsl.parse("def r(w, g, lr, t):\n    return g * global_sum(2.0)\n")
    ws, gs = _group()
    steps, _ = run_group_step(p, ws, gs, 0.1, 1, [()] * 3)
    n = sum(w.numel() for w in ws)
    assert torch.equal(steps[1], gs[1] * (2.0 * n))


def test_grad_at_calls_the_context_once_per_statement_with_the_perturbations():
    p = dsl.parse("def sam(w, g, lr, t, rho=0.05):\n"
                  "    e = rho * g / global_norm(g)\n"
                  "    h = grad_at(e)\n"
                  "    return lr * (h + grad_at(-e)), \n")
    ws, gs = _group()
    calls = []

    def grad_at(es):
        calls.append([e.clone() for e in es])
        return [3.0 * (w + e) for w, e in zip(ws, es)]

    steps, _ = run_group_step(p, ws, gs, 0.1, 1, [()] * 3, context=StepContext(grad_at=grad_at))
    norm = torch.sqrt(sum((g * g).sum() for g in gs))
    assert len(calls) == 2
    for k, (w, g) in enumerate(zip(ws, gs)):
        e = 0.05 * g / norm
        torch.testing.assert_close(calls[0][k], e, rtol=1e-15, atol=0)
        torch.testing.assert_close(calls[1][k], -e, rtol=1e-15, atol=0)
        torch.testing.assert_close(steps[k], 0.1 * (3.0 * (w + e) + 3.0 * (w - e)),
                                   rtol=1e-14, atol=0)


def test_grad_at_of_a_scalar_gets_a_full_shaped_perturbation():
    p = dsl.parse("def r(w, g, lr, t):\n    return grad_at(lr), \n")
    ws, gs = _group()
    seen = []
    run_group_step(p, ws, gs, 0.1, 1, [()] * 3,
                   context=StepContext(grad_at=lambda es: seen.extend(es) or list(es)))
    assert [e.shape for e in seen] == [w.shape for w in ws]
    assert all(bool((e == 0.1).all()) for e in seen)


def test_loss_hess_and_shape_scalars():
    p = dsl.parse("def r(w, g, lr, t):\n"
                  "    return g * loss + hess * rows + cols * 10.0 + numel * 1000.0\n")
    ws, gs = _group()
    hess = [torch.full_like(w, 0.5) for w in ws]
    steps, _ = run_group_step(p, ws, gs, 0.1, 1, [()] * 3,
                              context=StepContext(loss=2.0, hess=hess))
    for step, w, g, (r, c, n) in zip(steps, ws, gs, [(4, 3, 12), (5, 1, 5), (2, 6, 12)]):
        assert torch.equal(step, g * 2.0 + 0.5 * r + c * 10.0 + n * 1000.0)
        assert step.dtype == F64


def test_shape_scalars_need_no_context():
    p = dsl.parse("def r(w, g, lr, t):\n    return g * sqrt(max(1.0, rows / cols))\n")
    w = torch.ones(6, 2, dtype=F64)
    step, _ = run_step(p, w, w, 0.1, 1, ())
    assert torch.equal(step, w * math.sqrt(3.0))


@pytest.mark.parametrize("source, name", [
    ("def r(w, g, lr, t):\n    return g * loss\n", "loss"),
    ("def r(w, g, lr, t):\n    return g * hess\n", "hess"),
    ("def r(w, g, lr, t):\n    return grad_at(g)\n", "grad_at"),
])
def test_a_missing_context_input_is_a_clear_error(source, name):
    p = dsl.parse(source)
    w = torch.ones(3, dtype=F64)
    with pytest.raises(MissingContextError, match=f"reads '{name}'"):
        run_step(p, w, w, 0.1, 1, ())
    with pytest.raises(MissingContextError, match=f"reads '{name}'"):
        run_step(p, w, w, 0.1, 1, (), context=StepContext())


ADAFACTOR_LIKE = """def fact(w, g, lr, t, r{R}, c{C}, mu{S}, m, beta=0.9, eps=1e-30):
    sq = g * g + eps
    r = interp(row_mean(sq), r, beta)
    c = interp(col_mean(sq), c, beta)
    mu = interp(mean(sq) + loss * 0.0, mu, beta)
    m = interp(g, m, beta)
    v = r * c / mean(r) + mu * 0.0
    return lr * m * rsqrt(v), r, c, mu, m
"""


def _factored(annotated: bool):
    notes = (": row", ": col", ": scalar") if annotated else ("", "", "")
    return dsl.parse(ADAFACTOR_LIKE.format(R=notes[0], C=notes[1], S=notes[2]))


def test_factored_slots_are_stored_reduced_and_step_exactly_as_full_ones():
    full, fact = _factored(False), _factored(True)
    assert fact.slot_shapes == (("r", SlotShape.ROW), ("c", SlotShape.COL),
                                ("mu", SlotShape.SCALAR))
    ws, _ = _group()
    gen = torch.Generator().manual_seed(1)
    s_full = [init_state(full, w) for w in ws]
    s_fact = [init_state(fact, w) for w in ws]
    assert [tuple(x.shape) for x in s_fact[0]] == [(4, 1), (1, 3), (1, 1), (4, 3)]
    assert [tuple(x.shape) for x in s_fact[1]] == [(5,), (1,), (1,), (5,)]
    assert [tuple(x.shape) for x in s_fact[2]] == [(2, 1, 1), (1, 3, 2), (1, 1, 1), (2, 3, 2)]
    for t in range(1, 6):
        gs = [torch.randn(w.shape, generator=gen, dtype=F64) for w in ws]
        ctx = StepContext(loss=1.5)
        a, s_full = run_group_step(full, ws, gs, 0.01, t, s_full, context=ctx)
        b, s_fact = run_group_step(fact, ws, gs, 0.01, t, s_fact, context=ctx)
        for x, y in zip(a, b):
            assert torch.equal(x, y)
        for sf, sr, w in zip(s_full, s_fact, ws):
            for k, slot in enumerate(fact.state):
                shape = fact.slot_shape(slot)
                assert sr[k].shape == dsl.slots.stored_shape(shape, w.shape)
                assert torch.equal(dsl.slots.load(shape, sr[k], w.shape), sf[k])
                if shape is not SlotShape.FULL:  # a vector's row slot is the whole vector
                    assert sr[k].is_contiguous()
                    assert sr[k].numel() < w.numel() or (w.dim() == 1 and shape is SlotShape.ROW)


GROUP_RULE = """def r(w, g, lr, t, m, v: scalar, beta=0.9):
    m = interp(g, m, beta)
    v = interp(global_norm(g) * loss, v, beta)
    e = 0.05 * g / (global_norm(g) + 1e-12)
    h = grad_at(e)
    return lr * (m + h * hess + numel / rows) / (sqrt(v) + global_sum(m * m)), m, v
"""


def test_lead_one_agrees_with_lead_zero_on_each_replica():
    p = dsl.parse(GROUP_RULE)
    ws, gs = _group(2, lead=1)
    gen = torch.Generator().manual_seed(3)
    hess = [torch.rand(w.shape, generator=gen, dtype=F64) for w in ws]
    loss = torch.tensor([0.5, 1.0, 2.0], dtype=F64)
    lr = torch.tensor([0.1, 0.2, 0.3], dtype=F64)

    def grad_at(params):
        return lambda es: [2.0 * (w + e) for w, e in zip(params, es)]

    states = [init_state(p, w, lead=1) for w in ws]
    assert states[0][1].shape == (3, 1, 1)
    for t in (1, 2, 3):
        ctx = StepContext(loss=loss, hess=hess, grad_at=grad_at(ws))
        steps, new = run_group_step(p, ws, gs, lr, t, states, lead=1, context=ctx)
        for r in range(3):
            wr = [w[r] for w in ws]
            ctx_r = StepContext(loss=loss[r], hess=[h[r] for h in hess], grad_at=grad_at(wr))
            s_r, n_r = run_group_step(p, wr, [g[r] for g in gs], lr[r], t,
                                      [tuple(x[r] for x in s) for s in states], context=ctx_r)
            for k in range(len(ws)):
                torch.testing.assert_close(steps[k][r], s_r[k], rtol=1e-13, atol=1e-15)
                for x, y in zip(new[k], n_r[k]):
                    torch.testing.assert_close(x[r], y, rtol=1e-13, atol=1e-15)
        states = new
        ws = [w - s for w, s in zip(ws, steps)]


def test_run_step_is_a_group_of_one():
    p = dsl.parse(GROUP_RULE)
    ws, gs = _group(4)
    w, g = ws[0], gs[0]
    ctx = StepContext(loss=1.0, hess=[torch.ones_like(w)], grad_at=lambda es: [w + es[0]])
    step, state = run_step(p, w, g, 0.1, 1, init_state(p, w), context=ctx)
    steps, states = run_group_step(p, [w], [g], 0.1, 1, [init_state(p, w)], context=ctx)
    assert torch.equal(step, steps[0]) and all(map(torch.equal, state, states[0]))
    assert state[1].shape == (1, 1)
