"""The progress bar's ETA counts every phase still to come, not the budget's evaluations
alone: after stage 1, stage 2, the simplification and the validation are still ahead."""

from __future__ import annotations

from dataclasses import replace

import pytest
from optforge.search.config import CampaignConfig, Funnel, Simplify, Validation
from optforge.search.engine import Campaign, Counters
from optforge.search.eta import RELATIVE_COST, evaluation_cost, remaining_seconds
from optforge.store import Store

from .test_campaign import CONFIG

DEFAULT_LIKE = CampaignConfig(
    seeds=("adamw",), budget=20,
    funnel=Funnel(stage1="small", stage2="medium", stage2_max=4, screen="tiny"),
    simplify=Simplify(enabled=True, max_ablations=4),
    validation=Validation(enabled=True, suite="validation", candidates=1))


def test_no_estimate_before_stage_1_is_measured():
    assert remaining_seconds(Counters(), DEFAULT_LIKE, workers=2, stage1_budget=10) is None


def test_unmeasured_suites_are_scaled_from_stage_1():
    training = {"small": [4, 8.0]}  # 2 s per stage-1 evaluation
    assert evaluation_cost(training, "small", "small") == 2.0
    assert evaluation_cost(training, "medium", "small") == pytest.approx(
        2.0 * RELATIVE_COST["medium"])
    training["medium"] = [1, 30.0]  # measured beats scaled
    assert evaluation_cost(training, "medium", "small") == 30.0


def test_every_phase_still_to_come_is_counted():
    c = Counters(phase="evolve", evaluations=6, stage1_evaluations=6, screenings=12,
                 training={"small": [6, 12.0], "tiny": [12, 2.4], "medium": [0, 0.0]})
    s1, screen = 2.0, 0.2
    s2, val = 2.0 * RELATIVE_COST["medium"], 2.0 * RELATIVE_COST["validation"]
    # stage 1: 10 - 6 left, each with 2 screenings; stage 2: 4 + simplification 6, of the
    # 10 the budget leaves after stage 1; validation: 1
    expected = (4 * s1 + 4 * 2 * screen + 10 * s2 + val) / 2
    assert remaining_seconds(c, DEFAULT_LIKE, 2, stage1_budget=10) == pytest.approx(expected)
    # stage 1 is over: a bar counting evaluations would be at its end, the work is not
    c2 = replace(c, phase="stage2", evaluations=11, stage1_evaluations=10,
                 training={"small": [10, 20.0], "medium": [1, 20.0]})
    assert remaining_seconds(c2, DEFAULT_LIKE, 2, 10) == pytest.approx(
        (9 * 20.0 + val) / 2)  # 3 stage-2 + 6 simplification variants, then validation
    assert remaining_seconds(replace(c2, phase="done"), DEFAULT_LIKE, 2, 10) == 0.0


def test_a_campaign_counts_its_training_seconds_per_suite(tmp_path):
    config = replace(CONFIG, budget=3)
    with Store(f"sqlite:///{tmp_path / 'eta.db'}") as store:
        c = Campaign.create(store, config, "eta")
        c.run(workers=1)
        evaluations = store.evaluations(campaign=c.id)
        n, seconds = c.counters.training["tiny"]  # every stage of CONFIG trains on tiny
        assert n == len(evaluations)
        assert seconds == pytest.approx(sum(ev.wall_time for ev in evaluations))
        resumed = Campaign.resume(store, c.id)
        assert resumed.counters.training == c.counters.training  # kept in the checkpoint
