"""A campaign's headline numbers, each defined once and read by every command that prints
one (`campaigns`, `top`, `show`, the summary and progress bar of `run`, their `--json`).

* Where winners are chosen (`winners_scope`): stage 2 on the stage-2 suite when the campaign
  has a scored stage-2 evaluation, else stage 1 on the stage-1 suite: the rule of
  `search.engine.Campaign.finalists`, which picks the winner that is simplified and
  validated. Screenings (stage 0) and held-out validations (stage 3) are never selected on.
* Its finalists and its best (`finalists`, `campaign_best`): the programs ranked by their
  best evaluation there; the best is the first, the campaign's winner.
* Its evaluation count (`evaluation_counts`): the budgeted evaluations, stages 1 and 2 (what
  `budget` counts and the engine's `Counters.evaluations` counts); screenings and
  validations are counted apart and always labelled as such.
* A program's decisive evaluation (`decisive_evaluation`): the one its rank comes from: its
  best evaluation where its campaign chooses winners, else its latest budgeted one.

Only the store is read here (no torch, no evaluators): listings stay fast to start.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from optforge.store import (
    CampaignRecord,
    EvaluationRecord,
    ProgramRecord,
    RankedProgram,
    Store,
    SuiteSummary,
)

from .stages import SCREEN, STAGE1, STAGE2, STAGE_VALIDATION

__all__ = ["Best", "Counts", "Scope", "campaign_best", "decisive_evaluation", "default_scope",
           "evaluation_counts", "finalists", "progress_postfix", "scored", "winners_scope"]

BUDGETED = (STAGE1, STAGE2)


@dataclass(frozen=True)
class Scope:
    """Evaluations on one suite at one stage (in one campaign, or in all when None)."""

    suite: str
    stage: int
    campaign: int | None = None


@dataclass(frozen=True)
class Best:
    """A campaign's best program: its best evaluation where winners are chosen."""

    program: ProgramRecord
    evaluation: EvaluationRecord

    @property
    def score(self) -> float | None:
        return self.evaluation.score

    @property
    def suite(self) -> str:
        return self.evaluation.suite

    @property
    def stage(self) -> int:
        return self.evaluation.stage

    def describe(self, spec: str = ".4g") -> str:
        """``1.252 on medium (stage 2)``."""
        return f"{scored(self.score, self.suite, spec)} (stage {self.stage})"

    def to_json(self) -> dict:
        return {"score": self.score, "suite": self.suite, "stage": self.stage,
                "program": self.program.id, "name": self.program.name,
                "evaluation": self.evaluation.id}


@dataclass(frozen=True)
class Counts:
    """A campaign's evaluations by what they are for."""

    stage1: int = 0
    stage2: int = 0
    screenings: int = 0  # stage 0, outside the budget
    validations: int = 0  # stage 3, held out, outside the budget

    @property
    def budgeted(self) -> int:
        """The campaign's evaluation count: stages 1 and 2, what its budget counts."""
        return self.stage1 + self.stage2

    def describe(self) -> str:
        """``14 evaluations (stage 1: 10, stage 2: 4; not in the budget: 18 screenings,
        1 validation)``."""
        apart = [_plural(self.screenings, "screening"), _plural(self.validations, "validation")]
        return (f"{_plural(self.budgeted, 'evaluation')} (stage 1: {self.stage1}, stage 2: "
                f"{self.stage2}; not in the budget: {', '.join(apart)})")

    def to_json(self) -> dict:
        return {"evaluations": self.budgeted, "stage1": self.stage1, "stage2": self.stage2,
                "screenings": self.screenings, "validations": self.validations}


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def scored(score: float | None, suite: str, spec: str = ".4g") -> str:
    """A score as every listing prints one: with its suite (``1.252 on medium``)."""
    if score is None:
        return f"- on {suite}"
    return f"{format(score, spec) if math.isfinite(score) else score} on {suite}"


def evaluation_counts(summaries: Iterable[SuiteSummary]) -> Counts:
    """Counts from `Store.suites(campaign=...)` (evaluations grouped by suite and stage)."""
    by_stage: dict[int, int] = {}
    for x in summaries:
        by_stage[x.stage] = by_stage.get(x.stage, 0) + x.evaluations
    return Counts(stage1=by_stage.get(STAGE1, 0), stage2=by_stage.get(STAGE2, 0),
                  screenings=by_stage.get(SCREEN, 0),
                  validations=by_stage.get(STAGE_VALIDATION, 0))


def _commonest_suite(summaries: Iterable[SuiteSummary], stage: int) -> str | None:
    at = [x for x in summaries if x.stage == stage]
    return max(at, key=lambda x: (x.evaluations, x.suite)).suite if at else None


def _campaign(store: Store, campaign) -> CampaignRecord:
    return campaign if isinstance(campaign, CampaignRecord) else store.get_campaign(campaign)


def winners_scope(store: Store, campaign) -> Scope | None:
    """Where `campaign` (a record, id or name) chooses its winners; None before any scored
    stage-1 or stage-2 evaluation. The suites are the configuration's (`[funnel] stage1`,
    `stage2`), else, for a campaign stored without one, the commonest at that stage."""
    camp = _campaign(store, campaign)
    funnel = dict(camp.config).get("funnel") or {}
    summaries = store.suites(campaign=camp.id)
    for stage, key in ((STAGE2, "stage2"), (STAGE1, "stage1")):
        suite = funnel.get(key) or _commonest_suite(summaries, stage)
        if suite and store.top(1, campaign=camp.id, suite=suite, stage=stage):
            return Scope(suite, stage, camp.id)
    return None


def default_scope(store: Store, campaign=None) -> Scope | None:
    """What `top` ranks on unless told: where the campaign chooses its winners; over all
    campaigns, the same rule on the commonest suite of the stage."""
    if campaign is not None:
        return winners_scope(store, campaign)
    summaries = store.suites()
    for stage in (STAGE2, STAGE1):
        suite = _commonest_suite(summaries, stage)
        if suite and store.top(1, suite=suite, stage=stage):
            return Scope(suite, stage)
    return None


def finalists(store: Store, campaign, n: int) -> list[RankedProgram]:
    """The campaign's best `n` programs where its winners are chosen (as
    `Campaign.finalists`: failed evaluations rank too, at the floor)."""
    scope = winners_scope(store, campaign)
    if scope is None:
        return []
    return store.top(n, campaign=scope.campaign, suite=scope.suite, stage=scope.stage)


def campaign_best(store: Store, campaign) -> Best | None:
    """The campaign's best: its winner, with the evaluation that makes it so."""
    top = finalists(store, campaign, 1)
    return Best(top[0].program, top[0].evaluation) if top else None


def _best_of(evals: list[EvaluationRecord]) -> EvaluationRecord | None:
    """The evaluation a ranking keeps for a program (`Store.top`): the highest numeric
    score, the earlier on ties; with none, the latest."""
    scored_ = [e for e in evals if e.score is not None and not math.isnan(e.score)]
    if scored_:
        return min(scored_, key=lambda e: (-e.score, e.id))
    return max(evals, key=lambda e: e.id, default=None)


def decisive_evaluation(store: Store, evals: list[EvaluationRecord], *,
                        suite: str | None = None) -> tuple[EvaluationRecord | None, str]:
    """The evaluation a program's rank comes from, among `evals` (its evaluations, perhaps
    of one campaign), and why that one:

    * with `suite`: its best on that suite at the furthest stage it reached there
      (2, 1, screening 0, then validation 3);
    * else, in the campaign of its latest budgeted evaluation: its best where that
      campaign chooses winners;
    * else its latest budgeted evaluation (stage 1 or 2). None when it has none."""
    if suite is not None:
        on = [e for e in evals if e.suite == suite]
        for stage in (STAGE2, STAGE1, SCREEN, STAGE_VALIDATION):
            best = _best_of([e for e in on if e.stage == stage])
            if best is not None:
                return best, f"its best on {suite}, as asked"
        return None, f"no evaluation on {suite}"
    budgeted = [e for e in evals if e.stage in BUDGETED]
    latest = max(budgeted, key=lambda e: e.id, default=None)
    if latest is None:
        return None, "no stage-1 or stage-2 evaluation"
    if latest.campaign_id is None:
        return latest, "its latest budgeted evaluation"
    camp = store.get_campaign(latest.campaign_id)
    scope = winners_scope(store, camp)
    if scope is not None:
        best = _best_of([e for e in budgeted if e.campaign_id == camp.id
                         and e.suite == scope.suite and e.stage == scope.stage])
        if best is not None:
            return best, f"where campaign {camp.name} (id {camp.id}) chooses its winners"
    return latest, f"its latest budgeted evaluation, in campaign {camp.name} (id {camp.id})"


def progress_postfix(store: Store, campaign_id: int, stage1_suite: str) -> tuple[int, str]:
    """The progress bar's count and its best: ``(budgeted evaluations, "best on small
    (stage 1) 1.023")``, the stage-2 best once stage 2 has one."""
    counts = evaluation_counts(store.suites(campaign=campaign_id))
    best = campaign_best(store, campaign_id)
    if best is None:
        return counts.budgeted, f"best on {stage1_suite} -"
    score = "-" if best.score is None else f"{best.score:.3f}"
    return counts.budgeted, f"best on {best.suite} (stage {best.stage}) {score}"
