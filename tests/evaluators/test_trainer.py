"""The batched trainer: what a rule does wrong becomes a replica status, never an
exception; the compiled kernel trains exactly as the reference interpreter does; frozen
replicas drop out without changing the others."""

from __future__ import annotations

import itertools
import math

import pytest
from optforge.dsl.context import StepContext
from optforge.dsl.kernel import compile_kernel
from optforge.evaluators import Status, train_replicas, train_task

from optforge import dsl, seeds

from .helpers import EXPLODING_RULE, NAN_RULE, rule, same_floats

pytestmark = pytest.mark.usefixtures("one_thread")


class InterpreterKernel:
    """The kernel interface (`bind`, `prepare`, `apply`) backed by `dsl.run_step`, one call
    per parameter tensor: the trainer's reference."""

    elementwise = False

    def __init__(self, program):
        self.program = program
        self.n_state = len(program.state)

    def bind(self, dtype, device, hyper):
        return dict(hyper or {})

    def prepare(self, t, bound):
        return float(t)

    def apply(self, w, g, lr, state, t, hyper, loss=None, hess=None):
        context = StepContext(loss=None if loss is None else loss.reshape(-1),
                              hess=None if hess is None else [hess])
        return dsl.run_step(self.program, w, g, lr.reshape(-1), t, state, hyper, lead=1,
                            context=context)


def test_same_rule_same_seeds_identical_run(tiny):
    k = compile_kernel(seeds.load_seed("adamw"))
    for task in tiny.tasks:
        a, b = train_task(task, k), train_task(task, k)
        assert same_floats(a.losses, b.losses) and a.statuses == b.statuses
        assert a.steps == b.steps == task.steps


@pytest.mark.parametrize("name", ["adamw", "lamb", "sgd_momentum", "muon"])
def test_the_kernel_trains_exactly_as_the_interpreter(tiny, name):
    """Elementwise rules run flat over all parameters at once, others per tensor; both
    must give the interpreter's numbers."""
    p = seeds.load_seed(name)
    for task in ("mlp_digits", "teacher_student", "quadratic"):
        t = tiny.task(task)
        fast = train_task(t, compile_kernel(p))
        ref = train_task(t, InterpreterKernel(p))
        assert fast.statuses == ref.statuses
        for row_a, row_b in zip(fast.losses, ref.losses):
            for a, b in zip(row_a, row_b):
                assert (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b, rel=1e-5)


def test_nan_and_divergence_are_statuses(tiny):
    task = tiny.task("quadratic")
    run = train_task(task, compile_kernel(rule(NAN_RULE)))
    assert set(run.replica_statuses) == {Status.NAN.value}
    assert all(math.isnan(x) for row in run.losses for x in row)
    assert run.steps <= 1 and run.error is None

    run = train_task(task, compile_kernel(rule(EXPLODING_RULE)))
    assert set(run.replica_statuses) == {Status.DIVERGED.value}


def test_diverging_replicas_drop_out_without_changing_the_others(tiny):
    """SGD with momentum diverges at the large learning rates; the survivors must train
    exactly as they do when run without the diverging replicas at all."""
    task = tiny.task("mlp_digits")
    k = compile_kernel(seeds.load_seed("sgd_momentum"))
    full = train_task(task, k)
    statuses = [row[0] for row in full.statuses]
    assert Status.DIVERGED.value in statuses or Status.NAN.value in statuses
    ok = [lr for lr, s in zip(task.lrs, statuses) if s == Status.OK.value]
    assert len(ok) >= 3
    alone = train_replicas(task, k, ok, task.seeds)
    full_ok = [row for row, s in zip(full.losses, statuses) if s == Status.OK.value]
    for a, b in zip(itertools.chain(*alone.losses), itertools.chain(*full_ok)):
        assert a == pytest.approx(b, rel=1e-5)


def test_time_budget_freezes_replicas_as_timeout(tiny):
    """A fake clock that advances one second per reading: the budget runs out mid-run."""
    ticks = itertools.count()
    task = tiny.task("quadratic").with_(lrs=(1e-3, 1e-2, 1e-1))  # rates that never diverge
    run = train_task(task, compile_kernel(seeds.load_seed("adamw")), time_budget_s=10,
                     clock=lambda: float(next(ticks)))
    assert set(run.replica_statuses) == {Status.TIMEOUT.value}
    assert 0 < run.steps < task.steps


def test_a_budget_of_zero_times_out_before_the_first_step(tiny):
    run = train_task(tiny.task("rosenbrock"), compile_kernel(seeds.load_seed("lion")),
                     time_budget_s=0.0)
    assert run.steps == 0 and set(run.replica_statuses) == {Status.TIMEOUT.value}


class RaisingKernel(InterpreterKernel):
    def apply(self, *args):
        raise RuntimeError("shape mismatch in the rule\nsecond line")


def test_an_exception_in_the_rule_is_an_error_status(tiny):
    run = train_task(tiny.task("logreg_cancer"), RaisingKernel(seeds.load_seed("adamw")))
    assert set(run.replica_statuses) == {Status.ERROR.value}
    assert run.error == "RuntimeError: shape mismatch in the rule"


def test_hyperparameter_overrides(tiny):
    task = tiny.task("quadratic")
    k = compile_kernel(seeds.load_seed("sgd_momentum"))
    plain = train_task(task, k)
    no_momentum = train_task(task, k, hyper={"momentum": 0.0})
    assert not same_floats(plain.losses, no_momentum.losses)
    bad = train_task(task, k, hyper={"nesterov": 1.0})
    assert set(bad.replica_statuses) == {Status.ERROR.value}
    assert "no hyperparameter 'nesterov'" in bad.error


def test_a_rule_that_stores_w_in_its_state(tiny):
    """State aliasing the parameter must not change as the parameter is updated in place."""
    p = rule("def keep_w(w, g, lr, t, prev):\n"
             "    return lr * (g + 0.1 * (w - prev)), w\n")
    t = tiny.task("teacher_student")
    fast = train_task(t, compile_kernel(p))
    ref = train_task(t, InterpreterKernel(p))
    assert fast.statuses == ref.statuses
    for a, b in zip(itertools.chain(*fast.losses), itertools.chain(*ref.losses)):
        assert (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b, rel=1e-5)


def test_losses_are_validation_losses_and_training_helps(tiny):
    run = train_task(tiny.task("logreg_cancer"), compile_kernel(seeds.load_seed("adamw")))
    best = min(x for row in run.losses for x in row if not math.isnan(x))
    assert best < 0.5 * run.initial_losses[0]
