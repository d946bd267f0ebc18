"""Helpers for the tests that run a real `dask.distributed` cluster: the package (the
``cluster`` extra) is required in CI (``CI=true``: a missing one fails) and skips otherwise,
as the PostgreSQL tests do; a `LocalCluster` of worker *processes*, as a real cluster has."""

from __future__ import annotations

import importlib
import os

import pytest


def require_distributed():
    """The `distributed` module; skip (fail in CI) when the cluster extra is missing."""
    try:
        return importlib.import_module("distributed")
    except ImportError:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("dask.distributed is not installed: the cluster tests are required "
                        "in CI (.ci/run installs the project with its `cluster` extra)")
        pytest.skip("dask.distributed not installed (pip install -e '.[cluster]')")


def local_cluster(workers: int = 2):
    """A `LocalCluster` of `workers` worker processes with one thread each (each behind a
    nanny that restarts it when it dies, as `dask worker` runs them), no dashboard."""
    distributed = require_distributed()
    return distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                    dashboard_address=None)


def imported_store() -> bool:
    """Run on a worker: whether its process imported optforge's store (it must not: the
    search process is the store's only writer). Lives here, not in a test module, because a
    worker imports the module of a function it runs, and test modules import the store."""
    import sys

    return "optforge.store" in sys.modules
