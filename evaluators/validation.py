"""Held-out validation: a rule on the `validation` suite, beside tuned AdamW, Lion and SGD
with momentum.

    >>> from evaluators.validation import validate
    >>> report = validate(program)                  # the `validation` suite, one per core
    >>> report.score, report.comparator("lion").score

A search selects rules on its suites, so its best candidates are partly fitted to those
tasks' quirks; the `validation` suite's tasks (`evaluators.validation_tasks`) are never
selected on, and a rule's score there is the honest estimate of what a campaign found.
`validate` trains the rule on every task of the suite, each learning-rate tuned as in any
evaluation (`evaluators.evaluate`), and reports per task and for the suite:

* the rule's score (`evaluators.scoring`: tuned AdamW's final loss over the rule's, clipped
  to [0.25, 4]; the suite score is the geometric mean), its loss and best learning rate;
* the seed spread: each seed's score at the rule's best learning rate,
  ``clip(L_adamw / L_seed)``, where ``L_seed`` is that seed's final loss capped at its
  initial loss (a failed seed counts as its initial loss: step 1 of the scoring) and
  ``L_adamw`` tuned AdamW's mean over seeds. The rule's task score is computed from the
  mean of these losses, so it lies between the lowest and the highest seed score;
* the comparators' scores, `COMPARATORS`: tuned AdamW (exactly 1 everywhere: its loss is the
  unit), Lion and SGD with momentum, each tuned the same way.

The comparators' results depend only on the suite version, so they are computed once per
version and cached as JSON beside the baselines (``<cache>/comparators/<suite>-<version>.json``,
written atomically): a second `validate` trains only the rule. AdamW's and SGD with
momentum's results are the suite's baselines themselves (`ensure_baselines`: the same rules,
trained the same way), so only Lion is trained for them. The comparator rules live here as
text (this package imports only `dsl`); `tests/evaluators` checks they equal the `seeds`
package's rules.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from optforge.dsl import Program, parse, structural_hash

from .evaluation import (
    EvalResult,
    _as_failed,
    _assemble,
    baseline_programs,
    ensure_baselines,
)
from .jobs import Job, error_run, run_job
from .pool import HARD_LIMIT, WORKER_DIED, EvaluatorPool
from .scoring import (
    Baseline,
    cache_dir,
    clip_score,
    geometric_mean,
    loss_ratio,
    score_task,
    write_json_atomically,
)
from .tasks import Suite, get_suite
from .trainer import Status, TaskRun

__all__ = ["COMPARATORS", "COMPARATOR_LABELS", "LION_RULE", "VALIDATION_SUITE",
           "ComparatorTask", "Comparator", "ValidationReport", "validate",
           "comparator_programs", "seed_scores"]

VALIDATION_SUITE = "validation"

LION_RULE = '''\
def lion(w, g, lr, t, m, beta1=0.9, beta2=0.99, weight_decay=0.0):
    """Lion (Chen et al., 2023), lion-pytorch's defaults."""
    c = interp(g, m, beta1)
    m = interp(g, m, beta2)
    return lr * (sign(c) + weight_decay * w), m
'''

COMPARATORS: tuple[str, ...] = ("adamw", "lion", "sgd_momentum")
COMPARATOR_LABELS = {"adamw": "AdamW", "lion": "Lion", "sgd_momentum": "SGD with momentum"}
_TRAINED = ("lion",)  # the comparators that are not baselines, trained here


def comparator_programs() -> dict[str, Program]:
    """The comparator rules by name (AdamW and SGD with momentum are the baselines)."""
    programs = baseline_programs()
    programs["lion"] = parse(LION_RULE, "<comparator lion>")
    return {name: programs[name] for name in COMPARATORS}


@dataclass(frozen=True)
class ComparatorTask:
    """A comparator's result on one task, each at its own best learning rate."""

    task: str
    status: str
    score: float
    loss: float | None
    best_lr: float | None


@dataclass(frozen=True)
class Comparator:
    name: str
    tasks: tuple[ComparatorTask, ...]

    @property
    def label(self) -> str:
        return COMPARATOR_LABELS.get(self.name, self.name)

    @property
    def score(self) -> float:
        """The suite score: the geometric mean of the task scores."""
        return geometric_mean(t.score for t in self.tasks)

    def task(self, name: str) -> ComparatorTask:
        for t in self.tasks:
            if t.task == name:
                return t
        raise KeyError(name)


@dataclass(frozen=True)
class ValidationReport:
    """A rule's validation (module doc). `result` is the rule's evaluation on the suite, as
    `evaluators.evaluate` gives it; `seed_scores[i]` the seed scores of ``result.tasks[i]``
    at its best learning rate (empty when every replica failed); `comparators` in
    `COMPARATORS` order; `comparators_cached` whether they came from the cache (nothing but
    the rule was trained)."""

    result: EvalResult
    seed_scores: tuple[tuple[float, ...], ...]
    comparators: tuple[Comparator, ...]
    comparators_cached: bool

    @property
    def rule(self) -> str:
        return self.result.rule

    @property
    def suite(self) -> str:
        return self.result.suite

    @property
    def version(self) -> str:
        return self.result.version

    @property
    def status(self) -> str:
        return self.result.status

    @property
    def score(self) -> float:
        return self.result.score

    def comparator(self, name: str) -> Comparator:
        for c in self.comparators:
            if c.name == name:
                return c
        raise KeyError(name)

    def spread(self, task: str) -> tuple[float, float] | None:
        """(lowest, highest) seed score of `task` at the rule's best rate; None if none."""
        for t, scores in zip(self.result.tasks, self.seed_scores):
            if t.task == task:
                return (min(scores), max(scores)) if scores else None
        raise KeyError(task)

    def to_json(self) -> dict[str, Any]:
        """Plain data: the rule's evaluation (`EvalResult.to_json`) with, per task, its seed
        scores and spread and the comparators' results, and at the top the comparators'
        suite scores (``comparators``) and whether they came from the cache."""
        data = self.result.to_json()
        data["comparators"] = {c.name: c.score for c in self.comparators}
        data["comparators_cached"] = self.comparators_cached
        for t, scores in zip(self.result.tasks, self.seed_scores):
            entry = data["tasks"][t.task]
            entry["seed_scores"] = list(scores)
            entry["seed_spread"] = [min(scores), max(scores)] if scores else None
            entry["comparators"] = {c.name: _comparator_task_json(c.task(t.task))
                                    for c in self.comparators}
        return data


def _comparator_task_json(t: ComparatorTask) -> dict[str, Any]:
    return {"score": t.score, "loss": t.loss, "best_lr": t.best_lr, "status": t.status}


# ---- per-seed scores ------------------------------------------------------------------------

def seed_scores(run: TaskRun, best_lr: float | None, base: Baseline) -> tuple[float, ...]:
    """Each seed's score at learning rate `best_lr` of `run` (module doc); empty when
    `best_lr` is None (every replica failed)."""
    if best_lr is None or best_lr not in run.lrs:
        return ()
    row = run.lrs.index(best_lr)
    out = []
    for loss, status, l0 in zip(run.losses[row], run.statuses[row], run.initial_losses):
        if status == Status.OK.value and math.isfinite(loss):
            loss = min(loss, l0) if math.isfinite(l0) else loss
        else:
            loss = l0
        out.append(clip_score(loss_ratio(loss, base.adamw_loss)) if math.isfinite(loss)
                   else clip_score(0.0))
    return tuple(out)


# ---- the comparator cache --------------------------------------------------------------------

def _comparators_path(directory: Path, suite_name: str, version: str) -> Path:
    return directory / "comparators" / f"{suite_name}-{version}.json"


def _rule_hashes() -> dict[str, str]:
    return {name: structural_hash(p) for name, p in comparator_programs().items()}


def load_comparators(suite: Suite, directory: Path) -> tuple[Comparator, ...] | None:
    """The cached comparators of a suite version, or None if absent, unreadable, incomplete
    or of other comparator rules (then Lion is trained again)."""
    path = _comparators_path(directory, suite.name, suite.version)
    try:
        data = json.loads(path.read_text())
        if data.get("version") != suite.version or data.get("rules") != _rule_hashes():
            return None
        return tuple(Comparator(name, tuple(
            ComparatorTask(task=t.name, **data["tasks"][t.name][name]) for t in suite.tasks))
            for name in COMPARATORS)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def save_comparators(suite: Suite, directory: Path,
                     comparators: Iterable[Comparator]) -> Path:
    """Write atomically (two processes computing the same comparators both succeed)."""
    path = _comparators_path(directory, suite.name, suite.version)
    path.parent.mkdir(parents=True, exist_ok=True)
    tasks: dict[str, dict[str, Any]] = {t.name: {} for t in suite.tasks}
    for c in comparators:
        for t in c.tasks:
            tasks[t.task][c.name] = _comparator_task_json(t)
    payload = {"suite": suite.name, "version": suite.version, "rules": _rule_hashes(),
               "tasks": tasks}
    return write_json_atomically(path, payload)


def _from_baselines(suite: Suite, baselines: Mapping[str, Baseline]) -> dict[str, Comparator]:
    """AdamW's and SGD with momentum's results: their baselines (AdamW's loss is the unit)."""
    adamw, sgd = [], []
    for t in suite.tasks:
        b = baselines[t.name]
        adamw.append(ComparatorTask(t.name, Status.OK.value, 1.0, b.adamw_loss, b.adamw_lr))
        sgd.append(ComparatorTask(t.name, Status.OK.value,
                                  clip_score(loss_ratio(b.sgd_loss, b.adamw_loss)),
                                  b.sgd_loss, b.sgd_lr))
    return {"adamw": Comparator("adamw", tuple(adamw)),
            "sgd_momentum": Comparator("sgd_momentum", tuple(sgd))}


def _trained_comparator(name: str, suite: Suite, runs: Mapping[str, TaskRun],
                        baselines: Mapping[str, Baseline]) -> Comparator:
    tasks = []
    for t in suite.tasks:
        s = score_task(runs[t.name], baselines[t.name])
        tasks.append(ComparatorTask(t.name, s.status, s.score, s.loss, s.best_lr))
    return Comparator(name, tuple(tasks))


# ---- validation -------------------------------------------------------------------------------

def validate(program: Program, suite: str | Suite = VALIDATION_SUITE, *,
             workers: int | None = None, pool: EvaluatorPool | None = None,
             cache: str | os.PathLike | None = None,
             progress: Callable[[str], None] | None = None) -> ValidationReport:
    """Validate `program` on `suite` (module doc).

    Runs on `pool` if given (it stays open); with ``workers=1`` in this process, serially
    (same rule, same thread count: the same report, bit for bit); else on a pool of
    `workers` processes (default: one per core) made and closed here. The suite's baselines
    and comparators are taken from the cache, or computed first (on the same pool) and
    cached. A rule that fails is a report with its failure as the status; raises
    `evaluators.EvaluationError` only when the suite cannot be evaluated here (a baseline
    failed everywhere, workers cannot start)."""
    own = pool is None and workers != 1
    if own:
        pool = EvaluatorPool(workers)
    try:
        return _validate(program, suite, pool, cache, progress)
    finally:
        if own:
            pool.close()


def _validate(program: Program, suite: str | Suite, pool: EvaluatorPool | None,
              cache: str | os.PathLike | None,
              progress: Callable[[str], None] | None) -> ValidationReport:
    s = get_suite(suite, pool.device_kind if pool is not None else "cpu")
    directory = cache_dir(cache)
    baselines = ensure_baselines(s, pool=pool, cache=directory, progress=progress)
    cached = load_comparators(s, directory)
    rivals = comparator_programs()
    names = [program.name] if cached is not None else [program.name] + list(_TRAINED)
    if cached is None and progress:
        progress(f"training {', '.join(COMPARATOR_LABELS[n] for n in _TRAINED)} on suite "
                 f"{s.name!r} (version {s.version}) beside the rule; this happens once per "
                 f"suite version")
    # the rule is "rule" in the keys: a rule may be called lion too
    programs = {"rule": program, **{n: rivals[n] for n in names[1:]}}
    order = sorted(s.tasks, key=lambda t: -t.steps * t.replicas)  # heavy first, as evaluate_many
    jobs = [((who, t.name), Job(p, t, device=None if pool is not None else "cpu"))
            for t in order for who, p in programs.items()]
    runs: dict[str, dict[str, TaskRun]] = {who: {} for who in programs}
    for (who, task), run in _run(jobs, pool):
        runs[who][task] = run

    result = _assemble(0, program, s, runs["rule"], baselines)
    died = next((f"{t}: {r.error}" for t, r in runs["rule"].items()
                 if r.error and r.error.startswith((WORKER_DIED, HARD_LIMIT))), None)
    if died is not None:
        status = Status.ERROR if WORKER_DIED in died else Status.TIMEOUT
        result = _as_failed(result, status.value, died)
    spreads = tuple(seed_scores(runs["rule"][t.task], t.best_lr, baselines[t.task])
                    for t in result.tasks)

    if cached is None:
        found = _from_baselines(s, baselines)
        for name in _TRAINED:
            found[name] = _trained_comparator(name, s, runs[name], baselines)
        comparators = tuple(found[name] for name in COMPARATORS)
        # A comparator run that raised (a worker died, a broken install) is not its result
        # for this suite version: report it, but do not cache it.
        if not any(r.error for name in _TRAINED for r in runs[name].values()):
            save_comparators(s, directory, comparators)
    else:
        comparators = cached
    return ValidationReport(result, spreads, comparators, cached is not None)


def _run(jobs: list, pool: EvaluatorPool | None):
    if pool is not None:
        yield from pool.run(jobs)
        return
    for key, job in jobs:
        try:
            yield key, run_job(job)
        except Exception as e:  # noqa: BLE001 - a broken task is reported as an error run
            yield key, error_run(job.task, f"{type(e).__name__}: {e}")
