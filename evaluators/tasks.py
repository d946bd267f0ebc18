"""Tasks and suites, as frozen data.

A `Task` says what to train (model and data source, with their arguments), for how long
(steps, batch size), how to measure it (the validation metric), and how to tune it (the
learning-rate grid and the seeds: ``R = len(lrs) * len(seeds)`` replicas train at once).
A candidate whose best rate is an end of the grid gets up to `Task.lr_extension` more rates
past that end (`evaluators.jobs.extend_lr_grid`): a rule may rescale its learning rate (a
`sqrt(lr)`, a constant factor), and the grid must not decide its score.
A `Suite` is a named tuple of tasks. Suites grow by cost:

* ``tiny``   for tests: a whole suite in well under a second of training;
* ``small``  search stage 1: about 3 s of training per candidate on one core;
* ``medium`` search stage 2, where winners are chosen: about 6x ``small``;
* ``reference`` the pre-redesign ``medium`` (2026-11) at 3x its steps: the stand-in for real
  training that `bench/proxy_fidelity.py` ranks the search suites against (never searched
  on). ``small`` and ``medium`` train its models, on fewer seeds and up to its horizon;
* ``validation`` held out: models and data that no search suite uses
  (`evaluators.validation_tasks`); never selected on, the honest estimate of what a
  campaign found (`optforge validate`).

Every task trains under a learning-rate schedule over its whole horizon (by default linear
warm-up, then cosine decay: `evaluators.schedules`), as users train; rules are compared at
the end of it.

On a CUDA device a suite is scaled up (`Suite.for_device`): more seeds, bigger batches and
wider models, because a GPU trains many replicas in the time a CPU trains few.

The suite `version` hashes everything that determines its results: the tasks (after device
scaling), the data they read (fingerprints), and the trainer's and scorer's semantics
versions. Cached baselines are keyed by it, so changing a task invalidates them.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, replace
from functools import cached_property, lru_cache
from typing import Any

from .schedules import WARMUP_COSINE, Schedule

__all__ = ["Task", "Suite", "SUITES", "SEARCH_SUITES", "get_suite", "lr_grid", "rates_beyond", "SuiteError",
           "DEVICE_KINDS"]

Args = tuple[tuple[str, Any], ...]

DEVICE_KINDS = ("cpu", "cuda")


class SuiteError(ValueError):
    """An unknown suite or an invalid task definition."""


def _args(**kw: Any) -> Args:
    return tuple(sorted(kw.items()))


def lr_grid(lo_exp: float, hi_exp: float, per_decade: int) -> tuple[float, ...]:
    """Log-spaced learning rates ``10**lo_exp ... 10**hi_exp``, `per_decade` per factor 10,
    rounded to 3 significant digits so that the grid prints (and hashes) cleanly."""
    n = int(round((hi_exp - lo_exp) * per_decade))
    return tuple(float(f"{10 ** (lo_exp + k / per_decade):.3g}") for k in range(n + 1))


def rates_beyond(lrs: tuple[float, ...], side: int, n: int) -> tuple[float, ...]:
    """The `n` rates that continue the log-spaced grid `lrs` past its low end (`side` -1)
    or its high end (+1), in increasing order, rounded as `lr_grid` rounds."""
    if side not in (-1, 1) or len(lrs) < 2:
        raise ValueError("side must be -1 or +1, and lrs hold at least two rates")
    step = math.log10(lrs[-1] / lrs[0]) / (len(lrs) - 1)
    edge = math.log10(lrs[0] if side < 0 else lrs[-1])
    out = [float(f"{10 ** (edge + side * k * step):.3g}") for k in range(1, n + 1)]
    return tuple(sorted(out))


@dataclass(frozen=True)
class Task:
    """One proxy training task (see module doc). `model` names a problem in
    `evaluators.models.PROBLEMS`; `data` a source in `evaluators.data` (None for synthetic
    objectives that carry their own)."""

    name: str
    model: str
    model_args: Args
    data: str | None
    data_args: Args
    steps: int
    batch_size: int
    metric: str
    lrs: tuple[float, ...]
    seeds: tuple[int, ...]
    time_budget_s: float = 60.0
    lr_extension: int = 4  # at most this many rates added past either end of `lrs`
    schedule: Schedule = WARMUP_COSINE  # the candidate's `lr` is the peak rate times this


    def __post_init__(self):
        problems = []
        if not self.name or not self.name.replace("_", "").isalnum():
            problems.append("name must be a non-empty identifier")
        if self.steps < 1:
            problems.append("steps must be >= 1")
        if self.batch_size < 1:
            problems.append("batch_size must be >= 1")
        if len(self.lrs) < 3 or any(not (lr > 0) for lr in self.lrs) or \
                list(self.lrs) != sorted(set(self.lrs)):
            problems.append("lrs must be at least 3 increasing positive learning rates")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            problems.append("seeds must be distinct and non-empty")
        if not (self.time_budget_s >= 0):
            problems.append("time_budget_s must be >= 0")
        if not (isinstance(self.lr_extension, int) and self.lr_extension >= 0):
            problems.append("lr_extension must be an integer >= 0")
        if not isinstance(self.schedule, Schedule):
            problems.append("schedule must be an evaluators.schedules.Schedule")
        if problems:
            raise SuiteError(f"task {self.name!r}: " + "; ".join(problems))

    @property
    def replicas(self) -> int:
        return len(self.lrs) * len(self.seeds)

    @property
    def model_kwargs(self) -> dict[str, Any]:
        return dict(self.model_args)

    def with_(self, **changes: Any) -> "Task":
        return replace(self, **changes)


@dataclass(frozen=True)
class Suite:
    name: str
    tasks: tuple[Task, ...]
    description: str = ""
    device_kind: str = "cpu"

    def __post_init__(self):
        names = [t.name for t in self.tasks]
        if not names:
            raise SuiteError(f"suite {self.name!r} has no tasks")
        if len(set(names)) != len(names):
            raise SuiteError(f"suite {self.name!r}: duplicate task names")
        if self.device_kind not in DEVICE_KINDS:
            raise SuiteError(f"unknown device kind {self.device_kind!r}")

    def task(self, name: str) -> Task:
        for t in self.tasks:
            if t.name == name:
                return t
        raise SuiteError(f"suite {self.name!r} has no task {name!r}")

    def for_device(self, device_kind: str) -> "Suite":
        """This suite sized for `device_kind` (``cpu`` or ``cuda``)."""
        if device_kind == self.device_kind:
            return self
        if device_kind not in DEVICE_KINDS:
            raise SuiteError(f"unknown device kind {device_kind!r}")
        if self.device_kind != "cpu":
            raise SuiteError("scale a suite from its CPU definition")
        return Suite(self.name, tuple(_scale_for_cuda(t) for t in self.tasks),
                     self.description, device_kind)

    @cached_property
    def version(self) -> str:
        """A short hash of everything that determines this suite's results (module doc)."""
        return suite_version(self)


def suite_version(suite: Suite) -> str:
    from .data import load_source  # the fingerprints load the data (cached per process)
    from .scoring import SCORING_VERSION
    from .trainer import TRAINER_VERSION

    h = hashlib.sha256()
    h.update(f"trainer={TRAINER_VERSION};scoring={SCORING_VERSION};"
             f"device={suite.device_kind}\n".encode())
    for t in suite.tasks:
        h.update(repr(t).encode())
        if t.data is not None:
            h.update(load_source(t.data, t.data_args).fingerprint.encode())
        h.update(b"\n")
    return h.hexdigest()[:12]


# ---- CUDA scaling ---------------------------------------------------------------------------

_WIDTH_KEYS = ("c1", "c2", "d_model")


def _scale_for_cuda(t: Task) -> Task:
    """A GPU trains many more replicas in the same time: twice the seeds (a steadier mean),
    four times the batch, twice the width of the neural models. The learning-rate grid and
    step count stay, so scores stay comparable in meaning."""
    kw = t.model_kwargs
    for key in _WIDTH_KEYS:
        if key in kw:
            kw[key] = 2 * kw[key]
    if "hidden" in kw:
        kw["hidden"] = tuple(2 * h for h in kw["hidden"])
    seeds = tuple(t.seeds) + tuple(max(t.seeds) + 1 + k for k in range(len(t.seeds)))
    batch = t.batch_size if t.model in ("quadratic", "rosenbrock") else 4 * t.batch_size
    return replace(t, model_args=_args(**kw), seeds=seeds, batch_size=batch)


# ---- the suites -------------------------------------------------------------------------------

# Learning-rate grids are log-spaced and wide enough that every seed optimizer's best rate is
# an interior point on every task (bench/seed_leaderboard.py reports it; the tests check it
# for the baselines on `tiny`): sign-based rules (Lion) want ~10x smaller rates than Adam,
# heavy-ball SGD larger ones.
_GRIDS = {"tiny": lr_grid(-4, 2, 1),       # decades 1e-4 .. 100 (7 rates)
          "small": lr_grid(-4, 2, 1),      # decades 1e-4 .. 100 (7 rates)
          "medium": lr_grid(-4, 2, 2),     # half decades 1e-4 .. 100 (13 rates)
          "reference": lr_grid(-4, 2, 2)}
_SEEDS = {"tiny": (0,), "small": (0,), "medium": (0, 1), "reference": (0, 1, 2)}
_BUDGET_S = {"tiny": 20.0, "small": 60.0, "medium": 300.0, "reference": 900.0}

# Per task and size: (model arguments, data arguments, steps, batch size). `tiny` is for tests
# and screening. `reference` is the pre-redesign `medium` (2026-11) at 3x its steps, 3 seeds:
# the stand-in for real training. The search stages were redesigned against it with
# bench/proxy_fidelity.py (README, "How candidates are scored"), both on the reference's
# models: `small` (stage 1) on one seed and a decade grid, the quadratic and Rosenbrock at the
# reference's horizon, logistic regression at half of it, teacher-student at two thirds and
# the digits MLP at a sixth, without the costly CNN and char LM (they bought little ranking
# for their cost); `medium` (stage 2) on two seeds
# and the half-decade grid, the cheap tasks at the reference's horizon and the costly ones at
# two thirds of it. Short horizons were what made the old suites rank poorly: the old
# `small`'s 30-step digits MLP ranked programs against the reference at Spearman 0.31
# (-0.04 under the schedule).
_SIZES: dict[str, dict[str, tuple[dict, dict, int, int] | None]] = {
    "quadratic": {
        "tiny": (dict(dim=32), {}, 60, 16),
        "small": (dict(dim=256), {}, 1800, 16),
        "medium": (dict(dim=256), {}, 1800, 16),
        "reference": (dict(dim=256), {}, 1800, 16)},
    "rosenbrock": {
        "tiny": (dict(dim=2), {}, 100, 1),
        "small": (dict(dim=4), {}, 3000, 1),
        "medium": (dict(dim=4), {}, 3000, 1),
        "reference": (dict(dim=4), {}, 3000, 1)},
    "logreg_cancer": {
        "tiny": ({}, {}, 30, 32),
        "small": ({}, {}, 600, 32),
        "medium": ({}, {}, 1200, 32),
        "reference": ({}, {}, 1200, 32)},
    "mlp_digits": {
        "tiny": (dict(hidden=(32,)), {}, 30, 32),
        "small": (dict(hidden=(128, 128)), {}, 150, 64),
        "medium": (dict(hidden=(128, 128)), {}, 600, 64),
        "reference": (dict(hidden=(128, 128)), {}, 900, 64)},
    "cnn_digits": {
        "tiny": (dict(c1=4, c2=8), {}, 20, 16),
        "small": None,
        "medium": (dict(c1=8, c2=16), {}, 400, 32),
        "reference": (dict(c1=8, c2=16), {}, 600, 32)},
    "char_lm": {
        "tiny": (dict(d_model=16, context=16, val_windows=16), {}, 20, 4),
        "small": None,
        "medium": (dict(d_model=32, context=16, val_windows=64), {}, 400, 8),
        "reference": (dict(d_model=32, context=16, val_windows=64), {}, 600, 8)},
    "teacher_student": {
        "tiny": (dict(hidden=(16,) * 4), {}, 40, 32),
        "small": (dict(hidden=(64,) * 4), {}, 400, 64),
        "medium": (dict(hidden=(64,) * 4), {}, 600, 64),
        "reference": (dict(hidden=(64,) * 4), {}, 600, 64)},
}

# What does not change with size.
_FIXED: dict[str, tuple[str, dict, str | None, dict, str]] = {
    # name: (model, model arguments, data source, data arguments, metric)
    "quadratic": ("quadratic", dict(cond=1e3, scale=1.0, noise=0.1, seed=1234), None, {},
                  "expected quadratic loss"),
    "rosenbrock": ("rosenbrock", dict(jitter=0.1), None, {}, "Rosenbrock function value"),
    "logreg_cancer": ("logistic_regression", {}, "breast_cancer", dict(feature_spread=2.0),
                      "validation binary cross-entropy"),
    "mlp_digits": ("mlp", dict(activation="relu", out=10), "digits", {},
                   "validation cross-entropy"),
    "cnn_digits": ("digits_cnn", {}, "digits", {}, "validation cross-entropy"),
    "char_lm": ("char_transformer", dict(heads=2), "stdlib_text", {},
                "validation next-character cross-entropy (nats)"),
    "teacher_student": ("mlp", dict(activation="tanh", out=1), "teacher_student",
                        dict(in_dim=16, width=32, depth=4, n_train=2048, n_val=512,
                             noise=0.0, gain=1.5, seed=99),
                        "validation mean squared error"),
}


def _tasks(size: str) -> tuple[Task, ...]:
    if size == "validation":
        from .validation_tasks import VALIDATION_TASKS  # it imports this module
        return VALIDATION_TASKS
    tasks = []
    for name, (model, model_kw, data, data_kw, metric) in _FIXED.items():
        if _SIZES[name][size] is None:  # not part of this suite
            continue
        sized_model, sized_data, steps, batch = _SIZES[name][size]
        tasks.append(Task(name, model, _args(**model_kw, **sized_model), data,
                          _args(**data_kw, **sized_data), steps=steps, batch_size=batch,
                          metric=metric, lrs=_GRIDS[size], seeds=_SEEDS[size],
                          time_budget_s=_BUDGET_S[size]))
    return tuple(tasks)


@lru_cache(maxsize=None)
def _builtin(name: str) -> Suite:
    descriptions = {
        "tiny": "for tests: a whole suite in under a second",
        "small": "search stage 1: five of the reference's tasks on one seed, the cheap "
                 "ones at its horizon; about 3 s per candidate on one CPU core",
        "medium": "search stage 2, where winners are chosen: the reference's models, two "
                  "seeds, up to its horizon",
        "reference": "the pre-redesign medium trained 3x longer: the stand-in for real "
                     "training that the fidelity benchmark ranks suites against",
        "validation": "held out: models and data no search suite uses; never selected on",
    }
    return Suite(name, _tasks(name), descriptions[name])


SUITES: tuple[str, ...] = ("tiny", "small", "medium", "reference", "validation")
SEARCH_SUITES: tuple[str, ...] = ("tiny", "small", "medium")  # what a campaign may select on


def get_suite(name: str | Suite, device_kind: str = "cpu") -> Suite:
    """The built-in suite `name` (or `name` itself if it is a Suite) sized for `device_kind`."""
    if isinstance(name, Suite):
        suite = name
    elif name in SUITES:
        suite = _builtin(name)
    else:
        raise SuiteError(f"unknown suite {name!r} (choose from {', '.join(SUITES)})")
    return suite.for_device(device_kind)
