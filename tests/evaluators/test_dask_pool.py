"""The dask pool (`evaluators.dask_pool.DaskPool`): on a real `LocalCluster` of worker
processes, results equal serial ones bit for bit, jobs are drawn only as worker threads free
up, a job that raises or that kills its worker costs only its candidate, a hung job is
stopped at its hard limit; and every mistake in `optforge run/resume --pool dask` (a
malformed or unreachable scheduler, a missing extra, a flag without `--pool dask`) is one
line that stores nothing."""

from __future__ import annotations

import socket
import sys
from dataclasses import replace

import pytest
from optforge.evaluators import Job, Status, evaluate, evaluate_many
from optforge.evaluators.dask_pool import MISSING_EXTRA, scheduler_address
from optforge.evaluators.pool import HARD_LIMIT, WORKER_DIED
from optforge.search.cli import main

from optforge import seeds
from tests.dask_helpers import ProcessCluster, local_cluster, require_distributed

from .helpers import faulty_runner, renamed, torch_threads

# ---- the command line, no cluster needed ------------------------------------------------------

@pytest.mark.parametrize("text, address", [
    ("tcp://10.0.0.5:8786", "tcp://10.0.0.5:8786"),
    ("scheduler.example.org:8786", "tcp://scheduler.example.org:8786"),
    ("tls://[::1]:8786/", "tls://[::1]:8786"),
])
def test_scheduler_addresses(text, address):
    assert scheduler_address(text) == address


@pytest.mark.parametrize("text, why", [
    ("tcp://host", "no port"), ("http://host:8786", "unknown protocol 'http'"),
    ("tcp://host:99999", "port"), ("tcp://:8786", "no host"),
    ("tcp://host:8786/path", "no path"), ("", "no host"),
])
def test_malformed_scheduler_addresses(text, why):
    with pytest.raises(ValueError, match=why):
        scheduler_address(text)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def one_line_error(capsys, tmp_path, *args) -> str:
    """Run `optforge ARGS --db <a fresh file>`; assert it failed with one line on stderr and
    created no database; the line."""
    db = tmp_path / "never.db"
    assert main([*args, "--db", f"sqlite:///{db}", "--no-progress"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert not db.exists()
    return err


def test_pool_mistakes_are_one_line_and_store_nothing(capsys, tmp_path):
    unreachable = f"tcp://127.0.0.1:{closed_port()}"
    cases = [
        (["run", "--scheduler", "tcp://h:8786"], "--scheduler applies to --pool dask"),
        (["resume", "x", "--scheduler", "tcp://h:8786"], "--scheduler applies to --pool dask"),
        (["run", "--connect-timeout", "3"], "--connect-timeout applies to --pool dask"),
        (["run", "--pool", "dask"], "--pool dask needs --scheduler tcp://HOST:PORT"),
        (["run", "--pool", "dask", "--scheduler", "tcp://h"], "malformed scheduler address"),
        (["run", "--pool", "dask", "--scheduler", "h:1", "--workers", "1"],
         "--workers sets the local pool's size"),
        (["run", "--pool", "dask", "--scheduler", unreachable, "--connect-timeout", "1"],
         f"cannot reach the dask scheduler at {unreachable} within 1 s"),
    ]
    for args, message in cases:
        assert message in one_line_error(capsys, tmp_path, *args), args


def test_without_the_cluster_extra_the_error_names_it(capsys, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)  # `import distributed` fails
    err = one_line_error(capsys, tmp_path, "run", "--pool", "dask", "--scheduler",
                         "tcp://127.0.0.1:8786")
    assert err.endswith(MISSING_EXTRA) and "optforge[cluster]" in err


def test_the_resume_hint_names_the_cluster(tmp_path):
    from types import SimpleNamespace

    from optforge.search.commands.campaign import resume_command

    campaign = SimpleNamespace(id=7, store=SimpleNamespace(display_url="postgresql://h/db"))
    hint = resume_command(campaign, SimpleNamespace(address="tcp://10.0.0.5:8786"))
    assert hint == ("optforge resume 7 --db 'postgresql://h/db' --pool dask "
                    "--scheduler tcp://10.0.0.5:8786")


# ---- the pool on a real cluster ------------------------------------------------------------------

@pytest.fixture(scope="module")
def cluster():
    require_distributed()
    with local_cluster(2) as c:
        yield c


def hard_limit(job: Job) -> float:
    return 3.0 if job.program.name == "hang" else 600.0


@pytest.fixture(scope="module")
def pool(cluster):
    from optforge.evaluators.dask_pool import DaskPool

    with DaskPool(cluster.scheduler_address, runner=faulty_runner,
                  hard_limit_s=hard_limit) as p:
        yield p


def test_results_equal_serial_ones_and_jobs_are_drawn_as_threads_free_up(
        pool, tiny, tiny_baselines, cache):
    assert (pool.size, pool.device_kind) == (2, "cpu")
    programs = [seeds.load_seed(n) for n in ("lion", "sgd_momentum", "signum")]
    drawn, finished, most_ahead = [0], [0], [0]

    def lazily():
        for p in programs:
            drawn[0] += 1
            yield p
    for r in evaluate_many(lazily(), tiny, pool=pool, cache=cache):
        finished[0] += 1
        most_ahead[0] = max(most_ahead[0], drawn[0] - finished[0])
        with torch_threads(1):
            serial = evaluate(programs[r.index], tiny, baselines=tiny_baselines)
        assert r.status == serial.status == "ok"
        assert r.score == serial.score
        assert [t.loss for t in r.tasks] == [t.loss for t in serial.tasks]
    assert finished[0] == 3
    # a candidate is several jobs, so at most the 2 running ones' candidates are ahead
    assert most_ahead[0] <= pool.size


def test_discarded_jobs_do_not_run(pool, tiny):
    job = Job(seeds.load_seed("lion"), tiny.task("quadratic"))
    results = pool.run((k, job) for k in "abc")
    first, _ = next(results)
    pool.discard("c")  # not drawn yet: both threads were busy until now
    keys = [first] + [k for k, _ in results]
    assert sorted(keys) == ["a", "b"]


def test_a_job_that_raises_or_kills_its_worker_costs_only_its_candidate(pool, cluster, tiny):
    lion = seeds.load_seed("lion")
    task = tiny.task("quadratic")
    jobs = [("raises", Job(lion, replace(task, model="no_such_model"))),
            ("killed", Job(renamed(lion, "crash_kill"), task)),
            ("fine", Job(lion, task))]
    scheduler = cluster.scheduler
    before, scheduler.allowed_failures = scheduler.allowed_failures, 0  # no retry elsewhere
    try:
        runs = dict(pool.run(jobs))
    finally:
        scheduler.allowed_failures = before
    assert runs["killed"].error.startswith(WORKER_DIED)
    assert Status.ERROR.value in runs["killed"].statuses[0]
    assert runs["raises"].error.startswith("ValueError: unknown model 'no_such_model'")
    assert runs["fine"].error is None and runs["fine"].steps == task.steps
    pool.client.wait_for_workers(2)  # the nanny brings the killed worker back


def test_a_hung_job_times_out_and_its_worker_is_restarted(pool, tiny):
    task = tiny.task("quadratic")
    pids = set(pool.worker_pids().values())
    jobs = [("hang", Job(renamed(seeds.load_seed("lion"), "hang"), task)),
            ("fine", Job(seeds.load_seed("lion"), task))]
    runs = dict(pool.run(jobs))
    assert runs["hang"].error.startswith(HARD_LIMIT)
    assert Status.TIMEOUT.value in runs["hang"].statuses[0]
    assert runs["fine"].error is None
    assert pool.size == 2 and set(pool.worker_pids().values()) != pids


def test_losing_the_scheduler_stops_the_pool_with_one_error(tiny, tmp_path):
    """A scheduler process killed mid-run (the client gives up reconnecting after the
    connection timeout) is an `EvaluationError` naming it: the campaign stops in one line,
    with what it committed kept, rather than waiting forever or dumping a traceback. The
    cluster here is started as `dask scheduler` and `dask worker` processes."""
    from optforge.evaluators.dask_pool import DaskPool
    from optforge.evaluators.scoring import EvaluationError

    job = Job(seeds.load_seed("lion"), tiny.task("quadratic"))
    with ProcessCluster(tmp_path) as cluster, \
            DaskPool(cluster.address, connect_timeout=2) as pool:
        results = pool.run((i, job) for i in range(100))
        next(results)
        cluster.kill_scheduler()
        lost = f"lost the dask scheduler at {cluster.address}"
        with pytest.raises(EvaluationError, match=lost):
            list(results)
