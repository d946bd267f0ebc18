"""Rows to frozen records (the only place that reads ORM objects' attributes)."""

from __future__ import annotations

from datetime import datetime
from typing import Iterable

from sqlalchemy import select
from sqlalchemy.orm import Session

from . import leases
from . import models as m
from .records import (
    CampaignRecord,
    Checkpoint,
    EvaluationRecord,
    LineageEdge,
    ProgramRecord,
    TaskResultRecord,
)


def campaign(row: m.Campaign, now: datetime | None = None) -> CampaignRecord:
    """`now` (the database's clock) decides whether a running campaign's lease is live;
    without it the stored status is returned (what a writer just set)."""
    status = row.status if now is None else leases.displayed_status(row, now)
    return CampaignRecord(id=row.id, name=row.name, status=status,
                          config=dict(row.config or {}), created_at=row.created_at,
                          updated_at=row.updated_at, finished_at=row.finished_at,
                          lease=leases.holder(row), island_group=row.island_group,
                          island=row.island)


def program(row: m.Program) -> ProgramRecord:
    return ProgramRecord(id=row.id, name=row.name, source=row.source,
                         structural_hash=row.structural_hash,
                         canonical_hash=row.canonical_hash, fingerprint=row.fingerprint,
                         statements=row.statements, complexity=row.complexity,
                         created_at=row.created_at)


def task_result(row: m.TaskResult) -> TaskResultRecord:
    return TaskResultRecord(task=row.task, status=row.status, score=row.score, loss=row.loss,
                            best_lr=row.best_lr, wall_time=row.wall_time,
                            metrics=dict(row.metrics or {}))


def evaluation(row: m.Evaluation, tasks: Iterable[TaskResultRecord] = ()) -> EvaluationRecord:
    return EvaluationRecord(id=row.id, program_id=row.program_id,
                            campaign_id=row.campaign_id, suite=row.suite, stage=row.stage,
                            status=row.status, score=row.score, best_lr=row.best_lr,
                            wall_time=row.wall_time, error=row.error, worker=row.worker,
                            key=row.key, created_at=row.created_at,
                            tasks=tuple(sorted(tasks, key=lambda t: t.task)))


def evaluations(s: Session, rows: list[m.Evaluation]) -> list[EvaluationRecord]:
    """Records for `rows`, with their task results fetched in batched queries."""
    by_eval: dict[int, list[TaskResultRecord]] = {r.id: [] for r in rows}
    ids = list(by_eval)
    for i in range(0, len(ids), 500):  # stay under SQLite's bound-parameter limit
        chunk = ids[i:i + 500]
        for t in s.scalars(select(m.TaskResult).where(m.TaskResult.evaluation_id.in_(chunk))):
            by_eval[t.evaluation_id].append(task_result(t))
    return [evaluation(r, by_eval[r.id]) for r in rows]


def edge(row: m.LineageRow) -> LineageEdge:
    return LineageEdge(parent_id=row.parent_id, child_id=row.child_id, mutation=row.mutation,
                       campaign_id=row.campaign_id, created_at=row.created_at)


def checkpoint(row: m.CheckpointRow) -> Checkpoint:
    return Checkpoint(campaign_id=row.campaign_id, sequence=row.sequence,
                      population=row.population, rng_state=row.rng_state,
                      counters=dict(row.counters or {}), updated_at=row.updated_at)
