"""A pool of worker processes that run jobs, survives its workers dying, and pins devices.

Design: a pool is a set of *slots*; each slot is a single-worker loky process executor
(`joblib.externals.loky`, the process backend of joblib) with its own initialiser
arguments. On a CPU machine there are K slots on device ``cpu``, each with
``cpu_count // K`` torch threads; when CUDA devices exist there is one slot per device and
each worker pins its device in the initialiser (`evaluators.jobs.init_worker`), so jobs
never share a GPU.

One job per slot at a time buys two things:

* attribution: when a worker dies (segfault, out-of-memory kill, ``os._exit``) the one job
  it was running is known; that job comes back as an ``error`` run ("worker died ..."), the
  slot gets a fresh worker, and every other job goes on;
* a hard limit: a job that overruns `hard_limit_s` (a worker stuck inside one huge op,
  where the trainer's own budget check never runs) is killed with its worker and comes back
  as a ``timeout`` run. The limit counts from the job's start on a warm worker: a fresh
  worker first runs a no-op to show it is up, and only then gets jobs.

A job is a `Job` or a `GroupJob` (several candidates on one task, trained together:
`evaluators.population`); a group job comes back as one run per candidate, and when its
worker dies or overruns, as one failed run per candidate (the evaluator then runs them
again one per job, to find the one at fault).

Workers start lazily: a slot starts its worker when a job is there for it (a pool of 8
slots given 2 jobs starts 2 processes), and a slot whose worker died or was killed starts a
new one only for its next job. Workers are reused across calls (data and compiled kernels
stay cached in them) until `close`. Jobs and results cross process boundaries by pickling:
everything in a `Job` and a `TaskRun` is plain frozen data.

How many workers a machine can take (`worker_limit`): on CPU, one per usable core (the
process's CPU affinity and a cgroup CPU quota; more only oversubscribe the cores), and on
any machine no more than fit in the memory available, at `WORKER_MEMORY_BYTES` each. A
request beyond that is refused by the command line (`check_workers`) and capped, with a
warning, by a pool built without explicit `devices`.
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Hashable, Iterable, Iterator

from joblib.externals import loky
from joblib.externals.loky.process_executor import BrokenProcessPool

from ..dsl.needs import passes_per_step
from .jobs import GroupJob, Job, failed_runs, init_worker, run_job, run_work
from .scoring import EvaluationError
from .trainer import Status, TaskRun

__all__ = ["EvaluatorPool", "SlotSpec", "plan_slots", "cuda_device_count", "WORKER_DIED",
           "HARD_LIMIT", "WORKER_MEMORY_BYTES", "WorkerLimit", "worker_limit", "check_workers",
           "usable_cores", "available_memory"]

log = logging.getLogger(__name__)

# How the runs of jobs that took their worker down begin their error message.
WORKER_DIED = "worker died while running this candidate"
HARD_LIMIT = "killed at the hard limit"


@dataclass(frozen=True)
class SlotSpec:
    device: str
    threads: int


def cuda_device_count() -> int:
    try:
        import torch

        return torch.cuda.device_count() if torch.cuda.is_available() else 0
    except Exception:  # noqa: BLE001 - a broken CUDA install means no CUDA
        return 0


# Memory one worker process may take, for `worker_limit`. Measured on Linux with torch
# 2.13 (CPU) as the peak resident set (VmHWM) of one pool worker training Lion: 372 MB on
# the tiny suite, 400 MB on `small`, 459 MB on `medium` and 686 MB on `validation` (the
# held-out suite, also run on the pool), of which 488 MB private; the rest is shared
# libraries (libtorch above all) that workers share. Reckoned above the largest on purpose:
# a worker killed for memory costs its candidate and a restart.
WORKER_MEMORY_BYTES = 768 * 2**20


def usable_cores() -> int:
    """The CPU cores this process may run on: its CPU affinity (a container's cpuset,
    `taskset`), capped by a cgroup v2 CPU quota (``docker --cpus``)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        cores = os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            cores = min(cores, math.ceil(int(quota) / int(period)))
    except (OSError, ValueError):
        pass
    return max(1, cores)


def available_memory() -> int | None:
    """Bytes that new processes can take without swapping: Linux's ``MemAvailable``
    (free memory plus reclaimable caches), else the free pages, capped by what a cgroup v2
    memory limit leaves; None if the system does not say."""
    available = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    available = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError):
        pass
    if available is None:
        try:
            available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (AttributeError, ValueError, OSError):
            pass
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit != "max":
            used = int(Path("/sys/fs/cgroup/memory.current").read_text())
            room = max(0, int(limit) - used)
            available = room if available is None else min(available, room)
    except (OSError, ValueError):
        pass
    return available


@dataclass(frozen=True)
class WorkerLimit:
    """The most evaluator workers this machine should run, and why."""

    workers: int
    cores: int
    cuda_devices: int
    memory: int | None  # bytes available, None if unknown
    by_memory: int | None  # workers that fit in it

    def problem(self, workers: int, what: str = "--workers") -> str | None:
        """Why `workers` are too many (None: they fit). `what` names the setting."""
        if self.cuda_devices == 0 and workers > self.cores:
            cores = "1 core" if self.cores == 1 else f"{self.cores} cores"
            return f"{what} {workers} exceeds the {cores} of this machine"
        # On CUDA, workers beyond the device count are not started (`plan_slots`).
        started = min(workers, self.cuda_devices) if self.cuda_devices else workers
        if self.by_memory is not None and started > self.by_memory:
            return (f"{what} {workers} needs about {_gb(started * WORKER_MEMORY_BYTES)} of "
                    f"memory ({WORKER_MEMORY_BYTES // 2**20} MB a worker) but "
                    f"{_gb(self.memory or 0)} is available (room for {self.by_memory})")
        return None


def _gb(n: int) -> str:
    return f"{n / 2**30:.1f} GB"


def worker_limit(cuda_devices: int | None = None) -> WorkerLimit:
    """This machine's limit (module doc). `cuda_devices`: None to ask torch."""
    cores = usable_cores()
    gpus = cuda_device_count() if cuda_devices is None else cuda_devices
    memory = available_memory()
    by_memory = None if memory is None else max(1, memory // WORKER_MEMORY_BYTES)
    workers = gpus if gpus > 0 else cores
    if by_memory is not None:
        workers = min(workers, by_memory)
    return WorkerLimit(max(1, workers), cores, gpus, memory, by_memory)


def check_workers(workers: int | None, what: str = "--workers") -> str | None:
    """Why asking for `workers` processes is too much for this machine, in one line naming
    the limit (None: fine; None or 0 mean "as many as fit" and always are)."""
    if not workers or workers < 1:
        return None
    return worker_limit().problem(workers, what)


def plan_slots(workers: int | None, cuda_devices: int, cpu_count: int,
               max_workers: int | None = None) -> list[SlotSpec]:
    """The pool's slots. With CUDA devices: one per device (at most `workers` of them if
    given), CPU threads shared out. Without: `workers` CPU slots (default: one per core, at
    most 8) sharing the cores. Never more than `max_workers` (`worker_limit`) if given."""
    if workers is not None and workers < 1:
        raise ValueError("workers must be >= 1")
    cpu_count = max(1, cpu_count)
    if cuda_devices > 0:
        n = cuda_devices if workers is None else min(workers, cuda_devices)
    else:
        n = workers if workers is not None else min(cpu_count, 8)
    if max_workers is not None:
        n = max(1, min(n, max_workers))
    if cuda_devices > 0:
        return [SlotSpec(f"cuda:{i}", max(1, cpu_count // n)) for i in range(n)]
    return [SlotSpec("cpu", max(1, cpu_count // n)) for _ in range(n)]


def _ready() -> bool:
    """A worker's first call: returns once the process is up and its initialiser ran."""
    return True


class _Slot:
    """One single-worker executor. A new worker first runs `_ready` (the slot is *warming*);
    jobs go only to a warm worker, so a job's hard limit never counts worker start-up."""

    def __init__(self, spec: SlotSpec):
        self.spec = spec
        self.executor: Any = None
        self.future: Any = None
        self.key: Hashable | None = None
        self.job: Job | None = None
        # The job a worker is being started for: submitted once the worker is warm.
        self.reserved: tuple[Hashable, Job] | None = None
        self.started = 0.0
        self.warm = False
        self.failed_starts = 0

    def start(self) -> None:
        """Start a worker if there is none (its readiness future becomes `future`)."""
        if self.executor is None:
            self.executor = loky.ProcessPoolExecutor(
                max_workers=1, initializer=init_worker,
                initargs=(self.spec.device, self.spec.threads))
            self.warm = False
            self.key = self.job = None
            self.future = self.executor.submit(_ready)

    def submit(self, runner: Callable[[Job], TaskRun], key: Hashable, job: Job) -> None:
        self.key, self.job, self.started = key, job, time.monotonic()
        self.future = self.executor.submit(runner, job)

    def release(self) -> None:
        self.future = self.key = self.job = None

    def kill(self) -> None:
        """Throw the worker away (it died or overran); `start` makes a fresh one."""
        if self.executor is not None:
            try:
                self.executor.shutdown(wait=False, kill_workers=True)
            except Exception:  # noqa: BLE001 - it is being discarded anyway
                pass
        self.executor = None
        self.warm = False
        self.future = self.key = self.job = None

    @property
    def idle(self) -> bool:
        """A warm worker with nothing to do."""
        return self.warm and self.future is None

    @property
    def vacant(self) -> bool:
        """No worker and no job waiting for one: a job given here starts a worker."""
        return self.executor is None and self.reserved is None

    @property
    def running(self) -> bool:
        return self.job is not None


class EvaluatorPool:
    """Run `Job`s on worker processes (module doc). Use as a context manager or `close()`.

    `workers`: number of CPU workers (ignored beyond the device count on CUDA machines);
    `devices`: explicit slots (overrides auto-detection); `runner`: the function a worker
    applies to a job (default `evaluators.jobs.run_work`, which runs a `Job` and a group
    job, `GroupJob`; it must be picklable by reference). A pool given another runner runs
    single jobs only (`groups` is False) unless `groups=True` says its runner takes group
    jobs too;
    `hard_limit_s(job)`: seconds after which a running job is killed (default: twice its
    task's time budget plus 30 s). Without `devices`, the slots are capped at what this
    machine takes (`worker_limit`; a warning says so). Each slot's worker starts when a job
    is there for it (module doc).
    """

    # A slot whose fresh worker dies before running anything this many times in a row means
    # workers cannot start here at all (a broken install): EvaluationError, not a retry loop.
    MAX_FAILED_STARTS = 3

    def __init__(self, workers: int | None = None, *, devices: list[SlotSpec] | None = None,
                 runner: Callable[[Job], TaskRun] = run_work,
                 hard_limit_s: Callable[[Job], float] | None = None,
                 groups: bool | None = None):
        if devices is None:
            limit = worker_limit()
            devices = plan_slots(workers, limit.cuda_devices, limit.cores,
                                 max_workers=limit.workers)
            problem = None if workers is None else limit.problem(workers, "workers")
            if problem:  # e.g. a campaign resumed on a smaller machine than it began on
                log.warning("evaluator pool: %s; starting at most %d", problem,
                            len(devices))
        if not devices:
            raise ValueError("a pool needs at least one slot")
        kinds = {s.device.split(":")[0] for s in devices}
        if len(kinds) != 1:
            raise ValueError("all slots of a pool must be of one device kind")
        self.device_kind = kinds.pop()
        self.slots = [_Slot(s) for s in devices]
        self.runner = runner
        self.groups = runner in (run_work, run_job) if groups is None else groups
        if runner is run_job and self.groups:
            self.runner = run_work
        self.hard_limit_s = hard_limit_s or _default_hard_limit
        self.restarts = 0
        self._discarded: set[Hashable] = set()

    @property
    def size(self) -> int:
        return len(self.slots)

    def run(self, jobs: Iterable[tuple[Hashable, Job]],
            on_idle: Callable[[], None] | None = None,
            ) -> Iterator[tuple[Hashable, TaskRun]]:
        """Run ``(key, job)`` pairs, yielding ``(key, run)`` as each finishes. `jobs` is
        consumed lazily, only when a worker is free, so a caller can decide what to run
        next from results already seen (steady-state evolution). A job whose worker dies
        yields an ``error`` run; one that overruns its hard limit a ``timeout`` run. Jobs
        can be dropped before they start with `discard`."""
        source = iter(jobs)
        exhausted = False
        self._discarded = set()
        try:
            while True:
                # Jobs go to warm idle workers first; then each vacant slot takes one and
                # starts a worker for it (a worker is never started without a job).
                for slot in sorted(self.slots, key=lambda s: not s.idle):
                    while not exhausted and (slot.idle or slot.vacant):
                        try:
                            key, job = next(source)
                        except StopIteration:
                            exhausted = True
                            break
                        if key in self._discarded:
                            continue
                        if slot.idle:
                            slot.submit(self.runner, key, job)
                        else:
                            slot.reserved = (key, job)
                for slot in self.slots:
                    if slot.reserved is not None:
                        slot.start()  # (again, after a failed start)
                busy = [s for s in self.slots if s.running or s.reserved is not None]
                if exhausted and not busy:
                    return
                pending = [s.future for s in self.slots if s.future is not None]
                done, _ = loky.wait(pending, timeout=0.5, return_when=loky.FIRST_COMPLETED)
                for slot in self.slots:
                    if slot.future is None:
                        continue
                    if slot.future in done:
                        if slot.running:
                            yield slot.key, self._collect(slot)
                        else:
                            self._warmed(slot)
                            if slot.idle and slot.reserved is not None:
                                key, job = slot.reserved
                                slot.reserved = None
                                if key not in self._discarded:
                                    slot.submit(self.runner, key, job)
                    elif slot.running and \
                            time.monotonic() - slot.started > self.hard_limit_s(slot.job):
                        key, job = slot.key, slot.job
                        limit = self.hard_limit_s(job)
                        slot.kill()
                        self.restarts += 1
                        yield key, failed_runs(job, f"{HARD_LIMIT} ({limit:.0f} s)",
                                               Status.TIMEOUT, limit)
                if on_idle is not None:
                    on_idle()
        finally:
            # An abandoned generator (the caller stopped early) must not leave jobs running.
            for slot in self.slots:
                slot.reserved = None
                if slot.running:
                    slot.kill()

    def discard(self, key: Hashable) -> None:
        """Skip the job with `key` if it has not started yet (during `run`)."""
        self._discarded.add(key)

    def _warmed(self, slot: _Slot) -> None:
        future = slot.future
        slot.release()
        try:
            future.result()
        except Exception as e:  # noqa: BLE001 - the worker could not start
            slot.kill()
            slot.failed_starts += 1
            if slot.failed_starts >= self.MAX_FAILED_STARTS:
                raise EvaluationError(f"evaluator workers on {slot.spec.device} cannot start: "
                                   f"{type(e).__name__}: {e}") from None
            return
        slot.warm = True
        slot.failed_starts = 0

    def _collect(self, slot: _Slot) -> TaskRun:
        job, future = slot.job, slot.future
        elapsed = time.monotonic() - slot.started
        slot.release()
        try:
            return future.result()
        except BrokenProcessPool as e:
            # The worker died. Loky's message names exit codes; keep its first line.
            slot.kill()
            self.restarts += 1
            detail = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            return failed_runs(job, f"{WORKER_DIED} ({detail})", Status.ERROR, elapsed)
        except Exception as e:  # noqa: BLE001 - a job that raised: its error, not the pool's
            return failed_runs(job, f"{type(e).__name__}: {e}", Status.ERROR, elapsed)

    def close(self) -> None:
        for slot in self.slots:
            if slot.executor is not None:
                try:
                    slot.executor.shutdown(wait=True)
                except Exception:  # noqa: BLE001
                    slot.kill()
                slot.executor = None
                slot.warm = False
                slot.release()
            slot.reserved = None

    def __enter__(self) -> "EvaluatorPool":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _default_hard_limit(job: Job | GroupJob) -> float:
    """Twice the job's time budget plus 30 s; a group job's budget is the sum of its
    programs' (each is charged its share of the group's time); a program's budget is
    scaled by its passes per step (`dsl.needs.passes_per_step`), as the trainer scales it."""
    budget = job.time_budget_s if job.time_budget_s is not None else job.task.time_budget_s
    programs = job.programs if isinstance(job, GroupJob) else (job.program,)
    budget *= sum(_passes(p) for p in programs)  # each scaled by its passes per step
    return 2 * budget + 30.0


def _passes(program) -> int:
    try:
        return passes_per_step(program)
    except Exception:  # noqa: BLE001 - a broken program fails in its job, at one pass
        return 1
