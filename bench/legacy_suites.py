"""The search suites as they were before the fidelity redesign (commit c29e07a, 2026-11-23):
seven tasks at a constant learning rate, `small` for stage 1 and `medium` for stage 2.

Benchmarks compare against them in the same run (`bench/proxy_fidelity.py`: how well they
ranked; `bench/evaluator_throughput.py`: what a stage-1 candidate cost), so they are kept
here literally, not derived from today's suites.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from optforge.evaluators import Suite, Task  # noqa: E402
from optforge.evaluators.schedules import CONSTANT, WARMUP_COSINE  # noqa: E402
from optforge.evaluators.tasks import _FIXED, _args, lr_grid  # noqa: E402

__all__ = ["LEGACY", "legacy_suite"]

# (model arguments, data arguments, steps, batch size) per task, as on 2026-11-23.
_SIZES = {
    "small": {
        "quadratic": (dict(dim=64), {}, 150, 16),
        "rosenbrock": (dict(dim=2), {}, 200, 1),
        "logreg_cancer": ({}, {}, 100, 32),
        "mlp_digits": (dict(hidden=(128,)), {}, 30, 256),
        "cnn_digits": (dict(c1=4, c2=8), {}, 50, 16),
        "char_lm": (dict(d_model=16, context=16, val_windows=32), {}, 40, 8),
        "teacher_student": (dict(hidden=(32,) * 4), {}, 100, 64)},
    "medium": {
        "quadratic": (dict(dim=256), {}, 600, 16),
        "rosenbrock": (dict(dim=4), {}, 1000, 1),
        "logreg_cancer": ({}, {}, 400, 32),
        "mlp_digits": (dict(hidden=(128, 128)), {}, 300, 64),
        "cnn_digits": (dict(c1=8, c2=16), {}, 200, 32),
        "char_lm": (dict(d_model=32, context=16, val_windows=64), {}, 200, 8),
        "teacher_student": (dict(hidden=(64,) * 4), {}, 200, 64)},
}
_SEEDS = {"small": (0, 1), "medium": (0, 1, 2)}
_BUDGET_S = {"small": 30.0, "medium": 300.0}

LEGACY = tuple(f"{size}@2026-11{kind}" for size in _SIZES for kind in ("", "+cosine"))


def legacy_suite(name: str) -> Suite:
    """``small@2026-11`` or ``medium@2026-11``: that suite as it was, at a constant rate;
    with ``+cosine``, its tasks under today's warm-up + cosine schedule instead."""
    size = name.split("@")[0]
    schedule = WARMUP_COSINE if name.endswith("+cosine") else CONSTANT
    if name not in LEGACY:
        raise ValueError(f"unknown legacy suite {name!r} (choose from {', '.join(LEGACY)})")
    tasks = []
    for task_name, (model, model_kw, data, data_kw, metric) in _FIXED.items():
        sized_model, sized_data, steps, batch = _SIZES[size][task_name]
        tasks.append(Task(task_name, model, _args(**model_kw, **sized_model), data,
                          _args(**data_kw, **sized_data), steps=steps, batch_size=batch,
                          metric=metric, lrs=lr_grid(-4, 2, 2), seeds=_SEEDS[size],
                          time_budget_s=_BUDGET_S[size], schedule=schedule))
    return Suite(name, tuple(tasks), f"{size} as of 2026-11-23")
