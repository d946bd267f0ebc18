"""The campaign's one way to write: every write is a single transaction that checks the lease
first, then adds the lineage edge and the evaluation, then (when given) saves the checkpoint
that accounts for them. "Every finished evaluation is committed before it counts" holds
because nothing else writes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
from optforge.evaluators import EvalResult
from optforge.store.leases import Lease
from optforge.store.records import TaskResultRecord

from .stages import Stage
from .storage import CampaignStore, CampaignTransaction

__all__ = ["Recorder", "Lineage", "evaluation_fields"]


@dataclass(frozen=True)
class Lineage:
    """The edge parent -> child, made by `mutation` ("seed" children have none)."""

    child: int
    parent: int
    mutation: str


class Recorder:
    """Writes of campaign `campaign_id` to `store`, fenced by `lease` while one is held.
    `sequence` is the sequence of the last checkpoint it committed (or the engine loaded)."""

    def __init__(self, store: CampaignStore, campaign_id: int):
        self.store, self.campaign_id = store, campaign_id
        self.lease: Lease | None = None
        self.sequence: int | None = None

    def commit(self, *, lineage: Lineage | None = None,
               evaluation: Mapping[str, Any] | None = None,
               checkpoint: Mapping[str, Any] | None = None,
               migrations: Sequence[tuple[int, int, float]] = ()) -> None:
        """One transaction: the lease check, the lineage edge, the evaluation (keyword
        arguments of `add_evaluation`, program included), the migrations from other islands
        (source campaign, program, score), then the checkpoint. All or nothing; `LeaseLost`
        (nothing written) if the lease was taken."""
        def transaction(tx: CampaignTransaction) -> int | None:
            if self.lease is not None:
                tx.check_lease(self.lease)
            if lineage is not None:
                tx.add_lineage(lineage.child, lineage.parent, lineage.mutation,
                               campaign=self.campaign_id)
            if evaluation is not None:
                tx.add_evaluation(campaign=self.campaign_id, **evaluation)
            for source, program, score in migrations:
                tx.add_migration(self.campaign_id, source, program, score)
            if checkpoint is None:
                return None
            return tx.save_checkpoint(self.campaign_id, **checkpoint).sequence
        sequence = self.store.run_in_transaction(transaction)
        if sequence is not None:
            self.sequence = sequence

    def record(self, program_id: int, stage: Stage, result: EvalResult, key: str, *,
               parent: int | None = None, mutation: str | None = None,
               extra: Mapping[str, dict] | None = None,
               checkpoint: Mapping[str, Any] | None = None) -> None:
        """Commit an evaluation of `program_id` at `stage` under `key` (idempotent), with
        its lineage when it has a parent and the checkpoint when given."""
        lineage = None if parent is None else Lineage(program_id, parent, mutation or "")
        self.commit(lineage=lineage, checkpoint=checkpoint,
                    evaluation=dict(program=program_id, stage=int(stage), key=key,
                                    **evaluation_fields(result, extra)))

    def link(self, child: int, parent: int, mutation: str) -> None:
        """Commit a lineage edge alone."""
        self.commit(lineage=Lineage(child, parent, mutation))


def evaluation_fields(result: EvalResult, extra: Mapping[str, dict] | None = None) -> dict:
    """An `EvalResult` as `add_evaluation` keyword arguments; `extra` maps a task name to more
    metrics of that task. The evaluation's learning rate is the geometric mean of its
    tasks' best rates."""
    extra = extra or {}
    tasks = [TaskResultRecord(task=t.task, status=t.status, score=t.score, loss=t.loss,
                              best_lr=t.best_lr, wall_time=t.wall_time,
                              metrics={"lr_losses": list(t.lr_losses), "error": t.error,
                                       **extra.get(t.task, {})})
             for t in result.tasks]
    best_lrs = [t.best_lr for t in result.tasks if t.best_lr is not None]
    return dict(suite=result.suite, status=result.status, score=result.score, tasks=tasks,
                best_lr=float(np.exp(np.mean(np.log(best_lrs)))) if best_lrs else None,
                wall_time=result.wall_time, error=result.error)
