"""The `Store`: the narrow contract between optforge and its results database.

    store = Store.open()                                   # $OPTFORGE_DB or ./optforge.db
    camp = store.create_campaign("lion-hunt", config)
    prog = store.add_program(child)                        # race-safe, deduplicated by hash
    store.add_lineage(prog.id, parent.id, "insert", campaign=camp.id)
    with store.transaction() as tx:                        # both or neither
        tx.add_evaluation(prog.id, campaign=camp.id, suite="small", status="ok", score=0.7,
                          tasks=results, key="child-812/stage-1")
        tx.save_checkpoint(camp.id, population=..., rng_state=..., counters=...)
    store.top(10, campaign=camp.id, suite="small")         # -> [RankedProgram]
    store.lineage(prog.id)                                 # -> networkx.DiGraph

Every method returns frozen records (`store.records`), never ORM objects. Each write method
is its own transaction and is committed when the method returns; a transient failure (a
busy SQLite file, a PostgreSQL serialization failure or deadlock, a dropped connection) is
retried from the start, so callers never see "database is locked". Open one `Store` per
process: connection pools must not cross a fork.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, TypeVar

import networkx as nx
from sqlalchemy import select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from . import convert, islands, leases, queries, writes
from . import models as m
from .engine import (
    Engines,
    create_engines,
    describe_db_error,
    display_url,
    parse_url,
    resolve_url,
    sqlite_path,
    with_retries,
)
from .errors import ConnectionFailed, DatabaseNotFound, NotAnOptforgeDatabase
from .leases import Lease
from .lineage import lineage_graph
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
from .refs import CampaignRef, ProgramRef, campaign_row, program_by_text, program_row
from .schema import ensure_schema

T = TypeVar("T")


class Transaction:
    """Several writes committed together (or not at all). Obtained from
    `Store.transaction()` or `Store.run_in_transaction(fn)`; valid only inside them."""

    def __init__(self, session: Session):
        self._s = session

    def create_campaign(self, name: str, config: Mapping[str, Any] | None = None, *,
                        status: str = "running", island_group: str | None = None,
                        island: int | None = None) -> CampaignRecord:
        return writes.create_campaign(self._s, name, config, status=status,
                                      island_group=island_group, island=island)

    def add_migration(self, campaign: int, source: int, program: int, score: float) -> bool:
        return islands.add_migration(self._s, campaign, source, program, score)

    def set_campaign_status(self, campaign: CampaignRef, status: str) -> CampaignRecord:
        return writes.set_campaign_status(self._s, campaign, status)

    def add_program(self, program: Any) -> ProgramRecord:
        return writes.add_program(self._s, program)

    def add_lineage(self, child: ProgramRef, parent: ProgramRef, mutation: str,
                    campaign: CampaignRef | None = None) -> LineageEdge:
        return writes.add_lineage(self._s, child, parent, mutation, campaign)

    def add_evaluation(self, program: ProgramRef, **kwargs: Any) -> EvaluationRecord:
        return writes.add_evaluation(self._s, program, **kwargs)

    def save_checkpoint(self, campaign: CampaignRef, *, population: Any, rng_state: Any,
                        counters: Mapping[str, Any]) -> Checkpoint:
        return writes.save_checkpoint(self._s, campaign, population=population,
                                      rng_state=rng_state, counters=counters)

    def get_program(self, program: ProgramRef) -> ProgramRecord:
        return convert.program(program_row(self._s, program))

    def get_campaign(self, campaign: CampaignRef) -> CampaignRecord:
        return convert.campaign(campaign_row(self._s, campaign), leases.db_now(self._s))

    def check_lease(self, lease: Lease) -> None:
        """Raise `LeaseLost` unless `lease` still holds its campaign: put it first in a
        transaction, and the transaction's writes happen only while the lease is held."""
        leases.check(self._s, lease)

    def load_checkpoint(self, campaign: CampaignRef) -> Checkpoint | None:
        return queries.checkpoint(self._s, campaign)


class Store:
    """A results database. See the module docstring."""

    def __init__(self, url: str | None = None, *, create: bool = True, upgrade: bool = True,
                 busy_timeout: float = 5.0, lock_wait: float = 600.0, echo: bool = False):
        """Open the database at `url` (default: `$OPTFORGE_DB`, else ``./optforge.db``).

        create:  make the database (the SQLite file, the tables) if it does not exist. With
                 create=False a missing SQLite file or an empty database is an error and
                 nothing is created on disk: what readers use.
        upgrade: bring an older schema to this version with its Alembic migrations.
        busy_timeout / lock_wait: SQLite only; seconds one attempt to lock waits, and the
                 total a writer waits for another writer before giving up.
        """
        self._url = parse_url(resolve_url(url))
        self.display_url = display_url(self._url)
        path = sqlite_path(self._url)
        if path is not None:
            if not create and not path.exists():
                raise DatabaseNotFound(f"no optforge database at {path} "
                                       "(pass --db URL or set OPTFORGE_DB)")
            if create and not path.parent.exists():
                raise ConnectionFailed(f"cannot create {path}: directory {path.parent} "
                                       "does not exist")
            if path.exists() and path.is_dir():
                raise NotAnOptforgeDatabase(f"{path} is a directory, not a database file")
        self._engines: Engines = create_engines(self._url, busy_timeout=busy_timeout,
                                                lock_wait=lock_wait, echo=echo)
        try:
            self.schema_revision = ensure_schema(self._engines, create=create,
                                                 upgrade=upgrade)
        except DBAPIError as e:
            from .engine import store_error
            from .errors import DatabaseFailed

            self._engines.dispose()
            error = store_error(e, self.display_url)  # damaged, read-only, not ours, ...
            if isinstance(error, DatabaseFailed):  # e.g. a server that cannot be reached
                error = ConnectionFailed(f"cannot open {self.display_url}: "
                                         f"{describe_db_error(e)}")
            raise error from None
        except BaseException:
            self._engines.dispose()
            raise

    @classmethod
    def open(cls, url: str | None = None, **kwargs: Any) -> "Store":
        return cls(url, **kwargs)

    @property
    def backend(self) -> str:
        """'sqlite', 'postgresql', ..."""
        return self._engines.backend

    @property
    def path(self) -> Path | None:
        """The SQLite file, if this is one."""
        return sqlite_path(self._url)

    def close(self) -> None:
        self._engines.dispose()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Store({self.display_url!r})"

    # ---- transactions ------------------------------------------------------------------

    def _write(self, fn: Callable[[Session], T]) -> T:
        def attempt() -> T:
            with Session(self._engines.write, expire_on_commit=False) as s, s.begin():
                return fn(s)
        return with_retries(attempt)

    def _read(self, fn: Callable[[Session], T]) -> T:
        def attempt() -> T:
            with Session(self._engines.read) as s:
                try:
                    return fn(s)
                finally:
                    s.rollback()
        return with_retries(attempt)

    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        """``with store.transaction() as tx:`` groups writes; they are committed when the
        block ends and rolled back if it raises. Not retried (the block is your code): use
        `run_in_transaction` for that."""
        with Session(self._engines.write, expire_on_commit=False) as s, s.begin():
            yield Transaction(s)

    def run_in_transaction(self, fn: Callable[[Transaction], T]) -> T:
        """Run `fn(tx)` in one transaction and commit; if the database reports a transient
        failure, roll back and run `fn` again (so `fn` must only touch the database)."""
        return self._write(lambda s: fn(Transaction(s)))

    # ---- campaigns -----------------------------------------------------------------------

    def create_campaign(self, name: str, config: Mapping[str, Any] | None = None, *,
                        status: str = "running", island_group: str | None = None,
                        island: int | None = None) -> CampaignRecord:
        """A new campaign; its name must be unused (AlreadyExists otherwise). An island of
        a campaign run by several processes names its group and index (store.islands)."""
        return self._write(lambda s: writes.create_campaign(
            s, name, config, status=status, island_group=island_group, island=island))

    # ---- islands (see store.islands) -----------------------------------------------------

    def islands(self, group: str) -> list[CampaignRecord]:
        """The islands of `group`, by index."""
        return self._read(lambda s: islands.islands(s, group))

    def known_score(self, group: str, suite: str, stage: int, kind: str,
                    key: str) -> islands.GroupScore | None:
        """The best score any island of `group` has on (suite, stage) for a program whose
        `kind` hash ("structural", "canonical", "fingerprint") is `key`."""
        return self._read(lambda s: islands.known_score(s, group, suite, stage, kind, key))

    def best_elsewhere(self, group: str, suite: str, stage: int, exclude: int,
                       n: int) -> list[islands.GroupScore]:
        """The `n` best distinct programs on (suite, stage) of the islands other than
        `exclude`, best first."""
        return self._read(lambda s: islands.best_elsewhere(s, group, suite, stage, exclude, n))

    def migrations(self, campaign: int | None = None,
                   group: str | None = None) -> list[islands.MigrationRecord]:
        return self._read(lambda s: islands.migrations(s, campaign, group))

    def set_campaign_status(self, campaign: CampaignRef, status: str) -> CampaignRecord:
        return self._write(lambda s: writes.set_campaign_status(s, campaign, status))

    def get_campaign(self, campaign: CampaignRef) -> CampaignRecord:
        return self._read(lambda s: convert.campaign(campaign_row(s, campaign),
                                                     leases.db_now(s)))

    # ---- leases (see store.leases) -------------------------------------------------------

    def acquire_lease(self, campaign: CampaignRef, *,
                      ttl: float = leases.DEFAULT_TTL) -> Lease:
        """Take the campaign's lease and mark it running; `LeaseHeld` (naming the holder)
        if another live process holds it."""
        return self._write(lambda s: leases.acquire(s, campaign, ttl))

    def renew_lease(self, lease: Lease) -> None:
        """Push the lease's expiry `ttl` seconds ahead; `LeaseLost` if it was taken."""
        self._write(lambda s: leases.renew(s, lease))

    def release_lease(self, lease: Lease, status: str) -> CampaignRecord:
        """Give the lease up, setting the campaign's status (paused, finished, failed)."""
        def run(s: Session) -> CampaignRecord:
            leases.release(s, lease, status)
            return convert.campaign(campaign_row(s, lease.campaign_id))
        return self._write(run)

    def heartbeat(self, lease: Lease) -> leases.Heartbeat:
        """``with store.heartbeat(lease):`` renews the lease on a thread every ttl/4 s."""
        return leases.Heartbeat(lambda: self.renew_lease(lease), lease.ttl / 4)

    def campaigns(self) -> list[CampaignRecord]:
        return self._read(queries.campaigns)

    def campaign_stats(self, campaign: CampaignRef) -> CampaignStats:
        return self._read(lambda s: queries.campaign_stats(s, campaign))

    # ---- programs and lineage ------------------------------------------------------------

    def add_program(self, program: Any) -> ProgramRecord:
        """Store a `dsl.Program` (or `ProgramData`); returns the stored record, which is
        the existing one if a program with the same structural hash was stored before."""
        return self._write(lambda s: writes.add_program(s, program))

    def get_program(self, program: ProgramRef) -> ProgramRecord:
        return self._read(lambda s: convert.program(program_row(s, program)))

    def find_program(self, text: str) -> ProgramRecord:
        """A program named by a user: its id, or an unambiguous structural hash prefix."""
        return self._read(lambda s: convert.program(program_by_text(s, text)))

    def program_by_hash(self, structural_hash: str) -> ProgramRecord | None:
        return self._read(lambda s: queries.program_by_hash(s, structural_hash))

    def programs_with_canonical_hash(self, canonical_hash: str) -> list[ProgramRecord]:
        return self._read(lambda s: queries.programs_where(
            s, m.Program.canonical_hash, canonical_hash))

    def programs_with_fingerprint(self, fingerprint: str) -> list[ProgramRecord]:
        return self._read(lambda s: queries.programs_where(s, m.Program.fingerprint,
                                                           fingerprint))

    def count_programs(self) -> int:
        from sqlalchemy import func
        return self._read(lambda s: int(s.execute(
            select(func.count()).select_from(m.Program)).scalar_one()))

    def add_lineage(self, child: ProgramRef, parent: ProgramRef, mutation: str,
                    campaign: CampaignRef | None = None) -> LineageEdge:
        return self._write(lambda s: writes.add_lineage(s, child, parent, mutation, campaign))

    def parents(self, program: ProgramRef) -> list[LineageEdge]:
        return self._read(lambda s: queries.edges_of(s, [program_row(s, program).id],
                                                     towards="parents"))

    def children(self, program: ProgramRef) -> list[LineageEdge]:
        return self._read(lambda s: queries.edges_of(s, [program_row(s, program).id],
                                                     towards="children"))

    def lineage(self, program: ProgramRef, *, descendants: bool = False,
                campaign: CampaignRef | None = None) -> nx.DiGraph:
        """The program's ancestry back to the seeds (and its descendants on request) as a
        DiGraph from parent to child; see `store.lineage` for the attributes."""
        return self._read(lambda s: lineage_graph(s, program, descendants=descendants,
                                                  campaign=campaign))

    # ---- evaluations ---------------------------------------------------------------------

    def add_evaluation(self, program: ProgramRef, *, suite: str, status: str,
                       score: float | None, campaign: CampaignRef | None = None,
                       stage: int = 1, tasks: Any = None, best_lr: float | None = None,
                       wall_time: float | None = None, error: str | None = None,
                       worker: str | None = None, key: str | None = None
                       ) -> EvaluationRecord:
        """Commit one finished evaluation and its per-task results; see
        `store.writes.add_evaluation` (the `key` makes it idempotent)."""
        return self._write(lambda s: writes.add_evaluation(
            s, program, suite=suite, status=status, score=score, campaign=campaign,
            stage=stage, tasks=tasks, best_lr=best_lr, wall_time=wall_time, error=error,
            worker=worker, key=key))

    def get_evaluation(self, evaluation_id: int) -> EvaluationRecord:
        from .errors import NotFound

        def run(s: Session) -> EvaluationRecord:
            row = s.get(m.Evaluation, evaluation_id)
            if row is None:
                raise NotFound(f"no evaluation with id {evaluation_id}")
            return convert.evaluations(s, [row])[0]
        return self._read(run)

    def evaluations(self, *, program: ProgramRef | None = None,
                    campaign: CampaignRef | None = None, suite: str | None = None,
                    stage: int | None = None) -> list[EvaluationRecord]:
        return self._read(lambda s: queries.evaluations(s, program=program, campaign=campaign,
                                                        suite=suite, stage=stage))

    def stage_results(self, campaign: CampaignRef, stage: int) -> list[StageResult]:
        """The campaign's evaluations at `stage` in commit order, each with its program
        record and without per-task results (`store.queries.stage_results`)."""
        return self._read(lambda s: queries.stage_results(s, campaign, stage))

    def count_evaluations(self, *, campaign: CampaignRef | None = None,
                          suite: str | None = None, stage: int | None = None) -> int:
        return self._read(lambda s: queries.count_evaluations(s, campaign=campaign,
                                                              suite=suite, stage=stage))

    def top(self, n: int = 10, *, campaign: CampaignRef | None = None,
            suite: str | None = None, stage: int | None = None) -> list[RankedProgram]:
        """The best `n` programs by their best score in scope (scores of different suites
        are not comparable: pass `suite` unless the scope has one)."""
        return self._read(lambda s: queries.top(s, n, campaign=campaign, suite=suite,
                                                stage=stage))

    def ranking(self, n: int = 10, *, campaign: CampaignRef | None = None,
                suite: str | None = None, stage: int | None = None,
                failures: bool = False) -> list[RankedProgram]:
        """`top` for listings: distinct programs by their best ``ok`` evaluation in scope;
        with `failures`, failed and unscored evaluations too (`store.queries.ranking`)."""
        return self._read(lambda s: queries.ranking(s, n, campaign=campaign, suite=suite,
                                                    stage=stage, failures=failures))

    def pareto_front(self, *, campaign: CampaignRef | None = None, suite: str | None = None,
                     stage: int | None = None) -> list[RankedProgram]:
        """Programs that no simpler program matches in score, simplest first."""
        return self._read(lambda s: queries.pareto_front(s, campaign=campaign, suite=suite,
                                                         stage=stage))

    def task_scores(self, program: ProgramRef, *, campaign: CampaignRef | None = None,
                    suite: str | None = None, stage: int | None = None
                    ) -> dict[str, TaskResultRecord]:
        return self._read(lambda s: queries.task_scores(s, program, campaign=campaign,
                                                        suite=suite, stage=stage))

    def suites(self, *, campaign: CampaignRef | None = None) -> list[SuiteSummary]:
        return self._read(lambda s: queries.suites(s, campaign=campaign))

    # ---- resuming ------------------------------------------------------------------------

    def save_checkpoint(self, campaign: CampaignRef, *, population: Any, rng_state: Any,
                        counters: Mapping[str, Any]) -> Checkpoint:
        return self._write(lambda s: writes.save_checkpoint(
            s, campaign, population=population, rng_state=rng_state, counters=counters))

    def load_checkpoint(self, campaign: CampaignRef) -> Checkpoint | None:
        return self._read(lambda s: queries.checkpoint(s, campaign))
