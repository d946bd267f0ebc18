"""Islands (search.islands): two search processes run one campaign as islands of one
database. They share their duplicate caches through the store (an island trains nothing
another has already trained: not the seeds, not an equal child) and migrate their best
programs to each other, each migration recorded once."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace

import pytest
from optforge.search.config import CampaignConfig, Evolution, Funnel, Islands, Simplify, Validation
from optforge.search.engine import Campaign
from optforge.store import Store

from tests.store.conftest import PgSchema, pg_base_url

CONFIG = CampaignConfig(
    seeds=("sgd_momentum", "adam"), seed=3, budget=9,
    evolution=Evolution(population=4, tournament=2, restart_after=50),
    funnel=Funnel(stage1="tiny", stage2="tiny", threshold=-10.0, stage2_max=1, screen=""),
    simplify=Simplify(enabled=False), validation=Validation(enabled=False),
    islands=Islands(migrate_every=2, migrants=2))


def _stage1(store: Store, campaign: int):
    return [e for e in store.evaluations(campaign=campaign) if e.stage == 1]


def _hashes(store: Store, evaluations) -> dict[str, set[str]]:
    programs = [store.get_program(e.program_id) for e in evaluations]
    return {"structural": {p.structural_hash for p in programs},
            "canonical": {p.canonical_hash for p in programs},
            "fingerprint": {p.fingerprint for p in programs}}


@pytest.fixture(scope="module")
def two_islands(tmp_path_factory):
    """Island 0 runs to the end, then island 1 (serially: the outcome is exact)."""
    db = tmp_path_factory.mktemp("islands") / "islands.db"
    with Store(f"sqlite:///{db}") as store:
        first = Campaign.create_island(store, CONFIG, "hunt", 0)
        first.run(workers=1)
        second = Campaign.create_island(store, CONFIG, "hunt", 1)
        summary = second.run(workers=1)
        yield store, first, second, summary


def test_islands_are_campaigns_of_one_group_with_their_own_seed(two_islands):
    store, first, second, summary = two_islands
    assert summary["status"] == "finished"
    assert [(c.name, c.island, c.status) for c in store.islands("hunt")] == [
        ("hunt/island-0", 0, "finished"), ("hunt/island-1", 1, "finished")]
    assert (first.config.seed, second.config.seed) == (3, 4)


def test_the_second_island_trains_no_seed_and_nothing_the_first_trained(two_islands):
    store, first, second, _ = two_islands
    seeds_first = [e for e in _stage1(store, first.id) if e.key.startswith("stage1/seed/")]
    assert len(seeds_first) == 2
    assert not [e for e in _stage1(store, second.id) if e.key.startswith("stage1/seed/")]
    assert set(second.counters.seed_ids) == {e.program_id for e in seeds_first}
    known = _hashes(store, _stage1(store, first.id))
    mine = _hashes(store, _stage1(store, second.id))
    for kind in known:  # every one a cache hit instead (the first island had finished)
        assert not known[kind] & mine[kind], kind
    hits = second.counters.cache_hits
    assert sum(hits.values()) >= 2  # the two seeds at least


def test_the_second_island_takes_in_the_firsts_best_once_each(two_islands):
    store, first, second, _ = two_islands
    assert store.migrations(campaign=first.id) == []  # it ran alone: nobody to learn from
    came = store.migrations(campaign=second.id)
    assert came and len(came) == second.counters.immigrants
    assert len({m.program_id for m in came}) == len(came)
    scored_first = {e.program_id: e.score for e in _stage1(store, first.id)}
    for m in came:
        assert m.source_campaign_id == first.id
        assert m.score == scored_first[m.program_id]
    # the very first migration brought the first island's best programs
    best = sorted(scored_first.items(), key=lambda kv: -kv[1])
    assert came[0].program_id in {pid for pid, _ in best[:CONFIG.islands.migrants + 2]}


def test_an_island_resumes_as_an_island(two_islands, tmp_path):
    store, first, _, _ = two_islands
    again = Campaign.resume(store, "hunt/island-0")
    assert again.island is not None and (again.island.group, again.island.index) == ("hunt", 0)


def test_run_island_needs_a_name(tmp_path):
    out = subprocess.run([sys.executable, "-m", "optforge", "run", "--island", "1",
                          "--db", f"sqlite:///{tmp_path / 'x.db'}"], capture_output=True,
                         text=True, env=dict(os.environ, PYTHONPATH=os.getcwd()))
    assert out.returncode != 0
    assert out.stderr.strip().splitlines()[-1] == (
        "optforge run: error: --island K needs --name (the campaign its islands share) and K >= 0")
    assert not (tmp_path / "x.db").exists()


def test_two_island_processes_share_one_postgresql_database(tmp_path):
    """Two `optforge run --island` processes at once on one PostgreSQL database: both
    finish, every migration brings a program its source island scored, no key twice."""
    schema = PgSchema(pg_base_url())
    try:
        cfg = tmp_path / "islands.toml"
        cfg.write_text(_toml(replace(CONFIG, budget=6)))
        env = dict(os.environ, PYTHONPATH=os.getcwd())
        procs = [subprocess.Popen([sys.executable, "-m", "optforge", "run", str(cfg),
                                   "--name", "pg-hunt", "--island", str(k), "--workers", "1",
                                   "--no-progress", "--db", schema.url],
                                  env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True) for k in (0, 1)]
        outs = [p.communicate(timeout=600) for p in procs]
        assert [p.returncode for p in procs] == [0, 0], [o[1][-500:] for o in outs]
        with Store(schema.url) as store:
            islands = store.islands("pg-hunt")
            assert [(c.island, c.status) for c in islands] == [(0, "finished"),
                                                               (1, "finished")]
            for m in store.migrations(group="pg-hunt"):
                scored = {e.program_id for e in _stage1(store, m.source_campaign_id)}
                assert m.program_id in scored and m.source_campaign_id != m.campaign_id
            for c in islands:
                keys = [e.key for e in store.evaluations(campaign=c.id)]
                assert len(keys) == len(set(keys))
    finally:
        schema.drop()


def _toml(config: CampaignConfig) -> str:
    d = config.to_dict()
    lines = [f"seeds = {list(d['seeds'])!r}".replace("'", '"'), f"seed = {d['seed']}",
             f"budget = {d['budget']}"]
    for section in ("evolution", "funnel", "simplify", "validation", "islands"):
        lines.append(f"[{section}]")
        for k, v in d[section].items():
            lines.append(f"{k} = " + ("true" if v is True else "false" if v is False
                                       else f'"{v}"' if isinstance(v, str) else str(v)))
    return "\n".join(lines) + "\n"
