"""The evaluator kernel on the model-level language (issue #16) against the reference
interpreter (`dsl.run_group_step`, ``lead=1``), bit for bit: group programs (whole-model
reductions, ``grad_at``) on groups of 2-3 tensors with per-replica learning rates, the
context inputs (`loss`, `hess`, `rows`, `cols`, `numel`) and factored state slots; and the
kernel's contract for them (`grouped`, `elementwise`, `slot_shapes`, `needs`, errors)."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from optforge.dsl.context import MissingContextError, StepContext
from optforge.dsl.interpreter import init_state, run_group_step, run_step
from optforge.dsl.ir import Program, Stmt
from optforge.dsl.kernel import compile_kernel
from optforge.dsl.ops import OPS, OpKind
from optforge.dsl.slots import SlotShape

from optforge import dsl

from .strategies import ALL_OPS, MATRIX_OPS, REDUCTION_OPS, programs

R = 3
GROUPS = [[(6,), (4, 3)], [(2, 5), (3, 2, 2), (1,)], [(4, 3), (3, 4), (5,)]]
FAST = settings(max_examples=40, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


def assert_identical(a: torch.Tensor, b: torch.Tensor) -> None:
    assert a.shape == b.shape and a.dtype == b.dtype, (a.shape, b.shape, a.dtype, b.dtype)
    same = (a == b) | (torch.isnan(a) & torch.isnan(b))
    assert bool(same.all()), f"max difference {(a - b).abs().nan_to_num().max()}"


def kernel_context(ws, t, gen, calls=None) -> StepContext:
    """Every context input for a group `ws` at step `t`: a per-replica loss, a Hessian
    estimate per parameter and a `grad_at` that depends on the perturbation and the
    parameter (each call is counted in `calls`)."""
    dtype = ws[0].dtype
    loss = torch.rand(R, generator=gen, dtype=dtype) + 0.5
    hess = [torch.randn(w.shape, generator=gen, dtype=dtype) for w in ws]

    def grad_at(es):
        if calls is not None:
            calls.append(len(es))
        return [torch.sin(w + e) + 0.1 * t * w for w, e in zip(ws, es)]
    return StepContext(loss=loss, hess=hess, grad_at=grad_at)


def run_group_both(p: Program, shapes, dtype, steps=3, lr=None, hyper=None, seed=0):
    """Run `p` on a group of parameters of `shapes` for `steps` steps with the interpreter
    and with the kernel, comparing every step and (stored) state after every step, and the
    number of `grad_at` calls."""
    gen = torch.Generator().manual_seed(seed)
    ws = [torch.randn((R,) + tuple(s), generator=gen, dtype=dtype) for s in shapes]
    lr = torch.tensor([0.01, 0.1, 0.03], dtype=dtype) if lr is None else lr
    kernel = compile_kernel(p)
    s_ref = [init_state(p, w, lead=1) for w in ws]
    s_ker = [kernel.init_state(w) for w in ws]
    for a, b in zip(s_ker, s_ref):
        assert [x.shape for x in a] == [x.shape for x in b]
    for t in range(1, steps + 1):
        gs = [(torch.rand(w.shape, generator=gen, dtype=dtype) + 0.5) * w
              + 0.1 * torch.randn(w.shape, generator=gen, dtype=dtype) for w in ws]
        ctx_gen = torch.Generator().manual_seed(seed * 1000 + t)
        calls_ref, calls_ker = [], []
        ctx_ref = kernel_context(ws, t, ctx_gen, calls_ref)
        ctx_ker = replace(ctx_ref, grad_at=kernel_context(ws, t, ctx_gen, calls_ker).grad_at)
        steps_ref, s_ref = run_group_step(p, ws, gs, lr, t, s_ref, hyper, lead=1,
                                              context=ctx_ref)
        steps_ker, s_ker = kernel.call_group(ws, gs, lr, t, s_ker, hyper, ctx_ker)
        assert calls_ker == calls_ref
        for a, b in zip(steps_ker, steps_ref):
            assert_identical(a, b)
        for sa, sb in zip(s_ker, s_ref):
            assert len(sa) == len(sb)
            for a, b in zip(sa, sb):
                assert_identical(a, b)
        ws = [w - s for w, s in zip(ws, steps_ref)]
    return kernel


SAM = ("def sam(w, g, lr, t, rho=0.05):\n"
       "    e = rho * g / (global_norm(g) + 1e-12)\n"
       "    return lr * grad_at(e)\n")
CLIPPED = ("def clipped(w, g, lr, t, m, beta=0.9, max_norm=0.5):\n"
           "    c = min(1, max_norm / (global_norm(g) + 1e-6))\n"
           "    m = interp(c * g, m, beta)\n"
           "    return lr * m, m\n")
PRODIGY_LIKE = ("def d(w, g, lr, t, s, beta=0.9):\n"
                "    s = interp(lr * g, s, beta)\n"
                "    d = global_sum(s * g) / (global_norm(s) + global_sum(1.0) + 1e-8)\n"
                "    return lr * d * g / (rms(g) + 1e-8), s\n")
TWO_GRADIENTS = ("def two(w, g, lr, t, rho=0.05):\n"
                 "    a = grad_at(rho * g)\n"
                 "    b = grad_at(-rho * a / (global_norm(a) + 1e-12) + 0.0 * t)\n"
                 "    return lr * (a + b + global_sum(lr)) / 2\n")
CONTEXT_MIX = ("def mix(w, g, lr, t, m, beta=0.9):\n"
               "    m = interp(abs(hess), m, beta)\n"
               "    q = sqrt(max(1, rows / cols)) * numel / (loss + 1)\n"
               "    return lr * q * g / (m + 1e-8) + 0 * global_norm(loss * w), m\n")
GROUP_RULES = [SAM, CLIPPED, PRODIGY_LIKE, TWO_GRADIENTS, CONTEXT_MIX]


@pytest.mark.parametrize("src", GROUP_RULES)
@pytest.mark.parametrize("shapes", GROUPS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_group_rules_agree_with_the_interpreter(src, shapes, dtype):
    kernel = run_group_both(dsl.parse(src), shapes, dtype, steps=4)
    assert kernel.grouped and not kernel.elementwise
    assert kernel.apply is None and kernel.apply_group is not None


def test_grad_at_is_called_once_per_statement_and_step():
    p = dsl.parse(TWO_GRADIENTS)
    kernel = compile_kernel(p)
    ws = [torch.randn(R, 4, 3), torch.randn(R, 5)]
    calls: list[int] = []
    ctx = kernel_context(ws, 1, torch.Generator().manual_seed(0), calls)
    kernel.call_group(ws, ws, 0.1, 1, [(), ()], context=ctx)
    assert calls == [2, 2]
    assert kernel.needs == {"grad_at"} and kernel.passes == 3


# ---- every op inside a group program, every argument kind --------------------------------

def _group_op_program(op: str, kinds: tuple[str, ...]) -> Program:
    """``step = lr * (op(args...) + g) / (global_norm(y) + 1)``: the op on each parameter
    of a group, beside a whole-model reduction of its value."""
    names = {"tensor": "m", "hyper": "a", "t": "t", "lr": "lr", "g": "g", "loss": "loss",
             "rows": "rows", "hess": "hess"}
    args = tuple(names[k] for k in kinds)
    body = (Stmt("y", op, args), Stmt("_2", "add", ("y", "g")),
            Stmt("_3", "global_norm", ("y",)), Stmt("_4", "add", ("_3", 1.0)),
            Stmt("_5", "div", ("_2", "_4")), Stmt("_6", "mul", ("lr", "_5")),
            Stmt("m", "add", ("g", 0.5)))
    return Program(f"group_{op}", ("m",), (("a", 0.7),), body, ("_6", "m"))


@pytest.mark.parametrize("op", sorted(OPS))
def test_every_op_in_a_group(op):
    arity = OPS[op].arity
    kind_sets = [("tensor",) * arity, ("g",) + ("hyper",) * (arity - 1),
                 ("hess",) + ("loss",) * (arity - 1), ("g",) + ("rows",) * (arity - 1)]
    if OPS[op].kind not in (OpKind.MATRIX, OpKind.GRADIENT):
        kind_sets += [("hyper",) * arity, ("lr",) * arity, ("loss",) * arity,
                      ("rows",) * arity]
    for kinds in kind_sets:
        run_group_both(_group_op_program(op, kinds), GROUPS[1], torch.float64, steps=2)


# ---- context inputs and factored slots in per-tensor rules --------------------------------

POLYAK = ("def polyak(w, g, lr, t, m, beta=0.9):\n"
          "    m = interp(g, m, beta)\n"
          "    return lr * loss * m / (g * g + 1), m\n")
ADAHESSIAN_LIKE = ("def ah(w, g, lr, t, m, v, b1=0.9, b2=0.999):\n"
                   "    m = interp(g, m, b1)\n"
                   "    v = interp(hess * hess, v, b2)\n"
                   "    return lr * m / (sqrt(v) + 1e-8), m, v\n")
MUON_SCALE = ("def ms(w, g, lr, t):\n"
              "    return lr * sqrt(max(1, rows / cols)) * g / (sqrt(numel) + norm(g))\n")


@pytest.mark.parametrize("src, flat", [(POLYAK, True), (ADAHESSIAN_LIKE, True),
                                       (MUON_SCALE, False)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_context_inputs_per_tensor(src, flat, dtype):
    for shapes in GROUPS:
        kernel = run_group_both(dsl.parse(src), shapes, dtype, steps=3)
        assert not kernel.grouped and kernel.elementwise is flat


def test_shape_scalars_are_never_hoisted():
    kernel = compile_kernel(dsl.parse(MUON_SCALE))
    prepare = kernel.source.split("def prepare")[1].split("def apply")[0]
    assert "rows" not in prepare and "cols" not in prepare
    assert kernel.needs == {"rows", "cols", "numel"} and kernel.passes == 1


FACTORED = ("def fac(w, g, lr, t, r: row, c: col, s: scalar, m, b=0.9):\n"
            "    r = interp(row_mean(g * g), r, b)\n"
            "    c = interp(col_mean(g * g), c, b)\n"
            "    s = interp(mean(g * g) + global_norm(g), s, b)\n"
            "    m = interp(g, m, b)\n"
            "    return lr * m * rsqrt(r * c / (s + 1e-30) + 1e-30), r, c, s, m\n")


def _factored(src: str, grouped: bool) -> Program:
    return dsl.ensure_valid(dsl.parse(src if grouped else src.replace(" + global_norm(g)", "")))


@pytest.mark.parametrize("grouped", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_factored_slots_are_stored_reduced(grouped, dtype):
    p = _factored(FACTORED, grouped)
    kernel = run_group_both(p, GROUPS[2], dtype, steps=4)
    assert kernel.slot_shapes == (SlotShape.ROW, SlotShape.COL, SlotShape.SCALAR,
                                  SlotShape.FULL)
    assert kernel.grouped is grouped and not kernel.elementwise
    state = kernel.init_state(torch.zeros(R, 4, 3))
    assert [tuple(s.shape) for s in state] == [(R, 4, 1), (R, 1, 3), (R, 1, 1), (R, 4, 3)]


# ---- errors --------------------------------------------------------------------------------

@pytest.mark.parametrize("src, name", [(SAM, "grad_at"), (POLYAK, "loss"),
                                       (ADAHESSIAN_LIKE, "hess")])
def test_missing_context_is_a_clear_error(src, name):
    p = dsl.parse(src)
    kernel = compile_kernel(p)
    w = torch.randn(R, 4, 3, dtype=torch.float64)
    state = kernel.init_state(w)
    with pytest.raises(MissingContextError, match=f"{p.name}.*{name}"):
        kernel(w, w, 0.1, 1, state)
    with pytest.raises(MissingContextError):
        run_step(p, w, w, 0.1, 1, init_state(p, w, lead=1), lead=1)


# ---- random programs on groups ------------------------------------------------------------

@FAST
@given(p=programs(ops=ALL_OPS + REDUCTION_OPS + MATRIX_OPS, max_statements=12, valid=True),
       dtype=st.sampled_from([torch.float32, torch.float64]),
       shapes=st.sampled_from(GROUPS), seed=st.integers(0, 2**16))
def test_random_programs_on_groups(p, dtype, shapes, seed):
    run_group_both(p, shapes, dtype, steps=2, seed=seed)


def test_per_replica_hyperparameters_in_a_group():
    hyper = {"beta": torch.tensor([0.5, 0.9, 0.95], dtype=torch.float64), "max_norm": 0.3}
    kernel = run_group_both(dsl.parse(CLIPPED), GROUPS[1], torch.float64, hyper=hyper)
    assert len(kernel._variants) == 2  # the default and the per-replica-beta variant


def test_a_scalar_lr_and_a_scalar_loss():
    """lr and loss given as plain numbers (0-d), as an exported optimizer has them."""
    p = dsl.parse(CONTEXT_MIX)
    kernel = compile_kernel(p)
    ws = [torch.randn(R, 4, 3, dtype=torch.float64), torch.randn(R, 5, dtype=torch.float64)]
    ctx = replace(kernel_context(ws, 1, torch.Generator().manual_seed(1)), loss=0.25)
    states = [init_state(p, w, lead=1) for w in ws]
    ref, ref_states = run_group_step(p, ws, ws, 0.1, 1, states, lead=1, context=ctx)
    got, got_states = kernel.call_group(ws, ws, 0.1, 1, states, context=ctx)
    for a, b in zip(got + [s for new in got_states for s in new],
                    ref + [s for new in ref_states for s in new]):
        assert_identical(a, b)
