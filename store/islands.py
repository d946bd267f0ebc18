"""Islands: the store side of one campaign run by several search processes.

Each island is a campaign row naming its group and index (migration 0003). What islands
share goes through these queries, so they work across processes and machines on one
PostgreSQL database (or one SQLite file on one machine):

* `known_score`: a score any island of the group already has for a program equal to a child
  (by structural hash, canonical hash or behaviour fingerprint) on a suite and stage: the
  shared duplicate cache, so no island trains what another already trained.
* `best_elsewhere`: the best programs the other islands have scored on a suite and stage,
  best first: the candidates for migration.
* `add_migration` / `migrations`: the record of what an island took in, idempotent (an
  island that resumes and migrates again adds nothing twice).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from . import convert, leases
from . import models as m
from .records import CampaignRecord
from .writes import _insert_ignore

E, P, C = m.Evaluation, m.Program, m.Campaign
HASH_COLUMNS = {"structural": P.structural_hash, "canonical": P.canonical_hash,
                "fingerprint": P.fingerprint}


@dataclass(frozen=True)
class GroupScore:
    """A program's best score on a suite and stage in one island of a group."""

    program_id: int
    score: float
    campaign_id: int


@dataclass(frozen=True)
class MigrationRecord:
    campaign_id: int  # the island that took the program in
    source_campaign_id: int  # the island that had scored it
    program_id: int
    score: float
    created_at: datetime


def island_name(group: str, island: int) -> str:
    """The campaign row's name of island `island` of `group`."""
    return f"{group}/island-{island}"


def islands(s: Session, group: str) -> list[CampaignRecord]:
    now = leases.db_now(s)
    rows = s.scalars(select(C).where(C.island_group == group).order_by(C.island))
    return [convert.campaign(r, now) for r in rows]


def _scored_in_group(group: str, suite: str, stage: int):
    """Evaluations on (suite, stage) by islands of `group`, best first (a failed one, whose
    rank score is NULL, last; ties: the earlier evaluation)."""
    return (select(E.program_id, E.rank_score, E.campaign_id)
            .join(C, C.id == E.campaign_id)
            .where(C.island_group == group, E.suite == suite, E.stage == stage)
            .order_by(E.rank_score.desc().nulls_last(), E.id))


def _group_score(row) -> GroupScore:
    score = float("-inf") if row.rank_score is None else row.rank_score
    return GroupScore(row.program_id, score, row.campaign_id)


def known_score(s: Session, group: str, suite: str, stage: int, kind: str,
                key: str) -> GroupScore | None:
    """The best score an island of `group` recorded on (suite, stage) for a program whose
    `kind` hash ("structural", "canonical" or "fingerprint") is `key`; None if none did."""
    column = HASH_COLUMNS[kind]
    q = (_scored_in_group(group, suite, stage).join(P, P.id == E.program_id)
         .where(column == key).limit(1))
    row = s.execute(q).first()
    return None if row is None else _group_score(row)


def best_elsewhere(s: Session, group: str, suite: str, stage: int, exclude: int,
                   n: int) -> list[GroupScore]:
    """Up to `n` distinct programs with the best scores on (suite, stage) among the islands
    of `group` other than campaign `exclude`, best first (ties: the earlier evaluation);
    failed evaluations never migrate. Rows stream until `n` distinct programs are seen."""
    q = (_scored_in_group(group, suite, stage)
         .where(E.campaign_id != exclude, E.rank_score.is_not(None)))
    best: dict[int, GroupScore] = {}
    for row in s.execute(q):
        best.setdefault(row.program_id, _group_score(row))
        if len(best) == n:
            break
    return list(best.values())


def add_migration(s: Session, campaign: int, source: int, program: int,
                  score: float) -> bool:
    """Record that island `campaign` took in `program` from island `source`; False (and
    nothing written) when it had taken that program in before."""
    new = _insert_ignore(s, m.Migration.__table__, dict(
        campaign_id=campaign, source_campaign_id=source, program_id=program, score=score,
        created_at=m.utcnow()), ["campaign_id", "program_id"])
    return new is not None


def migrations(s: Session, campaign: int | None = None,
               group: str | None = None) -> list[MigrationRecord]:
    """Migrations into one island, or into every island of a group, oldest first."""
    q = select(m.Migration).order_by(m.Migration.id)
    if campaign is not None:
        q = q.where(m.Migration.campaign_id == campaign)
    if group is not None:
        q = q.join(C, C.id == m.Migration.campaign_id).where(C.island_group == group)
    return [MigrationRecord(r.campaign_id, r.source_campaign_id, r.program_id, r.score,
                            r.created_at) for r in s.scalars(q)]


def count_islands(s: Session, group: str) -> int:
    return s.execute(select(func.count()).select_from(C)
                     .where(C.island_group == group)).scalar_one()
