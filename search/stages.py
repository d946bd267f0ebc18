"""The stages of a campaign's evaluations, as stored (`store.EvaluationRecord.stage`), and the
phases a campaign goes through (saved in its checkpoint).

    seeds -> [0: screen] -> [1: evolve] -> [2: re-score the best; simplify the winner]
          -> [3: validate the final candidates on held-out tasks]

Winners are chosen on stage 2. Stage 3 is held out: its scores are stored and printed,
never selected on. Stages 0 and 3 are not counted in a campaign's budget.
"""

from __future__ import annotations

from enum import Enum, IntEnum

__all__ = ["Stage", "Phase", "SCREEN", "STAGE1", "STAGE2", "STAGE_VALIDATION"]


class Stage(IntEnum):
    """An evaluation's stage; stored as its integer."""

    SCREEN = 0  # the cheap screening before stage 1 (`[funnel] screen`)
    STAGE1 = 1  # every child that cleared the hurdle (`[funnel] stage1`)
    STAGE2 = 2  # the best of stage 1 and the winner's simplifications (`[funnel] stage2`)
    VALIDATION = 3  # the final candidates on the held-out suite (`[validation] suite`)


SCREEN, STAGE1, STAGE2, STAGE_VALIDATION = Stage.SCREEN, Stage.STAGE1, Stage.STAGE2, \
    Stage.VALIDATION


class Phase(Enum):
    """Where a campaign is, in order. The values are what checkpoints store (the strings of
    every campaign stored so far), so older databases resume."""

    SEEDS = "seeds"
    EVOLVE = "evolve"
    STAGE2 = "stage2"
    SIMPLIFY = "simplify"
    VALIDATE = "validate"
    DONE = "done"

    def following(self, enabled: frozenset["Phase"]) -> "Phase":
        """The first phase after this one that is in `enabled` (DONE always is)."""
        order = list(Phase)
        return next(p for p in order[order.index(self) + 1:]
                    if p in enabled or p is Phase.DONE)
