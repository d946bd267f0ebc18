"""Crash safety: a writer killed with SIGKILL at random points, again and again, leaves a
database that opens, passes an integrity check, has lost no committed row, holds no half
evaluation, and resumes from its checkpoint without duplicating anything."""

from __future__ import annotations

import random
import signal
import time

import pytest
from optforge.store import Store
from sqlalchemy import create_engine
from storetest_helpers import spawn_worker

ROUNDS = 5


def _integrity(db_url: str) -> None:
    if not db_url.startswith("sqlite"):
        return  # a PostgreSQL server outlives its clients; the row checks below apply
    engine = create_engine(db_url)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA integrity_check").scalar() == "ok"
        assert conn.exec_driver_sql("PRAGMA foreign_key_check").all() == []
    engine.dispose()


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_sigkill_loses_nothing_committed(db_url: str):
    rng = random.Random(20240607)
    with Store(db_url) as st:
        st.create_campaign("crash", {"seed": 1})
    committed: dict[int, int] = {}  # step -> evaluation id, as printed after each commit
    for _ in range(ROUNDS):
        worker = spawn_worker("crash-writer", db_url, "crash")
        want = rng.randint(1, 12)
        seen = 0
        while seen < want:
            line = worker.stdout.readline()
            assert line, f"writer exited early: {worker.stderr.read()}"
            _, step, ev_id = line.split()
            committed[int(step)] = int(ev_id)
            seen += 1
        # Kill at a random moment relative to the commits, usually mid-transaction.
        time.sleep(rng.uniform(0, 0.03))
        worker.send_signal(signal.SIGKILL)
        out, _ = worker.communicate()
        for line in out.splitlines():  # committed lines printed before the kill landed
            _, step, ev_id = line.split()
            committed[int(step)] = int(ev_id)
        assert worker.returncode == -signal.SIGKILL

        _integrity(db_url)
        with Store(db_url, create=False) as st:
            evals = st.evaluations(campaign="crash")
            ckpt = st.load_checkpoint("crash")
            by_id = {e.id: e for e in evals}
            for step, ev_id in committed.items():
                assert by_id[ev_id].key == f"eval-{step}"  # no committed row lost
            done = ckpt.counters["done"]
            # The checkpoint and the evaluations were committed together: exactly the
            # steps 0..done-1 are stored, once each, each with all its task results.
            assert sorted(e.key for e in evals) == sorted(f"eval-{i}" for i in range(done))
            assert all(len(e.tasks) == 3 for e in evals)
            assert done >= max(committed) + 1
    assert len(committed) >= ROUNDS
