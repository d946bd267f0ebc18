"""The statistics section of a campaign report: evaluations by stage, suite and status from
the store, and the search's counters from the campaign's last checkpoint."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from optforge.store import CampaignRecord, Checkpoint, EvaluationRecord

__all__ = ["COUNTERS", "StageCount", "Stats", "stats_of"]

# The search's counters (`search.engine.Counters`) the statistics show, in this order.
COUNTERS = (("children", "children drawn"),
            ("proposed", "valid children that reached the caches"),
            ("screenings", "screenings (stage-0 trainings)"),
            ("stage1_evaluations", "stage-1 evaluations"),
            ("evaluations", "full evaluations (stages 1 and 2: the budget)"),
            ("restarts", "restarts"),
            ("phase", "phase"))


@dataclass(frozen=True)
class StageCount:
    """Evaluations of one stage and suite: how many, by status, and training seconds."""

    stage: int
    suite: str
    evaluations: int
    by_status: tuple[tuple[str, int], ...]
    wall_time: float


@dataclass(frozen=True)
class Stats:
    """The campaign's statistics: evaluations from the store, the search's counters from
    its last checkpoint (empty when it has none), times in seconds."""

    stages: tuple[StageCount, ...]
    by_status: tuple[tuple[str, int], ...]
    counters: tuple[tuple[str, Any], ...]  # scalar counters: children, restarts, ...
    cache_hits: tuple[tuple[str, int], ...]
    rejections: tuple[tuple[str, int], ...]
    training_seconds: float  # summed over evaluations that reported a wall time
    elapsed_seconds: float | None  # the campaign's creation to its end (or latest write)
    first_evaluation_at: datetime | None
    last_evaluation_at: datetime | None
    errors: tuple[tuple[str, int], ...]  # first lines of failed evaluations' errors


def stats_of(campaign: CampaignRecord, evals: list[EvaluationRecord],
          checkpoint: Checkpoint | None) -> Stats:
    groups: dict[tuple[int, str], list[EvaluationRecord]] = {}
    for e in evals:
        groups.setdefault((e.stage, e.suite), []).append(e)
    stages = tuple(
        StageCount(stage, suite, len(group), _counts(e.status for e in group),
                   sum(e.wall_time or 0.0 for e in group))
        for (stage, suite), group in sorted(groups.items()))
    counters = dict(checkpoint.counters) if checkpoint else {}
    cache_hits = {f"{kind} hash" if kind != "fingerprint" else "behaviour fingerprint": n
                  for kind, n in dict(counters.get("cache_hits") or {}).items()}
    if "screen_cache_hits" in counters:
        cache_hits["screening score reused (same behaviour)"] = counters["screen_cache_hits"]
    rejections = dict(counters.get("rejections") or {})
    scalars = tuple((label, counters[key]) for key, label in COUNTERS if key in counters)
    end = campaign.finished_at or (evals[-1].created_at if evals else None) \
        or campaign.updated_at
    errors = _counts((e.error.strip().splitlines() or ["(empty)"])[0]
                     for e in evals if e.error and e.error.strip())
    return Stats(
        stages=stages, by_status=_counts(e.status for e in evals), counters=scalars,
        cache_hits=tuple(cache_hits.items()),
        rejections=tuple(sorted(rejections.items(), key=lambda kv: (-int(kv[1]), kv[0]))),
        training_seconds=sum(e.wall_time or 0.0 for e in evals),
        elapsed_seconds=(end - campaign.created_at).total_seconds() if end else None,
        first_evaluation_at=evals[0].created_at if evals else None,
        last_evaluation_at=evals[-1].created_at if evals else None,
        errors=errors[:10])


def _counts(items) -> tuple[tuple[str, int], ...]:
    counts: dict[str, int] = {}
    for item in items:
        counts[item] = counts.get(item, 0) + 1
    return tuple(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
