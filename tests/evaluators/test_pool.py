"""The evaluator pool: parallel results equal serial ones, a dying worker costs only its
candidate, a hung one is killed at its hard limit, and everything crossing to workers
pickles. One pool of two workers serves the whole module (workers are slow to start)."""

from __future__ import annotations

import pickle

import pytest
import torch
from optforge.evaluators import (
    EvaluatorPool,
    Job,
    SlotSpec,
    Status,
    Suite,
    ensure_baselines,
    evaluate,
    evaluate_many,
    evaluate_on_suites,
    plan_slots,
)
from optforge.evaluators import jobs as jobs_module
from optforge.evaluators.jobs import error_run, init_worker, worker_device
from optforge.evaluators.scoring import SCORE_FLOOR
from optforge.evaluators.trainer import TaskRun

from optforge import seeds

from .helpers import faulty_runner, renamed, torch_threads


@pytest.fixture(scope="module")
def suite(tiny):
    """Three of the tiny tasks (those whose data needs no scikit-learn import): the pool's
    logic does not depend on which tasks run, and workers start faster."""
    return Suite("pooltest", tuple(tiny.task(n) for n in ("quadratic", "rosenbrock",
                                                          "teacher_student")))


@pytest.fixture(scope="module")
def baselines(suite, cache):
    with torch_threads(1):
        return ensure_baselines(suite, cache=cache)


@pytest.fixture(scope="module")
def pool():
    # one CPU thread per worker, as plan_slots gives two workers on this 2-core machine
    with EvaluatorPool(devices=[SlotSpec("cpu", 1)] * 2, runner=faulty_runner) as p:
        yield p


def test_parallel_results_equal_serial_ones(pool, suite, baselines, cache):
    programs = [seeds.load_seed(n) for n in ("lion", "sgd_momentum", "signum")]
    results = list(evaluate_many(programs, suite, pool=pool, cache=cache))
    assert sorted(r.index for r in results) == [0, 1, 2]
    with torch_threads(1):
        for r in results:
            serial = evaluate(programs[r.index], suite, baselines=baselines)
            assert r.status == serial.status == "ok"
            assert r.score == serial.score
            assert [t.loss for t in r.tasks] == [t.loss for t in serial.tasks]


def test_candidates_on_several_suites_share_one_pool(pool, suite, baselines, tiny, cache):
    """Each candidate names its suite (a search interleaves screenings with full
    evaluations); each result is the serial evaluation on that suite."""
    other = Suite("pooltest_b", (tiny.task("quadratic"),))
    lion, sgd = seeds.load_seed("lion"), seeds.load_seed("sgd_momentum")
    wanted = [(lion, suite.name), (sgd, other.name), (lion, other.name)]
    results = list(evaluate_on_suites(iter(wanted), (suite, other), pool=pool, cache=cache))
    assert sorted(r.index for r in results) == [0, 1, 2]
    with torch_threads(1):
        for r in results:
            program, name = wanted[r.index]
            assert r.suite == name and len(r.tasks) == (3 if name == suite.name else 1)
            serial = evaluate(program, suite if name == suite.name else other, cache=cache)
            assert r.score == serial.score and r.status == "ok"
    with pytest.raises(ValueError, match="names suite 'medium'"):
        list(evaluate_on_suites(iter([(lion, "medium")]), (suite,), pool=pool, cache=cache))


def test_a_dying_or_hung_worker_costs_only_its_candidate(pool, suite, cache):
    """Workers that exit, are killed (as by the out-of-memory killer), segfault or hang:
    each costs its own candidate only (one pool run, so the restarts overlap)."""
    lion = seeds.load_seed("lion")
    candidates = [lion, renamed(lion, "crash_exit"), seeds.load_seed("adamw"),
                  renamed(lion, "crash_kill"), renamed(lion, "crash_segv"),
                  renamed(lion, "hang"), seeds.load_seed("sgd_momentum")]
    restarts = pool.restarts
    before = pool.hard_limit_s
    pool.hard_limit_s = lambda job: 3.0 if job.program.name == "hang" else before(job)
    try:
        results = {r.index: r for r in evaluate_many(candidates, suite, pool=pool,
                                                     cache=cache)}
    finally:
        pool.hard_limit_s = before
    assert sorted(results) == list(range(len(candidates)))
    for i in (1, 3, 4):
        assert results[i].status == Status.ERROR.value and results[i].score == SCORE_FLOOR
        assert "worker died while running this candidate" in results[i].error
    assert results[5].status == Status.TIMEOUT.value and results[5].score == SCORE_FLOOR
    assert "hard limit" in results[5].error
    for i in (0, 2, 6):
        assert results[i].status == "ok" and results[i].error is None
    assert results[2].score == 1.0  # AdamW, as ever
    # each bad candidate killed a worker, or two when both ran one of its tasks at once
    assert 4 <= pool.restarts - restarts <= 8


def test_uncompilable_candidates_never_reach_a_worker(pool, suite, cache):
    from optforge import dsl

    broken = dsl.Program("broken", (), (), (dsl.Stmt("_1", "mul", ("g", "ghost")),), ("_1",))
    results = list(evaluate_many([broken], suite, pool=pool, cache=cache))
    assert len(results) == 1 and results[0].status == "error"


def test_candidates_are_drawn_lazily(pool, suite, cache):
    """A generator of candidates is read only as workers free up: steady-state search can
    breed the next child from results already seen."""
    drawn = []

    def children():
        for i in range(5):
            drawn.append(i)
            yield seeds.load_seed("sgd_momentum")

    stream = evaluate_many(children(), suite, pool=pool, cache=cache)
    first = next(stream)
    assert first.status == "ok" and len(drawn) < 5
    assert len(list(stream)) == 4


def test_everything_sent_to_workers_pickles(tiny):
    job = Job(seeds.load_seed("muon"), tiny.task("char_lm"), (("momentum", 0.9),), 5.0)
    assert pickle.loads(pickle.dumps(job)) == job
    for slot in plan_slots(2, 0, 2) + plan_slots(None, 2, 16):
        assert pickle.loads(pickle.dumps((slot.device, slot.threads))) == (slot.device,
                                                                            slot.threads)
    run = error_run(tiny.task("quadratic"), "boom")
    back = pickle.loads(pickle.dumps(run))
    assert isinstance(back, TaskRun) and back.error == "boom"
    assert pickle.loads(pickle.dumps(faulty_runner)) is faulty_runner
    assert pickle.loads(pickle.dumps(init_worker)) is init_worker


def test_slot_plans():
    assert plan_slots(2, 0, 2) == [SlotSpec("cpu", 1)] * 2
    assert plan_slots(None, 0, 4) == [SlotSpec("cpu", 1)] * 4
    assert plan_slots(1, 0, 16) == [SlotSpec("cpu", 16)]
    # one worker per CUDA device, CPU threads shared out, never more workers than devices
    assert plan_slots(None, 2, 16) == [SlotSpec("cuda:0", 8), SlotSpec("cuda:1", 8)]
    assert plan_slots(8, 4, 16) == [SlotSpec(f"cuda:{i}", 4) for i in range(4)]
    assert plan_slots(1, 4, 16) == [SlotSpec("cuda:0", 16)]
    with pytest.raises(ValueError, match="workers must be >= 1"):
        plan_slots(0, 0, 2)


def test_the_worker_initialiser_pins_the_device(monkeypatch):
    pinned = []
    monkeypatch.setattr(torch.cuda, "set_device", lambda d: pinned.append(str(d)))
    monkeypatch.setitem(jobs_module._WORKER, "device", None)
    with torch_threads(torch.get_num_threads()):
        init_worker("cuda:1", 3)
        assert torch.get_num_threads() == 3
    assert pinned == ["cuda:1"] and worker_device() == "cuda:1"
    init_worker("cpu", 1)
    assert pinned == ["cuda:1"] and worker_device() == "cpu"


def test_a_pool_is_of_one_device_kind():
    with pytest.raises(ValueError, match="one device kind"):
        EvaluatorPool(devices=[SlotSpec("cuda:0", 1), SlotSpec("cpu", 1)])
