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

Before an evaluation is measured (a child in flight, a stage-2 pick, a simplification
variant), it is expected to cost the rule's known cost, `dsl.needs.passes_per_step` (1 by
count); an evaluation without a measured time is charged that. The units and the charges
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

__all__ = ["by_time", "expected", "charge", "settle_seeds", "note_seed", "affordable", "reference_seed"]


def by_time(campaign: Campaign) -> bool:
    return campaign.config.search.charge == "time"


def expected(campaign: Campaign, program: Program) -> float:
    """What evaluating `program` is expected to cost before it is measured."""
    return float(passes_per_step(program)) if by_time(campaign) else 1.0


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
    if unit is None and result.suite != campaign.config.funnel.stage1:
        unit = _unit_from_stage1(campaign, program_id, seconds)
        if unit is not None:
            c.units[result.suite] = unit
    return seconds / unit if unit else expected(campaign, program)


def _unit_from_stage1(campaign: Campaign, program_id: int | None,
                      seconds: float) -> float | None:
    """The unit for a new suite that charges `program_id` what it cost on stage 1."""
    unit1 = campaign.counters.units.get(campaign.config.funnel.stage1)
    if program_id is None or unit1 is None:
        return None
    times = [e.wall_time for e in campaign.store.evaluations(campaign=campaign.id, stage=STAGE1)
             if e.program_id == program_id and e.wall_time and e.wall_time > 0]
    return seconds * unit1 / times[-1] if times else None


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
