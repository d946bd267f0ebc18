"""Proxy tasks, the batched trainer, scoring, and the parallel evaluator pool.

    >>> from evaluators import evaluate, evaluate_many, get_suite
    >>> result = evaluate(program, "tiny")             # in this process, serially
    >>> for r in evaluate_many(programs, "small", workers=2):
    ...     print(r.index, r.status, r.score)          # as each candidate finishes

Every task trains under a learning-rate schedule (warm-up, then cosine decay). A candidate's
score on a task is tuned AdamW's final validation loss over the candidate's (each at its best
learning rate, mean over seeds; clipped to [0.25, 4]), so AdamW scores exactly 1 and higher
is better; the suite score is the geometric mean over tasks (see `evaluators.scoring`). Failures (divergence, NaN, time-outs, errors, dead
workers) are statuses, never exceptions.

Layering: this package imports only `dsl` of ours.
"""

from typing import TYPE_CHECKING

from optforge.dsl.lazy import lazy_exports

# Exports load their submodule on first use (see dsl.lazy).
_EXPORTS = {
    "EvalResult": "evaluation",
    "baseline_programs": "evaluation",
    "ensure_baselines": "evaluation",
    "evaluate": "evaluation",
    "evaluate_many": "evaluation",
    "evaluate_on_suites": "evaluation",
    "Job": "jobs",
    "run_job": "jobs",
    "EvaluatorPool": "pool",
    "SlotSpec": "pool",
    "plan_slots": "pool",
    "SCORE_CEIL": "scoring",
    "SCORE_FLOOR": "scoring",
    "Baseline": "scoring",
    "EvaluationError": "scoring",
    "TaskScore": "scoring",
    "SUITES": "tasks",
    "Suite": "tasks",
    "SuiteError": "tasks",
    "Task": "tasks",
    "get_suite": "tasks",
    "Status": "trainer",
    "TaskRun": "trainer",
    "train_replicas": "trainer",
    "train_task": "trainer",
}

if TYPE_CHECKING:
    from .evaluation import (
        EvalResult,
        baseline_programs,
        ensure_baselines,
        evaluate,
        evaluate_many,
        evaluate_on_suites,
    )
    from .jobs import Job, run_job
    from .pool import EvaluatorPool, SlotSpec, plan_slots
    from .scoring import SCORE_CEIL, SCORE_FLOOR, Baseline, EvaluationError, TaskScore
    from .tasks import SUITES, Suite, SuiteError, Task, get_suite
    from .trainer import Status, TaskRun, train_replicas, train_task


__all__ = [
    "Baseline", "EvalResult", "EvaluationError", "EvaluatorPool", "Job", "SCORE_CEIL", "SCORE_FLOOR", "SUITES",
    "SlotSpec", "Status", "Suite", "SuiteError", "Task", "TaskRun", "TaskScore",
    "baseline_programs", "ensure_baselines", "evaluate", "evaluate_many", "evaluate_on_suites",
    "get_suite", "plan_slots", "run_job", "train_replicas", "train_task",
]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, __all__)
