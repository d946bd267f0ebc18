"""The storage contract, run against every backend (SQLite file and PostgreSQL server)."""

from __future__ import annotations

import math
import threading
from dataclasses import FrozenInstanceError
from datetime import timezone

import networkx as nx
import pytest
from optforge.store import (
    AlreadyExists,
    CampaignRecord,
    EvaluationRecord,
    InvalidRecord,
    NotFound,
    ProgramData,
    ProgramRecord,
    Store,
    TaskResultRecord,
)
from storetest_helpers import program, tasks


def test_campaign_roundtrip_and_status(store: Store):
    config = {"seed": 3, "suite": "small", "nested": {"lrs": [1e-3, 1e-2]}}
    c = store.create_campaign("lion-hunt", config)
    assert isinstance(c, CampaignRecord)
    assert (c.name, c.status, c.config, c.finished_at) == ("lion-hunt", "running", config, None)
    assert c.created_at.tzinfo is timezone.utc
    assert store.get_campaign("lion-hunt") == c == store.get_campaign(c.id)
    assert store.get_campaign(str(c.id)) == c
    done = store.set_campaign_status("lion-hunt", "finished")
    assert done.status == "finished" and done.finished_at is not None
    assert [x.name for x in store.campaigns()] == ["lion-hunt"]
    with pytest.raises(AlreadyExists, match="lion-hunt"):
        store.create_campaign("lion-hunt", {})
    with pytest.raises(NotFound, match="no campaign named 'nope'"):
        store.get_campaign("nope")
    with pytest.raises(NotFound, match="no campaign with id 99"):
        store.get_campaign(99)
    with pytest.raises(InvalidRecord, match="status"):
        store.set_campaign_status(c.id, "exploded")


def test_records_are_frozen_and_detached(store: Store):
    p = store.add_program(program(1))
    assert isinstance(p, ProgramRecord)
    with pytest.raises(FrozenInstanceError):
        p.name = "other"  # type: ignore[misc]
    c = store.create_campaign("c", {"a": 1})
    c.config["a"] = 2  # a copy: the database is unchanged
    assert store.get_campaign("c").config == {"a": 1}


def test_program_dedup_by_structural_hash(store: Store):
    a = store.add_program(program(1))
    again = store.add_program(program(1))
    b = store.add_program(program(2))
    assert a == again and a.id != b.id
    assert store.count_programs() == 2
    assert store.program_by_hash(program(1).structural_hash) == a
    assert store.program_by_hash("0" * 64) is None
    assert store.find_program(str(a.id)) == a
    assert store.find_program(a.structural_hash[:10]) == a
    assert a in store.programs_with_canonical_hash(a.canonical_hash)
    assert a in store.programs_with_fingerprint(a.fingerprint)
    with pytest.raises(NotFound):
        store.find_program("ffffffffffffff")
    with pytest.raises(NotFound, match="no program with id 12345"):
        store.get_program(12345)


def test_race_safe_program_insert_threads(store: Store):
    """Eight threads add the same programs at once: one row per hash, one id for all."""
    results: list[list[int]] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def work() -> None:
        try:
            barrier.wait()
            results.append([store.add_program(program(i)).id for i in range(15)])
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert all(r == results[0] for r in results)
    assert store.count_programs() == 15


def test_evaluation_roundtrip_with_tasks(store: Store):
    c = store.create_campaign("c", {})
    p = store.add_program(program(1))
    ev = store.add_evaluation(p.id, campaign=c.id, suite="small", stage=1, status="ok",
                              score=0.75, tasks=tasks(0.7), best_lr=3e-4, wall_time=12.5,
                              worker="gpu-7", key="child-1/stage-1")
    assert isinstance(ev, EvaluationRecord)
    assert (ev.program_id, ev.campaign_id, ev.suite, ev.stage, ev.status, ev.score,
            ev.best_lr, ev.wall_time, ev.worker, ev.key, ev.error) == \
        (p.id, c.id, "small", 1, "ok", 0.75, 3e-4, 12.5, "gpu-7", "child-1/stage-1", None)
    assert [t.task for t in ev.tasks] == ["task0", "task1", "task2"]
    assert ev.tasks[1] == TaskResultRecord("task1", "ok", 0.71, loss=pytest.approx(0.3),
                                           best_lr=2e-3, wall_time=0.01,
                                           metrics={"losses": [1.0, 0.5, 0.25]})
    assert store.get_evaluation(ev.id) == ev
    assert store.evaluations(program=p.id) == [ev]
    assert store.task_scores(p.id)["task2"].score == pytest.approx(0.72)
    failed = store.add_evaluation(p.id, campaign=c.id, suite="small", status="error",
                                  score=None, error="RuntimeError: shapes do not match")
    assert failed.error == "RuntimeError: shapes do not match" and failed.score is None
    assert failed.worker  # defaults to this host's name


def test_tasks_given_as_mapping(store: Store):
    p = store.add_program(program(1))
    ev = store.add_evaluation(p.id, suite="tiny", status="ok", score=0.5, tasks={
        "quadratic": {"status": "ok", "score": 0.5, "loss": 0.1},
        "mlp": TaskResultRecord("mlp", "diverged", 0.0, loss=math.inf)})
    assert {t.task: t.status for t in ev.tasks} == {"quadratic": "ok", "mlp": "diverged"}


# (SQLite does not keep the sign of a zero, so -0.0 is not in the list.)
@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, 0.0, 1e-308, 1e308])
def test_non_finite_scores_stored_faithfully(store: Store, value: float):
    p = store.add_program(program(1))
    ev = store.add_evaluation(p.id, suite="tiny", status="diverged", score=value,
                              best_lr=value, tasks=[TaskResultRecord(
                                  "t", "diverged", value, loss=value, best_lr=value,
                                  metrics={"curve": [value, 1.0]})])
    back = store.get_evaluation(ev.id)
    for got in (back.score, back.best_lr, back.tasks[0].score, back.tasks[0].loss,
                back.tasks[0].best_lr, back.tasks[0].metrics["curve"][0]):
        if math.isnan(value):
            assert math.isnan(got)
        else:
            assert got == value and math.copysign(1, got) == math.copysign(1, value)


def test_idempotent_evaluation_key(store: Store):
    c = store.create_campaign("c", {})
    p = store.add_program(program(1))
    first = store.add_evaluation(p.id, campaign=c.id, suite="tiny", status="ok", score=0.5,
                                 tasks=tasks(0.5), key="k")
    replay = store.add_evaluation(p.id, campaign=c.id, suite="tiny", status="ok", score=0.9,
                                  tasks=tasks(0.9), key="k")
    assert replay == first
    assert store.count_evaluations(campaign=c.id) == 1
    other = store.create_campaign("d", {})
    assert store.add_evaluation(p.id, campaign=other.id, suite="tiny", status="ok",
                                score=0.1, key="k").id != first.id


def test_stage_results_lists_one_stage_of_one_campaign_in_commit_order(store: Store):
    """What a resuming campaign rebuilds its caches from (`search.storage` contract): the
    campaign's evaluations at one stage, in commit order, with their programs, keys and
    scores as stored (None and NaN kept), and nothing of other stages or campaigns."""
    c, other = store.create_campaign("c", {}), store.create_campaign("d", {})
    p1, p2 = store.add_program(program(1)), store.add_program(program(2))
    store.add_evaluation(p2.id, campaign=c.id, suite="tiny", status="ok", score=0.5,
                         stage=1, key="a", tasks=tasks(0.5))
    store.add_evaluation(p1.id, campaign=c.id, suite="tiny", status="ok", score=0.9,
                         stage=0, key="screen")
    store.add_evaluation(p1.id, campaign=other.id, suite="tiny", status="ok", score=0.7,
                         stage=1, key="a")
    store.add_evaluation(p1.id, campaign=c.id, suite="tiny", status="nan", score=math.nan,
                         stage=1, key="b")
    store.add_evaluation(p2.id, campaign=c.id, suite="tiny", status="error", score=None,
                         stage=1)
    rows = store.stage_results(c.id, 1)
    assert [(r.key, r.program) for r in rows] == [("a", p2), ("b", p1), (None, p2)]
    assert rows[0].score == 0.5 and math.isnan(rows[1].score) and rows[2].score is None
    assert [r.evaluation_id for r in rows] == sorted(r.evaluation_id for r in rows)
    assert [r.key for r in store.stage_results(c.id, 0)] == ["screen"]
    assert store.stage_results(c.id, 3) == []


@pytest.mark.parametrize("kwargs, message", [
    (dict(suite="", status="ok", score=1.0), "suite"),
    (dict(suite="tiny", status="has space", score=1.0), "status"),
    (dict(suite="tiny", status="ok", score="high"), "score must be a real number"),
    (dict(suite="tiny", status="ok", score=True), "score must be a real number"),
    (dict(suite="tiny", status="ok", score=1.0, stage=-1), "stage"),
    (dict(suite="tiny", status="ok", score=1.0, wall_time=-2.0), "wall_time"),
    (dict(suite="tiny", status="ok", score=1.0, wall_time=math.nan), "wall_time"),
    (dict(suite="tiny", status="ok", score=1.0, tasks=[TaskResultRecord("a", "ok", 1.0)] * 2),
     "appears twice"),
    (dict(suite="tiny", status="ok", score=1.0, tasks={"a": {"colour": "red"}}), "task 'a'"),
    (dict(suite="tiny", status="ok", score=1.0, tasks=[TaskResultRecord(
        "a", "ok", 1.0, metrics={"x": object()})]), "JSON"),
    (dict(suite="tiny", status="ok", score=1.0, campaign="missing"), "no campaign named"),
])
def test_bad_evaluations_are_rejected_whole(store: Store, kwargs, message):
    p = store.add_program(program(1))
    with pytest.raises((InvalidRecord, NotFound), match=message) as info:
        store.add_evaluation(p.id, **kwargs)
    assert "\n" not in str(info.value)
    assert store.count_evaluations() == 0


def test_missing_program_for_evaluation(store: Store):
    with pytest.raises(NotFound, match="no program with id 7"):
        store.add_evaluation(7, suite="tiny", status="ok", score=1.0)


def test_bad_program_data():
    with pytest.raises(InvalidRecord, match="structural_hash"):
        ProgramData("p", "src", "", "c", "f", 1, 1)
    with pytest.raises(InvalidRecord, match="complexity"):
        ProgramData("p", "src", "abc", "c", "f", 1, -1)


def test_transaction_is_all_or_nothing(store: Store):
    c = store.create_campaign("c", {})
    p = store.add_program(program(1))
    with pytest.raises(RuntimeError):
        with store.transaction() as tx:
            tx.add_evaluation(p.id, campaign=c.id, suite="tiny", status="ok", score=1.0,
                              tasks=tasks(1.0))
            tx.save_checkpoint(c.id, population=[p.id], rng_state={}, counters={"done": 1})
            raise RuntimeError("worker died")
    assert store.count_evaluations() == 0
    assert store.load_checkpoint(c.id) is None
    with store.transaction() as tx:
        tx.add_evaluation(p.id, campaign=c.id, suite="tiny", status="ok", score=1.0)
        tx.save_checkpoint(c.id, population=[p.id], rng_state={}, counters={"done": 1})
    assert store.count_evaluations() == 1
    assert store.load_checkpoint(c.id).counters == {"done": 1}


def test_checkpoint_roundtrip_keeps_big_ints_and_counts_saves(store: Store):
    import numpy as np

    c = store.create_campaign("c", {})
    rng = np.random.default_rng(1234)
    rng.standard_normal(10)
    state = rng.bit_generator.state
    first = store.save_checkpoint(c.id, population=[{"id": 1, "age": 3}],
                                  rng_state=state, counters={"children": 10})
    assert first.sequence == 1
    second = store.save_checkpoint("c", population=[{"id": 2, "age": 0}], rng_state=state,
                                   counters={"children": 11})
    assert second.sequence == 2
    back = store.load_checkpoint(c.id)
    assert back == second
    restored = np.random.default_rng()
    restored.bit_generator.state = back.rng_state
    assert restored.standard_normal() == rng.standard_normal()


def _seed_scores(store: Store) -> tuple[CampaignRecord, list[ProgramRecord]]:
    c = store.create_campaign("c", {})
    progs = [store.add_program(program(i, complexity=10 + i)) for i in range(6)]
    scores = {0: [0.2, 0.4], 1: [0.9], 2: [math.nan], 3: [0.6, 0.95], 4: [None], 5: [0.1]}
    for i, ss in scores.items():
        for s in ss:
            store.add_evaluation(progs[i].id, campaign=c.id, suite="small", status="ok",
                                 score=s, tasks=tasks(s if s is not None else 0.0))
    store.add_evaluation(progs[5].id, campaign=c.id, suite="medium", stage=2, status="ok",
                         score=5.0)
    return c, progs


def test_top_programs(store: Store):
    c, progs = _seed_scores(store)
    top = store.top(3, campaign=c.id, suite="small")
    assert [(r.rank, r.program.id, r.score) for r in top] == [
        (1, progs[3].id, 0.95), (2, progs[1].id, 0.9), (3, progs[0].id, 0.4)]
    everything = store.top(100, campaign=c.id, suite="small")
    # NaN and missing scores never rank; each program appears once, with its best.
    assert [r.program.id for r in everything] == [progs[i].id for i in (3, 1, 0, 5)]
    assert store.top(1, suite="medium")[0].program.id == progs[5].id
    assert store.top(0) == []
    assert [s.suite for s in store.suites(campaign=c.id)] == ["small", "medium"]


def test_top_pages_through_reevaluations(store: Store):
    """A program evaluated many times with high scores must not hide the others."""
    a, b = store.add_program(program(1)), store.add_program(program(2))
    with store.transaction() as tx:
        for k in range(300):
            tx.add_evaluation(a.id, suite="s", status="ok", score=10.0 + k / 1000)
        tx.add_evaluation(b.id, suite="s", status="ok", score=1.0)
    assert [r.program.id for r in store.top(2, suite="s")] == [a.id, b.id]


def test_ranking_lists_distinct_programs_and_failures_on_request(store: Store):
    """`ranking` (what `optforge top` lists): one row per program, its best ``ok``
    evaluation in scope; with `failures`, failed ones too, then the unscored, latest first."""
    c = store.create_campaign("r", {})
    a, b, f, u = (store.add_program(program(i)) for i in (1, 2, 3, 4))
    with store.transaction() as tx:
        for k in range(200):  # re-evaluated many times: still one row
            tx.add_evaluation(a.id, campaign=c.id, suite="s", stage=2, status="ok",
                              score=2.0 + k / 1000)
        tx.add_evaluation(a.id, campaign=c.id, suite="s", stage=2, status="diverged",
                          score=9.0)  # a failure never counts unless asked for
        tx.add_evaluation(b.id, campaign=c.id, suite="s", stage=2, status="ok", score=1.0)
        tx.add_evaluation(f.id, campaign=c.id, suite="s", stage=2, status="diverged",
                          score=0.25)
        tx.add_evaluation(u.id, campaign=c.id, suite="s", stage=2, status="nan",
                          score=math.nan)
        tx.add_evaluation(b.id, campaign=c.id, suite="s", stage=1, status="ok", score=5.0)
    ranked = store.ranking(10, campaign=c.id, suite="s", stage=2)
    assert [(r.rank, r.program.id, r.score) for r in ranked] == [(1, a.id, 2.199),
                                                                 (2, b.id, 1.0)]
    every = store.ranking(10, campaign=c.id, suite="s", stage=2, failures=True)
    assert [(r.program.id, r.evaluation.status) for r in every] == [
        (a.id, "diverged"), (b.id, "ok"), (f.id, "diverged"), (u.id, "nan")]
    assert [r.program.id for r in store.ranking(3, campaign=c.id, suite="s", stage=2,
                                                failures=True)] == [a.id, b.id, f.id]
    assert store.ranking(0, campaign=c.id) == []


def test_pareto_front(store: Store):
    c, progs = _seed_scores(store)
    front = store.pareto_front(campaign=c.id, suite="small")
    # complexities 10..15; best scores 0.4, 0.9, nan, 0.95, None, 0.1
    assert [(r.program.complexity, r.score) for r in front] == [(10, 0.4), (11, 0.9),
                                                                (13, 0.95)]


def test_campaign_stats(store: Store):
    c, progs = _seed_scores(store)
    store.add_lineage(progs[1].id, progs[0].id, "insert", campaign=c.id)
    stats = store.campaign_stats("c")
    assert stats.evaluations == 9 and stats.programs == 6
    assert stats.by_status == {"ok": 9}
    assert stats.best_score == 5.0
    assert stats.lineage_edges == 1
    assert stats.first_evaluation_at <= stats.last_evaluation_at
    assert {(s.suite, s.stage, s.evaluations) for s in stats.suites} == {
        ("small", 1, 8), ("medium", 2, 1)}


def test_lineage_graph(store: Store):
    c = store.create_campaign("c", {})
    seed = store.add_program(program(0))
    p = [seed] + [store.add_program(program(i)) for i in range(1, 6)]
    # 0 -> 1 -> 2 -> 4, 0 -> 3 -> 4 (crossover-like second parent), 4 -> 5, and 5 -> 1
    # recreated by a mutation (a cycle: programs are shared by hash).
    for child, parent, mut in [(1, 0, "insert"), (2, 1, "delete"), (4, 2, "change_op"),
                               (3, 0, "perturb"), (4, 3, "insert"), (5, 4, "delete"),
                               (1, 5, "insert")]:
        store.add_lineage(p[child].id, p[parent].id, mut, campaign=c.id)
    store.add_lineage(p[1].id, p[0].id, "insert", campaign=c.id)  # idempotent
    store.add_evaluation(p[4].id, campaign=c.id, suite="s", status="ok", score=0.8)

    g = store.lineage(p[4].id)
    assert isinstance(g, nx.DiGraph)
    assert set(g.nodes) == {p[i].id for i in (0, 1, 2, 3, 4, 5)}  # the cycle reaches 5
    assert g.edges[p[2].id, p[4].id]["mutation"] == "change_op"
    assert g.nodes[p[0].id]["seed"] is True and g.nodes[p[4].id]["seed"] is False
    assert g.nodes[p[4].id]["best_score"] == 0.8
    assert g.graph["root"] == p[4].id
    assert g.nodes[p[2].id]["depth"] == -1

    ancestors_only = store.lineage(p[2].id)
    assert set(ancestors_only.nodes) >= {p[0].id, p[1].id, p[2].id}
    assert p[4].id not in ancestors_only or p[5].id in ancestors_only  # only via the cycle
    down = store.lineage(p[3].id, descendants=True)
    assert {p[3].id, p[4].id, p[5].id, p[0].id} <= set(down.nodes)
    assert [e.parent_id for e in store.parents(p[4].id)] == [p[2].id, p[3].id]
    assert {e.child_id for e in store.children(p[0].id)} == {p[1].id, p[3].id}
    other = store.create_campaign("other", {})
    assert set(store.lineage(p[4].id, campaign=other.id).nodes) == {p[4].id}


def test_lineage_rejects_self_parent(store: Store):
    a = store.add_program(program(1))
    with pytest.raises(InvalidRecord, match="own parent"):
        store.add_lineage(a.id, a.id, "insert")


def test_real_dsl_programs(store: Store):
    """Programs from the language: hashes come from dsl, and the stored source parses back
    to the same program."""
    dsl = pytest.importorskip("optforge.dsl")
    src = '''def lion(w, g, lr, t, m, beta1=0.9, beta2=0.99, weight_decay=0.0):
    """Lion (Chen et al., 2023)."""
    c = interp(g, m, beta1)
    m = interp(g, m, beta2)
    return lr * (sign(c) + weight_decay * w), m
'''
    prog = dsl.parse(src)
    rec = store.add_program(prog)
    assert rec.structural_hash == dsl.structural_hash(prog)
    assert rec.fingerprint == dsl.fingerprint(prog)
    assert (rec.statements, rec.complexity) == (dsl.statement_count(prog),
                                                dsl.complexity(prog))
    assert dsl.parse(rec.source) == prog
    renamed = dsl.parse(src.replace("c = interp", "k = interp").replace("sign(c)", "sign(k)"))
    assert store.add_program(renamed).id == rec.id  # variable names do not change identity


def test_any_double_roundtrips(store: Store):
    """Property: every IEEE double (sign of zero aside on SQLite) comes back bit-exact, in a
    column and inside JSON metrics."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    p = store.add_program(program(1))

    @settings(max_examples=40, deadline=None, database=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(st.floats(allow_nan=True, allow_infinity=True, allow_subnormal=True))
    def roundtrip(value: float) -> None:
        ev = store.add_evaluation(p.id, suite="prop", status="ok", score=value,
                                  tasks=[TaskResultRecord("t", "ok", value, loss=value,
                                                          metrics={"v": value})])
        back = store.get_evaluation(ev.id)
        for got in (back.score, back.tasks[0].score, back.tasks[0].loss,
                    back.tasks[0].metrics["v"]):
            if math.isnan(value):
                assert math.isnan(got)
            else:
                assert got == value

    roundtrip()
