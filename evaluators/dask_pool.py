"""An evaluator pool on a `dask.distributed` cluster: `EvaluatorPool`'s interface (``run``,
``discard``, ``size``, ``device_kind``, ``restarts``, ``close``, a context manager), with the
jobs run by the cluster's workers instead of local processes.

    >>> with DaskPool("tcp://scheduler:8786") as pool:
    ...     for key, run in pool.run(jobs):       # (key, TaskRun) as each job finishes
    ...         ...

Steady state: about as many jobs are in flight as the cluster has worker threads (asked of
the scheduler before each refill, so workers that join or leave change it), and `jobs` is
drawn lazily, one job whenever a thread frees up; so a free worker takes the next child and
a search can breed from the results already in.

What crosses the network: a `Job` is plain frozen data (a program, a task description: a few
kilobytes pickled), and a `TaskRun` comes back. The datasets are never sent: each worker
process builds them from the task's description once and keeps them (`evaluators.data`
caches per process), like a local pool worker. The search process is the only one that
talks to the store; workers never open it.

Each worker is set up once by a worker plugin (`WorkerSetup`): torch threads (one per dask
worker thread, dask's own convention, or ``$OPTFORGE_WORKER_THREADS``), and its device:
``$OPTFORGE_DEVICE`` if set, else the first CUDA device it sees, else the CPU. One worker per
GPU is how a GPU cluster is run (``dask cuda worker`` pins one device per worker with
``CUDA_VISIBLE_DEVICES``). All workers must be of one device kind (the suite is chosen for it).

Failures. A job that raises comes back as an ``error`` run, as on a local pool. A worker that
dies (killed, preempted, out of memory) loses nothing: the scheduler runs its jobs again on
another worker, and only a job that took down `allowed-failures` + 1 workers (dask's
``distributed.scheduler.allowed-failures``, 3 by default) comes back as an ``error`` run
(`WORKER_DIED`). A job past its hard limit comes back as a ``timeout`` run, and its worker is
restarted (through its nanny) to stop it. A scheduler that cannot be reached within the
connection timeout, or has no workers, raises `ClusterUnavailable` before anything runs.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable, Hashable, Iterable, Iterator
from dataclasses import replace
from typing import Any, Self
from urllib.parse import urlsplit

from .jobs import Job, failed_runs, run_job, run_work
from .pool import HARD_LIMIT, WORKER_DIED, _default_hard_limit
from .scoring import EvaluationError
from .trainer import Status, TaskRun

__all__ = ["CONNECT_TIMEOUT_S", "MISSING_EXTRA", "ClusterUnavailable", "DaskPool",
           "WorkerSetup", "scheduler_address"]

log = logging.getLogger(__name__)

MISSING_EXTRA = ("--pool dask needs dask.distributed, which is not installed: "
                 "pip install 'optforge[cluster]'")
CONNECT_TIMEOUT_S = 20.0
SCHEMES = ("tcp", "tls", "ucx", "ws", "wss", "inproc")
PLUGIN_NAME = "optforge-worker-setup"

# This worker process's device, set by `WorkerSetup` (read by `_run_on_worker`).
_DEVICE: dict[str, str | None] = {"device": None}


class ClusterUnavailable(EvaluationError):
    """The cluster cannot run jobs: unreachable scheduler, no workers, mixed devices."""


def scheduler_address(text: str) -> str:
    """`text` as a dask scheduler address (``tcp://HOST:PORT``; a bare ``HOST:PORT`` means
    tcp). Raises ValueError with a one-line reason when it is not one."""
    raw = text.strip()
    if "://" not in raw:
        raw = "tcp://" + raw
    parts = urlsplit(raw)
    problem = None
    if parts.scheme not in SCHEMES:
        problem = f"unknown protocol {parts.scheme!r} (one of {', '.join(SCHEMES)})"
    elif parts.path not in ("", "/") or parts.query or parts.fragment:
        problem = "an address has no path"
    elif parts.scheme != "inproc":
        try:
            port = parts.port
        except ValueError:
            port, problem = None, "the port is not a number from 0 to 65535"
        if problem is None and not (parts.hostname and re.fullmatch(r"[\w.\-:\[\]]+",
                                                                    parts.hostname)):
            problem = "it names no host"
        elif problem is None and port is None:
            problem = "it names no port (the scheduler's default is 8786)"
    if problem:
        raise ValueError(f"malformed scheduler address {text!r}: {problem}; "
                         "expected tcp://HOST:PORT")
    return raw.rstrip("/")


def _import_distributed():
    try:
        import distributed
    except ImportError:
        raise ClusterUnavailable(MISSING_EXTRA) from None
    return distributed


try:  # the plugin must subclass dask's base class where dask is installed
    from distributed.diagnostics.plugin import WorkerPlugin as _PluginBase
except ImportError:  # optforge without the cluster extra: DaskPool refuses to start anyway
    _PluginBase = object


class WorkerSetup(_PluginBase):
    """Runs once in every worker process (and in each one that joins later): pins the
    device and the torch threads (module doc)."""

    name = PLUGIN_NAME

    def setup(self, worker: Any) -> None:
        import torch

        _DEVICE["device"] = device = _choose_device(torch)
        threads = int(os.environ.get("OPTFORGE_WORKER_THREADS") or 1)
        torch.set_num_threads(max(1, threads))
        if device.startswith("cuda"):
            torch.cuda.set_device(torch.device(device))
            if torch.cuda.device_count() > 1 and "OPTFORGE_DEVICE" not in os.environ:
                log.warning("dask worker %s sees %d CUDA devices and uses only %s: start "
                            "one worker per GPU (`dask cuda worker`)", worker.address,
                            torch.cuda.device_count(), device)


def _choose_device(torch) -> str:
    if os.environ.get("OPTFORGE_DEVICE"):
        return os.environ["OPTFORGE_DEVICE"]
    return "cuda:0" if torch.cuda.is_available() else "cpu"


def _worker_device() -> str:
    """This worker's device (the plugin's choice; chosen here if a job beat the plugin)."""
    if _DEVICE["device"] is None:
        import torch

        _DEVICE["device"] = _choose_device(torch)
    return _DEVICE["device"]


def _worker_info() -> tuple[str, int]:
    """(device, pid) of the worker this runs on."""
    return _worker_device(), os.getpid()


def _run_on_worker(runner: Callable[[Job], TaskRun], job: Job) -> TaskRun:
    """What a worker thread runs: the job on this worker's device."""
    return runner(job if job.device is not None else replace(job, device=_worker_device()))


class DaskPool:
    """`EvaluatorPool`'s interface on a dask cluster (module doc).

    `scheduler`: the scheduler's address (or `client`, an existing `distributed.Client`,
    which then stays open after `close`); `runner`: the function a worker applies to a job
    (importable by reference on the workers; the default runs a `Job` and a group job,
    `GroupJob`, as `EvaluatorPool`'s does; another runner runs single jobs unless `groups`);
    `hard_limit_s(job)`: seconds after which a job counts as hung (default: as
    `EvaluatorPool`'s); `connect_timeout`: seconds to reach the scheduler and to wait for a
    first worker."""

    POLL_S = 0.5  # how often hard limits are checked while nothing finishes

    def __init__(self, scheduler: str | None = None, *, client: Any = None,
                 runner: Callable[[Job], TaskRun] = run_work,
                 hard_limit_s: Callable[[Job], float] | None = None,
                 connect_timeout: float = CONNECT_TIMEOUT_S, groups: bool | None = None):
        distributed = _import_distributed()
        self._distributed = distributed
        self.groups = runner in (run_work, run_job) if groups is None else groups
        self.runner = run_work if runner is run_job and self.groups else runner
        self.hard_limit_s = hard_limit_s or _default_hard_limit
        self.restarts = 0
        self._discarded: set[Hashable] = set()
        self._own_client = client is None
        if client is None:
            address = scheduler_address(scheduler or "")
            try:
                client = distributed.Client(address, timeout=connect_timeout,
                                            set_as_default=False)
            except (OSError, TimeoutError) as e:
                reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                raise ClusterUnavailable(f"cannot reach the dask scheduler at {address} "
                                         f"within {connect_timeout:g} s ({reason[:160]})"
                                         ) from None
        self.client = client
        self.address = client.scheduler.address
        try:
            self._start(connect_timeout)
        except BaseException:
            self.close()
            raise

    def _start(self, timeout: float) -> None:
        try:
            self.client.wait_for_workers(1, timeout=timeout)
        except TimeoutError:
            raise ClusterUnavailable(f"no dask worker joined the scheduler at {self.address} "
                                     f"within {timeout:g} s") from None
        self.client.register_plugin(WorkerSetup(), name=PLUGIN_NAME)
        info = self.client.run(_worker_info)
        kinds = {device.split(":")[0] for device, _ in info.values()}
        if len(kinds) != 1:
            raise ClusterUnavailable(f"the dask workers at {self.address} mix device kinds "
                                     f"({', '.join(sorted(kinds))}); run one kind per "
                                     "campaign")
        self.device_kind = kinds.pop()

    @property
    def size(self) -> int:
        """Jobs the cluster runs at once now: its workers' threads."""
        return sum(self._ask(self.client.nthreads).values())

    def _ask(self, call: Callable, *args: Any, **kwargs: Any) -> Any:
        """`call` (a request to the scheduler); a lost scheduler (the client gave up
        reconnecting) raises `EvaluationError`, which stops the campaign in one line with
        everything committed kept."""
        try:
            return call(*args, **kwargs)
        except OSError as e:  # CommClosedError, connection timeouts
            raise self._lost(e) from None

    def _lost(self, e: Exception) -> EvaluationError:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        return EvaluationError(f"lost the dask scheduler at {self.address} ({reason[:160]})")

    def worker_pids(self) -> dict[str, int]:
        """Each worker's address -> its process id (for tests and diagnostics)."""
        return {w: pid for w, (_, pid) in self.client.run(_worker_info).items()}

    def run(self, jobs: Iterable[tuple[Hashable, Job]],
            on_idle: Callable[[], None] | None = None,
            ) -> Iterator[tuple[Hashable, TaskRun]]:
        """`EvaluatorPool.run` on the cluster: ``(key, run)`` as each job finishes, `jobs`
        drawn only when a worker thread is free."""
        source = iter(jobs)
        exhausted = False
        self._discarded = set()
        flying: dict[Any, tuple[Hashable, Job, float]] = {}  # future -> key, job, submitted
        try:
            while True:
                room = self.size - len(flying)
                while not exhausted and room > 0:
                    try:
                        key, job = next(source)
                    except StopIteration:
                        exhausted = True
                        break
                    if key in self._discarded:
                        continue
                    future = self._ask(self.client.submit, _run_on_worker, self.runner, job,
                                       pure=False)
                    flying[future] = (key, job, time.monotonic())
                    room -= 1
                if exhausted and not flying:
                    return
                for future in [f for f in flying if flying[f][0] in self._discarded]:
                    future.cancel()
                    del flying[future]
                if not flying:
                    if not exhausted:  # no worker threads now: wait for workers to join
                        time.sleep(self.POLL_S)
                    continue
                try:
                    with self.client.as_current():
                        done, _ = self._distributed.wait(list(flying), timeout=self.POLL_S,
                                                         return_when="FIRST_COMPLETED")
                except TimeoutError:
                    done = set()
                except OSError as e:
                    raise self._lost(e) from None
                for future in done:
                    key, job, started = flying.pop(future)
                    yield key, self._collect(future, job, started)
                now = time.monotonic()
                for future in [f for f in flying if f not in done]:
                    key, job, started = flying[future]
                    limit = self.hard_limit_s(job)
                    if now - started > limit:
                        del flying[future]
                        self._stop_hung(future)
                        yield key, failed_runs(job, f"{HARD_LIMIT} ({limit:.0f} s)",
                                             Status.TIMEOUT, limit)
                if on_idle is not None:
                    on_idle()
        finally:
            # An abandoned generator (the caller stopped early) leaves no jobs queued.
            for future in flying:
                future.cancel()

    def discard(self, key: Hashable) -> None:
        """Skip (or cancel) the job with `key` if it has not finished yet (during `run`)."""
        self._discarded.add(key)

    def _collect(self, future: Any, job: Job, started: float) -> TaskRun:
        elapsed = time.monotonic() - started
        try:
            return future.result()
        except self._distributed.scheduler.KilledWorker as e:
            self.restarts += 1
            return failed_runs(job, f"{WORKER_DIED} ({str(e).splitlines()[0][:200]})",
                             Status.ERROR, elapsed)
        except self._distributed.client.FutureCancelledError as e:
            raise EvaluationError(f"lost the dask scheduler at {self.address}: it dropped "
                                  f"a job ({str(e)[:160]})") from None
        except Exception as e:  # noqa: BLE001 - a job that raised: its error, not the pool's
            return failed_runs(job, f"{type(e).__name__}: {e}", Status.ERROR, elapsed)

    def _stop_hung(self, future: Any) -> None:
        """Cancel a hung job and restart the worker stuck in it (its thread cannot be
        stopped otherwise); a worker without a nanny stays busy, with a warning."""
        self.restarts += 1
        processing = self._ask(self.client.processing)
        workers = [w for w, keys in processing.items() if future.key in keys]
        future.cancel()
        if workers:
            try:
                self.client.restart_workers(workers, raise_for_error=True)
            except Exception as e:  # noqa: BLE001 - e.g. a worker started without a nanny
                log.warning("could not restart the dask worker(s) %s stuck in a hung job: "
                            "%s", ", ".join(workers), e)

    def close(self) -> None:
        if self._own_client and getattr(self, "client", None) is not None:
            try:
                self.client.close()
            except Exception as e:  # noqa: BLE001 - closing a client of a gone scheduler
                log.debug("closing the dask client: %s", e)
        self.client = None if self._own_client else self.client

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
