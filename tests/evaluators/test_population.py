"""Population-batched evaluation: candidates trained together as one batched model get,
bit for bit on CPU, the runs they get alone, whatever the others in the batch do (diverge,
go NaN, raise, time out, ask for a hyperparameter they lack); the evaluator groups them,
and a group whose worker dies costs only the candidate that killed it."""

from __future__ import annotations

import pytest
from optforge.dsl.kernel import compile_kernel
from optforge.evaluators import (
    EvaluatorPool,
    SlotSpec,
    Status,
    Suite,
    evaluate,
    evaluate_many,
)
from optforge.evaluators import get_suite as suite_named
from optforge.evaluators.grouping import (
    CPU_GROUP_SIZE,
    CUDA_MAX_GROUP,
    chunk_size,
    fit,
    group_size,
    replica_bytes,
)
from optforge.evaluators.jobs import GroupJob, Job, run_group, run_job
from optforge.evaluators.models import build_problem
from optforge.evaluators.population import Member, train_population
from optforge.evaluators.trainer import train_replicas

from optforge import seeds

from .group_helpers import crashing_group_runner
from .helpers import (
    ADAHESSIAN,
    EXPLODING_RULE,
    NAN_RULE,
    SAM,
    renamed,
    rule,
    same_floats,
    torch_threads,
)

pytestmark = pytest.mark.usefixtures("one_thread")

SGD_SLOW = "def sgd_slow(w, g, lr, t):\n    return 0.001 * lr * g\n"
# rules reading more than their gradient (issue #16): a second gradient, a Hessian estimate,
# the loss, a whole-model norm and factored state
POLYAK = ("def polyak(w, g, lr, t, m, beta=0.9):\n"
          "    m = interp(g, m, beta)\n"
          "    return lr * min(loss, 1) * m, m\n")
CLIPPED = ("def clipped(w, g, lr, t, m, beta=0.9):\n"
           "    m = interp(g * min(1, 1 / (global_norm(g) + 1e-6)), m, beta)\n"
           "    return lr * m, m\n")
FACTORED = ("def factored(w, g, lr, t, r: row, c: col, b=0.9):\n"
            "    r = interp(row_mean(g * g), r, b)\n"
            "    c = interp(col_mean(g * g), c, b)\n"
            "    return lr * g * rsqrt(sqrt(r * c) + 1e-8), r, c\n")
CONTEXT_RULES = (SAM, ADAHESSIAN, POLYAK, CLIPPED, FACTORED)
CONTEXT_NAMES = {"sam", "adahessian", "polyak", "clipped", "factored"}
STEPS = 40  # the stage-1 tasks' models, data and batches, over fewer steps


class RaisesAtStep:
    """A compiled rule that raises from its fifth step on (an exception mid-training)."""

    def __init__(self, kernel):
        self.kernel = kernel
        self.elementwise, self.n_state = kernel.elementwise, kernel.n_state

    def bind(self, *args):
        return self.kernel.bind(*args)

    def prepare(self, t, bound):
        if float(t) >= 5:
            raise RuntimeError("the rule broke at step 5")
        return self.kernel.prepare(t, bound)

    def apply(self, *args):
        return self.kernel.apply(*args)


def same_run(a, b) -> bool:
    return (a.task, a.lrs, a.seeds, a.statuses, a.steps, a.error) == \
        (b.task, b.lrs, b.seeds, b.statuses, b.steps, b.error) and \
        same_floats(a.losses, b.losses) and same_floats(a.initial_losses, b.initial_losses) \
        and len(a.curve) == len(b.curve) and \
        all(s == t and same_floats(x, y) for (s, x), (t, y) in zip(a.curve, b.curve))


def members():
    """(name, kernel, hyper, budget): flat and per-tensor rules, ones that diverge at some
    rates or all, go NaN, raise mid-run, time out before the first step, or name a
    hyperparameter they lack."""
    adamw = compile_kernel(seeds.load_seed("adamw"))
    return [
        ("adamw", adamw, None, None),
        ("lamb", compile_kernel(seeds.load_seed("lamb")), None, None),
        ("sgd_momentum", compile_kernel(seeds.load_seed("sgd_momentum")), None, None),
        ("exploding", compile_kernel(rule(EXPLODING_RULE)), None, None),
        ("nan", compile_kernel(rule(NAN_RULE)), None, None),
        ("raises", RaisesAtStep(adamw), None, None),
        ("timeout", adamw, None, 0.0),
        ("bad_hyper", adamw, {"no_such": 1.0}, None),
        ("lion", compile_kernel(seeds.load_seed("lion")), {"beta1": 0.8}, None),
    ] + [(src.split("(")[0][4:], compile_kernel(rule(src)), None, None)
         for src in CONTEXT_RULES]


@pytest.mark.parametrize("task_name", [t.name for t in suite_named("small").tasks])
def test_a_batch_of_candidates_trains_each_exactly_as_alone(task_name):
    task = suite_named("small").task(task_name).with_(steps=STEPS)
    problem = build_problem(task.model, task.model_kwargs, task.data, task.data_args, "cpu")
    group = members()
    together = train_population(
        task, [Member(k, task.lrs, hyper, budget) for _, k, hyper, budget in group],
        problem=problem, record_every=10)
    statuses = set()
    for (name, kernel, hyper, budget), run in zip(group, together):
        alone = train_replicas(task, kernel, task.lrs, task.seeds, hyper=hyper,
                               time_budget_s=budget, problem=problem, record_every=10)
        assert same_run(run, alone), name
        if name in CONTEXT_NAMES:  # they trained (not an error run equal to an error run)
            assert run.error is None and Status.OK.value in run.replica_statuses, name
        statuses |= set(run.replica_statuses)
    # the batch held every kind of failure beside the healthy runs
    assert {"ok", "diverged", "nan", "error", "timeout"} <= statuses


@pytest.mark.parametrize("task_name", ["logreg_cancer", "teacher_student"])
@pytest.mark.parametrize("seed", ["sgd", "sam"])
def test_a_member_left_with_one_row_trains_as_alone(task_name, seed):
    """Its other rates diverge: alone it goes on as a batch of one row, in the group beside
    another member's rows. SAM's whole-model norm and second gradient (on contiguous
    copies of its rows) are computed for a lone row as for one of many."""
    task = suite_named("small").task(task_name).with_(steps=STEPS)
    problem = build_problem(task.model, task.model_kwargs, task.data, task.data_args, "cpu")
    kernel = compile_kernel(seeds.load_seed(seed))
    adamw = compile_kernel(seeds.load_seed("adamw"))
    lrs = (0.01, 1e6, 1e7)
    alone = train_replicas(task, kernel, lrs, task.seeds, problem=problem)
    assert alone.replica_statuses.count("ok") == 1  # the two large rates diverged
    together = train_population(task, [Member(kernel, lrs), Member(adamw, task.lrs)],
                                problem=problem)
    assert same_run(together[0], alone)


def test_a_group_job_gives_each_candidate_its_own_job_run():
    """Learning-rate grid extension included: a rule that wants larger rates than the grid
    has is extended in rounds beside rules that need no extension."""
    task = suite_named("small").task("logreg_cancer").with_(steps=STEPS)
    programs = (rule(SGD_SLOW), seeds.load_seed("adamw"), rule(EXPLODING_RULE),
                seeds.load_seed("signum"))
    runs = run_group(GroupJob(programs, task))
    assert len(runs[0].lrs) > len(task.lrs)  # it was extended
    for program, run in zip(programs, runs):
        assert same_run(run, run_job(Job(program, task))), program.name


def test_one_candidate_alone_in_a_batch_is_train_replicas(tiny):
    task = tiny.task("mlp_digits")
    kernel = compile_kernel(seeds.load_seed("sgd_momentum"))
    (run,) = train_population(task, [Member(kernel, task.lrs)])
    assert same_run(run, train_replicas(task, kernel, task.lrs, task.seeds))


def test_group_sizes():
    small = suite_named("small")
    assert group_size(small, "cpu") == CPU_GROUP_SIZE
    task = small.task("mlp_digits")
    assert chunk_size(task, "cpu", 5) == 5 and chunk_size(task, "cpu", 0) == 1
    problem = build_problem(task.model, task.model_kwargs, task.data, task.data_args, "cpu")
    per = replica_bytes(task, problem)
    params = sum(w.numel() for w in problem.init(__import__("torch").Generator()))
    assert per > 16 * 4 * params  # activations and the plan on top of the parameters
    # a device that holds 3 candidates' replicas in its usable half, and huge ones
    assert fit(task, per, 2 * 3 * per * task.replicas) == 3
    assert fit(task, per, 1) == 1 and fit(task, per, 2 ** 50) == CUDA_MAX_GROUP
    assert 1 <= group_size(small.for_device("cuda"), "cuda", 80 * 2 ** 30) <= CUDA_MAX_GROUP


@pytest.fixture(scope="module")
def group_pool():
    with EvaluatorPool(devices=[SlotSpec("cpu", 1)] * 2, runner=crashing_group_runner,
                       groups=True) as p:
        yield p


def test_grouped_evaluation_equals_one_candidate_per_job(group_pool, tiny, tiny_baselines,
                                                          cache):
    programs = [seeds.load_seed(n) for n in ("lion", "adamw", "sgd_momentum", "lamb")]
    programs.append(rule(EXPLODING_RULE))
    grouped = {r.index: r for r in evaluate_many(programs, tiny, pool=group_pool,
                                                 cache=cache, group_size=3)}
    single = {r.index: r for r in evaluate_many(programs, tiny, pool=group_pool,
                                                cache=cache, group_size=1)}
    assert sorted(grouped) == sorted(single) == list(range(len(programs)))
    for i, r in grouped.items():
        assert (r.status, r.error) == (single[i].status, single[i].error)
        assert same_floats(r.score, single[i].score)
        assert same_floats([t.loss for t in r.tasks], [t.loss for t in single[i].tasks])
    with torch_threads(1):
        serial = evaluate(programs[0], tiny, baselines=tiny_baselines)
    assert grouped[0].score == serial.score


def test_a_group_whose_worker_dies_costs_only_the_candidate_that_killed_it(
        group_pool, tiny, cache):
    """Every group holding it kills its worker, so two tasks are enough."""
    suite = Suite("grouptest", (tiny.task("quadratic"), tiny.task("rosenbrock")))
    lion = seeds.load_seed("lion")
    programs = [lion, renamed(lion, "crash_exit"), seeds.load_seed("adamw")]
    results = {r.index: r for r in evaluate_many(programs, suite, pool=group_pool,
                                                 cache=cache, group_size=3)}
    assert sorted(results) == [0, 1, 2]
    assert results[1].status == Status.ERROR.value
    assert "worker died while running this candidate" in results[1].error
    assert results[0].status == results[2].status == "ok"
    assert results[2].score == 1.0  # AdamW against itself, as ever


def test_a_pool_with_its_own_runner_runs_one_candidate_per_job():
    assert not EvaluatorPool(devices=[SlotSpec("cpu", 1)], runner=crashing_group_runner).groups
    assert EvaluatorPool(devices=[SlotSpec("cpu", 1)]).groups
