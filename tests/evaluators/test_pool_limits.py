"""How many workers a pool starts, and when: never more than the machine takes (its cores,
and its memory at `WORKER_MEMORY_BYTES` a worker), and each only when a job is there for
it. The machine is faked (cores, memory, GPUs): nothing here depends on where it runs."""

from __future__ import annotations

import logging

from optforge.evaluators import pool as pool_module
from optforge.evaluators.jobs import Job
from optforge.evaluators.pool import (
    WORKER_MEMORY_BYTES,
    EvaluatorPool,
    SlotSpec,
    check_workers,
    plan_slots,
    worker_limit,
)

from optforge import seeds


def name_runner(job: Job) -> str:
    """A job runner that does no work (workers unpickle it by reference)."""
    return job.program.name


def started(pool: EvaluatorPool) -> int:
    return sum(slot.executor is not None for slot in pool.slots)


def jobs(tiny, n: int):
    lion = seeds.load_seed("lion")
    return [(i, Job(lion, tiny.task("quadratic"))) for i in range(n)]


def test_workers_start_only_when_jobs_come(tiny):
    with EvaluatorPool(devices=[SlotSpec("cpu", 1)] * 3, runner=name_runner) as pool:
        assert list(pool.run(iter([]))) == [] and started(pool) == 0
        assert [r for _, r in pool.run(jobs(tiny, 1))] == ["lion"]
        assert started(pool) == 1  # not 3
        # two jobs: the warm worker takes one, a second worker starts for the other
        assert sorted(k for k, _ in pool.run(jobs(tiny, 2))) == [0, 1]
        assert started(pool) == 2


def test_a_pool_is_capped_by_the_cores(machine, caplog):
    with caplog.at_level(logging.WARNING, logger="optforge.evaluators.pool"):
        assert EvaluatorPool(1000, runner=name_runner).size == 2
    assert "workers 1000 exceeds the 2 cores of this machine; starting at most 2" in \
        caplog.text
    assert EvaluatorPool(None).size == 2
    machine["cores"] = 16
    assert EvaluatorPool(None).size == 8  # one per core, at most 8, as before


def test_a_pool_is_capped_by_the_memory(machine, caplog):
    machine.update(cores=64, memory=3 * WORKER_MEMORY_BYTES + WORKER_MEMORY_BYTES // 2)
    assert EvaluatorPool(None).size == 3
    with caplog.at_level(logging.WARNING, logger="optforge.evaluators.pool"):
        assert EvaluatorPool(6).size == 3
    assert f"workers 6 needs about {6 * WORKER_MEMORY_BYTES / 2**30:.1f} GB of memory" \
        in caplog.text
    machine["memory"] = 10  # less than one worker's worth: still one worker, never zero
    assert EvaluatorPool(None).size == 1


def test_gpus_set_the_count_and_memory_caps_it(machine):
    machine.update(cores=2, gpus=4)
    limit = worker_limit()
    assert limit.workers == 4 and limit.problem(8) is None  # beyond 4: not started
    devices = [slot.spec.device for slot in EvaluatorPool(None).slots]
    assert devices == [f"cuda:{i}" for i in range(4)]
    machine["memory"] = 2 * WORKER_MEMORY_BYTES
    assert f"needs about {4 * WORKER_MEMORY_BYTES / 2**30:.1f} GB" in check_workers(4)
    assert len(EvaluatorPool(None).slots) == 2


def test_the_limit_in_words(machine):
    assert check_workers(None) is None and check_workers(0) is None
    assert check_workers(2) is None
    assert check_workers(3) == "--workers 3 exceeds the 2 cores of this machine"
    assert check_workers(3, "workers =") == "workers = 3 exceeds the 2 cores of this machine"
    machine["memory"] = None  # a system that does not say: cores only
    assert worker_limit().workers == 2 and check_workers(2) is None


def test_slot_plans_respect_the_limit():
    assert plan_slots(8, 0, 2, max_workers=2) == [SlotSpec("cpu", 1)] * 2
    assert plan_slots(None, 0, 16, max_workers=3) == [SlotSpec("cpu", 5)] * 3
    assert plan_slots(None, 4, 16, max_workers=2) == [SlotSpec("cuda:0", 8),
                                                       SlotSpec("cuda:1", 8)]
    assert plan_slots(2, 0, 2, max_workers=0) == [SlotSpec("cpu", 2)]  # never zero slots


def test_this_machine_answers():
    """The real probes return something usable (whatever this machine is)."""
    assert pool_module.usable_cores() >= 1
    memory = pool_module.available_memory()
    assert memory is None or memory >= 0
    assert worker_limit(cuda_devices=0).workers >= 1
