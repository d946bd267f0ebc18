"""Learning-rate schedules: the factors, and that the trainer hands each step's scheduled
rate to the rule."""

from __future__ import annotations

import math

import pytest
import torch
from optforge.dsl.kernel import compile_kernel
from optforge.evaluators.models import Problem
from optforge.evaluators.schedules import CONSTANT, WARMUP_COSINE, Schedule
from optforge.evaluators.tasks import Task, get_suite
from optforge.evaluators.trainer import train_replicas

from optforge import dsl


def test_warmup_rises_linearly_then_cosine_decays_towards_zero():
    f = [WARMUP_COSINE.factor(k, 100) for k in range(100)]
    assert f[:5] == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0])  # 5% of 100 steps
    assert f[5] == 1.0
    assert all(a >= b for a, b in zip(f[5:], f[6:]))  # non-increasing after warm-up
    assert f[-1] == pytest.approx(0.5 * (1 + math.cos(math.pi * 94 / 95)))
    assert 0 < f[-1] < 1e-3
    assert WARMUP_COSINE.factors(100).tolist() == pytest.approx(f)


def test_no_warmup_starts_at_the_peak_and_constant_is_flat():
    assert Schedule("warmup_cosine", 0.0).factor(0, 10) == 1.0
    assert CONSTANT.factors(7).tolist() == [1.0] * 7


@pytest.mark.parametrize("bad", [dict(kind="linear"), dict(warmup=1.0), dict(warmup=-0.1)])
def test_bad_schedules_are_refused(bad):
    with pytest.raises(ValueError):
        Schedule(**bad)


def test_every_builtin_task_trains_under_warmup_then_cosine():
    for name in ("tiny", "small", "medium"):
        assert all(t.schedule == WARMUP_COSINE for t in get_suite(name).tasks)


class _Ramp(Problem):
    """One scalar parameter with gradient 1 everywhere: plain SGD moves it by exactly the
    sum of the rates it was handed."""

    shapes = (("w", (1,)),)

    def init(self, gen):
        return [torch.zeros(1)]

    def plan(self, gen, steps, batch_size):
        return torch.zeros(steps, 1)

    def loss(self, params, batch):
        return params[0].sum(dim=1) + 100.0  # positive, so never "diverged"

    def val_loss(self, params):
        return params[0].sum(dim=1) + 100.0


@pytest.mark.parametrize("schedule", [WARMUP_COSINE, CONSTANT, Schedule("warmup_cosine", 0.3)])
def test_the_rule_sees_the_scheduled_rate(schedule):
    sgd = compile_kernel(dsl.parse("def sgd(w, g, lr, t):\n    return lr * g\n"))
    task = Task("ramp", "quadratic", (), None, (), steps=40, batch_size=1, metric="w",
                lrs=(0.01, 0.1, 1.0), seeds=(0,), schedule=schedule)
    run = train_replicas(task, sgd, task.lrs, task.seeds, problem=_Ramp())
    total = float(schedule.factors(40).double().sum())
    for lr, (loss,) in zip(task.lrs, run.losses):
        assert loss - 100.0 == pytest.approx(-lr * total, rel=1e-5)


def test_curves_are_recorded_at_checkpoints_and_end_with_the_final_losses():
    sgd = compile_kernel(dsl.parse("def sgd(w, g, lr, t):\n    return lr * g\n"))
    task = Task("ramp", "quadratic", (), None, (), steps=40, batch_size=1, metric="w",
                lrs=(0.01, 0.1, 1.0), seeds=(0, 1))
    run = train_replicas(task, sgd, task.lrs, task.seeds, problem=_Ramp(), record_every=10)
    assert [step for step, _ in run.curve] == [10, 20, 30, 40]
    assert run.curve[-1][1] == run.losses
    f = WARMUP_COSINE.factors(40).double()
    for step, losses in run.curve:
        for lr, row in zip(task.lrs, losses):
            assert row[0] == row[1] == pytest.approx(100.0 - lr * float(f[:step].sum()),
                                                     rel=1e-5)
