"""After stage 1: the funnel's stage 2, the winner's simplification, and the held-out
validation of the final candidates.

The final candidates are the best programs on stage 2 (where winners are chosen, simplified
variants included), or on stage 1 when nothing reached stage 2. They are trained on the
held-out validation suite (`evaluators.validation`) and stored as stage 3 with the
comparators' scores beside them: the honest estimate of what the campaign found. Validation
is never selected on (it runs after the choice, and nothing reads its scores back) and is
not counted in the budget.

Each phase function takes the `engine.Campaign` and the pool (None: serial).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from optforge.evaluators.scoring import geometric_mean
from optforge.evaluators.validation import ValidationReport, validate
from optforge.store import RankedProgram

from . import charging
from .individuals import Child
from .stages import STAGE1, STAGE2, STAGE_VALIDATION, Phase

if TYPE_CHECKING:
    from .engine import Campaign

__all__ = ["stage2", "simplify", "validate_finalists", "best", "validations_json"]


def stage2(campaign: Campaign, pool) -> None:
    """Phase STAGE2: re-score the best of stage 1 (above the threshold, seeds excepted; the
    best one anyway when none is) on the stage-2 suite, within the budget."""
    f = campaign.config.funnel
    done = campaign.stage_scores(STAGE2)
    seed_ids = set(campaign.counters.seed_ids)
    top = campaign.store.top(f.stage2_max + len(seed_ids) + len(done), campaign=campaign.id,
                             suite=f.stage1)
    picks = [r for r in top if r.program.id not in seed_ids and r.score is not None
             and r.score >= f.threshold and r.program.id not in done]
    if not picks and not done and top:
        picks = [r for r in top if r.program.id not in seed_ids][:1]
    picks = picks[:max(0, f.stage2_max - len(done))]
    picks = picks[:charging.affordable(campaign.budget_left(), (
        charging.expected(campaign, campaign.program(r.program.id), r.program.id)
        for r in picks))]
    children = [Child(campaign.program(r.program.id), r.program.id, "stage2", i)
                for i, r in enumerate(picks)]
    for child, result in campaign.evaluate(children, f.stage2, pool):
        campaign.record_later(child.parent_id, result, STAGE2)
        if campaign.stop_requested:
            return
    campaign.finish_phase(Phase.STAGE2)


def simplify(campaign: Campaign, pool) -> None:
    """Phase SIMPLIFY: simplify the best program on stage 2 (`simplify_winner`)."""
    from .simplify_winner import simplify_winner

    scores = campaign.stage_scores(STAGE2)
    if scores:
        winner_id = max(scores, key=lambda pid: scores[pid])
        simplify_winner(campaign, winner_id, scores[winner_id], pool)
    if not campaign.stop_requested:
        campaign.finish_phase(Phase.SIMPLIFY)


def best(campaign: Campaign, n: int) -> list[RankedProgram]:
    """The campaign's best `n` programs where winners are chosen: on its stage-2 suite,
    else on its stage-1 suite (as `campaign_view.finalists` reads any stored campaign)."""
    f = campaign.config.funnel
    for stage, suite in ((STAGE2, f.stage2), (STAGE1, f.stage1)):
        ranked = campaign.store.top(n, campaign=campaign.id, suite=suite, stage=stage)
        if ranked:
            return ranked
    return []


def validate_finalists(campaign: Campaign, pool) -> None:
    """Phase VALIDATE: train each final candidate on the validation suite and store it as
    stage 3, once: a candidate validated before a resume is not trained again."""
    v = campaign.config.validation
    if campaign.progress:
        campaign.progress(campaign.counters)
    done = {r.program.id for r in campaign.store.stage_results(campaign.id, STAGE_VALIDATION)}
    for ranked in best(campaign, v.candidates):
        if ranked.program.id in done:
            continue
        report = validate(campaign.program(ranked.program.id), v.suite,
                          workers=1 if pool is None else None, pool=pool)
        _record_validation(campaign, ranked.program.id, report)
        if campaign.stop_requested:
            return
    campaign.finish_phase(Phase.VALIDATE)


def _record_validation(campaign: Campaign, program_id: int, report: ValidationReport) -> None:
    """Store a validation (stage 3, outside the budget): the rule's evaluation with, in
    each task's metrics, its seed scores, the comparators' results and the suite
    version."""
    extra = {}
    for t, seeds in zip(report.result.tasks, report.seed_scores):
        extra[t.task] = {"seed_scores": list(seeds), "suite_version": report.version,
                         "comparators": {c.name: {"score": c.task(t.task).score,
                                                  "loss": c.task(t.task).loss,
                                                  "best_lr": c.task(t.task).best_lr,
                                                  "status": c.task(t.task).status}
                                         for c in report.comparators}}
    campaign.counters.account(report.result.suite, report.result.wall_time)
    campaign.recorder.record(program_id, STAGE_VALIDATION, report.result,
                             f"stage{int(STAGE_VALIDATION)}/{program_id}", extra=extra,
                             checkpoint=campaign.checkpoint_state())


def validations_json(campaign: Campaign) -> list[dict]:
    """The stored validations, for the summary: the comparators' suite scores are the
    geometric means of their per-task scores (kept in each task's metrics)."""
    out = []
    for ev in campaign.store.evaluations(campaign=campaign.id, stage=STAGE_VALIDATION):
        rivals: dict[str, list[float]] = {}
        for t in ev.tasks:
            for rival, c in (dict(t.metrics).get("comparators") or {}).items():
                rivals.setdefault(rival, []).append(c["score"])
        out.append({"program": ev.program_id,
                    "name": campaign.store.get_program(ev.program_id).name,
                    "suite": ev.suite, "status": ev.status, "score": ev.score,
                    "tasks": {t.task: t.score for t in ev.tasks},
                    "comparators": {rival: geometric_mean(scores)
                                    for rival, scores in rivals.items()
                                    if len(scores) == len(ev.tasks)}})
    return out
