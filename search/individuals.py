"""The values the engine passes around: population members and children to evaluate."""

from __future__ import annotations

from dataclasses import dataclass

from optforge.dsl import Program

__all__ = ["Member", "Child"]


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
