"""Automatic simplification of a campaign's winner, the steps the Lion authors partly did by
hand:

  1. dead code and algebra (`dsl.simplify`: exact up to the probes);
  2. statement ablation: each statement in turn is bypassed (its readers read one of its
     arguments); a bypass is kept if the stage-2 score drops by at most `tolerance`;
  3. constant rounding to 2 significant digits, kept under the same rule;
  4. `dsl.simplify` again.

Every evaluation costs one stage-2 training and counts in the campaign's budget; each
evaluated variant is stored as a child of the winner (mutation `ablation` or `round`), and
the final program as its child with mutation `simplify`, with its own scores.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from optforge.dsl import Program
from optforge.dsl.checker import live_statements
from optforge.dsl.ops import OPS

from optforge import dsl

from . import charging
from .individuals import Child
from .mutations import bypass_statement
from .stages import STAGE2

if TYPE_CHECKING:
    from .engine import Campaign

__all__ = ["simplify_winner", "ablations", "round_constants"]


def ablations(p: Program) -> list[Program]:
    """One valid bypass per live statement, costliest statements first."""
    out = []
    live = sorted(live_statements(p), key=lambda i: -OPS[p.body[i].op].cost)
    seen = {dsl.structural_hash(p)}
    for i in live:
        for k in range(len(p.body[i].args)):
            q = dsl.simplify(bypass_statement(p, i, k))
            h = dsl.structural_hash(q)
            if h not in seen and dsl.check(q).ok:
                seen.add(h)
                out.append(q)
                break
    return out


def round_constants(p: Program, digits: int = 2) -> Program:
    def r(a):
        return float(f"{a:.{digits}g}") if isinstance(a, float) else a
    body = tuple(dsl.Stmt(s.target, s.op, tuple(r(a) for a in s.args)) for s in p.body)
    hyper = tuple((n, r(v)) for n, v in p.hyperparams)
    return replace(p, body=body, hyperparams=hyper, returns=tuple(r(a) for a in p.returns))


def simplify_winner(campaign: Campaign, winner_id: int, winner_score: float, pool) -> int | None:
    """Simplify the program `winner_id` of `campaign`; returns the stored id of the
    simplified program (None if nothing simpler was found or the budget ran out)."""
    cfg = campaign.config.simplify
    stage2 = campaign.config.funnel.stage2
    winner = campaign.program(winner_id)
    floor = winner_score - cfg.tolerance
    best = dsl.simplify(winner)

    def score_of(programs: list[Program], kind: str) -> list[tuple[Program, float]]:
        left = campaign.budget_left()
        scored = []
        todo = []
        for q in programs:
            known = _stored_stage2(campaign, q)
            if known is not None:
                scored.append((q, known))
            elif charging.affordable(left, [charging.expected(campaign, q)]):
                todo.append(q)
                left -= charging.expected(campaign, q)
        children = [Child(q, winner_id, kind, n) for n, q in enumerate(todo)]
        for child, result in campaign.evaluate(children, stage2, pool):
            record = campaign.store.add_program(child.program)
            campaign.record_later(record.id, result, STAGE2, parent_id=winner_id, kind=kind)
            scored.append((child.program, result.score))
            if campaign.stop_requested:
                break
        return scored

    variants = ablations(best)[:cfg.max_ablations]
    good = [(q, s) for q, s in score_of(variants, "ablation") if s >= floor]
    if good:
        best = dsl.simplify(max(good, key=lambda qs: (qs[1], -dsl.complexity(qs[0])))[0])
    rounded = dsl.simplify(round_constants(best))
    if dsl.structural_hash(rounded) != dsl.structural_hash(best):
        if any(s >= floor for _, s in score_of([rounded], "round")):
            best = rounded
    if dsl.structural_hash(best) == dsl.structural_hash(winner):
        return None
    best = replace(best, name=f"{winner.name}_simplified", doc="")
    known = _stored_stage2(campaign, best)
    if not score_of([best], "simplify"):
        return None
    record = campaign.store.add_program(best)
    if known is not None:  # scored before as a variant: link it as the simplification too
        campaign.recorder.link(record.id, winner_id, "simplify")
    return record.id


def _stored_stage2(campaign: Campaign, program: Program) -> float | None:
    record = campaign.store.program_by_hash(dsl.structural_hash(program))
    if record is None:
        return None
    return campaign.stage_scores(STAGE2).get(record.id)
