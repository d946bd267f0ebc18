"""The evaluator kernel (`dsl.kernel`) against the reference interpreter (`dsl.run_step`,
``lead=1``): the same values, bit for bit (NaN where the interpreter has NaN), on every op,
every seed rule and random programs; and the kernel's own contract (hoisting, the
elementwise flag, name mangling, the exec namespace)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from optforge.dsl.interpreter import init_state, run_step
from optforge.dsl.ir import Program, Stmt
from optforge.dsl.kernel import RUNTIME_NAMES, Kernel, compile_kernel, kernel_source
from optforge.dsl.ops import OPS, OpKind

from optforge import dsl, seeds

from .strategies import ALL_OPS, MATRIX_OPS, REDUCTION_OPS, programs
from .test_kernel_group import R, kernel_context, run_group_both

SHAPES = [(6,), (4, 3), (2, 5), (3, 2, 2)]
FAST = settings(max_examples=60, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


def run_both(p: Program, shape, dtype, steps=3, lr=None, hyper=None, seed=0):
    """Run `p` for `steps` steps with the interpreter and with the kernel from the same
    parameter, comparing step and state after every step (a group of one, with every
    context input supplied: `kernel_context` in test_kernel_group)."""
    return run_group_both(p, [shape], dtype, steps, lr, hyper, seed)


# ---- every op, every argument kind ---------------------------------------------------------

def _one_op_program(op: str, kinds: tuple[str, ...]) -> Program:
    """``step = lr * (op(args...) + g)`` where each argument is a tensor state slot (updated
    to g), a hyperparameter, t or lr, per `kinds`; the state keeps the op's result too."""
    names = {"tensor": "m", "hyper": "a", "t": "t", "lr": "lr", "g": "g"}
    args = tuple(names[k] for k in kinds)
    body = (Stmt("y", op, args), Stmt("_2", "add", ("y", "g")), Stmt("_3", "mul", ("lr", "_2")),
            Stmt("m", "add", ("g", 0.5)))
    return Program(f"one_{op}", ("m",), (("a", 0.7),), body, ("_3", "m"))


@pytest.mark.parametrize("op", sorted(OPS))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_every_op_on_tensors_and_scalars(op, dtype):
    arity = OPS[op].arity
    kind_sets = [("tensor",) * arity, ("g",) + ("hyper",) * (arity - 1),
                 ("tensor",) + ("t",) * (arity - 1), ("g",) + ("lr",) * (arity - 1)]
    if OPS[op].kind not in (OpKind.MATRIX, OpKind.GRADIENT):  # they need a tensor (checker)
        kind_sets += [("hyper",) * arity, ("lr",) * arity, ("t",) + ("hyper",) * (arity - 1)]
    for kinds in kind_sets:
        p = _one_op_program(op, kinds)
        for shape in SHAPES:
            run_both(p, shape, dtype)


# ---- the seed rules -------------------------------------------------------------------------

@pytest.mark.parametrize("name", seeds.seed_names())
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_every_seed_rule(name, dtype):
    p = seeds.load_seed(name)
    for shape in SHAPES:
        run_both(p, shape, dtype, steps=4)


def test_a_float_lr_and_hyperparameter_overrides():
    p = seeds.load_seed("adamw")
    run_both(p, (4, 3), torch.float64, lr=0.02, hyper={"beta1": 0.5, "weight_decay": 0.1})


def test_per_replica_hyperparameters_compile_a_variant():
    p = seeds.load_seed("adamw")
    hyper = {"beta1": torch.tensor([0.5, 0.9, 0.95], dtype=torch.float64), "eps": 1e-6}
    kernel = run_both(p, (4, 3), torch.float64, hyper=hyper)
    assert len(kernel._variants) == 2  # the default and the per-replica-beta1 variant


def test_unknown_hyperparameter_is_rejected_like_the_interpreter():
    kernel = compile_kernel(seeds.load_seed("adamw"))
    w = torch.zeros(R, 2)
    with pytest.raises(ValueError, match="no hyperparameter 'beta3'"):
        kernel(w, w, 0.1, 1, init_state(kernel.program, w, lead=1), {"beta3": 0.5})


# ---- random programs ------------------------------------------------------------------------

@FAST
@given(p=programs(ops=ALL_OPS + REDUCTION_OPS + MATRIX_OPS * 2, max_statements=12, valid=True),
       dtype=st.sampled_from([torch.float32, torch.float64]),
       shape=st.sampled_from(SHAPES), seed=st.integers(0, 2**16))
def test_random_programs_agree_with_the_interpreter(p, dtype, shape, seed):
    run_both(p, shape, dtype, seed=seed)


@FAST
@given(p=programs(max_statements=12, valid=False), seed=st.integers(0, 2**16))
def test_unchecked_programs_agree_too(p, seed):
    """Programs that fail the checker (a step without g, matrix ops on scalars) still run
    the same way in both, or fail the same way."""
    try:
        run_both(p, (4, 3), torch.float64, seed=seed, steps=2)
    except AssertionError:
        raise
    except Exception as e:  # noqa: BLE001 - then the interpreter must fail as well
        w = torch.randn(R, 4, 3, dtype=torch.float64)
        with pytest.raises(type(e)):
            run_step(p, w, w, torch.ones(R, dtype=torch.float64), 1,
                         init_state(p, w, lead=1), lead=1,
                         context=kernel_context([w], 1, torch.Generator().manual_seed(0)))


# ---- the kernel's own contract ----------------------------------------------------------------

def test_scalar_work_is_hoisted_into_prepare():
    src = kernel_source(seeds.load_seed("adamw"))
    prepare = src.split("def prepare")[1].split("def apply")[0]
    apply = src.split("def apply")[1]
    assert "op_pow(1, h_beta1, v_t)" in prepare  # beta1 ** t: once per step
    assert "pow" not in apply
    assert "torch.lerp(v_m, v_g, w0)" in apply  # interp with a hoisted 1 - beta1


@pytest.mark.parametrize("name, flat", [("adamw", True), ("lion", True), ("sgd_momentum", True),
                                        ("lamb", False), ("muon", False),
                                        ("adafactor", False)])
def test_elementwise_flag(name, flat):
    assert compile_kernel(seeds.load_seed(name)).elementwise is flat


def test_a_reduction_of_scalars_keeps_the_rule_elementwise():
    p = dsl.parse("def r(w, g, lr, t):\n    return norm(lr) * mean(t) * g\n")
    assert compile_kernel(p).elementwise
    run_both(p, (4, 3), torch.float64)


def test_names_that_shadow_the_namespace_are_mangled():
    src = ("def torch(w, g, lr, t, state, bind, op_add=0.5, CONSTANTS=2.0, prepare=0.1):\n"
           "    apply = interp(g, state, op_add) * CONSTANTS\n"
           "    bind = apply + prepare * bind\n"
           "    scalars = lr * bind\n"
           "    return scalars, apply, bind\n")
    p = dsl.parse(src)
    kernel = run_both(p, (5,), torch.float64)
    assert "v_state" in kernel.source and "h_op_add" in kernel.source


def test_reassignment_is_renamed_so_hoisting_reads_the_right_value():
    # x is a hoistable scalar, then reassigned to a tensor, then read as a scalar again
    # through an earlier alias: every assignment must keep its own name.
    src = ("def r(w, g, lr, t, m, b=0.9):\n"
           "    x = b ** t\n"
           "    y = 1 - x\n"
           "    x = g * y\n"
           "    m = interp(x, m, b)\n"
           "    return lr * m / y, m\n")
    run_both(dsl.parse(src), (4, 3), torch.float64, steps=4)


def test_a_state_returned_as_a_constant_or_as_w():
    src = ("def r(w, g, lr, t, a, b, c):\n"
           "    return lr * (g + a + b + c), 0.0, w, lr\n")
    run_both(dsl.parse(src), (4, 3), torch.float64)


def test_the_namespace_has_no_builtins():
    kernel = compile_kernel(seeds.load_seed("lion"))
    _, namespace = kernel._variant(frozenset())
    assert namespace["__builtins__"] == {}
    assert set(namespace) - {"__builtins__"} == ({"torch", "CONSTANTS", "bind", "prepare",
                                                  "apply"} | {f"op_{n}" for n in OPS}
                                                 | set(RUNTIME_NAMES))


def test_constants_that_are_not_python_literals():
    p = Program("r", (), (), (Stmt("_1", "mul", ("g", float("inf"))),
                              Stmt("_2", "add", ("_1", float("nan"))),
                              Stmt("_3", "mul", ("lr", "_2"))), ("_3",))
    run_both(p, (3,), torch.float64)


def test_an_invalid_program_raises_value_error():
    p = Program("r", (), (), (Stmt("_1", "mul", ("g", "nope")),), ("_1",))
    with pytest.raises(ValueError):
        compile_kernel(p)


def test_kernel_is_a_kernel():
    assert isinstance(compile_kernel(seeds.load_seed("adamw")), Kernel)
