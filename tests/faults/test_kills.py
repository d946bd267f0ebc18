"""SIGKILL, the fault nothing can catch: of the campaign process at random points, and of an
evaluator worker under a running campaign. After each, the campaign finishes with nothing
lost and nothing trained twice."""

from __future__ import annotations

import os
import random
import signal
import time
from pathlib import Path

import pytest
from optforge.search.cli import main
from optforge.store import Store

from .conftest import (
    assert_nothing_doubled,
    history,
    resume_serially,
    start_run,
    wait_for_evaluations,
)

# Kill points: after how many committed evaluations (of the reference's 13 or so, every
# stage counted) the campaign process is killed. Drawn once, reproducibly.
KILL_POINTS = sorted(random.Random(20261201).sample(range(1, 11), 3))


@pytest.mark.parametrize("after", KILL_POINTS)
def test_campaign_killed_at_a_random_point_resumes_exactly(after, reference, tmp_path,
                                                           capsys):
    db = f"sqlite:///{tmp_path / 'killed.db'}"
    proc = start_run(db, "killed", tmp_path)
    wait_for_evaluations(proc, db, after)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    with Store(db, create=False) as store:
        before = history(store, "killed")
        assert store.get_campaign("killed").status == "interrupted"
    assert before == reference[:len(before)] and len(before) < len(reference)
    assert main(["campaigns", "--db", db]) == 0
    assert "interrupted" in capsys.readouterr().out
    assert resume_serially(db, "killed") == reference


def _worker_pids(parent: int) -> list[int]:
    """The evaluator workers (loky processes) below process `parent`."""
    found = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(line.split(":\t", 1) for line in status.read_text().splitlines()
                          if ":\t" in line)
            cmdline = (status.parent / "cmdline").read_bytes()
        except OSError:
            continue
        if int(fields.get("PPid", "0").strip()) == parent and b"loky" in cmdline \
                and b"resource_tracker" not in cmdline:
            found.append(int(status.parent.name))
    return found


def test_a_worker_killed_under_a_campaign_costs_at_most_its_one_child(tmp_path):
    db = f"sqlite:///{tmp_path / 'worker.db'}"
    proc = start_run(db, "worker", tmp_path, workers=2)
    wait_for_evaluations(proc, db, 2)
    victims: list[int] = []
    while proc.poll() is None and not victims:
        victims = _worker_pids(proc.pid)
        time.sleep(0.05)
    for pid in victims[:1]:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:  # it finished its work and left: nothing to kill
            victims = []
    _, err = proc.communicate()
    assert proc.returncode == 0, err
    assert victims, "no evaluator worker was found to kill"
    with Store(db, create=False) as store:
        assert store.get_campaign("worker").status == "finished"
        assert_nothing_doubled(store, "worker")
        died = [ev for ev in store.evaluations(campaign="worker")
                if "worker died" in (ev.error or "") or any(
                    "worker died" in str(t.metrics.get("error") or "") for t in ev.tasks)]
        assert len(died) <= 1
