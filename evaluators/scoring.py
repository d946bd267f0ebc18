"""From raw training runs to scores, and the baselines scores are measured against.

Per task
--------
1. Each replica's final validation loss, at the end of the task's learning-rate schedule,
   is capped at its seed's initial loss ``L0`` (no run counts as worse than not training at
   all); a failed replica (diverged, NaN, timeout, error) counts as exactly ``L0``.
2. For each learning rate, the mean of those losses over seeds; the task's loss ``L`` is the
   smallest such mean, at the candidate's best learning rate. (A rate at which one seed
   fails is rarely the best: robustness across seeds is part of the score.)
3. Against AdamW tuned the same way on the same task (same grid, schedule and seeds), whose
   loss is ``L_adamw``:

       score = clip(L_adamw / L, SCORE_FLOOR, SCORE_CEIL)

   AdamW scores exactly 1 on every task, by construction; 1.25 means a final loss 1.25x
   lower than tuned AdamW's (20% less), 0.8 one 1.25x higher. A task whose every replica
   failed scores `SCORE_FLOOR`. The clip bounds what one task can do: a rule cannot win a
   suite by driving one proxy's loss to zero (a deterministic Rosenbrock valley), and one
   failure costs a fixed amount.

Per suite
---------
The suite score is the geometric mean of the task scores: ``exp(mean(log score))``, so AdamW
scores exactly 1 on every suite, a suite score reads as "its final losses are this many
times lower than tuned AdamW's, typically", and one task moves it by at most a factor
``SCORE_CEIL ** (1/n)`` up or ``SCORE_FLOOR ** (1/n)`` down (n tasks). A candidate that failed
everywhere scores `SCORE_FLOOR`.

Why this unit (`bench/proxy_fidelity.py` measured the alternatives on a fixed panel of 50
programs, against a long-horizon reference suite): ranked by Spearman's correlation with the
reference's ranking, the loss ratio did best on every search suite (`small` 0.911, `medium`
0.965). AlgoPerf's steps-to-target (AdamW's steps to its own final loss over the
candidate's, from validation curves) scored 0.702 and 0.672: it cannot rank the rules that
never reach AdamW's loss, most of a search's children. The unit before this one, the
log-loss gap from SGD with momentum (0) to AdamW (1), scored 0.701 and 0.816, and gave AdamW
0.714 on the old `small` and -1 on a task where it loses to SGD.

Baselines
---------
Computed once per suite version (`evaluators.tasks.Suite.version`) by training the two
baseline rules through the same trainer, and cached as JSON in the cache directory
(``$OPTFORGE_CACHE_DIR``, else ``~/.cache/optforge``); changing a task changes the version
and so the file. The rules live here as text (the `evaluators` package may import only
`dsl`); `tests/evaluators` checks they equal the `seeds` package's rules.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

from .trainer import Status, TaskRun

__all__ = ["SCORING_VERSION", "SCORE_FLOOR", "SCORE_CEIL", "Baseline",
           "TaskScore", "EvaluationError", "task_loss", "improving_end", "score_task",
           "suite_score", "geometric_mean", "loss_ratio", "clip_score", "BASELINE_RULES", "cache_dir", "load_baselines", "save_baselines",
           "baseline_from_runs"]

# Bump when this module's arithmetic changes (part of every suite version).
SCORING_VERSION = "3"  # 3: the loss ratio to tuned AdamW

SCORE_FLOOR = 0.25  # a task's score is clipped to [SCORE_FLOOR, SCORE_CEIL]
SCORE_CEIL = 4.0

SGD_MOMENTUM_RULE = '''\
def sgd_momentum(w, g, lr, t, buf, momentum=0.9):
    """SGD with momentum in torch.optim.SGD's form: buf <- momentum * buf + g."""
    buf = momentum * buf + g
    return lr * buf, buf
'''

ADAMW_RULE = '''\
def adamw(w, g, lr, t, m, v, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.01):
    """AdamW (Loshchilov & Hutter, 2019), torch.optim.AdamW's defaults."""
    m = interp(g, m, beta1)
    v = interp(g * g, v, beta2)
    m_hat = m / (1 - beta1 ** t)
    v_hat = v / (1 - beta2 ** t)
    return lr * (m_hat / (sqrt(v_hat) + eps) + weight_decay * w), m, v
'''

BASELINE_RULES: dict[str, str] = {"sgd_momentum": SGD_MOMENTUM_RULE, "adamw": ADAMW_RULE}


@dataclass(frozen=True)
class Baseline:
    """The reference losses of one task, each at its own best learning rate: AdamW's
    defines the unit; SGD with momentum's is printed beside it (what a rule that
    "beats SGD" means)."""

    task: str
    sgd_loss: float
    sgd_lr: float
    adamw_loss: float
    adamw_lr: float


@dataclass(frozen=True)
class TaskScore:
    task: str
    status: str
    score: float
    loss: float | None  # best learning rate's mean (capped) loss; None if all replicas failed
    best_lr: float | None
    lr_losses: tuple[float | None, ...]  # mean loss per learning rate (None: all seeds failed)
    wall_time: float
    error: str | None = None


def task_loss(run: TaskRun) -> tuple[float | None, float | None, tuple[float | None, ...]]:
    """``(L, best_lr, per-lr means)`` following steps 1-2 of the module doc; L and best_lr
    are None when every replica failed."""
    means: list[float | None] = []
    for row, statuses in zip(run.losses, run.statuses):
        vals = []
        for loss, status, l0 in zip(row, statuses, run.initial_losses):
            if status == Status.OK.value and math.isfinite(loss):
                vals.append(min(loss, l0) if math.isfinite(l0) else loss)
            else:
                vals.append(l0)
        ok = any(s == Status.OK.value for s in statuses)
        means.append(sum(vals) / len(vals) if ok else None)
    candidates = [(m, lr) for m, lr in zip(means, run.lrs) if m is not None]
    if not candidates:
        return None, None, tuple(means)
    best, lr = min(candidates, key=lambda c: c[0])
    return best, lr, tuple(means)


def improving_end(run: TaskRun) -> int:
    """-1 (+1) when the best learning rate of `run` is its grid's lowest (highest) and
    strictly better than its neighbour: the best rate may lie past that end. 0 otherwise,
    also for a rule whose loss does not depend on the rate (equal means) and for a run that
    failed everywhere."""
    loss, _, means = task_loss(run)
    if loss is None or len(means) < 2:
        return 0
    for side, (edge, inner) in ((-1, means[:2]), (1, means[:-3:-1])):
        if edge == loss and (inner is None or edge < inner):
            return side
    return 0


def _positive(x: float) -> float:
    return max(x, 1e-30)


def loss_ratio(loss: float, reference: float) -> float:
    """Step 3 of the module doc, unclipped: how many times lower `loss` is than
    `reference` (the tuned AdamW loss)."""
    return _positive(reference) / _positive(loss)


def clip_score(x: float) -> float:
    return min(max(x, SCORE_FLOOR), SCORE_CEIL)


def run_status(run: TaskRun) -> str:
    """``ok`` if any replica finished; otherwise the commonest failure (ties: the more
    severe of error > timeout > nan > diverged)."""
    statuses = run.replica_statuses
    if Status.OK.value in statuses:
        return Status.OK.value
    order = [Status.ERROR.value, Status.TIMEOUT.value, Status.NAN.value, Status.DIVERGED.value]
    return max(order, key=lambda s: (statuses.count(s), -order.index(s)))


def score_task(run: TaskRun, base: Baseline) -> TaskScore:
    loss, lr, means = task_loss(run)
    status = run_status(run)
    if loss is None:
        score = SCORE_FLOOR
    else:
        score = clip_score(loss_ratio(loss, base.adamw_loss))
    return TaskScore(run.task, status, score, loss, lr, means, run.wall_time, run.error)


def suite_score(scores: Iterable[TaskScore]) -> float:
    """The geometric mean of the task scores (module doc)."""
    return geometric_mean(s.score for s in scores)


def geometric_mean(values: Iterable[float]) -> float:
    """``exp(mean(log v))`` of clipped scores; `SCORE_FLOOR` for none. Exactly 1.0 when
    every value is 1.0."""
    logs = [math.log(clip_score(v)) for v in values]
    return math.exp(math.fsum(logs) / len(logs)) if logs else SCORE_FLOOR


def candidate_status(scores: Iterable[TaskScore]) -> str:
    """``ok`` unless every replica of every task failed; then the commonest task status."""
    statuses = [s.status for s in scores]
    if not statuses or Status.OK.value in statuses:
        return Status.OK.value
    order = [Status.ERROR.value, Status.TIMEOUT.value, Status.NAN.value, Status.DIVERGED.value]
    return max(order, key=lambda s: (statuses.count(s), -order.index(s)))


class EvaluationError(RuntimeError):
    """A suite cannot be evaluated here: a baseline failed on every replica of a task (a
    broken task or missing data), or pool workers cannot start; never a candidate's fault."""


def baseline_from_runs(sgd: TaskRun, adamw: TaskRun) -> Baseline:
    """The baseline of one task from the two baseline rules' runs on it. Raises
    EvaluationError when a baseline failed on every replica (a broken task, not a bad
    rule)."""
    s_loss, s_lr, _ = task_loss(sgd)
    a_loss, a_lr, _ = task_loss(adamw)
    for name, loss, run in (("SGD with momentum", s_loss, sgd), ("AdamW", a_loss, adamw)):
        if loss is None:
            raise EvaluationError(f"baseline {name} failed on every replica of task "
                               f"{run.task!r} ({run_status(run)}"
                               f"{': ' + run.error if run.error else ''})")
    return Baseline(sgd.task, s_loss, s_lr, a_loss, a_lr)


# ---- the cache ------------------------------------------------------------------------------

def cache_dir(override: str | os.PathLike | None = None) -> Path:
    if override is not None:
        return Path(override)
    env = os.environ.get("OPTFORGE_CACHE_DIR")
    if env:
        return Path(env)
    return Path.home() / ".cache" / "optforge"


def _baseline_path(directory: Path, suite_name: str, version: str) -> Path:
    return directory / "baselines" / f"{suite_name}-{version}.json"


def load_baselines(suite_name: str, version: str, directory: Path,
                   task_names: Iterable[str]) -> dict[str, Baseline] | None:
    """The cached baselines of a suite version, or None if absent, unreadable or
    incomplete (then they are recomputed)."""
    path = _baseline_path(directory, suite_name, version)
    try:
        data = json.loads(path.read_text())
        out = {name: Baseline(**data["tasks"][name]) for name in task_names}
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return out if data.get("version") == version else None


def save_baselines(suite_name: str, version: str, directory: Path,
                   baselines: Mapping[str, Baseline]) -> Path:
    """Write atomically (two processes computing the same baselines both succeed)."""
    path = _baseline_path(directory, suite_name, version)
    payload = {"suite": suite_name, "version": version,
               "tasks": {name: asdict(b) for name, b in baselines.items()}}
    return write_json_atomically(path, payload)


def write_json_atomically(path: Path, payload: Any) -> Path:
    """Write `payload` as JSON to `path` through a temporary file and a rename, so readers
    never see half a file and two processes writing the same file both succeed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(payload, f, indent=1, sort_keys=True)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return path
