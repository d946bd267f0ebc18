"""The duplicate caches: a child equal to a program evaluated before costs no training.

Three keys, cheapest first: the structural hash (same program up to names and dead code),
the canonical hash (same algebra) and the behaviour fingerprint (same updates on fixed
probe tensors, as AutoML-Zero's functional-equivalence cache). A hit reuses the stored
stage-1 result. Screening scores are cached by fingerprint too.

`DuplicateCache` is what the engine needs. `InMemoryCache` holds them in this process,
rebuilt from the store on resume; an islands campaign (several processes, one store) would
put a store-backed implementation behind the same interface so that every island sees the
others' results.
"""

from __future__ import annotations

from typing import Callable, Protocol

from .individuals import Member

__all__ = ["DuplicateCache", "InMemoryCache", "KINDS"]

KINDS = ("structural", "canonical", "fingerprint")  # lookup order, cheapest key first


class DuplicateCache(Protocol):
    """Results of programs already evaluated, by three keys of a program.

    Contract: `add` keeps the first member added under a key (a later twin never replaces
    it); `lookup` asks the keys in `KINDS` order, computing a key only when the earlier
    ones missed (the canonical hash and the fingerprint cost milliseconds); a hit returns
    the kind that hit and the member. The same for screening scores by fingerprint."""

    def lookup(self, keys: dict[str, Callable[[], str]]) -> tuple[str, Member] | None: ...

    def add(self, structural: str, canonical: str, fingerprint: str, member: Member) -> None: ...

    def knows(self, structural: str) -> bool: ...

    def screened(self, fingerprint: str) -> float | None: ...

    def add_screened(self, fingerprint: str, score: float) -> None: ...


class InMemoryCache:
    """`DuplicateCache` in dictionaries of this process."""

    def __init__(self) -> None:
        self.members: dict[str, dict[str, Member]] = {kind: {} for kind in KINDS}
        self.screens: dict[str, float] = {}

    def lookup(self, keys: dict[str, Callable[[], str]]) -> tuple[str, Member] | None:
        for kind in KINDS:
            member = self.members[kind].get(keys[kind]())
            if member is not None:
                return kind, member
        return None

    def add(self, structural: str, canonical: str, fingerprint: str, member: Member) -> None:
        for kind, key in zip(KINDS, (structural, canonical, fingerprint)):
            self.members[kind].setdefault(key, member)

    def knows(self, structural: str) -> bool:
        """Whether a program with this structural hash has a result (the seeds phase asks)."""
        return structural in self.members["structural"]

    def screened(self, fingerprint: str) -> float | None:
        return self.screens.get(fingerprint)

    def add_screened(self, fingerprint: str, score: float) -> None:
        self.screens.setdefault(fingerprint, score)
