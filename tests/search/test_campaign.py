"""Campaigns end to end on the `tiny` suite: reproducible, resumable after SIGKILL, within
budget, stoppable, and everything lands in the store."""

import os
import signal
import subprocess
import sys
import time
from dataclasses import replace

import pytest
from optforge.search.config import (
    CampaignConfig,
    Evolution,
    Funnel,
    Simplify,
    Validation,
)
from optforge.search.engine import HURDLE_WINDOW, Campaign
from optforge.store import Store
from optforge.store.errors import StoreError

from optforge import dsl

CONFIG = CampaignConfig(
    seeds=("sgd_momentum",), seed=5, budget=7,
    evolution=Evolution(population=4, tournament=2, restart_after=50),
    funnel=Funnel(stage1="tiny", stage2="tiny", threshold=-10.0, stage2_max=1, screen="tiny",
                  hurdle=0.5),
    simplify=Simplify(enabled=False), validation=Validation(suite="tiny"))


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
    full = [h for h in hist if h[1] in (1, 2)]  # screening (0), validation (3): no budget
    assert summary["status"] == "finished"
    assert summary["evaluations"] == len(full) <= CONFIG.budget
    assert [h[1] for h in hist].count(2) == 1  # the funnel re-scored the best once
    assert [h[1] for h in hist][-1:] == [3]  # and validated it last
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
    assert summary["evaluations"] == len([h for h in hist if h[1] != 3])


def test_the_hurdle_is_a_quantile_of_the_recent_screening_scores(tmp_path):
    with Store(f"sqlite:///{tmp_path / 'h.db'}") as store:
        c = Campaign.create(store, replace(CONFIG, funnel=replace(CONFIG.funnel, hurdle=0.5)),
                            "h")
        assert [c.hurdle.judge(x) for x in (0.3, -5.0, 0.1, 0.2)] == [None] * 4  # too few
        window = c.counters.recent_screens
        assert window == [0.3, -5.0, 0.1, 0.2]  # median 0.15
        assert c.hurdle.judge(0.14) == "screen: below the hurdle"
        assert c.hurdle.judge(0.2) is None  # the window is now [.., 0.14]: median 0.14
        assert c.hurdle.judge(float("-inf")) == "screen: failed"
        assert len(window) == 6  # failures do not enter the window
        for i in range(200):
            c.hurdle.judge(float(i))
        assert window == [float(i) for i in range(200 - HURDLE_WINDOW, 200)]
        assert c.hurdle.judge(199 - HURDLE_WINDOW / 2 - 1) is not None


def signalled_cli_run(tmp_path, name: str, sig: int, workers: int = 1) -> tuple[str, int]:
    """Run CONFIG through `optforge run` in a subprocess with `workers`, send it `sig` once 3
    evaluations are committed; the database URL and the exit status."""
    db = f"sqlite:///{tmp_path / name}.db"
    env = dict(os.environ, PYTHONPATH=os.getcwd())
    cfg = tmp_path / "c.toml"
    cfg.write_text('seeds = ["sgd_momentum"]\nseed = 5\nbudget = 7\n'
                   '[evolution]\npopulation = 4\ntournament = 2\nrestart_after = 50\n'
                   '[funnel]\nstage1 = "tiny"\nstage2 = "tiny"\nthreshold = -10.0\n'
                   'stage2_max = 1\nscreen = "tiny"\nhurdle = 0.5\n'
                   '[simplify]\nenabled = false\n'
                   '[validation]\nsuite = "tiny"\n')  # CONFIG, as TOML
    proc = subprocess.Popen([sys.executable, "-m", "optforge", "run", str(cfg), "--workers",
                             str(workers),
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
    # the killed run's lease died with its process: nobody runs it, and it says so;
    # nothing lost, nothing evaluated twice
    assert resumed_history(db, "killed", "interrupted", reference) == reference[1]


def test_on_a_pool_resume_after_sigkill_evaluates_nothing_twice(tmp_path):
    """On a pool, children in flight at the kill are lost (drawn again differently), but
    everything committed is kept and nothing is trained twice."""
    db, _ = signalled_cli_run(tmp_path, "killed_pool", signal.SIGKILL, workers=2)
    with Store(db, create=False) as store:
        before = history(store, store.get_campaign("killed_pool").id)
        c = Campaign.resume(store, "killed_pool")
        assert c.run(workers=2)["status"] == "finished"
        after = history(store, c.id)
        keys = [ev.key for ev in store.evaluations(campaign=c.id)]
    assert 3 <= len(before) < len(after) and after[:len(before)] == before
    stage1 = [h[0] for h in after if h[1] == 1]
    assert len(stage1) == len(set(stage1)) == c.stage1_budget
    assert len(set(keys)) == len(keys)


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
    from optforge.search.cli import main
    db = f"sqlite:///{tmp_path / 'cli.db'}"
    assert main(["run", "--suite", "nonexistent", "--db", db, "--no-progress"]) == 1
    assert "funnel.stage1 is 'nonexistent'" in capsys.readouterr().err
    assert main(["resume", "nobody", "--db", db]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("\n") == 1


POOLED = replace(CONFIG, budget=10, workers=2)


def test_on_a_pool_the_screenings_run_on_the_pool_too(tmp_path, monkeypatch):
    """With workers, this process only breeds and decides: a screening trained here
    would fail the campaign. Everything else holds as in a serial run."""
    from optforge.search import evaluation

    def no_training_here(*args, **kwargs):
        raise AssertionError("a screening was trained in the campaign's process")
    monkeypatch.setattr(evaluation, "evaluate", no_training_here)
    with Store(f"sqlite:///{tmp_path / 'pool.db'}") as store:
        c = Campaign.create(store, POOLED, "pool")
        summary = c.run(workers=2)
        hist = history(store, c.id)
        keys = [ev.key for ev in store.evaluations(campaign=c.id)]
    assert summary["status"] == "finished"
    stage1 = [h for h in hist if h[1] == 1]
    assert len(stage1) == c.stage1_budget and summary["evaluations"] == len(stage1) + 1
    assert len({h[0] for h in stage1}) == len(stage1) and len(set(keys)) == len(keys)
    screened = [h[0] for h in hist if h[1] == 0]
    assert summary["screenings"] == len(screened) and summary["screen_cache_hits"] == 0
    assert all(screened.index(h[0]) < hist.index(h) for h in stage1)
    # every child drawn is accounted for: trained, a cache hit, or rejected for a reason
    fates = ("no valid child", "duplicate in flight", "probe: ", "screen: ")
    assert summary["children"] == len(stage1) - 1 + sum(summary["cache_hits"].values()) + sum(
        n for r, n in summary["rejections"].items() if r.startswith(fates))


def test_a_twin_of_a_child_in_flight_is_not_trained_again(tmp_path, monkeypatch):
    """On a pool, a child whose twin is still being screened or trained is rejected: its
    twin's result is not in the caches yet, and training it again would spend budget on
    a known program."""
    from optforge.search.breeding import RegularizedEvolution
    from optforge.search.mutations import MutationResult
    twin = dsl.parse("def twin(w, g, lr, t):\n    return lr * sign(g)\n")

    class AlwaysTwin(RegularizedEvolution):
        def breed(self, rng, program_of, seed_ids):
            return None, MutationResult(twin, "insert", {})

    def breeding(config):
        e = config.evolution
        return AlwaysTwin(e.population, e.tournament, config.mutations, config.limits)
    with Store(f"sqlite:///{tmp_path / 'twin.db'}") as store:
        c = Campaign.create(store, POOLED, "twin", breeding=breeding)
        for in_flight in (c.in_flight, c.screening):
            in_flight[dsl.structural_hash(twin)] = 1
            assert c.draw() is None
            in_flight.clear()
        assert c.counters.rejections == {"duplicate in flight": 2}
        assert c.draw().program.name == "c3"


def test_the_reference_history_is_the_pinned_one(reference):
    """The same campaign on SQLite as on the memory store, as before the engine's split."""
    from .test_engine_parts import PINNED, assert_pinned
    assert_pinned(reference[1], PINNED["plain"])
