"""Campaign leases (store.leases), on SQLite and PostgreSQL: one live owner per campaign, a
heartbeat that keeps it, expiry and dead holders read as `interrupted`, and fencing (a
holder that lost its lease cannot write)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from datetime import timedelta

import pytest
from optforge.store import LeaseHeld, LeaseLost, Store
from optforge.store import models as m
from optforge.store.leases import HOST
from sqlalchemy import update
from sqlalchemy.orm import Session


def _rewrite_lease(store: Store, campaign: int, **values) -> None:
    """Change the lease columns behind the store's back (another machine's holder, an
    expiry in the past)."""
    with Session(store._engines.write) as s, s.begin():
        s.execute(update(m.Campaign).where(m.Campaign.id == campaign).values(**values))


def test_a_live_lease_refuses_a_second_owner_and_names_the_holder(store: Store):
    c = store.create_campaign("solo", status="paused")
    lease = store.acquire_lease(c.id, ttl=600)
    record = store.get_campaign(c.id)
    assert record.status == "running"
    assert (record.lease.host, record.lease.pid) == (HOST, os.getpid())
    with pytest.raises(LeaseHeld) as info:
        store.acquire_lease(c.id, ttl=600)
    message = str(info.value)
    assert "\n" not in message and f"pid {os.getpid()} on {HOST} since " in message
    assert store.release_lease(lease, "paused").status == "paused"
    again = store.get_campaign(c.id)
    assert (again.status, again.lease) == ("paused", None)
    store.release_lease(store.acquire_lease(c.id), "finished")
    assert store.get_campaign(c.id).status == "finished"


def test_an_expired_lease_reads_interrupted_and_its_holder_is_fenced_off(store: Store):
    c = store.create_campaign("stale", status="paused")
    old = store.acquire_lease(c.id, ttl=600)
    _rewrite_lease(store, c.id, lease_expires=m.utcnow() - timedelta(seconds=1))
    assert store.get_campaign(c.id).status == "interrupted"
    assert [r.status for r in store.campaigns()] == ["interrupted"]
    assert store.campaign_stats(c.id).campaign.status == "interrupted"
    new = store.acquire_lease(c.id, ttl=600)
    # the old holder can neither renew, nor write under its lease, nor release
    with pytest.raises(LeaseLost, match=f"taken over by pid {os.getpid()} on {HOST}"):
        store.renew_lease(old)
    with pytest.raises(LeaseLost):
        store.run_in_transaction(lambda tx: (tx.check_lease(old),
                                             tx.save_checkpoint(c.id, population=[],
                                                                rng_state={}, counters={})))
    assert store.load_checkpoint(c.id) is None
    with pytest.raises(LeaseLost):
        store.release_lease(old, "failed")
    assert store.get_campaign(c.id).status == "running"
    store.renew_lease(new)
    store.release_lease(new, "paused")


def test_a_holder_on_another_host_is_live_until_its_lease_expires(store: Store):
    c = store.create_campaign("remote", status="paused")
    store.acquire_lease(c.id, ttl=600)
    # pid 2**22 + 1 does not exist here; on another machine that proves nothing
    _rewrite_lease(store, c.id, lease_host="elsewhere.example", lease_pid=2**22 + 1)
    assert store.get_campaign(c.id).status == "running"
    with pytest.raises(LeaseHeld, match="on elsewhere.example"):
        store.acquire_lease(c.id)
    _rewrite_lease(store, c.id, lease_expires=m.utcnow() - timedelta(seconds=1))
    assert store.get_campaign(c.id).status == "interrupted"
    store.acquire_lease(c.id)


def test_a_holder_killed_on_this_host_frees_the_lease_at_once(store: Store, db_url: str):
    c = store.create_campaign("killed", status="paused")
    holder = ("import os, sys; from optforge.store import Store; "
              "Store(sys.argv[1]).acquire_lease('killed', ttl=3600); os._exit(0)")
    subprocess.run([sys.executable, "-c", holder, db_url], check=True,
                   env=dict(os.environ, PYTHONPATH=os.getcwd()))
    record = store.get_campaign(c.id)
    assert record.status == "interrupted" and record.lease.pid != os.getpid()
    lease = store.acquire_lease(c.id)
    assert store.get_campaign(c.id).lease.pid == os.getpid()
    store.release_lease(lease, "finished")


def test_a_campaign_running_without_a_lease_keeps_its_stored_status(store: Store):
    """Rows written by code that takes no lease (or an older optforge) say nothing about
    who runs them: they read as stored."""
    c = store.create_campaign("legacy")
    assert store.get_campaign(c.id).status == "running"


def test_racing_owners_exactly_one_wins(db_url: str, store: Store):
    c = store.create_campaign("race", status="paused")
    stores = [Store(db_url) for _ in range(6)]
    barrier = threading.Barrier(len(stores))
    outcomes: list[object] = [None] * len(stores)

    def contend(i: int) -> None:
        barrier.wait()
        try:
            outcomes[i] = stores[i].acquire_lease(c.id, ttl=600)
        except LeaseHeld as e:
            outcomes[i] = e
    threads = [threading.Thread(target=contend, args=(i,)) for i in range(len(stores))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for s in stores:
        s.close()
    winners = [o for o in outcomes if not isinstance(o, LeaseHeld)]
    assert len(winners) == 1 and all(o is not None for o in outcomes)


def test_the_heartbeat_keeps_a_short_lease_alive(store: Store):
    c = store.create_campaign("beating", status="paused")
    lease = store.acquire_lease(c.id, ttl=2.0)
    first = store.get_campaign(c.id).lease.expires
    with store.heartbeat(lease) as beat:
        deadline = time.monotonic() + 120  # a bound on waiting, not a speed requirement
        while store.get_campaign(c.id).lease.expires <= first:
            assert time.monotonic() < deadline, "the heartbeat never renewed the lease"
            time.sleep(0.1)
    assert beat.lost is None
    assert store.get_campaign(c.id).status == "running"
    store.release_lease(lease, "paused")


def test_the_heartbeat_notices_a_lost_lease(store: Store):
    c = store.create_campaign("usurped", status="paused")
    lease = store.acquire_lease(c.id, ttl=2.0)
    _rewrite_lease(store, c.id, lease_expires=m.utcnow() - timedelta(seconds=1))
    store.acquire_lease(c.id, ttl=600)
    with store.heartbeat(lease) as beat:
        deadline = time.monotonic() + 120
        while beat.lost is None:
            assert time.monotonic() < deadline, "the heartbeat never noticed"
            time.sleep(0.05)
    assert isinstance(beat.lost, LeaseLost)
