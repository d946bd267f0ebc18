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

Workers are reused across calls (data and compiled kernels stay cached in them) until
`close`. Jobs and results cross process boundaries by pickling: everything in a `Job` and a
`TaskRun` is plain frozen data.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any, Callable, Hashable, Iterable, Iterator

from joblib.externals import loky
from joblib.externals.loky.process_executor import BrokenProcessPool

from .jobs import Job, error_run, init_worker, run_job
from .scoring import EvaluationError
from .trainer import Status, TaskRun

__all__ = ["EvaluatorPool", "SlotSpec", "plan_slots", "cuda_device_count", "WORKER_DIED",
           "HARD_LIMIT"]

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


def plan_slots(workers: int | None, cuda_devices: int, cpu_count: int) -> list[SlotSpec]:
    """The pool's slots. With CUDA devices: one per device (at most `workers` of them if
    given), CPU threads shared out. Without: `workers` CPU slots (default: one per core, at
    most 8) sharing the cores."""
    if workers is not None and workers < 1:
        raise ValueError("workers must be >= 1")
    cpu_count = max(1, cpu_count)
    if cuda_devices > 0:
        n = cuda_devices if workers is None else min(workers, cuda_devices)
        return [SlotSpec(f"cuda:{i}", max(1, cpu_count // n)) for i in range(n)]
    n = workers if workers is not None else min(cpu_count, 8)
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
        return self.warm and self.future is None

    @property
    def running(self) -> bool:
        return self.job is not None


class EvaluatorPool:
    """Run `Job`s on worker processes (module doc). Use as a context manager or `close()`.

    `workers`: number of CPU workers (ignored beyond the device count on CUDA machines);
    `devices`: explicit slots (overrides auto-detection); `runner`: the function a worker
    applies to a job (default `evaluators.jobs.run_job`; it must be picklable by reference);
    `hard_limit_s(job)`: seconds after which a running job is killed (default: twice its
    task's time budget plus 30 s). Workers start when the pool is first used, all at once.
    """

    # A slot whose fresh worker dies before running anything this many times in a row means
    # workers cannot start here at all (a broken install): EvaluationError, not a retry loop.
    MAX_FAILED_STARTS = 3

    def __init__(self, workers: int | None = None, *, devices: list[SlotSpec] | None = None,
                 runner: Callable[[Job], TaskRun] = run_job,
                 hard_limit_s: Callable[[Job], float] | None = None):
        if devices is None:
            devices = plan_slots(workers, cuda_device_count(), os.cpu_count() or 1)
        if not devices:
            raise ValueError("a pool needs at least one slot")
        kinds = {s.device.split(":")[0] for s in devices}
        if len(kinds) != 1:
            raise ValueError("all slots of a pool must be of one device kind")
        self.device_kind = kinds.pop()
        self.slots = [_Slot(s) for s in devices]
        self.runner = runner
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
                for slot in self.slots:
                    slot.start()
                for slot in self.slots:
                    while slot.idle and not exhausted:
                        try:
                            key, job = next(source)
                        except StopIteration:
                            exhausted = True
                            break
                        if key not in self._discarded:
                            slot.submit(self.runner, key, job)
                running = [s for s in self.slots if s.running]
                if exhausted and not running:
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
                    elif slot.running and \
                            time.monotonic() - slot.started > self.hard_limit_s(slot.job):
                        key, job = slot.key, slot.job
                        limit = self.hard_limit_s(job)
                        slot.kill()
                        self.restarts += 1
                        yield key, error_run(job.task, f"{HARD_LIMIT} ({limit:.0f} s)",
                                             Status.TIMEOUT, limit)
                if on_idle is not None:
                    on_idle()
        finally:
            # An abandoned generator (the caller stopped early) must not leave jobs running.
            for slot in self.slots:
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
            return error_run(job.task, f"{WORKER_DIED} ({detail})", Status.ERROR, elapsed)
        except Exception as e:  # noqa: BLE001 - a job that raised: its error, not the pool's
            return error_run(job.task, f"{type(e).__name__}: {e}", Status.ERROR, elapsed)

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

    def __enter__(self) -> "EvaluatorPool":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _default_hard_limit(job: Job) -> float:
    budget = job.time_budget_s if job.time_budget_s is not None else job.task.time_budget_s
    return 2 * budget + 30.0
