"""The ORM schema (SQLAlchemy 2.0 typed declarative).

The live schema is created and changed only by the Alembic migrations in
`store/migrations/versions`; these classes must describe exactly what the migrations build
(`tests/store/test_migrations.py` compares them). Nothing outside the store sees these
classes: the `Store` API converts rows to the frozen records of `store.records`.

Two column types deserve a word:

* `IEEEFloat` stores every IEEE-754 double faithfully. PostgreSQL keeps NaN and ±inf natively;
  SQLite keeps ±inf but silently turns NaN into NULL, which would merge "diverged to NaN" with
  "no score". On SQLite a NaN is therefore stored as the text ``'NaN'`` (a REAL column keeps
  text it cannot convert) and turned back into a float on the way out.
  (SQLite does not keep the sign of a zero: -0.0 comes back as 0.0.)
* Rankings never sort the faithful column (NaN sorts *above* every number in PostgreSQL and
  text above every number in SQLite). Each evaluation also has `rank_score`: the score when
  it is a number, NULL for NaN or a missing score; rankings filter the NULLs out and use the
  index on it.
"""

from __future__ import annotations

import json
import math
from datetime import datetime, timezone
from typing import Any, Optional

from sqlalchemy import (
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

# Deterministic constraint names, so that migrations can refer to them on every backend.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

CAMPAIGN_STATUSES = ("running", "paused", "finished", "failed")
# What a reader may see: a running campaign whose lease is not live reads as interrupted.
CAMPAIGN_STATES = CAMPAIGN_STATUSES + ("interrupted",)


class IEEEFloat(TypeDecorator[float]):
    """A double that round-trips NaN and ±inf on every backend (see the module docstring)."""

    impl = Float(precision=53)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect) -> Any:
        if value is None:
            return None
        value = float(value)
        if math.isnan(value) and dialect.name == "sqlite":
            return "NaN"
        return value

    def bind_processor(self, dialect):
        # Bypass Float's own bind processor, which would turn "NaN" back into a float (that
        # the driver then stores as NULL): floats go to every driver unchanged.
        def process(value: Any) -> Any:
            return self.process_bind_param(value, dialect)
        return process

    def process_result_value(self, value: Any, dialect) -> Optional[float]:
        if value is None:
            return None
        return float(value)  # float("NaN") is nan; SQLite hands back "NaN" as text


class JSONText(TypeDecorator[Any]):
    """JSON kept as text. Unlike PostgreSQL's `json`, it keeps NaN/Infinity (Python's JSON
    extension) and integers of any size (a PCG64 state has 128-bit ones) exactly."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: Any, dialect) -> Optional[str]:
        if value is None:
            return None
        return json.dumps(value, sort_keys=True, allow_nan=True, separators=(",", ":"))

    def process_result_value(self, value: Any, dialect) -> Any:
        return None if value is None else json.loads(value)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite has no time zones: it gets a
    naive UTC value and hands back an aware one)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: Optional[datetime], dialect) -> Optional[datetime]:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Optional[datetime], dialect) -> Optional[datetime]:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Campaign(Base):
    __tablename__ = "campaigns"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    status: Mapped[str] = mapped_column(String(16))
    config: Mapped[Any] = mapped_column(JSONText, nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    finished_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)
    # The lease of the process that runs the campaign (store.leases); all NULL when free.
    lease_token: Mapped[Optional[str]] = mapped_column(String(64))
    lease_host: Mapped[Optional[str]] = mapped_column(String(255))
    lease_pid: Mapped[Optional[int]] = mapped_column(Integer)
    lease_since: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)
    lease_expires: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)
    # An island of a campaign run by several processes (search.islands): the group is the
    # campaign's name as the user gave it, `island` its index. Both NULL otherwise.
    island_group: Mapped[Optional[str]] = mapped_column(String(200), index=True)
    island: Mapped[Optional[int]] = mapped_column(Integer)

    __table_args__ = (
        CheckConstraint("status IN ('running', 'paused', 'finished', 'failed')",
                        name="status"),
        UniqueConstraint("island_group", "island"),
    )


class Program(Base):
    __tablename__ = "programs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    source: Mapped[str] = mapped_column(Text)
    structural_hash: Mapped[str] = mapped_column(String(128), unique=True)
    canonical_hash: Mapped[str] = mapped_column(String(128), index=True)
    fingerprint: Mapped[str] = mapped_column(String(128), index=True)
    statements: Mapped[int] = mapped_column(Integer)
    complexity: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (
        CheckConstraint("statements >= 0", name="statements"),
        CheckConstraint("complexity >= 0", name="complexity"),
    )


class Evaluation(Base):
    __tablename__ = "evaluations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id"))
    campaign_id: Mapped[Optional[int]] = mapped_column(ForeignKey("campaigns.id"))
    suite: Mapped[str] = mapped_column(String(64))
    stage: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(32))
    score: Mapped[Optional[float]] = mapped_column(IEEEFloat)
    rank_score: Mapped[Optional[float]] = mapped_column(Float(precision=53))
    best_lr: Mapped[Optional[float]] = mapped_column(IEEEFloat)
    wall_time: Mapped[Optional[float]] = mapped_column(Float(precision=53))
    error: Mapped[Optional[str]] = mapped_column(Text)
    worker: Mapped[Optional[str]] = mapped_column(String(255))
    # Idempotency key chosen by the search ("child 812 stage 1"): replaying a write with the
    # same (campaign, key) after a crash returns the stored row instead of a duplicate.
    key: Mapped[Optional[str]] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (
        UniqueConstraint("campaign_id", "key"),
        Index("ix_evaluations_program_id", "program_id"),
        Index("ix_evaluations_campaign_suite_rank", "campaign_id", "suite", "rank_score"),
        Index("ix_evaluations_suite_rank", "suite", "rank_score"),
        CheckConstraint("stage >= 0", name="stage"),
        CheckConstraint("wall_time IS NULL OR wall_time >= 0", name="wall_time"),
    )


class TaskResult(Base):
    __tablename__ = "task_results"

    evaluation_id: Mapped[int] = mapped_column(
        ForeignKey("evaluations.id", ondelete="CASCADE"), primary_key=True)
    task: Mapped[str] = mapped_column(String(128), primary_key=True)
    status: Mapped[str] = mapped_column(String(32))
    score: Mapped[Optional[float]] = mapped_column(IEEEFloat)
    loss: Mapped[Optional[float]] = mapped_column(IEEEFloat)
    best_lr: Mapped[Optional[float]] = mapped_column(IEEEFloat)
    wall_time: Mapped[Optional[float]] = mapped_column(Float(precision=53))
    metrics: Mapped[Any] = mapped_column(JSONText, nullable=False)

    __table_args__ = (Index("ix_task_results_task", "task"),)


class LineageRow(Base):
    __tablename__ = "lineage"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    child_id: Mapped[int] = mapped_column(ForeignKey("programs.id"))
    parent_id: Mapped[int] = mapped_column(ForeignKey("programs.id"))
    mutation: Mapped[str] = mapped_column(String(64))
    campaign_id: Mapped[Optional[int]] = mapped_column(ForeignKey("campaigns.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (
        UniqueConstraint("child_id", "parent_id", "mutation", "campaign_id"),
        Index("ix_lineage_child_id", "child_id"),
        Index("ix_lineage_parent_id", "parent_id"),
        CheckConstraint("child_id <> parent_id", name="not_self"),
    )


class CheckpointRow(Base):
    __tablename__ = "checkpoints"

    campaign_id: Mapped[int] = mapped_column(
        ForeignKey("campaigns.id", ondelete="CASCADE"), primary_key=True)
    sequence: Mapped[int] = mapped_column(Integer)
    population: Mapped[Any] = mapped_column(JSONText, nullable=False)
    rng_state: Mapped[Any] = mapped_column(JSONText, nullable=False)
    counters: Mapped[Any] = mapped_column(JSONText, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Migration(Base):
    """A program an island took into its population from another island of its group."""

    __tablename__ = "migrations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id"))
    source_campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id"))
    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id"))
    score: Mapped[float] = mapped_column(Float(precision=53))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (UniqueConstraint("campaign_id", "program_id"),)
