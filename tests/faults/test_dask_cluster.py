"""Campaigns on a real dask.distributed cluster (a `LocalCluster` of two worker processes,
one thread each, behind nannies) writing to a real PostgreSQL server: a worker SIGKILLed in
the middle of a campaign loses nothing and trains nothing twice, and `optforge run` /
`optforge resume` drive a campaign on the cluster from the command line.

The campaign is the fault suite's small one (`conftest.CONFIG_TOML`); its undisturbed serial
run (`reference`) says how many evaluations of each stage a finished campaign holds. One
cluster serves the module (worker processes are slow to start)."""

from __future__ import annotations

import os
import signal
from collections import Counter

import pytest
from optforge.evaluators.pool import WORKER_DIED
from optforge.search.cli import main
from optforge.search.config import load_config
from optforge.search.engine import Campaign
from optforge.store import Store

from tests.dask_helpers import imported_store, local_cluster, require_distributed
from tests.store.conftest import PgSchema, pg_base_url

from .conftest import assert_nothing_doubled, config_file, history

BUDGETED = (1, 2, 3)  # stage 1, stage 2, validation: fixed by the budget (screenings vary)


@pytest.fixture(scope="module")
def cluster():
    require_distributed()
    with local_cluster(2) as c:
        yield c


@pytest.fixture
def pg_url():
    schema = PgSchema(pg_base_url())
    try:
        yield schema.url
    finally:
        schema.drop()


@pytest.fixture
def dask_pool(cluster):
    from optforge.evaluators.dask_pool import DaskPool

    with DaskPool(cluster.scheduler_address) as pool:
        yield pool


def stage_counts(hist) -> Counter:
    return Counter(stage for _, stage, _ in hist if stage in BUDGETED)


def assert_complete(store: Store, campaign, reference) -> None:
    """Finished with every budgeted evaluation once, as many as undisturbed, none lost to a
    dead worker, nothing trained twice."""
    assert store.get_campaign(campaign).status == "finished"
    assert_nothing_doubled(store, campaign)
    assert stage_counts(history(store, campaign)) == stage_counts(reference)
    for ev in store.evaluations(campaign=campaign):
        assert WORKER_DIED not in (ev.error or ""), ev.error
        for t in ev.tasks:
            assert WORKER_DIED not in (t.metrics.get("error") or ""), t.metrics


def kill_a_busy_worker(pool) -> int:
    """SIGKILL a worker process that is running a job (any worker if none is); its pid."""
    pids = pool.worker_pids()
    busy = [w for w, keys in pool.client.processing().items() if keys and w in pids]
    victim = busy[0] if busy else min(pids)
    os.kill(pids[victim], signal.SIGKILL)
    return pids[victim]


def test_a_worker_killed_mid_campaign_loses_nothing_and_trains_nothing_twice(
        dask_pool, pg_url, reference, tmp_path):
    config = load_config(str(config_file(tmp_path)))
    killed: list[int] = []
    with Store(pg_url) as store:
        campaign = Campaign.create(store, config, "dask-kill")

        def progress(counters):  # after a stage-1 commit, in the middle of the run
            if not killed and counters.stage1_evaluations >= 2:
                killed.append(kill_a_busy_worker(dask_pool))
        campaign.progress = progress
        summary = campaign.run(pool=dask_pool)
        assert summary["status"] == "finished"
        assert killed, "the campaign never reached the kill"
        assert_complete(store, campaign.id, reference)
        assert summary["evaluations"] == sum(stage_counts(reference)[s] for s in (1, 2))
    # the nanny replaced the killed worker, and no worker ever opened the store
    assert killed[0] not in dask_pool.worker_pids().values()
    assert not any(dask_pool.client.run(imported_store).values())


def test_run_and_resume_on_the_cluster_from_the_command_line(cluster, pg_url, reference,
                                                            tmp_path, capsys):
    """`optforge run --pool dask` finishes a campaign on the cluster; a campaign stopped
    half way is finished by `optforge resume --pool dask`."""
    address = cluster.scheduler_address
    cfg = str(config_file(tmp_path))
    status = main(["run", cfg, "--pool", "dask", "--scheduler", address, "--db", pg_url,
                   "--name", "dask-cli", "--no-progress"])
    assert status == 0, capsys.readouterr().err
    with Store(pg_url, create=False) as store:
        assert_complete(store, "dask-cli", reference)
        campaign = Campaign.create(store, load_config(cfg), "dask-stopped")

        def stop(counters):
            if counters.stage1_evaluations >= 2:
                raise KeyboardInterrupt
        campaign.progress = stop
        assert campaign.run(workers=1)["status"] == "paused"
    status = main(["resume", "dask-stopped", "--pool", "dask", "--scheduler", address,
                   "--db", pg_url, "--no-progress"])
    assert status == 0, capsys.readouterr().err
    with Store(pg_url, create=False) as store:
        assert_complete(store, "dask-stopped", reference)
