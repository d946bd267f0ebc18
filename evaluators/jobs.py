"""The unit of work: one candidate on one task (or several, as a group), and how a process
runs it.

A `Job` is plain picklable data (a `dsl.Program`, a `Task`, overrides); `run_job` compiles
the program (cached per process) and trains the task on the process's device, extending the
learning-rate grid past an end where the best rate lies (`extend_lr_grid`). Pool workers
run jobs; so does the in-process `evaluators.evaluate`. A worker process learns its device
and thread count once, in `init_worker` (the pool's initialiser).

A `GroupJob` is several candidates on one task: `run_group` trains them as one batched
model (`evaluators.population`), the learning-rate extension rounds too, and gives each
candidate the TaskRun `run_job` gives it alone (bit for bit on CPU; the time figures are
its share of the group's). On a CUDA device the group is split into chunks that fit the
device's free memory (`evaluators.grouping`).
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Mapping

import torch
from optforge.dsl import Program
from optforge.dsl.kernel import Kernel, compile_kernel

from .grouping import chunk_size
from .models import build_problem
from .population import Member, train_population
from .scoring import improving_end
from .tasks import Task, rates_beyond
from .trainer import Status, TaskRun, merge_runs, train_replicas

__all__ = ["Job", "GroupJob", "run_job", "run_group", "run_work", "failed_runs",
           "extend_lr_grid", "init_worker", "worker_device", "error_run", "LR_EXTENSION_STEP"]

# Rates added per extension round: one training of this many rates x the task's seeds.
LR_EXTENSION_STEP = 2

_WORKER = {"device": None}


@dataclass(frozen=True)
class Job:
    """Train `program` on `task`. `hyper` overrides hyperparameter defaults (a sorted tuple
    of pairs, to stay hashable); `time_budget_s` overrides the task's budget (either is a
    one-pass rule's: a rule is given it times its passes per step, `Kernel.passes`, as
    curvature and second-gradient steps cost more passes); `device` None
    means the worker's pinned device (CPU outside a pool); `record_every` > 0 records
    validation-loss curves (`evaluators.trainer.train_replicas`)."""

    program: Program
    task: Task
    hyper: tuple[tuple[str, float], ...] = ()
    time_budget_s: float | None = None
    device: str | None = None
    record_every: int = 0


@dataclass(frozen=True)
class GroupJob:
    """Train each of `programs` on `task`, together (`run_group`); the other fields as in
    `Job`, for every program alike."""

    programs: tuple[Program, ...]
    task: Task
    hyper: tuple[tuple[str, float], ...] = ()
    time_budget_s: float | None = None
    device: str | None = None
    record_every: int = 0

    def member(self, i: int) -> Job:
        """The job of the group's i-th program alone."""
        return Job(self.programs[i], self.task, self.hyper, self.time_budget_s, self.device,
                   self.record_every)


def init_worker(device: str, threads: int) -> None:
    """Pool initialiser: pin this worker process to `device` and `threads` CPU threads, and
    end it when the process that started it dies (a SIGKILLed campaign leaves no workers
    training on behind it)."""
    torch.set_num_threads(max(1, int(threads)))
    if device.startswith("cuda"):
        torch.cuda.set_device(torch.device(device))
    _WORKER["device"] = device
    parent = os.getppid()
    threading.Thread(target=_exit_when_orphaned, args=(parent,), daemon=True,
                     name="optforge-parent-watch").start()


def _exit_when_orphaned(parent: int, every_s: float = 1.0) -> None:
    while os.getppid() == parent:
        time.sleep(every_s)
    os._exit(1)


def worker_device() -> str:
    return _WORKER["device"] or "cpu"


@lru_cache(maxsize=256)
def _kernel(program: Program) -> Kernel:
    return compile_kernel(program)


def run_job(job: Job) -> TaskRun:
    """Run one job in this process. A rule that cannot be compiled or that fails while
    training gives an ``error`` run; a broken task (missing data, unknown model) raises."""
    try:
        kernel = _kernel(job.program)
    except Exception as e:  # noqa: BLE001 - an uncompilable rule is the rule's error
        return error_run(job.task, f"cannot compile rule: {type(e).__name__}: {e}")
    task, device = job.task, job.device or worker_device()
    start = time.perf_counter()
    problem = build_problem(task.model, task.model_kwargs, task.data, task.data_args,
                            torch.device(device))
    built_s = time.perf_counter() - start
    # a plain rule's budget, times the passes per step of this one (`Kernel.passes`)
    budget = (task.time_budget_s if job.time_budget_s is None else job.time_budget_s) \
        * kernel.passes

    def train(lrs: tuple[float, ...], time_budget_s: float) -> TaskRun:
        return train_replicas(task, kernel, lrs, task.seeds, device=device,
                              hyper=dict(job.hyper) or None, time_budget_s=time_budget_s,
                              problem=problem, record_every=job.record_every)
    run = extend_lr_grid(task, train(task.lrs, budget), train, budget)
    return replace(run, wall_time=run.wall_time + built_s)


def run_group(job: GroupJob) -> tuple[TaskRun, ...]:
    """Run a group job in this process: one TaskRun per program, each what `run_job` gives
    that program alone (module doc). A broken task raises, as in `run_job`."""
    task, device = job.task, job.device or worker_device()
    runs: list[TaskRun | None] = [None] * len(job.programs)
    kernels = {}
    for i, program in enumerate(job.programs):
        try:
            kernels[i] = _kernel(program)
        except Exception as e:  # noqa: BLE001 - an uncompilable rule is the rule's error
            runs[i] = error_run(task, f"cannot compile rule: {type(e).__name__}: {e}")
    start = time.perf_counter()
    problem = build_problem(task.model, task.model_kwargs, task.data, task.data_args,
                            torch.device(device))
    built_s = (time.perf_counter() - start) / max(1, len(kernels))
    budget = task.time_budget_s if job.time_budget_s is None else job.time_budget_s
    budgets = {i: budget * k.passes for i, k in kernels.items()}  # as `run_job` scales it
    hyper = dict(job.hyper) or None
    size = chunk_size(task, device, len(kernels))

    def train(requests: list[tuple[int, tuple[float, ...], float]]) -> dict[int, TaskRun]:
        """Train (program, rates, time budget) requests, `size` programs at a time."""
        out = {}
        for lo in range(0, len(requests), size):
            part = requests[lo:lo + size]
            trained = train_population(
                task, [Member(kernels[i], lrs, hyper, left) for i, lrs, left in part],
                device=device, problem=problem, record_every=job.record_every)
            out.update((i, run) for (i, _, _), run in zip(part, trained))
        return out

    grown = train([(i, tuple(task.lrs), budgets[i]) for i in kernels])
    # `extend_lr_grid`, round by round for every program at once.
    added = {i: {-1: 0, 1: 0} for i in kernels}
    done: set[int] = set()
    while True:
        requests, sides = [], {}
        for i, run in grown.items():
            side = improving_end(run) if i not in done else 0
            n = min(LR_EXTENSION_STEP, task.lr_extension - added[i][side]) if side else 0
            left = budgets[i] - run.wall_time
            if n <= 0 or left <= 0:
                done.add(i)
                continue
            sides[i] = (side, n)
            requests.append((i, rates_beyond(run.lrs, side, n), left))
        if not requests:
            break
        for i, run in train(requests).items():
            grown[i] = merge_runs(grown[i], run)
            added[i][sides[i][0]] += sides[i][1]
    for i, run in grown.items():
        runs[i] = replace(run, wall_time=run.wall_time + built_s)
    return tuple(runs)


def run_work(job: Job | GroupJob) -> TaskRun | tuple[TaskRun, ...]:
    """`run_group` for a group job, `run_job` for a job: the pool's default runner."""
    return run_group(job) if isinstance(job, GroupJob) else run_job(job)


def failed_runs(job: Job | GroupJob, message: str, status: Status = Status.ERROR,
                wall_time: float = 0.0) -> TaskRun | tuple[TaskRun, ...]:
    """What a job whose run failed as a whole gives: `error_run` for it, or for each program
    of a group job."""
    run = error_run(job.task, message, status, wall_time)
    return tuple(run for _ in job.programs) if isinstance(job, GroupJob) else run


def extend_lr_grid(task: Task, run: TaskRun, train, budget_s: float) -> TaskRun:
    """`run` (of `task`'s grid) with rates added past an end of the grid while the best rate
    is that end and beats its neighbour (`evaluators.scoring.improving_end`):
    `LR_EXTENSION_STEP` rates per round, at most `task.lr_extension` per end, while any of
    the time budget `budget_s` is left. `train(lrs, time_budget_s)` trains rates of `task`.
    A rule that rescales its rate (``sqrt(lr)``, ``0.01 * lr``) is then tuned as well as
    one that does not, and the rates of the grid itself are trained exactly as without it."""
    added = {-1: 0, 1: 0}
    while (side := improving_end(run)) != 0:
        n = min(LR_EXTENSION_STEP, task.lr_extension - added[side])
        left = budget_s - run.wall_time
        if n <= 0 or left <= 0:
            break
        run = merge_runs(run, train(rates_beyond(run.lrs, side, n), left))
        added[side] += n
    return run


def error_run(task: Task, message: str, status: Status = Status.ERROR,
              wall_time: float = 0.0) -> TaskRun:
    """A run in which every replica of `task` failed with `status` (`message` says why)."""
    n_lr, n_seed = len(task.lrs), len(task.seeds)
    nan = float("nan")
    return TaskRun(task=task.name, lrs=tuple(task.lrs), seeds=tuple(task.seeds),
                   losses=((nan,) * n_seed,) * n_lr,
                   statuses=((status.value,) * n_seed,) * n_lr,
                   initial_losses=(nan,) * n_seed, steps=0, wall_time=wall_time,
                   error=message)


def hyper_items(hyper: Mapping[str, float] | None) -> tuple[tuple[str, float], ...]:
    return tuple(sorted((str(k), float(v)) for k, v in (hyper or {}).items()))
