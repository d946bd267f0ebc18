"""The references of the seeds that read the whole group or the model (issue #16).

These seeds read what a single tensor's gradient does not give: the loss (AEGD), a Hutchinson
estimate of the Hessian diagonal (AdaHessian, Sophia-H), a second gradient at a perturbed
point (SAM), sums and norms over every parameter of the group (D-Adaptation Adam, Prodigy,
ZClip). So they are verified on a real problem instead of a stream of random gradients: a
float64 model of three parameter tensors (a (6, 9) matrix, a (23,) vector, a (3, 2, 2)
kernel) with a minibatch loss, on a fixed sequence of minibatches (step t always sees batch
t, so a closure is deterministic per step).

A `GroupReference` runs the reference optimizer on that problem (`run(problem, lr, hyper,
steps)` -> the parameters after every step) from the seed's own hyperparameters, and states
the reference's defaults in the seed's names (`defaults`). Where the reference draws its
Hutchinson vectors its own way, it is handed the Hessian estimate of the same Rademacher
vectors the exported optimizer draws: `dsl.context.rademacher` from a generator seeded with
`HESSIAN_SEED`, once per step, parameters in order.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import pytorch_optimizer
import torch
from optforge.dsl.context import hutchinson, rademacher
from pytorch_optimizer.optimizer import sam as sam_module

Hyper = dict[str, float]
Trajectory = list[list[torch.Tensor]]  # the parameters after every step

SHAPES: tuple[tuple[int, ...], ...] = ((6, 9), (23,), (3, 2, 2))
BATCH = 8
HESSIAN_SEED = 0  # the exported optimizers' default `hessian_seed`


# ---- the problem ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Problem:
    """A small float64 model: tanh(x A^T) through the kernel K (as a 6 x 2 map) fitted to y,
    plus a softplus term and a quartic one in the vector b. The loss is positive (AEGD needs
    loss + c > 0) and its curvature varies with the parameters. The targets' scale changes
    from batch to batch, so the gradient norm has spikes (ZClip clips some of them)."""

    w0: tuple[torch.Tensor, ...]
    batches: tuple[tuple[torch.Tensor, ...], ...]  # batch t - 1 for step t

    def loss(self, params: Sequence[torch.Tensor], t: int) -> torch.Tensor:
        x, y, u, c = self.batches[t - 1]
        a, b, k = params
        fit = ((torch.tanh(x @ a.T) @ k.reshape(6, 2) - y) ** 2).mean()
        return fit + torch.nn.functional.softplus(u @ b - c).mean() + 0.01 * (b ** 4).sum()

    def grads(self, params: Sequence[torch.Tensor], t: int,
              create_graph: bool = False) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """(loss, gradients) at `params` (tensors that require grad) on batch t."""
        loss = self.loss(params, t)
        return loss, torch.autograd.grad(loss, list(params), create_graph=create_graph)

    def grads_at(self, ws: Sequence[torch.Tensor], t: int) -> list[torch.Tensor]:
        """The gradients at the point `ws` (plain tensors) on batch t."""
        leaves = [w.detach().clone().requires_grad_() for w in ws]
        return [g.detach() for g in self.grads(leaves, t)[1]]


def make_problem(steps: int, seed: int) -> Problem:
    gen = torch.Generator().manual_seed(seed)

    def randn(*shape):
        return torch.randn(shape, generator=gen, dtype=torch.float64)

    w0 = tuple(0.5 * randn(*s) for s in SHAPES)
    batches = []
    for _ in range(steps):
        scale = math.exp(0.7 * float(randn()))
        batches.append((randn(BATCH, 9), scale * randn(BATCH, 2), randn(BATCH, 23),
                        randn(BATCH)))
    return Problem(w0, tuple(batches))


def leaves(problem: Problem) -> list[torch.nn.Parameter]:
    return [torch.nn.Parameter(w.clone()) for w in problem.w0]


def snapshot(params: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    return [p.detach().clone() for p in params]


@contextmanager
def float64_default():
    """torch's default dtype float64 for the duration: pytorch-optimizer keeps its group
    sums in `torch.tensor([0.0])`, float32 otherwise."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


@contextmanager
def patched(module, name: str, value):
    old = getattr(module, name)
    setattr(module, name, value)
    try:
        yield
    finally:
        setattr(module, name, old)


def signature_defaults(fn) -> dict[str, object]:
    return {k: p.default for k, p in inspect.signature(fn).parameters.items()
            if p.default is not inspect.Parameter.empty}


# ---- the references ---------------------------------------------------------------------------

@dataclass(frozen=True)
class GroupReference:
    seed: str
    run: Callable[[Problem, float, Hyper, int], Trajectory]
    defaults: Callable[[], tuple[float, Hyper]]  # (lr, hyperparameters) in the seed's names
    alt: Hyper  # non-default hyperparameters: every one must reach the reference correctly
    lr: float  # the learning rate the test runs with
    note: str = ""


def _loop_with_grads(problem: Problem, opt, params, steps: int) -> Trajectory:
    """The usual protocol: gradients on batch t in p.grad, then opt.step()."""
    out = []
    with float64_default():
        for t in range(1, steps + 1):
            for p, g in zip(params, problem.grads(params, t)[1]):
                p.grad = g.detach().clone()
            opt.step()
            out.append(snapshot(params))
    return out


def _global_norm_sq_float64(param_groups, device=None, *, weight_adaptive=False):
    """pytorch_optimizer's get_global_gradient_norm (the squared norm over every group)
    without its cast to float32."""
    grads = [p.grad * (p.abs() if weight_adaptive and g.get("adaptive", False) else 1.0)
             for g in param_groups for p in g["params"] if p.grad is not None]
    return torch.stack([torch.linalg.vector_norm(x) for x in grads]).square().sum().reshape(1)


def run_sam(problem: Problem, lr: float, h: Hyper, steps: int) -> Trajectory:
    """pytorch_optimizer.SAM over torch.optim.SGD, the norm in float64; the closure protocol
    of its docstring (gradients at w first, then step(closure))."""
    params = leaves(problem)
    opt = pytorch_optimizer.SAM(params, torch.optim.SGD, rho=h["rho"],
                                perturb_eps=h["perturb_eps"], lr=lr, momentum=h["momentum"],
                                weight_decay=h["weight_decay"])
    out = []
    with patched(sam_module, "get_global_gradient_norm", _global_norm_sq_float64):
        for t in range(1, steps + 1):
            def closure(t=t):
                opt.zero_grad()
                loss = problem.loss(params, t)
                loss.backward()
                return loss
            closure()
            opt.step(closure)
            out.append(snapshot(params))
    return out


def sam_defaults() -> tuple[float, Hyper]:
    sam, sgd = signature_defaults(pytorch_optimizer.SAM), signature_defaults(torch.optim.SGD)
    assert sam["adaptive"] is False and sam["use_gc"] is False
    assert sgd["dampening"] == 0 and sgd["nesterov"] is False
    return float(sgd["lr"]), {"rho": sam["rho"], "momentum": float(sgd["momentum"]),
                              "weight_decay": float(sgd["weight_decay"]),
                              "perturb_eps": sam["perturb_eps"]}


def run_with_hessian(make, refresh: Callable[[Hyper, int], bool]):
    """A reference that takes external Hessian estimates (`step(hessian=...)`): on every step
    the estimate z * (H z) of this step's Rademacher vectors is computed (so that the draws
    follow the exported optimizer's), and handed over on the steps where `refresh`."""
    def run(problem: Problem, lr: float, h: Hyper, steps: int) -> Trajectory:
        params = leaves(problem)
        opt = make(params, lr, h)
        gen = torch.Generator().manual_seed(HESSIAN_SEED)
        out = []
        for t in range(1, steps + 1):
            _, grads = problem.grads(params, t, create_graph=True)
            z = rademacher([p.shape for p in params], gen, torch.float64, "cpu")
            hess = [x.detach() for x in hutchinson(grads, params, z)]
            for p, g in zip(params, grads):
                p.grad = g.detach().clone()
            opt.step(hessian=hess) if refresh(h, t) else opt.step()
            out.append(snapshot(params))
        return out
    return run


def adahessian_defaults() -> tuple[float, Hyper]:
    d = signature_defaults(pytorch_optimizer.AdaHessian)
    assert d["weight_decouple"] is True and d["fixed_decay"] is False
    assert d["update_period"] == 1 and d["num_samples"] == 1
    return d["lr"], {"beta1": d["betas"][0], "beta2": d["betas"][1],
                     "weight_decay": d["weight_decay"], "hessian_power": d["hessian_power"],
                     "eps": d["eps"]}


def sophia_defaults() -> tuple[float, Hyper]:
    d = signature_defaults(pytorch_optimizer.SophiaH)
    assert d["weight_decouple"] is True and d["fixed_decay"] is False
    assert d["num_samples"] == 1
    return d["lr"], {"beta1": d["betas"][0], "beta2": d["betas"][1],
                     "weight_decay": d["weight_decay"], "rho": d["p"], "eps": d["eps"],
                     "update_period": float(d["update_period"])}


class AEGD(torch.optim.Optimizer):
    """AEGD as the authors' code (github.com/txping/AEGD, aegd.py), rewritten: the energy
    r starts at sqrt(f(w_0) + c); L2 weight decay is added to the scaled gradient."""

    def __init__(self, params, lr=0.1, c=1.0, weight_decay=0.0):
        super().__init__(params, {"lr": lr, "c": c, "weight_decay": weight_decay})

    @torch.no_grad()
    def step(self, closure):
        with torch.enable_grad():
            loss = closure()
        for group in self.param_groups:
            sqrtloss = torch.sqrt(loss.detach() + group["c"])
            for p in group["params"]:
                dg = p.grad / (2 * sqrtloss) + group["weight_decay"] * p
                state = self.state[p]
                if not state:
                    state["r"] = sqrtloss * torch.ones_like(p)
                r = state["r"]
                r.div_(1 + 2 * group["lr"] * dg ** 2)
                p.addcmul_(r, dg, value=-2 * group["lr"])
        return loss


def run_aegd(problem: Problem, lr: float, h: Hyper, steps: int) -> Trajectory:
    params = leaves(problem)
    opt = AEGD(params, lr=lr, c=h["c"], weight_decay=h["weight_decay"])
    out = []
    for t in range(1, steps + 1):
        def closure(t=t):
            opt.zero_grad()
            loss = problem.loss(params, t)
            loss.backward()
            return loss
        opt.step(closure)
        out.append(snapshot(params))
    return out


def run_dadapt_adam(problem: Problem, lr: float, h: Hyper, steps: int) -> Trajectory:
    params = leaves(problem)
    opt = pytorch_optimizer.DAdaptAdam(params, lr=lr, betas=(h["beta1"], h["beta2"]),
                                       d0=h["d0"], weight_decay=h["weight_decay"], eps=h["eps"])
    return _loop_with_grads(problem, opt, params, steps)


def dadapt_adam_defaults() -> tuple[float, Hyper]:
    d = signature_defaults(pytorch_optimizer.DAdaptAdam)
    assert d["growth_rate"] == math.inf and d["bias_correction"] is False
    assert d["weight_decouple"] is False
    return d["lr"], {"beta1": d["betas"][0], "beta2": d["betas"][1], "d0": d["d0"],
                     "weight_decay": d["weight_decay"], "eps": d["eps"]}


def run_prodigy(problem: Problem, lr: float, h: Hyper, steps: int) -> Trajectory:
    params = leaves(problem)
    opt = pytorch_optimizer.Prodigy(params, lr=lr, betas=(h["beta1"], h["beta2"]),
                                    beta3=h["beta3"], d0=h["d0"], d_coef=h["d_coef"],
                                    weight_decay=h["weight_decay"], eps=h["eps"])
    return _loop_with_grads(problem, opt, params, steps)


def prodigy_defaults() -> tuple[float, Hyper]:
    d = signature_defaults(pytorch_optimizer.Prodigy)
    assert d["growth_rate"] == math.inf and d["bias_correction"] is False
    assert d["weight_decouple"] is True and d["safeguard_warmup"] is False
    assert d["beta3"] is None  # sqrt(beta2)
    return d["lr"], {"beta1": d["betas"][0], "beta2": d["betas"][1],
                     "beta3": math.sqrt(d["betas"][1]), "d0": d["d0"], "d_coef": d["d_coef"],
                     "weight_decay": d["weight_decay"], "eps": d["eps"]}


class ZClip:
    """ZClip's clipping, "percentile" mode (the norm clipped at mean + z_thresh * std),
    written as the paper's equations and the authors' code: the first `warmup_steps` norms
    are collected unclipped and give the initial mean and (population) variance; then each
    clipped norm updates EMAs of the mean and of the squared deviation from the new mean."""

    def __init__(self, alpha=0.97, z_thresh=2.5, warmup_steps=25):
        self.alpha, self.z_thresh, self.warmup_steps = alpha, z_thresh, warmup_steps
        self.buffer: list[float] = []
        self.mean = self.var = None
        self.clipped = 0  # how many steps were clipped

    def __call__(self, grads: Sequence[torch.Tensor]) -> None:
        norm = float(torch.linalg.vector_norm(
            torch.stack([torch.linalg.vector_norm(g) for g in grads])))
        if self.mean is None:
            self.buffer.append(norm)
            if len(self.buffer) >= self.warmup_steps:
                self.mean = sum(self.buffer) / len(self.buffer)
                self.var = sum((x - self.mean) ** 2 for x in self.buffer) / len(self.buffer)
            return
        limit = self.mean + self.z_thresh * math.sqrt(self.var)
        if norm > limit:
            self.clipped += 1
            for g in grads:
                g.mul_(limit / norm)
            norm = limit
        self.mean = self.alpha * self.mean + (1 - self.alpha) * norm
        self.var = self.alpha * self.var + (1 - self.alpha) * (norm - self.mean) ** 2


def run_zclip(problem: Problem, lr: float, h: Hyper, steps: int) -> Trajectory:
    params = leaves(problem)
    opt = torch.optim.Adam(params, lr=lr, betas=(h["beta1"], h["beta2"]), eps=h["eps"])
    clip = ZClip(h["alpha"], h["z_thresh"], int(h["warmup"]))
    out = []
    with float64_default():
        for t in range(1, steps + 1):
            grads = [g.detach().clone() for g in problem.grads(params, t)[1]]
            clip(grads)
            for p, g in zip(params, grads):
                p.grad = g
            opt.step()
            out.append(snapshot(params))
    assert clip.clipped > 0, "the problem must make ZClip clip some steps"
    return out


def zclip_defaults() -> tuple[float, Hyper]:
    adam, z = signature_defaults(torch.optim.Adam), signature_defaults(ZClip)
    return adam["lr"], {"beta1": adam["betas"][0], "beta2": adam["betas"][1],
                        "eps": adam["eps"], "alpha": z["alpha"], "z_thresh": z["z_thresh"],
                        "warmup": float(z["warmup_steps"])}


def _sophia(params, lr, h):
    return pytorch_optimizer.SophiaH(params, lr=lr, betas=(h["beta1"], h["beta2"]),
                                     weight_decay=h["weight_decay"], p=h["rho"], eps=h["eps"],
                                     update_period=int(h["update_period"]))


def _adahessian(params, lr, h):
    return pytorch_optimizer.AdaHessian(params, lr=lr, betas=(h["beta1"], h["beta2"]),
                                        weight_decay=h["weight_decay"],
                                        hessian_power=h["hessian_power"], eps=h["eps"])


GROUP_REFERENCES: dict[str, GroupReference] = {r.seed: r for r in [
    GroupReference("sam", run_sam, sam_defaults, lr=0.05,
                   alt={"rho": 0.2, "momentum": 0.9, "weight_decay": 0.01,
                        "perturb_eps": 1e-3}),
    GroupReference("adahessian", run_with_hessian(_adahessian, lambda h, t: True),
                   adahessian_defaults, lr=0.05,
                   alt={"beta1": 0.8, "beta2": 0.99, "weight_decay": 0.05,
                        "hessian_power": 0.5, "eps": 1e-4}),
    GroupReference("sophia_h",
                   run_with_hessian(_sophia, lambda h, t: (t - 1) % int(h["update_period"]) == 0),
                   sophia_defaults, lr=0.5,
                   alt={"beta1": 0.9, "beta2": 0.95, "weight_decay": 0.1, "rho": 0.05,
                        "eps": 1e-3, "update_period": 3.0}),
    GroupReference("aegd", run_aegd, lambda: (signature_defaults(AEGD)["lr"], {
        k: float(v) for k, v in signature_defaults(AEGD).items() if k != "lr"}),
        lr=0.1, alt={"c": 0.5, "weight_decay": 0.01}),
    GroupReference("dadapt_adam", run_dadapt_adam, dadapt_adam_defaults, lr=1.0,
                   alt={"beta1": 0.8, "beta2": 0.99, "d0": 1e-3, "weight_decay": 0.01,
                        "eps": 1e-6}),
    GroupReference("prodigy", run_prodigy, prodigy_defaults, lr=1.0,
                   alt={"beta1": 0.8, "beta2": 0.99, "beta3": 0.98, "d0": 1e-3, "d_coef": 0.5,
                        "weight_decay": 0.01, "eps": 1e-6}),
    GroupReference("zclip", run_zclip, zclip_defaults, lr=0.01,
                   alt={"beta1": 0.8, "beta2": 0.99, "eps": 1e-6, "alpha": 0.9,
                        "z_thresh": 1.0, "warmup": 5.0}),
]}
