"""Scoring candidates on a suite: in this process (`evaluate`) or on a pool
(`evaluate_many`), against cached baselines (`ensure_baselines`).

A candidate is a `dsl.Program`. Its evaluation is one job per task of the suite; the
candidate's `EvalResult` is assembled when its last task finishes: per-task scores (see
`evaluators.scoring`), the suite score, a status, and the time spent. A candidate whose
every replica failed gets that failure as its status (``diverged``, ``nan``, ``timeout``,
``error`` with the message) and the floor score; nothing here raises because of a rule.
"""

from __future__ import annotations

import os
from collections import deque
from dataclasses import dataclass, replace
from typing import Any, Callable, Hashable, Iterable, Iterator, Mapping

from optforge.dsl import Program, parse
from optforge.dsl.kernel import compile_kernel

from .grouping import group_size as default_group_size
from .jobs import GroupJob, Job, error_run, hyper_items, run_job
from .pool import HARD_LIMIT, WORKER_DIED, EvaluatorPool
from .scoring import (
    BASELINE_RULES,
    SCORE_FLOOR,
    Baseline,
    TaskScore,
    baseline_from_runs,
    cache_dir,
    candidate_status,
    load_baselines,
    save_baselines,
    score_task,
    suite_score,
)
from .tasks import Suite, get_suite
from .trainer import Status, TaskRun

__all__ = ["EvalResult", "evaluate", "evaluate_many", "evaluate_on_suites", "ensure_baselines",
           "baseline_programs"]


@dataclass(frozen=True)
class EvalResult:
    """One candidate's evaluation on a suite. `index` is its position in the input of
    `evaluate_many`; `wall_time` the seconds its tasks trained (summed over tasks); `error`
    the first error message of any task."""

    index: int
    rule: str
    suite: str
    version: str
    status: str
    score: float
    tasks: tuple[TaskScore, ...]
    wall_time: float
    error: str | None = None

    def task(self, name: str) -> TaskScore:
        for t in self.tasks:
            if t.task == name:
                return t
        raise KeyError(name)

    def to_json(self) -> dict[str, Any]:
        return {
            "rule": self.rule, "suite": self.suite, "version": self.version,
            "status": self.status, "score": self.score, "wall_time": self.wall_time,
            "error": self.error,
            "tasks": {t.task: {"score": t.score, "loss": t.loss, "best_lr": t.best_lr,
                               "status": t.status, "wall_time": t.wall_time,
                               "error": t.error}
                      for t in self.tasks},
        }


def baseline_programs() -> dict[str, Program]:
    return {name: parse(src, f"<baseline {name}>") for name, src in BASELINE_RULES.items()}


def _assemble(index: int, program: Program, suite: Suite, runs: Mapping[str, TaskRun],
              baselines: Mapping[str, Baseline]) -> EvalResult:
    scores = tuple(score_task(runs[t.name], baselines[t.name]) for t in suite.tasks)
    status = candidate_status(scores)
    error = next((s.error for s in scores if s.error), None)
    score = suite_score(scores) if status == Status.OK.value else SCORE_FLOOR
    return EvalResult(index, program.name, suite.name, suite.version, status, score, scores,
                      sum(s.wall_time for s in scores), error)


def _run_here(job: Job) -> TaskRun:
    """`run_job` in this process, with a broken task reported as an error run, as a pool
    worker reports it."""
    try:
        return run_job(job)
    except Exception as e:  # noqa: BLE001 - failure is data
        return error_run(job.task, f"{type(e).__name__}: {e}")


def _compile_error(program: Program) -> str | None:
    try:
        compile_kernel(program)
    except Exception as e:  # noqa: BLE001 - reported as the candidate's error
        return f"cannot compile rule: {type(e).__name__}: {e}"
    return None


# ---- baselines ----------------------------------------------------------------------------

BASELINE_BUDGET_FACTOR = 20  # a baseline's time budget, in multiples of its task's


def ensure_baselines(suite: Suite, *, pool: EvaluatorPool | None = None,
                     cache: str | os.PathLike | None = None, device: str = "cpu",
                     progress: Callable[[str], None] | None = None) -> dict[str, Baseline]:
    """The suite's baselines, from the cache or computed now (on `pool` if given, else in
    this process) and cached. Raises RuntimeError if a baseline fails on every replica of
    a task (the task is broken, not a rule): `evaluators.scoring.EvaluationError`."""
    directory = cache_dir(cache)
    names = [t.name for t in suite.tasks]
    found = load_baselines(suite.name, suite.version, directory, names)
    if found is not None:
        return found
    if progress:
        progress(f"computing baselines for suite {suite.name!r} (version {suite.version}); "
                 f"this happens once per suite version")
    programs = baseline_programs()
    # A baseline is never cut short by the task's time budget (that budget stops runaway
    # candidates): on a loaded machine a timed-out baseline would fail the whole suite.
    jobs = [((name, t.name), Job(p, t, time_budget_s=BASELINE_BUDGET_FACTOR * t.time_budget_s,
                                 device=None if pool else device))
            for name, p in programs.items() for t in suite.tasks]
    if pool is not None:
        runs = dict(pool.run(jobs))
    else:
        runs = {key: _run_here(job) for key, job in jobs}
    baselines = {t.name: baseline_from_runs(runs[("sgd_momentum", t.name)],
                                            runs[("adamw", t.name)]) for t in suite.tasks}
    save_baselines(suite.name, suite.version, directory, baselines)
    return baselines


# ---- evaluation -------------------------------------------------------------------------------

def evaluate(program: Program, suite: str | Suite = "small", *, device: str = "cpu",
             hyper: Mapping[str, float] | None = None, time_budget_s: float | None = None,
             cache: str | os.PathLike | None = None,
             baselines: Mapping[str, Baseline] | None = None) -> EvalResult:
    """Evaluate one candidate in this process, serially. Same candidate, same suite, same
    thread count: the same result, bit for bit (unless a time budget runs out)."""
    s = get_suite(suite, "cuda" if str(device).startswith("cuda") else "cpu")
    if baselines is None:
        baselines = ensure_baselines(s, cache=cache, device=device)
    error = _compile_error(program)
    runs: dict[str, TaskRun] = {}
    for t in s.tasks:
        if error is not None:
            runs[t.name] = error_run(t, error)
            continue
        runs[t.name] = _run_here(Job(program, t, hyper_items(hyper), time_budget_s, device))
    return _assemble(0, program, s, runs, baselines)


def evaluate_many(candidates: Iterable[Program], suite: str | Suite = "small", *,
                  workers: int | None = None, pool: EvaluatorPool | None = None,
                  hyper: Mapping[str, float] | None = None,
                  time_budget_s: float | None = None,
                  cache: str | os.PathLike | None = None,
                  progress: Callable[[str], None] | None = None,
                  group_size: int | None = None) -> Iterator[EvalResult]:
    """Evaluate candidates in parallel, yielding each `EvalResult` as soon as its last task
    finishes (not in input order: use `EvalResult.index`).

    Runs on `pool` if given (it stays open), else on a pool of `workers` processes made and
    closed here. `candidates` is consumed lazily: whenever a worker is idle and no job is
    waiting, up to `group_size` more candidates are drawn, and each task of theirs is one
    group job (`evaluators.jobs.GroupJob`) that trains them together as one batched model,
    with results identical to training each alone. `group_size` None: the pool's device
    decides (`evaluators.grouping.group_size`); 1: one candidate per job. So a generator
    may produce children from the results seen so far. The heavier tasks are dispatched
    first, so they do not finish last. A worker that dies costs only the candidate it was
    running: a group job whose worker dies (or hangs past the pool's hard limit) is run
    again one candidate per job; that candidate's result has status ``error``
    (``timeout`` if it hung), its remaining tasks are skipped, and the pool goes on.
    """
    name = suite.name if isinstance(suite, Suite) else suite
    yield from evaluate_on_suites(((p, name) for p in candidates), (suite,), workers=workers,
                                  pool=pool, hyper=hyper, time_budget_s=time_budget_s,
                                  cache=cache, progress=progress, group_size=group_size)


def evaluate_on_suites(candidates: Iterable[tuple[Program, str]], suites: Iterable[str | Suite],
                       *, workers: int | None = None, pool: EvaluatorPool | None = None,
                       hyper: Mapping[str, float] | None = None,
                       time_budget_s: float | None = None,
                       cache: str | os.PathLike | None = None,
                       progress: Callable[[str], None] | None = None,
                       group_size: int | None = None) -> Iterator[EvalResult]:
    """`evaluate_many` for candidates that each name their suite: ``(program, suite name)``
    pairs, every suite one of `suites` (their baselines are ensured before the first
    candidate is drawn). A search can so interleave cheap screenings with full evaluations
    on one pool. Raises ValueError for a candidate whose suite is not in `suites`."""
    if group_size is not None and group_size < 1:
        raise ValueError("group_size must be >= 1")
    own = pool is None
    if own:
        pool = EvaluatorPool(workers)
    try:
        by_name = {}
        for suite in suites:
            s = get_suite(suite, pool.device_kind)
            by_name[s.name] = (s, ensure_baselines(s, pool=pool, cache=cache,
                                                   progress=progress))
        if not getattr(pool, "groups", False):  # a pool that does not say it runs groups
            size = 1
        elif group_size is None:
            size = min(default_group_size(s, pool.device_kind) for s, _ in by_name.values())
        else:
            size = group_size
        yield from _run_candidates(candidates, by_name, pool, hyper_items(hyper),
                                   time_budget_s, size)
    finally:
        if own:
            pool.close()


def _task_order(suite: Suite, seconds: Mapping[tuple[str, str], float]) -> list:
    """Longest first, so that a candidate's tasks finish close together: by the mean time
    each task has taken so far, and before any has finished by steps x replicas."""
    if all((suite.name, t.name) in seconds for t in suite.tasks):
        return sorted(suite.tasks, key=lambda t: -seconds[suite.name, t.name])
    return sorted(suite.tasks, key=lambda t: -t.steps * t.replicas)


def _run_candidates(candidates: Iterable[tuple[Program, str]],
                    suites: Mapping[str, tuple[Suite, Mapping[str, Baseline]]],
                    pool: EvaluatorPool, hyper: tuple,
                    time_budget_s: float | None, group_size: int) -> Iterator[EvalResult]:
    programs: dict[int, tuple[Program, Suite, Mapping[str, Baseline]]] = {}
    runs: dict[int, dict[str, TaskRun]] = {}
    failed: dict[int, tuple[str, str]] = {}  # candidate -> (status, how it took a worker down)
    ready: list[EvalResult] = []
    seconds: dict[tuple[str, str], float] = {}  # mean training time of each task so far
    counts: dict[tuple[str, str], int] = {}
    # Jobs of group members to run again one per job (their group's worker died or hung).
    again: deque[tuple[tuple[int, str], Job]] = deque()
    source = enumerate(candidates)

    def draw() -> list[int]:
        """Up to `group_size` more candidates (their indices), compile errors settled."""
        drawn = []
        for index, (program, suite_name) in source:
            if suite_name not in suites:
                raise ValueError(f"candidate {index} names suite {suite_name!r}, not one of "
                                 f"{', '.join(sorted(suites))}")
            suite, baselines = suites[suite_name]
            programs[index], runs[index] = (program, suite, baselines), {}
            error = _compile_error(program)
            if error is not None:
                for t in suite.tasks:
                    runs[index][t.name] = error_run(t, error)
                ready.append(_assemble(index, program, suite, runs.pop(index), baselines))
                programs.pop(index)
            else:
                drawn.append(index)
            if len(drawn) >= group_size:
                break
        return drawn

    def jobs() -> Iterator[tuple[Hashable, Job | GroupJob]]:
        while True:
            while again:
                yield again.popleft()
            drawn = draw()
            if not drawn:
                return
            # (a candidate may be settled, and forgotten, before all its jobs are drawn)
            entries = {i: programs[i][:2] for i in drawn}
            for name in dict.fromkeys(suite.name for _, suite in entries.values()):
                group = tuple(i for i in drawn if entries[i][1].name == name)
                for t in _task_order(suites[name][0], seconds):
                    members = tuple(i for i in group if i in runs) or group[:1]
                    if len(members) == 1:
                        yield (members[0], t.name), Job(entries[members[0]][0], t, hyper,
                                                        time_budget_s)
                    else:
                        yield (members, t.name), GroupJob(
                            tuple(entries[i][0] for i in members), t, hyper, time_budget_s)

    def accept(index: int, task_name: str, run: TaskRun) -> EvalResult | None:
        if index not in runs or task_name in runs[index]:
            return None  # settled already (its candidate took a worker down)
        program, suite, baselines = programs[index]
        runs[index][task_name] = run
        if run.steps == suite.task(task_name).steps:  # a full run (not stopped early)
            key = (suite.name, task_name)
            counts[key] = counts.get(key, 0) + 1
            seconds[key] = seconds.get(key, 0.0) + \
                (run.wall_time - seconds.get(key, 0.0)) / counts[key]
        if _took_worker_down(run) and index not in failed:
            # The candidate killed (or hung) its worker: skip its other tasks, they would too.
            status = Status.ERROR if run.error.startswith(WORKER_DIED) else Status.TIMEOUT
            failed[index] = (status.value, f"{task_name}: {run.error}")
            for t in suite.tasks:
                if t.name not in runs[index]:
                    pool.discard((index, t.name))
                    runs[index][t.name] = error_run(t, "skipped: another task of this "
                                                       "candidate took its worker down", status)
        if len(runs[index]) < len(suite.tasks):
            return None
        del programs[index]
        result = _assemble(index, program, suite, runs.pop(index), baselines)
        if index in failed:
            result = _as_failed(result, *failed.pop(index))
        return result

    work = jobs()
    while True:
        for (who, task_name), run in pool.run(work):
            # results of uncompilable candidates are produced while jobs are drawn
            while ready:
                yield ready.pop(0)
            if not isinstance(who, tuple):
                result = accept(who, task_name, run)
                if result is not None:
                    yield result
                continue
            if _took_worker_down(run[0]):  # one of the group did it: find out which
                for i in who:
                    if i in runs and task_name not in runs[i]:
                        program, suite, _ = programs[i]
                        again.append(((i, task_name), Job(program, suite.task(task_name),
                                                          hyper, time_budget_s)))
                continue
            for i, member_run in zip(who, run):
                result = accept(i, task_name, member_run)
                if result is not None:
                    yield result
        if not again:
            break
        work = jobs()  # the pool stopped drawing before these were queued
    while ready:
        yield ready.pop(0)


def _took_worker_down(run: TaskRun) -> bool:
    return bool(run.error) and run.error.startswith((WORKER_DIED, HARD_LIMIT))


def _as_failed(result: EvalResult, status: str, message: str) -> EvalResult:
    """A candidate that killed or hung a worker fails, whatever its other tasks did."""
    return replace(result, status=status, score=SCORE_FLOOR, error=message)
