"""Hashes and fingerprints of rules that read the context, call whole-model ops or grad_at,
or keep factored state (#16)."""

from __future__ import annotations

from dataclasses import replace

import torch
from optforge.dsl import hashing
from optforge.dsl.hashing import (
    canonical_hash,
    fingerprint,
    probe_trajectory,
    structural_hash,
)
from optforge.dsl.slots import SlotShape

from optforge import dsl

FACTORED = """def r(w, g, lr, t, vr{R}, m, beta=0.9):
    vr = interp(row_mean(g * g), vr, beta)
    m = interp(g, m, beta)
    return lr * m * rsqrt(vr + 1e-8), vr, m
"""


def test_slot_storage_changes_the_structural_hash_only():
    full, fact = (dsl.parse(FACTORED.format(R=r)) for r in ("", ": row"))
    assert fact.slot_shapes == (("vr", SlotShape.ROW),)
    assert structural_hash(full) != structural_hash(fact)
    assert canonical_hash(full) == canonical_hash(fact)
    assert fingerprint(full) == fingerprint(fact)
    # the storage of another slot is another rule
    other = replace(fact, slot_shapes=(("vr", SlotShape.SCALAR),))
    assert structural_hash(other) != structural_hash(fact)


def test_context_inputs_are_distinct_leaves():
    rules = [dsl.parse(f"def r(w, g, lr, t):\n    return lr * g * {x}\n")
             for x in ("loss", "hess", "rows", "cols", "numel", "t")]
    for h in (structural_hash, canonical_hash, fingerprint):
        assert len({h(p) for p in rules}) == len(rules), h.__name__


def test_whole_model_ops_are_not_their_per_tensor_namesakes():
    a = dsl.parse("def r(w, g, lr, t):\n    return lr * g / global_norm(g)\n")
    b = dsl.parse("def r(w, g, lr, t):\n    return lr * g / norm(g)\n")
    assert structural_hash(a) != structural_hash(b)
    assert canonical_hash(a) != canonical_hash(b)
    assert fingerprint(a) != fingerprint(b)


def test_sam_with_no_perturbation_behaves_as_sgd_on_the_probes():
    sam = dsl.parse("def sam(w, g, lr, t, rho=0.0):\n"
                    "    return lr * grad_at(rho * g / global_norm(g))\n")
    sgd = dsl.parse("def sgd(w, g, lr, t):\n    return lr * g\n")
    assert fingerprint(sam) == fingerprint(sgd)
    sam_on = dsl.parse("def sam(w, g, lr, t, rho=0.05):\n"
                       "    return lr * grad_at(rho * g / global_norm(g))\n")
    assert fingerprint(sam_on) != fingerprint(sgd)


def test_the_probe_context_is_the_quadratic():
    ws = [w.clone().requires_grad_() for w, _, _ in hashing._PROBES]
    cs = [c for _, c, _ in hashing._PROBES]
    ns = [n[0] for _, _, n in hashing._PROBES]
    ctx = hashing.probe_context(ws, cs, ns)
    grads = torch.autograd.grad(ctx.loss, ws, create_graph=True)
    es = [torch.full_like(w, 0.1) for w in ws]
    for w, c, n, gr, at in zip(ws, cs, ns, grads, ctx.grad_at(es)):
        torch.testing.assert_close(gr, c * w + n)
        torch.testing.assert_close(at, c * (w + 0.1) + n)
    # Hutchinson with ±1 vectors gives the exact diagonal of a diagonal Hessian
    z = dsl.context.rademacher([w.shape for w in ws], torch.Generator().manual_seed(0),
                               torch.float64, "cpu")
    for est, c in zip(dsl.context.hutchinson(grads, ws, z), ctx.hess):
        assert torch.equal(est, c)


def test_a_per_tensor_rule_has_the_same_trajectory_run_as_a_group():
    p = dsl.parse("def r(w, g, lr, t, m):\n    m = interp(g, m, 0.9)\n"
                  "    return lr * m / (rms(m) + 1e-8) * sqrt(max(1.0, rows / cols)), m\n")
    alone = probe_trajectory(p)
    grouped = hashing._group_trajectory(p, hashing.PROBE_STEPS)
    assert len(alone) == len(grouped)
    assert all(torch.equal(a, b) for a, b in zip(alone, grouped))


def test_hess_on_the_probes_is_the_curvature():
    newton = dsl.parse("def r(w, g, lr, t):\n    return g / hess\n")
    out = probe_trajectory(newton, steps=1)
    w0, c0, n0 = hashing._PROBES[0]
    torch.testing.assert_close(out[0], w0 - (c0 * w0 + n0[0]) / c0)
