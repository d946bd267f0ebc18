"""Breeding strategies: who the parents are and how a child is made from them.

A strategy owns the population (aging: a newcomer joins, the oldest dies) and draws the
next child from it with the campaign's generator. Two are built in:

* `RegularizedEvolution` (Real et al., 2019): the parent is the best of a tournament of
  `tournament` members drawn without replacement; the child is one mutation of it.
* `RandomSearch`, the control: the parent is a random seed, mutated 1 to 8 times; no
  selection (the population is kept all the same, for restarts and checkpoints).

Both accept immigrants (members evaluated elsewhere, e.g. by another island of the same
campaign): they join as any newcomer does.

The generator calls are the campaign's reproducibility: a strategy draws from `rng` in a
fixed order, so a serial campaign with the same seed breeds the same children.
"""

from __future__ import annotations

from collections import Counter
from typing import Callable, Iterable, Mapping, Protocol, Sequence

import numpy as np
from optforge.dsl import Program

from .individuals import Member
from .mutation_defaults import Limits
from .mutations import MutationResult, mutate

__all__ = ["BreedingStrategy", "RegularizedEvolution", "RandomSearch", "strategy_for"]

ProgramOf = Callable[[int], Program]  # a stored program id -> the program


class BreedingStrategy(Protocol):
    """What the engine asks of a breeding strategy."""

    population: list[Member]  # oldest first; what the checkpoint saves

    def breed(self, rng: np.random.Generator, program_of: ProgramOf,
              seed_ids: Sequence[int]) -> tuple[int | None, MutationResult]:
        """(parent id, the mutation's result) for the next child."""

    def join(self, member: Member) -> None:
        """A newly evaluated (or cache-hit) member joins; the oldest dies past the size."""

    def accept_immigrants(self, members: Iterable[Member]) -> None:
        """Members evaluated elsewhere join, in order, as newcomers."""

    def restart(self, best: Member, seed_ids: Sequence[int]) -> None:
        """Start again from the best so far and the seeds (progress stalled)."""


class _AgingPopulation:
    """The population both strategies keep: oldest first, at most `size` members."""

    def __init__(self, size: int, mutations: Mapping[str, float], limits: Limits):
        self.size, self.mutations, self.limits = size, dict(mutations), limits
        self.population: list[Member] = []

    def join(self, member: Member) -> None:
        self.population.append(member)
        if len(self.population) > self.size:
            self.population.pop(0)

    def accept_immigrants(self, members: Iterable[Member]) -> None:
        for member in members:
            self.join(member)

    def restart(self, best: Member, seed_ids: Sequence[int]) -> None:
        seeds = [m for m in self.population if m.program_id in seed_ids]
        self.population = [best] + [m for m in seeds if m.program_id != best.program_id]


class RegularizedEvolution(_AgingPopulation):
    """Tournament selection, one mutation; the oldest dies."""

    def __init__(self, size: int, tournament: int, mutations: Mapping[str, float],
                 limits: Limits):
        super().__init__(size, mutations, limits)
        self.tournament = tournament

    def parent(self, rng: np.random.Generator) -> Member:
        """The best of `tournament` members drawn without replacement (ties: the first drawn
        in population order)."""
        k = min(self.tournament, len(self.population))
        picks = rng.choice(len(self.population), size=k, replace=False)
        return max((self.population[int(i)] for i in sorted(picks)), key=lambda m: m.score)

    def breed(self, rng, program_of, seed_ids):
        parent = self.parent(rng)
        return parent.program_id, mutate(program_of(parent.program_id), rng, self.mutations,
                                         self.limits)


class RandomSearch(_AgingPopulation):
    """The control: a random seed mutated 1 to 8 times (the mutation kind is "random")."""

    def breed(self, rng, program_of, seed_ids):
        parent_id = int(rng.choice(seed_ids))
        program, kinds, rejections = program_of(parent_id), [], Counter()
        for _ in range(int(rng.integers(1, 9))):
            r = mutate(program, rng, self.mutations, self.limits)
            rejections.update(r.rejections)
            if r.child is None:
                break
            program = r.child
            kinds.append(r.kind)
        return parent_id, MutationResult(program if kinds else None, "random", rejections)


def strategy_for(config) -> BreedingStrategy:
    """The strategy a `CampaignConfig` names (`[evolution] strategy`)."""
    e = config.evolution
    if e.strategy == "random":
        return RandomSearch(e.population, config.mutations, config.limits)
    return RegularizedEvolution(e.population, e.tournament, config.mutations, config.limits)
