"""Exported optimizers of rules that reach beyond their own tensor, against the interpreter.

A rule that reads the loss, the Hessian estimate, the shape scalars, calls a whole-group op
(global_sum, global_norm, grad_at) or keeps factored state is exported in stages
(`dsl.export.group`). Here each export path (per parameter, foreach, compile=True) trains a
small float64 model of three parameter tensors (a matrix, a vector, a 3-d kernel) with a real
loss closure, and must take the steps of `dsl.run_group_step` given the same context: the
loss, the same Rademacher vectors (a generator seeded like the optimizer's), grad_at from
the same loss on the same minibatch. `follow_group` does the same for any rule on a quadratic
loss (test_export.py and test_export_faithful.py use it for rules coupled across tensors).
The optimizer contract of these exports is in test_export_staged.py.
"""

from __future__ import annotations

import sys
from functools import cache

import pytest
import torch
from optforge.dsl.context import StepContext, hutchinson, rademacher
from optforge.dsl.export import optimizer_class
from optforge.dsl.interpreter import init_state, run_group_step
from optforge.dsl.needs import needs, needs_closure
from optforge.dsl.ops import OPS, OpKind

from optforge import dsl, seeds

SHAPES = [(4, 5), (4,), (3, 2, 2)]
STEPS = 5

RULES = {
    "clip_global_norm": """def clip_global_norm(w, g, lr, t, m, beta=0.9, c=0.5):
    m = beta * m + min(1, c / global_norm(g)) * g
    return lr * m, m
""",
    "global_sums": """def global_sums(w, g, lr, t, s, d=1e-3):
    s = s + g
    ratio = max(global_sum(g * s), d) / (global_norm(s) + 1e-8)
    return lr * ratio * g / global_sum(1) + lr * global_sum(lr) * g, s
""",
    "sam": """def sam(w, g, lr, t, m, rho=0.05):
    e = rho * g / (global_norm(g) + 1e-12)
    m = 0.9 * m + grad_at(e)
    return lr * m, m
""",
    "two_grad_ats": """def two_grad_ats(w, g, lr, t, rho=0.05):
    g2 = grad_at(rho * g)
    g3 = grad_at(-rho * g2 + 0.01)
    return lr * (g + g2 + g3) / 3
""",
    "adahessian_like": """def adahessian_like(w, g, lr, t, m, v, beta1=0.9, beta2=0.999, eps=1e-8):
    m = interp(g, m, beta1)
    v = interp(hess * hess, v, beta2)
    return lr * m / (sqrt(v / (1 - beta2 ** t)) + eps), m, v
""",
    "aegd_like": """def aegd_like(w, g, lr, t, r, c=1.0):
    q = sqrt(loss + c)
    v = g / (2 * q)
    r = max(r, q) / (1 + 2 * lr * v * v)
    return 2 * lr * r * v, r
""",
    "shape_scalars": """def shape_scalars(w, g, lr, t, m, beta=0.9):
    m = beta * m + g
    return lr * sqrt(max(1, rows / cols)) * orth(m) + lr * g * numel / (rows * cols), m
""",
    "factored": """def factored(w, g, lr, t, r: row, c: col, s: scalar, m, beta=0.9):
    r = interp(row_mean(g * g), r, beta)
    c = interp(col_mean(g * g), c, beta)
    s = interp(mean(g * g), s, beta)
    m = interp(g, m, beta)
    return lr * m / sqrt(r * c / (mean(r) + 1e-30) + s + 1e-30), r, c, s, m
""",
}


def coupled(p) -> bool:
    """Whether a rule's step of one tensor depends on the other tensors of its group or on a
    closure: such a rule cannot be followed one tensor at a time (tests/dsl/test_export.py)."""
    return needs_closure(p) or any(OPS[s.op].kind in (OpKind.GLOBAL, OpKind.GRADIENT)
                                   for s in p.body)


COUPLED_SEEDS = [n for n in seeds.seed_names() if coupled(seeds.load_seed(n))]


@cache
def program(name: str):
    return dsl.parse(RULES[name])


@cache
def cls_of(name: str):
    return optimizer_class(program(name))


def module_of(cls):
    return sys.modules[cls.__module__]


def module_program(cls):
    return dsl.parse(module_of(cls).RULE_SOURCE)


def batch(k: int):
    gen = torch.Generator().manual_seed(100 + k)
    return (torch.randn(8, 5, generator=gen, dtype=torch.float64),
            torch.randn(8, 3, generator=gen, dtype=torch.float64))


def loss_fn(params, data):
    """A real loss: a tanh layer, a kernel read as a 3 x 4 matrix, and a quartic term (so
    that the Hessian diagonal is not constant)."""
    w, b, k = params
    x, y = data
    h = torch.tanh(x @ w.T + b)
    out = h @ k.reshape(3, 4).T
    return ((out - y) ** 2).mean() + 0.1 * (k ** 4).sum() + 0.05 * (w ** 4).sum()


def initial_params():
    gen = torch.Generator().manual_seed(0)
    return [torch.randn(s, generator=gen, dtype=torch.float64) * 0.5 for s in SHAPES]


def reference(p, steps=STEPS, lr=0.05, seed=0, sign=1.0, hyper=None):
    """The interpreter's trajectory: params and stored state after each step."""
    ws = initial_params()
    states = [init_state(p, w) for w in ws]
    gen = torch.Generator().manual_seed(seed)
    out = []
    for t in range(1, steps + 1):
        data = batch(t)
        leaves = [w.clone().requires_grad_(True) for w in ws]
        loss = sign * loss_fn(leaves, data)
        grads = torch.autograd.grad(loss, leaves, create_graph=True)
        z = rademacher([w.shape for w in ws], gen, torch.float64, "cpu")
        hess = [h.detach() for h in hutchinson(grads, leaves, z)]

        def grad_at(es, data=data, ws=ws):
            moved = [(w + e).requires_grad_(True) for w, e in zip(ws, es)]
            return list(torch.autograd.grad(sign * loss_fn(moved, data), moved))

        context = StepContext(loss=loss.detach(), hess=hess, grad_at=grad_at)
        steps_, states = run_group_step(p, ws, [g.detach() for g in grads], lr, t, states,
                                        hyper, context=context)
        ws = [w - s for w, s in zip(ws, steps_)]
        out.append(([w.clone() for w in ws], [tuple(s.clone() for s in st) for st in states]))
    return out


def exported(cls, steps=STEPS, lr=0.05, create_graph=None, sign=1.0, **kw):
    if create_graph is None:  # only rules that read hess need the graph
        create_graph = "hess" in needs(module_program(cls))
    params = [torch.nn.Parameter(w.clone()) for w in initial_params()]
    opt = cls(params, lr=lr, **kw)
    keys = module_of(cls)._STATE_KEYS
    out = []
    for t in range(1, steps + 1):
        data = batch(t)

        def closure(data=data):
            opt.zero_grad()
            loss = sign * loss_fn(params, data)
            loss.backward(create_graph=create_graph)
            return loss

        opt.step(closure)
        out.append(([p.detach().clone() for p in params],
                    [tuple(opt.state[p][k].clone() for k in keys) for p in params]))
    return out, opt, params


def assert_same(got, want, what, rtol=1e-11, atol=1e-13):
    for t, ((wg, sg), (ww, sw)) in enumerate(zip(got, want), start=1):
        for i, (a, b) in enumerate(zip(wg, ww)):
            where = f"{what}: param {i} step {t}"
            torch.testing.assert_close(a, b, rtol=rtol, atol=atol,
                                       msg=lambda m, where=where: f"{where}: {m}")
        for i, (a, b) in enumerate(zip(sg, sw)):
            for k, (x, y) in enumerate(zip(a, b)):
                assert x.shape == y.shape, f"{what}: state {k} of param {i}: stored shape"
                where = f"{what}: state {k} param {i} step {t}"
                torch.testing.assert_close(x, y, rtol=rtol, atol=atol,
                                           msg=lambda m, where=where: f"{where}: {m}")


@pytest.mark.parametrize("path", ["per_param", "foreach"])
@pytest.mark.parametrize("name", sorted(RULES))
def test_eager_paths_agree_with_the_interpreter(name, path):
    got, _, _ = exported(cls_of(name), foreach=(path == "foreach"))
    assert_same(got, reference(program(name)), f"{name} {path}")


@pytest.mark.parametrize("path", ["per_param", "foreach"])
@pytest.mark.parametrize("name", COUPLED_SEEDS)
def test_every_coupled_seed_agrees_with_the_interpreter(name, path):
    """Seeds whose tensors depend on each other or on a closure (whole-group ops, loss, hess,
    grad_at); tests/dsl/test_export.py follows the others one tensor at a time."""
    lr = seeds.seed_info(name).lr
    cls = optimizer_class(seeds.load_seed(name), default_lr=lr)
    got, _, _ = exported(cls, lr=lr, foreach=(path == "foreach"))
    assert_same(got, reference(seeds.load_seed(name), lr=lr), f"seed {name} {path}",
                rtol=1e-10, atol=1e-12)


def follow_group(program, cls, shapes, lr=0.01, exported_hyper=None, rule_hyper=None,
                 steps=5, sign=1.0, seed=1, rtol=1e-11, atol=1e-13, **opt_kwargs):
    """`tests/dsl/test_export_faithful.follow_interpreter` for any rule: the parameters of
    `shapes` in one group, on a quadratic loss whose gradient at the current point is a fresh
    random draw each step (and whose Hessian diagonal is a random positive vector); the
    interpreter on `sign` times the objective."""
    gen = torch.Generator().manual_seed(seed)
    w0 = [torch.randn(s, generator=gen, dtype=torch.float64) for s in shapes]
    params = [torch.nn.Parameter(w.clone()) for w in w0]
    opt = cls(params, lr=lr, **(exported_hyper or {}), **opt_kwargs)
    ws = [w.clone() for w in w0]
    states = [init_state(program, w) for w in ws]
    zgen = torch.Generator().manual_seed(opt_kwargs.get("hessian_seed", 0))
    hess_read = "hess" in needs(program)
    for t in range(1, steps + 1):
        gs = [torch.randn(s, generator=gen, dtype=torch.float64) for s in shapes]
        a = [torch.rand(s, generator=gen, dtype=torch.float64) + 0.5 for s in shapes]
        c = [g - ai * w for g, ai, w in zip(gs, a, ws)]

        def f(ps, a=a, c=c):
            return sum((ci * p).sum() + 0.5 * (ai * p * p).sum() for p, ai, ci in zip(ps, a, c))

        def closure(f=f):
            opt.zero_grad()
            loss = f(params)
            loss.backward(create_graph=hess_read)
            return loss

        opt.step(closure) if needs_closure(program) else (closure(), opt.step())
        leaves = [w.clone().requires_grad_(True) for w in ws]
        loss = sign * f(leaves)
        grads = torch.autograd.grad(loss, leaves, create_graph=hess_read)
        hess = None
        if hess_read:
            z = rademacher([w.shape for w in ws], zgen, torch.float64, "cpu")
            hess = [h.detach() for h in hutchinson(grads, leaves, z)]

        def grad_at(es, f=f, ws=ws):
            moved = [(w + e).requires_grad_(True) for w, e in zip(ws, es)]
            return list(torch.autograd.grad(sign * f(moved), moved))

        steps_, states = run_group_step(program, ws, [g.detach() for g in grads], lr, t,
                                        states, rule_hyper,
                                        context=StepContext(loss.detach(), hess, grad_at))
        ws = [w - s for w, s in zip(ws, steps_)]
        for p, w in zip(params, ws):
            torch.testing.assert_close(p.detach(), w, rtol=rtol, atol=atol, equal_nan=True)


@pytest.mark.parametrize("name", ["sam", "factored", "adahessian_like"])
def test_compiled_path_agrees_with_the_interpreter(name):
    got, _, _ = exported(cls_of(name), steps=3, compile=True)
    assert_same(got, reference(program(name), steps=3), f"{name} compile")


def test_the_hessian_seed_is_the_generator_seed():
    got, _, _ = exported(cls_of("adahessian_like"), hessian_seed=7)
    assert_same(got, reference(program("adahessian_like"), seed=7), "hessian_seed=7")
    other, _, _ = exported(cls_of("adahessian_like"))
    assert not torch.equal(got[-1][0][0], other[-1][0][0])


@pytest.mark.parametrize("name", ["sam", "adahessian_like", "aegd_like"])
def test_maximize_is_the_rule_on_the_negated_objective(name):
    """Maximizing f reads -g, -loss, -hess and -grad_at: minimizing -f."""
    up, _, _ = exported(cls_of(name), steps=3, maximize=True, sign=-1.0)
    down, _, _ = exported(cls_of(name), steps=3)
    assert_same(up, down, f"{name} maximize", rtol=0, atol=0)


def test_grad_at_restores_parameters_and_every_gradient():
    cls = cls_of("two_grad_ats")
    params = [torch.nn.Parameter(w.clone()) for w in initial_params()]
    other = torch.nn.Parameter(torch.ones(3, dtype=torch.float64))
    opt = cls([{"params": params}, {"params": [other], "lr": 0.0}], lr=0.05)
    data = batch(1)
    firsts = []

    def closure():
        opt.zero_grad(set_to_none=False)  # in place: the first gradients must survive
        loss = loss_fn(params, data) + (other ** 2).sum()
        loss.backward()
        if not firsts:
            firsts.extend(p.grad.clone() for p in params + [other])
        return loss

    start = [p.detach().clone() for p in params]
    opt.step(closure)
    for p, g in zip(params + [other], firsts):
        assert torch.equal(p.grad, g)
    want = reference(program("two_grad_ats"), steps=1)[0][0]
    for p, w, s in zip(params, want, start):
        torch.testing.assert_close(p.detach(), w, rtol=1e-12, atol=1e-14)
        assert not torch.equal(p.detach(), s)
