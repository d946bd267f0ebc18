"""A campaign validates its final candidates on the held-out suite: once, outside the budget,
after the winner is chosen on stage 2 and never choosing by it; `optforge show` and the
summary of `optforge run` print it. The `tiny` suite stands in for the `validation` suite."""

from __future__ import annotations

import json
from dataclasses import replace

import optforge.search.finalists
import pytest
import torch
from optforge.search.cli import main
from optforge.search.config import (
    CampaignConfig,
    Evolution,
    Funnel,
    Simplify,
    Validation,
)
from optforge.search.engine import Campaign
from optforge.search.stages import STAGE1, STAGE2, STAGE_VALIDATION
from optforge.store import Store

from optforge import search

CONFIG = CampaignConfig(
    seeds=("sgd_momentum",), seed=5, budget=7,
    evolution=Evolution(population=4, tournament=2, restart_after=50),
    funnel=Funnel(stage1="tiny", stage2="tiny", threshold=-10.0, stage2_max=2, screen="tiny",
                  hurdle=0.5),
    simplify=Simplify(enabled=False), validation=Validation(suite="tiny", candidates=1))


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread, as a pool worker on this machine has: intra-op threads only wait
    on each other on a busy 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def stage2_scores(store: Store, campaign_id: int) -> dict[int, float]:
    return {e.program_id: e.score for e in store.evaluations(campaign=campaign_id, stage=STAGE2)}


def validations(store: Store, campaign_id: int):
    return store.evaluations(campaign=campaign_id, stage=STAGE_VALIDATION)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished serial campaign: (database URL, campaign id, summary)."""
    db = f"sqlite:///{tmp_path_factory.mktemp('validated') / 'v.db'}"
    with Store(db) as store:
        c = Campaign.create(store, CONFIG, "validated")
        summary = c.run(workers=1)
    return db, c.id, summary


def test_the_winner_is_validated_once_outside_the_budget(finished):
    db, cid, summary = finished
    with Store(db, create=False) as store:
        scores = stage2_scores(store, cid)
        (ev,) = validations(store, cid)
        counted = [e for e in store.evaluations(campaign=cid) if e.stage in (STAGE1, STAGE2)]
    winner = max(scores, key=lambda pid: scores[pid])
    assert summary["status"] == "finished" and summary["phase"] == "done"
    assert summary["winner"] == winner == ev.program_id
    assert ev.suite == "tiny" and ev.key == f"stage3/{winner}" and ev.status == "ok"
    assert summary["evaluations"] == len(counted) <= CONFIG.budget
    (entry,) = summary["validation"]
    assert entry["program"] == winner and entry["suite"] == "tiny"
    assert entry["score"] == ev.score and set(entry["tasks"]) == {t.task for t in ev.tasks}
    assert entry["comparators"]["adamw"] == 1.0 and set(entry["comparators"]) == \
        {"adamw", "lion", "sgd_momentum"}
    for t in ev.tasks:  # what `optforge show` prints beside the rule's scores
        metrics = dict(t.metrics)
        assert len(metrics["seed_scores"]) == 1 and metrics["comparators"]["adamw"]["score"] == 1.0


def test_a_resume_after_the_validation_does_not_validate_again(finished, tmp_path, monkeypatch):
    """Killed after the validation was committed but before the phase moved on: the resumed
    campaign finds it stored and trains nothing."""
    db, cid, _ = finished
    copy = tmp_path / "copy.db"
    with Store(db, create=False) as store:
        copy.write_bytes(store.path.read_bytes())
    url = f"sqlite:///{copy}"
    with Store(url, create=False) as store:
        cp = store.load_checkpoint(cid)
        store.save_checkpoint(cid, population=cp.population, rng_state=cp.rng_state,
                              counters={**cp.counters, "phase": "validate"})

        def no_training(*args, **kwargs):
            raise AssertionError("validated again")
        monkeypatch.setattr(search.finalists, "validate", no_training)
        resumed = Campaign.resume(store, cid)
        assert resumed.run(workers=1)["status"] == "finished"
        assert len(validations(store, cid)) == 1


def test_a_validation_interrupted_before_its_commit_is_done_once_on_resume(tmp_path,
                                                                          monkeypatch):
    real = search.finalists.validate
    calls = []

    def interrupted_once(*args, **kwargs):
        calls.append(args[0].name)
        if len(calls) == 1:
            raise KeyboardInterrupt
        return real(*args, **kwargs)
    monkeypatch.setattr(search.finalists, "validate", interrupted_once)
    with Store(f"sqlite:///{tmp_path / 'i.db'}") as store:
        c = Campaign.create(store, replace(CONFIG, budget=4), "interrupted")
        summary = c.run(workers=1)
        assert summary["status"] == "paused" and summary["phase"] == "validate"
        assert not validations(store, c.id)
        evaluations = summary["evaluations"]
        resumed = Campaign.resume(store, c.id)
        summary = resumed.run(workers=1)
        assert summary["status"] == "finished" and summary["evaluations"] == evaluations
        assert len(validations(store, c.id)) == 1 and len(calls) == 2
        assert Campaign.resume(store, c.id).run(workers=1)["status"] == "finished"
        assert len(validations(store, c.id)) == 1 and len(calls) == 2


def test_the_winner_is_chosen_on_stage_2_whatever_validation_says(tmp_path, monkeypatch, capsys):
    """Two final candidates, validation scores the reverse of their stage-2 order: the
    winner stays the stage-2 best, in the summary and in what `optforge run` prints."""
    real = search.finalists.validate
    order = []

    def reversed_scores(program, *args, **kwargs):
        report = real(program, *args, **kwargs)
        order.append(program.name)
        score = 0.25 if len(order) == 1 else 4.0  # the stage-2 best validates worst
        return replace(report, result=replace(report.result, score=score))
    monkeypatch.setattr(search.finalists, "validate", reversed_scores)
    config = replace(CONFIG, validation=replace(CONFIG.validation, candidates=2))
    with Store(f"sqlite:///{tmp_path / 'w.db'}") as store:
        c = Campaign.create(store, config, "winner")
        summary = c.run(workers=1)
        scores = stage2_scores(store, c.id)
        assert len(scores) == 2 and len(set(scores.values())) == 2
        best, second = sorted(scores, key=lambda pid: -scores[pid])
        stored = {e.program_id: e.score for e in validations(store, c.id)}
        assert stored == {best: 0.25, second: 4.0}
        assert summary["winner"] == best == c.finalists(1)[0].program.id
        assert [v["program"] for v in summary["validation"]] == [best, second]
        from optforge.search.commands.campaign import _print_summary
        _print_summary(c, summary)
    out = capsys.readouterr().out
    best_line = out.splitlines()[out.splitlines().index("best on tiny (stage 2):") + 1]
    assert best_line.startswith(f"  #{best} ")
    assert f"held-out validation of #{best} " in out and f"held-out validation of #{second} " in out


def test_no_validation_when_disabled(tmp_path, monkeypatch):
    def no_training(*args, **kwargs):
        raise AssertionError("validated though disabled")
    monkeypatch.setattr(search.finalists, "validate", no_training)
    config = replace(CONFIG, budget=4, validation=replace(CONFIG.validation, enabled=False))
    with Store(f"sqlite:///{tmp_path / 'd.db'}") as store:
        c = Campaign.create(store, config, "disabled")
        summary = c.run(workers=1)
        assert summary["phase"] == "done" and summary["validation"] == []
        assert not validations(store, c.id)


def test_show_prints_the_validation_named_as_such(finished, capsys):
    db, cid, summary = finished
    winner = summary["winner"]
    assert main(["show", str(winner), "--db", db]) == 0
    out = capsys.readouterr().out
    assert "3 (validation)" in out
    assert "held-out validation (evaluation" in out and f"campaign {cid})" in out
    assert "task scores on tiny" in out and "score on tiny (geometric mean over 7 tasks)" in out
    assert "AdamW = 1.000 on every task by construction" in out
    assert main(["show", str(winner), "--db", db, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    (v,) = data["validations"]
    assert v["suite"] == "tiny" and v["campaign_id"] == cid
    assert v["score"] == summary["validation"][0]["score"]
    assert v["comparators"] == pytest.approx(summary["validation"][0]["comparators"])
    assert all(t["seed_spread"] is not None for t in v["tasks"].values())


def test_the_run_summary_prints_the_validation(tmp_path, capsys):
    cfg = tmp_path / "c.toml"
    cfg.write_text('seeds = ["sgd_momentum"]\nseed = 5\nbudget = 3\n'
                   '[evolution]\npopulation = 4\ntournament = 2\n'
                   '[funnel]\nstage1 = "tiny"\nstage2 = "tiny"\nthreshold = -10.0\n'
                   'stage2_max = 1\nscreen = ""\n[simplify]\nenabled = false\n'
                   '[validation]\nsuite = "tiny"\n')
    db = f"sqlite:///{tmp_path / 'r.db'}"
    # named: two runs in one second would get the same default name
    assert main(["run", str(cfg), "--workers", "1", "--db", db, "--no-progress",
                 "--name", "first"]) == 0
    out = capsys.readouterr().out
    assert "held-out validation of #" in out and "score on tiny (geometric mean" in out
    assert main(["run", str(cfg), "--workers", "1", "--db", db, "--no-progress",
                 "--no-validation", "--json", "--name", "second"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["validation"] == [] and data["winner"] is not None
