"""What the trainers supply to a rule beyond its gradient (issue #16): the loss, a
Hutchinson Hessian estimate, a second gradient at a perturbed point, shape scalars and
factored state; the budget scaled by passes per step; and a rule that reads what it is not
given fails as data, never out of the trainer."""

from __future__ import annotations

import math

import pytest
import torch
from optforge.dsl.kernel import compile_kernel
from optforge.evaluators import get_suite
from optforge.evaluators.models import build_problem
from optforge.evaluators.step_inputs import Probes
from optforge.evaluators.trainer import Status, stream_seed, train_replicas, train_task

from optforge import dsl

from .helpers import ADAHESSIAN, SAM, same_floats

pytestmark = pytest.mark.usefixtures("one_thread")



def small(name: str, steps: int):
    return get_suite("small").task(name).with_(steps=steps)


def best(run) -> float:
    return min(x for row in run.losses for x in row if not math.isnan(x))


@pytest.mark.parametrize("src", [SAM, ADAHESSIAN])
@pytest.mark.parametrize("task_name", ["logreg_cancer", "mlp_digits"])
def test_sam_and_adahessian_lower_the_loss(src, task_name):
    task = small(task_name, 60)
    run = train_task(task, compile_kernel(dsl.parse(src)))
    assert run.error is None and run.steps == task.steps
    assert Status.OK.value in run.replica_statuses
    assert best(run) < 0.8 * min(run.initial_losses)


def test_a_second_gradient_at_w_is_the_gradient():
    """grad_at(0 * g) runs a second forward/backward of the same batch at the same point:
    training with it is training with g, bit for bit."""
    task = small("mlp_digits", 20)
    plain = train_task(task, compile_kernel(dsl.parse("def s(w, g, lr, t):\n"
                                                      "    return lr * g\n")))
    again = train_task(task, compile_kernel(dsl.parse("def s(w, g, lr, t):\n"
                                                      "    return lr * grad_at(0 * g)\n")))
    assert same_floats(plain.losses, again.losses) and plain.statuses == again.statuses


class Recording:
    """A compiled rule that records the loss and Hessian estimate it is given."""

    def __init__(self, kernel):
        self.kernel, self.seen = kernel, []
        for name in ("elementwise", "n_state", "needs", "grouped", "slot_shapes", "passes",
                     "bind", "prepare", "init_state"):
            setattr(self, name, getattr(kernel, name))

    def apply(self, w, g, lr, state, scalars, bound, loss=None, hess=None):
        self.seen.append((loss, hess))
        return self.kernel.apply(w, g, lr, state, scalars, bound, loss, hess)


def test_the_hessian_estimate_of_a_quadratic_is_its_diagonal():
    """On 0.5 * sum(h * (w - o)^2) the Hessian is diag(h): z * (H z) = z^2 h = h exactly,
    whatever the probe; and the loss the rule reads is each row's training loss."""
    task = small("quadratic", 3)
    problem = build_problem(task.model, task.model_kwargs, task.data, task.data_args, "cpu")
    rule = Recording(compile_kernel(dsl.parse(
        "def r(w, g, lr, t):\n    return lr * g * min(1, hess) * min(1, loss)\n")))
    train_task(task, rule, problem=problem)
    assert rule.seen and not rule.elementwise is None
    for loss, hess in rule.seen:
        assert torch.equal(hess, problem.h.expand_as(hess).reshape(hess.shape))
        assert loss.shape[0] == hess.shape[0] and bool((loss > 0).all())


def test_probes_depend_on_task_seed_and_step_only():
    shapes = [(3, 2), (4,)]
    seeds = (0, 7)

    def probes():
        return Probes(lambda s: stream_seed("task", s, "hutchinson"), seeds, shapes)
    a, b = probes(), probes()
    rows = torch.tensor([1, 0, 1])
    for k in range(4):
        za = a.for_rows(k, rows, torch.device("cpu"))
        if k == 3:  # b skipped to step 3: the same probe
            zb = b.for_rows(k, rows, torch.device("cpu"))
            assert all(torch.equal(x, y) for x, y in zip(za, zb))
        assert torch.equal(za[0][0], za[0][2])  # rows of one seed share it
        assert not torch.equal(za[0][0], za[0][1])
        assert set(za[1].unique().tolist()) <= {-1.0, 1.0}


def test_a_hessian_rule_trains_each_seed_and_rate_as_alone():
    """A row's probe depends on (task, seed, step): training one rate of one seed gives
    that replica's numbers from the full grid, bit for bit. (On a model whose gradients do
    not depend on the batch's row count: a one-row batch of some models, e.g. logreg,
    differentiates along another path, for any rule.)"""
    task = small("mlp_digits", 25).with_(seeds=(0, 1))
    kernel = compile_kernel(dsl.parse(ADAHESSIAN))
    full = train_replicas(task, kernel, task.lrs, task.seeds)
    assert Status.OK.value in full.replica_statuses
    for i in range(len(task.lrs)):
        for j, seed in enumerate(task.seeds):
            one = train_replicas(task, kernel, task.lrs[i:i + 1], (seed,))
            assert same_floats(one.losses[0][0], full.losses[i][j])


def test_a_rule_reading_what_its_trainer_lacks_is_an_error_run():
    """A stand-in kernel that does not say it reads the loss: the trainer supplies none,
    the rule raises, the run records it."""
    kernel = compile_kernel(dsl.parse("def r(w, g, lr, t):\n    return lr * loss * g\n"))
    rule = Recording(kernel)
    rule.needs = frozenset()
    run = train_task(small("logreg_cancer", 5), rule)
    assert set(run.replica_statuses) == {Status.ERROR.value}
    assert run.error.startswith("MissingContextError") and "loss" in run.error


class StepClock:
    """A clock that advances `tick` seconds per call."""

    def __init__(self, tick: float):
        self.now, self.tick = 0.0, tick

    def __call__(self) -> float:
        self.now += self.tick
        return self.now


@pytest.mark.parametrize("src, passes", [("def s(w, g, lr, t):\n    return lr * g\n", 1),
                                         (SAM, 2), (ADAHESSIAN, 3)])
def test_the_task_budget_is_scaled_by_passes_per_step(src, passes):
    task = small("quadratic", 50).with_(time_budget_s=1.0)
    kernel = compile_kernel(dsl.parse(src))
    assert kernel.passes == passes
    run = train_task(task, kernel, clock=StepClock(0.3))
    # the budget is checked once per step, a clock call each: 0.3 s per step
    assert run.steps == int(passes / 0.3 + 1e-9)
