"""How many candidates train together as one batched model (`evaluators.population`).

* On CPU: `CPU_GROUP_SIZE` candidates per task, measured (bench/evaluator_throughput.py):
  past it a larger group buys little, since every candidate's rule still runs its own
  calls, and the search draws more children before it sees results.
* On a CUDA device: as many as fill the device, from its memory and the task's memory per
  replica (`replica_bytes`), at most `CUDA_MAX_GROUP`. The search process draws that many
  (`group_size`, from the device's total memory); a worker splits a group into chunks that
  fit the memory free on its device when the group starts (`chunk_size`).

Everything here runs without a GPU: on CPU no device is asked anything.
"""

from __future__ import annotations

from functools import lru_cache

import torch

from .models import Problem, build_problem
from .tasks import Suite, Task

__all__ = [
    "CPU_GROUP_SIZE",
    "CUDA_MAX_GROUP",
    "CUDA_MEMORY_FRACTION",
    "chunk_size",
    "fit",
    "group_size",
    "replica_bytes",
]

CPU_GROUP_SIZE = 8
CUDA_MAX_GROUP = 64
# Of a device's memory, the part a group may plan to take (the rest: the allocator's
# slack, the CUDA context, temporaries the estimate misses).
CUDA_MEMORY_FRACTION = 0.5


def replica_bytes(task: Task, problem: Problem) -> int:
    """Bytes one replica of `task` takes while training, estimated on the CPU: parameters
    with their gradient, optimizer state and the rule's temporaries (16 copies), the
    tensors its forward pass saves for backward (twice: their gradients), and its seed's
    sampling plan."""
    params = sum(torch.Size(shape).numel() for _, shape in problem.shapes)
    gen = torch.Generator().manual_seed(0)
    leaves = [p.unsqueeze(0).requires_grad_() for p in problem.init(gen)]
    step = problem.plan(torch.Generator().manual_seed(0), 1, task.batch_size)[0]
    saved = 0

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal saved
        saved += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        problem.loss(leaves, step.unsqueeze(0))
    plan = problem.plan(torch.Generator().manual_seed(0), task.steps, task.batch_size)
    return 16 * 4 * params + 2 * saved + plan.numel() * plan.element_size()


def fit(task: Task, per_replica: int, memory: int) -> int:
    """Candidates of `task` whose replicas fit in `CUDA_MEMORY_FRACTION` of `memory`
    bytes, between 1 and `CUDA_MAX_GROUP`."""
    room = int(CUDA_MEMORY_FRACTION * memory) // max(1, per_replica * task.replicas)
    return max(1, min(CUDA_MAX_GROUP, room))


@lru_cache(maxsize=64)
def _cpu_replica_bytes(task: Task) -> int:
    problem = build_problem(task.model, task.model_kwargs, task.data, task.data_args,
                            torch.device("cpu"))
    return replica_bytes(task, problem)


def group_size(suite: Suite, device_kind: str, device_memory: int | None = None) -> int:
    """Candidates to draw for one group of every task of `suite` (module doc).
    `device_memory`: bytes of one device (None: ask CUDA device 0)."""
    if device_kind != "cuda":
        return CPU_GROUP_SIZE
    if device_memory is None:
        device_memory = torch.cuda.get_device_properties(0).total_memory
    return min(fit(t, _cpu_replica_bytes(t), device_memory) for t in suite.tasks)


def chunk_size(task: Task, device: str, n: int) -> int:
    """Of a group of `n` candidates, how many train at once on `device` (module doc)."""
    if n <= 1 or not str(device).startswith("cuda"):
        return max(1, n)
    free, _ = torch.cuda.mem_get_info(torch.device(device))
    return min(n, fit(task, _cpu_replica_bytes(task), free))
