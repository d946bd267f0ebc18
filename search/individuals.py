"""The values the engine passes around: population members and children to evaluate."""

from __future__ import annotations

import math
from dataclasses import dataclass

from optforge.dsl import Program

__all__ = ["Member", "Child", "stored_score", "finite_or_none"]


@dataclass(frozen=True)
class Member:
    """A population member: a stored program and its stage-1 score."""

    program_id: int
    score: float


@dataclass(frozen=True)
class Child:
    program: Program
    parent_id: int | None
    kind: str  # the mutation, or "seed"
    number: int  # the campaign's count of children when it was drawn


def stored_score(value: float | None) -> float:
    """A stored score as a float: None (failed) and NaN become -inf."""
    return -math.inf if value is None or math.isnan(value) else float(value)


def finite_or_none(value: float | None) -> float | None:
    """A score as a checkpoint stores it: None unless finite."""
    return value if value is not None and math.isfinite(value) else None
