"""How long a running campaign still needs: the progress bar's ETA.

A campaign's work is not its budget's evaluations alone. After stage 1 come stage 2 (each
evaluation several times a stage-1 one), the winner's simplification (more stage-2
evaluations) and the validation of the winner (the costliest single evaluation), none of which
a count of evaluations sees: a bar that extrapolates from stage 1 sits near its end for
minutes. So the estimate adds up every phase still to come, each at the cost of an evaluation
on its suite:

* measured in this run, once the suite has been evaluated here (the counters keep the
  training seconds per suite);
* before that, the stage-1 cost times the suite's `RELATIVE_COST`, which are the mean
  training times per evaluation of the default campaign of 2026-12-01 (2-core CPU:
  tiny 0.28 s, small 2.76 s, medium 23.4 s, validation 112 s) over small's;
* before anything was measured, no estimate.

Evaluations run `workers` at a time, so the work is divided by the pool's size.
"""

from __future__ import annotations

from .stages import Phase

RELATIVE_COST = {"tiny": 0.10, "small": 1.0, "medium": 8.5, "reference": 25.0,
                 "validation": 40.0}


def evaluation_cost(training: dict, suite: str, stage1: str) -> float | None:
    """Seconds of one evaluation on `suite`: measured in this run (`training` maps a suite to
    [evaluations, seconds], the campaign's counters), else scaled from stage 1's."""
    n, seconds = training.get(suite, (0, 0.0))
    if n:
        return seconds / n
    n1, seconds1 = training.get(stage1, (0, 0.0))
    if not n1:
        return None
    return seconds1 / n1 * RELATIVE_COST.get(suite, 1.0) / RELATIVE_COST.get(stage1, 1.0)


def remaining_seconds(counters, config, workers: int, stage1_budget: int) -> float | None:
    """Wall seconds the campaign still needs (None until stage 1 has been measured). Counts
    the stage-1 evaluations left and the screenings they bring (at this run's ratio so far),
    the stage-2 evaluations and simplification variants the budget still allows, and the
    validation of the final candidates."""
    f, phase, training = config.funnel, counters.phase, counters.training

    def cost(suite: str) -> float:
        return evaluation_cost(training, suite, f.stage1) or 0.0
    if phase is Phase.DONE or evaluation_cost(training, f.stage1, f.stage1) is None:
        return None if phase is not Phase.DONE else 0.0
    work = 0.0
    # the budget in evaluations: charged by time (`search.charging`), what is left of it
    # goes at the mean charge of an evaluation so far
    by_time = config.search.charge == "time" and counters.evaluations and counters.spent > 0
    per_evaluation = counters.spent / counters.evaluations if by_time else 1.0
    spent = counters.spent if by_time else counters.evaluations
    if phase in (Phase.SEEDS, Phase.EVOLVE):
        stage1_left = (max(0.0, stage1_budget - spent) / per_evaluation if by_time else
                       max(0, stage1_budget - counters.stage1_evaluations))
        work += stage1_left * cost(f.stage1)
        if f.screen and counters.stage1_evaluations:
            work += (stage1_left * counters.screenings / counters.stage1_evaluations
                     * cost(f.screen))
    simplify = (config.simplify.max_ablations + 2) if config.simplify.enabled else 0
    after_stage1 = counters.evaluations - counters.stage1_evaluations  # done on stage 2
    if phase in (Phase.SEEDS, Phase.EVOLVE, Phase.STAGE2):
        later = max(0, f.stage2_max - after_stage1) + simplify
    elif phase is Phase.SIMPLIFY:
        later = max(0, f.stage2_max + simplify - after_stage1)
    else:
        later = 0
    budget_left = (config.budget - max(spent, stage1_budget if phase in (
        Phase.SEEDS, Phase.EVOLVE) else 0)) / per_evaluation
    work += min(later, max(0, budget_left)) * cost(f.stage2)
    if config.validation.enabled:
        work += config.validation.candidates * cost(config.validation.suite)
    return work / max(1, workers)
