"""Read queries. Each is a function of an open (read) session and returns records."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from . import convert, leases
from . import models as m
from .records import (
    CampaignRecord,
    CampaignStats,
    Checkpoint,
    EvaluationRecord,
    LineageEdge,
    ProgramRecord,
    RankedProgram,
    StageResult,
    SuiteSummary,
    TaskResultRecord,
)
from .refs import CampaignRef, ProgramRef, campaign_id, campaign_row, program_row

E = m.Evaluation


def campaigns(s: Session) -> list[CampaignRecord]:
    now = leases.db_now(s)
    return [convert.campaign(r, now)
            for r in s.scalars(select(m.Campaign).order_by(m.Campaign.id))]


def program_by_hash(s: Session, structural_hash: str) -> ProgramRecord | None:
    row = s.scalars(select(m.Program).where(
        m.Program.structural_hash == structural_hash)).one_or_none()
    return None if row is None else convert.program(row)


def programs_where(s: Session, column, value: str) -> list[ProgramRecord]:
    rows = s.scalars(select(m.Program).where(column == value).order_by(m.Program.id))
    return [convert.program(r) for r in rows]


def _bulk_campaign_filter(s: Session, camp_id: int):
    """`campaign_id = :id` for queries that aggregate over a whole campaign.

    SQLite's planner uses the campaign index even when the campaign holds most of the table,
    and then pays a random row lookup per evaluation (about 8x slower than a scan at 100,000
    rows). When the campaign is more than a tenth of the table (two fast index-only counts
    tell), the filter is written as ``campaign_id + 0 = :id``, which no index matches, so
    SQLite scans. PostgreSQL's planner chooses well by itself."""
    if s.get_bind().dialect.name == "sqlite":
        total = s.execute(select(func.count()).select_from(E)).scalar_one()
        mine = s.execute(select(func.count()).select_from(E)
                         .where(E.campaign_id == camp_id)).scalar_one()
        if mine * 10 > total:
            return (E.campaign_id + 0) == camp_id
    return E.campaign_id == camp_id


def _scope(stmt, camp_id: int | None, suite: str | None, stage: int | None):
    if camp_id is not None:
        stmt = stmt.where(E.campaign_id == camp_id)
    if suite is not None:
        stmt = stmt.where(E.suite == suite)
    if stage is not None:
        stmt = stmt.where(E.stage == stage)
    return stmt


def evaluations(s: Session, *, program: ProgramRef | None = None,
                campaign: CampaignRef | None = None, suite: str | None = None,
                stage: int | None = None) -> list[EvaluationRecord]:
    stmt = _scope(select(E), campaign_id(s, campaign), suite, stage)
    if program is not None:
        stmt = stmt.where(E.program_id == program_row(s, program).id)
    return convert.evaluations(s, list(s.scalars(stmt.order_by(E.id))))


def stage_results(s: Session, campaign: CampaignRef, stage: int) -> list[StageResult]:
    """The campaign's evaluations at `stage`, in commit order, each with its program: one
    query on the (campaign, stage) columns, no per-task results."""
    stmt = (select(E.id, E.key, E.score, m.Program)
            .join(m.Program, m.Program.id == E.program_id)
            .where(E.campaign_id == campaign_id(s, campaign), E.stage == stage)
            .order_by(E.id))
    return [StageResult(evaluation_id=eid, key=key, score=score, program=convert.program(p))
            for eid, key, score, p in s.execute(stmt)]


def count_evaluations(s: Session, *, campaign: CampaignRef | None = None,
                      suite: str | None = None, stage: int | None = None) -> int:
    stmt = _scope(select(func.count()).select_from(E), campaign_id(s, campaign), suite, stage)
    return int(s.execute(stmt).scalar_one())


def top(s: Session, n: int, *, campaign: CampaignRef | None = None, suite: str | None = None,
        stage: int | None = None) -> list[RankedProgram]:
    """The `n` programs with the best evaluation score in scope, each with that evaluation.

    Walks evaluations best-first along the (campaign, suite, rank_score) index and keeps the
    first evaluation of each program, so the cost grows with `n` (and with how often the top
    programs were re-evaluated), not with the size of the table. Ties: earlier evaluation
    first. NaN and missing scores never rank."""
    base = _scope(select(E).where(E.rank_score.is_not(None)), campaign_id(s, campaign),
                  suite, stage)
    return _ranked(s, list(_best_first(s, base, n).values()))


def ranking(s: Session, n: int, *, campaign: CampaignRef | None = None,
            suite: str | None = None, stage: int | None = None,
            failures: bool = False) -> list[RankedProgram]:
    """`top` as a listing shows it: distinct programs, best first, each with its best
    evaluation in scope, counting only evaluations whose status is ``ok``. With `failures`,
    every evaluation counts (a failed one scores at the floor), and programs whose
    evaluations in scope have no numeric score (NaN, missing) follow, latest first."""
    camp = campaign_id(s, campaign)
    base = _scope(select(E).where(E.rank_score.is_not(None)), camp, suite, stage)
    if not failures:
        base = base.where(E.status == "ok")
    best = _best_first(s, base, n)
    if failures and len(best) < n:
        unscored = _scope(select(E).where(E.rank_score.is_(None)), camp, suite, stage)
        for row in s.scalars(unscored.order_by(E.id.desc())):
            if row.program_id not in best and not _has_score(s, row.program_id, camp,
                                                             suite, stage):
                best[row.program_id] = row
                if len(best) == n:
                    break
    return _ranked(s, list(best.values()))


def _has_score(s: Session, program_id: int, camp: int | None, suite: str | None,
               stage: int | None) -> bool:
    stmt = _scope(select(E.id).where(E.program_id == program_id, E.rank_score.is_not(None)),
                  camp, suite, stage)
    return s.execute(stmt.limit(1)).first() is not None


def _best_first(s: Session, base, n: int) -> dict[int, m.Evaluation]:
    """program id -> its first row of `base` ordered best-first (ties: earlier evaluation),
    for the first `n` distinct programs."""
    best: dict[int, m.Evaluation] = {}
    if n <= 0:
        return best
    base = base.order_by(E.rank_score.desc(), E.id)
    offset, batch = 0, max(4 * n, 64)
    while len(best) < n:
        rows = list(s.scalars(base.offset(offset).limit(batch)))
        for row in rows:
            if row.program_id not in best:
                best[row.program_id] = row
                if len(best) == n:
                    break
        if len(rows) < batch:
            break
        offset += batch
        batch *= 2
    return best


def _ranked(s: Session, rows: list[m.Evaluation]) -> list[RankedProgram]:
    evals = convert.evaluations(s, rows)
    ids = [e.program_id for e in evals]
    progs = {p.id: convert.program(p) for p in
             s.scalars(select(m.Program).where(m.Program.id.in_(ids)))} if ids else {}
    return [RankedProgram(rank=i + 1, program=progs[e.program_id], evaluation=e)
            for i, e in enumerate(evals)]


def _best_per_program(s: Session, camp_id: int | None, suite: str | None,
                      stage: int | None) -> dict[int, tuple[float, int]]:
    """program id -> (best rank score, complexity) over the evaluations in scope."""
    sqlite = s.get_bind().dialect.name == "sqlite"
    # On SQLite, grouping by the bare column makes the planner walk the program_id index
    # and look up every row at random; `program_id + 0` makes it scan and sort instead
    # (about 3x faster at 100,000 rows).
    key = (E.program_id + 0) if sqlite else E.program_id
    stmt = _scope(select(key, func.max(E.rank_score), func.min(m.Program.complexity))
                  .join(m.Program, m.Program.id == E.program_id)
                  .where(E.rank_score.is_not(None)), None, suite, stage)
    if camp_id is not None:
        stmt = stmt.where(_bulk_campaign_filter(s, camp_id))
    return {int(pid): (score, int(cx)) for pid, score, cx in s.execute(stmt.group_by(key))}


def pareto_front(s: Session, *, campaign: CampaignRef | None = None, suite: str | None = None,
                 stage: int | None = None) -> list[RankedProgram]:
    """Programs not dominated in (higher best score, lower complexity), simplest first.

    A program is on the front when every simpler program scores strictly lower; among equal
    complexity only the best scorer (earliest id on ties) can be on it."""
    camp_id = campaign_id(s, campaign)
    best = _best_per_program(s, camp_id, suite, stage)
    order = sorted(best, key=lambda pid: (best[pid][1], -best[pid][0], pid))
    front, bar = [], float("-inf")
    for pid in order:
        if best[pid][0] > bar:
            front.append(pid)
            bar = best[pid][0]
    rows = []
    for pid in front:
        stmt = _scope(select(E).where(E.program_id == pid, E.rank_score == best[pid][0]),
                      camp_id, suite, stage).order_by(E.id).limit(1)
        rows.append(s.scalars(stmt).one())
    return _ranked(s, rows)


def task_scores(s: Session, program: ProgramRef, *, campaign: CampaignRef | None = None,
                suite: str | None = None, stage: int | None = None
                ) -> dict[str, TaskResultRecord]:
    """Per-task results of the program's best-scoring evaluation in scope (its latest one
    when none has a number for a score); empty when it has no evaluation in scope."""
    pid = program_row(s, program).id
    stmt = _scope(select(E).where(E.program_id == pid), campaign_id(s, campaign), suite, stage)
    row = s.scalars(stmt.where(E.rank_score.is_not(None))
                    .order_by(E.rank_score.desc(), E.id).limit(1)).first() or \
        s.scalars(stmt.order_by(E.id.desc()).limit(1)).first()
    if row is None:
        return {}
    return {t.task: t for t in convert.evaluations(s, [row])[0].tasks}


def suites(s: Session, *, campaign: CampaignRef | None = None) -> list[SuiteSummary]:
    stmt = select(E.suite, E.stage, func.count()).group_by(E.suite, E.stage)
    camp_id = campaign_id(s, campaign)
    if camp_id is not None:
        stmt = stmt.where(E.campaign_id == camp_id)
    rows = s.execute(stmt).all()
    return sorted((SuiteSummary(suite, stage, count) for suite, stage, count in rows),
                  key=lambda x: (x.stage, x.suite))


def campaign_stats(s: Session, campaign: CampaignRef) -> CampaignStats:
    camp = campaign_row(s, campaign)
    in_camp = _bulk_campaign_filter(s, camp.id)
    # One pass over the campaign's evaluations, grouped finely; totals are summed here.
    groups = s.execute(
        select(E.status, E.suite, E.stage, func.count(), func.max(E.rank_score),
               func.sum(E.wall_time), func.min(E.created_at), func.max(E.created_at))
        .where(in_camp).group_by(E.status, E.suite, E.stage)).all()
    n_programs = s.execute(select(func.count(func.distinct(E.program_id)))
                           .where(in_camp)).scalar_one()
    edges = s.execute(select(func.count()).select_from(m.LineageRow)
                      .where(m.LineageRow.campaign_id == camp.id)).scalar_one()
    by_status: dict[str, int] = {}
    by_suite: dict[tuple[str, int], int] = {}
    best, wall, first, last = None, 0.0, None, None
    for status, suite, stage, count, top_score, wall_sum, t0, t1 in groups:
        by_status[status] = by_status.get(status, 0) + int(count)
        by_suite[(suite, stage)] = by_suite.get((suite, stage), 0) + int(count)
        if top_score is not None and (best is None or top_score > best):
            best = top_score
        wall += float(wall_sum or 0.0)
        t0, t1 = _as_datetime(t0), _as_datetime(t1)
        first = t0 if first is None or (t0 is not None and t0 < first) else first
        last = t1 if last is None or (t1 is not None and t1 > last) else last
    utc = m.UTCDateTime()
    dialect = s.get_bind().dialect
    return CampaignStats(
        campaign=convert.campaign(camp, leases.db_now(s)),
        evaluations=sum(by_status.values()),
        programs=int(n_programs),
        by_status=dict(sorted(by_status.items())),
        suites=tuple(sorted((SuiteSummary(su, st, n) for (su, st), n in by_suite.items()),
                            key=lambda x: (x.stage, x.suite))),
        best_score=None if best is None else float(best),
        total_wall_time=wall,
        lineage_edges=int(edges),
        # Aggregates lose the column type on some backends: decode like a column would.
        first_evaluation_at=utc.process_result_value(first, dialect),
        last_evaluation_at=utc.process_result_value(last, dialect),
    )


def _as_datetime(value: Any):
    from datetime import datetime

    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value))


def edges_of(s: Session, program_ids: list[int], *, towards: str,
             campaign: int | None = None) -> list[LineageEdge]:
    """Edges whose child (towards="parents") or parent (towards="children") is in ids."""
    col = m.LineageRow.child_id if towards == "parents" else m.LineageRow.parent_id
    out: list[LineageEdge] = []
    for i in range(0, len(program_ids), 500):
        stmt = select(m.LineageRow).where(col.in_(program_ids[i:i + 500]))
        if campaign is not None:
            stmt = stmt.where(m.LineageRow.campaign_id == campaign)
        out.extend(convert.edge(r) for r in s.scalars(stmt.order_by(m.LineageRow.id)))
    return out


def checkpoint(s: Session, campaign: CampaignRef) -> Checkpoint | None:
    row = s.get(m.CheckpointRow, campaign_row(s, campaign).id)
    return None if row is None else convert.checkpoint(row)
