"""Scoring arithmetic: floors, the ratio to tuned AdamW, the geometric mean, and the
baseline cache."""

from __future__ import annotations

import json
import math

import pytest
from optforge.evaluators.scoring import (
    SCORE_CEIL,
    SCORE_FLOOR,
    Baseline,
    candidate_status,
    load_baselines,
    run_status,
    save_baselines,
    score_task,
    suite_score,
    task_loss,
)
from optforge.evaluators.trainer import TaskRun

NAN = float("nan")
BASE = Baseline("t", sgd_loss=1.0, sgd_lr=0.1, adamw_loss=math.exp(-1), adamw_lr=0.01)


def make_run(losses, statuses=None, initial=(2.0, 2.0), lrs=(0.01, 0.1, 1.0)):
    statuses = statuses or tuple(tuple("ok" if not math.isnan(x) else "diverged" for x in row)
                                 for row in losses)
    return TaskRun("t", lrs, (0, 1), tuple(map(tuple, losses)), tuple(map(tuple, statuses)),
                   initial, steps=10, wall_time=0.1)


def test_best_lr_mean_over_seeds():
    loss, lr, means = task_loss(make_run([(1.0, 0.6), (0.5, 0.7), (0.9, 0.9)]))
    assert (loss, lr) == (pytest.approx(0.6), 0.1)
    assert means == pytest.approx((0.8, 0.6, 0.9))


def test_a_failed_replica_counts_as_its_initial_loss_and_losses_are_capped():
    run = make_run([(0.1, NAN), (0.5, 0.5), (5.0, 0.4)], initial=(2.0, 3.0))
    loss, lr, means = task_loss(run)
    # lr 0.01: 0.1 and the floor 3.0; lr 1.0: 5.0 capped at 2.0 and 0.4
    assert means == pytest.approx((1.55, 0.5, 1.2))
    assert (loss, lr) == (pytest.approx(0.5), 0.1)


def test_all_failed_is_the_floor_with_the_commonest_failure():
    run = make_run([(NAN, NAN)] * 3, [("nan", "nan"), ("nan", "timeout"), ("error", "error")])
    assert task_loss(run)[0] is None
    s = score_task(run, BASE)
    assert (s.score, s.status, s.loss, s.best_lr) == (SCORE_FLOOR, "nan", None, None)
    tie = make_run([(NAN, NAN)] * 3, [("nan", "nan"), ("error", "error"), ("ok", "ok")])
    assert run_status(tie) == "ok"
    tie = make_run([(NAN, NAN)] * 3, [("nan", "nan"), ("error", "error"), ("nan", "error")])
    assert run_status(tie) == "error"  # three each: the more severe


def test_adamw_scores_exactly_1_and_a_lower_loss_scores_its_ratio():
    assert score_task(make_run([(BASE.adamw_loss,) * 2] * 3), BASE).score == 1.0
    half = score_task(make_run([(BASE.adamw_loss / 2,) * 2] * 3), BASE)
    assert half.score == pytest.approx(2.0)  # half AdamW's loss: twice as good
    assert score_task(make_run([(BASE.adamw_loss * 1.25,) * 2] * 3), BASE).score == \
        pytest.approx(0.8)
    # the SGD baseline plays no part in the score
    other = Baseline("t", sgd_loss=123.0, sgd_lr=5.0, adamw_loss=BASE.adamw_loss,
                     adamw_lr=0.01)
    assert score_task(make_run([(0.2, 0.2)] * 3), other).score == \
        score_task(make_run([(0.2, 0.2)] * 3), BASE).score


def test_scores_are_clipped():
    assert score_task(make_run([(1e-9, 1e-9)] * 3), BASE).score == SCORE_CEIL
    worse = make_run([(5.0, 5.0)] * 3, initial=(10.0, 10.0))  # 0.37 / 5 = 0.07
    assert score_task(worse, BASE).score == SCORE_FLOOR
    assert SCORE_FLOOR < score_task(make_run([(1.2, 1.2)] * 3), BASE).score < 1.0


def test_suite_score_is_the_geometric_mean_and_status_needs_every_task_failed():
    good = score_task(make_run([(BASE.adamw_loss,) * 2] * 3), BASE)
    better = score_task(make_run([(BASE.adamw_loss / 2,) * 2] * 3), BASE)
    bad = score_task(make_run([(NAN, NAN)] * 3), BASE)
    assert suite_score([good] * 7) == 1.0
    assert suite_score([good, bad]) == pytest.approx(SCORE_FLOOR ** 0.5)
    assert suite_score([better, bad]) == pytest.approx((2.0 * SCORE_FLOOR) ** 0.5)
    assert candidate_status([good, bad]) == "ok"
    assert candidate_status([bad, bad]) == "diverged"


def test_one_task_moves_a_suite_score_a_bounded_amount():
    good = score_task(make_run([(BASE.adamw_loss,) * 2] * 3), BASE)
    perfect = score_task(make_run([(0.0, 0.0)] * 3), BASE)
    failed = score_task(make_run([(NAN, NAN)] * 3), BASE)
    assert suite_score([good] * 3 + [perfect]) == pytest.approx(SCORE_CEIL ** 0.25)
    assert suite_score([good] * 3 + [failed]) == pytest.approx(SCORE_FLOOR ** 0.25)


def test_baseline_cache_round_trip(tmp_path):
    baselines = {"t": BASE}
    path = save_baselines("tiny", "v1", tmp_path, baselines)
    assert load_baselines("tiny", "v1", tmp_path, ["t"]) == baselines
    assert load_baselines("tiny", "v2", tmp_path, ["t"]) is None  # other version
    assert load_baselines("tiny", "v1", tmp_path, ["t", "u"]) is None  # incomplete
    path.write_text("{not json")
    assert load_baselines("tiny", "v1", tmp_path, ["t"]) is None
    path.write_text(json.dumps({"version": "v1", "tasks": {"t": {"task": "t"}}}))
    assert load_baselines("tiny", "v1", tmp_path, ["t"]) is None
    assert not list(path.parent.glob("*.tmp"))
