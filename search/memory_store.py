"""`MemoryStore`: the campaign store protocol (`search.storage.CampaignStore`) in this
process's memory, for the engine's tests and for throwaway campaigns.

It keeps the protocol's contract as the SQLAlchemy `Store` does: frozen records, programs
deduplicated by structural hash, atomic transactions (a transaction works on the live state
and puts the state back as it was if it raises), fencing by the lease, evaluations
idempotent by (campaign, key), checkpoints whose sequence grows by one and whose values
come back as JSON reads them (tuples as lists), and the same `top` ordering. Nothing
survives the process, and one process holds it: leases are plain tokens.
"""

from __future__ import annotations

import contextlib
import json
import math
import secrets
import threading
from dataclasses import replace
from datetime import datetime, timezone
from enum import Enum
from typing import Any, Callable, Iterator, Mapping, TypeVar

from optforge.store.errors import AlreadyExists, NotFound
from optforge.store.leases import Lease, LeaseHeld, LeaseLost
from optforge.store.programs import as_program_data
from optforge.store.records import (
    CampaignRecord,
    Checkpoint,
    EvaluationRecord,
    LineageEdge,
    ProgramRecord,
    RankedProgram,
    StageResult,
)

__all__ = ["MemoryStore"]

T = TypeVar("T")


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _text(value: Any) -> Any:
    """An enum's value (a status), as a text column stores it."""
    return value.value if isinstance(value, Enum) else value


def _json(value: Any) -> Any:
    """`value` as it reads back from a JSON column."""
    return json.loads(json.dumps(value, allow_nan=True))


class _State:
    """Everything stored; replaced as a whole when a transaction fails."""

    def __init__(self) -> None:
        self.campaigns: dict[int, CampaignRecord] = {}
        self.programs: dict[int, ProgramRecord] = {}
        self.by_hash: dict[str, int] = {}
        self.evaluations: list[EvaluationRecord] = []
        self.keys: dict[tuple[int, str], EvaluationRecord] = {}
        self.lineage: list[LineageEdge] = []
        self.checkpoints: dict[int, Checkpoint] = {}
        self.leases: dict[int, str] = {}  # campaign id -> token

    def copy(self) -> "_State":
        other = _State()
        for name, value in self.__dict__.items():
            setattr(other, name, type(value)(value))  # records are frozen: shallow is enough
        return other


class MemoryTransaction:
    """The writes of one `MemoryStore` transaction (`storage.CampaignTransaction`)."""

    def __init__(self, store: "MemoryStore"):
        self._store = store

    def check_lease(self, lease: Lease) -> None:
        if self._store._state.leases.get(lease.campaign_id) != lease.token:
            name = self._store.get_campaign(lease.campaign_id).name
            raise LeaseLost(f"campaign {name} was taken over: its lease is not held")

    def add_lineage(self, child: int, parent: int, mutation: str,
                    campaign: int | None = None) -> LineageEdge:
        st = self._store._state
        for edge in st.lineage:
            if (edge.child_id, edge.parent_id, edge.mutation, edge.campaign_id) == (
                    child, parent, mutation, campaign):
                return edge
        self._store.get_program(child), self._store.get_program(parent)
        edge = LineageEdge(parent_id=parent, child_id=child, mutation=mutation,
                           campaign_id=campaign, created_at=_now())
        st.lineage.append(edge)
        return edge

    def add_evaluation(self, program: int, *, suite: str, status: str, score: float | None,
                       campaign: int | None = None, stage: int = 1, tasks: Any = None,
                       best_lr: float | None = None, wall_time: float | None = None,
                       error: str | None = None, worker: str | None = None,
                       key: str | None = None) -> EvaluationRecord:
        st = self._store._state
        if key is not None and campaign is not None and (campaign, key) in st.keys:
            return st.keys[(campaign, key)]
        self._store.get_program(program)
        results = tuple(sorted((replace(t, status=_text(t.status), metrics=_json(dict(t.metrics)))
                                for t in (tasks or ())), key=lambda t: t.task))
        record = EvaluationRecord(
            id=len(st.evaluations) + 1, program_id=program, campaign_id=campaign, suite=suite,
            stage=int(stage), status=_text(status), score=None if score is None else float(score),
            best_lr=best_lr, wall_time=wall_time, error=error, worker=worker or "memory",
            key=key, created_at=_now(), tasks=results)
        st.evaluations.append(record)
        if key is not None and campaign is not None:
            st.keys[(campaign, key)] = record
        return record

    def save_checkpoint(self, campaign: int, *, population: Any, rng_state: Any,
                        counters: Mapping[str, Any]) -> Checkpoint:
        st = self._store._state
        self._store.get_campaign(campaign)
        previous = st.checkpoints.get(campaign)
        cp = Checkpoint(campaign_id=campaign, sequence=previous.sequence + 1 if previous else 1,
                        population=_json(population), rng_state=_json(rng_state),
                        counters=_json(dict(counters)), updated_at=_now())
        st.checkpoints[campaign] = cp
        return cp


class MemoryStore:
    """`storage.CampaignStore` in memory. Use it as the `Store` it stands in for."""

    def __init__(self) -> None:
        self._state = _State()
        self._lock = threading.RLock()

    def __enter__(self) -> "MemoryStore":
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    # ---- transactions and leases -----------------------------------------------------------
    def run_in_transaction(self, fn: Callable[[MemoryTransaction], T]) -> T:
        with self._lock:
            saved = self._state.copy()
            try:
                return fn(MemoryTransaction(self))
            except BaseException:
                self._state = saved
                raise

    def create_campaign(self, name: str, config: Mapping[str, Any] | None = None, *,
                        status: str = "running") -> CampaignRecord:
        with self._lock:
            if any(c.name == name for c in self._state.campaigns.values()):
                raise AlreadyExists(f"a campaign named {name!r} already exists")
            now = _now()
            record = CampaignRecord(id=len(self._state.campaigns) + 1, name=name,
                                    status=status, config=_json(dict(config or {})),
                                    created_at=now, updated_at=now, finished_at=None)
            self._state.campaigns[record.id] = record
            return record

    def get_campaign(self, campaign: int | str) -> CampaignRecord:
        for record in self._state.campaigns.values():
            if campaign in (record.id, record.name):
                return record
        raise NotFound(f"no campaign {campaign!r}")

    def acquire_lease(self, campaign: int, *, ttl: float = 60.0) -> Lease:
        with self._lock:
            record = self.get_campaign(campaign)
            if record.id in self._state.leases:
                raise LeaseHeld(f"campaign {record.name} is being run by this process")
            token = secrets.token_hex(16)
            self._state.leases[record.id] = token
            self._state.campaigns[record.id] = replace(record, status="running")
            return Lease(record.id, token, ttl)

    def heartbeat(self, lease: Lease) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()  # a memory lease never expires

    def release_lease(self, lease: Lease, status: str) -> CampaignRecord:
        def release(tx: MemoryTransaction) -> CampaignRecord:
            tx.check_lease(lease)
            del self._state.leases[lease.campaign_id]
            record = replace(self.get_campaign(lease.campaign_id), status=status,
                             updated_at=_now())
            self._state.campaigns[record.id] = record
            return record
        return self.run_in_transaction(release)

    def load_checkpoint(self, campaign: int) -> Checkpoint | None:
        return self._state.checkpoints.get(self.get_campaign(campaign).id)

    # ---- programs ------------------------------------------------------------------------
    def add_program(self, program: Any) -> ProgramRecord:
        data = as_program_data(program)
        with self._lock:
            st = self._state
            if data.structural_hash in st.by_hash:
                return st.programs[st.by_hash[data.structural_hash]]
            record = ProgramRecord(id=len(st.programs) + 1, created_at=_now(),
                                   **data.__dict__)
            st.programs[record.id] = record
            st.by_hash[record.structural_hash] = record.id
            return record

    def get_program(self, program: int) -> ProgramRecord:
        try:
            return self._state.programs[program]
        except KeyError:
            raise NotFound(f"no program with id {program}") from None

    def program_by_hash(self, structural_hash: str) -> ProgramRecord | None:
        pid = self._state.by_hash.get(structural_hash)
        return None if pid is None else self._state.programs[pid]

    # ---- evaluations ---------------------------------------------------------------------
    def _scope(self, campaign: int | None, suite: str | None = None,
               stage: int | None = None) -> Iterator[EvaluationRecord]:
        for e in self._state.evaluations:
            if ((campaign is None or e.campaign_id == campaign)
                    and (suite is None or e.suite == suite)
                    and (stage is None or e.stage == stage)):
                yield e

    def stage_results(self, campaign: int, stage: int) -> list[StageResult]:
        return [StageResult(e.id, e.key, e.score, self._state.programs[e.program_id])
                for e in self._scope(campaign, stage=stage)]

    def evaluations(self, *, campaign: int | None = None, stage: int | None = None
                    ) -> list[EvaluationRecord]:
        return list(self._scope(campaign, stage=stage))

    def top(self, n: int = 10, *, campaign: int | None = None, suite: str | None = None,
            stage: int | None = None) -> list[RankedProgram]:
        scored = [e for e in self._scope(campaign, suite, stage)
                  if e.score is not None and not math.isnan(e.score)]
        best: dict[int, EvaluationRecord] = {}
        for e in sorted(scored, key=lambda e: (-e.score, e.id)):
            if len(best) == n:
                break
            best.setdefault(e.program_id, e)
        return [RankedProgram(rank=i + 1, program=self._state.programs[e.program_id],
                              evaluation=e) for i, e in enumerate(best.values())]

