"""Campaigns end to end on the `tiny` suite: reproducible, resumable after SIGKILL, within
budget, stoppable, and everything lands in the store."""

import os
import signal
import subprocess
import sys
import time

from dataclasses import replace

import pytest

import dsl
from search.config import CampaignConfig, Evolution, Funnel, Simplify
from search.engine import HURDLE_WINDOW, Campaign
from store import Store
from store.errors import StoreError

CONFIG = CampaignConfig(
    seeds=("sgd_momentum",), seed=5, budget=7,
    evolution=Evolution(population=4, tournament=2, restart_after=50),
    funnel=Funnel(stage1="tiny", stage2="tiny", threshold=-10.0, stage2_max=1, screen="tiny",
                  hurdle=0.5),
    simplify=Simplify(enabled=False))


def history(store: Store, campaign_id: int):
    """(structural hash, stage, score) of every evaluation, in commit order."""
    out = []
    for ev in sorted(store.evaluations(campaign=campaign_id), key=lambda e: e.id):
        out.append((store.get_program(ev.program_id).structural_hash, ev.stage, ev.score))
    return out


def run_serial(db, name, config=CONFIG):
    with Store(f"sqlite:///{db}") as store:
        c = Campaign.create(store, config, name)
        summary = c.run(workers=1)
        return summary, history(store, c.id)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    db = tmp_path_factory.mktemp("ref") / "ref.db"
    return run_serial(db, "ref")


def test_campaign_spends_its_budget_and_records_everything(reference, tmp_path):
    summary, hist = reference
    full = [h for h in hist if h[1] > 0]  # stage 0 is the screening, outside the budget
    assert summary["status"] == "finished"
    assert summary["evaluations"] == len(full) <= CONFIG.budget
    assert [h[1] for h in hist].count(2) == 1  # the funnel re-scored the best once
    assert summary["children"] >= len(full) - 2
    stage1 = [h[0] for h in hist if h[1] == 1]
    assert len(set(stage1)) == len(stage1)
    # every program trained on stage 1 was screened first, and every screening is stored
    screened = [h[0] for h in hist if h[1] == 0]
    assert summary["screenings"] == len(screened) >= len(stage1)
    assert all(screened.index(s) < hist.index((s, 1, sc)) for s, _, sc in
               [h for h in hist if h[1] == 1])


def test_no_screening_when_the_funnel_has_none(tmp_path):
    config = replace(CONFIG, funnel=replace(CONFIG.funnel, screen=""), budget=4)
    summary, hist = run_serial(tmp_path / "plain.db", "plain", config)
    assert summary["screenings"] == 0 and not [h for h in hist if h[1] == 0]
    assert summary["evaluations"] == len(hist)


def test_the_hurdle_is_a_quantile_of_the_recent_screening_scores(tmp_path):
    with Store(f"sqlite:///{tmp_path / 'h.db'}") as store:
        c = Campaign.create(store, replace(CONFIG, funnel=replace(CONFIG.funnel, hurdle=0.5)),
                            "h")
        assert [c._below_hurdle(x) for x in (0.3, -5.0, 0.1, 0.2)] == [None] * 4  # too few
        window = c.counters.recent_screens
        assert window == [0.3, -5.0, 0.1, 0.2]  # median 0.15
        assert c._below_hurdle(0.14) == "screen: below the hurdle"
        assert c._below_hurdle(0.2) is None  # the window is now [.., 0.14]: median 0.14
        assert c._below_hurdle(float("-inf")) == "screen: failed"
        assert len(window) == 6  # failures do not enter the window
        for i in range(200):
            c._below_hurdle(float(i))
        assert window == [float(i) for i in range(200 - HURDLE_WINDOW, 200)]
        assert c._below_hurdle(199 - HURDLE_WINDOW / 2 - 1) is not None


def signalled_cli_run(tmp_path, name: str, sig: int) -> tuple[str, int]:
    """Run CONFIG through `optforge run` in a subprocess, send it `sig` once 3 evaluations
    are committed; the database URL and the exit status."""
    db = f"sqlite:///{tmp_path / name}.db"
    env = dict(os.environ, PYTHONPATH=os.getcwd())
    cfg = tmp_path / "c.toml"
    cfg.write_text('seeds = ["sgd_momentum"]\nseed = 5\nbudget = 7\n'
                   '[evolution]\npopulation = 4\ntournament = 2\nrestart_after = 50\n'
                   '[funnel]\nstage1 = "tiny"\nstage2 = "tiny"\nthreshold = -10.0\n'
                   'stage2_max = 1\nscreen = "tiny"\nhurdle = 0.5\n'
                   '[simplify]\nenabled = false\n')  # CONFIG, as TOML
    proc = subprocess.Popen([sys.executable, "-m", "search", "run", str(cfg), "--workers", "1",
                             "--name", name, "--db", db, "--no-progress"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while proc.poll() is None:
            try:
                with Store(db, create=False) as store:
                    if store.count_evaluations() >= 3:
                        break
            except StoreError:  # the run has not created its database yet
                pass
            time.sleep(0.2)
        proc.send_signal(sig)
    finally:
        proc.wait()
    return db, proc.returncode


def resumed_history(db: str, name: str, status: str, reference):
    with Store(db, create=False) as store:
        assert store.get_campaign(name).status == status
        committed = history(store, store.get_campaign(name).id)
        assert 3 <= len(committed) < len(reference[1])
        c = Campaign.resume(store, name)
        summary = c.run(workers=1)
        assert summary["status"] == "finished"
        return history(store, c.id)


def test_resume_after_sigkill_continues_exactly(reference, tmp_path):
    db, _ = signalled_cli_run(tmp_path, "killed", signal.SIGKILL)
    # nothing lost, nothing evaluated twice
    assert resumed_history(db, "killed", "running", reference) == reference[1]


def test_sigterm_pauses_like_ctrl_c(reference, tmp_path):
    db, status = signalled_cli_run(tmp_path, "terminated", signal.SIGTERM)
    assert status == 130
    assert resumed_history(db, "terminated", "paused", reference) == reference[1]


def test_interrupted_campaign_stops_cleanly_and_resumes(reference, tmp_path):
    db = tmp_path / "stop.db"
    with Store(f"sqlite:///{db}") as store:
        c = Campaign.create(store, CONFIG, "stop")

        def interrupt(counters):
            if counters.evaluations == 2:
                raise KeyboardInterrupt
        c.progress = interrupt
        assert c.run(workers=1)["status"] == "paused"
        assert store.get_campaign("stop").status == "paused"
        resumed = Campaign.resume(store, "stop")
        assert resumed.run(workers=1)["status"] == "finished"
        assert history(store, c.id) == reference[1]


def test_cli_run_and_resume_report_user_errors(tmp_path, capsys):
    from search.cli import main
    db = f"sqlite:///{tmp_path / 'cli.db'}"
    assert main(["run", "--suite", "nonexistent", "--db", db, "--no-progress"]) == 1
    assert "nonexistent" in capsys.readouterr().err
    assert main(["resume", "nobody", "--db", db]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("\n") == 1
