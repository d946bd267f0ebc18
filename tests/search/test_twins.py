"""A factored child (the same math, less memory) is a duplicate-cache hit of its parent; it
joins the population in its parent's place, stored with its lineage, and its descendants
are trained factored (`search.twins`)."""

from dataclasses import replace

from optforge.search.caches import InMemoryCache
from optforge.search.engine import Campaign
from optforge.search.individuals import Member
from optforge.search.memory_store import MemoryStore
from optforge.search.stages import STAGE1
from optforge.search.twins import full_slots, leaner_twin

from optforge import dsl

from .test_charging import CONFIG, fake  # noqa: F401 - the fake evaluator fixture
from .test_reach_mutations import FACTORABLE


def test_a_factored_child_replaces_its_evaluated_twin(fake, tmp_path):  # noqa: F811
    seed = tmp_path / "factorable.rule"
    seed.write_text(dsl.format_program(FACTORABLE))
    weights = {name: 0.0 for name in CONFIG.mutations}
    config = replace(CONFIG, seeds=(str(seed),), budget=6,
                     mutations={**weights, "factor_state": 4.0, "perturb_constant": 1.0})
    store = MemoryStore()
    c = Campaign.create(store, config, "twins")
    assert c.run(workers=1)["status"] == "finished"
    programs = {e.program_id: dsl.parse(store.get_program(e.program_id).source)
                for e in store.evaluations(campaign=c.id, stage=STAGE1)}
    assert any(p.slot_shapes for p in programs.values())  # descendants trained factored
    twins = [e for e in store._state.lineage if e.mutation == "factor_state"]
    assert twins and all(dsl.parse(store.get_program(e.child_id).source).slot_shapes
                         for e in twins)
    assert c.counters.cache_hits["canonical"] + c.counters.cache_hits["fingerprint"] > 0


def test_only_a_leaner_twin_joins():
    store = MemoryStore()
    camp = store.create_campaign("t", {})
    c = Campaign(store, replace(CONFIG, seeds=("adamw",)), camp.id)
    full = store.add_program(FACTORABLE)
    member = Member(full.id, 0.7)
    factored = replace(FACTORABLE, slot_shapes=(("r", dsl.SlotShape.ROW),))
    assert full_slots(factored) == 1 < full_slots(FACTORABLE) == 2
    twin = leaner_twin(c, member, factored, full.id, "factor_state")
    assert twin is not None and twin.score == 0.7 and twin.program_id != full.id
    assert dsl.parse(store.get_program(twin.program_id).source) == factored
    assert leaner_twin(c, member, FACTORABLE, full.id, "perturb_constant") is None
    assert isinstance(c.caches, InMemoryCache)
