"""Islands: one campaign run by several search processes that share one database.

Each island is a campaign row of its own (its population, checkpoint, lease and budget)
that names its group, the campaign's name as the user gave it, and its index
(`store.islands`); island k runs with seed ``seed + k``, so islands breed differently. What
the islands share goes through the store, so they may run on one machine or many (one
PostgreSQL database; or one SQLite file on one machine):

* **The duplicate caches** (`SharedCache`): a child equal to a program any island has
  already trained on stage 1 (same structure, same algebra or same behaviour on the probes)
  is not trained again: its stored score is reused, as a hit in this island's own cache
  is. The seeds are trained by the first island that reaches them; the others take their
  scores. Screening scores are shared the same way.
* **Migration** (`Island.migrate`): every `migrate_every` stage-1 evaluations an island
  takes in the best `migrants` programs of the other islands that it does not hold yet;
  they join its population as newcomers (aging: the oldest die) and each migration is
  recorded once, in the transaction that checkpoints the population holding it.

Only committed results are shared: two islands may train the same child at the same moment
when neither has committed it yet.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from .caches import KINDS, InMemoryCache
from .individuals import Member
from .stages import SCREEN, STAGE1

if TYPE_CHECKING:
    from optforge.store import Store

    from .engine import Campaign

__all__ = ["Island", "SharedCache", "island_of"]


class SharedCache(InMemoryCache):
    """`DuplicateCache` of an island: this process's dictionaries first, then the results
    every island of `group` committed to the store. A result found in the store is kept
    here under the key that found it."""

    def __init__(self, store: Store, group: str, stage1: str, screen: str):
        super().__init__()
        self.store, self.group, self.stage1, self.screen = store, group, stage1, screen

    def lookup(self, keys: dict[str, Callable[[], str]]) -> tuple[str, Member] | None:
        computed: dict[str, str] = {}

        def key(kind: str) -> str:  # each key computed once, whoever asks first
            if kind not in computed:
                computed[kind] = keys[kind]()
            return computed[kind]

        hit = super().lookup({kind: (lambda k=kind: key(k)) for kind in KINDS})
        if hit is not None:
            return hit
        for kind in KINDS:
            found = self.store.known_score(self.group, self.stage1, int(STAGE1), kind, key(kind))
            if found is not None:
                member = Member(found.program_id, found.score)
                self.members[kind].setdefault(key(kind), member)
                return kind, member
        return None

    def screened(self, fingerprint: str) -> float | None:
        score = super().screened(fingerprint)
        if score is None and self.screen:
            found = self.store.known_score(self.group, self.screen, int(SCREEN),
                                           "fingerprint", fingerprint)
            if found is not None:
                score = found.score
                self.add_screened(fingerprint, score)
        return score


@dataclass(frozen=True)
class Island:
    """Island `index` of the campaign `group`: what the engine needs to run as one."""

    group: str
    index: int
    migrate_every: int
    migrants: int

    def caches(self, store: Store, stage1: str, screen: str) -> Callable[[], SharedCache]:
        return lambda: SharedCache(store, self.group, stage1, screen)

    def due(self, stage1_evaluations: int) -> bool:
        """Whether an island that has just committed its n-th stage-1 evaluation migrates."""
        return (self.migrants > 0 and stage1_evaluations > 0
                and stage1_evaluations % self.migrate_every == 0)

    def migrate(self, campaign: Campaign) -> list[Member]:
        """Take in the best programs of the other islands that this one neither holds nor
        took in before (each program migrates into an island once); commit the migrations with the checkpoint of the population that holds them. The
        members that came in (none when no other island has better to give)."""
        store = campaign.store
        held = {m.program_id for m in campaign.population}
        held |= {m.program_id for m in store.migrations(campaign=campaign.id)}  # once each
        offers = store.best_elsewhere(self.group, campaign.config.funnel.stage1, int(STAGE1),
                                      exclude=campaign.id, n=self.migrants + len(held))
        chosen = [g for g in offers if g.program_id not in held][:self.migrants]
        if not chosen:
            return []
        members = [Member(g.program_id, g.score) for g in chosen]
        campaign.breeding.accept_immigrants(members)
        campaign.counters.immigrants += len(members)
        campaign.recorder.commit(
            migrations=[(g.campaign_id, g.program_id, g.score) for g in chosen],
            checkpoint=campaign.checkpoint_state())
        return members


def island_of(record, config) -> Island | None:
    """The `Island` a stored campaign runs as, or None when it is no island."""
    if getattr(record, "island_group", None) is None:
        return None
    return Island(record.island_group, record.island, config.islands.migrate_every,
                  config.islands.migrants)
