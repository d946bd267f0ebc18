"""The unit of work: one candidate on one task, and how a process runs it.

A `Job` is plain picklable data (a `dsl.Program`, a `Task`, overrides); `run_job` compiles
the program (cached per process) and trains the task on the process's device, extending the
learning-rate grid past an end where the best rate lies (`extend_lr_grid`). Pool workers
run jobs; so does the in-process `evaluators.evaluate`. A worker process learns its device
and thread count once, in `init_worker` (the pool's initialiser).
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

from .models import build_problem
from .scoring import improving_end
from .tasks import Task, rates_beyond
from .trainer import Status, TaskRun, merge_runs, train_replicas

__all__ = ["Job", "run_job", "extend_lr_grid", "init_worker", "worker_device", "error_run",
           "LR_EXTENSION_STEP"]

# Rates added per extension round: one training of this many rates x the task's seeds.
LR_EXTENSION_STEP = 2

_WORKER = {"device": None}


@dataclass(frozen=True)
class Job:
    """Train `program` on `task`. `hyper` overrides hyperparameter defaults (a sorted tuple
    of pairs, to stay hashable); `time_budget_s` overrides the task's budget; `device` None
    means the worker's pinned device (CPU outside a pool); `record_every` > 0 records
    validation-loss curves (`evaluators.trainer.train_replicas`)."""

    program: Program
    task: Task
    hyper: tuple[tuple[str, float], ...] = ()
    time_budget_s: float | None = None
    device: str | None = None
    record_every: int = 0


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
    budget = task.time_budget_s if job.time_budget_s is None else job.time_budget_s

    def train(lrs: tuple[float, ...], time_budget_s: float) -> TaskRun:
        return train_replicas(task, kernel, lrs, task.seeds, device=device,
                              hyper=dict(job.hyper) or None, time_budget_s=time_budget_s,
                              problem=problem, record_every=job.record_every)
    run = extend_lr_grid(task, train(task.lrs, budget), train, budget)
    return replace(run, wall_time=run.wall_time + built_s)


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
