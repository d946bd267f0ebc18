"""Two `optforge resume` of one campaign at once: one runs it, the other is refused in one
line naming the holder, and the campaign finishes exactly as an undisturbed run."""

from __future__ import annotations

import signal

from optforge.store import Store

from .conftest import (
    assert_nothing_doubled,
    history,
    optforge,
    start_run,
    wait_for_evaluations,
)


def _paused_campaign(tmp_path, name: str) -> str:
    db = f"sqlite:///{tmp_path / (name + '.db')}"
    proc = start_run(db, name, tmp_path)
    wait_for_evaluations(proc, db, 2)
    proc.send_signal(signal.SIGTERM)  # pauses, as Ctrl-C does
    proc.communicate()
    assert proc.returncode == 130
    return db


def test_racing_resumes_one_runs_the_other_is_refused(reference, tmp_path):
    db = _paused_campaign(tmp_path, "raced")
    racers = [optforge("resume", "raced", "--db", db, "--workers", "1", "--no-progress")
              for _ in range(2)]
    outcomes = [(p.wait(), p.communicate()[1]) for p in racers]
    codes = sorted(code for code, _ in outcomes)
    assert codes == [0, 1], outcomes
    refusal = next(err for code, err in outcomes if code == 1).strip()
    assert "\n" not in refusal and refusal.startswith("optforge resume: error: ")
    # refused while the winner ran, or (if it lost the race to start) it found the work done
    assert "is being run by pid" in refusal or "has finished" in refusal, refusal
    with Store(db, create=False) as store:
        assert store.get_campaign("raced").status == "finished"
        assert_nothing_doubled(store, "raced")
        assert history(store, "raced") == reference


def test_a_resume_while_the_campaign_runs_is_refused(reference, tmp_path):
    db = _paused_campaign(tmp_path, "busy")
    first = optforge("resume", "busy", "--db", db, "--workers", "1", "--no-progress")
    wait_for_evaluations(first, db, 4)  # it holds the lease and works
    first.send_signal(signal.SIGSTOP)  # stalled, not dead: its lease stays live
    try:
        second = optforge("resume", "busy", "--db", db, "--workers", "1", "--no-progress")
        _, err = second.communicate()
    finally:
        first.send_signal(signal.SIGCONT)
    assert second.returncode == 1
    assert err.strip().startswith("optforge resume: error: campaign busy is being run by "
                                  f"pid {first.pid} on ")
    first.communicate()
    assert first.returncode == 0
    with Store(db, create=False) as store:
        assert_nothing_doubled(store, "busy")
        assert history(store, "busy") == reference
