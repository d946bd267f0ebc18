"""Tasks and suites are frozen data; the suite version tracks everything they compute."""

from __future__ import annotations

import pickle

import pytest
from optforge.evaluators import SUITES, SuiteError, Task, get_suite
from optforge.evaluators.tasks import SEARCH_SUITES, Suite, lr_grid

TASKS = {"quadratic", "rosenbrock", "logreg_cancer", "mlp_digits", "cnn_digits", "char_lm",
         "teacher_student"}


@pytest.mark.parametrize("name", [n for n in SUITES if n != "validation"])
def test_every_search_and_reference_suite_draws_on_the_seven_tasks(name):
    suite = get_suite(name)
    expected = TASKS - {"cnn_digits", "char_lm"} if name == "small" else TASKS
    assert {t.name for t in suite.tasks} == expected
    for t in suite.tasks:
        assert t.replicas == len(t.lrs) * len(t.seeds) >= 5


def test_suites_grow_by_cost():
    def cost(suite):
        return sum(t.steps * t.replicas for t in suite.tasks)

    tiny, small, medium, reference = (get_suite(n) for n in SEARCH_SUITES + ("reference",))
    assert cost(tiny) < cost(small) < cost(medium) < cost(reference)
    deep = dict(get_suite("small").task("teacher_student").model_args)["hidden"]
    assert len(deep) >= 4  # the deep tanh teacher-student MLP


def test_versions_are_stable_and_distinct():
    versions = {get_suite(n).version for n in SUITES}
    assert len(versions) == len(SUITES)
    assert get_suite("tiny").version == Suite("tiny", get_suite("tiny").tasks).version


def test_the_search_stages_train_the_references_models_up_to_its_horizon():
    """`reference` is the pre-redesign medium at 3x its steps; both search stages train its
    models and data, stage 1 on fewer seeds and rates than stage 2, neither longer than it."""
    small, medium, reference = (get_suite(n) for n in ("small", "medium", "reference"))
    for s in small.tasks:
        m, r = medium.task(s.name), reference.task(s.name)
        assert (s.model, s.model_args, s.data, s.data_args, s.batch_size) == \
            (r.model, r.model_args, r.data, r.data_args, r.batch_size) == \
            (m.model, m.model_args, m.data, m.data_args, m.batch_size)
        assert s.steps <= m.steps <= r.steps
        assert len(s.seeds) < len(m.seeds) < len(r.seeds)
        assert len(s.lrs) < len(m.lrs) == len(r.lrs)
    for m, r in zip(medium.tasks, reference.tasks):
        assert m.name == r.name and m.model_args == r.model_args and m.steps <= r.steps
    assert [t.steps for t in reference.tasks] == [1800, 3000, 1200, 900, 600, 600, 600]


def test_validation_models_and_data_are_used_by_no_search_suite():
    validation = get_suite("validation")
    assert len(validation.tasks) >= 5
    searched = [t for n in SEARCH_SUITES + ("reference",) for t in get_suite(n).tasks]
    # no search model, data source or architecture: at least five new model classes, and
    # the one shared class (the MLP) at a depth no search task has
    new_classes = {t.model for t in validation.tasks} - {t.model for t in searched}
    assert len(new_classes) >= 5
    assert not {(t.model, t.model_args) for t in validation.tasks} & \
        {(t.model, t.model_args) for t in searched}
    depth = max(len(dict(t.model_args).get("hidden", ())) for t in searched)
    for t in validation.tasks:
        if t.model not in new_classes:
            assert len(dict(t.model_args)["hidden"]) > depth
    assert not {t.data for t in validation.tasks} & {t.data for t in searched}
    # one horizon at least 3x the pre-redesign medium's longest: as long as the reference's
    assert max(t.steps for t in validation.tasks) >= \
        max(t.steps for t in get_suite("reference").tasks)


def test_changing_a_task_changes_the_version():
    tiny = get_suite("tiny")
    changed = Suite("tiny", tuple(t.with_(steps=t.steps + 1) if t.name == "quadratic" else t
                                  for t in tiny.tasks))
    assert changed.version != tiny.version


def test_cuda_scaling_makes_bigger_replica_batches_and_a_new_version():
    medium, gpu = get_suite("medium"), get_suite("medium", "cuda")
    assert gpu.device_kind == "cuda" and gpu.version != medium.version
    for a, b in zip(medium.tasks, gpu.tasks):
        assert b.replicas == 2 * a.replicas and b.lrs == a.lrs and b.steps == a.steps
    assert dict(gpu.task("char_lm").model_args)["d_model"] == \
        2 * dict(medium.task("char_lm").model_args)["d_model"]


def test_lr_grid():
    assert lr_grid(-2, 0, 1) == (0.01, 0.1, 1.0)
    assert lr_grid(-4, 0.5, 2)[:3] == (0.0001, 0.000316, 0.001)


@pytest.mark.parametrize("change, message", [
    (dict(steps=0), "steps must be >= 1"),
    (dict(lrs=(0.1, 0.01, 1.0)), "increasing"),
    (dict(lrs=(0.1, 1.0)), "at least 3"),
    (dict(seeds=()), "seeds"),
    (dict(seeds=(1, 1)), "seeds"),
    (dict(name="no spaces"), "identifier"),
    (dict(schedule="cosine"), "schedule must be"),
])
def test_bad_tasks_are_rejected_with_a_clear_message(change, message):
    with pytest.raises(SuiteError, match=message):
        get_suite("tiny").task("quadratic").with_(**change)


def test_unknown_suite_and_task():
    with pytest.raises(SuiteError, match="unknown suite 'huge'.*tiny, small, medium"):
        get_suite("huge")
    with pytest.raises(SuiteError, match="no task 'nope'"):
        get_suite("tiny").task("nope")
    with pytest.raises(SuiteError, match="duplicate"):
        t = get_suite("tiny").tasks[0]
        Suite("x", (t, t))


def test_tasks_and_suites_pickle():
    for name in SUITES:
        suite = get_suite(name)
        assert pickle.loads(pickle.dumps(suite)) == suite
        for t in suite.tasks:
            assert isinstance(pickle.loads(pickle.dumps(t)), Task)
