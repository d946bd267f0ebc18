"""The store side of islands (store.islands), on SQLite and PostgreSQL: islands of one group
find each other's scores by any of the three hashes (the shared duplicate cache), see each
other's best programs (migration), and record migrations once."""

from __future__ import annotations

import pytest
from optforge import dsl
from optforge.seeds import load_rule
from optforge.store import AlreadyExists, Store
from optforge.store.islands import island_name

SUITE = "small"


def _island(store: Store, group: str, k: int):
    return store.create_campaign(island_name(group, k), {"seed": k}, island_group=group,
                                 island=k)


def _score(store: Store, campaign: int, seed: str, score: float, suite: str = SUITE,
           stage: int = 1):
    program = store.add_program(load_rule(seed))
    store.add_evaluation(program.id, campaign=campaign, suite=suite, stage=stage,
                         status="ok", score=score, key=f"{seed}/{suite}/{stage}")
    return program


def test_islands_of_a_group_are_listed_by_index_and_others_are_not(store: Store):
    one, zero = _island(store, "hunt", 1), _island(store, "hunt", 0)
    _island(store, "other", 0)
    store.create_campaign("plain")
    assert [(c.id, c.island, c.island_group) for c in store.islands("hunt")] == [
        (zero.id, 0, "hunt"), (one.id, 1, "hunt")]
    assert zero.name == "hunt/island-0"
    assert store.get_campaign("plain").island_group is None


def test_a_score_is_found_by_every_hash_from_any_island_of_the_group(store: Store):
    a, b = _island(store, "hunt", 0), _island(store, "hunt", 1)
    stranger = _island(store, "other", 0)
    lion = _score(store, a.id, "lion", 0.75)
    _score(store, stranger.id, "adam", 1.25)  # another group: never shared
    for kind, key in (("structural", lion.structural_hash),
                      ("canonical", lion.canonical_hash), ("fingerprint", lion.fingerprint)):
        hit = store.known_score("hunt", SUITE, 1, kind, key)
        assert (hit.program_id, hit.score, hit.campaign_id) == (lion.id, 0.75, a.id)
    adam = dsl.structural_hash(load_rule("adam"))
    assert store.known_score("hunt", SUITE, 1, "structural", adam) is None
    assert store.known_score("other", SUITE, 1, "structural", adam).score == 1.25
    # another suite or stage is another question
    assert store.known_score("hunt", "medium", 1, "structural", lion.structural_hash) is None
    assert store.known_score("hunt", SUITE, 0, "structural", lion.structural_hash) is None
    assert b.id != a.id


def test_a_failed_evaluation_is_known_and_ranks_last(store: Store):
    a = _island(store, "hunt", 0)
    bad = _score(store, a.id, "sgd", float("nan"))
    hit = store.known_score("hunt", SUITE, 1, "structural", bad.structural_hash)
    assert hit is not None and hit.score == float("-inf")


def test_best_elsewhere_gives_distinct_programs_of_the_other_islands_best_first(store: Store):
    a, b, c = (_island(store, "hunt", k) for k in range(3))
    _score(store, a.id, "adam", 9.0)  # the asking island's own: excluded
    lion = _score(store, b.id, "lion", 0.5)
    sgd = _score(store, c.id, "sgd", 0.25)
    _score(store, c.id, "lion", 0.75)  # lion again, better, on island 2
    signum = _score(store, b.id, "signum", 0.125)
    best = store.best_elsewhere("hunt", SUITE, 1, exclude=a.id, n=3)
    assert [(g.program_id, g.score, g.campaign_id) for g in best] == [
        (lion.id, 0.75, c.id), (sgd.id, 0.25, c.id), (signum.id, 0.125, b.id)]
    assert [g.program_id for g in store.best_elsewhere("hunt", SUITE, 1, a.id, 1)] == [lion.id]


def test_a_migration_is_recorded_once(store: Store):
    a, b = _island(store, "hunt", 0), _island(store, "hunt", 1)
    lion = _score(store, b.id, "lion", 0.5)
    with store.transaction() as tx:
        assert tx.add_migration(a.id, b.id, lion.id, 0.5) is True
    with store.transaction() as tx:
        assert tx.add_migration(a.id, b.id, lion.id, 0.5) is False
    [rec] = store.migrations(campaign=a.id)
    assert (rec.campaign_id, rec.source_campaign_id, rec.program_id, rec.score) == (
        a.id, b.id, lion.id, 0.5)
    assert store.migrations(group="hunt") == [rec]
    assert store.migrations(campaign=b.id) == []


def test_two_islands_with_one_index_are_refused(store: Store):
    _island(store, "hunt", 0)
    with pytest.raises(AlreadyExists, match="'hunt' already has an island 0"):
        store.create_campaign("hunt/island-0-again", island_group="hunt", island=0)
    assert [c.name for c in store.islands("hunt")] == ["hunt/island-0"]
