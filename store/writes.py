"""Write operations. Each is a function of an open session and runs inside the caller's
transaction: the `Store` gives each its own transaction (retried when the database was
busy), a `Transaction` groups several (an evaluation and the checkpoint that counts it)."""

from __future__ import annotations

import math
import numbers
import re
import socket
from typing import Any, Iterable, Mapping

from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from . import convert
from . import models as m
from .errors import AlreadyExists, InvalidRecord
from .programs import as_program_data
from .records import (
    CampaignRecord,
    Checkpoint,
    EvaluationRecord,
    LineageEdge,
    ProgramRecord,
    TaskResultRecord,
)
from .refs import CampaignRef, ProgramRef, campaign_row, program_row

_LABEL = re.compile(r"[A-Za-z0-9_.:+/-]+\Z")
_HOST = socket.gethostname()


# ---- validation --------------------------------------------------------------------------

def _label(what: str, value: Any, max_len: int) -> str:
    if not isinstance(value, str) or not 0 < len(value) <= max_len or not _LABEL.match(value):
        raise InvalidRecord(f"{what} must be 1..{max_len} characters of letters, digits and "
                            f"_.:+/-, got {value!r}")
    return value


def _float(what: str, value: Any, *, allow_none: bool = True) -> float | None:
    """A real number, kept exactly (NaN and ±inf included)."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InvalidRecord(f"{what} must be a real number{' or None' if allow_none else ''}, "
                            f"got {value!r}")
    return float(value)


def _duration(what: str, value: Any) -> float | None:
    v = _float(what, value)
    if v is not None and not (math.isfinite(v) and v >= 0):
        raise InvalidRecord(f"{what} must be a finite number of seconds >= 0, got {value!r}")
    return v


def _jsonable(what: str, value: Any) -> Any:
    import json

    try:
        json.dumps(value, allow_nan=True)
    except (TypeError, ValueError) as e:
        raise InvalidRecord(f"{what} must be JSON-serialisable: {e}") from None
    return value


def _copy_json(value: Any) -> Any:
    """What reading `value` back from a JSON column gives (a deep copy, tuples as lists)."""
    import json

    return json.loads(json.dumps(value, allow_nan=True))


def rank_score(score: float | None) -> float | None:
    """The sortable copy of a score: NaN and missing scores rank last (as NULL)."""
    return None if score is None or math.isnan(score) else score


# ---- dialect-aware insert-or-get ---------------------------------------------------------

def _insert_ignore(s: Session, table, values: dict, conflict: list[str]) -> int | None:
    """INSERT `values`; if that violates the unique constraint on `conflict`, insert nothing.
    Returns the new row's primary key, or None when the row already existed. Race-safe: on
    PostgreSQL the losing transaction waits for the winner and then does nothing."""
    dialect = s.get_bind().dialect.name
    pk = table.primary_key.columns.values()[0]
    if dialect in ("sqlite", "postgresql"):
        ins = (sqlite.insert if dialect == "sqlite" else postgresql.insert)(table)
        stmt = ins.values(**values).on_conflict_do_nothing(index_elements=conflict)
        return s.execute(stmt.returning(pk)).scalar_one_or_none()
    try:  # any other backend: a savepoint keeps the transaction usable after a conflict
        with s.begin_nested():
            return s.execute(table.insert().values(**values).returning(pk)).scalar_one()
    except IntegrityError:
        return None


# ---- campaigns ---------------------------------------------------------------------------

def create_campaign(s: Session, name: str, config: Mapping[str, Any] | None = None, *,
                    status: str = "running", island_group: str | None = None,
                    island: int | None = None) -> CampaignRecord:
    if not isinstance(name, str) or not name.strip() or len(name) > 200 or \
            name != name.strip() or "\n" in name:
        raise InvalidRecord(f"a campaign name must be 1..200 characters on one line without "
                            f"surrounding spaces, got {name!r}")
    if name.isdigit():
        raise InvalidRecord(f"a campaign name cannot be all digits (it would read as an id): "
                            f"{name!r}")
    if status not in m.CAMPAIGN_STATUSES:
        raise InvalidRecord(f"campaign status must be one of {', '.join(m.CAMPAIGN_STATUSES)}, "
                            f"got {status!r}")
    config = dict(config or {})
    _jsonable("campaign config", config)
    if (island_group is None) != (island is None):
        raise InvalidRecord("an island names both its group and its index")
    if island_group is not None and s.scalars(select(m.Campaign.name).where(
            m.Campaign.island_group == island_group, m.Campaign.island == island)).first():
        raise AlreadyExists(f"campaign {island_group!r} already has an island {island}")
    now = m.utcnow()
    new_id = _insert_ignore(s, m.Campaign.__table__, dict(
        name=name, status=status, config=config, created_at=now, updated_at=now,
        finished_at=now if status in ("finished", "failed") else None,
        island_group=island_group, island=island), ["name"])
    if new_id is None:
        raise AlreadyExists(f"a campaign named {name!r} already exists")
    return convert.campaign(s.get(m.Campaign, new_id))


def set_campaign_status(s: Session, campaign: CampaignRef, status: str) -> CampaignRecord:
    if status not in m.CAMPAIGN_STATUSES:
        raise InvalidRecord(f"campaign status must be one of {', '.join(m.CAMPAIGN_STATUSES)}, "
                            f"got {status!r}")
    row = campaign_row(s, campaign)
    now = m.utcnow()
    row.status = status
    row.updated_at = now
    row.finished_at = now if status in ("finished", "failed") else None
    s.flush()
    return convert.campaign(row)


# ---- programs and lineage ----------------------------------------------------------------

def add_program(s: Session, program: Any) -> ProgramRecord:
    """Store a program (a `dsl.Program` or `ProgramData`) unless one with the same
    structural hash exists; either way return the stored record. Two writers adding the same
    program at once get the same row."""
    data = as_program_data(program)
    _insert_ignore(s, m.Program.__table__, dict(
        name=data.name, source=data.source, structural_hash=data.structural_hash,
        canonical_hash=data.canonical_hash, fingerprint=data.fingerprint,
        statements=data.statements, complexity=data.complexity, created_at=m.utcnow()),
        ["structural_hash"])
    row = s.scalars(select(m.Program).where(
        m.Program.structural_hash == data.structural_hash)).one()
    return convert.program(row)


def add_lineage(s: Session, child: ProgramRef, parent: ProgramRef, mutation: str,
                campaign: CampaignRef | None = None) -> LineageEdge:
    """Record that `parent` produced `child` by `mutation`. Idempotent."""
    child_id, parent_id = program_row(s, child).id, program_row(s, parent).id
    if child_id == parent_id:
        raise InvalidRecord(f"program {child_id} cannot be its own parent")
    _label("mutation", mutation, 64)
    camp_id = None if campaign is None else campaign_row(s, campaign).id
    where = [m.LineageRow.child_id == child_id, m.LineageRow.parent_id == parent_id,
             m.LineageRow.mutation == mutation,
             m.LineageRow.campaign_id == camp_id if camp_id is not None
             else m.LineageRow.campaign_id.is_(None)]
    values = dict(child_id=child_id, parent_id=parent_id, mutation=mutation,
                  campaign_id=camp_id, created_at=m.utcnow())
    if camp_id is None:
        # NULLs never conflict in a unique constraint, so look first (campaign-less edges
        # come from imports and tests, not from racing workers).
        existing = s.scalars(select(m.LineageRow).where(*where)).one_or_none()
        if existing is not None:
            return convert.edge(existing)
        s.execute(m.LineageRow.__table__.insert().values(**values))
    else:
        _insert_ignore(s, m.LineageRow.__table__, values,
                       ["child_id", "parent_id", "mutation", "campaign_id"])
    return convert.edge(s.scalars(select(m.LineageRow).where(*where)).one())


# ---- evaluations -------------------------------------------------------------------------

def _task_results(tasks: Any) -> list[TaskResultRecord]:
    if tasks is None:
        return []
    if isinstance(tasks, Mapping):
        items = []
        for name, value in tasks.items():
            if isinstance(value, TaskResultRecord):
                if value.task != name:
                    raise InvalidRecord(f"task result keyed {name!r} is for task "
                                        f"{value.task!r}")
                items.append(value)
            elif isinstance(value, Mapping):
                try:
                    items.append(TaskResultRecord(task=name, **value))
                except TypeError as e:
                    raise InvalidRecord(f"task {name!r}: {e}") from None
            else:
                raise InvalidRecord(f"task {name!r}: expected a TaskResultRecord or a "
                                    f"mapping of its fields, got {type(value).__name__}")
    else:
        items = list(tasks)
        for t in items:
            if not isinstance(t, TaskResultRecord):
                raise InvalidRecord(f"task results must be TaskResultRecord values, "
                                    f"got {type(t).__name__}")
    seen: set[str] = set()
    for t in items:
        _label("task name", t.task, 128)
        if t.task in seen:
            raise InvalidRecord(f"task {t.task!r} appears twice in one evaluation")
        seen.add(t.task)
    return items


def add_evaluation(s: Session, program: ProgramRef, *, suite: str, status: str,
                   score: float | None, campaign: CampaignRef | None = None, stage: int = 1,
                   tasks: Iterable[TaskResultRecord] | Mapping[str, Any] | None = None,
                   best_lr: float | None = None, wall_time: float | None = None,
                   error: str | None = None, worker: str | None = None,
                   key: str | None = None) -> EvaluationRecord:
    """Store one finished evaluation with its per-task results (all or nothing).

    With a `key`, the write is idempotent within the campaign: if an evaluation with that
    (campaign, key) is stored already, it is returned and nothing is written, so a resumed
    campaign that replays its last step cannot duplicate a row."""
    _label("suite", suite, 64)
    _label("status", status, 32)
    score = _float("score", score)
    best_lr = _float("best_lr", best_lr)
    wall_time = _duration("wall_time", wall_time)
    if isinstance(stage, bool) or not isinstance(stage, int) or stage < 0:
        raise InvalidRecord(f"stage must be an integer >= 0, got {stage!r}")
    if error is not None and not isinstance(error, str):
        raise InvalidRecord(f"error must be text, got {type(error).__name__}")
    if worker is None:
        worker = _HOST
    if not isinstance(worker, str) or len(worker) > 255:
        raise InvalidRecord(f"worker must be at most 255 characters, got {worker!r}")
    if key is not None and (not isinstance(key, str) or not 0 < len(key) <= 255):
        raise InvalidRecord(f"key must be 1..255 characters, got {key!r}")
    results = _task_results(tasks)
    rows = []
    for t in results:
        _label(f"task {t.task!r} status", t.status, 32)
        rows.append(dict(task=t.task, status=t.status,
                         score=_float(f"task {t.task!r} score", t.score),
                         loss=_float(f"task {t.task!r} loss", t.loss),
                         best_lr=_float(f"task {t.task!r} best_lr", t.best_lr),
                         wall_time=_duration(f"task {t.task!r} wall_time", t.wall_time),
                         metrics=_jsonable(f"task {t.task!r} metrics", dict(t.metrics))))

    program_id = program_row(s, program).id
    camp_id = None if campaign is None else campaign_row(s, campaign).id
    values = dict(program_id=program_id, campaign_id=camp_id, suite=suite, stage=stage,
                  status=status, score=score, rank_score=rank_score(score), best_lr=best_lr,
                  wall_time=wall_time, error=error, worker=worker, key=key,
                  created_at=m.utcnow())
    if key is not None and camp_id is not None:
        new_id = _insert_ignore(s, m.Evaluation.__table__, values, ["campaign_id", "key"])
        if new_id is None:
            existing = s.scalars(select(m.Evaluation).where(
                m.Evaluation.campaign_id == camp_id, m.Evaluation.key == key)).one()
            return convert.evaluations(s, [existing])[0]
    else:
        table = m.Evaluation.__table__
        new_id = s.execute(table.insert().values(**values).returning(table.c.id)).scalar_one()
    if rows:
        s.execute(m.TaskResult.__table__.insert(),
                  [dict(r, evaluation_id=new_id) for r in rows])
    # The record is built from what was written (reading it back would cost two queries
    # per evaluation); the contract tests check that reading it back gives the same record.
    return EvaluationRecord(
        id=new_id, program_id=program_id, campaign_id=camp_id, suite=suite, stage=stage,
        status=status, score=score, best_lr=best_lr, wall_time=wall_time, error=error,
        worker=worker, key=key, created_at=values["created_at"],
        tasks=tuple(sorted((TaskResultRecord(task=r["task"], status=r["status"],
                                             score=r["score"], loss=r["loss"],
                                             best_lr=r["best_lr"], wall_time=r["wall_time"],
                                             metrics=_copy_json(r["metrics"]))
                            for r in rows), key=lambda t: t.task)))


# ---- checkpoints -------------------------------------------------------------------------

def save_checkpoint(s: Session, campaign: CampaignRef, *, population: Any, rng_state: Any,
                    counters: Mapping[str, Any]) -> Checkpoint:
    """Replace the campaign's resume state (population, RNG state, counters). Put it in the
    same transaction as the evaluation it accounts for, and the two can never disagree."""
    camp = campaign_row(s, campaign)
    _jsonable("population", population)
    _jsonable("rng_state", rng_state)
    if not isinstance(counters, Mapping):
        raise InvalidRecord(f"counters must be a mapping, got {type(counters).__name__}")
    counters = _jsonable("counters", dict(counters))
    now = m.utcnow()
    values = dict(population=population, rng_state=rng_state, counters=counters,
                  updated_at=now)
    created = _insert_ignore(s, m.CheckpointRow.__table__,
                             dict(values, campaign_id=camp.id, sequence=1), ["campaign_id"])
    if created is None:
        s.execute(update(m.CheckpointRow).where(m.CheckpointRow.campaign_id == camp.id)
                  .values(sequence=m.CheckpointRow.sequence + 1, **values))
    camp.updated_at = now
    s.flush()
    s.expire_all()
    return convert.checkpoint(s.get(m.CheckpointRow, camp.id))
