"""The campaign engine: steady-state regularized evolution over rule programs.

    seeds -> [stage 1: evolve] -> [stage 2: re-score the best] -> [simplify the winner]
          -> [validate the final candidates on held-out tasks]

Stage 1 is aging evolution (Real et al., 2019): a parent is the best of a random tournament,
its mutated child is checked, looked up in the duplicate caches (structural hash, canonical
hash, behaviour fingerprint: a hit reuses the stored score and costs no training), probed on
a small quadratic, screened on a cheap suite (`tiny`, about a fifth of the cost of `small`)
and only trained on the stage-1 suite if its screening score clears a hurdle (`hurdle`).
Every evaluated child joins the population and the oldest member dies. A worker that frees
up gets the next piece of work at once (`evolve`). When the best score has not improved for
`restart_after` evaluations, the population restarts from the seeds and the best so far.

The final candidates, the best programs on stage 2 (where winners are chosen, simplified
variants included), are then trained on the held-out validation suite and stored as stage
3 (`finalists`): never selected on, not counted in the budget.

The engine is built from injected parts, each behind a small interface:

* the store, as `storage.CampaignStore` (the SQLAlchemy `Store`, or `MemoryStore`);
* the breeding strategy (`breeding`: regularized evolution, or the random-search control),
  which owns the population and accepts immigrants;
* the duplicate caches (`caches.DuplicateCache`);
* the screening hurdle (`hurdle.Hurdle`);
* the recorder (`recorder.Recorder`), the one commit path;
* the evaluator pool (`run(pool=...)`: any object with `evaluators.pool.EvaluatorPool`'s
  interface; by default a local one with `workers` processes, or none when serial);
* when the campaign runs as one of several islands, its `islands.Island`: caches shared
  through the store and migration between islands.

Every finished evaluation is committed to the store in one transaction together with the
program, its lineage and the campaign's checkpoint (population, RNG state, counters), so a
killed campaign resumes where the database says it was: what was committed is kept, children
are drawn again from the restored RNG (a screening committed after the checkpoint is replayed
by its key, not trained again), nothing is evaluated twice. A serial campaign so resumes
exactly; on a pool, the children that were in flight at the kill are lost with it.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Callable, Iterable, Iterator

import numpy as np
from optforge.dsl import Program
from optforge.evaluators import EvalResult
from optforge.store import Checkpoint, LeaseLost, RankedProgram, leases

from optforge import dsl

from . import charging, evaluation, evolve, finalists
from .breeding import BreedingStrategy, strategy_for
from .caches import DuplicateCache, InMemoryCache
from .config import CampaignConfig, config_from_dict
from .counters import Counters
from .hurdle import HURDLE_WINDOW, Hurdle
from .individuals import Child, Member, finite_or_none, stored_score
from .islands import Island, island_of
from optforge.store.islands import island_name
from .probes import probe
from .recorder import Recorder
from .twins import leaner_twin
from .stages import STAGE1, Phase, Stage
from .storage import CampaignStore

__all__ = ["Campaign", "Member", "Child", "Counters", "HURDLE_WINDOW"]
# The phases and what runs them, in order; `Phase.DONE` has nothing left to run.
_PHASES = ((Phase.SEEDS, evolve.evaluate_seeds), (Phase.EVOLVE, evolve.evolve),
           (Phase.STAGE2, finalists.stage2), (Phase.SIMPLIFY, finalists.simplify),
           (Phase.VALIDATE, finalists.validate_finalists))


class Campaign:
    """One search campaign bound to a store. `run()` (or `resume`) drives it to the end.

    `breeding` and `caches` are factories of the parts (default: the configuration's
    strategy, in-memory caches), called again whenever the search state is rebuilt."""

    def __init__(self, store: CampaignStore, config: CampaignConfig, campaign_id: int,
                 progress: Callable[[Counters], None] | None = None,
                 lease_ttl: float = leases.DEFAULT_TTL,
                 breeding: Callable[[CampaignConfig], BreedingStrategy] = strategy_for,
                 caches: Callable[[], DuplicateCache] = InMemoryCache,
                 island: Island | None = None):
        self.store, self.config, self.id = store, config, campaign_id
        self.island = island
        if island is not None:
            caches = island.caches(store, config.funnel.stage1, config.funnel.screen)
        self.programs: dict[int, Program] = {}
        self.progress = progress
        self.stop_requested = False
        self.lease_ttl = lease_ttl
        self.recorder = Recorder(store, campaign_id)
        self._new_breeding, self._new_caches = breeding, caches
        self.reset()
        reserve = config.funnel.stage2_max + (
            config.simplify.max_ablations + 2 if config.simplify.enabled else 0)
        self.stage1_budget = max(1, config.budget - min(reserve, config.budget // 3))

    def reset(self) -> None:
        """The search state of a campaign that has committed nothing."""
        self.rng = np.random.default_rng(self.config.seed)
        self.counters = Counters()
        self.breeding = self._new_breeding(self.config)
        self.caches = self._new_caches()
        self.in_flight: dict[str, int] = {}  # structural hash -> child number, stage 1
        self.in_flight_cost: dict[str, float] = {}  # its expected charge (`charging`)
        self.screening: dict[str, int] = {}  # the same, screenings on the pool
        self.screened: dict[str, float] = {}  # screening key -> score, replayed on resume
        self.recorder.sequence = None  # of the last checkpoint this state includes

    # ---- construction -----------------------------------------------------------------------
    @classmethod
    def create(cls, store: CampaignStore, config: CampaignConfig, name: str,
               **kw) -> "Campaign":
        """A new campaign, stored as paused until `run` takes its lease."""
        record = store.create_campaign(name, config.to_dict(), status="paused")
        return cls(store, config, record.id, **kw)

    @classmethod
    def create_island(cls, store, config: CampaignConfig, group: str, index: int,
                      **kw) -> "Campaign":
        """Island `index` of campaign `group` (`search.islands`), stored as paused; it runs
        with seed ``config.seed + index``."""
        config = replace(config, seed=config.seed + index, name=island_name(group, index))
        record = store.create_campaign(config.name, config.to_dict(), status="paused",
                                       island_group=group, island=index)
        return cls(store, config, record.id, island=island_of(record, config), **kw)

    @classmethod
    def resume(cls, store: CampaignStore, name_or_id, **kw) -> "Campaign":
        """The campaign as its last checkpoint left it. `run` checks again once it holds
        the lease, and catches up if another process committed in between."""
        record = store.get_campaign(name_or_id)
        config = config_from_dict(record.config, f"campaign {record.name}")
        campaign = cls(store, config, record.id, island=island_of(record, config), **kw)
        campaign.restore(store.load_checkpoint(record.id))
        return campaign

    def restore(self, cp: Checkpoint | None) -> None:
        """The search state as checkpoint `cp` (None: nothing committed) and the
        evaluations committed with and after it leave it."""
        self.reset()
        if cp is None:
            return  # killed before its first commit: start afresh
        self.recorder.sequence = cp.sequence
        self.counters = Counters.from_json(dict(cp.counters))
        self.rng.bit_generator.state = cp.rng_state
        self.breeding.population = [Member(int(pid), stored_score(score))
                                    for pid, score, *_ in cp.population]
        # screenings committed after the checkpoint: their children are drawn again
        for r in self.store.stage_results(self.id, Stage.SCREEN):
            if r.key:
                self.screened[r.key] = stored_score(r.score)
            self.caches.add_screened(r.program.fingerprint, stored_score(r.score))
        for r in self.store.stage_results(self.id, STAGE1):
            p = r.program
            self.caches.add(p.structural_hash, p.canonical_hash, p.fingerprint,
                            Member(p.id, stored_score(r.score)))

    @property
    def population(self) -> list[Member]:
        return self.breeding.population

    @property
    def sequence(self) -> int | None:
        """The sequence of the last checkpoint this state includes."""
        return self.recorder.sequence

    @property
    def hurdle(self) -> Hurdle:
        """The screening hurdle over the window kept in the counters (and checkpoints)."""
        return Hurdle(self.config.funnel.hurdle, self.counters.recent_screens)

    # ---- the run ------------------------------------------------------------------------------
    def run(self, workers: int | None = None, pool=None) -> dict:
        """Run (or continue) the campaign; returns a summary. Ctrl-C stops it cleanly.

        `pool`: an evaluator pool (`evaluators.pool.EvaluatorPool`'s interface, e.g. an
        `evaluators.dask_pool.DaskPool`) to train on, left open at the end; None builds a
        local one with `workers` processes (None: one per core), or trains in this process
        when `workers` is 1.

        The run holds the campaign's lease throughout: a second run of the same campaign is
        refused with `LeaseHeld` while this one lives, and every commit checks the lease,
        so a run that lost it (`LeaseLost`) stops without writing."""
        self.recorder.lease = self.store.acquire_lease(self.id, ttl=self.lease_ttl)
        status = "failed"  # resumable all the same
        try:
            cp = self.store.load_checkpoint(self.id)
            if (cp.sequence if cp else None) != self.sequence:
                self.restore(cp)  # another process went on since this state was loaded
            with self.store.heartbeat(self.recorder.lease):
                self._run_phases(workers, pool)
            status = "paused" if self.stop_requested else "finished"
        except LeaseLost:
            self.recorder.lease = None  # not ours to release
            raise
        finally:
            if self.recorder.lease is not None:
                self._release(status)
        return self.summary(status)

    def _release(self, status: str) -> None:
        """Give the lease up. If the database fails here too (a full disk, a lost server),
        the error that ended the run matters more: the lease then expires (or dies with
        this process) and the campaign reads as interrupted."""
        lease, self.recorder.lease = self.recorder.lease, None
        try:
            self.store.release_lease(lease, status)
        except Exception:
            if status != "failed":
                raise

    def _run_phases(self, workers: int | None, pool) -> None:
        own = pool is None and workers != 1
        if own:
            from optforge.evaluators.pool import EvaluatorPool
            pool = EvaluatorPool(workers)
        try:
            for phase, run_phase in _PHASES:
                if self.counters.phase is phase:
                    run_phase(self, pool)
        except KeyboardInterrupt:
            self.stop_requested = True
        finally:
            if own:
                pool.close()

    def summary(self, status: str) -> dict:
        """The counters, the winner (the best on stage 2, else on stage 1) and the stored
        validations (stage 3: program, suite, score, per-task scores, comparators)."""
        c = self.counters
        winner = self.finalists(1)
        return {"campaign": self.id, "status": status, "phase": c.phase.value,
                "winner": winner[0].program.id if winner else None,
                "validation": finalists.validations_json(self),
                "evaluations": c.evaluations, "charge": self.config.search.charge,
                "spent": c.spent, "children": c.children,
                "cache_hits": dict(c.cache_hits), "hit_rate": c.hit_rate,
                "rejections": dict(c.rejections), "best_stage1": c.to_json()["best_score"],
                "best_program": c.best_program, "restarts": c.restarts,
                "screenings": c.screenings, "screen_cache_hits": c.screen_cache_hits,
                "full_evaluation_fraction": c.trained_fraction}

    def finalists(self, n: int) -> list[RankedProgram]:
        """The campaign's best `n` programs where winners are chosen: by stage-2 score
        (simplified variants included), or by stage-1 score when nothing reached stage 2.
        Never by validation score. The first is the campaign's winner."""
        return finalists.best(self, n)

    # ---- children -----------------------------------------------------------------------------
    def stage1_open(self) -> bool:
        """Whether another child may start stage 1: the budget spent, expected in flight and
        one pass more (`charging`; by count: committed + in flight + 1) fit in the stage-1
        budget."""
        expected = sum(self.in_flight_cost.get(h, 1.0) for h in self.in_flight)
        return (not self.stop_requested and self.counters.spent + expected
                + charging.per_pass(self) <= self.stage1_budget + 1e-9)

    def start_stage1(self, child: Child) -> None:
        """Count `child` in flight on stage 1 at its expected charge."""
        structural = dsl.structural_hash(child.program)
        self.in_flight[structural] = child.number
        self.in_flight_cost[structural] = charging.expected(self, child.program)

    def budget_left(self) -> float:
        """The budget not spent yet (evaluations' worth)."""
        return self.config.budget - self.counters.spent

    def draw(self) -> Child | None:
        """The next child: bred, checked, looked up in the duplicate caches and probed. None
        when it is a cache hit (it joins the population) or rejected (counted)."""
        c = self.counters
        c.children += 1
        parent_id, result = self.breeding.breed(self.rng, self.program, c.seed_ids)
        for reason, n in result.rejections.items():
            c.reject(reason, n)
        if result.child is None:
            c.reject("no valid child")
            return None
        child = replace(result.child, name=f"c{c.children}", doc="")
        c.proposed += 1
        structural = dsl.structural_hash(child)
        if structural in self.in_flight or structural in self.screening:
            c.reject("duplicate in flight")  # its twin's result is not in yet
            return None
        hit = self.caches.lookup({"structural": lambda: structural,
                                  "canonical": lambda: dsl.canonical_hash(child),
                                  "fingerprint": lambda: dsl.fingerprint(child)})
        if hit is not None:
            kind, member = hit
            c.cache_hits[kind] += 1
            self.breeding.join(leaner_twin(self, member, child, parent_id, result.kind)
                               or member)
            return None
        reason = probe(child)
        if reason is not None:
            c.reject(reason)
            return None
        return Child(child, parent_id, result.kind, c.children)

    def program(self, program_id: int) -> Program:
        """The stored program `program_id` (parsed once)."""
        if program_id not in self.programs:
            self.programs[program_id] = dsl.parse(self.store.get_program(program_id).source)
        return self.programs[program_id]

    def stage_scores(self, stage: Stage) -> dict[int, float]:
        """Program id -> its latest committed score at `stage` in this campaign."""
        return {r.program.id: r.score for r in self.store.stage_results(self.id, stage)
                if r.score is not None}

    def evaluate(self, children: Iterable[Child], suite: str,
                 pool) -> Iterator[tuple[Child, EvalResult]]:
        """(child, result) as each finishes: in this process when `pool` is None
        (deterministic order), else lazily through the pool."""
        return evaluation.evaluate_children(children, suite, pool)

    # ---- recording ----------------------------------------------------------------------------
    def record_stage1(self, child: Child, result: EvalResult) -> None:
        """Count a stage-1 result: the child joins the population and the caches, the best
        and the restart clock move, and all of it is committed with the checkpoint."""
        c = self.counters
        structural = dsl.structural_hash(child.program)
        self.in_flight.pop(structural, None)
        self.in_flight_cost.pop(structural, None)
        score = result.score if math.isfinite(result.score) else -math.inf
        # the program row first (idempotent, race-safe), then everything else at once
        record = self.store.add_program(child.program)
        member = Member(record.id, score)
        self.programs[record.id] = child.program
        c.evaluations += 1
        c.stage1_evaluations += 1
        c.spent += charging.charge(self, child.program, result, record.id)
        if c.phase is Phase.SEEDS:
            charging.note_seed(self, child.number, child.program, result)
        c.account(result.suite, result.wall_time)
        if score > c.best_score:
            c.best_score, c.best_program, c.since_improvement = score, record.id, 0
        else:
            c.since_improvement += 1
        self.breeding.join(member)
        self.caches.add(record.structural_hash, record.canonical_hash, record.fingerprint,
                        member)
        if c.since_improvement >= self.config.evolution.restart_after:
            c.restarts += 1
            c.since_improvement = 0
            self.breeding.restart(Member(c.best_program, c.best_score), c.seed_ids)
        self.recorder.record(record.id, STAGE1, result,
                             f"stage1/{child.kind}/{child.number}", parent=child.parent_id,
                             mutation=child.kind, checkpoint=self.checkpoint_state())
        if self.island is not None and self.island.due(c.stage1_evaluations):
            self.island.migrate(self)
        if self.progress:
            self.progress(c)

    def record_later(self, program_id: int, result: EvalResult, stage: Stage,
                     parent_id: int | None = None, kind: str | None = None) -> None:
        """Count and commit a budgeted evaluation after stage 1 (stage 2, simplification)."""
        self.counters.evaluations += 1
        self.counters.spent += charging.charge(self, self.program(program_id), result,
                                               program_id)
        self.counters.account(result.suite, result.wall_time)
        self.recorder.record(program_id, stage, result, f"stage{int(stage)}/{program_id}",
                             parent=parent_id, mutation=kind,
                             checkpoint=self.checkpoint_state())
        if self.progress:
            self.progress(self.counters)

    def finish_phase(self, phase: Phase) -> None:
        """Go on from `phase` to the next phase the configuration enables; checkpoint."""
        enabled = {Phase.SEEDS, Phase.EVOLVE, Phase.STAGE2}
        if self.config.simplify.enabled:
            enabled.add(Phase.SIMPLIFY)
        if self.config.validation.enabled:
            enabled.add(Phase.VALIDATE)
        self.counters.phase = phase.following(frozenset(enabled))
        self.checkpoint_now()

    def checkpoint_state(self) -> dict:
        """The resume state as it is now (the checkpoint's JSON)."""
        return {"population": [[m.program_id, finite_or_none(m.score)] for m in self.population],
                "rng_state": self.rng.bit_generator.state, "counters": self.counters.to_json()}

    def checkpoint_now(self) -> None:
        self.recorder.commit(checkpoint=self.checkpoint_state())

