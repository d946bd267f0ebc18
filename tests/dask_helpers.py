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


class ProcessCluster:
    """A scheduler and `workers` workers started as a user starts them (`dask scheduler`,
    `dask worker`: separate processes, each in its own session so that they can be killed
    with all their children), sharing a scheduler file in `directory`."""

    def __init__(self, directory, workers: int = 1):
        import json
        import subprocess
        import sys
        import time

        require_distributed()
        self.file = directory / "scheduler.json"
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
        quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL,
                 "start_new_session": True, "env": env}
        self.scheduler = subprocess.Popen(
            [sys.executable, "-m", "distributed.cli.dask_scheduler", "--port", "0",
             "--host", "127.0.0.1", "--no-dashboard", "--scheduler-file", str(self.file)],
            **quiet)
        self.workers = []
        try:
            while not self.file.exists() or not self.file.read_text().strip():
                if self.scheduler.poll() is not None:
                    raise RuntimeError("the dask scheduler did not start")
                time.sleep(0.1)
            self.address = json.loads(self.file.read_text())["address"]
            self.workers = [subprocess.Popen(
                [sys.executable, "-m", "distributed.cli.dask_worker", self.address,
                 "--nthreads", "1", "--no-dashboard"], **quiet) for _ in range(workers)]
            from distributed import Client
            with Client(self.address, set_as_default=False) as client:
                client.wait_for_workers(workers)
        except BaseException:
            self.close()
            raise

    def kill_scheduler(self) -> None:
        import signal

        os.killpg(self.scheduler.pid, signal.SIGKILL)
        self.scheduler.wait()

    def close(self) -> None:
        import signal

        for proc in [self.scheduler, *self.workers]:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
