"""A campaign has one live owner: a run takes its lease, a second run is refused while the
first lives, a run that lost its lease writes nothing more, and a run that starts after
another went on catches up from the database instead of redoing its work."""

from __future__ import annotations

from datetime import timedelta

import pytest
from optforge.search.cli import main
from optforge.search.engine import Campaign
from optforge.store import LeaseHeld, LeaseLost, Store
from optforge.store import models as m
from sqlalchemy import update
from sqlalchemy.orm import Session

from .test_campaign import CONFIG, history


def _expire(store: Store, campaign_id: int) -> None:
    with Session(store._engines.write) as s, s.begin():
        s.execute(update(m.Campaign).where(m.Campaign.id == campaign_id)
                  .values(lease_expires=m.utcnow() - timedelta(seconds=1)))


def test_a_second_run_is_refused_while_the_first_holds_the_lease(tmp_path, capsys):
    db = f"sqlite:///{tmp_path / 'held.db'}"
    with Store(db) as store, Store(db) as other:
        c = Campaign.create(store, CONFIG, "held")
        assert store.get_campaign(c.id).status == "paused"  # nobody runs it yet
        lease = other.acquire_lease(c.id)  # another run holds it
        with pytest.raises(LeaseHeld):
            c.run(workers=1)
        assert store.count_evaluations(campaign=c.id) == 0
        assert store.load_checkpoint(c.id) is None
        assert main(["resume", "held", "--db", db, "--no-progress", "--workers", "1"]) == 1
        err = capsys.readouterr().err.strip()
        assert err.startswith("optforge resume: error: campaign held is being run by pid ")
        assert "\n" not in err
        other.release_lease(lease, "paused")
        assert Campaign.resume(store, "held").run(workers=1)["status"] == "finished"


def test_a_run_that_lost_its_lease_stops_without_writing(tmp_path):
    db = f"sqlite:///{tmp_path / 'lost.db'}"
    with Store(db) as store, Store(db) as thief:
        c = Campaign.create(store, CONFIG, "lost")
        taken = []

        def steal(counters):
            if counters.evaluations == 2 and not taken:
                _expire(thief, c.id)  # as if this run had stalled past its lease
                taken.append(thief.acquire_lease(c.id))
        c.progress = steal
        with pytest.raises(LeaseLost, match="taken over"):
            c.run(workers=1)
        assert store.count_evaluations(campaign=c.id, stage=1) == 2
        assert store.load_checkpoint(c.id).counters["evaluations"] == 2
        record = store.get_campaign(c.id)
        assert record.status == "running" and record.lease is not None  # the thief's
        thief.release_lease(taken[0], "paused")


def test_a_late_second_resume_catches_up_instead_of_redoing_work(reference_history, tmp_path):
    db = f"sqlite:///{tmp_path / 'late.db'}"
    with Store(db) as store:
        c = Campaign.create(store, CONFIG, "late")

        def pause(counters):
            if counters.evaluations == 2:
                raise KeyboardInterrupt
        c.progress = pause
        assert c.run(workers=1)["status"] == "paused"
        first, second = Campaign.resume(store, "late"), Campaign.resume(store, "late")
        assert first.run(workers=1)["status"] == "finished"
        done = history(store, c.id)
        # `second` loaded the same checkpoint as `first`; it runs after it and finds the
        # campaign finished
        assert second.run(workers=1)["status"] == "finished"
        assert history(store, c.id) == done == reference_history


@pytest.fixture(scope="module")
def reference_history(tmp_path_factory):
    db = f"sqlite:///{tmp_path_factory.mktemp('ref') / 'ref.db'}"
    with Store(db) as store:
        c = Campaign.create(store, CONFIG, "ref")
        c.run(workers=1)
        return history(store, c.id)
