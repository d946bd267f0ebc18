"""One small campaign on the local pool (`--workers` processes) and on a dask `LocalCluster`
of as many worker processes (one thread each): wall time and evaluations per minute of each,
same machine, same run. The cluster's start-up is timed apart (a real cluster is started
once, before campaigns); the local pool starts its workers inside the campaign, as
`optforge run` does.

    python bench/cluster_campaign.py [--budget 16] [--workers 2] [--db URL]

Needs the cluster extra (pip install 'optforge[cluster]'). Baselines are computed (and
cached) before the timed runs. Each campaign gets its own SQLite file unless --db is given.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from optforge.search.config import (
    CampaignConfig,
    Evolution,
    Funnel,
    Simplify,
    Validation,
)
from optforge.search.engine import Campaign
from optforge.store import Store

# the campaign tests' tiny campaign, with a budget
CONFIG = CampaignConfig(
    seeds=("sgd_momentum",), seed=5, budget=16,
    evolution=Evolution(population=4, tournament=2, restart_after=50),
    funnel=Funnel(stage1="tiny", stage2="tiny", threshold=-10.0, stage2_max=1, screen="tiny",
                  hurdle=0.5),
    simplify=Simplify(enabled=False), validation=Validation(suite="tiny"))


def timed(db: str, name: str, config: CampaignConfig, **run) -> dict:
    with Store(db) as store:
        campaign = Campaign.create(store, config, name)
        start = time.perf_counter()
        summary = campaign.run(**run)
        seconds = time.perf_counter() - start
    trained = summary["evaluations"] + summary["screenings"]
    return {"seconds": seconds, "evaluations": summary["evaluations"], "trained": trained,
            "per_minute": 60 * summary["evaluations"] / seconds,
            "trained_per_minute": 60 * trained / seconds, "status": summary["status"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget", type=int, default=16)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--db", help="a store URL for both campaigns (default: SQLite files)")
    args = ap.parse_args()
    config = replace(CONFIG, budget=args.budget)
    from distributed import LocalCluster
    from optforge.evaluators import ensure_baselines, get_suite
    from optforge.evaluators.dask_pool import DaskPool

    ensure_baselines(get_suite("tiny"))
    with tempfile.TemporaryDirectory() as tmp:
        def db(name: str) -> str:
            return args.db or f"sqlite:///{Path(tmp) / name}.db"
        stamp = time.strftime("%H%M%S")
        local = timed(db("local"), f"bench-local-{stamp}", config, workers=args.workers)
        start = time.perf_counter()
        with LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True,
                          dashboard_address=None) as cluster, \
                DaskPool(cluster.scheduler_address) as pool:
            started = time.perf_counter() - start
            dask = timed(db("dask"), f"bench-dask-{stamp}", config, pool=pool)
    print(f"campaign: tiny suite, budget {args.budget}, {args.workers} workers")
    print(f"dask LocalCluster start-up (not in the figures below): {started:.1f} s")
    for label, r in (("--pool local", local), ("--pool dask ", dask)):
        print(f"{label}: {r['seconds']:6.1f} s, {r['evaluations']} evaluations "
              f"({r['per_minute']:.1f}/min), {r['trained']} trainings with screenings "
              f"({r['trained_per_minute']:.1f}/min), {r['status']}")


if __name__ == "__main__":
    main()
