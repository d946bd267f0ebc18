"""Every seed against its reference implementation, step by step.

For each seed, at its default hyperparameters and at a second, non-default setting, on the
reference's shapes (a random vector and random matrices: wide, and where the rule reads its
shape, square, tall and 3-D too; float64, 60 steps of random gradients whose scale varies
from step to step), both the reference interpreter and the exported optimizer must take the
same step as the reference at every step: relative error at most 1e-10 of the step's size.
Branches that random gradients rarely take are driven separately (MARS without its norm clip,
AdamP's projections on scale-invariant gradients, the LAMB/LARS guards at w = 0).
A seed that cannot pass this is not shipped (`test_seed_catalog.py` checks that every seed
has a reference here or in group_references.py).
"""

from __future__ import annotations

from functools import cache

import pytest
import torch
from optforge.dsl.export import optimizer_class
from optforge.seeds import load_seed, seed_info
from seed_references import (
    BY_SEED,
    REFERENCES,
    Plain,
    Reference,
    WithNewtonSchulz,
    muon_step,
    problem,
    remove_sqrt_guard,
    run_optimizer,
    zeropower_via_newtonschulz5,
)

from optforge import dsl

STEPS = 60
RTOL = 1e-10


@cache
def exported(seed: str):
    return optimizer_class(load_seed(seed), provenance=f"seed '{seed}'")


def hyper_for(ref: Reference, setting: str) -> dict[str, float]:
    hyper = dict(load_seed(ref.seed).hyper_defaults)
    if setting == "alt":
        assert set(ref.alt) == set(hyper), "the alternative setting must change every " \
                                           "hyperparameter"
        hyper.update(ref.alt)
    return hyper


def assert_same_steps(ours: list[torch.Tensor], ref: list[torch.Tensor], w0: torch.Tensor,
                      what: str, rtol: float = RTOL) -> None:
    """Step t of `ours` (w_t - w_{t-1}) equals the reference's within `rtol` of its size."""
    assert len(ours) == len(ref) >= 50
    prev_o = prev_r = w0
    for t, (o, r) in enumerate(zip(ours, ref), start=1):
        d_o, d_r = o - prev_o, r - prev_r
        assert torch.isfinite(d_r).all(), f"{what}: the reference diverged at step {t}"
        size = float(d_r.abs().max())
        torch.testing.assert_close(d_o, d_r, rtol=rtol, atol=rtol * size,
                                   msg=lambda m, t=t: f"{what}, step {t}: {m}")
        prev_o, prev_r = o, r
    torch.testing.assert_close(ours[-1], ref[-1], rtol=1e-9, atol=1e-12)


def check_seed(ref: Reference, hyper: dict[str, float], shape, seed: int, monkeypatch,
               zero_start: bool = False, grad_scale: float = 1.0) -> None:
    if ref.no_sqrt_guard:
        remove_sqrt_guard(monkeypatch)
    prob = problem(shape, STEPS, seed, zero_start, grad_scale)
    program = load_seed(ref.seed)
    reference = run_optimizer(lambda ps: ref.make(ps, ref.lr, hyper), prob.w0, prob.grads)
    interpreted = dsl.run_steps(program, prob.w0, prob.grads, ref.lr, hyper)
    cls = exported(ref.seed)
    export = run_optimizer(lambda ps: cls(ps, lr=ref.lr, **hyper), prob.w0, prob.grads)
    where = f"{ref.seed} {tuple(shape)} {hyper}"
    assert_same_steps(interpreted, reference, prob.w0, f"interpreter vs reference, {where}")
    assert_same_steps(export, reference, prob.w0, f"exported vs reference, {where}")


@pytest.mark.parametrize("setting", ["defaults", "alt"])
@pytest.mark.parametrize("ref", REFERENCES, ids=lambda r: r.seed)
def test_seed_matches_reference(ref: Reference, setting: str, monkeypatch):
    hyper = hyper_for(ref, setting)
    for i, shape in enumerate(ref.shapes):
        check_seed(ref, hyper, shape, seed=100 * i + (setting == "alt"), monkeypatch=monkeypatch)


@pytest.mark.parametrize("ref", REFERENCES, ids=lambda r: r.seed)
def test_seed_defaults_match_reference(ref: Reference):
    lr, hyper = ref.defaults()
    program = load_seed(ref.seed)
    assert program.hyper_defaults == hyper
    assert seed_info(ref.seed).lr == lr


@pytest.mark.parametrize("seed", ["lamb", "lars"])
@pytest.mark.parametrize("shape", [(23,), (6, 9)])
def test_trust_ratio_guard_on_a_zero_parameter(seed, shape, monkeypatch):
    """|w| = 0 at the start: the trust ratio must fall back to 1, as in the references."""
    ref = BY_SEED[seed]
    check_seed(ref, hyper_for(ref, "alt"), shape, seed=7, monkeypatch=monkeypatch,
               zero_start=True)


@pytest.mark.parametrize("setting", ["defaults", "alt"])
@pytest.mark.parametrize("shape", [(23,), (6, 9)])
def test_mars_without_the_norm_clip(setting, shape, monkeypatch):
    """Gradients small enough that |c| <= 1 at most steps: MARS's clip to norm 1 is off (at
    the usual scale it is on at every step)."""
    ref = BY_SEED["mars"]
    check_seed(ref, hyper_for(ref, setting), shape, seed=5, monkeypatch=monkeypatch,
               grad_scale=0.02)


def test_muon_defaults_are_torch_optim_muon():
    d = torch.optim.Muon([torch.nn.Parameter(torch.zeros(2, 2))]).defaults
    program = load_seed("muon")
    assert program.hyper_defaults == {"momentum": d["momentum"],
                                      "weight_decay": d["weight_decay"]}
    assert d["nesterov"] is True and d["adjust_lr_fn"] is None
    assert seed_info("muon").lr == d["lr"]


@pytest.mark.parametrize("shape", [(6, 9), (9, 9), (9, 6)])
def test_muon_against_torch_optim_muon(shape):
    """torch.optim.Muon as shipped runs Newton–Schulz in bfloat16, so it agrees with the
    float64 seed only to bfloat16 precision: steps differ by about 1.5% in norm (median), at
    most 5%. (Changing nesterov, momentum or weight decay in torch's makes it 20-60%.) Tall
    matrices too: both scale the step by sqrt(max(1, rows / cols))."""
    program = load_seed("muon")
    prob = problem(shape, STEPS, seed=11)
    lr = 0.02
    reference = run_optimizer(lambda ps: torch.optim.Muon(ps, lr=lr), prob.w0, prob.grads)
    ours = dsl.run_steps(program, prob.w0, prob.grads, lr)
    errors = []
    prev_o = prev_r = prob.w0
    for o, r in zip(ours, reference):
        d_o, d_r = o - prev_o, r - prev_r
        errors.append(float((d_o - d_r).norm() / d_r.norm()))
        prev_o, prev_r = o, r
    errors.sort()
    assert errors[len(errors) // 2] < 0.025 and errors[-1] < 0.05, errors


@pytest.mark.parametrize("setting", ["defaults", "alt"])
@pytest.mark.parametrize("shape", [(6, 9), (9, 9), (9, 6)])
def test_muon_is_torch_optim_muon_with_float64_newton_schulz(setting, shape):
    """torch.optim.Muon (adjust_lr_fn="original", its default) with only its Newton–Schulz
    replaced by the float64 one: the same steps as the seed, at 1e-10, on wide, square and
    tall matrices. (Its other option, "match_rms_adamw", scales by 0.2 * sqrt(max(rows,
    cols)) instead: a different rule, AdaMuon's scaling.)"""
    from torch.optim import _muon

    ref = BY_SEED["muon"]
    hyper = hyper_for(ref, setting)
    prob = problem(shape, STEPS, seed=13 + (setting == "alt"))

    def make(ps):
        opt = torch.optim.Muon(ps, lr=ref.lr, momentum=hyper["momentum"],
                               weight_decay=hyper["weight_decay"], adjust_lr_fn="original")
        return WithNewtonSchulz(opt, _muon, "_zeropower_via_newtonschulz")
    reference = run_optimizer(make, prob.w0, prob.grads)
    ours = dsl.run_steps(load_seed("muon"), prob.w0, prob.grads, ref.lr, hyper)
    assert_same_steps(ours, reference, prob.w0, f"muon vs torch.optim.Muon {shape}")


@pytest.mark.parametrize("shape", [(6, 9), (9, 6)])
def test_plain_muon_reference_is_keller_jordans(shape):
    """The plain reference itself: with torch's bfloat16 replaced by float64, torch.optim.Muon's
    Newton–Schulz equals Keller Jordan's (up to the eps placement), on wide and tall
    matrices."""
    from torch.optim._muon import _zeropower_via_newtonschulz

    g = torch.randn(*shape, dtype=torch.float64)
    ours = zeropower_via_newtonschulz5(g)
    theirs = _zeropower_via_newtonschulz(g, (3.4445, -4.7750, 2.0315), 5, 1e-7).double()
    assert float((ours - theirs).norm() / theirs.norm()) < 0.03  # bfloat16 inside torch's
    p = torch.nn.Parameter(torch.randn(*shape, dtype=torch.float64))
    p.grad = g
    Plain([p], 0.1, {"momentum": 0.9, "weight_decay": 0.0}, muon_step).step()


class Interpreted:
    """The reference interpreter as an optimizer of one parameter (for closed-loop tests)."""

    def __init__(self, params, program, lr, hyper):
        (self.param,) = params
        self.program, self.lr, self.hyper = program, lr, hyper
        self.state = dsl.init_state(program, self.param.detach())
        self.t = 0

    @torch.no_grad()
    def step(self):
        self.t += 1
        step, self.state = dsl.run_step(self.program, self.param.detach().clone(),
                                        self.param.grad, self.lr, self.t, self.state,
                                        self.hyper)
        self.param.sub_(step)


def scale_invariant_gradient(w: torch.Tensor, noise: torch.Tensor, t: int) -> torch.Tensor:
    """The gradient a normalisation layer gives, from `noise`: orthogonal to every row of w
    (t % 3 == 0), orthogonal to w as a whole but not to its rows (t % 3 == 1), or the noise
    itself."""
    m, h = w.reshape(len(w), -1), noise.reshape(len(w), -1)
    if t % 3 == 0:
        h = h - (h * m).sum(1, keepdim=True) / (m * m).sum(1, keepdim=True) * m
    elif t % 3 == 1:
        h = h - (h * m).sum() / (m * m).sum() * m
    return h.reshape(w.shape)


def closed_loop(opt_factory, w0, noise, record=None) -> list[torch.Tensor]:
    """`run_optimizer` with each step's gradient computed at the current parameter."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(w0.dtype)
    try:
        param = torch.nn.Parameter(w0.clone())
        opt = opt_factory([param])
        out = []
        for t, h in enumerate(noise, start=1):
            param.grad = scale_invariant_gradient(param.detach(), h, t)
            if record is not None:
                record.append((param.detach().clone(), param.grad.clone()))
            opt.step()
            out.append(param.detach().clone())
    finally:
        torch.set_default_dtype(previous)
    return out


def adamp_branch(w, g, delta, eps) -> str:
    """Which projection pytorch-optimizer's AdamP applies at (w, g)."""
    from pytorch_optimizer.optimizer.adamp import (
        channel_view,
        cosine_similarity_by_view,
        layer_view,
    )

    for view, name in ((channel_view, "channel"), (layer_view, "layer")):
        cos = cosine_similarity_by_view(g, w, eps, view)
        if cos.max() < delta / view(w).size(1) ** 0.5:
            return name
    return "none"


@pytest.mark.parametrize("setting", ["defaults", "alt"])
@pytest.mark.parametrize("shape", [(6, 9), (4, 3, 5)])
def test_adamp_projects_on_scale_invariant_gradients(setting, shape):
    """Gradients orthogonal to the weight's rows, or to the weight only as a whole: AdamP's
    channel-wise and layer-wise projections (and their weight-decay ratio) both fire, a third
    of the steps each, and the seed follows the reference through every branch."""
    ref = BY_SEED["adamp"]
    hyper = hyper_for(ref, setting)
    prob = problem(shape, STEPS, seed=21 + (setting == "alt"))
    record: list = []
    reference = closed_loop(lambda ps: ref.make(ps, ref.lr, hyper), prob.w0, prob.grads, record)
    branches = [adamp_branch(w, g, hyper["delta"], hyper["eps"]) for w, g in record]
    assert all(branches.count(b) >= STEPS // 4 for b in ("channel", "layer")), branches
    program = load_seed("adamp")
    interpreted = closed_loop(lambda ps: Interpreted(ps, program, ref.lr, hyper), prob.w0,
                              prob.grads)
    cls = exported("adamp")
    export = closed_loop(lambda ps: cls(ps, lr=ref.lr, **hyper), prob.w0, prob.grads)
    assert_same_steps(interpreted, reference, prob.w0, f"adamp interpreter {shape}")
    assert_same_steps(export, reference, prob.w0, f"adamp exported {shape}")
