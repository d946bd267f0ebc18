"""Probes and the duplicate caches for rules that read the model-level inputs: on the probe
quadratic the context is exact (its loss, its Hessian diagonal, its gradient at w + e), a
rule without context inputs is probed exactly as before, and the caches key on the
language's hashes (`dsl.hashing`), which tell storage from behaviour."""

import numpy as np
import pytest
import torch
from optforge.dsl.needs import needs
from optforge.search import probes
from optforge.search.caches import InMemoryCache
from optforge.search.individuals import Member
from optforge.search.mutations import mutate

from optforge import dsl, seeds


def old_probe(p):
    """The probe as it was before context inputs: `run_step` without a context."""
    start = probes._loss(probes._W0)
    moved = finite = False
    with torch.no_grad():
        for lr in probes.PROBE_LRS:
            w, state = probes._W0, dsl.init_state(p, probes._W0)
            ok = True
            for t in range(1, probes.PROBE_STEPS + 1):
                step, state = dsl.run_step(p, w, probes._CURVATURE * w, lr, t, state)
                w = w - step
                if not bool(torch.isfinite(w).all()):
                    ok = False
                    break
            if not ok:
                continue
            finite = True
            moved = moved or not torch.equal(w, probes._W0)
            if probes._loss(w) < start * 0.999:
                return None
    return ("probe: not finite" if not finite else
            "probe: constant" if not moved else "probe: does not descend")


def test_programs_without_context_are_probed_as_before():
    rng = np.random.default_rng(0)
    weights = {"insert": 2.0, "delete": 1.5, "change_op": 2.0, "change_arg": 2.0,
               "perturb_constant": 1.5}
    programs = [seeds.load_seed(n) for n in ("adamw", "lion", "sgd_momentum", "muon")]
    programs += [mutate(programs[i % 4], rng, weights).child for i in range(40)]
    outcomes = set()
    for p in programs:
        if needs(p):
            continue
        assert probes.probe(p) == old_probe(p), dsl.format_program(p)
        outcomes.add(probes.probe(p))
    assert None in outcomes and len(outcomes) >= 2


def test_the_quadratic_context_is_exact():
    w = probes._W0 * 0.5
    ctx = probes.quadratic_context(w)
    assert float(ctx.loss) == pytest.approx(probes._loss(w), rel=1e-15)
    torch.testing.assert_close(ctx.hess[0], probes._CURVATURE)
    e = torch.full_like(w, 0.1)
    torch.testing.assert_close(ctx.grad_at([e])[0], probes._CURVATURE * (w + e))


@pytest.mark.parametrize("source", [
    # SAM, Newton's step on the exact diagonal, a Polyak step, Muon's shape factor
    "def sam(w, g, lr, t):\n    return lr * grad_at(0.05 * g / (global_norm(g) + 1e-12))\n",
    "def newton(w, g, lr, t):\n    return 10 * lr * g / (abs(hess) + 1e-8)\n",
    "def polyak(w, g, lr, t):\n    return lr * loss * g / (global_norm(g) ** 2 + 1e-12)\n",
    "def shaped(w, g, lr, t):\n    return lr * g * sqrt(max(1, rows / cols)) / sqrt(numel)\n",
])
def test_rules_that_read_the_context_are_probed_on_the_quadratic(source):
    assert probes.probe(dsl.parse(source)) is None


def test_a_rule_reading_the_context_can_fail_its_probe():
    p = dsl.parse("def up(w, g, lr, t):\n    return -lr * loss * grad_at(0 * g)\n")
    assert probes.probe(p) == "probe: does not descend"


def _keys(p):
    return {"structural": lambda: dsl.structural_hash(p),
            "canonical": lambda: dsl.canonical_hash(p),
            "fingerprint": lambda: dsl.fingerprint(p)}


def test_the_caches_key_on_the_language_hashes():
    full = dsl.parse("def f(w, g, lr, t, r):\n"
                     "    r = interp(row_mean(g * g), r, 0.9)\n"
                     "    return lr * g / sqrt(r + 1e-8), r\n")
    factored = dsl.parse("def f(w, g, lr, t, r: row):\n"
                         "    r = interp(row_mean(g * g), r, 0.9)\n"
                         "    return lr * g / sqrt(r + 1e-8), r\n")
    sam = "def sam(w, g, lr, t):\n    return lr * grad_at({} * g / (global_norm(g) + 1e-12))\n"
    cache = InMemoryCache()
    for i, p in enumerate((full, dsl.parse(sam.format(0.05)))):
        cache.add(dsl.structural_hash(p), dsl.canonical_hash(p), dsl.fingerprint(p),
                  Member(i, 1.0))
    # the same math stored factored: a different program, the same behaviour
    assert dsl.structural_hash(factored) != dsl.structural_hash(full)
    kind, member = cache.lookup(_keys(factored))
    assert kind in ("canonical", "fingerprint") and member.program_id == 0
    # another perturbation radius is another behaviour
    assert cache.lookup(_keys(dsl.parse(sam.format(0.1)))) is None
    kind, member = cache.lookup(_keys(dsl.parse(sam.format(0.05))))
    assert (kind, member.program_id) == ("structural", 1)
