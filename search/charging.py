"""What an evaluation costs the campaign's budget: one evaluation, or its training time.

`[search] charge = "count"` (the default) charges every budgeted evaluation (stage 1, stage 2,
a simplification variant) 1. `charge = "time"` charges its measured training time
(`EvalResult.wall_time`) in units of a reference evaluation on the same suite, so the budget
still reads as "evaluations' worth" while a rule whose step costs more passes of the model
(a second gradient, a Hessian-vector product) costs more:

* the stage-1 suite's unit is the stage-1 time of the first seed, AdamW's when AdamW is a
  seed (the first seed trained here when that one was not). Until the seeds phase ends the
  seeds are charged their known cost; then they are charged again by time (`settle_seeds`);
* another suite's unit is set by the first program evaluated on it: the unit that charges
  it what it cost on stage 1 (stage 2 re-scores programs of stage 1), so a program twice
  AdamW's cost on stage 1 stays about twice on stage 2.

Before an evaluation is measured it is expected to cost (1 by count):

* a program trained on stage 1 before (a stage-2 pick): what stage 1 charged it;
* any other (a child, a simplification variant): its known cost,
  `dsl.needs.passes_per_step`, times what one pass has cost on stage 1 so far (`per_pass`:
  children slower per pass than AdamW make the next ones expected slower too).

Stage 1 takes a child only while what it has spent, what it has in flight and one pass more
fit in its budget, so the reserve for stage 2 and the simplification is kept; an evaluation
without a measured time is charged what it was expected to cost. The units and the charges
are kept in the campaign's counters, so a resumed campaign charges what it charged.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Iterable

from optforge.dsl import Program
from optforge.dsl.needs import passes_per_step
from optforge.evaluators import EvalResult

from .stages import STAGE1

if TYPE_CHECKING:
    from .engine import Campaign

__all__ = ["by_time", "expected", "per_pass", "charge", "settle_seeds", "note_seed",
           "affordable", "reference_seed"]


def by_time(campaign: Campaign) -> bool:
    return campaign.config.search.charge == "time"


def per_pass(campaign: Campaign) -> float:
    """What one pass of the model has cost a stage-1 evaluation so far (1 by count, and
    before anything is measured)."""
    charged, passes = campaign.counters.stage1_charged
    return charged / passes if by_time(campaign) and passes else 1.0


def expected(campaign: Campaign, program: Program, program_id: int | None = None) -> float:
    """What evaluating `program` (stored as `program_id`) is expected to cost before it is
    measured: its stage-1 charge when it has one, else its passes at `per_pass`."""
    if not by_time(campaign):
        return 1.0
    if program_id is not None:
        known = _stage1_charge(campaign, program_id)
        if known is not None:
            return known
    return passes_per_step(program) * per_pass(campaign)


def _stage1_seconds(campaign: Campaign, program_id: int) -> float | None:
    times = [e.wall_time for e in campaign.store.evaluations(campaign=campaign.id, stage=STAGE1)
             if e.program_id == program_id and e.wall_time and e.wall_time > 0]
    return times[-1] if times else None


def _stage1_charge(campaign: Campaign, program_id: int) -> float | None:
    unit = campaign.counters.units.get(campaign.config.funnel.stage1)
    seconds = _stage1_seconds(campaign, program_id)
    return seconds / unit if unit and seconds else None


def _count_stage1(campaign: Campaign, cost: float, passes: int) -> None:
    charged, total = campaign.counters.stage1_charged
    campaign.counters.stage1_charged = [charged + cost, total + passes]


def _measured(result: EvalResult) -> float | None:
    t = result.wall_time
    return float(t) if t is not None and math.isfinite(t) and t > 0 else None


def charge(campaign: Campaign, program: Program, result: EvalResult,
           program_id: int | None = None) -> float:
    """What a finished budgeted evaluation of `program` (stored as `program_id`) costs."""
    if not by_time(campaign):
        return 1.0
    c = campaign.counters
    seconds = _measured(result)
    if seconds is None:
        return expected(campaign, program)
    unit = c.units.get(result.suite)
    stage1 = result.suite == campaign.config.funnel.stage1
    if unit is None and not stage1:
        unit = _unit_from_stage1(campaign, program_id, seconds)
        if unit is not None:
            c.units[result.suite] = unit
    if not unit:  # a seed before the seeds phase ends: `settle_seeds` charges it again
        return expected(campaign, program)
    if stage1:
        _count_stage1(campaign, seconds / unit, passes_per_step(program))
    return seconds / unit


def _unit_from_stage1(campaign: Campaign, program_id: int | None,
                      seconds: float) -> float | None:
    """The unit for a new suite that charges `program_id` what it cost on stage 1."""
    unit1 = campaign.counters.units.get(campaign.config.funnel.stage1)
    if program_id is None or unit1 is None:
        return None
    before = _stage1_seconds(campaign, program_id)
    return seconds * unit1 / before if before else None


def reference_seed(campaign: Campaign) -> int:
    """The index of the seed whose stage-1 time is the unit: AdamW's, else the first."""
    seeds = list(campaign.config.seeds)
    return seeds.index("adamw") if "adamw" in seeds else 0


def settle_seeds(campaign: Campaign) -> None:
    """At the end of the seeds phase (charging by time): the stage-1 unit is the reference
    seed's time (else the first seed's trained here), and the seeds trained here are
    charged by it instead of their known cost."""
    c = campaign.counters
    if not by_time(campaign) or not c.seed_charges:
        return
    seeds = {int(k): v for k, v in c.seed_charges.items()}  # index -> [seconds, known cost]
    ref = reference_seed(campaign)
    unit = (seeds[ref][0] if ref in seeds and seeds[ref][0] else
            next((s for _, (s, _) in sorted(seeds.items()) if s), None))
    if unit is None:
        return
    c.units[campaign.config.funnel.stage1] = unit
    provisional = sum(float(known) for _, known in seeds.values())
    settled = sum(s / unit if s else float(known) for s, known in seeds.values())
    c.spent += settled - provisional
    for s, known in seeds.values():
        if s:
            _count_stage1(campaign, s / unit, int(known))


def note_seed(campaign: Campaign, number: int, program: Program, result: EvalResult) -> None:
    """Remember a seed's stage-1 time and known cost for `settle_seeds` (charging by time)."""
    if by_time(campaign):
        campaign.counters.seed_charges[str(number)] = [_measured(result),
                                                       expected(campaign, program)]


def affordable(left: float, costs: Iterable[float]) -> int:
    """How many of `costs`, in order, fit in `left` together."""
    n, total = 0, 0.0
    for cost in costs:
        total += cost
        if total > left + 1e-9:
            break
        n += 1
    return n
