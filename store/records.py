"""Frozen records: what the `Store` API returns instead of ORM objects.

Records are plain values detached from any session, so they can cross process boundaries
(joblib workers), be compared, and never trigger a lazy load or a stale write. Mappings they
carry (a campaign's config, per-task metrics) are fresh copies decoded from the database.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Mapping


@dataclass(frozen=True)
class LeaseRecord:
    """Who runs a campaign (see `store.leases`): a process on a host, since when, and until
    when its lease lasts unless renewed."""

    host: str
    pid: int
    since: datetime
    expires: datetime


@dataclass(frozen=True)
class CampaignRecord:
    id: int
    name: str
    # One of CAMPAIGN_STATUSES as stored, or "interrupted" when read: stored as running but
    # its lease is not live (nobody runs it; it can be resumed).
    status: str
    config: Mapping[str, Any]
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None
    lease: LeaseRecord | None = None  # the live or expired holder, if one holds it
    island_group: str | None = None  # the campaign it is an island of (search.islands)
    island: int | None = None  # its index in that group


@dataclass(frozen=True)
class ProgramRecord:
    """A program as stored: `source` is the printer's text, which parses back to the same
    program. Programs are shared by all campaigns; `structural_hash` identifies them."""

    id: int
    name: str
    source: str
    structural_hash: str
    canonical_hash: str
    fingerprint: str
    statements: int
    complexity: int
    created_at: datetime


@dataclass(frozen=True)
class TaskResultRecord:
    """One task's outcome inside an evaluation: `score` is tuned AdamW's loss over this
    one's (1 = AdamW, higher is better), `loss` the mean final validation loss at
    `best_lr`. Non-finite values are returned exactly as they were stored."""

    task: str
    status: str
    score: float | None
    loss: float | None = None
    best_lr: float | None = None
    wall_time: float | None = None
    metrics: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class EvaluationRecord:
    id: int
    program_id: int
    campaign_id: int | None
    suite: str
    stage: int
    status: str
    score: float | None
    best_lr: float | None
    wall_time: float | None
    error: str | None
    worker: str | None
    key: str | None
    created_at: datetime
    tasks: tuple[TaskResultRecord, ...] = ()

    @property
    def finite(self) -> bool:
        return self.score is not None and math.isfinite(self.score)


@dataclass(frozen=True)
class LineageEdge:
    """`parent` produced `child` by the mutation `mutation` (in `campaign_id`, if any)."""

    parent_id: int
    child_id: int
    mutation: str
    campaign_id: int | None
    created_at: datetime


@dataclass(frozen=True)
class RankedProgram:
    """A program with its best evaluation in the ranking's scope (campaign, suite, stage)."""

    rank: int  # 1-based
    program: ProgramRecord
    evaluation: EvaluationRecord

    @property
    def score(self) -> float | None:
        return self.evaluation.score


@dataclass(frozen=True)
class StageResult:
    """One evaluation of a campaign at one stage, light: its key and score with its program
    (hashes included), without per-task results. What a resuming campaign rebuilds its
    caches from (`Store.stage_results`)."""

    evaluation_id: int
    key: str | None
    score: float | None
    program: ProgramRecord


@dataclass(frozen=True)
class Checkpoint:
    """What a campaign needs to resume exactly. `sequence` counts saves (1 for the first),
    so a resumed campaign can tell which save it continues from. The contents are the
    search's own (the store only keeps them): typically the population as program ids with
    ages, the `numpy` bit generator state, and counters such as children bred."""

    campaign_id: int
    sequence: int
    population: Any
    rng_state: Any
    counters: Mapping[str, Any]
    updated_at: datetime


@dataclass(frozen=True)
class SuiteSummary:
    suite: str
    stage: int
    evaluations: int


@dataclass(frozen=True)
class CampaignStats:
    campaign: CampaignRecord
    evaluations: int
    programs: int  # distinct programs evaluated
    by_status: Mapping[str, int]
    suites: tuple[SuiteSummary, ...]
    best_score: float | None  # largest non-NaN score over all suites
    total_wall_time: float  # seconds, summed over evaluations that reported one
    lineage_edges: int
    first_evaluation_at: datetime | None
    last_evaluation_at: datetime | None
