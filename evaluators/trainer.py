"""The batched trainer: one task, R replicas (learning rates x seeds), one set of tensors.

Replica ``r`` trains with learning rate ``lrs[r // S]`` and seed ``seeds[r % S]`` (S seeds).
All replicas' parameters live in one flat buffer ``[R, P]``; each model parameter is a view
of a column range of it, made an autograd leaf, so that

* one forward/backward of the batched model (`evaluators.models`) gives every replica's
  gradient at once, and
* a rule that is elementwise (`Kernel.elementwise`) updates the whole model with one kernel
  call on ``[R, P]``; other rules (norms, trust ratios, `orth`) get one call per parameter
  tensor, with reductions over each replica's own tensor.

A rule that reads more than its gradient (issue #16) gets it from here, computed only when
it reads it (`evaluators.step_inputs`): each replica's loss, a Hutchinson Hessian estimate
(probes from its seed's own stream), a second gradient at ``w + e`` (`grad_at`), and a rule
with whole-model reductions runs once per step on the whole model (`Kernel.grouped`). Its
time budget is the task's times its passes per step (`Kernel.passes`).

A replica that goes wrong is frozen where it stands (its parameters and state stop
changing) and marked, while the others go on:

* ``nan``: its training loss is NaN;
* ``diverged``: its training loss is infinite or above `DIVERGENCE_FACTOR` times its initial
  validation loss (a run that has blown up; waiting for the overflow would waste time);
* ``timeout``: the task's time budget ran out (checked after every step; every replica
  still running is frozen at that point);
* ``error``: the rule raised (an exception from torch); every replica still running.

A replica that survives training but whose final validation loss is not finite is marked
``nan`` or ``diverged`` too. Failed replicas have no final loss (NaN in `TaskRun.losses`);
the scorer counts them at the floor (see `evaluators.scoring`). Nothing here raises for a
bad rule: failure is data.

Determinism: initial parameters and sampling plans come from CPU generators seeded by
(task, seed), independent of R and of the device; with the same thread count the same
candidate gives bit-identical results.
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass
from enum import Enum
from typing import Callable, Mapping, Sequence

import torch

from ..dsl.context import StepContext
from .models import Problem, build_problem
from .rule_step import apply_rule, initial_state, step_context
from .step_inputs import Probes, features, loss_and_grads
from .tasks import Task

__all__ = [
    "DIVERGENCE_FACTOR",
    "TRAINER_VERSION",
    "Status",
    "TaskRun",
    "merge_runs",
    "stream_seed",
    "train_replicas",
    "train_task",
]

# Bump when a change to this module changes what a run computes: it is part of every suite
# version, so cached baselines are recomputed.
TRAINER_VERSION = "2"  # 2: learning-rate schedules

DIVERGENCE_FACTOR = 1e3


class Status(str, Enum):
    OK = "ok"
    DIVERGED = "diverged"
    NAN = "nan"
    TIMEOUT = "timeout"
    ERROR = "error"


_CODES = (Status.OK, Status.DIVERGED, Status.NAN, Status.TIMEOUT, Status.ERROR)
_CODE = {s: i for i, s in enumerate(_CODES)}


@dataclass(frozen=True)
class TaskRun:
    """What training one task produced, before scoring.

    `losses[i][j]` is the final validation loss of learning rate ``lrs[i]`` with seed
    ``seeds[j]`` (NaN when that replica failed) and `statuses[i][j]` its status;
    `initial_losses[j]` is seed j's validation loss at initialisation. `steps` counts the
    training steps run, `wall_time` the seconds spent (model build included), `error` the
    message of an exception raised by the rule, if any. `curve` (recorded on request) holds
    ``(step, losses)`` pairs, each `losses` laid out as `losses` is, the last at the end.
    """

    task: str
    lrs: tuple[float, ...]
    seeds: tuple[int, ...]
    losses: tuple[tuple[float, ...], ...]
    statuses: tuple[tuple[str, ...], ...]
    initial_losses: tuple[float, ...]
    steps: int
    wall_time: float
    error: str | None = None
    curve: tuple[tuple[int, tuple[tuple[float, ...], ...]], ...] = ()

    @property
    def replica_statuses(self) -> list[str]:
        return [s for row in self.statuses for s in row]


def merge_runs(a: TaskRun, b: TaskRun) -> TaskRun:
    """One run of `a`'s and `b`'s learning rates together (the same task and seeds, disjoint
    rates): replicas are independent of the rates trained beside them (module doc), so this
    is the run of the union grid. Steps are the longer run's, times add up."""
    if (a.task, a.seeds) != (b.task, b.seeds) or set(a.lrs) & set(b.lrs):
        raise ValueError("merge_runs needs runs of one task and its seeds, on disjoint rates")
    order = sorted(range(len(a.lrs) + len(b.lrs)), key=lambda i: (a.lrs + b.lrs)[i])

    def ordered(x: tuple, y: tuple) -> tuple:
        return tuple((x + y)[i] for i in order)
    # A checkpoint that only one of the two runs reached (the other stopped) is dropped.
    b_curve = dict(b.curve)
    curve = tuple((step, ordered(losses, b_curve[step])) for step, losses in a.curve
                  if step in b_curve)
    return TaskRun(task=a.task, lrs=ordered(a.lrs, b.lrs), seeds=a.seeds,
                   losses=ordered(a.losses, b.losses),
                   statuses=ordered(a.statuses, b.statuses),
                   initial_losses=a.initial_losses, steps=max(a.steps, b.steps),
                   wall_time=a.wall_time + b.wall_time, error=a.error or b.error,
                   curve=curve)


def stream_seed(task: str, seed: int, purpose: str) -> int:
    """A 63-bit generator seed for (task, seed, purpose), stable across processes and
    platforms (Python's own `hash` of a string is salted per process)."""
    digest = hashlib.sha256(f"{task}\x00{seed}\x00{purpose}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def train_task(task: Task, kernel, *, device: torch.device | str = "cpu",
               hyper: Mapping[str, float] | None = None, time_budget_s: float | None = None,
               clock: Callable[[], float] = time.perf_counter,
               problem: Problem | None = None, record_every: int = 0) -> TaskRun:
    """Train `task` with every learning rate and seed of its grid (see `train_replicas`)."""
    return train_replicas(task, kernel, task.lrs, task.seeds, device=device, hyper=hyper,
                          time_budget_s=time_budget_s, clock=clock, problem=problem,
                          record_every=record_every)


def train_replicas(task: Task, kernel, lrs: Sequence[float], seeds: Sequence[int], *,
                   device: torch.device | str = "cpu",
                   hyper: Mapping[str, float] | None = None,
                   time_budget_s: float | None = None,
                   clock: Callable[[], float] = time.perf_counter,
                   problem: Problem | None = None, record_every: int = 0) -> TaskRun:
    """Train ``len(lrs) * len(seeds)`` replicas of `task` at once with the compiled rule
    `kernel` (a `dsl.kernel.Kernel`: `bind`, `prepare`, `apply`, `elementwise`, `n_state`),
    each at its peak rate times the task's schedule (`evaluators.schedules`).

    A rule that reads more than its gradient (`Kernel.needs`: the loss, a Hessian
    estimate, a second gradient) gets it computed here (`evaluators.step_inputs`); the
    task's time budget is scaled by the rule's passes per step (`Kernel.passes`:
    `dsl.needs.passes_per_step`), since each step costs that many forward-and-backward
    passes.

    `time_budget_s` overrides the (scaled) task budget; `problem` reuses an already built problem
    (it must be `task`'s, on `device`). `record_every` > 0 records every replica's
    validation loss each `record_every` steps and at the end (`TaskRun.curve`, one
    validation pass each). Raises only for a broken task (unknown model, missing data);
    anything the rule does wrong ends up in the returned statuses.
    """
    built = clock()
    device = torch.device(device)
    feats = features(kernel)
    budget = task.time_budget_s * feats.passes if time_budget_s is None else time_budget_s
    lrs, seeds = tuple(float(x) for x in lrs), tuple(int(s) for s in seeds)
    n_lr, n_seed = len(lrs), len(seeds)
    r = n_lr * n_seed
    if problem is None:
        problem = build_problem(task.model, task.model_kwargs, task.data, task.data_args,
                                device)
    # The budget is the rule's: it starts once the problem (data loading included) is built.
    start = clock()
    seed_of = torch.arange(r) % n_seed

    columns, plans = seeded_start(problem, task, seeds)
    batch = _Batch(
        flat=torch.cat(columns, dim=1)[seed_of].to(device=device, dtype=torch.float32),
        shapes=[shape for _, shape in problem.shapes],
        lr=torch.tensor(lrs, dtype=torch.float32, device=device).repeat_interleave(n_seed),
        plan=torch.stack(plans, dim=1)[:, seed_of].to(device),  # [steps, R, ...]
        ids=torch.arange(r, device=device))
    probes = Probes(lambda s: stream_seed(task.name, s, "hutchinson"), seeds,
                    batch.shapes) if feats.hess else None

    status = [Status.OK] * r
    final = [float("nan")] * r
    error: str | None = None
    steps_run = 0
    with torch.no_grad():
        initial = problem.val_loss(batch.views).float()
    batch.reference = (initial.nan_to_num(nan=1.0, posinf=1.0).clamp_min(1e-12)
                       * DIVERGENCE_FACTOR)

    def mark(mask: torch.Tensor | None, code: Status) -> None:
        for i in (batch.ids if mask is None else batch.ids[mask]).tolist():
            status[i] = code

    try:
        bound = kernel.bind(torch.float32, device, hyper)
    except Exception as e:  # noqa: BLE001 - a bad hyperparameter override is the rule's
        error = _describe(e)
        mark(None, Status.ERROR)
        batch = None
        bound = None

    # Checking losses needs a device sync; on a GPU do it every few steps.
    check_every = 1 if device.type == "cpu" else 8
    t_values = torch.arange(1, task.steps + 1, dtype=torch.float32, device=device)
    lr_factors = task.schedule.factors(task.steps, device)
    curve: list[tuple[int, list[float]]] = []
    flat_mode = kernel.elementwise
    if batch is not None:
        batch.init_state(kernel, flat_mode)
    for k in range(task.steps if batch is not None else 0):
        if clock() - start > budget:
            mark(None, Status.TIMEOUT)
            batch = None
            break
        try:
            z = probes.for_rows(k, batch.ids.cpu() % n_seed, device) if feats.hess else None
            losses, grads, hess = loss_and_grads(problem, batch.leaves, batch.plan[k], z)
            with torch.no_grad():
                if k % check_every == 0:
                    lv = losses.detach()
                    ok = lv <= batch.reference  # False for NaN, inf and blown-up losses
                    if not bool(ok.all()):
                        nan = torch.isnan(lv)
                        mark(nan, Status.NAN)
                        mark(~ok & ~nan, Status.DIVERGED)
                        if not bool(ok.any()):
                            batch = None
                            break
                        batch.keep(ok)
                        grads = [g[ok] for g in grads]
                        losses = losses[ok]
                        hess = None if hess is None else [h[ok] for h in hess]
                scalars = kernel.prepare(t_values[k], bound)
                batch.update(kernel, grads, scalars, bound, flat_mode, lr_factors[k],
                             step_context(feats, problem, batch, k, losses, hess))
            steps_run = k + 1
            if record_every and steps_run % record_every == 0 and steps_run < task.steps:
                curve.append((steps_run, _checkpoint(problem, batch, r)))
        except Exception as e:  # noqa: BLE001 - whatever the rule raises is its error
            error = _describe(e)
            mark(None, Status.ERROR)
            batch = None
            break

    if batch is not None:
        with torch.no_grad():
            val = problem.val_loss(batch.views).float()
        ok = val <= batch.reference
        nan = torch.isnan(val)
        mark(nan, Status.NAN)
        mark(~ok & ~nan, Status.DIVERGED)
        for i, v, good in zip(batch.ids.tolist(), val.tolist(), ok.tolist()):
            if good:
                final[i] = v
    if record_every and steps_run == task.steps:
        curve.append((steps_run, final))

    return TaskRun(
        task=task.name, lrs=lrs, seeds=seeds,
        losses=_by_rate(final, n_lr, n_seed),
        statuses=tuple(tuple(status[i * n_seed + j].value for j in range(n_seed))
                       for i in range(n_lr)),
        initial_losses=tuple(initial[:n_seed].tolist()),
        steps=steps_run, wall_time=clock() - built, error=error,
        curve=tuple((step, _by_rate(losses, n_lr, n_seed)) for step, losses in curve))


def seeded_start(problem: Problem, task: Task, seeds: Sequence[int]):
    """Each seed's initial parameters (one ``[n_seed, numel]`` column per parameter tensor)
    and sampling plan, drawn on the CPU from the seed's own streams: what every replica of
    that seed starts from, however many replicas share a batch."""
    inits, plans = [], []
    for s in seeds:
        inits.append(problem.init(torch.Generator().manual_seed(stream_seed(task.name, s,
                                                                            "init"))))
        plans.append(problem.plan(torch.Generator().manual_seed(stream_seed(task.name, s,
                                                                            "data")),
                                  task.steps, task.batch_size))
    columns = [torch.stack([init[k] for init in inits]).reshape(len(seeds), -1)
               for k in range(len(problem.shapes))]
    return columns, plans


def _by_rate(flat: Sequence[float], n_lr: int, n_seed: int) -> tuple[tuple[float, ...], ...]:
    return tuple(tuple(flat[i * n_seed:(i + 1) * n_seed]) for i in range(n_lr))


def _checkpoint(problem: Problem, batch: "_Batch", r: int) -> list[float]:
    """Every replica's validation loss now (NaN for the frozen ones)."""
    out = [float("nan")] * r
    with torch.no_grad():
        val = problem.val_loss(batch.views).float()
    for i, v in zip(batch.ids.tolist(), val.tolist()):
        out[i] = v
    return out


class _Batch:
    """The replicas still training (module doc): parameters as one flat ``[n, P]`` buffer
    with per-tensor views and autograd leaves over it, optimizer state, learning rates,
    sampling plans, divergence thresholds and original replica ids, all with the same
    leading n. `keep` drops frozen replicas, so they cost nothing from then on."""

    def __init__(self, flat, shapes, lr, plan, ids):
        self.flat = flat.contiguous()
        self.shapes = shapes
        self.lr = lr
        self.plan = plan
        self.ids = ids
        self.reference = None
        self.states: list[tuple[torch.Tensor, ...]] = []
        self._views()

    def _views(self) -> None:
        n = self.flat.shape[0]
        self.views = []
        offset = 0
        for shape in self.shapes:
            size = math.prod(shape)
            self.views.append(self.flat[:, offset:offset + size].view(n, *shape))
            offset += size
        # Leaves share the flat buffer's memory: gradients come per tensor, updates in place.
        self.leaves = [v.detach().requires_grad_() for v in self.views]

    def init_state(self, kernel, flat_mode: bool) -> None:
        targets = [self.flat] if flat_mode else self.views
        self.states = [initial_state(kernel, t) for t in targets]

    @staticmethod
    def lr_for(lr: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return lr.view((w.shape[0],) + (1,) * (w.dim() - 1))

    def update(self, kernel, grads, scalars, bound, flat_mode: bool,
               lr_factor: torch.Tensor, context: StepContext | None = None) -> None:
        lr = self.lr * lr_factor  # this step's scheduled rate of every replica
        apply_rule(kernel, self.flat if flat_mode else None, self.views, grads, lr,
                   self.states, scalars, bound, context)

    def keep(self, mask: torch.Tensor) -> None:
        idx = mask.nonzero().squeeze(1)
        self.flat = self.flat.index_select(0, idx).contiguous()
        self.lr = self.lr.index_select(0, idx)
        self.plan = self.plan.index_select(1, idx)
        self.ids = self.ids.index_select(0, idx)
        self.reference = self.reference.index_select(0, idx)
        self.states = [tuple(s.index_select(0, idx) for s in slot) for slot in self.states]
        self._views()


def _describe(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}".rstrip(": ")
