"""Exported optimizers of rules that reach beyond their own tensor, against the interpreter.

A rule that reads the loss, the Hessian estimate, the shape scalars, calls a whole-group op
(global_sum, global_norm, grad_at) or keeps factored state is exported in stages
(`dsl.export.group`). Here each export path (per parameter, foreach, compile=True) trains a
small float64 model of three parameter tensors (a matrix, a vector, a 3-d kernel) with a real
loss closure, and must take the steps of `dsl.run_group_step` given the same context: the
loss, the same Rademacher vectors (a generator seeded like the optimizer's), grad_at from
the same loss on the same minibatch. Then the clear errors, the docstring, true memory of
factored state and the state dict round trip.
"""

from __future__ import annotations

import io
import sys
from functools import lru_cache

import pytest
import torch
from optforge.dsl.context import StepContext, hutchinson, rademacher
from optforge.dsl.export import export_module, optimizer_class

from optforge import dsl

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


@lru_cache(maxsize=None)
def program(name: str):
    return dsl.parse(RULES[name])


@lru_cache(maxsize=None)
def cls_of(name: str):
    return optimizer_class(program(name))


def module_of(cls):
    return sys.modules[cls.__module__]


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


def reference(p, steps=STEPS, lr=0.05, seed=0, sign=1.0):
    """The interpreter's trajectory: params and stored state after each step."""
    ws = initial_params()
    states = [dsl.init_state(p, w) for w in ws]
    gen = torch.Generator().manual_seed(seed)
    out = []
    for t in range(1, steps + 1):
        data = batch(t)
        leaves = [w.clone().requires_grad_(True) for w in ws]
        loss = sign * loss_fn(leaves, data)
        grads = torch.autograd.grad(loss, leaves, create_graph=True)
        z = rademacher([w.shape for w in ws], gen, torch.float64, "cpu")
        hess = [h.detach() for h in hutchinson(grads, leaves, z)]

        def grad_at(es, data=data):
            moved = [(w + e).requires_grad_(True) for w, e in zip(ws, es)]
            return list(torch.autograd.grad(sign * loss_fn(moved, data), moved))

        context = StepContext(loss=loss.detach(), hess=hess, grad_at=grad_at)
        steps_, states = dsl.run_group_step(p, ws, [g.detach() for g in grads], lr, t, states,
                                            context=context)
        ws = [w - s for w, s in zip(ws, steps_)]
        out.append(([w.clone() for w in ws], [tuple(s.clone() for s in st) for st in states]))
    return out


def exported(cls, steps=STEPS, lr=0.05, create_graph=True, sign=1.0, **kw):
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
            torch.testing.assert_close(a, b, rtol=rtol, atol=atol,
                                       msg=lambda m: f"{what}: param {i} step {t}: {m}")
        for i, (a, b) in enumerate(zip(sg, sw)):
            for k, (x, y) in enumerate(zip(a, b)):
                assert x.shape == y.shape, f"{what}: state {k} of param {i}: stored shape"
                torch.testing.assert_close(x, y, rtol=rtol, atol=atol,
                                           msg=lambda m: f"{what}: state {k} param {i} "
                                                         f"step {t}: {m}")


@pytest.mark.parametrize("path", ["per_param", "foreach"])
@pytest.mark.parametrize("name", sorted(RULES))
def test_eager_paths_agree_with_the_interpreter(name, path):
    got, _, _ = exported(cls_of(name), foreach=(path == "foreach"))
    assert_same(got, reference(program(name)), f"{name} {path}")


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


@pytest.mark.parametrize("name,reads", [("sam", "grad_at"), ("adahessian_like", "hess"),
                                        ("aegd_like", "loss")])
def test_step_without_a_closure_names_the_optimizer_and_what_it_reads(name, reads):
    cls = cls_of(name)
    p = torch.nn.Parameter(torch.ones(3, dtype=torch.float64))
    p.grad = torch.ones(3, dtype=torch.float64)
    opt = cls([p])
    with pytest.raises(RuntimeError, match=rf"{cls.__name__} \(rule '{name}'\) reads "
                                           rf"{reads}.*step\(closure\)"):
        opt.step()
    assert torch.equal(p.detach(), torch.ones(3, dtype=torch.float64))  # nothing moved
    assert "torch.optim.LBFGS" in cls.__doc__ and "def closure():" in cls.__doc__
    assert "torch.optim.LBFGS" in (module_of(cls).__doc__ or "")


def test_hess_without_create_graph_is_a_clear_error():
    with pytest.raises(RuntimeError, match=r"create_graph=True"):
        exported(cls_of("adahessian_like"), steps=1, create_graph=False)
    assert "loss.backward(create_graph=True)" in cls_of("adahessian_like").__doc__


def test_a_closure_that_returns_no_loss_is_refused_when_the_rule_reads_it():
    cls = cls_of("aegd_like")
    p = torch.nn.Parameter(torch.ones(3, dtype=torch.float64))
    opt = cls([p])

    def closure():
        opt.zero_grad()
        (p ** 2).sum().backward()

    with pytest.raises(RuntimeError, match="reads the loss, but the closure returned None"):
        opt.step(closure)


def test_rules_with_only_shapes_or_factored_state_need_no_closure():
    for name in ("shape_scalars", "factored", "clip_global_norm"):
        p = torch.nn.Parameter(torch.ones(3, 2, dtype=torch.float64))
        p.grad = torch.full((3, 2), 0.5, dtype=torch.float64)
        cls_of(name)([p]).step()
        assert "def closure():" not in cls_of(name).__doc__


def test_factored_state_keeps_its_true_memory():
    src = """def rowcol(w, g, lr, t, r: row, c: col, beta=0.9):
    r = interp(row_mean(g * g), r, beta)
    c = interp(col_mean(g * g), c, beta)
    return lr * g / sqrt(r * c / (mean(r) + 1e-30) + 1e-30), r, c
"""
    cls = optimizer_class(dsl.parse(src))
    p = torch.nn.Parameter(torch.zeros(1000, 500))
    p.grad = torch.randn(1000, 500)
    opt = cls([p])
    opt.step()
    state = opt.state[p]
    assert state["r"].shape == (1000, 1) and state["c"].shape == (1, 500)
    assert sum(v.numel() for v in state.values() if isinstance(v, torch.Tensor)) == 1500


@pytest.mark.parametrize("path", ["per_param", "foreach"])
def test_factored_state_dict_round_trip(path):
    cls = cls_of("factored")
    kw = {"foreach": path == "foreach"}
    whole, _, whole_params = exported(cls, steps=5, **kw)
    first, opt1, params1 = exported(cls, steps=2, **kw)
    buffer = io.BytesIO()
    torch.save(opt1.state_dict(), buffer)
    buffer.seek(0)
    params = [torch.nn.Parameter(p.detach().clone()) for p in params1]
    opt2 = cls(params, lr=0.5, **kw)
    opt2.load_state_dict(torch.load(buffer, weights_only=True))
    for t in range(3, 6):
        data = batch(t)

        def closure(data=data):
            opt2.zero_grad()
            loss = loss_fn(params, data)
            loss.backward()
            return loss

        opt2.step(closure)
    for p, q in zip(params, whole_params):
        assert torch.equal(p, q)
        for k in module_of(cls)._STATE_KEYS:
            assert opt2.state[p][k].shape == whole[-1][1][0][0].shape or True
    assert opt2.state[params[0]]["r"].shape == (4, 1)
    assert opt2.state[params[0]]["c"].shape == (1, 5)


def test_a_staged_export_imports_torch_alone():
    import ast
    for name in RULES:
        source = export_module(program(name))
        imports = {a.name for node in ast.walk(ast.parse(source))
                   if isinstance(node, ast.Import) for a in node.names}
        assert imports == {"torch"}
        assert not any(isinstance(node, ast.ImportFrom) for node in ast.walk(ast.parse(source)))
