"""The campaign's counters: what it has spent and seen, saved in every checkpoint as JSON."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from .stages import Phase

__all__ = ["Counters"]


@dataclass
class Counters:
    """The campaign's counters; saved in every checkpoint (`to_json`, `from_json`: the keys
    and the phase's string are those of every checkpoint stored so far)."""

    phase: Phase = Phase.SEEDS
    evaluations: int = 0  # full evaluations spent, all stages
    spent: float = 0.0  # the budget spent: `evaluations` by count, else by time (charging)
    units: dict = field(default_factory=dict)  # suite -> seconds of one evaluation's worth
    seed_charges: dict = field(default_factory=dict)  # seed index -> [seconds, known cost]
    stage1_charged: list = field(default_factory=lambda: [0.0, 0])  # by time: [charge, passes]
    stage1_evaluations: int = 0
    children: int = 0  # children drawn (valid or not)
    proposed: int = 0  # valid children that reached the caches
    screenings: int = 0  # children trained on the screening suite
    screen_cache_hits: int = 0  # children whose behaviour had been screened before
    recent_screens: list = field(default_factory=list)  # the hurdle's window, oldest first
    cache_hits: dict = field(default_factory=lambda: {"structural": 0, "canonical": 0,
                                                      "fingerprint": 0})
    rejections: dict = field(default_factory=dict)
    best_score: float = -math.inf
    best_program: int | None = None
    since_improvement: int = 0
    restarts: int = 0
    immigrants: int = 0  # members taken in from other islands (search.islands)
    seed_ids: list = field(default_factory=list)
    training: dict = field(default_factory=dict)  # suite -> [evaluations, training seconds]

    def __post_init__(self) -> None:
        self.phase = Phase(self.phase)  # a checkpoint's string, or the enum

    def to_json(self) -> dict:
        d = dict(self.__dict__)
        d["phase"] = self.phase.value
        d["training"] = {suite: list(v) for suite, v in self.training.items()}
        d["cache_hits"], d["rejections"] = dict(self.cache_hits), dict(self.rejections)
        d["seed_ids"] = list(self.seed_ids)
        d["units"] = dict(self.units)
        d["seed_charges"] = {k: list(v) for k, v in self.seed_charges.items()}
        d["stage1_charged"] = list(self.stage1_charged)
        d["recent_screens"] = list(self.recent_screens)
        d["best_score"] = None if self.best_score == -math.inf else self.best_score
        return d

    @classmethod
    def from_json(cls, d: dict) -> "Counters":
        c = cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})
        if "spent" not in d:  # a checkpoint from before charging: it charged by count
            c.spent = float(c.evaluations)
        c.best_score = -math.inf if c.best_score is None else c.best_score
        return c

    def reject(self, reason: str, n: int = 1) -> None:
        """Count `n` children rejected for `reason`."""
        self.rejections[reason] = self.rejections.get(reason, 0) + n

    def account(self, suite: str, wall_time: float | None) -> None:
        """Count an evaluation's training time on its suite (what `search.eta` reads)."""
        n, seconds = self.training.get(suite, (0, 0.0))
        self.training[suite] = [n + 1, seconds + (wall_time or 0.0)]

    @property
    def trained_fraction(self) -> float | None:
        """The fraction of children trained on stage 1 (the seeds are not children)."""
        if not self.children:
            return None
        return max(0, self.stage1_evaluations - len(self.seed_ids)) / self.children

    @property
    def hit_rate(self) -> float:
        return sum(self.cache_hits.values()) / self.proposed if self.proposed else 0.0
