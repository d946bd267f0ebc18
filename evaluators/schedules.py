"""Learning-rate schedules, as frozen data: every task trains as users train.

A candidate's ``lr`` input at step ``k`` (0-based, of ``T`` steps) is its tuned peak rate
times the schedule's factor ``f(k)``. The default, and what every built-in task uses, is
linear warm-up then cosine decay to zero over the task's whole horizon (the shape of
``transformers.get_cosine_schedule_with_warmup`` and of most published trainings)::

    W = round(warmup * T)
    f(k) = (k + 1) / W                                  for k < W      (warm-up)
    f(k) = 0.5 * (1 + cos(pi * (k - W) / (T - W)))      for k >= W     (cosine decay)

so ``f`` rises to 1 at step W - 1, starts the decay at 1 and reaches nearly 0 at the last
step. Rules are compared at the end of their schedule: a rule that anneals its own step
gains nothing from it that tuned AdamW does not get too.

``constant`` (f = 1) is kept for tests and for comparisons with the old protocol.
The schedule is part of a `evaluators.tasks.Task`, so of its suite's version.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


__all__ = ["Schedule", "WARMUP_COSINE", "CONSTANT", "SCHEDULE_KINDS"]

SCHEDULE_KINDS = ("warmup_cosine", "constant")


@dataclass(frozen=True)
class Schedule:
    """A learning-rate schedule (module doc). `warmup` is the fraction of the horizon spent
    warming up (ignored by ``constant``)."""

    kind: str = "warmup_cosine"
    warmup: float = 0.05

    def __post_init__(self):
        if self.kind not in SCHEDULE_KINDS:
            raise ValueError(f"unknown schedule {self.kind!r} (choose from "
                             f"{', '.join(SCHEDULE_KINDS)})")
        if not (0.0 <= self.warmup < 1.0):
            raise ValueError("warmup must be a fraction in [0, 1)")

    def factor(self, k: int, steps: int) -> float:
        """The factor of step `k` (0-based) of `steps`."""
        if self.kind == "constant":
            return 1.0
        w = round(self.warmup * steps)
        if k < w:
            return (k + 1) / w
        return 0.5 * (1.0 + math.cos(math.pi * (k - w) / max(1, steps - w)))

    def factors(self, steps: int, device: torch.device | str = "cpu") -> torch.Tensor:
        """`factor` of every step, float32 ``[steps]``: computed in Python floats so the
        values are the same on every device."""
        import torch  # here, not at import: the command line's listings never load torch

        return torch.tensor([self.factor(k, steps) for k in range(steps)],
                            dtype=torch.float32, device=device)


WARMUP_COSINE = Schedule("warmup_cosine", 0.05)
CONSTANT = Schedule("constant", 0.0)
