"""The seeds phase and stage 1 (evolution), with the screening funnel before stage 1.

A child is screened on a cheap suite and trained on stage 1 only if its screening score
clears the hurdle (`hurdle`). A worker that frees up gets the next piece of work at once
(children are drawn lazily by the evaluator pool): a child that cleared the hurdle and waits
for stage 1, else the screening of a new child. Screenings run on the pool beside the
stage-1 trainings; only a serial campaign screens in this process.

Each function takes the `engine.Campaign` and the pool (None: serial) and uses the
campaign's public methods only.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Iterator

from optforge.dsl import Program
from optforge.evaluators import EvalResult, evaluate_on_suites

from optforge import dsl
from optforge import seeds as seed_lib

from . import charging, evaluation
from .individuals import Child, stored_score
from .stages import SCREEN, STAGE1, Phase

if TYPE_CHECKING:
    from .engine import Campaign

__all__ = ["evaluate_seeds", "evolve", "screen", "known_screen", "commit_screening"]

CLEARED_LATE = "screen: cleared after the budget was spent"


def evaluate_seeds(campaign: Campaign, pool) -> None:
    """Phase SEEDS: screen (the hurdle's first scores) and train the seeds on stage 1; they
    are the population's first members. Seeds committed before a kill are not redone."""
    funnel = campaign.config.funnel
    children = [Child(p, None, "seed", i) for i, p in enumerate(seed_programs(campaign))
                if not campaign.caches.knows(dsl.structural_hash(p))]
    if campaign.island is not None:  # seeds another island trained: their scores, no training
        children = [c for c in children if not _joined_from_group(campaign, c.program)]
    hurdle = campaign.hurdle
    if funnel.screen and pool is None:
        for child in children:
            hurdle.judge(screen(campaign, child))
    elif funnel.screen:
        unknown = []
        for child in children:
            known = known_screen(campaign, child)
            if known is None:
                unknown.append(child)
            else:
                hurdle.judge(known)
        for child, result in campaign.evaluate(unknown, funnel.screen, pool):
            hurdle.judge(commit_screening(campaign, child, result))
    for child, result in campaign.evaluate(children, funnel.stage1, pool):
        campaign.record_stage1(child, result)
    campaign.counters.seed_ids = [m.program_id for m in campaign.population]
    charging.settle_seeds(campaign)
    campaign.counters.phase = Phase.EVOLVE
    campaign.checkpoint_now()


def _joined_from_group(campaign: Campaign, program: Program) -> bool:
    """Whether an island of the campaign's group already trained `program` on stage 1; if so
    it joins the population with that score."""
    hit = campaign.caches.lookup({"structural": lambda: dsl.structural_hash(program),
                                  "canonical": lambda: dsl.canonical_hash(program),
                                  "fingerprint": lambda: dsl.fingerprint(program)})
    if hit is None:
        return False
    kind, member = hit
    campaign.counters.cache_hits[kind] += 1
    campaign.breeding.join(member)
    return True


def seed_programs(campaign: Campaign) -> list[Program]:
    """The configuration's seeds: seed names, or `.rule` files."""
    programs = []
    for name in campaign.config.seeds:
        if name.endswith(".rule"):
            programs.append(dsl.ensure_valid(dsl.load(name)))
        else:
            programs.append(seed_lib.load_seed(name))
    return programs


def evolve(campaign: Campaign, pool) -> None:
    """Phase EVOLVE: children until the stage-1 budget is spent."""
    if pool is not None and campaign.config.funnel.screen:
        results = _screened_on_pool(campaign, pool)
    else:
        results = campaign.evaluate(_children(campaign), campaign.config.funnel.stage1, pool)
    for child, result in results:
        campaign.record_stage1(child, result)
        if campaign.stop_requested:
            break
    if not campaign.stop_requested:
        campaign.counters.phase = Phase.STAGE2
        campaign.checkpoint_now()


def _children(campaign: Campaign) -> Iterator[Child]:
    """Valid, new, probed children that cleared the screening hurdle (screened here, in
    this process), drawn lazily while the stage-1 budget lasts."""
    while campaign.stage1_open():
        candidate = campaign.draw()
        if candidate is None:
            continue
        if campaign.config.funnel.screen:
            reason = campaign.hurdle.judge(screen(campaign, candidate))
            if reason is not None:
                campaign.counters.reject(reason)
                continue
        campaign.start_stage1(candidate)
        yield candidate


def _screened_on_pool(campaign: Campaign, pool) -> Iterator[tuple[Child, EvalResult]]:
    """(child, stage-1 result) as each finishes, with the screenings on the pool too: a
    free worker screens the next child drawn, unless a child that cleared the hurdle
    waits for stage 1, which goes first. This process only breeds and decides, so with
    many workers the screenings run in parallel. The hurdle sees screening scores in
    the order they finish."""
    f = campaign.config.funnel
    passed: deque[Child] = deque()  # cleared the hurdle, counted in flight, not started
    drawn: list[tuple[Child, int]] = []

    def work() -> Iterator[tuple[Program, str]]:
        while not campaign.stop_requested:
            if passed:
                drawn.append((passed.popleft(), STAGE1))
                yield drawn[-1][0].program, f.stage1
                continue
            if not campaign.stage1_open():
                return
            candidate = campaign.draw()
            if candidate is None:
                continue
            known = known_screen(campaign, candidate)
            if known is None:
                campaign.screening[dsl.structural_hash(candidate.program)] = candidate.number
                drawn.append((candidate, SCREEN))
                yield candidate.program, f.screen
            elif _clears_hurdle(campaign, candidate, known):
                passed.append(candidate)

    for result in evaluate_on_suites(work(), (f.screen, f.stage1), pool=pool):
        child, stage = drawn[result.index]
        if stage == STAGE1:
            yield child, result
            continue
        campaign.screening.pop(dsl.structural_hash(child.program), None)
        if _clears_hurdle(campaign, child, commit_screening(campaign, child, result)):
            passed.append(child)


def _clears_hurdle(campaign: Campaign, child: Child, score: float) -> bool:
    """Decide on a screened child: True (and it is counted in flight) if it goes on to
    stage 1, else its rejection is counted."""
    reason = campaign.hurdle.judge(score)
    if reason is None and not campaign.stage1_open():
        reason = CLEARED_LATE
    if reason is not None:
        campaign.counters.reject(reason)
        return False
    campaign.start_stage1(child)
    return True


def screen(campaign: Campaign, child: Child) -> float:
    """The child's score on the screening suite: known (`known_screen`) or trained here,
    on one thread, and committed."""
    known = known_screen(campaign, child)
    if known is not None:
        return known
    result = evaluation.evaluate_here(child.program, campaign.config.funnel.screen)
    return commit_screening(campaign, child, result)


def _screen_key(child: Child) -> str:
    return f"stage0/{child.kind}/{child.number}"


def known_screen(campaign: Campaign, child: Child) -> float | None:
    """The child's screening score without training: replayed from the store when a
    resumed campaign draws it again, or reused when a program with the same behaviour
    was screened before. None when it must be screened."""
    key = _screen_key(child)
    if key in campaign.screened:  # drawn again after a resume: as the first time
        campaign.counters.screenings += 1
        return campaign.screened[key]
    known = campaign.caches.screened(dsl.fingerprint(child.program))
    if known is not None:
        campaign.counters.screen_cache_hits += 1
    return known


def commit_screening(campaign: Campaign, child: Child, result: EvalResult) -> float:
    """Store a screening (stage 0, no checkpoint) with the child's lineage; its score."""
    campaign.counters.screenings += 1
    campaign.counters.account(result.suite, result.wall_time)
    record = campaign.store.add_program(child.program)
    campaign.programs[record.id] = child.program
    campaign.recorder.record(record.id, SCREEN, result, _screen_key(child),
                             parent=child.parent_id, mutation=child.kind)
    score = stored_score(result.score)
    campaign.caches.add_screened(record.fingerprint, score)
    return score
