"""Held-out validation (`evaluators.validation`): a rule beside tuned AdamW, Lion and SGD with
momentum, the comparators cached per suite version, and the seed spread. The `tiny` suite
stands in for the `validation` suite."""

from __future__ import annotations

import json
import math

import pytest
from optforge.evaluators import evaluate
from optforge.evaluators import validation as validation
from optforge.evaluators.scoring import SCORE_FLOOR, Baseline
from optforge.evaluators.trainer import TaskRun
from optforge.evaluators.validation import (
    COMPARATORS,
    comparator_programs,
    seed_scores,
    validate,
)

from optforge import dsl, seeds

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def counted(monkeypatch):
    """The rules trained by `validate` in this process, one entry per (rule, task) job."""
    trained = []
    real = validation.run_job

    def run_job(job):
        trained.append((job.program.name, job.task.name))
        return real(job)
    monkeypatch.setattr(validation, "run_job", run_job)
    return trained


def test_the_comparator_rules_are_the_seeds():
    assert tuple(comparator_programs()) == COMPARATORS == ("adamw", "lion", "sgd_momentum")
    for name, p in comparator_programs().items():
        assert dsl.structural_hash(p) == dsl.structural_hash(seeds.load_seed(name))


def test_adamw_validates_at_exactly_1_everywhere(tiny, tmp_path):
    report = validate(seeds.load_seed("adamw"), tiny, workers=1, cache=tmp_path)
    assert report.suite == "tiny" and report.status == "ok" and report.score == 1.0
    assert [t.score for t in report.result.tasks] == [1.0] * len(tiny.tasks)
    assert all(s == (1.0,) * len(t.seeds) for s, t in zip(report.seed_scores, tiny.tasks))
    adamw = report.comparator("adamw")
    assert adamw.score == 1.0 and [t.score for t in adamw.tasks] == [1.0] * len(tiny.tasks)
    for t in report.result.tasks:
        assert adamw.task(t.task).loss == t.loss and adamw.task(t.task).best_lr == t.best_lr


def test_the_comparators_are_those_rules_evaluated(tiny, tmp_path):
    report = validate(seeds.load_seed("adamw"), tiny, workers=1, cache=tmp_path)
    for name in ("lion", "sgd_momentum"):
        direct = evaluate(seeds.load_seed(name), tiny, cache=tmp_path)
        c = report.comparator(name)
        assert c.score == pytest.approx(direct.score, rel=1e-12)
        for t in direct.tasks:
            assert (c.task(t.task).score, c.task(t.task).loss, c.task(t.task).best_lr) == \
                pytest.approx((t.score, t.loss, t.best_lr), rel=1e-12)
    # Lion validated is Lion the comparator
    lion = validate(seeds.load_seed("lion"), tiny, workers=1, cache=tmp_path)
    assert lion.score == report.comparator("lion").score


def test_a_second_validation_trains_only_the_rule(tiny, tmp_path, counted):
    n = len(tiny.tasks)
    first = validate(seeds.load_seed("signum"), tiny, workers=1, cache=tmp_path)
    assert not first.comparators_cached
    assert sorted(counted) == sorted([("signum", t.name) for t in tiny.tasks]
                                     + [("lion", t.name) for t in tiny.tasks])
    assert list((tmp_path / "comparators").iterdir()) == \
        [tmp_path / "comparators" / f"tiny-{tiny.version}.json"]
    counted.clear()
    second = validate(seeds.load_seed("adamw"), tiny, workers=1, cache=tmp_path)
    assert second.comparators_cached and len(counted) == n
    assert {name for name, _ in counted} == {"adamw"}
    assert second.comparators == first.comparators


def test_an_unreadable_or_stale_cache_is_recomputed(tiny, tmp_path, counted):
    first = validate(seeds.load_seed("adamw"), tiny, workers=1, cache=tmp_path)
    path = tmp_path / "comparators" / f"tiny-{tiny.version}.json"
    data = json.loads(path.read_text())
    data["rules"]["lion"] = "0" * 16  # cached for another Lion
    path.write_text(json.dumps(data))
    counted.clear()
    again = validate(seeds.load_seed("adamw"), tiny, workers=1, cache=tmp_path)
    assert not again.comparators_cached and len(counted) == 2 * len(tiny.tasks)
    path.write_text("{not json")
    assert not validate(seeds.load_seed("adamw"), tiny, workers=1,
                        cache=tmp_path).comparators_cached
    assert again.comparators == first.comparators
    assert validate(seeds.load_seed("adamw"), tiny, workers=1,
                    cache=tmp_path).comparators_cached


def test_a_rule_that_fails_is_a_report_not_an_exception(tiny, tmp_path):
    nan = dsl.ensure_valid(dsl.parse("def nan_rule(w, g, lr, t):\n"
                                     "    return lr * g * sqrt(-1.0)\n"))
    report = validate(nan, tiny, workers=1, cache=tmp_path)
    assert report.status == "nan" and report.score == SCORE_FLOOR
    assert all(s == () for s in report.seed_scores)
    assert report.spread(tiny.tasks[0].name) is None
    assert report.comparator("lion").score > SCORE_FLOOR


def test_on_a_pool_as_in_this_process(tiny, tmp_path):
    serial = validate(seeds.load_seed("lion"), tiny, workers=1, cache=tmp_path)
    pooled = validate(seeds.load_seed("lion"), tiny, workers=2, cache=tmp_path)
    assert pooled.comparators_cached
    assert pooled.score == pytest.approx(serial.score, rel=1e-6)


def test_seed_scores_are_each_seeds_loss_against_adamws_mean():
    base = Baseline("t", sgd_loss=2.0, sgd_lr=0.1, adamw_loss=1.0, adamw_lr=0.01)
    nan = float("nan")
    run = TaskRun(task="t", lrs=(0.01, 0.1), seeds=(0, 1, 2),
                  losses=((0.5, 2.0, nan), (9.0, 9.0, 9.0)),
                  statuses=(("ok", "ok", "diverged"), ("ok", "ok", "ok")),
                  initial_losses=(3.0, 1.5, 8.0), steps=10, wall_time=0.0)
    # seed 1 is capped at its initial loss, seed 2 failed: it counts as its initial loss
    assert seed_scores(run, 0.01, base) == (2.0, 1 / 1.5, 0.25)
    assert seed_scores(run, None, base) == ()
    # the task's score comes from the mean loss, so it lies within the seeds' range
    mean = (0.5 + 1.5 + 8.0) / 3
    assert min(seed_scores(run, 0.01, base)) <= max(1 / mean, 0.25) <= \
        max(seed_scores(run, 0.01, base))


def test_the_report_as_json(tiny, tmp_path):
    report = validate(seeds.load_seed("lion"), tiny, workers=1, cache=tmp_path)
    data = json.loads(json.dumps(report.to_json(), allow_nan=False))
    assert data["suite"] == "tiny" and data["rule"] == "lion"
    assert data["comparators"] == {c.name: c.score for c in report.comparators}
    assert data["comparators"]["adamw"] == 1.0
    for t in tiny.tasks:
        entry = data["tasks"][t.name]
        assert set(entry["comparators"]) == set(COMPARATORS)
        lo, hi = entry["seed_spread"]
        assert lo <= entry["score"] <= hi or math.isclose(lo, entry["score"])
