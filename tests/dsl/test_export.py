"""The exported optimizer module against the reference interpreter.

The interpreter is the reference: every path of the exported optimizer (per parameter,
foreach, compile=True) must take the interpreter's steps, for every seed, in float64, float32
and bfloat16, on 0-d, vector, matrix and 3-d parameters, and for random programs over the
whole op table. Then the torch.optim contract: state_dict round trips, param groups, betas,
closures, parameters without gradients, sparse gradients, schedulers; and the module itself:
only torch is imported, names are mangled, the docstring carries the math and provenance.

torch.compile is slow (about 10 s per compiled rule here), so the default run compiles four
representative rules (elementwise, reductions, Newton–Schulz, matrix means in bfloat16);
OPTFORGE_COMPILE_ALL=1 compiles every seed.
"""

from __future__ import annotations

import ast
import copy
import dataclasses
import importlib.util
import io
import math
import os
import sys
from functools import lru_cache

import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from optforge.dsl import OPS, Program, Stmt
from optforge.dsl.export import (
    RESERVED_HYPERPARAMETER_NAMES,
    ExportError,
    default_class_name,
    export_module,
    optimizer_class,
)
from optforge.dsl.export.names import _exported_program
from optforge.dsl.roles import export_names

from optforge import dsl, seeds

from .test_closure_export import coupled, follow_group

SHAPES = [(), (7,), (5, 8), (3, 4, 2)]
STEPS = 8
# seeds whose step of a tensor depends on that tensor alone: followed one tensor at a time here;
# the others (whole-group ops, loss, hess, grad_at) in tests/dsl/test_closure_export.py
PER_TENSOR_SEEDS = tuple(n for n in seeds.seed_names() if not coupled(seeds.load_seed(n)))


@lru_cache(maxsize=None)
def seed_class(name: str):
    return optimizer_class(seeds.load_seed(name), provenance=f"seed '{name}'",
                           default_lr=seeds.seed_info(name).lr)


def module_of(cls):
    return sys.modules[cls.__module__]


def lr_for(name: str) -> float:
    return 1.0 if name == "adadelta" else 0.01


def random_grads(shapes, dtype, gen):
    return [torch.randn(s, generator=gen, dtype=torch.float64).to(dtype) for s in shapes]


def run_free(program: Program, cls, dtype, lr, hyper=None, shapes=SHAPES, steps=STEPS,
             seed=0, reference_dtype=None, **opt_kwargs):
    """Run the exported optimizer and the interpreter side by side from the same start on the
    same gradients; return both trajectories of (params, states) per step. The interpreter
    runs in `reference_dtype` (default: `dtype`) on the same values."""
    gen = torch.Generator().manual_seed(seed)
    w0 = random_grads(shapes, dtype, gen)
    params = [torch.nn.Parameter(w.clone()) for w in w0]
    opt = cls(params, lr=lr, **(hyper or {}), **opt_kwargs)
    keys = module_of(cls)._STATE_KEYS
    ref = reference_dtype or dtype
    ws = [w.to(ref) for w in w0]
    states = [dsl.init_state(program, w) for w in ws]
    out = []
    for t in range(1, steps + 1):
        grads = random_grads(shapes, dtype, gen)
        for p, g in zip(params, grads):
            p.grad = g.clone()
        opt.step()
        for i, g in enumerate(grads):
            step, states[i] = dsl.run_step(program, ws[i], g.to(ref), lr, t, states[i], hyper)
            ws[i] = ws[i] - step
        exported = [(p.detach().to(ref, copy=True), [opt.state[p][k].to(ref, copy=True)
                                                       for k in keys])
                    for p in params]
        interpreted = [(w.clone(), [s.clone() for s in sts]) for w, sts in zip(ws, states)]
        out.append((exported, interpreted))
    return out


def assert_trajectories_close(pairs, rtol, atol, what):
    for t, (exported, interpreted) in enumerate(pairs, start=1):
        for i, ((pe, se), (pi, si)) in enumerate(zip(exported, interpreted)):
            torch.testing.assert_close(pe, pi, rtol=rtol, atol=atol, equal_nan=True,
                                       msg=lambda m: f"{what}: param {i} step {t}: {m}")
            for k, (a, b) in enumerate(zip(se, si)):
                torch.testing.assert_close(a, b.expand_as(a), rtol=rtol, atol=atol,
                                           equal_nan=True,
                                           msg=lambda m: f"{what}: state {k} of param {i} "
                                                         f"step {t}: {m}")


TOLERANCE = {torch.float64: (1e-11, 1e-13), torch.float32: (2e-5, 1e-6)}


# ---- every seed, every eager path, float64 and float32 ----------------------------------------

@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize("path", ["per_param", "foreach"])
@pytest.mark.parametrize("name", PER_TENSOR_SEEDS)
def test_eager_paths_agree_with_interpreter(name, path, dtype):
    program = seeds.load_seed(name)
    # float32: against the interpreter in float64 on the same values, the exact step of which
    # the exported optimizer (float64 scalars, as torch.optim) is an approximation; the
    # float32 interpreter is a coarser one (1 - 0.9999 is 1.7e-4 off in float32)
    pairs = run_free(program, seed_class(name), dtype, lr_for(name),
                     foreach=(path == "foreach"), reference_dtype=torch.float64)
    rtol, atol = TOLERANCE[dtype]
    assert_trajectories_close(pairs, rtol, atol, f"{name} {path} {dtype}")


# ---- bfloat16: state in float32, parameter rounded once per step --------------------------------

def run_teacher_forced(program, cls, lr, opt_kwargs, shapes=SHAPES, steps=6, seed=0,
                       dtype=torch.bfloat16):
    """Each step: the interpreter in float32 from the exported optimizer's own parameter and
    state; the parameter must be (w - step) rounded to bfloat16 once."""
    gen = torch.Generator().manual_seed(seed)
    params = [torch.nn.Parameter(w) for w in random_grads(shapes, dtype, gen)]
    opt = cls(params, lr=lr, **opt_kwargs)
    keys = module_of(cls)._STATE_KEYS
    for t in range(1, steps + 1):
        grads = random_grads(shapes, dtype, gen)
        before = []
        for p, g in zip(params, grads):
            p.grad = g
            st_ = opt.state.get(p)
            state = ([st_[k].clone() for k in keys] if st_ else
                     list(dsl.init_state(program, p.detach().float())))
            before.append((p.detach().clone(), state))
        opt.step()
        for i, (p, g) in enumerate(zip(params, grads)):
            w_before, state = before[i]
            assert all(opt.state[p][k].dtype == torch.float32 for k in keys)
            # the reference in float64 from the same float32 state: the exported float32
            # step (float64 scalars) approximates it better than a float32 interpreter would
            step, new = dsl.run_step(program, w_before.double(), g.double(), lr, t,
                                     [s.double() for s in state])
            expected = (w_before.double() - step).to(dtype)
            # one bfloat16 rounding of float32 values that differ in the last float32 bits:
            # at most one bfloat16 unit in the last place apart
            torch.testing.assert_close(p.detach().float(), expected.float(), rtol=2 ** -7,
                                       atol=1e-30, equal_nan=True,
                                       msg=lambda m: f"param {i} step {t}: {m}")
            for k, (a, b) in enumerate(zip((opt.state[p][k] for k in keys), new)):
                torch.testing.assert_close(a, b.float().expand_as(a), rtol=1e-5, atol=1e-7,
                                           equal_nan=True,
                                           msg=lambda m: f"state {k} param {i} step {t}: {m}")


@pytest.mark.parametrize("path", ["per_param", "foreach"])
@pytest.mark.parametrize("name", PER_TENSOR_SEEDS)
def test_bfloat16_parameters(name, path):
    run_teacher_forced(seeds.load_seed(name), seed_class(name), lr_for(name),
                       {"foreach": path == "foreach"})


# ---- compile=True -------------------------------------------------------------------------------

COMPILE_CASES = [("adamw", torch.float64), ("lamb", torch.float32), ("muon", torch.float32),
                 ("adafactor", torch.bfloat16)]
if os.environ.get("OPTFORGE_COMPILE_ALL"):
    COMPILE_CASES = [(n, d) for n in PER_TENSOR_SEEDS
                     for d in (torch.float64, torch.float32, torch.bfloat16)]


@pytest.mark.parametrize("name,dtype", COMPILE_CASES, ids=lambda x: str(x))
def test_compiled_path_agrees_with_interpreter(name, dtype):
    program = seeds.load_seed(name)
    if dtype == torch.bfloat16:
        run_teacher_forced(program, seed_class(name), lr_for(name), {"compile": True},
                           steps=4)
        return
    pairs = run_free(program, seed_class(name), dtype, lr_for(name), steps=5, compile=True)
    rtol, atol = TOLERANCE[dtype]
    assert_trajectories_close(pairs, rtol, atol, f"{name} compile {dtype}")


# ---- random programs over the whole op table ----------------------------------------------------

_CONSTANTS = [0.0, 0.5, 1.0, 2.0, -1.5, 1e-8, 3.0]


@st.composite
def random_programs(draw) -> Program:
    state = [f"m{i}" for i in range(draw(st.integers(0, 2)))]
    hyper = [(f"h{i}", draw(st.sampled_from([0.5, 0.9, 2.0, -1.0])))
             for i in range(draw(st.integers(0, 2)))]
    tensors = ["w", "g"] + state
    scalars = ["lr", "t"] + [h for h, _ in hyper]
    # context inputs (dsl.context): the loss and shape scalars, the Hessian estimate
    scalars += draw(st.sampled_from([[], [], ["loss"], ["rows", "cols", "numel"]]))
    tensors += draw(st.sampled_from([[], [], ["hess"]]))
    body = []
    for i in range(draw(st.integers(1, 9))):
        op = draw(st.sampled_from(sorted(OPS)))
        args = []
        for _ in range(OPS[op].arity):
            kind = draw(st.sampled_from(["tensor", "tensor", "scalar", "const"]))
            if kind == "tensor":
                args.append(draw(st.sampled_from(tensors)))
            elif kind == "scalar":
                args.append(draw(st.sampled_from(scalars)))
            else:
                args.append(draw(st.sampled_from(_CONSTANTS)))
        target = draw(st.sampled_from([f"v{i}"] + state)) if state else f"v{i}"
        body.append(Stmt(target, op, tuple(args)))
        is_tensor = any(isinstance(a, str) and a in tensors for a in args)
        if is_tensor:
            if target not in tensors:
                tensors.append(target)
            if target in scalars:
                scalars.remove(target)
        else:  # a scalar value, also when a state variable is reassigned one
            if target in tensors:
                tensors.remove(target)
            if target not in scalars:
                scalars.append(target)
        assume(tensors)
    # mostly the latest tensor, so that long chains of statements stay live
    step = draw(st.sampled_from(tensors[-1:] * 3 + tensors))
    rets = [draw(st.sampled_from(tensors[-2:] * 2 + tensors + scalars + [0.5])) for _ in state]
    return Program("fuzz", tuple(state), tuple(hyper), tuple(body), (step, *rets))


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.filter_too_much,
                                                                  HealthCheck.too_slow])
@given(random_programs())
def test_random_programs_agree_with_interpreter(program):
    assume(dsl.check(program).ok)
    cls = optimizer_class(program)
    for path in ("per_param", "foreach"):
        if coupled(program):  # whole-group ops, loss, hess, grad_at: one group, a closure
            follow_group(program, cls, [(), (4,), (3, 5)], 0.1, steps=3, rtol=1e-9,
                         atol=1e-12, foreach=(path == "foreach"))
            continue
        pairs = run_free(program, cls, torch.float64, 0.1, shapes=[(), (4,), (3, 5)], steps=3,
                         foreach=(path == "foreach"))
        assert_trajectories_close(pairs, 1e-9, 1e-12, f"{path}\n{dsl.format_program(program)}")


def test_a_state_overwritten_before_a_reduction_of_it_is_read():
    """logsumexp of a 0-d state is the state's value: the updater must not alias it, since
    the state is overwritten before the result is stored (found by the fuzz above)."""
    program = Program("fuzz", ("m0", "m1"), (), (
        Stmt("v0", "abs", ("w",)), Stmt("v1", "logsumexp", ("m0",)),
        Stmt("m0", "abs", ("w",))), ("g", "v0", "v1"))
    cls = optimizer_class(program)
    for path in ("per_param", "foreach"):
        pairs = run_free(program, cls, torch.float64, 0.1, shapes=[(), (4,)], steps=3,
                         foreach=(path == "foreach"))
        assert_trajectories_close(pairs, 1e-12, 1e-14, path)


def test_scalar_section_follows_ieee_like_the_interpreter():
    """1 / (t - 1) is inf at t = 1 and 0 ** -1 is inf: no Python ZeroDivisionError, and the
    same values as the interpreter."""
    src = ("def r(w, g, lr, t, m):\n"
           "    c = min(1 / (t - 1), 5) + min(0 ** -1, 2) + max(sqrt(t - 2), 0)\n"
           "    m = interp(g, m, 0.9)\n"
           "    return lr * c * m + lr * g / (t - 1) * 0, m\n")
    program = dsl.parse(src)
    cls = optimizer_class(program)
    for path in ("per_param", "foreach"):
        pairs = run_free(program, cls, torch.float64, 0.1, steps=4,
                         foreach=(path == "foreach"))
        assert_trajectories_close(pairs, 1e-12, 1e-14, path)
        assert torch.isnan(pairs[0][1][1][0]).all()  # lr * g / 0 * 0 is nan at t = 1


def test_number_divided_by_tensor_is_a_true_division():
    """torch computes `number / tensor` as reciprocal(tensor) * number; the export must divide
    as the interpreter does (bitwise here: the same division kernel)."""
    program = dsl.parse("def r(w, g, lr, t):\n    return lr * (3.0 / g + 7.0 / (g + 1))\n")
    cls = optimizer_class(program)
    gen = torch.Generator().manual_seed(3)
    g = torch.randn(1000, generator=gen, dtype=torch.float64)
    w = torch.randn(1000, generator=gen, dtype=torch.float64)
    for foreach in (False, True):
        p = torch.nn.Parameter(w.clone())
        p.grad = g.clone()
        cls([p], lr=1.0, foreach=foreach).step()
        step, _ = dsl.run_step(program, w, g, 1.0, 1, ())
        assert torch.equal(p.detach(), w - step)


# ---- the optimizer contract ---------------------------------------------------------------------

def _model(dtype=torch.float32, seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.Tanh(), torch.nn.Linear(5, 1)
                               ).to(dtype)


def _train(model, opt, batches):
    for x, y in batches:
        opt.zero_grad()
        loss = ((model(x.to(next(model.parameters()).dtype)) - y.to(x.dtype)) ** 2).mean()
        loss.backward()
        opt.step()


def _batches(n, seed=1):
    gen = torch.Generator().manual_seed(seed)
    return [(torch.randn(8, 6, generator=gen), torch.randn(8, 1, generator=gen))
            for _ in range(n)]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64], ids=str)
@pytest.mark.parametrize("path", ["per_param", "foreach"])
@pytest.mark.parametrize("name", ["adamw", "adafactor", "nadam"])
def test_state_dict_resume_matches_uninterrupted_training(name, path, dtype):
    cls = seed_class(name)
    kw = {"foreach": path == "foreach"}
    batches = _batches(12)
    whole = _model(dtype)
    opt = cls(whole.parameters(), lr=0.01, **kw)
    _train(whole, opt, batches)

    first = _model(dtype)
    opt1 = cls(first.parameters(), lr=0.01, **kw)
    _train(first, opt1, batches[:5])
    buffer = io.BytesIO()
    torch.save({"model": first.state_dict(), "opt": opt1.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    resumed = _model(dtype, seed=99)  # different initial weights, overwritten by the load
    resumed.load_state_dict(saved["model"])
    opt2 = cls(resumed.parameters(), lr=0.5, **kw)  # the saved lr wins, as in torch
    opt2.load_state_dict(saved["opt"])
    _train(resumed, opt2, batches[5:])

    for a, b in zip(whole.parameters(), resumed.parameters()):
        assert torch.equal(a, b)
    keys = module_of(cls)._STATE_KEYS
    for a, b in zip(whole.parameters(), resumed.parameters()):
        sa, sb = opt.state[a], opt2.state[b]
        assert sa["step"] == sb["step"] == 12
        for k in keys:
            assert sb[k].dtype == (torch.float32 if dtype == torch.bfloat16 else dtype)
            assert torch.equal(sa[k], sb[k])


def test_param_groups_have_their_own_hyperparameters():
    cls = seed_class("adamw")
    a, b = _model(), _model()
    a_layers, b_layers = list(a.children()), list(b.children())
    grouped = cls([{"params": a_layers[0].parameters()},
                   {"params": a_layers[2].parameters(), "lr": 0.1, "betas": (0.5, 0.6),
                    "weight_decay": 0.3}], lr=0.01)
    first = cls(b_layers[0].parameters(), lr=0.01)
    second = cls(b_layers[2].parameters(), lr=0.1, beta1=0.5, beta2=0.6, weight_decay=0.3)
    batches = _batches(4)
    for x, y in batches:
        for model, opts in ((a, [grouped]), (b, [first, second])):
            for o in opts:
                o.zero_grad()
            ((model(x) - y) ** 2).mean().backward()
            for o in opts:
                o.step()
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)
    assert grouped.param_groups[1]["betas"] == (0.5, 0.6)


def test_betas_as_torch_takes_them():
    cls = seed_class("adam")
    p = [torch.nn.Parameter(torch.zeros(3))]
    assert cls(p, betas=(0.8, 0.9)).defaults["betas"] == (0.8, 0.9)
    assert cls(p, beta1=0.8, beta2=0.9).defaults["betas"] == (0.8, 0.9)
    assert cls(p, beta1=0.8, betas=(0.8, 0.95)).defaults["betas"] == (0.8, 0.95)
    with pytest.raises(ValueError, match="either betas or beta1, beta2"):
        cls(p, beta1=0.7, betas=(0.8, 0.9))
    with pytest.raises(ValueError, match="2 values"):
        cls(p, betas=(0.8, 0.9, 0.99))
    opt = cls(p)
    opt.add_param_group({"params": [torch.nn.Parameter(torch.zeros(2))], "beta2": 0.5})
    assert opt.param_groups[1]["betas"] == (0.9, 0.5) and "beta2" not in opt.param_groups[1]
    three = seed_class("adan")
    assert three(p, betas=(0.1, 0.2, 0.3)).defaults["betas"] == (0.1, 0.2, 0.3)
    with pytest.raises(TypeError, match="no beta1"):
        seed_class("sgd_momentum")(p, betas=(0.9, 0.99))


def test_constructor_signature_and_validation():
    import inspect
    cls = seed_class("adamw")
    sig = inspect.signature(cls.__init__)
    assert list(sig.parameters)[:7] == ["self", "params", "lr", "beta1", "beta2", "eps",
                                        "weight_decay"]
    assert sig.parameters["lr"].default == 0.001  # the seed's (torch's) default
    assert sig.parameters["weight_decay"].default == 0.01
    assert {"betas", "foreach", "compile"} <= set(sig.parameters)
    assert seed_class("lion").__init__.__defaults__[0] == 1e-4
    p = [torch.nn.Parameter(torch.zeros(3))]
    with pytest.raises(ValueError, match="Invalid learning rate"):
        cls(p, lr=-1.0)
    with pytest.raises(TypeError, match="eps must be a number"):
        cls(p, eps="small")
    assert cls(p, lr=torch.tensor(0.5)).defaults["lr"] == 0.5


def test_closure_and_parameters_without_gradients():
    cls = seed_class("adam")
    program = seeds.load_seed("adam")
    used = torch.nn.Parameter(torch.randn(4, dtype=torch.float64))
    unused = torch.nn.Parameter(torch.randn(3, dtype=torch.float64))
    start_used, start_unused = used.detach().clone(), unused.detach().clone()
    opt = cls([used, unused], lr=0.1)
    calls = []

    def closure():
        calls.append(torch.is_grad_enabled())
        opt.zero_grad()
        loss = (used ** 2).sum()
        loss.backward()
        return loss

    loss = opt.step(closure)
    assert calls == [True] and float(loss.detach()) == float((start_used ** 2).sum())
    assert torch.equal(unused.detach(), start_unused) and unused not in opt.state
    step, _ = dsl.run_step(program, start_used, 2 * start_used, 0.1, 1,
                           dsl.init_state(program, start_used))
    torch.testing.assert_close(used.detach(), start_used - step, rtol=1e-14, atol=0)
    # a parameter that gets its first gradient at the optimizer's second step starts at t=1
    unused.grad = torch.ones(3, dtype=torch.float64)
    used.grad = None
    opt.step()
    assert opt.state[unused]["step"] == 1 and opt.state[used]["step"] == 1
    step, _ = dsl.run_step(program, start_unused, unused.grad, 0.1, 1,
                           dsl.init_state(program, start_unused))
    torch.testing.assert_close(unused.detach(), start_unused - step, rtol=1e-14, atol=0)


def test_parameters_at_different_step_counts_share_a_foreach_group():
    program = seeds.load_seed("adam")
    cls = seed_class("adam")
    a = torch.nn.Parameter(torch.randn(5, dtype=torch.float64))
    b = torch.nn.Parameter(torch.randn(5, dtype=torch.float64))
    wa, wb = a.detach().clone(), b.detach().clone()
    sa, sb = dsl.init_state(program, wa), dsl.init_state(program, wb)
    opt = cls([a, b], lr=0.1, foreach=True)
    gen = torch.Generator().manual_seed(0)
    for t in range(1, 5):
        ga = torch.randn(5, generator=gen, dtype=torch.float64)
        gb = torch.randn(5, generator=gen, dtype=torch.float64)
        a.grad = ga
        b.grad = gb if t > 1 else None  # b starts one step later
        opt.step()
        step, sa = dsl.run_step(program, wa, ga, 0.1, t, sa)
        wa = wa - step
        if t > 1:
            step, sb = dsl.run_step(program, wb, gb, 0.1, t - 1, sb)
            wb = wb - step
    torch.testing.assert_close(a.detach(), wa, rtol=1e-13, atol=0)
    torch.testing.assert_close(b.detach(), wb, rtol=1e-13, atol=0)


def test_sparse_gradients_and_complex_parameters_are_refused():
    cls = seed_class("adam")
    emb = torch.nn.Embedding(10, 3, sparse=True)
    opt = cls(emb.parameters())
    emb(torch.tensor([1, 2])).sum().backward()
    with pytest.raises(RuntimeError, match="does not support sparse gradients"):
        opt.step()
    z = torch.nn.Parameter(torch.zeros(3, dtype=torch.complex64))
    z.grad = torch.ones(3, dtype=torch.complex64)
    with pytest.raises(RuntimeError, match="complex"):
        cls([z]).step()


def test_lr_schedulers_drive_the_learning_rate():
    program = seeds.load_seed("sgd_momentum")
    cls = seed_class("sgd_momentum")
    p = torch.nn.Parameter(torch.ones(3, dtype=torch.float64))
    opt = cls([p], lr=1.0)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    w, state = torch.ones(3, dtype=torch.float64), dsl.init_state(program, p.detach())
    for t in range(1, 5):
        p.grad = torch.full((3,), float(t), dtype=torch.float64)
        lr = opt.param_groups[0]["lr"]
        opt.step()
        sched.step()
        step, state = dsl.run_step(program, w, p.grad, lr, t, state)
        w = w - step
    assert opt.param_groups[0]["lr"] == 1.0 / 16
    torch.testing.assert_close(p.detach(), w, rtol=1e-14, atol=0)
    # a scheduler that cycles momentum through betas[0] works on a betas rule
    q = torch.nn.Parameter(torch.ones(3))
    adam = seed_class("adam")([q], lr=0.01)
    cycle = torch.optim.lr_scheduler.OneCycleLR(adam, max_lr=0.1, total_steps=10)
    q.grad = torch.ones(3)
    adam.step()
    cycle.step()
    assert adam.param_groups[0]["betas"][0] != 0.9


def test_non_contiguous_parameters():
    program = seeds.load_seed("adafactor")
    cls = seed_class("adafactor")
    base = torch.randn(6, 4, dtype=torch.float64)
    p = torch.nn.Parameter(base.t())  # a transposed, non-contiguous view
    assert not p.is_contiguous()
    w = p.detach().clone()
    state = dsl.init_state(program, w)
    opt = cls([p], lr=0.05)
    for t in range(1, 4):
        g = torch.randn(4, 6, dtype=torch.float64).t().contiguous().t()
        p.grad = g
        opt.step()
        step, state = dsl.run_step(program, w, g, 0.05, t, state)
        w = w - step
    torch.testing.assert_close(p.detach(), w, rtol=1e-12, atol=1e-14)


# ---- the module ---------------------------------------------------------------------------------

def _imports(source: str) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            names.add((node.module or "").split(".")[0])
    return names


@pytest.mark.parametrize("name", seeds.seed_names())
def test_module_imports_only_torch_and_documents_the_rule(name):
    program = seeds.load_seed(name)
    source = export_module(program, provenance=f"seed '{name}'")
    assert _imports(source) <= {"torch"} | set(sys.stdlib_module_names)
    tree = ast.parse(source)
    doc = ast.get_docstring(tree)
    lines = {line.strip() for line in doc.splitlines()}
    exported = _exported_program(program, export_names(program, RESERVED_HYPERPARAMETER_NAMES))
    assert all(line.strip() in lines for line in dsl.to_latex(exported).splitlines())
    assert f"seed '{name}'" in doc and dsl.structural_hash(program) in doc
    bare = dsl.format_program(dataclasses.replace(exported, doc=""))
    assert all(line.strip() in lines for line in bare.splitlines())


def test_written_module_imports_from_a_file_and_trains(tmp_path):
    source = export_module(seeds.load_seed("lion"), "MyLion", "seed 'lion'", 1e-4)
    path = tmp_path / "my_lion.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("my_lion", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.__all__ == ["MyLion"] and module.MyLion.__doc__
    assert dsl.parse(module.RULE_SOURCE) == seeds.load_seed("lion")
    model = _model()
    opt = module.MyLion(model.parameters(), lr=1e-3)
    batches = _batches(30)
    x, y = batches[0]
    with torch.no_grad():
        before = float(((model(x) - y) ** 2).mean())
    for _ in range(3):
        _train(model, opt, [batches[0]])
    with torch.no_grad():
        assert float(((model(x) - y) ** 2).mean()) < before


def test_identifiers_are_mangled():
    """Rule names that are Python/torch/generated-code names do not collide with anything."""
    src = ("def torch(w, g, lr, t, self, F, S, x0, beta1=0.9, k=2.0, math=0.5, w32=0.1,\n"
           "          _scalars=1.0, values=3.0, group=0.2):\n"
           "    F = interp(g, F, beta1) + k * S * math\n"
           "    x0 = sqrt(abs(F)) + _scalars * values * group\n"
           "    S = self + w32\n"
           "    self = max(x0, self)\n"
           "    return lr * F / (x0 + 1), self, F, S, x0\n")
    program = dsl.parse(src)
    assert dsl.check(program).ok
    cls = optimizer_class(program, class_name="Torch")
    for path in ("per_param", "foreach"):
        pairs = run_free(program, cls, torch.float64, 0.1, steps=4,
                         foreach=(path == "foreach"))
        assert_trajectories_close(pairs, 1e-12, 1e-14, path)
    assert module_of(cls)._STATE_KEYS == ("self", "F", "S", "x0")


def test_unusable_names_are_refused():
    program = dsl.parse("def r(w, g, lr, t, params=1.0):\n    return lr * params * g\n")
    with pytest.raises(ExportError, match="'params'"):
        export_module(program)
    sgd = seeds.load_seed("sgd")
    for bad in ("class", "9lives", "torch", "RULE_SOURCE", "__init__", "a-b"):
        with pytest.raises(ExportError, match="class name"):
            export_module(sgd, bad)
    with pytest.raises(ExportError, match="learning rate"):
        export_module(sgd, default_lr=-1)
    state_named_step = dsl.parse("def r(w, g, lr, t, step):\n    step = step + g\n"
                                 "    return lr * step, step\n")
    cls = optimizer_class(state_named_step)
    assert module_of(cls)._STATE_KEYS == ("step_",)


def test_invalid_rules_are_not_exported():
    bad = dsl.parse("def r(w, g, lr, t, m):\n    return lr * m, m\n")
    with pytest.raises(dsl.RuleError, match="depend on the gradient"):
        export_module(bad)


def test_default_class_names():
    assert default_class_name(seeds.load_seed("sgd_momentum")) == "SgdMomentum"
    assert default_class_name(seeds.load_seed("adamw")) == "Adamw"
    assert default_class_name(dsl.parse("def _3x(w, g, lr, t):\n    return lr * g\n")) == "Rule3x"


def test_optimizers_pickle_and_deepcopy():
    cls = seed_class("adam")
    p = torch.nn.Parameter(torch.ones(3))
    opt = cls([p], lr=0.1)
    p.grad = torch.ones(3)
    opt.step()
    clone = copy.deepcopy(opt)
    assert clone.state_dict()["state"][0]["step"] == 1
    assert math.isclose(clone.param_groups[0]["lr"], 0.1)
