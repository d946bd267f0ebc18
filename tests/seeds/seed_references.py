"""The reference implementation of every seed, for step-by-step verification.

A `Reference` builds the reference optimizer for a list of parameters from the seed's own
hyperparameters (`make`), and states the reference's defaults in the seed's names
(`defaults`), so that a test can check the seed's defaults against the reference's.

References, in order of preference (as the seeds issue asks):
  1. torch.optim, where it has the optimizer;
  2. a well-known package used as a test-only dependency: pytorch-optimizer, lion-pytorch;
  3. the paper's equations (or the authors' code) written plainly below, one tensor at a time.
Where a package deviates from the paper in a way that matters, the seed follows the paper and
the deviation is written down in the seed's docstring and here.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import lion_pytorch
import pytorch_optimizer
import torch
from plain_references import (  # noqa: F401 (re-exported for the tests)
    Hyper,
    Plain,
    WithNewtonSchulz,
    _plain,
    addsign_step,
    lamb_step,
    lars_step,
    muon_step,
    powersign_step,
    zeropower_via_newtonschulz5,
)


@dataclass(frozen=True)
class Reference:
    seed: str
    make: Callable[[list[torch.Tensor], float, Hyper], object]  # -> has .step()
    defaults: Callable[[], tuple[float, Hyper]]  # (lr, hyperparameters) in the seed's names
    alt: Hyper  # non-default hyperparameters: every one must reach the reference correctly
    lr: float = 0.01  # the learning rate the test runs with
    shapes: tuple[tuple[int, ...], ...] = ((23,), (6, 9))
    no_sqrt_guard: bool = False  # remove pytorch-optimizer's 1e-15 under the square root
    note: str = ""


def _probe() -> list[torch.nn.Parameter]:
    return [torch.nn.Parameter(torch.zeros(2, 2))]


def _betas(h: Hyper, n: int = 2) -> tuple[float, ...]:
    return tuple(h[f"beta{i}"] for i in range(1, n + 1))


def _from_betas(d: dict, n: int = 2) -> Hyper:
    return {f"beta{i + 1}": float(b) for i, b in enumerate(d["betas"][:n])}


def _torch(cls, to_kwargs, from_defaults, **config):
    """A torch.optim (or package) reference: `to_kwargs(h)` maps the seed's hyperparameters
    to the reference's arguments; `from_defaults(d)` maps the reference's defaults back."""
    def make(params, lr, h):
        return cls(params, lr=lr, **config, **to_kwargs(h))

    def defaults():
        d = cls(_probe(), **config).defaults
        return float(d["lr"]), from_defaults(d)
    return make, defaults


def _lars_make(params, lr, h):
    """pytorch-optimizer's LARS adapts only tensors of 2 or more dimensions; the paper (and
    the seed) adapts every tensor, so vectors are checked against the paper's equations."""
    if all(p.dim() >= 2 for p in params):
        return pytorch_optimizer.LARS(params, lr=lr, momentum=h["momentum"],
                                      weight_decay=h["weight_decay"],
                                      trust_coefficient=h["trust_coefficient"], foreach=False)
    return Plain(params, lr, h, lars_step)


def _lars_defaults():
    d = pytorch_optimizer.LARS(_probe()).defaults
    return float(d["lr"]), {"momentum": d["momentum"], "weight_decay": d["weight_decay"],
                            "trust_coefficient": d["trust_coefficient"]}


def _came_make(params, lr, h):
    return pytorch_optimizer.CAME(params, lr=lr, betas=_betas(h, 3),
                                  clip_threshold=h["clip_threshold"], eps1=h["eps1"],
                                  eps2=h["eps2"], weight_decay=h["weight_decay"], foreach=False)


def _came_defaults():
    opt = pytorch_optimizer.CAME(_probe())  # clip_threshold is an attribute, not a default
    d = opt.defaults
    return float(d["lr"]), {**_from_betas(d, 3), "clip_threshold": opt.clip_threshold,
                            "eps1": d["eps1"], "eps2": d["eps2"],
                            "weight_decay": d["weight_decay"]}


def _adamuon_make(params, lr, h):
    """pytorch-optimizer's AdaMuon on a use_muon=True group, its Newton–Schulz in float64."""
    from pytorch_optimizer.optimizer.muon import adamuon

    opt = pytorch_optimizer.AdaMuon([{"params": params, "use_muon": True}], lr=lr,
                                    betas=_betas(h), eps=h["eps"],
                                    weight_decay=h["weight_decay"], foreach=False)
    return WithNewtonSchulz(opt, adamuon, "zero_power_via_newton_schulz_5")


def _adamuon_defaults():
    group = pytorch_optimizer.AdaMuon([{"params": _probe(), "use_muon": True}]).param_groups[0]
    return float(group["lr"]), {**_from_betas(group), "eps": group["eps"],
                                "weight_decay": group["weight_decay"]}


def _adafactor_eps1(d) -> float:
    # torch resolves eps1=None to the machine epsilon of the parameter's dtype; the tests
    # run in float64, and the seed's default is float64's
    return d["eps"][0] if d["eps"][0] is not None else torch.finfo(torch.float64).eps


po = pytorch_optimizer

REFERENCES: tuple[Reference, ...] = (
    Reference("sgd", *_torch(torch.optim.SGD, lambda h: {}, lambda d: {}, foreach=False),
              alt={}),
    Reference(
        "sgd_momentum",
        lambda ps, lr, h: torch.optim.SGD(ps, lr=lr, momentum=h["momentum"], foreach=False),
        lambda: (float(torch.optim.SGD(_probe(), momentum=0.9).defaults["lr"]),
                 {"momentum": 0.9}),
        alt={"momentum": 0.5}, note="torch's default momentum is 0; the seed is momentum=0.9"),
    Reference(
        "nesterov",
        lambda ps, lr, h: torch.optim.SGD(ps, lr=lr, momentum=h["momentum"], nesterov=True,
                                          foreach=False),
        lambda: (float(torch.optim.SGD(_probe(), momentum=0.9, nesterov=True).defaults["lr"]),
                 {"momentum": 0.9}),
        alt={"momentum": 0.5}),
    Reference("adagrad", *_torch(torch.optim.Adagrad, lambda h: {"eps": h["eps"]},
                                 lambda d: {"eps": d["eps"]}, foreach=False),
              alt={"eps": 0.1}),
    Reference("rmsprop", *_torch(torch.optim.RMSprop,
                                 lambda h: {"alpha": h["alpha"], "eps": h["eps"]},
                                 lambda d: {"alpha": d["alpha"], "eps": d["eps"]},
                                 foreach=False),
              alt={"alpha": 0.9, "eps": 0.01}),
    Reference("rmsprop_centered", *_torch(torch.optim.RMSprop,
                                          lambda h: {"alpha": h["alpha"], "eps": h["eps"]},
                                          lambda d: {"alpha": d["alpha"], "eps": d["eps"]},
                                          centered=True, foreach=False),
              alt={"alpha": 0.9, "eps": 0.01}),
    Reference("adadelta", *_torch(torch.optim.Adadelta,
                                  lambda h: {"rho": h["rho"], "eps": h["eps"]},
                                  lambda d: {"rho": d["rho"], "eps": d["eps"]}, foreach=False),
              alt={"rho": 0.5, "eps": 0.01}, lr=1.0),
    Reference("adam", *_torch(torch.optim.Adam,
                              lambda h: {"betas": _betas(h), "eps": h["eps"]},
                              lambda d: {**_from_betas(d), "eps": d["eps"]}, foreach=False),
              alt={"beta1": 0.8, "beta2": 0.95, "eps": 0.01}),
    Reference("adamw", *_torch(torch.optim.AdamW,
                               lambda h: {"betas": _betas(h), "eps": h["eps"],
                                          "weight_decay": h["weight_decay"]},
                               lambda d: {**_from_betas(d), "eps": d["eps"],
                                          "weight_decay": d["weight_decay"]}, foreach=False),
              alt={"beta1": 0.8, "beta2": 0.95, "eps": 0.01, "weight_decay": 0.5}),
    Reference("amsgrad", *_torch(torch.optim.Adam,
                                 lambda h: {"betas": _betas(h), "eps": h["eps"]},
                                 lambda d: {**_from_betas(d), "eps": d["eps"]},
                                 amsgrad=True, foreach=False),
              alt={"beta1": 0.8, "beta2": 0.95, "eps": 0.01}),
    Reference("adamax", *_torch(torch.optim.Adamax,
                                lambda h: {"betas": _betas(h), "eps": h["eps"]},
                                lambda d: {**_from_betas(d), "eps": d["eps"]}, foreach=False),
              alt={"beta1": 0.8, "beta2": 0.95, "eps": 0.01}),
    Reference("nadam", *_torch(torch.optim.NAdam,
                               lambda h: {"betas": _betas(h), "eps": h["eps"],
                                          "momentum_decay": h["momentum_decay"]},
                               lambda d: {**_from_betas(d), "eps": d["eps"],
                                          "momentum_decay": d["momentum_decay"]},
                               foreach=False),
              alt={"beta1": 0.8, "beta2": 0.95, "eps": 0.01, "momentum_decay": 0.05}),
    Reference("radam", *_torch(torch.optim.RAdam,
                               lambda h: {"betas": _betas(h), "eps": h["eps"]},
                               lambda d: {**_from_betas(d), "eps": d["eps"]}, foreach=False),
              alt={"beta1": 0.8, "beta2": 0.95, "eps": 0.01}),
    Reference("adafactor", *_torch(torch.optim.Adafactor,
                                   lambda h: {"beta2_decay": h["beta2_decay"],
                                              "eps": (h["eps1"], h["eps2"]), "d": h["d"],
                                              "weight_decay": h["weight_decay"]},
                                   lambda d: {"beta2_decay": d["beta2_decay"],
                                              "eps1": _adafactor_eps1(d), "eps2": d["eps"][1],
                                              "d": d["d"], "weight_decay": d["weight_decay"]},
                                   foreach=False),
              alt={"beta2_decay": -0.5, "eps1": 1e-3, "eps2": 0.1, "d": 1.5,
                   "weight_decay": 0.1},
              shapes=((23,), (6, 9), (9, 6)),
              note="factored on 2-D tensors, unfactored on vectors, as torch"),
    Reference("adabelief", *_torch(po.AdaBelief,
                                   lambda h: {"betas": _betas(h), "eps": h["eps"]},
                                   lambda d: {**_from_betas(d), "eps": d["eps"]},
                                   foreach=False),
              alt={"beta1": 0.8, "beta2": 0.95, "eps": 0.01}),
    Reference("adabound", *_torch(po.AdaBound,
                                  lambda h: {"betas": _betas(h), "eps": h["eps"],
                                             "final_lr": h["final_lr"], "gamma": h["gamma"]},
                                  lambda d: {**_from_betas(d), "eps": d["eps"],
                                             "final_lr": d["final_lr"], "gamma": d["gamma"]},
                                  foreach=False),
              alt={"beta1": 0.8, "beta2": 0.95, "eps": 0.01, "final_lr": 0.02, "gamma": 0.1},
              no_sqrt_guard=True),
    Reference("diffgrad", *_torch(po.DiffGrad,
                                  lambda h: {"betas": _betas(h), "eps": h["eps"]},
                                  lambda d: {**_from_betas(d), "eps": d["eps"]},
                                  foreach=False),
              alt={"beta1": 0.8, "beta2": 0.95, "eps": 0.01}, no_sqrt_guard=True),
    Reference("laprop", *_torch(po.LaProp,
                                lambda h: {"betas": _betas(h), "eps": h["eps"]},
                                lambda d: {**_from_betas(d), "eps": d["eps"]}, foreach=False),
              alt={"beta1": 0.8, "beta2": 0.95, "eps": 0.01}, no_sqrt_guard=True),
    Reference("yogi", *_torch(po.Yogi,
                              lambda h: {"betas": _betas(h), "eps": h["eps"],
                                         "initial_accumulator": h["initial_accumulator"]},
                              lambda d: {**_from_betas(d), "eps": d["eps"],
                                         "initial_accumulator": d["initial_accumulator"]},
                              foreach=False),
              alt={"beta1": 0.8, "beta2": 0.95, "eps": 0.01, "initial_accumulator": 0.3}),
    Reference("adan", *_torch(po.Adan,
                              lambda h: {"betas": _betas(h, 3), "eps": h["eps"],
                                         "weight_decay": h["weight_decay"]},
                              lambda d: {**_from_betas(d, 3), "eps": d["eps"],
                                         "weight_decay": d["weight_decay"]}, foreach=False),
              alt={"beta1": 0.8, "beta2": 0.7, "beta3": 0.95, "eps": 0.01,
                   "weight_decay": 0.5}),
    Reference("adopt", *_torch(po.ADOPT,
                               lambda h: {"betas": _betas(h), "eps": h["eps"]},
                               lambda d: {**_from_betas(d), "eps": d["eps"]}, foreach=False),
              alt={"beta1": 0.8, "beta2": 0.95, "eps": 0.5},
              note="clip_lambda = t ** 0.25, the package's (and the official code's) default"),
    Reference("ademamix", *_torch(po.AdEMAMix,
                                  lambda h: {"betas": _betas(h, 3), "alpha": h["alpha"],
                                             "eps": h["eps"], "weight_decay": h["weight_decay"]},
                                  lambda d: {**_from_betas(d, 3), "alpha": d["alpha"],
                                             "eps": d["eps"], "weight_decay": d["weight_decay"]},
                                  weight_decouple=True, foreach=False),
              alt={"beta1": 0.8, "beta2": 0.95, "beta3": 0.99, "alpha": 2.0, "eps": 0.01,
                   "weight_decay": 0.5},
              note="weight_decouple=True: the paper's decoupled decay (the package's default "
                   "is L2, equal at the default weight_decay=0)"),
    Reference("novograd", *_torch(po.NovoGrad,
                                  lambda h: {"betas": _betas(h), "eps": h["eps"],
                                             "weight_decay": h["weight_decay"]},
                                  lambda d: {**_from_betas(d), "eps": d["eps"],
                                             "weight_decay": d["weight_decay"]},
                                  foreach=False),
              alt={"beta1": 0.8, "beta2": 0.9, "eps": 0.01, "weight_decay": 0.5}),
    Reference("lion", *_torch(lion_pytorch.Lion,
                              lambda h: {"betas": _betas(h),
                                         "weight_decay": h["weight_decay"]},
                              lambda d: {**_from_betas(d), "weight_decay": d["weight_decay"]}),
              alt={"beta1": 0.5, "beta2": 0.9, "weight_decay": 0.5}),
    Reference("tiger", *_torch(po.Tiger,
                               lambda h: {"beta": h["beta"], "weight_decay": h["weight_decay"]},
                               lambda d: {"beta": d["beta"], "weight_decay": d["weight_decay"]},
                               foreach=False),
              alt={"beta": 0.5, "weight_decay": 0.5}),
    Reference("signsgd", *_torch(po.SignSGD, lambda h: {}, lambda d: {}, momentum=0.0,
                                 foreach=False),
              alt={}),
    Reference("signum", *_torch(po.SignSGD, lambda h: {"momentum": h["momentum"]},
                                lambda d: {"momentum": d["momentum"]}, foreach=False),
              alt={"momentum": 0.5}),
    Reference("powersign", *_plain(powersign_step, 0.1, {"beta": 0.9, "base": math.e}),
              alt={"beta": 0.5, "base": 3.0}),
    Reference("addsign", *_plain(addsign_step, 0.1, {"beta": 0.9, "alpha": 1.0}),
              alt={"beta": 0.5, "alpha": 2.0}),
    Reference("lamb", *_plain(lamb_step, 1e-3, {"beta1": 0.9, "beta2": 0.999, "eps": 1e-6,
                                                "weight_decay": 0.01}),
              alt={"beta1": 0.8, "beta2": 0.95, "eps": 0.01, "weight_decay": 0.5}),
    Reference("lars", _lars_make, _lars_defaults,
              alt={"momentum": 0.5, "weight_decay": 0.5, "trust_coefficient": 0.3}),
    Reference("mars", *_torch(po.MARS,
                              lambda h: {"betas": _betas(h), "gamma": h["gamma"], "eps": h["eps"],
                                         "weight_decay": h["weight_decay"]},
                              lambda d: {**_from_betas(d), "gamma": d["gamma"], "eps": d["eps"],
                                         "weight_decay": d["weight_decay"]},
                              mars_type="adamw", optimize_1d=True, foreach=False),
              alt={"beta1": 0.8, "beta2": 0.95, "gamma": 0.1, "eps": 0.01, "weight_decay": 0.5},
              no_sqrt_guard=True,
              note="optimize_1d=True: MARS on vectors too (the package's default is AdamW there)"),
    Reference("muon", *_plain(muon_step, 1e-3, {"momentum": 0.95, "weight_decay": 0.1}),
              alt={"momentum": 0.5, "weight_decay": 0.5},
              shapes=((23,), (6, 9), (9, 9), (9, 6)),
              note="defaults checked against torch.optim.Muon separately"),
    Reference("adamp", *_torch(po.AdamP,
                               lambda h: {"betas": _betas(h), "delta": h["delta"],
                                          "wd_ratio": h["wd_ratio"], "eps": h["eps"],
                                          "weight_decay": h["weight_decay"]},
                               lambda d: {**_from_betas(d), "delta": d["delta"],
                                          "wd_ratio": d["wd_ratio"], "eps": d["eps"],
                                          "weight_decay": d["weight_decay"]}, foreach=False),
              alt={"beta1": 0.8, "beta2": 0.95, "delta": 1.0, "wd_ratio": 0.5, "eps": 0.01,
                   "weight_decay": 0.5},
              shapes=((23,), (6, 9), (9, 6), (4, 3, 5)),
              note="projections on scale-invariant gradients are checked separately"),
    Reference("came", _came_make, _came_defaults,
              alt={"beta1": 0.8, "beta2": 0.95, "beta3": 0.99, "clip_threshold": 0.5,
                   "eps1": 1e-3, "eps2": 1e-3, "weight_decay": 0.5},
              lr=1e-3, shapes=((23,), (6, 9), (9, 6)),
              note="factored on 2-D tensors, unfactored on vectors, as the package"),
    Reference("adamuon", _adamuon_make, _adamuon_defaults,
              alt={"beta1": 0.8, "beta2": 0.9, "eps": 1e-3, "weight_decay": 0.5},
              shapes=((6, 9), (9, 9), (9, 6), (4, 3, 5)),
              note="matrices only: the package refuses vectors in a use_muon group"),
)

BY_SEED: dict[str, Reference] = {r.seed: r for r in REFERENCES}
assert len(BY_SEED) == len(REFERENCES), "two references for one seed"


def remove_sqrt_guard(monkeypatch) -> None:
    """pytorch-optimizer adds 1e-15 under the square root of the second moment
    (BaseOptimizer.apply_ams_bound's exp_avg_sq_eps); the authors' code of AdaBound, diffGrad
    and LaProp does not, and neither do the seeds. Remove it for the duration of a test."""
    from pytorch_optimizer.base.optimizer import BaseOptimizer

    original = BaseOptimizer.__dict__["apply_ams_bound"].__func__

    def without_guard(ams_bound, exp_avg_sq, max_exp_avg_sq, eps, exp_avg_sq_eps=1e-15):
        return original(ams_bound, exp_avg_sq, max_exp_avg_sq, eps, 0.0)

    monkeypatch.setattr(BaseOptimizer, "apply_ams_bound", staticmethod(without_guard))


@dataclass(frozen=True)
class Problem:
    """A parameter and a sequence of random gradients (float64): the gradients' scale changes
    from step to step (a factor e^N(0,1)), so adaptive methods see varied magnitudes."""

    w0: torch.Tensor
    grads: list[torch.Tensor] = field(default_factory=list)


def problem(shape: tuple[int, ...], steps: int, seed: int, zero_start: bool = False,
            grad_scale: float = 1.0) -> Problem:
    gen = torch.Generator().manual_seed(seed)
    w0 = torch.randn(shape, generator=gen, dtype=torch.float64)
    if zero_start:
        w0 = torch.zeros_like(w0)
    grads = []
    for _ in range(steps):
        scale = math.exp(float(torch.randn((), generator=gen, dtype=torch.float64)))
        grads.append(grad_scale * scale * torch.randn(shape, generator=gen, dtype=torch.float64))
    return Problem(w0, grads)


def run_optimizer(opt_factory, w0: torch.Tensor, grads) -> list[torch.Tensor]:
    """The parameter after every step of an optimizer built by `opt_factory([param])`.

    Runs with the parameter's dtype as torch's default dtype: torch.optim keeps scalar state
    in the default dtype (NAdam's running product of momentum coefficients is float32
    otherwise, which shows in float64 runs at 1e-8)."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(w0.dtype)
    try:
        param = torch.nn.Parameter(w0.clone())
        opt = opt_factory([param])
        out = []
        for g in grads:
            param.grad = g.clone()  # some references modify the gradient in place
            opt.step()
            out.append(param.detach().clone())
    finally:
        torch.set_default_dtype(previous)
    return out
