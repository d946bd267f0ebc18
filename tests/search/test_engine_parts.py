"""The campaign engine on the in-memory store, and its parts on their own: a tiny campaign's
history is pinned (same seed, same children, same scores, on every store), the store
protocol's contract holds on both implementations, breeding accepts immigrants, and an
injected evaluator pool is used and left open."""

import json
import math
from dataclasses import replace
from pathlib import Path

import pytest
from optforge.search.breeding import RandomSearch, RegularizedEvolution, strategy_for
from optforge.search.caches import InMemoryCache
from optforge.search.config import Simplify
from optforge.search.engine import Campaign
from optforge.search.individuals import Member
from optforge.search.memory_store import MemoryStore
from optforge.search.stages import Phase, Stage
from optforge.store import LeaseHeld, LeaseLost, Store

from optforge import seeds

from .test_campaign import CONFIG, history

# `history` of three tiny campaigns as the engine made them before it was split into parts
# (re-pinned when atan2 and logsumexp joined the op table: mutations draw from it; and
# again when the whole-model ops, grad_at and the mutations that reach beyond one tensor
# joined: "before_reach" is the plain history before them, which the same campaign still
# makes with them switched off): (structural hash prefix, stage, score); every stage trains
# on `tiny`.
PINNED = json.loads((Path(__file__).parent / "data" / "pinned_histories.json").read_text())
CONFIGS = {
    "plain": CONFIG,
    "simplify": replace(CONFIG, budget=9, simplify=Simplify(enabled=True, max_ablations=2),
                        evolution=replace(CONFIG.evolution, restart_after=3)),
    "random": replace(CONFIG, budget=6, evolution=replace(CONFIG.evolution, strategy="random")),
}


def assert_pinned(hist, pinned=PINNED["plain"]):
    assert [(h[:12], stage) for h, stage, _ in hist] == [(h, s) for h, s, _ in pinned]
    assert [s for *_, s in hist] == pytest.approx([s for *_, s in pinned], rel=1e-9)


def test_a_tiny_campaign_on_the_memory_store_makes_the_pinned_history():
    store = MemoryStore()
    c = Campaign.create(store, CONFIG, "pinned")
    summary = c.run(workers=1)
    assert summary["status"] == "finished" and summary["phase"] == "done"
    assert_pinned(history(store, c.id))
    assert store.get_campaign(c.id).status == "finished"


def test_without_the_new_ops_and_mutations_the_history_is_the_one_before_them(monkeypatch):
    """Adding ops and mutations changes what a campaign draws, nothing else: with the
    whole-model ops and grad_at never drawn and the new mutations at weight 0, the tiny
    campaign makes the history pinned before they existed."""
    from optforge.search import mutation_defaults
    from optforge.search.reach_mutations import REACH_MUTATIONS

    monkeypatch.setattr(mutation_defaults, "OP_DRAW_WEIGHTS",
                        {"global_sum": 0.0, "global_norm": 0.0, "grad_at": 0.0})
    config = replace(CONFIG, mutations={**CONFIG.mutations,
                                        **{name: 0.0 for name in REACH_MUTATIONS}})
    store = MemoryStore()
    c = Campaign.create(store, config, "before")
    c.run(workers=1)
    assert_pinned(history(store, c.id), PINNED["before_reach"])


def test_on_the_memory_store_a_stopped_campaign_resumes_exactly():
    store = MemoryStore()
    c = Campaign.create(store, CONFIG, "stopped")

    def interrupt(counters):
        if counters.evaluations == 3:
            raise KeyboardInterrupt
    c.progress = interrupt
    assert c.run(workers=1)["status"] == "paused"
    assert Campaign.resume(store, "stopped").run(workers=1)["status"] == "finished"
    assert_pinned(history(store, c.id))


class InProcessPool:
    """`EvaluatorPool`'s interface, running each job here, in order: what an injected pool
    (a dask cluster's, say) looks like to the engine."""

    size, device_kind = 2, "cpu"

    def __init__(self):
        from optforge.evaluators.jobs import run_job
        self.runner, self.jobs, self.closed = run_job, 0, False

    def run(self, jobs, on_idle=None):
        for key, job in jobs:
            self.jobs += 1
            yield key, self.runner(job)

    def discard(self, key):
        pass

    def close(self):
        self.closed = True


def test_an_injected_pool_trains_everything_and_is_left_open(monkeypatch):
    from optforge.search import evaluation

    def no_training_here(*args, **kwargs):
        raise AssertionError("trained in the campaign's process")
    monkeypatch.setattr(evaluation, "evaluate", no_training_here)
    pool, store = InProcessPool(), MemoryStore()
    c = Campaign.create(store, replace(CONFIG, budget=5,
                                       validation=replace(CONFIG.validation, enabled=False)),
                        "pooled")
    summary = c.run(pool=pool)
    assert summary["status"] == "finished" and pool.jobs > 0 and not pool.closed
    stage1 = [h for h in history(store, c.id) if h[1] == Stage.STAGE1]
    assert len(stage1) == c.stage1_budget


@pytest.fixture(params=["memory", "sqlite"])
def store(request, tmp_path):
    if request.param == "memory":
        yield MemoryStore()
    else:
        with Store(f"sqlite:///{tmp_path / 'contract.db'}") as s:
            yield s


def evaluation(program_id, score, key=None, stage=Stage.STAGE1, suite="tiny"):
    return dict(program=program_id, suite=suite, status="ok", score=score, stage=int(stage),
                key=key)


def test_the_store_contract_holds_on_both_implementations(store):
    camp = store.create_campaign("contract", {"seed": 1}, status="paused")
    a, b = (store.add_program(seeds.load_seed(n)) for n in ("adamw", "lion"))
    assert store.add_program(seeds.load_seed("adamw")) == a  # deduplicated by hash
    assert store.program_by_hash(a.structural_hash) == a
    lease = store.acquire_lease(camp.id, ttl=60)
    with pytest.raises(LeaseHeld):
        store.acquire_lease(camp.id, ttl=60)

    def write(tx):
        tx.check_lease(lease)
        tx.add_lineage(b.id, a.id, "insert", campaign=camp.id)
        tx.add_evaluation(campaign=camp.id, **evaluation(b.id, 0.5, "k1"))
        return tx.save_checkpoint(camp.id, population=[(b.id, 0.5)], rng_state={"s": 1},
                                  counters={"phase": "evolve"}).sequence
    assert store.run_in_transaction(write) == 1
    assert store.run_in_transaction(write) == 2  # the evaluation's key: not written twice
    assert [r.key for r in store.stage_results(camp.id, Stage.STAGE1)] == ["k1"]
    cp = store.load_checkpoint(camp.id)
    assert cp.sequence == 2 and cp.population == [[b.id, 0.5]]  # as JSON reads it

    def failing(tx):
        tx.add_evaluation(campaign=camp.id, **evaluation(a.id, 0.9, "k2"))
        raise RuntimeError("boom")
    with pytest.raises(RuntimeError):
        store.run_in_transaction(failing)
    assert len(store.stage_results(camp.id, Stage.STAGE1)) == 1  # all or nothing

    def more(tx):
        tx.add_evaluation(campaign=camp.id, **evaluation(a.id, 0.7, "k3"))
        tx.add_evaluation(campaign=camp.id, **evaluation(a.id, math.nan, "k4"))
        tx.add_evaluation(campaign=camp.id, **evaluation(b.id, 0.7, "k5"))
        tx.add_evaluation(campaign=camp.id, **evaluation(b.id, 2.0, "k6", Stage.SCREEN,
                                                         "small"))
    store.run_in_transaction(more)
    ranked = store.top(5, campaign=camp.id, suite="tiny")
    assert [(r.program.id, r.score) for r in ranked] == [(a.id, 0.7), (b.id, 0.7)]
    assert [r.key for r in store.stage_results(camp.id, Stage.STAGE1)] == \
        ["k1", "k3", "k4", "k5"]  # commit order
    store.release_lease(lease, "paused")
    assert store.get_campaign("contract").status == "paused"
    with pytest.raises(LeaseLost):  # a released lease fences nothing in
        store.run_in_transaction(write)
    assert store.load_checkpoint(camp.id).sequence == 2


def test_breeding_strategies_accept_immigrants_and_age():
    config = replace(CONFIG, evolution=replace(CONFIG.evolution, population=3))
    evolution = strategy_for(config)
    assert isinstance(evolution, RegularizedEvolution)
    evolution.accept_immigrants(Member(i, float(i)) for i in range(5))
    assert [m.program_id for m in evolution.population] == [2, 3, 4]  # the oldest died
    evolution.restart(Member(9, 9.0), seed_ids=[3])
    assert [m.program_id for m in evolution.population] == [9, 3]
    random = strategy_for(replace(config, evolution=replace(config.evolution,
                                                            strategy="random")))
    assert isinstance(random, RandomSearch)


def test_the_caches_keep_the_first_member_and_compute_keys_lazily():
    cache = InMemoryCache()
    cache.add("s", "c", "f", Member(1, 0.5))
    cache.add("s2", "c", "f2", Member(2, 0.9))  # a twin by algebra: the first stays
    asked = []

    def key(kind, value):
        return lambda: asked.append(kind) or value
    hit = cache.lookup({"structural": key("structural", "s9"),
                        "canonical": key("canonical", "c"),
                        "fingerprint": key("fingerprint", "f9")})
    assert hit == ("canonical", Member(1, 0.5)) and asked == ["structural", "canonical"]
    assert cache.knows("s2") and not cache.knows("c")


def test_phases_follow_in_order_and_read_old_checkpoints():
    assert Phase("evolve") is Phase.EVOLVE  # the strings stored so far
    assert Phase.STAGE2.following(frozenset({Phase.VALIDATE})) is Phase.VALIDATE
    assert Phase.STAGE2.following(frozenset()) is Phase.DONE


@pytest.mark.parametrize("kind", ["simplify", "random"])
def test_the_simplified_and_random_campaigns_make_their_pinned_histories(kind):
    """The winner's simplification (ablations, rounding, lineage) after restarts, and the
    random-search control, end to end on the memory store."""
    store = MemoryStore()
    c = Campaign.create(store, CONFIGS[kind], kind)
    assert c.run(workers=1)["status"] == "finished"
    assert_pinned(history(store, c.id), PINNED[kind])
