"""What the campaign engine needs of a results store, and what it may rely on.

`CampaignStore` is the narrow protocol the engine is written against (Optuna's
`BaseStorage` is the model): `optforge.store.Store` (SQLAlchemy: SQLite, PostgreSQL)
implements it, and so does `search.memory_store.MemoryStore`, which the engine's tests run
on. The contract, which every implementation keeps:

* **Records.** Every method returns frozen records (`store.records`), never live objects.
* **Programs are deduplicated.** `add_program` is idempotent by structural hash: adding an
  equal program returns the record stored first, under its id, and is safe to race.
* **Transactions are atomic.** `run_in_transaction(fn)` runs `fn(tx)` so that all of its
  writes are kept or none is; if `fn` raises, nothing it wrote is kept and the error
  propagates. An implementation may run `fn` again after a transient failure, so `fn`
  must only touch the store.
* **Fencing by the lease.** `acquire_lease` gives one process the right to drive a
  campaign (`LeaseHeld` while another live process holds it). Inside a transaction,
  `tx.check_lease(lease)` raises `LeaseLost` unless the lease still holds: put it first and
  the transaction's writes happen only while the lease is held. `heartbeat(lease)` keeps
  it alive while the campaign runs; `release_lease` gives it up and sets the status.
* **Evaluations are idempotent by key.** `tx.add_evaluation(..., key=K)` with a key already
  stored for the campaign writes nothing and returns the stored record: a resumed campaign
  that replays its last step cannot duplicate a row.
* **Ordering.** Evaluation ids grow in commit order; `stage_results` and `evaluations`
  list in that order. `top` ranks best score first (ties: the earlier evaluation), each
  program once with its best evaluation in scope; NaN and missing scores never rank.
* **Checkpoints.** `tx.save_checkpoint` replaces the campaign's resume state and bumps
  its `sequence` by one (1 for the first); `load_checkpoint` returns the latest committed
  one, or None. Saved in the same transaction as the evaluation it accounts for, the two
  never disagree.

Islands (`search.islands`) ask more of the store: the scores and best programs of every
island of a group (`known_score`, `best_elsewhere`) and `tx.add_migration`. Only the
SQLAlchemy `Store` has them: islands share a database, never a process's memory.
"""

from __future__ import annotations

from typing import Any, Callable, ContextManager, Mapping, Protocol, TypeVar

from optforge.store.leases import Lease
from optforge.store.records import (
    CampaignRecord,
    Checkpoint,
    EvaluationRecord,
    LineageEdge,
    ProgramRecord,
    RankedProgram,
    StageResult,
)

__all__ = ["CampaignStore", "CampaignTransaction"]

T = TypeVar("T")


class CampaignTransaction(Protocol):
    """The writes of one transaction (`CampaignStore.run_in_transaction`)."""

    def check_lease(self, lease: Lease) -> None:
        """`LeaseLost` unless `lease` still holds its campaign."""

    def add_lineage(self, child: int, parent: int, mutation: str,
                    campaign: int | None = None) -> LineageEdge:
        """The edge parent -> child made by `mutation` (idempotent per campaign)."""

    def add_evaluation(self, program: int, **kwargs: Any) -> EvaluationRecord:
        """A finished evaluation with its per-task results (`Store.add_evaluation`'s
        arguments); idempotent by (campaign, key)."""

    def save_checkpoint(self, campaign: int, *, population: Any, rng_state: Any,
                        counters: Mapping[str, Any]) -> Checkpoint:
        """Replace the campaign's resume state (JSON values); sequence + 1."""


class CampaignStore(Protocol):
    """The store as the campaign engine sees it; see the module docstring's contract."""

    def create_campaign(self, name: str, config: Mapping[str, Any] | None = None, *,
                        status: str = "running") -> CampaignRecord:
        """A new campaign (`AlreadyExists` if the name is taken)."""

    def get_campaign(self, campaign: int | str) -> CampaignRecord:
        """By id or name (`NotFound` otherwise)."""

    def acquire_lease(self, campaign: int, *, ttl: float) -> Lease:
        """The campaign's lease, marking it running (`LeaseHeld` if a live one holds it)."""

    def heartbeat(self, lease: Lease) -> ContextManager[Any]:
        """Renews `lease` while the block runs."""

    def release_lease(self, lease: Lease, status: str) -> CampaignRecord:
        """Give the lease up, setting the status (`LeaseLost` if it was taken)."""

    def run_in_transaction(self, fn: Callable[[CampaignTransaction], T]) -> T:
        """`fn(tx)` atomically; its result."""

    def load_checkpoint(self, campaign: int) -> Checkpoint | None:
        """The latest committed checkpoint, or None before the first."""

    def add_program(self, program: Any) -> ProgramRecord:
        """Store a `dsl.Program` (or `ProgramData`); idempotent by structural hash."""

    def get_program(self, program: int) -> ProgramRecord:
        """By id (`NotFound` otherwise)."""

    def program_by_hash(self, structural_hash: str) -> ProgramRecord | None:
        """The program with this structural hash, or None."""

    def stage_results(self, campaign: int, stage: int) -> list[StageResult]:
        """The campaign's evaluations at `stage`, in commit order, with their programs."""

    def evaluations(self, *, campaign: int | None = None, stage: int | None = None
                    ) -> list[EvaluationRecord]:
        """Evaluations in scope with their per-task results, in commit order."""

    def top(self, n: int = 10, *, campaign: int | None = None, suite: str | None = None,
            stage: int | None = None) -> list[RankedProgram]:
        """The best `n` programs in scope, best first (see the contract's ordering)."""
