"""Shared pieces of the fault-injection suite: a small campaign run as a user runs it (the
`optforge` command in a subprocess), the history a campaign leaves in its database, and the
reference history of an undisturbed serial run, which a disturbed and resumed serial run
must reproduce exactly (nothing lost, nothing trained twice).

Every fault here is injected for real: signals to real processes, a real filesystem that
fills up, real database locks.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from optforge.search.config import load_config
from optforge.search.engine import Campaign
from optforge.store import Store
from optforge.store.errors import StoreError

CONFIG_TOML = ('seeds = ["sgd_momentum"]\nseed = 5\nbudget = 7\n'
               '[evolution]\npopulation = 4\ntournament = 2\nrestart_after = 50\n'
               '[funnel]\nstage1 = "tiny"\nstage2 = "tiny"\nthreshold = -10.0\n'
               'stage2_max = 1\nscreen = "tiny"\nhurdle = 0.5\n'
               '[simplify]\nenabled = false\n'
               '[validation]\nsuite = "tiny"\n')


def config_file(directory: Path) -> Path:
    path = directory / "campaign.toml"
    path.write_text(CONFIG_TOML)
    return path


def optforge(*args: str, **popen) -> subprocess.Popen:
    """Start `optforge ARGS...` as a user would (a fresh interpreter, this checkout)."""
    env = dict(os.environ, PYTHONPATH=os.getcwd())
    return subprocess.Popen([sys.executable, "-m", "optforge", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            **popen)


def start_run(db: str, name: str, directory: Path, workers: int = 1,
              **popen) -> subprocess.Popen:
    return optforge("run", str(config_file(directory)), "--workers", str(workers),
                    "--name", name, "--db", db, "--no-progress", **popen)


def wait_for_evaluations(proc: subprocess.Popen, db: str, n: int) -> None:
    """Wait until `n` evaluations are committed (or the process ended)."""
    while proc.poll() is None:
        try:
            with Store(db, create=False) as store:
                if store.count_evaluations() >= n:
                    return
        except StoreError:  # the run has not created its database yet
            pass
        time.sleep(0.1)


def history(store: Store, campaign) -> list[tuple[str, int, float | None]]:
    """(structural hash, stage, score) of every evaluation, in commit order."""
    out = []
    for ev in sorted(store.evaluations(campaign=campaign), key=lambda e: e.id):
        out.append((store.get_program(ev.program_id).structural_hash, ev.stage, ev.score))
    return out


def assert_nothing_doubled(store: Store, campaign) -> None:
    """Every evaluation key once, every program trained once per stage."""
    evs = store.evaluations(campaign=campaign)
    keys = [ev.key for ev in evs]
    assert len(keys) == len(set(keys))
    for stage in (0, 1, 3):
        programs = [ev.program_id for ev in evs if ev.stage == stage]
        assert len(programs) == len(set(programs)), f"a program trained twice on stage {stage}"


def resume_serially(db: str, name: str) -> list:
    with Store(db, create=False) as store:
        summary = Campaign.resume(store, name).run(workers=1)
        assert summary["status"] == "finished"
        assert_nothing_doubled(store, name)
        return history(store, name)


@pytest.fixture(scope="session")
def reference(tmp_path_factory) -> list:
    """The history of the campaign run undisturbed, serially."""
    directory = tmp_path_factory.mktemp("reference")
    config = load_config(str(config_file(directory)))
    with Store(f"sqlite:///{directory / 'ref.db'}") as store:
        c = Campaign.create(store, config, "reference")
        assert c.run(workers=1)["status"] == "finished"
        return history(store, c.id)
