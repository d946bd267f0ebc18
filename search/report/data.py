"""What a campaign report shows, gathered from the store into frozen values.

`gather(store, campaign)` reads everything once and returns a `ReportData`; the plots
(`search.report.plots`) and the page (`search.report.page`) are pure functions of it. Only
the `Store` API is used (frozen records in, frozen records out), so the report reads a
campaign the way `optforge show` and `optforge top` do:

- the winner is the campaign's best program where winners are chosen: its best stage-2
  score (simplified variants included), else its best stage-1 score (as
  `search.engine.Campaign.finalists`);
- the random-search control is another campaign of the same database whose configuration
  has ``evolution.strategy = "random"`` and the same stage-1 suite (the one created nearest
  in time when there are several, as `bench/rediscovery.py` creates the pair together);
- the lineage is one path from a seed to the winner: at each program, the edge recorded
  first in this campaign (the mutation that produced it first);
- every score is kept with its suite and stage: scores of different suites are not
  comparable, and the page names the suite of every score it prints.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from optforge.store import (
    CampaignRecord,
    EvaluationRecord,
    ProgramRecord,
    Store,
    TaskResultRecord,
)

from ..campaign_view import winners_scope
from ..commands.validate_cmd import stored_validation
from ..stages import SCREEN, STAGE1, STAGE2, STAGE_VALIDATION
from .stats import COUNTERS, StageCount, Stats, stats_of  # noqa: F401 - re-exported

STAGE_NAMES = {SCREEN: "screening", STAGE1: "stage 1", STAGE2: "stage 2",
               STAGE_VALIDATION: "held-out validation"}


# ---- the values ---------------------------------------------------------------------------

@dataclass(frozen=True)
class StageSeries:
    """One campaign's scores on one stage, in commit order (evaluation id). A score is None
    when the evaluation failed or has no finite score."""

    stage: int
    suite: str
    scores: tuple[float | None, ...]

    @property
    def running_best(self) -> tuple[float | None, ...]:
        """The best finite score committed so far, after each evaluation."""
        out, best = [], None
        for s in self.scores:
            if s is not None and (best is None or s > best):
                best = s
            out.append(best)
        return tuple(out)

    @property
    def best(self) -> float | None:
        return max((s for s in self.scores if s is not None), default=None)


@dataclass(frozen=True)
class CampaignSeries:
    """A campaign's progress: its stage-1 and stage-2 series (those it has)."""

    campaign_id: int
    name: str
    strategy: str
    stages: tuple[StageSeries, ...]

    def stage(self, stage: int) -> StageSeries | None:
        return next((s for s in self.stages if s.stage == stage), None)


@dataclass(frozen=True)
class FrontPoint:
    program_id: int
    name: str
    complexity: int
    score: float


@dataclass(frozen=True)
class Pareto:
    """Score against complexity on one suite: every program's best score there (`cloud`)
    and the front (programs no simpler program matches), simplest first."""

    stage: int
    suite: str
    cloud: tuple[FrontPoint, ...]
    front: tuple[FrontPoint, ...]


@dataclass(frozen=True)
class ScoreOn:
    """A program's best score on one stage of the campaign, with its suite."""

    stage: int
    suite: str
    score: float | None
    status: str


@dataclass(frozen=True)
class LineageStep:
    """One program on the path from the seed to the winner. `mutation` is how its parent
    (the previous step) produced it, None for the seed; `source` its source without its
    docstring; `diff` the unified diff of the parent's `source` to this one's, lines
    without their newlines."""

    program_id: int
    name: str
    mutation: str | None
    source: str
    diff: tuple[str, ...]
    scores: tuple[ScoreOn, ...]


@dataclass(frozen=True)
class Winner:
    """The campaign's best program where winners are chosen (`stage`, `suite`), its
    per-task results there, its derived forms (None with `why_no_forms` when the stored
    source cannot be parsed or simplified) and its stored held-out validation, in the form
    of `search.commands.validate_cmd.stored_validation` (None: not validated)."""

    program: ProgramRecord
    stage: int
    suite: str
    score: float | None
    tasks: tuple[TaskResultRecord, ...]
    stage1: ScoreOn | None
    simplified: str | None
    latex: str | None
    why_no_forms: str | None
    validation: Mapping[str, Any] | None
    validation_evaluation: int | None


@dataclass(frozen=True)
class OtherValidation:
    """A held-out validation the campaign stored for another finalist than the winner."""

    program_id: int
    name: str
    suite: str
    score: float | None
    status: str


@dataclass(frozen=True)
class ReportData:
    campaign: CampaignRecord
    database: str
    generated_at: datetime
    strategy: str
    progress: CampaignSeries
    control: CampaignSeries | None
    pareto: Pareto | None
    winner: Winner | None
    lineage: tuple[LineageStep, ...]
    stats: Stats
    other_validations: tuple[OtherValidation, ...]


# ---- gathering ------------------------------------------------------------------------------

def gather(store: Store, campaign: CampaignRecord) -> ReportData:
    """Everything the report shows about `campaign`, read from `store`."""
    evals = sorted(store.evaluations(campaign=campaign.id), key=lambda e: e.id)
    progress = campaign_series(campaign, evals)
    control = find_control(store, campaign, progress)
    scope = winners_scope(store, campaign)  # the one definition of where winners are chosen
    winner = find_winner(store, campaign, evals, scope.stage, scope.suite) if scope else None
    lineage = lineage_steps(store, campaign, winner.program, evals) if winner else ()
    front_stage = winner.stage if winner else (STAGE2 if progress.stage(STAGE2) else STAGE1)
    front = pareto_of(store, campaign, progress.stage(front_stage)) \
        if progress.stage(front_stage) else None
    others = tuple(
        OtherValidation(e.program_id, store.get_program(e.program_id).name, e.suite,
                        _finite(e.score), e.status)
        for e in evals if e.stage == STAGE_VALIDATION
        and (winner is None or e.program_id != winner.program.id))
    return ReportData(
        campaign=campaign, database=store.display_url,
        generated_at=datetime.now(UTC), strategy=strategy_of(campaign),
        progress=progress, control=control, pareto=front, winner=winner,
        lineage=lineage, stats=stats_of(campaign, evals, store.load_checkpoint(campaign.id)),
        other_validations=others)


def strategy_of(campaign: CampaignRecord) -> str:
    return str(_section(campaign, "evolution").get("strategy", "evolution"))


def _section(campaign: CampaignRecord, name: str) -> Mapping[str, Any]:
    section = (campaign.config or {}).get(name)
    return section if isinstance(section, Mapping) else {}


def _finite(score: float | None) -> float | None:
    return score if score is not None and math.isfinite(score) else None


def _main_suite(evals: list[EvaluationRecord], stage: int) -> str | None:
    """The suite of a stage's evaluations (the one with the most, should a configuration
    have changed on a resume)."""
    counts: dict[str, int] = {}
    for e in evals:
        if e.stage == stage:
            counts[e.suite] = counts.get(e.suite, 0) + 1
    return max(counts, key=lambda s: (counts[s], s)) if counts else None


def campaign_series(campaign: CampaignRecord,
                    evals: list[EvaluationRecord]) -> CampaignSeries:
    stages = []
    for stage in (STAGE1, STAGE2):
        suite = _main_suite(evals, stage)
        if suite is not None:
            stages.append(StageSeries(stage, suite, tuple(
                _finite(e.score) for e in evals if e.stage == stage and e.suite == suite)))
    return CampaignSeries(campaign.id, campaign.name, strategy_of(campaign), tuple(stages))


def find_control(store: Store, campaign: CampaignRecord,
                 progress: CampaignSeries) -> CampaignSeries | None:
    """The random-search control of `campaign` (see the module docstring), or None: also
    when `campaign` is itself a random search."""
    if strategy_of(campaign) == "random":
        return None
    stage1 = progress.stage(STAGE1)
    suite = stage1.suite if stage1 else _section(campaign, "funnel").get("stage1")
    if suite is None:
        return None
    candidates = [c for c in store.campaigns() if c.id != campaign.id
                  and strategy_of(c) == "random"
                  and _section(c, "funnel").get("stage1") == suite]
    if not candidates:
        return None
    nearest = min(candidates, key=lambda c: (
        abs((c.created_at - campaign.created_at).total_seconds()), c.id))
    evals = sorted(store.evaluations(campaign=nearest.id), key=lambda e: e.id)
    return campaign_series(nearest, evals)


def find_winner(store: Store, campaign: CampaignRecord, evals: list[EvaluationRecord],
                stage: int, suite: str) -> Winner | None:
    top = store.top(1, campaign=campaign.id, suite=suite, stage=stage)
    if not top:  # nothing scored on that stage
        return None
    ranked = top[0]
    program = ranked.program
    simplified, latex, why = derived_forms(program.source)
    validations = [e for e in evals
                   if e.stage == STAGE_VALIDATION and e.program_id == program.id]
    validation = stored_validation(validations[-1], program.name) if validations else None
    stage1 = None
    if stage != STAGE1:
        stage1 = best_on(evals, program.id, STAGE1)
    return Winner(program=program, stage=stage, suite=ranked.evaluation.suite,
                  score=_finite(ranked.score), tasks=tuple(ranked.evaluation.tasks),
                  stage1=stage1, simplified=simplified, latex=latex, why_no_forms=why,
                  validation=validation,
                  validation_evaluation=validations[-1].id if validations else None)


def derived_forms(source: str) -> tuple[str | None, str | None, str | None]:
    """(simplified source, LaTeX of the simplified rule, why they are missing)."""
    from optforge import dsl

    try:
        simplified = dsl.simplify(dsl.parse(source, filename="<stored program>"))
        return dsl.format_program(simplified), dsl.to_latex(simplified), None
    except Exception as e:  # noqa: BLE001 - a display aid must not hide the stored data
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        return None, None, first


def best_on(evals: list[EvaluationRecord], program_id: int, stage: int) -> ScoreOn | None:
    """The program's best evaluation on `stage` (its latest, failed, if none scored)."""
    mine = [e for e in evals if e.program_id == program_id and e.stage == stage]
    if not mine:
        return None
    scored = [e for e in mine if _finite(e.score) is not None]
    e = max(scored, key=lambda e: (e.score, -e.id)) if scored else mine[-1]
    return ScoreOn(stage, e.suite, _finite(e.score), e.status)


def lineage_steps(store: Store, campaign: CampaignRecord, winner: ProgramRecord,
                  evals: list[EvaluationRecord]) -> tuple[LineageStep, ...]:
    """The path from a seed to `winner` (see the module docstring), seed first."""
    path: list[tuple[ProgramRecord, str | None]] = []
    seen: set[int] = set()
    program: ProgramRecord | None = winner
    while program is not None and program.id not in seen:
        seen.add(program.id)
        edges = [e for e in store.parents(program.id) if e.campaign_id == campaign.id
                 and e.parent_id not in seen]
        first = min(edges, key=lambda e: (e.created_at, e.parent_id), default=None)
        path.append((program, first.mutation if first else None))
        program = store.get_program(first.parent_id) if first else None
    path.reverse()
    steps: list[LineageStep] = []
    for program, mutation in path:
        source = _without_doc(program.source)
        diff = () if not steps else tuple(difflib.unified_diff(
            steps[-1].source.splitlines(), source.splitlines(),
            fromfile=f"#{steps[-1].program_id} {steps[-1].name}",
            tofile=f"#{program.id} {program.name}", lineterm=""))
        scores = tuple(s for s in (best_on(evals, program.id, st) for st in (STAGE1, STAGE2))
                       if s is not None)
        steps.append(LineageStep(program.id, program.name, mutation, source, diff, scores))
    return tuple(steps)


def _without_doc(source: str) -> str:
    """The source as the printer writes it without its docstring: a seed's long docstring
    is not what its first mutation changed (the search's children carry none). The stored
    text itself when it does not parse."""
    from optforge import dsl

    try:
        return dsl.format_program(replace(dsl.parse(source, filename="<stored program>"),
                                          doc=""))
    except Exception:  # noqa: BLE001 - a display aid must not hide the stored data
        return source


def pareto_of(store: Store, campaign: CampaignRecord, series: StageSeries) -> Pareto:
    """Score against complexity on `series`' stage and suite."""
    n = store.count_evaluations(campaign=campaign.id, suite=series.suite, stage=series.stage)
    cloud = store.top(max(n, 1), campaign=campaign.id, suite=series.suite, stage=series.stage)
    front = store.pareto_front(campaign=campaign.id, suite=series.suite, stage=series.stage)

    def point(r) -> FrontPoint | None:
        score = _finite(r.score)
        return None if score is None else FrontPoint(r.program.id, r.program.name,
                                                     r.program.complexity, score)
    return Pareto(series.stage, series.suite,
                  tuple(p for p in map(point, cloud) if p is not None),
                  tuple(p for p in map(point, front) if p is not None))
