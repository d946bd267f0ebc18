"""References written out plainly, one tensor at a time: the paper's equations (or the
authors' code) where no package has the optimizer in the form a seed follows, and the
float64 Newton–Schulz that the Muon-family references run with (see `seed_references`)."""

from __future__ import annotations

import math

import torch

Hyper = dict[str, float]


class Plain:
    """A reference written out plainly: `fn(p, g, state, lr, t, hyper)` updates p in place."""

    def __init__(self, params, lr, hyper, fn):
        self.params = list(params)
        self.lr, self.hyper, self.fn = lr, dict(hyper), fn
        self.state: dict[int, dict] = {id(p): {} for p in self.params}
        self.t = 0

    @torch.no_grad()
    def step(self):
        self.t += 1
        for p in self.params:
            self.fn(p, p.grad, self.state[id(p)], self.lr, self.t, self.hyper)


def _plain(fn, lr_default: float, hyper_defaults: Hyper):
    return (lambda params, lr, h: Plain(params, lr, h, fn),
            lambda: (lr_default, dict(hyper_defaults)))


def powersign_step(p, g, st, lr, t, h):
    """Bello et al. (2017), as tf.contrib.opt.PowerSignOptimizer with sign_decay_fn=None:
    m_t = beta m + (1 - beta) g; update = exp(log(base) * sign(g) * sign(m_t)) * g."""
    m = st.setdefault("m", torch.zeros_like(p))
    m.mul_(h["beta"]).add_(g, alpha=1 - h["beta"])
    p.sub_(lr * torch.exp(math.log(h["base"]) * torch.sign(g) * torch.sign(m)) * g)


def addsign_step(p, g, st, lr, t, h):
    """Bello et al. (2017), as tf.contrib.opt.AddSignOptimizer with sign_decay_fn=None:
    update = (alpha + sign(g) * sign(m_t)) * g."""
    m = st.setdefault("m", torch.zeros_like(p))
    m.mul_(h["beta"]).add_(g, alpha=1 - h["beta"])
    p.sub_(lr * (h["alpha"] + torch.sign(g) * torch.sign(m)) * g)


def lamb_step(p, g, st, lr, t, h):
    """You et al. (2020), Algorithm 2 with phi(z) = z, and trust ratio 1 when |w| or |update|
    is 0 (the guard every implementation has)."""
    b1, b2 = h["beta1"], h["beta2"]
    m = st.setdefault("m", torch.zeros_like(p))
    v = st.setdefault("v", torch.zeros_like(p))
    m.mul_(b1).add_(g, alpha=1 - b1)
    v.mul_(b2).addcmul_(g, g, value=1 - b2)
    r = (m / (1 - b1 ** t)) / ((v / (1 - b2 ** t)).sqrt() + h["eps"])
    u = r + h["weight_decay"] * p
    w_norm, u_norm = torch.linalg.norm(p), torch.linalg.norm(u)
    trust = w_norm / u_norm if w_norm > 0 and u_norm > 0 else 1.0
    p.sub_(lr * trust * u)


def lars_step(p, g, st, lr, t, h):
    """You, Gitman & Ginsburg (2017): local lr = eta |w| / (|g| + beta |w|), then momentum
    (1 when |w| or the denominator is 0, as pytorch-optimizer guards), for every tensor."""
    buf = st.setdefault("buf", torch.zeros_like(p))
    w_norm, g_norm = torch.linalg.norm(p), torch.linalg.norm(g)
    den = g_norm + h["weight_decay"] * w_norm
    trust = h["trust_coefficient"] * w_norm / den if w_norm > 0 and den > 0 else 1.0
    buf.mul_(h["momentum"]).add_(trust * (g + h["weight_decay"] * p))
    p.sub_(lr * buf)


def zeropower_via_newtonschulz5(G: torch.Tensor, steps: int = 5) -> torch.Tensor:
    """Keller Jordan's muon.py (github.com/KellerJordan/Muon), in G's dtype instead of
    bfloat16."""
    assert G.ndim >= 2
    a, b, c = (3.4445, -4.7750, 2.0315)
    X = G
    if G.size(-2) > G.size(-1):
        X = X.mT
    X = X / (X.norm(dim=(-2, -1), keepdim=True) + 1e-7)
    for _ in range(steps):
        A = X @ X.mT
        B = b * A + c * A @ A
        X = a * X + B @ X
    if G.size(-2) > G.size(-1):
        X = X.mT
    return X


def muon_step(p, g, st, lr, t, h):
    """Keller Jordan's muon_update (nesterov=True) and Muon.step, in float64, with the update
    scaled by sqrt(max(1, rows / cols)). A vector is the n x 1 matrix of the rule language
    (Keller Jordan's code takes matrices only)."""
    buf = st.setdefault("buf", torch.zeros_like(p))
    buf.lerp_(g, 1 - h["momentum"])
    update = g.lerp(buf, h["momentum"])
    matrix = update.reshape(len(update), -1) if update.ndim >= 1 else update.reshape(1, 1)
    update = zeropower_via_newtonschulz5(matrix)
    update = update * max(1, matrix.size(-2) / matrix.size(-1)) ** 0.5
    p.mul_(1 - lr * h["weight_decay"])
    p.add_(update.reshape(p.shape), alpha=-lr)


class WithNewtonSchulz:
    """A package optimizer whose Newton–Schulz iteration (the function `name` of `module`) is
    replaced, for the duration of each step, by `zeropower_via_newtonschulz5`: in the
    parameter's dtype and dividing by |G| + 1e-7, as the language's orth(). The packages run it
    in bfloat16, which no float64 comparison survives; everything around it is theirs."""

    def __init__(self, opt, module, name: str):
        self.opt, self.module, self.name = opt, module, name

    def step(self):
        original = getattr(self.module, self.name)
        setattr(self.module, self.name, _muon_newton_schulz)
        try:
            self.opt.step()
        finally:
            setattr(self.module, self.name, original)


MUON_COEFFICIENTS = (3.4445, -4.7750, 2.0315)


def _muon_newton_schulz(g, *args, **kwargs):
    """Either package's signature: torch's (grad, ns_coefficients, ns_steps, eps) or
    pytorch-optimizer's (g, num_steps=5, eps=1e-7, ..., weights=...): the settings must be
    Muon's, which the replacement hard-codes."""
    settings = list(args) + list(kwargs.values())
    coefficients = [tuple(s) if isinstance(s, tuple) else [tuple(c) for c in s]
                    for s in settings if isinstance(s, (tuple, list))]
    assert all(c in (MUON_COEFFICIENTS, [MUON_COEFFICIENTS]) for c in coefficients), coefficients
    steps = [s for s in settings if isinstance(s, int) and not isinstance(s, bool)]
    assert all(s == 5 for s in steps), steps
    assert all(s == 1e-7 for s in settings if isinstance(s, float)), settings
    return zeropower_via_newtonschulz5(g)
