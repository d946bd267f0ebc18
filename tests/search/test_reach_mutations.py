"""The mutations that reach beyond one tensor (`search.reach_mutations`) and the weighted
fresh-op draws: every child passes the checker, round-trips through the printer and runs in
the interpreter on a group of parameters with a `StepContext`; each edit is what it says
(factored state and a whole-model reduction over a group of one are the same math, checked
against the parent step for step)."""

from collections import Counter

import numpy as np
import pytest
import torch
from optforge.dsl.context import StepContext
from optforge.dsl.interpreter import init_state, run_group_step
from optforge.dsl.needs import needs, passes_per_step
from optforge.dsl.ops import OPS, OpKind
from optforge.dsl.slots import SlotShape
from optforge.search import mutation_defaults
from optforge.search.mutations import MUTATIONS, Limits, mutate
from optforge.search.reach_mutations import REACH_MUTATIONS, tensor_sites

from optforge import dsl, seeds

F64 = torch.float64
FACTORABLE = dsl.parse(  # two slots that vary along rows only and columns only
    "def f(w, g, lr, t, r, c):\n"
    "    r = interp(row_mean(g * g), r, 0.9)\n"
    "    c = interp(col_mean(g * g), c, 0.9)\n"
    "    return lr * g / sqrt(r * c + 1e-8), r, c\n")
PARENTS = tuple(seeds.load_seed(n) for n in ("adamw", "lion", "sgd_momentum", "lamb",
                                             "novograd", "adafactor")) + (FACTORABLE,)


def _group(seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    shapes = [(4, 3), (5,), (2, 3, 2)]
    ws = [torch.randn(*s, generator=gen, dtype=F64) for s in shapes]
    curv = [torch.rand(*s, generator=gen, dtype=F64) + 0.1 for s in shapes]
    return ws, curv


def _context(ws, curv) -> StepContext:
    """A diagonal quadratic's context: its loss, exact Hessian diagonal and gradient at w+e."""
    loss = sum(0.5 * float((c * w * w).sum()) for c, w in zip(curv, ws))
    return StepContext(loss=torch.tensor(loss, dtype=F64), hess=list(curv),
                       grad_at=lambda es: [c * (w + e) for c, w, e in zip(curv, ws, es)])


def run_group(p, steps: int = 3, seed: int = 0) -> list[list[torch.Tensor]]:
    """The group's parameters after each of `steps` steps of `p` on the quadratic."""
    ws, curv = _group(seed)
    states = [init_state(p, w) for w in ws]
    out = []
    for t in range(1, steps + 1):
        gs = [c * w for c, w in zip(curv, ws)]
        step, states = run_group_step(p, ws, gs, 0.01, t, states, context=_context(ws, curv))
        for s, st, w in zip(step, states, ws):
            assert s.shape == w.shape
            for slot, x in zip(p.state, st):
                assert x.dim() == w.dim()
                if p.slot_shape(slot) is not SlotShape.FULL:
                    assert x.numel() <= w.numel()
        ws = [w - s for w, s in zip(ws, step)]
        out.append(ws)
    return out


@pytest.mark.parametrize("kind", sorted(REACH_MUTATIONS))
def test_each_new_mutation_makes_valid_children_that_run_with_a_context(kind):
    rng = np.random.default_rng(3)
    made = 0
    for parent in PARENTS:
        for _ in range(4):
            r = mutate(parent, rng, {kind: 1.0})
            if r.child is None:
                continue
            made += 1
            child = r.child
            assert r.kind == kind
            dsl.ir.validate(child)
            assert dsl.check(child).ok
            assert dsl.structural_hash(child) != dsl.structural_hash(parent)
            assert dsl.parse(dsl.format_program(child)) == child
            run_group(child)
    assert made >= (1 if kind == "factor_state" else 6), (kind, made)


def test_read_context_keeps_the_value_class():
    rng = np.random.default_rng(0)
    adamw = seeds.load_seed("adamw")
    seen = Counter()
    for _ in range(60):
        child = REACH_MUTATIONS["read_context"](adamw, rng, Limits())
        read = needs(child) - {"grad_at"}
        assert len(read) == 1
        (name,) = read
        seen[name] += 1
        sites = {(i, k): t for i, k, t in tensor_sites(child)}
        where = [(i, k) for i, s in enumerate(child.body) for k, a in enumerate(s.args)
                 if a == name]
        assert where and all(sites[ik] == (name == "hess") for ik in where)
    assert set(seen) == {"loss", "hess", "rows", "cols", "numel"}, seen


def test_globalize_over_a_group_of_one_is_the_same_math():
    """global_norm, global_sum(x * y), global_sum(x) / global_sum(1) and
    global_norm(x) / sqrt(global_sum(1)) equal norm, dot, mean and rms on one tensor."""
    rng = np.random.default_rng(1)
    for source, op in (("norm(g)", "norm"), ("dot(g, w)", "dot"), ("mean(g)", "mean"),
                       ("rms(g)", "rms")):
        p = dsl.parse(f"def f(w, g, lr, t):\n    return lr * g * {source}\n")
        child = REACH_MUTATIONS["globalize"](p, rng, Limits())
        assert op not in {s.op for s in child.body}
        assert {s.op for s in child.body} & {"global_norm", "global_sum"}
        w = torch.randn(4, 3, dtype=F64)
        g = torch.randn(4, 3, dtype=F64)
        (a,), _ = run_group_step(p, [w], [g], 0.1, 1, [()])
        (b,), _ = run_group_step(child, [w], [g], 0.1, 1, [()])
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-15)
        # over a group, it is the whole model's value (one for every parameter)
        w2, g2 = torch.randn(5, dtype=F64), torch.randn(5, dtype=F64)
        (b1, b2), _ = run_group_step(child, [w, w2], [g, g2], 0.1, 1, [(), ()])
        ratio1, ratio2 = b1 / (0.1 * g), b2 / (0.1 * g2)
        torch.testing.assert_close(ratio1.flatten()[0], ratio2.flatten()[0])


def test_clip_global_norm_clips_the_whole_gradient():
    p = dsl.parse("def sgd(w, g, lr, t):\n    return lr * g\n")
    rng = np.random.default_rng(0)
    child = REACH_MUTATIONS["clip_global_norm"](p, rng, Limits())
    c = next(a for s in child.body if s.op == "div" for a in s.args if isinstance(a, float))
    ws, _ = _group()
    gs = [10.0 * torch.ones_like(w) for w in ws]
    steps, _ = run_group_step(child, ws, gs, 1.0, 1, [()] * 3)
    norm = torch.sqrt(sum((s * s).sum() for s in steps))
    assert float(norm) == pytest.approx(c, rel=1e-5)
    small = [1e-4 * g for g in gs]  # below the threshold: unchanged
    steps, _ = run_group_step(child, ws, small, 1.0, 1, [()] * 3)
    for s, g in zip(steps, small):
        torch.testing.assert_close(s, g)


def test_sharpness_is_sam_and_happens_once():
    p = seeds.load_seed("sgd_momentum")
    rng = np.random.default_rng(0)
    child = REACH_MUTATIONS["sharpness"](p, rng, Limits())
    assert [s.op for s in child.body].count("grad_at") == 1
    assert passes_per_step(child) == 2 and "grad_at" in needs(child)
    at = [s.op for s in child.body].index("grad_at")
    assert all(i < at for i, s in enumerate(child.body) if "g" in s.args)  # g only perturbs
    assert "g" not in child.returns
    assert REACH_MUTATIONS["sharpness"](child, rng, Limits()) is None
    # the step is SGD with momentum on the gradient at w + rho g / |g|
    q = dsl.parse("def sam(w, g, lr, t):\n"
                  "    return lr * grad_at(0.05 * g / (global_norm(g) + 1e-12))\n")
    ws, curv = _group()
    gs = [c * w for c, w in zip(curv, ws)]
    steps, _ = run_group_step(q, ws, gs, 1.0, 1, [()] * 3, context=_context(ws, curv))
    norm = torch.sqrt(sum((g * g).sum() for g in gs))
    for s, c, w, g in zip(steps, curv, ws, gs):
        torch.testing.assert_close(s, c * (w + 0.05 * g / (norm + 1e-12)))


def test_factored_state_is_the_same_math_with_less_memory():
    adafactor_like = FACTORABLE
    rng = np.random.default_rng(0)
    shapes = Counter()
    for _ in range(20):
        child = REACH_MUTATIONS["factor_state"](adafactor_like, rng, Limits())
        assert child is not None and dsl.check(child).ok
        shapes[child.slot_shapes] += 1
        for a, b in zip(run_group(adafactor_like), run_group(child)):
            for x, y in zip(a, b):
                torch.testing.assert_close(x, y, rtol=0, atol=0)
    assert set(shapes) == {(("r", SlotShape.ROW),), (("c", SlotShape.COL),)}
    # a slot that varies along both axes cannot be factored
    assert REACH_MUTATIONS["factor_state"](seeds.load_seed("adamw"), rng, Limits()) is None


def test_drop_state_drops_a_factored_slot_with_its_shape():
    p = dsl.parse("def f(w, g, lr, t, r: row):\n"
                  "    r = interp(row_mean(g * g), r, 0.9)\n"
                  "    return lr * g / sqrt(r + 1e-8), r\n")
    child = MUTATIONS["drop_state"](p, np.random.default_rng(0), Limits())
    assert child.state == () and child.slot_shapes == ()
    dsl.ir.validate(child)


def test_fresh_ops_include_whole_model_ops_and_grad_at_is_rare():
    rng = np.random.default_rng(0)
    lion = seeds.load_seed("lion")
    drawn = Counter()
    for _ in range(1500):
        child = MUTATIONS["insert"](lion, rng, Limits())
        if child is not None:
            drawn.update(s.op for s in child.body)
    drawn -= Counter(s.op for s in lion.body)
    kinds = Counter()
    for op, n in drawn.items():
        kinds[OPS[op].kind] += n
    assert drawn["global_norm"] > 0 and drawn["global_sum"] > 0
    per_op = sum(n for op, n in drawn.items() if OPS[op].kind is OpKind.ELEMENTWISE) / sum(
        1 for op in OPS.values() if op.kind is OpKind.ELEMENTWISE)
    assert drawn["grad_at"] < 0.2 * per_op


def test_with_weight_zero_the_new_ops_are_never_drawn(monkeypatch):
    monkeypatch.setattr(mutation_defaults, "OP_DRAW_WEIGHTS",
                        {"global_sum": 0.0, "global_norm": 0.0, "grad_at": 0.0})
    rng = np.random.default_rng(0)
    lion = seeds.load_seed("lion")
    for _ in range(300):
        for kind in ("insert", "change_op"):
            child = MUTATIONS[kind](lion, rng, Limits())
            assert child is None or not {s.op for s in child.body} & {
                "global_sum", "global_norm", "grad_at"}


def test_rejections_name_the_new_checker_errors():
    from optforge.search.mutations import _reason

    slot = dsl.parse("def f(w, g, lr, t, m: row):\n    m = interp(g, m, 0.9)\n"
                     "    return lr * m, m\n")
    scalar = dsl.parse("def f(w, g, lr, t):\n    return lr * g * grad_at(lr)\n")
    assert _reason(dsl.check(slot).errors[0].message) == "factored slot varies"
    assert _reason(dsl.check(scalar).errors[0].message) == "grad_at of a scalar"
