"""The unit of work: one candidate on one task, and how a process runs it.

A `Job` is plain picklable data (a `dsl.Program`, a `Task`, overrides); `run_job` compiles
the program (cached per process) and trains the task on the process's device. Pool workers
run jobs; so does the in-process `evaluators.evaluate`. A worker process learns its device
and thread count once, in `init_worker` (the pool's initialiser).
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from functools import lru_cache
from typing import Mapping

import torch

from dsl import Program
from dsl.kernel import Kernel, compile_kernel

from .tasks import Task
from .trainer import Status, TaskRun, train_task

__all__ = ["Job", "run_job", "init_worker", "worker_device", "error_run"]

_WORKER = {"device": None}


@dataclass(frozen=True)
class Job:
    """Train `program` on `task`. `hyper` overrides hyperparameter defaults (a sorted tuple
    of pairs, to stay hashable); `time_budget_s` overrides the task's budget; `device` None
    means the worker's pinned device (CPU outside a pool)."""

    program: Program
    task: Task
    hyper: tuple[tuple[str, float], ...] = ()
    time_budget_s: float | None = None
    device: str | None = None


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
    device = job.device or worker_device()
    return train_task(job.task, kernel, device=device, hyper=dict(job.hyper) or None,
                      time_budget_s=job.time_budget_s)


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
