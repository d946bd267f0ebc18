"""Evaluating candidates in this process: scores against the cached baselines, determinism,
and failure as data."""

from __future__ import annotations

import pytest
from optforge.evaluators import (
    SCORE_FLOOR,
    Status,
    baseline_programs,
    ensure_baselines,
    evaluate,
)
from optforge.evaluators.scoring import cache_dir
from optforge.evaluators.tasks import Suite

from optforge import dsl, seeds

from .helpers import EXPLODING_RULE, NAN_RULE, rule, same_floats, torch_threads

pytestmark = pytest.mark.usefixtures("one_thread")


def test_the_baseline_rules_are_the_seeds():
    for name, p in baseline_programs().items():
        assert dsl.structural_hash(p) == dsl.structural_hash(seeds.load_seed(name))


def test_adamw_scores_exactly_1_on_every_task_and_sgd_its_loss_ratio(tiny, tiny_baselines):
    sgd = evaluate(seeds.load_seed("sgd_momentum"), tiny, baselines=tiny_baselines)
    adamw = evaluate(seeds.load_seed("adamw"), tiny, baselines=tiny_baselines)
    assert sgd.status == adamw.status == "ok"
    assert adamw.score == 1.0 and [t.score for t in adamw.tasks] == [1.0] * len(tiny.tasks)
    for t in adamw.tasks:
        base = tiny_baselines[t.task]
        assert t.loss == base.adamw_loss and t.best_lr == base.adamw_lr
    for t in sgd.tasks:
        base = tiny_baselines[t.task]
        assert t.loss == base.sgd_loss
        assert t.score == pytest.approx(min(max(base.adamw_loss / base.sgd_loss, 0.25), 4.0))


def test_the_baselines_best_rates_are_inside_the_grid(tiny, tiny_baselines):
    for t in tiny.tasks:
        base = tiny_baselines[t.name]
        for lr in (base.sgd_lr, base.adamw_lr):
            assert t.lrs[0] < lr < t.lrs[-1], (t.name, lr)


def test_same_candidate_serially_gives_the_identical_result(tiny, tiny_baselines):
    a = evaluate(seeds.load_seed("lion"), tiny, baselines=tiny_baselines)
    b = evaluate(seeds.load_seed("lion"), tiny, baselines=tiny_baselines)
    assert a.score == b.score and a.status == b.status
    for x, y in zip(a.tasks, b.tasks):
        assert (x.score, x.loss, x.best_lr) == (y.score, y.loss, y.best_lr)
        assert same_floats(x.lr_losses, y.lr_losses)


@pytest.mark.parametrize("source, status", [(NAN_RULE, "nan"), (EXPLODING_RULE, "diverged")])
def test_failing_candidates_get_a_status_and_the_floor(tiny, tiny_baselines, source, status):
    r = evaluate(rule(source), tiny, baselines=tiny_baselines)
    assert r.status == status and r.score == SCORE_FLOOR
    # a step of 1e30 overflows some models' losses to inf (diverged), others' to NaN
    assert all(t.score == SCORE_FLOOR and t.status in ("nan", "diverged") for t in r.tasks)


def test_a_timeout_is_a_status(tiny, tiny_baselines):
    r = evaluate(seeds.load_seed("adamw"), tiny, baselines=tiny_baselines, time_budget_s=0)
    assert r.status == Status.TIMEOUT.value and r.score == SCORE_FLOOR


def test_an_uncompilable_candidate_is_an_error(tiny, tiny_baselines):
    broken = dsl.Program("broken", (), (), (dsl.Stmt("_1", "mul", ("g", "ghost")),), ("_1",))
    r = evaluate(broken, tiny, baselines=tiny_baselines)
    assert r.status == "error" and r.score == SCORE_FLOOR
    assert r.error.startswith("cannot compile rule: ValueError")


def test_an_unknown_hyperparameter_is_an_error_not_an_exception(tiny, tiny_baselines):
    r = evaluate(seeds.load_seed("adamw"), tiny, baselines=tiny_baselines,
                 hyper={"beta3": 0.1})
    assert r.status == "error" and "beta3" in r.error


def test_baselines_are_cached_per_suite_version(tiny, tiny_baselines, cache, monkeypatch):
    def no_training(job):
        raise AssertionError("baselines should have come from the cache")

    monkeypatch.setattr("optforge.evaluators.evaluation.run_job", no_training)
    assert ensure_baselines(tiny, cache=cache) == tiny_baselines
    files = list((cache_dir(cache) / "baselines").glob(f"tiny-{tiny.version}.json"))
    assert len(files) == 1

    # a changed task is a new version: recomputed (here: fails loudly, as no training runs)
    changed = Suite("tiny", tuple(t.with_(steps=t.steps + 1) for t in tiny.tasks))
    with pytest.raises(Exception, match="baseline SGD with momentum failed"):
        ensure_baselines(changed, cache=cache)


def test_results_serialise_to_the_documented_json(tiny, tiny_baselines):
    r = evaluate(seeds.load_seed("lion"), tiny, baselines=tiny_baselines)
    j = r.to_json()
    assert {"rule", "suite", "status", "score", "tasks"} <= set(j)
    assert j["rule"] == "lion" and j["suite"] == "tiny"
    assert set(j["tasks"]) == {t.name for t in tiny.tasks}
    for v in j["tasks"].values():
        assert {"score", "loss", "best_lr"} <= set(v)


def test_baselines_get_a_generous_time_budget(tiny, tmp_path, monkeypatch):
    """A loaded machine must not time a baseline out (that would fail the whole suite):
    baseline jobs run with BASELINE_BUDGET_FACTOR times their task's budget."""
    from optforge.evaluators import evaluation
    seen = []
    real = evaluation._run_here

    def spy(job):
        seen.append((job.task.name, job.time_budget_s, job.task.time_budget_s))
        return real(job)
    monkeypatch.setattr(evaluation, "_run_here", spy)
    with torch_threads(1):
        ensure_baselines(tiny, cache=tmp_path)
    assert len(seen) == 2 * len(tiny.tasks)
    assert all(b == evaluation.BASELINE_BUDGET_FACTOR * t for _, b, t in seen)
