"""The stages of a campaign's evaluations, as stored (`store.EvaluationRecord.stage`).

    seeds -> [0: screen] -> [1: evolve] -> [2: re-score the best; simplify the winner]
          -> [3: validate the final candidates on held-out tasks]

Winners are chosen on stage 2. Stage 3 is held out: its scores are stored and printed,
never selected on. Stages 0 and 3 are not counted in a campaign's budget.
"""

SCREEN = 0  # the cheap screening before stage 1 (`[funnel] screen`)
STAGE1 = 1  # every child that cleared the hurdle (`[funnel] stage1`)
STAGE2 = 2  # the best of stage 1 and the winner's simplifications (`[funnel] stage2`)
STAGE_VALIDATION = 3  # the final candidates on the held-out suite (`[validation] suite`)

__all__ = ["SCREEN", "STAGE1", "STAGE2", "STAGE_VALIDATION"]
