"""Charging the budget by count or by training time (`search.charging`), on the in-memory
store with a fake evaluator whose training time is known: a rule's time is its passes per
step times the suite's time, so charged by time it costs exactly `passes_per_step`."""

import hashlib
import math
from dataclasses import replace

import pytest
from optforge.dsl.needs import passes_per_step
from optforge.evaluators import EvalResult
from optforge.search import charging, evaluation
from optforge.search.config import (
    CampaignConfig,
    Evolution,
    Funnel,
    Search,
    Simplify,
    Validation,
    config_from_dict,
    load_config,
)
from optforge.search.counters import Counters
from optforge.search.engine import Campaign
from optforge.search.errors import UserError
from optforge.search.memory_store import MemoryStore
from optforge.search.stages import STAGE1, STAGE2

from optforge import dsl

SECONDS = {"tiny": 2.0, "small": 7.0, "medium": 30.0}  # one pass's worth, by suite


def fake_evaluate(program, suite):
    """A deterministic score from the program's hash; the time its passes per step cost."""
    digest = hashlib.sha256(dsl.structural_hash(program).encode()).digest()
    score = 0.3 + 0.7 * digest[0] / 255
    return EvalResult(0, program.name, suite, "fake", "ok", score, (),
                      SECONDS[suite] * passes_per_step(program))


@pytest.fixture
def fake(monkeypatch):
    monkeypatch.setattr(evaluation, "evaluate", fake_evaluate)


CONFIG = CampaignConfig(
    seeds=("sgd_momentum", "adamw"), seed=3, budget=14, search=Search(charge="time"),
    evolution=Evolution(population=4, tournament=2, restart_after=50),
    mutations={**CampaignConfig().mutations, "sharpness": 3.0},
    funnel=Funnel(stage1="tiny", stage2="small", threshold=-10.0, stage2_max=2, screen=""),
    simplify=Simplify(enabled=True, max_ablations=1), validation=Validation(enabled=False))


def run(config, store=None, stop_at=None):
    store = store or MemoryStore()
    c = Campaign.create(store, config, "charged")
    if stop_at is not None:
        def interrupt(counters):
            if counters.evaluations == stop_at:
                raise KeyboardInterrupt
        c.progress = interrupt
    return store, c, c.run(workers=1)


def budgeted(store, campaign_id):
    return [e for e in store.evaluations(campaign=campaign_id) if e.stage in (STAGE1, STAGE2)]


def passes(store, e) -> int:
    return passes_per_step(dsl.parse(store.get_program(e.program_id).source))


def test_by_time_each_evaluation_costs_its_time_in_the_first_seeds_units(fake):
    store, c, summary = run(CONFIG)
    assert summary["status"] == "finished" and summary["charge"] == "time"
    evals = budgeted(store, c.id)
    costs = [passes(store, e) for e in evals]
    assert 2 in costs  # SAM-like children (two passes a step) were trained
    # AdamW (a reference seed, not the first) is the unit on stage 1; stage 2's unit makes
    # the first stage-2 program cost what it did on stage 1: every rule costs its passes
    assert c.counters.units == {"tiny": SECONDS["tiny"], "small": SECONDS["small"]}
    assert summary["spent"] == pytest.approx(sum(costs))
    assert summary["evaluations"] == len(evals) < sum(costs)
    assert summary["spent"] <= CONFIG.budget + 1  # the last child may overshoot by its cost


def test_by_count_each_evaluation_costs_one(fake):
    store, c, summary = run(replace(CONFIG, search=Search()))
    assert summary["charge"] == "count"
    assert summary["spent"] == summary["evaluations"] == len(budgeted(store, c.id))
    assert summary["evaluations"] <= CONFIG.budget


def test_a_resumed_campaign_charges_the_same(fake):
    _, c, whole = run(CONFIG)
    store, stopped, summary = run(CONFIG, stop_at=4)
    assert summary["status"] == "paused"
    resumed = Campaign.resume(store, "charged")
    assert resumed.counters.units == {"tiny": SECONDS["tiny"]}
    again = resumed.run(workers=1)
    assert again["spent"] == pytest.approx(whole["spent"])
    assert again["evaluations"] == whole["evaluations"]
    assert resumed.counters.units == c.counters.units


def test_seeds_stopped_midway_are_charged_once(fake):
    """Killed during the seeds phase: the seeds committed keep their times and the unit is
    set when the phase ends."""
    _, _, whole = run(CONFIG)
    store, _, _ = run(CONFIG, stop_at=1)
    again = Campaign.resume(store, "charged").run(workers=1)
    assert again["spent"] == pytest.approx(whole["spent"])


def slow_children(slowdown):
    """The fake evaluator, but every child costs `slowdown` times a seed's time a pass."""
    def evaluate(program, suite):
        r = fake_evaluate(program, suite)
        return replace(r, wall_time=r.wall_time * (1.0 if program.name in CONFIG.seeds
                                                   else slowdown))
    return evaluate


@pytest.mark.parametrize("slowdown", [1.0, 1.7, 2.5])
def test_stage1_keeps_the_reserve_and_the_budget_holds(monkeypatch, slowdown):
    """Children slower a pass than AdamW: stage 1 expects the next ones as slow as those
    measured, and a stage-2 pick costs what it did on stage 1, so stage 2 is not starved
    and the budget is not overshot by more than the last multi-pass child's extra passes."""
    monkeypatch.setattr(evaluation, "evaluate", slow_children(slowdown))
    config = replace(CONFIG, budget=10, mutations=CampaignConfig().mutations,
                     simplify=Simplify(enabled=False))
    store, c, summary = run(config)
    stage1 = [e for e in store.evaluations(campaign=c.id) if e.stage == STAGE1]
    stage2 = [e for e in store.evaluations(campaign=c.id) if e.stage == STAGE2]
    assert stage2  # the reserve held
    per_pass = charging.per_pass(c)
    one_pass = [e for e in stage1 if passes(store, e) == 1 and
                store.get_program(e.program_id).name not in config.seeds]
    if one_pass:
        assert per_pass > 1.0 if slowdown > 1 else per_pass == pytest.approx(1.0)
    extra = max(passes(store, e) - 1 for e in stage1) * slowdown
    assert summary["spent"] <= config.budget + extra + 1e-9
    if extra == 0:
        assert summary["spent"] <= config.budget + 1e-9


def test_known_cost_is_expected_before_measuring():
    c = Campaign.__new__(Campaign)
    c.config, c.counters = CONFIG, Counters()
    sam = dsl.parse("def sam(w, g, lr, t):\n"
                    "    return lr * grad_at(0.05 * g / (global_norm(g) + 1e-12))\n")
    hess = dsl.parse("def h(w, g, lr, t):\n    return lr * g / (abs(hess) + 1e-8)\n")
    assert charging.expected(c, sam) == 2.0 and charging.expected(c, hess) == 3.0
    c.counters.stage1_charged = [6.0, 4]  # stage 1 has cost 1.5 a pass so far
    assert charging.expected(c, sam) == 3.0 and charging.per_pass(c) == 1.5
    c.config = replace(CONFIG, search=Search())
    assert charging.expected(c, sam) == 1.0
    assert charging.affordable(3.0, [1.0, 2.0, 1.0]) == 2
    assert charging.affordable(-1.0, [1.0]) == 0


def test_charge_is_validated_and_kept_by_resume(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[search]\ncharge = "seconds"\n')
    with pytest.raises(UserError, match=r'search.charge must be "count" or "time"'):
        load_config(bad)
    bad.write_text('[search]\ncharge = 1\n')
    with pytest.raises(UserError, match="'charge' must be a str"):
        load_config(bad)
    good = tmp_path / "good.toml"
    good.write_text('[search]\ncharge = "time"\n')
    cfg = load_config(good)
    assert cfg.search.charge == "time"
    assert config_from_dict(cfg.to_dict(), "stored").search.charge == "time"
    # a campaign stored before [search] existed charges by count and draws no new mutation
    old = {k: v for k, v in CampaignConfig().to_dict().items() if k != "search"}
    old["mutations"] = {k: v for k, v in old["mutations"].items() if k != "sharpness"}
    stored = config_from_dict(old, "old")
    assert stored.search.charge == "count" and stored.mutations["sharpness"] == 0.0


def test_a_checkpoint_from_before_charging_resumes_charged_by_count():
    c = Counters.from_json({"evaluations": 5, "phase": "evolve"})
    assert c.spent == 5.0 and c.units == {}
    assert Counters.from_json(c.to_json()).spent == 5.0
    assert not math.isnan(c.spent)


def test_show_states_a_rules_known_cost(tmp_path, capsys):
    from optforge.search.cli import main
    from optforge.store import Store

    db = f"sqlite:///{tmp_path / 'cost.db'}"
    with Store(db) as store:
        sam = store.add_program(dsl.parse(
            "def sam(w, g, lr, t):\n"
            "    return lr * grad_at(0.05 * g / (global_norm(g) + 1e-12))\n"))
        plain = store.add_program(dsl.parse("def sgd(w, g, lr, t):\n    return lr * g\n"))
    assert main(["show", str(sam.id), "--db", db]) == 0
    assert "cost: 2 passes of the model a step (reads grad_at)" in capsys.readouterr().out
    assert main(["show", str(plain.id), "--db", db]) == 0
    assert "cost: 1 pass of the model a step\n" in capsys.readouterr().out
    assert main(["show", str(sam.id), "--db", db, "--json"]) == 0
    out = capsys.readouterr().out
    assert '"passes_per_step": 2' in out and '"grad_at"' in out


def test_the_eta_reads_the_budget_charged_by_time():
    from optforge.search.eta import RELATIVE_COST, remaining_seconds

    from .test_eta import DEFAULT_LIKE

    c = Counters(phase="evolve", evaluations=6, stage1_evaluations=6, spent=9.0,
                 screenings=12, training={"small": [6, 12.0], "tiny": [12, 2.4]})
    s1, screen = 2.0, 0.2
    s2, val = 2.0 * RELATIVE_COST["medium"], 2.0 * RELATIVE_COST["validation"]
    # 9 of the stage-1 budget of 10 spent at 1.5 an evaluation: 2/3 of one is left on
    # stage 1, and (20 - 10) / 1.5 evaluations after it
    left1, later = 1 / 1.5, 10 / 1.5
    expected = (left1 * s1 + left1 * 2 * screen + later * s2 + val) / 2
    timed = replace(DEFAULT_LIKE, search=Search(charge="time"))
    assert remaining_seconds(c, timed, 2, stage1_budget=10) == pytest.approx(expected)
