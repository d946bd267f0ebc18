"""The campaign engine: steady-state regularized evolution over rule programs.

    seeds -> [stage 1: evolve] -> [stage 2: re-score the best] -> [simplify the winner]
          -> [validate the final candidates on held-out tasks]

Stage 1 is aging evolution (Real et al., 2019): a parent is the best of a random tournament,
its mutated child is checked, looked up in the duplicate caches (structural hash, canonical
hash, behaviour fingerprint: a hit reuses the stored score and costs no training), probed on
a small quadratic, screened on a cheap suite (`tiny`, about a fifth of the cost of `small`)
and only trained on the stage-1 suite if its screening score clears a hurdle: a quantile of
the screening scores of the children screened before it (the progressive dynamic hurdles of
So et al., 2019, whose hurdle is the mean of the candidates that reached it). A quantile of
the children, not of the population: as the population improves, most children fall below
its median, and a hurdle set there would spend more on screenings than it saves. Every
evaluated child joins the population and the oldest member dies. A worker that frees up gets
the next piece of work at once (children are drawn lazily by the evaluator pool): a child that
cleared the hurdle and waits for stage 1, else the screening of a new child. Screenings run on
the pool beside the stage-1 trainings; only a serial campaign screens in this process. When
the best score has not improved for `restart_after` evaluations, the population restarts from
the seeds and the best so far.

The final candidates, the best programs on stage 2 (where winners are chosen, simplified
variants included), are then trained on the held-out validation suite
(`evaluators.validation`) and stored as stage 3 with the comparators' scores beside them:
the honest estimate of what the campaign found. Validation is never selected on (it runs
after the choice, and nothing reads its scores back) and is not counted in the budget.

Every finished evaluation is committed to the store in one transaction together with the
program, its lineage and the campaign's checkpoint (population, RNG state, counters), so a
killed campaign resumes where the database says it was: what was committed is kept, children
are drawn again from the restored RNG (a screening committed after the checkpoint is replayed
by its key, not trained again), nothing is evaluated twice. A serial campaign so resumes
exactly; on a pool, the children that were in flight at the kill are lost with it.
"""

from __future__ import annotations

import math
from collections import Counter, deque
from dataclasses import dataclass, field, replace
from typing import Callable, Iterator

import numpy as np
import torch
from optforge.dsl import Program
from optforge.evaluators import EvalResult, evaluate, evaluate_many, evaluate_on_suites
from optforge.evaluators.pool import EvaluatorPool
from optforge.evaluators.scoring import geometric_mean
from optforge.evaluators.validation import ValidationReport, validate
from optforge.store import (
    Checkpoint,
    Lease,
    LeaseLost,
    RankedProgram,
    Store,
    Transaction,
    leases,
)
from optforge.store.records import TaskResultRecord

from optforge import dsl
from optforge import seeds as seed_lib

from . import campaign_view
from .config import CampaignConfig, config_from_dict
from .individuals import Child, Member
from .mutations import MutationResult, mutate
from .probes import probe
from .stages import SCREEN, STAGE1, STAGE2, STAGE_VALIDATION

__all__ = ["Campaign", "Member", "Child"]

PHASES = ("seeds", "evolve", "stage2", "simplify", "validate", "done")
HURDLE_WINDOW = 64  # the hurdle is a quantile of this many most recent screening scores
MIN_HURDLE_SCREENINGS = 4  # screening scores needed before the hurdle applies


@dataclass
class Counters:
    """The campaign's counters; saved in every checkpoint."""

    phase: str = "seeds"
    evaluations: int = 0  # full evaluations spent, all stages
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
    seed_ids: list = field(default_factory=list)
    training: dict = field(default_factory=dict)  # suite -> [evaluations, training seconds]

    def to_json(self) -> dict:
        d = dict(self.__dict__)
        d["training"] = {suite: list(v) for suite, v in self.training.items()}
        d["cache_hits"], d["rejections"] = dict(self.cache_hits), dict(self.rejections)
        d["seed_ids"] = list(self.seed_ids)
        d["recent_screens"] = list(self.recent_screens)
        d["best_score"] = None if self.best_score == -math.inf else self.best_score
        return d

    @classmethod
    def from_json(cls, d: dict) -> "Counters":
        c = cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})
        c.best_score = -math.inf if c.best_score is None else c.best_score
        return c

    @property
    def trained_fraction(self) -> float | None:
        """The fraction of children trained on stage 1 (the seeds are not children)."""
        if not self.children:
            return None
        return max(0, self.stage1_evaluations - len(self.seed_ids)) / self.children

    @property
    def hit_rate(self) -> float:
        return sum(self.cache_hits.values()) / self.proposed if self.proposed else 0.0


class Campaign:
    """One search campaign bound to a store. `run()` (or `resume`) drives it to the end."""

    def __init__(self, store: Store, config: CampaignConfig, campaign_id: int,
                 progress: Callable[[Counters], None] | None = None,
                 lease_ttl: float = leases.DEFAULT_TTL):
        self.store, self.config, self.id = store, config, campaign_id
        self.programs: dict[int, Program] = {}
        self.progress = progress
        self.stop_requested = False
        self.lease_ttl = lease_ttl
        self.lease: Lease | None = None  # held while `run` runs
        self._reset()
        reserve = config.funnel.stage2_max + (
            config.simplify.max_ablations + 2 if config.simplify.enabled else 0)
        self.stage1_budget = max(1, config.budget - min(reserve, config.budget // 3))

    def _reset(self) -> None:
        """The search state of a campaign that has committed nothing."""
        self.rng = np.random.default_rng(self.config.seed)
        self.counters = Counters()
        self.population: list[Member] = []
        self.caches: dict[str, dict[str, Member]] = {"structural": {}, "canonical": {},
                                                     "fingerprint": {}}
        self.in_flight: dict[str, int] = {}  # structural hash -> child number, stage 1
        self.screening: dict[str, int] = {}  # the same, screenings on the pool
        self.screened: dict[str, float] = {}  # screening key -> score, replayed on resume
        self.screen_cache: dict[str, float] = {}  # fingerprint -> screening score
        self.sequence: int | None = None  # of the last checkpoint this state includes

    # ---- construction -----------------------------------------------------------------------
    @classmethod
    def create(cls, store: Store, config: CampaignConfig, name: str, **kw) -> "Campaign":
        """A new campaign, stored as paused until `run` takes its lease."""
        record = store.create_campaign(name, config.to_dict(), status="paused")
        return cls(store, config, record.id, **kw)

    @classmethod
    def resume(cls, store: Store, name_or_id, **kw) -> "Campaign":
        """The campaign as its last checkpoint left it. `run` checks again once it holds
        the lease, and catches up if another process committed in between."""
        record = store.get_campaign(name_or_id)
        config = config_from_dict(record.config, f"campaign {record.name}")
        campaign = cls(store, config, record.id, **kw)
        campaign._restore(store.load_checkpoint(record.id))
        return campaign

    def _restore(self, cp: Checkpoint | None) -> None:
        self._reset()
        if cp is None:
            return  # killed before its first commit: start afresh
        self.sequence = cp.sequence
        self.counters = Counters.from_json(dict(cp.counters))
        self.rng.bit_generator.state = cp.rng_state
        self.population = [Member(int(pid), _score(score)) for pid, score, *_ in cp.population]
        evaluations = self.store.evaluations(campaign=self.id)
        # screenings committed after the checkpoint: their children are drawn again
        self.screened = {ev.key: _score(ev.score)
                         for ev in evaluations if ev.stage == SCREEN and ev.key}
        for ev in evaluations:
            if ev.stage == SCREEN:
                rec = self.store.get_program(ev.program_id)
                self.screen_cache.setdefault(rec.fingerprint, _score(ev.score))
            if ev.stage == STAGE1:
                rec = self.store.get_program(ev.program_id)
                self._cache(rec.structural_hash, rec.canonical_hash, rec.fingerprint,
                            Member(rec.id, _score(ev.score)))

    # ---- the run ------------------------------------------------------------------------------
    def run(self, workers: int | None = None, pool=None) -> dict:
        """Run (or continue) the campaign; returns a summary. Ctrl-C stops it cleanly.
        `pool`: run the evaluations on it (an `EvaluatorPool` or an
        `evaluators.dask_pool.DaskPool`; left open) instead of a pool of `workers` made here.

        The run holds the campaign's lease (`store.leases`) throughout: a second run of the
        same campaign is refused with `LeaseHeld` while this one lives, and every commit
        checks the lease, so a run that lost it (`LeaseLost`) stops without writing."""
        self.lease = self.store.acquire_lease(self.id, ttl=self.lease_ttl)
        status = "failed"  # resumable all the same
        try:
            cp = self.store.load_checkpoint(self.id)
            if (cp.sequence if cp else None) != self.sequence:
                self._restore(cp)  # another process went on since this state was loaded
            with self.store.heartbeat(self.lease):
                self._run_phases(workers, pool)
            status = "paused" if self.stop_requested else "finished"
        except LeaseLost:
            self.lease = None  # not ours to release
            raise
        finally:
            if self.lease is not None:
                self._release(status)
        return self.summary(status)

    def _release(self, status: str) -> None:
        """Give the lease up. If the database fails here too (a full disk, a lost server),
        the error that ended the run matters more: the lease then expires (or dies with
        this process) and the campaign reads as interrupted."""
        lease, self.lease = self.lease, None
        try:
            self.store.release_lease(lease, status)
        except Exception:
            if status != "failed":
                raise

    def _run_phases(self, workers: int | None, given=None) -> None:
        pool = given if given is not None or workers == 1 else EvaluatorPool(workers)
        try:
            if self.counters.phase == "seeds":
                self._evaluate_seeds(pool)
            if self.counters.phase == "evolve":
                self._evolve(pool)
            if self.counters.phase == "stage2":
                self._stage2(pool)
            if self.counters.phase == "simplify":
                self._simplify_winner(pool)
            if self.counters.phase == "validate":
                self._validate_finalists(pool)
        except KeyboardInterrupt:
            self.stop_requested = True
        finally:
            if pool is not None and pool is not given:
                pool.close()

    def summary(self, status: str) -> dict:
        """The counters, the winner (the best on stage 2, else on stage 1) and the stored
        validations (stage 3: program, suite, score, per-task scores, comparators)."""
        c = self.counters
        winner = self.finalists(1)
        return {"campaign": self.id, "status": status, "phase": c.phase,
                "winner": winner[0].program.id if winner else None,
                "validation": self._validations_json(),
                "evaluations": c.evaluations, "children": c.children,
                "cache_hits": dict(c.cache_hits), "hit_rate": c.hit_rate,
                "rejections": dict(c.rejections), "best_stage1": c.to_json()["best_score"],
                "best_program": c.best_program, "restarts": c.restarts,
                "screenings": c.screenings, "screen_cache_hits": c.screen_cache_hits,
                "full_evaluation_fraction": c.trained_fraction}

    # ---- stage 0: seeds ----------------------------------------------------------------------
    def _seed_programs(self) -> list[Program]:
        programs = []
        for name in self.config.seeds:
            if name.endswith(".rule"):
                programs.append(dsl.ensure_valid(dsl.load(name)))
            else:
                programs.append(seed_lib.load_seed(name))
        return programs

    def _evaluate_seeds(self, pool) -> None:
        done = self.caches["structural"]  # seeds committed before a kill are not redone
        children = [Child(p, None, "seed", i) for i, p in enumerate(self._seed_programs())
                    if dsl.structural_hash(p) not in done]
        screen = self.config.funnel.screen
        if screen and pool is None:  # seeds are screened too: the hurdle's first scores
            for child in children:
                self._below_hurdle(self._screen(child))
        elif screen:
            unknown = []
            for child in children:
                known = self._known_screen(child)
                if known is None:
                    unknown.append(child)
                else:
                    self._below_hurdle(known)
            for child, result in self._evaluate(unknown, screen, pool):
                self._below_hurdle(self._commit_screening(child, result))
        for child, result in self._evaluate(children, self.config.funnel.stage1, pool):
            self._record_stage1(child, result)
        self.counters.seed_ids = [m.program_id for m in self.population]
        self.counters.phase = "evolve"
        self._checkpoint_now()

    # ---- stage 1: evolution ------------------------------------------------------------------
    def _evolve(self, pool) -> None:
        if pool is not None and self.config.funnel.screen:
            results = self._evaluate_screened(pool)
        else:
            results = self._evaluate(self._children(), self.config.funnel.stage1, pool)
        for child, result in results:
            self._record_stage1(child, result)
            if self.stop_requested:
                break
        if not self.stop_requested:
            self.counters.phase = "stage2"
            self._checkpoint_now()

    def _stage1_open(self) -> bool:
        """Whether another child may start stage 1 (committed + in flight < stage-1 budget)."""
        c = self.counters
        return not self.stop_requested and c.evaluations + len(self.in_flight) < self.stage1_budget

    def _children(self) -> Iterator[Child]:
        """Valid, new, probed children that cleared the screening hurdle (screened here, in
        this process), drawn lazily while the stage-1 budget lasts."""
        while self._stage1_open():
            candidate = self._draw()
            if candidate is None:
                continue
            if self.config.funnel.screen:
                reason = self._below_hurdle(self._screen(candidate))
                if reason is not None:
                    self._reject(reason)
                    continue
            self.in_flight[dsl.structural_hash(candidate.program)] = candidate.number
            yield candidate

    def _evaluate_screened(self, pool) -> Iterator[tuple[Child, EvalResult]]:
        """(child, stage-1 result) as each finishes, with the screenings on the pool too: a
        free worker screens the next child drawn, unless a child that cleared the hurdle
        waits for stage 1, which goes first. This process only breeds and decides, so with
        many workers the screenings run in parallel. The hurdle sees screening scores in
        the order they finish."""
        f = self.config.funnel
        passed: deque[Child] = deque()  # cleared the hurdle, counted in flight, not started
        drawn: list[tuple[Child, int]] = []

        def work() -> Iterator[tuple[Program, str]]:
            while not self.stop_requested:
                if passed:
                    drawn.append((passed.popleft(), STAGE1))
                    yield drawn[-1][0].program, f.stage1
                    continue
                if not self._stage1_open():
                    return
                candidate = self._draw()
                if candidate is None:
                    continue
                known = self._known_screen(candidate)
                if known is None:
                    self.screening[dsl.structural_hash(candidate.program)] = candidate.number
                    drawn.append((candidate, SCREEN))
                    yield candidate.program, f.screen
                elif self._clears_hurdle(candidate, known):
                    passed.append(candidate)

        for result in evaluate_on_suites(work(), (f.screen, f.stage1), pool=pool):
            child, stage = drawn[result.index]
            if stage == STAGE1:
                yield child, result
                continue
            self.screening.pop(dsl.structural_hash(child.program), None)
            if self._clears_hurdle(child, self._commit_screening(child, result)):
                passed.append(child)

    def _clears_hurdle(self, child: Child, screen: float) -> bool:
        """Decide on a screened child: True (and it is counted in flight) if it goes on to
        stage 1, else its rejection is counted."""
        reason = self._below_hurdle(screen)
        if reason is None and not self._stage1_open():
            reason = "screen: cleared after the budget was spent"
        if reason is not None:
            self._reject(reason)
            return False
        self.in_flight[dsl.structural_hash(child.program)] = child.number
        return True

    def _draw(self) -> Child | None:
        """The next child: bred, checked, looked up in the duplicate caches and probed. None
        when it is a cache hit (it joins the population) or rejected (counted)."""
        c = self.counters
        c.children += 1
        parent_id, result = self._breed()
        for reason, n in result.rejections.items():
            c.rejections[reason] = c.rejections.get(reason, 0) + n
        if result.child is None:
            self._reject("no valid child")
            return None
        child = replace(result.child, name=f"c{c.children}", doc="")
        c.proposed += 1
        structural = dsl.structural_hash(child)
        if structural in self.in_flight or structural in self.screening:
            self._reject("duplicate in flight")  # its twin's result is not in yet
            return None
        hit = self._lookup(child, structural)
        if hit is not None:
            self._join(hit)
            return None
        reason = probe(child)
        if reason is not None:
            self._reject(reason)
            return None
        return Child(child, parent_id, result.kind, c.children)

    def _breed(self):
        """(parent id, mutation result). Evolution mutates the winner of a tournament; the
        random-search control mutates a random seed 1 to 8 times, with no selection."""
        cfg = self.config
        if cfg.evolution.strategy == "random":
            parent_id = int(self.rng.choice(self.counters.seed_ids))
            program, kinds, rejections = self._program(parent_id), [], Counter()
            for _ in range(int(self.rng.integers(1, 9))):
                r = mutate(program, self.rng, dict(cfg.mutations), cfg.limits)
                rejections.update(r.rejections)
                if r.child is None:
                    break
                program = r.child
                kinds.append(r.kind)
            child = program if kinds else None
            return parent_id, MutationResult(child, "random", rejections)
        parent = self._tournament()
        return parent.program_id, mutate(self._program(parent.program_id), self.rng,
                                         dict(cfg.mutations), cfg.limits)

    def _screen(self, child: Child) -> float:
        """The child's score on the screening suite: known (`_known_screen`) or trained
        here, on one thread, and committed."""
        known = self._known_screen(child)
        if known is not None:
            return known
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            result = evaluate(child.program, self.config.funnel.screen)
        finally:
            torch.set_num_threads(threads)
        return self._commit_screening(child, result)

    def _known_screen(self, child: Child) -> float | None:
        """The child's screening score without training: replayed from the store when a
        resumed campaign draws it again, or reused when a program with the same behaviour
        was screened before. None when it must be screened."""
        key = f"stage0/{child.kind}/{child.number}"
        if key in self.screened:  # drawn again after a resume: as the first time
            self.counters.screenings += 1
            return self.screened[key]
        fingerprint = dsl.fingerprint(child.program)
        if fingerprint in self.screen_cache:
            self.counters.screen_cache_hits += 1
            return self.screen_cache[fingerprint]
        return None

    def _account(self, result: EvalResult) -> None:
        """Count an evaluation's training time on its suite (what `search.eta` reads)."""
        n, seconds = self.counters.training.get(result.suite, (0, 0.0))
        self.counters.training[result.suite] = [n + 1, seconds + (result.wall_time or 0.0)]

    def _commit_screening(self, child: Child, result: EvalResult) -> float:
        """Store a screening (stage 0) with the child's lineage; its score."""
        self.counters.screenings += 1
        self._account(result)
        record = self.store.add_program(child.program)
        self.programs[record.id] = child.program

        def write(tx):
            if child.parent_id is not None:
                tx.add_lineage(record.id, child.parent_id, child.kind, campaign=self.id)
            tx.add_evaluation(record.id, campaign=self.id, stage=SCREEN, **_evaluation(result),
                              key=f"stage0/{child.kind}/{child.number}")
        self._commit(write, checkpoint=False)
        score = _score(result.score)
        self.screen_cache.setdefault(record.fingerprint, score)
        return score

    def _below_hurdle(self, screen: float) -> str | None:
        """None if a child with screening score `screen` goes on to stage 1, else why not.
        Its score then joins the hurdle's window."""
        if not math.isfinite(screen):
            return "screen: failed"
        window = self.counters.recent_screens
        below = (len(window) >= MIN_HURDLE_SCREENINGS
                 and screen < float(np.quantile(window, self.config.funnel.hurdle)))
        window.append(screen)
        del window[:-HURDLE_WINDOW]
        return "screen: below the hurdle" if below else None

    def _tournament(self) -> Member:
        k = min(self.config.evolution.tournament, len(self.population))
        picks = self.rng.choice(len(self.population), size=k, replace=False)
        return max((self.population[int(i)] for i in sorted(picks)), key=lambda m: m.score)

    def _lookup(self, child: Program, structural: str) -> Member | None:
        """A stored result for a program equal to `child` (by structure, canonical form or
        behaviour), counting the hit; None on a miss."""
        checks = (("structural", lambda: structural),
                  ("canonical", lambda: dsl.canonical_hash(child)),
                  ("fingerprint", lambda: dsl.fingerprint(child)))
        for kind, key in checks:
            member = self.caches[kind].get(key())
            if member is not None:
                self.counters.cache_hits[kind] += 1
                return member
        return None

    def _reject(self, reason: str) -> None:
        r = self.counters.rejections
        r[reason] = r.get(reason, 0) + 1

    def _cache(self, structural: str, canonical: str, fingerprint: str, m: Member) -> None:
        self.caches["structural"].setdefault(structural, m)
        self.caches["canonical"].setdefault(canonical, m)
        self.caches["fingerprint"].setdefault(fingerprint, m)

    def _join(self, member: Member) -> None:
        """Aging: the newcomer joins, the oldest dies."""
        self.population.append(member)
        if len(self.population) > self.config.evolution.population:
            self.population.pop(0)

    def _record_stage1(self, child: Child, result: EvalResult) -> None:
        c = self.counters
        self.in_flight.pop(dsl.structural_hash(child.program), None)
        score = result.score if math.isfinite(result.score) else -math.inf
        # the program row first (idempotent, race-safe), then everything else at once
        record = self.store.add_program(child.program)
        member = Member(record.id, score)
        self.programs[record.id] = child.program
        c.evaluations += 1
        c.stage1_evaluations += 1
        self._account(result)
        improved = score > c.best_score
        if improved:
            c.best_score, c.best_program, c.since_improvement = score, record.id, 0
        else:
            c.since_improvement += 1
        self._join(member)
        self._cache(record.structural_hash, record.canonical_hash, record.fingerprint, member)
        if c.since_improvement >= self.config.evolution.restart_after:
            self._restart()

        def write(tx):
            if child.parent_id is not None:
                tx.add_lineage(record.id, child.parent_id, child.kind, campaign=self.id)
            tx.add_evaluation(record.id, campaign=self.id, stage=STAGE1, **_evaluation(result),
                              key=f"stage1/{child.kind}/{child.number}")
        self._commit(write)
        if self.progress:
            self.progress(c)

    def _restart(self) -> None:
        c = self.counters
        c.restarts += 1
        c.since_improvement = 0
        best = Member(c.best_program, c.best_score)
        seeds = [m for m in self.population if m.program_id in c.seed_ids]
        self.population = [best] + [m for m in seeds if m.program_id != best.program_id]

    # ---- stage 2: the funnel ----------------------------------------------------------------
    def _stage2(self, pool) -> None:
        f = self.config.funnel
        done = self._stored_scores(STAGE2)
        left = self.config.budget - self.counters.evaluations
        seed_ids = set(self.counters.seed_ids)
        top = self.store.top(f.stage2_max + len(seed_ids) + len(done), campaign=self.id,
                             suite=f.stage1)
        picks = [r for r in top if r.program.id not in seed_ids and r.score is not None
                 and r.score >= f.threshold and r.program.id not in done]
        if not picks and not done and top:
            picks = [r for r in top if r.program.id not in seed_ids][:1]
        picks = picks[:max(0, min(f.stage2_max - len(done), left))]
        children = [Child(self._program(r.program.id), r.program.id, "stage2", i)
                    for i, r in enumerate(picks)]
        for child, result in self._evaluate(children, f.stage2, pool):
            self._record_later(child.parent_id, result, STAGE2)
            if self.stop_requested:
                return
        self._finish_phase("stage2")

    def _stored_scores(self, stage: int) -> dict[int, float]:
        return {ev.program_id: ev.score for ev in self.store.evaluations(campaign=self.id)
                if ev.stage == stage and ev.score is not None}

    def _program(self, program_id: int) -> Program:
        if program_id not in self.programs:
            self.programs[program_id] = dsl.parse(self.store.get_program(program_id).source)
        return self.programs[program_id]

    def _record_later(self, program_id: int, result: EvalResult, stage: int,
                      parent_id: int | None = None, kind: str | None = None) -> None:
        self.counters.evaluations += 1
        self._account(result)

        def write(tx):
            if parent_id is not None:
                tx.add_lineage(program_id, parent_id, kind, campaign=self.id)
            tx.add_evaluation(program_id, campaign=self.id, stage=stage, **_evaluation(result),
                              key=f"stage{stage}/{program_id}")
        self._commit(write)
        if self.progress:
            self.progress(self.counters)

    # ---- the winner, simplified ---------------------------------------------------------------
    def _simplify_winner(self, pool) -> None:
        from .simplify_winner import simplify_winner
        scores = self._stored_scores(STAGE2)
        if scores:
            winner_id = max(scores, key=lambda pid: scores[pid])
            simplify_winner(self, winner_id, scores[winner_id], pool)
        if not self.stop_requested:
            self._finish_phase("simplify")

    # ---- held-out validation of the final candidates --------------------------------------------
    def finalists(self, n: int) -> list[RankedProgram]:
        """The campaign's best `n` programs where winners are chosen: by stage-2 score
        (simplified variants included), or by stage-1 score when nothing reached stage 2.
        Never by validation score. The first is the campaign's winner."""
        return campaign_view.finalists(self.store, self.id, n)

    def _validate_finalists(self, pool) -> None:
        """Train each final candidate on the validation suite and store it as stage 3, once:
        a candidate validated before a resume is not trained again."""
        v = self.config.validation
        if self.progress:
            self.progress(self.counters)
        done = {ev.program_id for ev in self.store.evaluations(campaign=self.id,
                                                               stage=STAGE_VALIDATION)}
        for ranked in self.finalists(v.candidates):
            if ranked.program.id in done:
                continue
            report = validate(self._program(ranked.program.id), v.suite,
                              workers=1 if pool is None else None, pool=pool)
            self._record_validation(ranked.program.id, report)
            if self.stop_requested:
                return
        self._finish_phase("validate")

    def _record_validation(self, program_id: int, report: ValidationReport) -> None:
        """Store a validation (stage 3, outside the budget): the rule's evaluation with, in
        each task's metrics, its seed scores, the comparators' results and the suite
        version."""
        extra = {}
        for t, seeds in zip(report.result.tasks, report.seed_scores):
            extra[t.task] = {"seed_scores": list(seeds), "suite_version": report.version,
                             "comparators": {c.name: {"score": c.task(t.task).score,
                                                      "loss": c.task(t.task).loss,
                                                      "best_lr": c.task(t.task).best_lr,
                                                      "status": c.task(t.task).status}
                                             for c in report.comparators}}
        self._account(report.result)

        def write(tx):
            tx.add_evaluation(program_id, campaign=self.id, stage=STAGE_VALIDATION,
                              **_evaluation(report.result, extra),
                              key=f"stage{STAGE_VALIDATION}/{program_id}")
        self._commit(write)

    def _validations_json(self) -> list[dict]:
        """The stored validations, for the summary: the comparators' suite scores are the
        geometric means of their per-task scores (kept in each task's metrics)."""
        out = []
        for ev in sorted(self.store.evaluations(campaign=self.id, stage=STAGE_VALIDATION),
                         key=lambda e: e.id):
            rivals: dict[str, list[float]] = {}
            for t in ev.tasks:
                for rival, c in (dict(t.metrics).get("comparators") or {}).items():
                    rivals.setdefault(rival, []).append(c["score"])
            out.append({"program": ev.program_id,
                        "name": self.store.get_program(ev.program_id).name,
                        "suite": ev.suite, "status": ev.status, "score": ev.score,
                        "tasks": {t.task: t.score for t in ev.tasks},
                        "comparators": {rival: geometric_mean(scores)
                                        for rival, scores in rivals.items()
                                        if len(scores) == len(ev.tasks)}})
        return out

    def _finish_phase(self, phase: str) -> None:
        """Go on from `phase` to the next phase the configuration enables; checkpoint."""
        enabled = {"simplify": self.config.simplify.enabled,
                   "validate": self.config.validation.enabled, "done": True}
        later = PHASES[PHASES.index(phase) + 1:]
        self.counters.phase = next(p for p in later if enabled.get(p, True))
        self._checkpoint_now()

    # ---- evaluation and checkpoints -------------------------------------------------------------
    def _evaluate(self, children, suite: str, pool) -> Iterator[tuple[Child, EvalResult]]:
        """(child, result) as each finishes: in this process when serial (deterministic
        order), else lazily through the pool."""
        if pool is None:
            for child in children:
                yield child, evaluate(child.program, suite)
            return
        drawn: list[Child] = []

        def programs():
            for child in children:
                drawn.append(child)
                yield child.program
        for result in evaluate_many(programs(), suite, pool=pool):
            yield drawn[result.index], result

    def _checkpoint(self) -> dict:
        counters = self.counters.to_json()
        return {"population": [[m.program_id, _finite(m.score)] for m in self.population],
                "rng_state": self.rng.bit_generator.state, "counters": counters}

    def _checkpoint_now(self) -> None:
        self._commit(lambda tx: None)

    def _commit(self, write: Callable[[Transaction], None], checkpoint: bool = True) -> None:
        """One transaction: the lease check, `write(tx)`, and (unless `checkpoint` is
        False) the checkpoint of the state as it is now, which accounts for the write."""
        state = self._checkpoint() if checkpoint else None

        def transaction(tx: Transaction) -> int | None:
            if self.lease is not None:
                tx.check_lease(self.lease)
            write(tx)
            return tx.save_checkpoint(self.id, **state).sequence if state else None
        sequence = self.store.run_in_transaction(transaction)
        if sequence is not None:
            self.sequence = sequence


def _score(value: float | None) -> float:
    """A stored score as a float: None (failed) and NaN become -inf."""
    return -math.inf if value is None or math.isnan(value) else float(value)


def _finite(value: float | None) -> float | None:
    """A score as stored in a checkpoint: None unless finite."""
    return value if value is not None and math.isfinite(value) else None


def _evaluation(result: EvalResult, extra: dict | None = None) -> dict:
    """An `EvalResult` as `Store.add_evaluation` keyword arguments; `extra` maps a task name
    to more metrics of that task."""
    extra = extra or {}
    tasks = [TaskResultRecord(task=t.task, status=t.status, score=t.score, loss=t.loss,
                              best_lr=t.best_lr, wall_time=t.wall_time,
                              metrics={"lr_losses": list(t.lr_losses), "error": t.error,
                                       **extra.get(t.task, {})})
             for t in result.tasks]
    best_lrs = [t.best_lr for t in result.tasks if t.best_lr is not None]
    return dict(suite=result.suite, status=result.status, score=result.score, tasks=tasks,
                best_lr=float(np.exp(np.mean(np.log(best_lrs)))) if best_lrs else None,
                wall_time=result.wall_time, error=result.error)
