"""The export means what its names say (issue #13).

* A hyperparameter keeps a torch convention name (weight_decay, beta1.../betas, momentum, eps)
  only where the program still uses it in that role (`dsl.roles`); every seed keeps all of
  its names, and mutated programs whose hyperparameter changed role export it as
  ``c_<name>`` (unused ones are dropped) and still follow the interpreter.
* ``maximize=True`` is the rule on -g; out-of-range lr, betas, eps, weight_decay and momentum
  are refused with torch.optim's messages.
* ``load_state_dict`` of another optimizer's state is a ValueError naming what is missing and
  what is extra, at load time.
"""

from __future__ import annotations

import inspect
import math
import sys
from functools import cache

import pytest
import torch
from optforge.dsl.export import optimizer_class

from optforge import dsl, seeds

from .test_closure_export import coupled, follow_group

SHAPES = [(), (5,), (3, 4)]


@cache
def seed_class(name: str):
    return optimizer_class(seeds.load_seed(name), default_lr=seeds.seed_info(name).lr)


def params_of(cls) -> list[str]:
    return [n for n in inspect.signature(cls.__init__).parameters if n not in ("self",)]


def follow_interpreter(program, cls, lr=0.01, exported_hyper=None, rule_hyper=None,
                       steps=5, sign=1.0, **opt_kwargs):
    """Steps of the exported optimizer and of the interpreter (on sign * g) from the same
    start; asserts they agree in float64. A rule whose tensors depend on each other or on a
    closure is followed as one group (`test_closure_export.follow_group`)."""
    if coupled(program):
        follow_group(program, cls, SHAPES, lr, exported_hyper, rule_hyper, steps, sign,
                     **opt_kwargs)
        return
    gen = torch.Generator().manual_seed(1)
    w0 = [torch.randn(s, generator=gen, dtype=torch.float64) for s in SHAPES]
    params = [torch.nn.Parameter(w.clone()) for w in w0]
    opt = cls(params, lr=lr, **(exported_hyper or {}), **opt_kwargs)
    ws = [w.clone() for w in w0]
    states = [dsl.init_state(program, w) for w in ws]
    for t in range(1, steps + 1):
        grads = [torch.randn(s, generator=gen, dtype=torch.float64) for s in SHAPES]
        for p, g in zip(params, grads):
            p.grad = g.clone()
        opt.step()
        for i, g in enumerate(grads):
            step, states[i] = dsl.run_step(program, ws[i], sign * g, lr, t, states[i],
                                           rule_hyper)
            ws[i] = ws[i] - step
        for p, w in zip(params, ws):
            torch.testing.assert_close(p.detach(), w, rtol=1e-11, atol=1e-13, equal_nan=True)


# ---- roles: every seed keeps its conventional names --------------------------------------------

def test_every_seed_keeps_its_conventional_names():
    from optforge.dsl.roles import export_names, is_conventional, role_problem
    names = seeds.seed_names()
    assert len(names) >= 32
    conventional = 0
    for name in names:
        program = seeds.load_seed(name)
        for h, _ in program.hyperparams:
            assert role_problem(program, h) is None, (name, h, role_problem(program, h))
            conventional += is_conventional(h)
        assert export_names(program).renamed == {}, name
        assert sys.modules[seed_class(name).__module__]._RENAMED == {}, name
        signature = params_of(seed_class(name))
        assert [h for h, _ in program.hyperparams] == signature[2:2 + len(program.hyperparams)]
    assert conventional >= 50  # the check is not vacuous: most seeds use these names


@pytest.mark.parametrize("name, betas", [("adam", ("beta1", "beta2")),
                                         ("adan", ("beta1", "beta2", "beta3")),
                                         ("yogi", ("beta1", "beta2")), ("lion", ("beta1", "beta2"))])
def test_seeds_with_betas_still_carry_one_betas_tuple(name, betas):
    module = sys.modules[seed_class(name).__module__]
    assert module._BETA_NAMES == betas and module._RENAMED == {}


# ---- roles: mutated programs ------------------------------------------------------------------

ADAMW_DECAY_ADDED = """
def adamw_added(w, g, lr, t, m, v, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.01):
    m = interp(g, m, beta1)
    v = interp(g * g, v, beta2)
    return lr * (m / (sqrt(v) + eps) + weight_decay), m, v
"""

ADAMW_DECAY_ON_MOMENTUM = """
def adamw_on_m(w, g, lr, t, m, v, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.01):
    m = interp(g, m, beta1)
    v = interp(g * g, v, beta2)
    return lr * (m / (sqrt(v) + eps) + weight_decay * m), m, v
"""

ADAMW_DECAY_UNUSED = """
def adamw_unused(w, g, lr, t, m, v, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.01):
    m = interp(g, m, beta1)
    v = interp(g * g, v, beta2)
    dead = weight_decay * w
    return lr * m / (sqrt(v) + eps), m, v
"""

BETA1_SCALES_GRADIENT = """
def beta1_scales(w, g, lr, t, m, v, beta1=0.9, beta2=0.999, eps=1e-8):
    m = interp(g, m, 0.9)
    v = interp(g * g, v, beta2)
    return lr * (beta1 * g + m) / (sqrt(v) + eps), m, v
"""

EPS_IN_NUMERATOR = """
def eps_up(w, g, lr, t, m, v, beta1=0.9, beta2=0.999, eps=1e-3):
    m = interp(g, m, beta1)
    v = interp(g * g, v, beta2)
    return lr * (m + eps) / sqrt(v + 1e-8), m, v
"""

EPS_MULTIPLIES = """
def eps_times(w, g, lr, t, m, v, beta1=0.9, beta2=0.999, eps=1e-3):
    m = interp(g, m, beta1)
    v = interp(g * g, v, beta2)
    return lr * m / (sqrt(v) * eps + 1e-8), m, v
"""

MOMENTUM_SCALES_GRADIENT = """
def momentum_scales(w, g, lr, t, buf, momentum=0.9):
    buf = 0.9 * buf + g
    return lr * (buf + momentum * g), buf
"""

ADAM_BETA2_EXTRAPOLATES = """
def adam_beta2_out(w, g, lr, t, m, v, beta1=0.9, beta2=2.13, eps=1e-8):
    m = interp(g, m, beta1)
    v = interp(g * g, v, beta2)
    return lr * m / (sqrt(abs(v)) + eps), m, v
"""

ADAMW_NEGATIVE_DECAY = """
def adamw_negative(w, g, lr, t, m, v, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=-0.01):
    m = interp(g, m, beta1)
    v = interp(g * g, v, beta2)
    return lr * (m / (sqrt(v) + eps) + weight_decay * w), m, v
"""

CASES = [  # (rule, hyperparameter, new name or None, words of the reason)
    (ADAMW_DECAY_ADDED, "weight_decay", "c_weight_decay", "not a factor of w"),
    (ADAMW_DECAY_ON_MOMENTUM, "weight_decay", "c_weight_decay", "not w"),
    (ADAMW_DECAY_UNUSED, "weight_decay", None, "never uses"),
    (BETA1_SCALES_GRADIENT, "beta1", "c_beta1", "average"),
    (EPS_IN_NUMERATOR, "eps", "c_eps", "never part of a denominator"),
    (EPS_MULTIPLIES, "eps", "c_eps", "not added"),
    (MOMENTUM_SCALES_GRADIENT, "momentum", "c_momentum", "average"),
    # mutations perturb defaults: out of torch's range, the name would refuse its own default
    (ADAM_BETA2_EXTRAPOLATES, "beta2", "c_beta2", "outside [0, 1)"),
    (ADAMW_NEGATIVE_DECAY, "weight_decay", "c_weight_decay", "negative"),
]


@pytest.mark.parametrize("rule, old, new, why", CASES, ids=[c[0].split("(")[0][5:]
                                                             for c in CASES])
def test_a_hyperparameter_that_changed_role_loses_its_torch_name(rule, old, new, why):
    from optforge.dsl.roles import export_names
    program = dsl.parse(rule)
    names = export_names(program)
    assert names.renamed == {old: new} and why in names.reasons[old]
    cls = optimizer_class(program)
    signature = params_of(cls)
    assert old not in signature
    if new is None:
        assert [n for n, _ in program.hyperparams if n != old] == signature[2:len(program.hyperparams) + 1]
        with pytest.raises(TypeError):
            cls([torch.nn.Parameter(torch.zeros(2))], **{old: 0.0})
    else:
        assert new in signature
    doc = sys.modules[cls.__module__].__doc__
    assert f"hyperparameter {old}" in doc and (new is None or f"exported as {new}" in doc)
    # the exported rule is still the rule: the interpreter, with the same values
    cls([torch.nn.Parameter(torch.zeros(2))])  # its own defaults are accepted
    value = 0.05 if old != "eps" else 0.01
    follow_interpreter(program, cls, exported_hyper={new: value} if new else {},
                       rule_hyper={old: value})


def test_a_no_decay_param_group_is_refused_where_weight_decay_is_not_a_decay():
    """A user's {"params": biases, "weight_decay": 0} would be ignored silently: it is
    refused, naming the hyperparameter's new name."""
    cls = optimizer_class(dsl.parse(ADAMW_DECAY_ADDED))
    decay, no_decay = torch.nn.Parameter(torch.zeros(3, 2)), torch.nn.Parameter(torch.zeros(2))
    with pytest.raises(ValueError, match="c_weight_decay"):
        cls([{"params": [decay]}, {"params": [no_decay], "weight_decay": 0.0}])
    opt = cls([{"params": [decay]}, {"params": [no_decay], "c_weight_decay": 0.0}])
    assert opt.param_groups[1]["c_weight_decay"] == 0.0
    dropped = optimizer_class(dsl.parse(ADAMW_DECAY_UNUSED))
    with pytest.raises(ValueError, match="does not use"):
        dropped([{"params": [no_decay], "weight_decay": 0.0}])


def test_one_cycle_does_not_cycle_a_beta1_that_is_not_a_momentum():
    """OneCycleLR cycles betas[0]: a rule whose beta1 only scales the gradient exposes no
    betas (beta2 keeps its own name), so the scheduler refuses instead of changing the
    rule."""
    cls = optimizer_class(dsl.parse(BETA1_SCALES_GRADIENT))
    module = sys.modules[cls.__module__]
    assert module._BETA_NAMES == ()
    assert params_of(cls)[2:5] == ["c_beta1", "beta2", "eps"]
    opt = cls([torch.nn.Parameter(torch.zeros(3))])
    assert "betas" not in opt.defaults and "momentum" not in opt.defaults
    with pytest.raises(ValueError, match="momentum"):
        torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=10)
    with pytest.raises(ValueError, match="Invalid beta2 value"):
        cls([torch.nn.Parameter(torch.zeros(3))], beta2=1.0)
    # the seed's own beta1 is a momentum: OneCycleLR cycles it, as for torch.optim.Adam
    adam = seed_class("adam")([torch.nn.Parameter(torch.zeros(3))])
    torch.optim.lr_scheduler.OneCycleLR(adam, max_lr=0.1, total_steps=10)
    assert adam.param_groups[0]["betas"][0] == pytest.approx(0.95)


# ---- maximize --------------------------------------------------------------------------------

@pytest.mark.parametrize("foreach", [False, True])
@pytest.mark.parametrize("name", ["sgd_momentum", "adamw", "lion", "lamb", "adafactor", "adan"])
def test_maximize_is_the_rule_on_the_negated_gradient(name, foreach):
    program = seeds.load_seed(name)
    lr = 1.0 if name == "adadelta" else 0.01
    follow_interpreter(program, seed_class(name), lr=lr, sign=-1.0, maximize=True,
                       foreach=foreach)
    follow_interpreter(program, seed_class(name), lr=lr, sign=1.0, maximize=False,
                       foreach=foreach)


def test_maximize_on_the_compiled_path():
    program = seeds.load_seed("signum")
    follow_interpreter(program, seed_class("signum"), sign=-1.0, maximize=True, compile=True,
                       steps=3)


def test_maximize_is_a_param_group_key_like_torchs():
    cls = seed_class("sgd_momentum")
    p = [torch.nn.Parameter(torch.zeros(3))]
    opt = cls(p, maximize=True)
    assert opt.defaults["maximize"] is True and opt.param_groups[0]["maximize"] is True
    assert "maximize" in inspect.signature(cls.__init__).parameters
    p[0].grad = torch.ones(3)
    opt.step()
    assert (p[0] > 0).all()  # ascends
    state = opt.state_dict()
    again = cls([torch.nn.Parameter(p[0].detach().clone())])
    again.load_state_dict(state)
    assert again.param_groups[0]["maximize"] is True


# ---- validation as torch.optim.Adam --------------------------------------------------------

@pytest.mark.parametrize("kwargs, message", [
    ({"lr": math.nan}, "Invalid learning rate: nan"),
    ({"lr": -1e-3}, "Invalid learning rate: -0.001"),
    ({"betas": (1.0, 0.999)}, "Invalid beta parameter at index 0: 1.0"),
    ({"betas": (0.9, -0.1)}, "Invalid beta parameter at index 1: -0.1"),
    ({"betas": (math.nan, 0.999)}, "Invalid beta parameter at index 0: nan"),
    ({"eps": -1e-8}, "Invalid epsilon value: -1e-08"),
    ({"weight_decay": -0.1}, "Invalid weight_decay value: -0.1"),
])
def test_out_of_range_values_are_refused_as_torch_adam_refuses_them(kwargs, message):
    p = [torch.nn.Parameter(torch.zeros(3))]
    with pytest.raises(ValueError, match=message):
        torch.optim.AdamW(p, **kwargs)  # the same message from torch itself
    with pytest.raises(ValueError, match=message):
        seed_class("adamw")(p, **kwargs)


def test_other_ranges_betas_by_name_momentum_and_param_groups():
    p = [torch.nn.Parameter(torch.zeros(3))]
    with pytest.raises(ValueError, match="Invalid beta parameter at index 1: 1.5"):
        seed_class("adam")(p, beta2=1.5)
    with pytest.raises(ValueError, match="Invalid momentum value: -0.5"):
        torch.optim.SGD(p, lr=0.1, momentum=-0.5)
    with pytest.raises(ValueError, match="Invalid momentum value: -0.5"):
        seed_class("sgd_momentum")(p, momentum=-0.5)
    opt = seed_class("adam")(p)
    with pytest.raises(ValueError, match="Invalid beta parameter at index 0: 1.0"):
        opt.add_param_group({"params": [torch.nn.Parameter(torch.zeros(2))],
                             "betas": (1.0, 0.9)})
    with pytest.raises(ValueError, match="Invalid epsilon value: -1.0"):
        opt.add_param_group({"params": [torch.nn.Parameter(torch.zeros(2))], "eps": -1.0})
    # names without a torch convention are not range-checked (adafactor's beta2_decay < 0)
    seed_class("adafactor")(p, beta2_decay=-0.8)


# ---- load_state_dict of another optimizer ----------------------------------------------------

def _stepped(opt, params):
    """One step with a closure (which rules reading the loss, hess or grad_at need)."""
    def closure():
        for p in params:
            p.grad = None
        loss = sum((p + 0.5 * p * p).sum() for p in params)
        loss.backward(create_graph=True)  # rules reading hess need the graph
        return loss

    opt.step(closure)
    return opt.state_dict()


def test_loading_torch_sgd_state_names_what_is_missing_and_extra():
    params = [torch.nn.Parameter(torch.zeros(3))]
    sgd_state = _stepped(torch.optim.SGD(params, lr=0.1, momentum=0.9), params)
    opt = seed_class("adam")([torch.nn.Parameter(torch.zeros(3))])
    with pytest.raises(ValueError, match=r"lacks m, v, step and has momentum_buffer extra"):
        opt.load_state_dict(sgd_state)
    assert opt.state_dict()["state"] == {}  # nothing was loaded


def test_loading_a_stateless_torch_optimizer_names_the_missing_hyperparameters():
    params = [torch.nn.Parameter(torch.zeros(3))]
    sgd_state = torch.optim.SGD(params, lr=0.1).state_dict()  # no step: no state, only groups
    opt = seed_class("adam")([torch.nn.Parameter(torch.zeros(3))])
    with pytest.raises(ValueError, match=r"param group 0 lacks betas, eps and has "
                                         r".*momentum.* extra"):
        opt.load_state_dict(sgd_state)


def test_loading_another_exported_rule_is_refused_at_load_time():
    params = [torch.nn.Parameter(torch.zeros(3))]
    adam_state = _stepped(seed_class("adam")(params), params)
    other = [torch.nn.Parameter(torch.zeros(3))]
    rmsprop = seed_class("rmsprop")(other)
    with pytest.raises(ValueError, match=r"lacks nothing and has m extra"):
        rmsprop.load_state_dict(adam_state)
    sgdm = seed_class("sgd_momentum")(other)
    with pytest.raises(ValueError, match=r"lacks buf and has m, v extra"):
        sgdm.load_state_dict(adam_state)
    amsgrad = seed_class("amsgrad")(other)
    with pytest.raises(ValueError, match=r"lacks vmax"):
        amsgrad.load_state_dict(adam_state)
    # the same rule still loads, and steps
    adam = seed_class("adam")(other)
    adam.load_state_dict(adam_state)
    other[0].grad = torch.ones(3)
    adam.step()


def test_programs_mutated_by_the_search_export_with_honest_names():
    """Seeds mutated by the search's own mutations (fixed draws): every conventional name that
    survives in the constructor plays its role and accepts its default; the optimizer follows
    the interpreter (maximize included) and its state dict loads back."""
    import numpy as np
    from optforge.dsl.roles import is_conventional, role_problem
    from optforge.search.mutations import mutate
    rng = np.random.default_rng(13)
    renamed = 0
    for i in range(64):
        program = seeds.load_seed(seeds.seed_names()[i % 32])
        for _ in range(1 + i % 4):
            child = mutate(program, rng).child
            program = child if child is not None else program
        cls = optimizer_class(program)
        module = sys.modules[cls.__module__]
        renamed += len(module._RENAMED)
        for h, _ in program.hyperparams:
            if h in params_of(cls) and is_conventional(h):
                assert role_problem(program, h) is None, (h, dsl.format_program(program))
        follow_interpreter(program, cls, sign=-1.0, maximize=True, steps=3)
        params = [torch.nn.Parameter(torch.ones(3, dtype=torch.float64))]
        opt = cls(params)
        cls([torch.nn.Parameter(torch.ones(3))]).load_state_dict(_stepped(opt, params))
    assert renamed > 0  # the draws do change roles
