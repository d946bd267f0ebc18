"""The learning-rate grid grows past an end where a candidate's best rate lies: a rule that
rescales its own rate is tuned as well as one that does not, and the grid's own rates train
exactly as they would alone."""

from __future__ import annotations

import math

import pytest
from optforge.dsl.kernel import compile_kernel
from optforge.evaluators import Status, TaskRun, train_replicas
from optforge.evaluators.jobs import LR_EXTENSION_STEP, Job, extend_lr_grid, run_job
from optforge.evaluators.scoring import improving_end, task_loss
from optforge.evaluators.tasks import Task, lr_grid, rates_beyond
from optforge.evaluators.trainer import merge_runs

from .helpers import rule, same_floats

pytestmark = pytest.mark.usefixtures("one_thread")

SGD = "def sgd(w, g, lr, t):\n    return lr * g\n"
SGD_SLOW = "def sgd_slow(w, g, lr, t):\n    return 0.001 * lr * g\n"
FIXED_STEP = "def fixed(w, g, lr, t):\n    return 0.01 * sign(g)\n"


def test_rates_beyond_continue_the_grid():
    grid = lr_grid(-4, 2, 2)
    assert rates_beyond(grid, -1, 2) == (1e-05, 3.16e-05)
    assert rates_beyond(grid, 1, 2) == (316.0, 1000.0)
    assert rates_beyond(lr_grid(-4, 2, 1), 1, 3) == (1000.0, 10000.0, 100000.0)
    with pytest.raises(ValueError):
        rates_beyond(grid, 0, 2)


def test_a_merged_run_is_the_run_of_the_whole_grid(tiny):
    task = tiny.task("mlp_digits")
    kernel = compile_kernel(rule(SGD))
    whole = train_replicas(task, kernel, task.lrs, task.seeds)
    low = train_replicas(task, kernel, task.lrs[:3], task.seeds)
    high = train_replicas(task, kernel, task.lrs[3:], task.seeds)
    merged = merge_runs(high, low)
    assert merged.lrs == whole.lrs
    assert same_floats(merged.losses, whole.losses) and merged.statuses == whole.statuses
    with pytest.raises(ValueError):
        merge_runs(low, low)


def test_merged_curves_are_the_curves_of_the_whole_grid(tiny):
    task = tiny.task("mlp_digits")
    kernel = compile_kernel(rule(SGD))
    whole = train_replicas(task, kernel, task.lrs, task.seeds, record_every=10)
    low = train_replicas(task, kernel, task.lrs[:3], task.seeds, record_every=10)
    high = train_replicas(task, kernel, task.lrs[3:], task.seeds, record_every=10)
    merged = merge_runs(high, low)
    assert [step for step, _ in merged.curve] == [10, 20, 30] == \
        [step for step, _ in whole.curve]
    for (_, a), (_, b) in zip(merged.curve, whole.curve):
        assert same_floats(a, b)


def test_a_rescaled_rule_is_tuned_past_the_grid_to_the_plain_rules_loss(tiny):
    """SGD at 0.001 * lr wants rates 1000x the grid's: it gets them, and its loss at rate x
    is plain SGD's at 0.001 * x."""
    task = tiny.task("quadratic").with_(lrs=(0.01, 0.1, 1.0), lr_extension=4)
    slow = run_job(Job(rule(SGD_SLOW), task))
    plain = train_replicas(task, compile_kernel(rule(SGD)),
                           [0.001 * lr for lr in slow.lrs], task.seeds)
    assert slow.lrs == (0.01, 0.1, 1.0, 10.0, 100.0, 1000.0, 10000.0)
    _, best_lr, means = task_loss(slow)
    _, plain_best, plain_means = task_loss(plain)
    assert best_lr > 1.0 and best_lr == pytest.approx(1000 * plain_best)
    # element by element: None (every replica failed) where plain SGD has None, and
    # pytest.approx takes no None
    assert [m is None for m in means] == [m is None for m in plain_means]
    for m, expected in zip(means, plain_means, strict=True):
        if expected is not None:
            assert m == pytest.approx(expected, rel=1e-4)


def test_the_grid_stays_when_the_best_rate_is_inside_or_the_rate_is_ignored(tiny):
    task = tiny.task("quadratic")
    for source in (SGD, FIXED_STEP):
        run = run_job(Job(rule(source), task))
        assert run.lrs == task.lrs, source
    assert improving_end(run) == 0  # every rate gives the same loss


def test_the_extension_stops_at_its_limit(tiny):
    task = tiny.task("quadratic").with_(lrs=(0.01, 0.1, 1.0), lr_extension=LR_EXTENSION_STEP)
    assert run_job(Job(rule(SGD_SLOW), task)).lrs == (0.01, 0.1, 1.0, 10.0, 100.0)
    assert run_job(Job(rule(SGD_SLOW), task.with_(lr_extension=0))).lrs == (0.01, 0.1, 1.0)


def _run(lrs, means) -> TaskRun:
    return TaskRun("fake", tuple(lrs), (0,), tuple((m,) for m in means),
                   tuple(((Status.OK.value,) if math.isfinite(m) else (Status.DIVERGED.value,))
                         for m in means), (10.0,), steps=1, wall_time=1.0)


def test_extension_follows_the_loss_down_and_stops_where_it_turns():
    """A valley at 1e-6: the grid grows downwards until the loss turns up again."""
    def loss(lr):
        return 1.0 + abs(math.log10(lr) + 6)

    trained = []

    def train(lrs, budget_s):
        trained.append(lrs)
        return _run(lrs, [loss(x) for x in lrs])

    task_lrs = (1e-4, 1e-3, 1e-2)
    task = Task("fake", "quadratic", (), None, (), 1, 1, "m", task_lrs, (0,), lr_extension=8)
    run = extend_lr_grid(task, _run(task_lrs, [loss(x) for x in task_lrs]), train, 60.0)
    assert trained == [(1e-6, 1e-5), (1e-8, 1e-7)]
    assert task_loss(run)[1] == 1e-6 and improving_end(run) == 0


def test_no_extension_without_time_left_or_past_a_failing_end():
    task = Task("fake", "quadratic", (), None, (), 1, 1, "m", (1e-3, 1e-2, 1e-1), (0,))

    def train(lrs, budget_s):
        raise AssertionError("nothing should be trained")
    improving_high = _run(task.lrs, [3.0, 2.0, 1.0])
    assert extend_lr_grid(task, improving_high, train, budget_s=1.0) is improving_high
    diverged_high = _run(task.lrs, [3.0, 1.0, math.nan])
    assert improving_end(diverged_high) == 0
    assert improving_end(_run(task.lrs, [1.0, math.nan, 2.0])) == -1
