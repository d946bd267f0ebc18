"""Population-batched training: many candidates of one task as one batched model.

`train_population(task, members)` trains every member (a candidate's compiled rule, its
learning rates, hyperparameters and time budget) on `task` at once: the rows of all members
(member m's ``len(lrs_m) * len(seeds)`` replicas, one after the other) are one ``[N, P]``
parameter buffer, so one forward/backward of the batched model (`evaluators.models`) gives
every row's gradient. Each member's rule is then applied to its own rows only, a contiguous
slice with exactly the shapes and strides the rows have when the member trains alone
(`evaluators.trainer.train_replicas`), and its optimizer state is its own.

Isolation: what one member does never changes another member's numbers.

* Its failures are its own: a row that goes NaN or blows up is frozen and dropped as alone;
  an exception from its rule (in `bind`, `prepare` or `apply`) fails its rows with
  ``error`` and drops them; the others go on.
* Its time budget is its own: each member is charged the time of its own rule calls (a
  second gradient, `grad_at`, included) plus a share of the shared forward/backward in
  proportion to its rows (the Hessian estimate: shared by the members that read it only),
  and times out alone when that passes its budget (the task's, times its rule's passes per
  step, as alone). With one member this is the wall clock since training began, as
  `train_replicas` counts it.
* Something that fails for the whole batch (an exception in the shared forward/backward,
  say out of memory) is nobody's fault: every member is then trained again alone.

The rows of the batch are independent (the models never mix replicas, and compute a lone
replica as they compute one of many), so a member's TaskRun equals, bit for bit on CPU at
one thread (a pool worker's; with more, the language models' embedding gradient is summed
in an order that depends on the batch), the one it gets alone:
`tests/evaluators/test_population.py` checks it on every task of the stage-1 suite. Its
`wall_time` is its share of the batch's time (the build split evenly, the rest as above).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from .models import Problem, build_problem
from .rule_step import apply_rule, initial_state, next_state, step_context
from .step_inputs import Probes, features, hessian, loss_and_grads
from .tasks import Task
from .trainer import (
    DIVERGENCE_FACTOR,
    Status,
    TaskRun,
    _Batch,
    _by_rate,
    _describe,
    seeded_start,
    stream_seed,
)

__all__ = ["Member", "train_population"]


@dataclass(frozen=True)
class Member:
    """One candidate in a population batch: its compiled rule (`dsl.kernel.Kernel`), the
    learning rates to train (with every seed of the task), hyperparameter overrides and
    time budget (None: the task's)."""

    kernel: Any
    lrs: tuple[float, ...]
    hyper: Mapping[str, float] | None = None
    time_budget_s: float | None = None


class _SharedFailure(Exception):
    """The batch's own computation failed (not one member's rule)."""


def train_population(task: Task, members: Sequence[Member], *,
                     device: torch.device | str = "cpu",
                     clock: Callable[[], float] = time.perf_counter,
                     problem: Problem | None = None,
                     record_every: int = 0) -> list[TaskRun]:
    """Train `members` on `task` together (module doc); one `TaskRun` per member, in order,
    each what `train_replicas(task, member.kernel, member.lrs, task.seeds, ...)` gives."""
    built = clock()
    device = torch.device(device)
    if problem is None:
        problem = build_problem(task.model, task.model_kwargs, task.data, task.data_args,
                                device)
    try:
        return _train(task, list(members), device, clock, problem, record_every, built)
    except _SharedFailure as e:
        if len(members) == 1:
            raise AssertionError("a lone member's failure is its own") from e
        return [_train(task, [m], device, clock, problem, record_every, clock())[0]
                for m in members]


def _train(task, members, device, clock, problem, record_every, built) -> list[TaskRun]:
    seeds = tuple(int(s) for s in task.seeds)
    n_seed = len(seeds)
    lrs = [tuple(float(x) for x in m.lrs) for m in members]
    sizes = [len(x) * n_seed for x in lrs]
    base = [sum(sizes[:m]) for m in range(len(members))]  # first row of each member
    n = sum(sizes)
    feats = [features(m.kernel) for m in members]
    budgets = [task.time_budget_s * f.passes if m.time_budget_s is None else m.time_budget_s
               for m, f in zip(members, feats)]
    start = clock()
    columns, plans = seeded_start(problem, task, seeds)
    seed_of = torch.cat([torch.arange(r) % n_seed for r in sizes])
    batch = _Batch(
        flat=torch.cat(columns, dim=1)[seed_of].to(device=device, dtype=torch.float32),
        shapes=[shape for _, shape in problem.shapes],
        lr=torch.tensor([lr for x in lrs for lr in x], dtype=torch.float32,
                        device=device).repeat_interleave(n_seed),
        plan=torch.stack(plans, dim=1)[:, seed_of].to(device),
        ids=torch.arange(n, device=device))
    owner = [m for m, r in enumerate(sizes) for _ in range(r)]  # member of each row id
    probes = Probes(lambda s: stream_seed(task.name, s, "hutchinson"), seeds,
                    batch.shapes) if any(f.hess for f in feats) else None
    counts = list(sizes)  # rows of each member still training
    status = [Status.OK] * n
    final = [float("nan")] * n
    errors: list[str | None] = [None] * len(members)
    steps = [0] * len(members)
    spent = [0.0] * len(members)
    own = [0.0] * len(members)  # this step's seconds in each member's own rule calls
    curves: list[list[tuple[int, list[float]]]] = [[] for _ in members]
    with torch.no_grad():
        initial = problem.val_loss(batch.views).float()
    batch.reference = (initial.nan_to_num(nan=1.0, posinf=1.0).clamp_min(1e-12)
                       * DIVERGENCE_FACTOR)
    initial_rows = initial.tolist()

    def mark(rows, code: Status) -> None:
        for i in rows:
            status[i] = code

    def member_rows(m: int) -> list[int]:
        lo = sum(counts[:m])
        return batch.ids[lo:lo + counts[m]].tolist()

    def drop(stopped: set[int]) -> None:
        """Drop the rows of the `stopped` members."""
        if not stopped:
            return
        mask = torch.tensor([owner[i] not in stopped for i in batch.ids.tolist()],
                            device=device)
        keep(mask)

    states: list[list[tuple[torch.Tensor, ...]]] = [[] for _ in members]

    def keep(mask: torch.Tensor) -> None:
        lo = 0
        for m in range(len(members)):
            part = mask[lo:lo + counts[m]]
            lo += counts[m]
            kept = int(part.sum())
            if kept and kept < counts[m]:
                idx = part.nonzero().squeeze(1)
                states[m] = [tuple(s.index_select(0, idx) for s in slot) for slot in states[m]]
            counts[m] = kept
        batch.keep(mask)

    bounds: list[Any] = [None] * len(members)
    flat_mode = [bool(m.kernel.elementwise) for m in members]
    failed_bind = set()
    for m, member in enumerate(members):
        try:
            bounds[m] = member.kernel.bind(torch.float32, device, member.hyper)
        except Exception as e:  # noqa: BLE001 - a bad hyperparameter override is the rule's
            errors[m] = _describe(e)
            mark(member_rows(m), Status.ERROR)
            failed_bind.add(m)
    drop(failed_bind)
    lo = 0
    for m, member in enumerate(members):
        rows = slice(lo, lo + counts[m])
        lo += counts[m]
        if counts[m]:
            targets = [batch.flat[rows]] if flat_mode[m] else [v[rows] for v in batch.views]
            states[m] = [initial_state(member.kernel, t) for t in targets]

    check_every = 1 if device.type == "cpu" else 8
    t_values = torch.arange(1, task.steps + 1, dtype=torch.float32, device=device)
    lr_factors = task.schedule.factors(task.steps, device)
    last = start
    for k in range(task.steps):
        if not any(counts):
            break
        now = clock()
        shared = now - last - sum(own)
        total = sum(counts)
        for m in range(len(members)):
            if counts[m]:
                spent[m] += own[m] + shared * counts[m] / total
            own[m] = 0.0
        last = now
        out = {m for m in range(len(members)) if counts[m] and spent[m] > budgets[m]}
        for m in out:
            mark(member_rows(m), Status.TIMEOUT)
        drop(out)
        if not any(counts):
            break
        try:
            readers = [m for m in range(len(members)) if counts[m] and feats[m].hess]
            z = probes.for_rows(k, seed_of[batch.ids.cpu()], device) if readers else None
            losses, grads, hess = loss_and_grads(problem, batch.leaves, batch.plan[k])
            if readers:  # timed apart: the members that read it pay for it
                began = clock()
                hess = hessian(problem, batch.leaves, batch.plan[k], z)
                took = clock() - began
                share = sum(counts[m] for m in readers)
                for m in readers:
                    own[m] += took * counts[m] / share
            with torch.no_grad():
                if k % check_every == 0:
                    lv = losses.detach()
                    ok = lv <= batch.reference
                    if not bool(ok.all()):
                        nan = torch.isnan(lv)
                        mark(batch.ids[nan].tolist(), Status.NAN)
                        mark(batch.ids[~ok & ~nan].tolist(), Status.DIVERGED)
                        keep(ok)
                        grads = [g[ok] for g in grads]
                        losses = losses[ok]
                        hess = None if hess is None else [h[ok] for h in hess]
                lr = batch.lr * lr_factors[k]
                t = t_values[k]
        except Exception as e:
            if len(members) > 1:
                raise _SharedFailure(str(e)) from e
            errors[0] = _describe(e)
            mark(batch.ids.tolist(), Status.ERROR)
            counts[0] = 0
            break
        failed = set()
        lo = 0
        # What every member slices its rows from: rates as [N, 1] (the flat layout) and,
        # if any rule runs flat, all gradients as one [N, P] buffer (alone: one cat each).
        with torch.inference_mode():  # less dispatch per op; the values are the same
            lr_col = lr.view(-1, 1)
            g_flat = torch.cat([g.reshape(g.shape[0], -1) for g in grads], dim=1) \
                if any(f for f, c in zip(flat_mode, counts) if c) else None
            for m, member in enumerate(members):
                rows = slice(lo, lo + counts[m])
                lo += counts[m]
                if not counts[m]:
                    continue
                began = clock()
                try:
                    context = step_context(feats[m], problem, batch, k, losses, hess, rows)
                    _update(member.kernel, batch, rows, grads, g_flat, lr, lr_col,
                            states[m], bounds[m], flat_mode[m], t, context)
                    steps[m] = k + 1
                except Exception as e:  # noqa: BLE001 - whatever the rule raises is its own
                    errors[m] = _describe(e)
                    mark(batch.ids[rows].tolist(), Status.ERROR)
                    failed.add(m)
                own[m] += clock() - began
        drop(failed)
        if record_every and k + 1 < task.steps and (k + 1) % record_every == 0 and any(counts):
            point = _checkpoint(problem, batch, n)
            for m in range(len(members)):
                if counts[m]:
                    curves[m].append((k + 1, point[base[m]:base[m] + sizes[m]]))

    if any(counts):
        with torch.no_grad():
            val = problem.val_loss(batch.views).float()
        ok = val <= batch.reference
        nan = torch.isnan(val)
        mark(batch.ids[nan].tolist(), Status.NAN)
        mark(batch.ids[~ok & ~nan].tolist(), Status.DIVERGED)
        for i, v, good in zip(batch.ids.tolist(), val.tolist(), ok.tolist()):
            if good:
                final[i] = v
    end = clock()
    tail = end - last - sum(own)
    total = sum(counts) or 1
    for m in range(len(members)):
        spent[m] += own[m] + (tail * counts[m] / total if counts[m] else 0.0)
    runs = []
    for m in range(len(members)):
        rows = slice(base[m], base[m] + sizes[m])
        n_lr = len(lrs[m])
        mine = final[rows]
        curve = curves[m]
        if record_every and steps[m] == task.steps:
            curve = curve + [(steps[m], mine)]
        runs.append(TaskRun(
            task=task.name, lrs=lrs[m], seeds=seeds, losses=_by_rate(mine, n_lr, n_seed),
            statuses=tuple(tuple(status[base[m] + i * n_seed + j].value
                                 for j in range(n_seed)) for i in range(n_lr)),
            initial_losses=tuple(initial_rows[base[m]:base[m] + n_seed]),
            steps=steps[m], wall_time=(start - built) / len(members) + spent[m],
            error=errors[m],
            curve=tuple((s, _by_rate(x, n_lr, n_seed)) for s, x in curve)))
    return runs


def _update(kernel, batch: _Batch, rows: slice, grads, g_flat, lr: torch.Tensor,
            lr_col: torch.Tensor, states, bound, flat_mode: bool, t: torch.Tensor,
            context) -> None:
    """One step of one member's rule on its rows, as `_Batch.update` does it alone: the
    same operands (shapes, strides, values), from slices of the batch's tensors."""
    scalars = kernel.prepare(t, bound)
    if flat_mode and (context is None or context.hess is None):
        w = batch.flat[rows]
        loss = None if context is None or context.loss is None else context.loss.view(-1, 1)
        step, new_state = kernel.apply(w, g_flat[rows], lr_col[rows], states[0], scalars,
                                       bound, loss, None)
        states[0] = next_state(w, new_state)
        w.sub_(step)
        return
    apply_rule(kernel, batch.flat[rows] if flat_mode else None,
               [v[rows] for v in batch.views], [g[rows] for g in grads], lr[rows], states,
               scalars, bound, context)


def _checkpoint(problem: Problem, batch: _Batch, n: int) -> list[float]:
    out = [float("nan")] * n
    with torch.no_grad():
        val = problem.val_loss(batch.views).float()
    for i, v in zip(batch.ids.tolist(), val.tolist()):
        out[i] = v
    return out
