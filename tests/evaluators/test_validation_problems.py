"""The held-out validation tasks: models and data that no search suite uses, batched like
every problem (R replicas trained together are R separate trainings), deterministic, with
clear errors when bundled data is missing. Tiny step counts: the whole file runs in seconds."""

from __future__ import annotations

import math
import sys

import pytest
import torch
from optforge.dsl.kernel import compile_kernel
from optforge.evaluators.data import (
    DataError,
    adding_problem_arrays,
    friedman1_arrays,
    image_patch_arrays,
    load_source,
    low_rank_matrix_arrays,
    pydoc_corpus,
)
from optforge.evaluators.models import CharTransformer, TransformerLM, build_problem
from optforge.evaluators.scoring import ADAMW_RULE
from optforge.evaluators.tasks import SUITES, Suite, get_suite, lr_grid
from optforge.evaluators.trainer import train_replicas
from optforge.evaluators.validation_tasks import VALIDATION_TASKS

from optforge import dsl

pytestmark = pytest.mark.usefixtures("one_thread")

NAMES = [t.name for t in VALIDATION_TASKS]
CPU = torch.device("cpu")


def _task(name):
    return next(t for t in VALIDATION_TASKS if t.name == name)


def _problem(task):
    return build_problem(task.model, task.model_kwargs, task.data, task.data_args, CPU)


def _n_params(problem) -> int:
    return sum(math.prod(shape) for _, shape in problem.shapes)


def _stacked(problem, seeds):
    inits = [problem.init(torch.Generator().manual_seed(s)) for s in seeds]
    return [torch.stack([init[k] for init in inits]) for k in range(len(problem.shapes))]


# ---- the suite ------------------------------------------------------------------------------

def test_the_validation_tasks_are_held_out_from_every_search_suite():
    search = [t for s in SUITES if s != "validation" for t in get_suite(s).tasks]
    search_data = {t.data for t in search}
    search_models = {(t.model, t.model_args) for t in search}
    assert len(VALIDATION_TASKS) >= 5 and len(set(NAMES)) == len(NAMES)
    for t in VALIDATION_TASKS:
        assert t.data is not None and t.data not in search_data, t.name
        assert (t.model, t.model_args) not in search_models, t.name
        assert t.lrs == lr_grid(-4, 2, 2) and t.seeds == (0, 1)
        assert t.metric
    # new architectures (one task, spirals_deep, is the MLP class made deep and narrow)
    assert len({t.model for t in VALIDATION_TASKS} - {t.model for t in search}) >= 5
    assert max(t.steps for t in VALIDATION_TASKS) >= 3000  # a long-horizon task


def test_the_language_model_is_larger_than_any_medium_model():
    medium = max(_n_params(_problem(t)) for t in get_suite("medium").tasks)
    lm = _n_params(_problem(_task("english_lm")))
    assert lm > 2 * medium, (lm, medium)


def test_the_tasks_scale_for_a_gpu():
    """`Suite.for_device("cuda")` widens models by their width keys: every scaled task
    still builds (the bottleneck and the GRU keep their sizes: their keys do not scale)."""
    for t in Suite("validation_check", VALIDATION_TASKS).for_device("cuda").tasks:
        problem = _problem(t)
        assert _n_params(problem) >= _n_params(_problem(_task(t.name)))


# ---- batched problems -----------------------------------------------------------------------

@pytest.mark.parametrize("name", NAMES)
def test_replicas_trained_together_equal_replicas_trained_alone(name):
    """Two rates x two seeds in one batch give each (rate, seed) its own training."""
    task = _task(name).with_(steps=3)
    problem = _problem(task)
    kernel = compile_kernel(dsl.parse(ADAMW_RULE))
    lrs, seeds = (1e-3, 1e-2), (0, 1)
    together = train_replicas(task, kernel, lrs, seeds, problem=problem)
    assert together.statuses == (("ok", "ok"), ("ok", "ok"))
    for i, lr in enumerate(lrs):
        for j, seed in enumerate(seeds):
            alone = train_replicas(task, kernel, (lr,), (seed,), problem=problem)
            assert alone.initial_losses[0] == pytest.approx(together.initial_losses[j],
                                                            rel=1e-5)
            assert alone.losses[0][0] == pytest.approx(together.losses[i][j], rel=1e-4,
                                                       abs=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_init_and_plan_are_deterministic_and_gradients_finite(name):
    task = _task(name)
    problem = _problem(task)
    a = problem.init(torch.Generator().manual_seed(3))
    b = problem.init(torch.Generator().manual_seed(3))
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert [tuple(x.shape) for x in a] == [shape for _, shape in problem.shapes]
    assert all(x.dtype == torch.float32 for x in a)
    plan = problem.plan(torch.Generator().manual_seed(4), 5, task.batch_size)
    assert torch.equal(plan, problem.plan(torch.Generator().manual_seed(4), 5, task.batch_size))
    assert plan.shape[0] == 5
    params = [p.requires_grad_() for p in _stacked(problem, (0, 1))]
    losses = problem.loss(params, plan[2].expand(2, *plan[2].shape))
    grads = torch.autograd.grad(losses.sum(), params)
    assert losses.shape == (2,) and bool(torch.isfinite(losses).all())
    assert all(bool(torch.isfinite(g).all()) for g in grads)
    assert any(float(g.abs().max()) > 0 for g in grads)
    val = problem.val_loss([p.detach() for p in params])
    assert val.shape == (2,) and bool(torch.isfinite(val).all())


@pytest.mark.parametrize("name", NAMES)
def test_data_sources_are_deterministic(name):
    task = _task(name)
    again = load_source.__wrapped__(task.data, task.data_args)
    assert again.fingerprint == load_source(task.data, task.data_args).fingerprint


def test_the_gru_is_torchs_gru_per_replica():
    task = _task("adding_gru")
    problem = _problem(task)
    params = _stacked(problem, (0, 1))
    val = problem.val_loss(params)
    x, y = problem.x_val, problem.y_val
    for r in range(2):
        w_ih, w_hh, b_ih, b_hh, w_out, b_out = (p[r] for p in params)
        gru = torch.nn.GRU(x.shape[2], problem.h, batch_first=True)
        with torch.no_grad():
            for name, p in zip(("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"),
                               (w_ih, w_hh, b_ih, b_hh)):
                getattr(gru, name).copy_(p)
            _, h = gru(x)
            pred = torch.nn.functional.linear(h[0], w_out, b_out).squeeze(1)
        torch.testing.assert_close((pred - y).square().mean(), val[r], rtol=1e-4, atol=1e-6)


def test_the_deep_transformer_with_one_block_and_plain_norms_is_the_search_transformer():
    """Unit gains and zero biases (its initialisation) make LN_1, LN_2, LN_f plain layer
    norms: one block then computes `CharTransformer` exactly."""
    corpus = load_source("pydoc_text")
    deep = TransformerLM(corpus, CPU, d_model=16, heads=2, layers=1, context=8,
                               val_windows=8)
    plain = CharTransformer(corpus, CPU, d_model=16, heads=2, context=8, val_windows=8)
    params = _stacked(deep, (0, 1))
    named = dict(zip((n for n, _ in deep.shapes), params))
    keep = ["embed", "pos"] + [f"block0.{n}" for n, _ in plain.shapes[2:-1]] + ["head.weight"]
    torch.testing.assert_close(plain.val_loss([named[k] for k in keep]), deep.val_loss(params))


# ---- data sources ---------------------------------------------------------------------------

def test_pydoc_text_is_english_split_by_position():
    corpus = pydoc_corpus(val_fraction=0.1)
    n = len(corpus.train) + len(corpus.val)
    assert n > 300_000 and abs(len(corpus.val) / n - 0.1) < 1e-3
    space, e = ord(" ") - 32, ord("e") - 32
    counts = torch.bincount(corpus.train, minlength=corpus.vocab_size)
    assert int(counts.argmax()) == space and int(counts[e]) > 0.05 * len(corpus.train)


def test_a_missing_pydoc_data_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "pydoc_data.topics", None)  # import raises ImportError
    with pytest.raises(DataError, match="pydoc_data"):
        pydoc_corpus()


def test_unreadable_sample_images_are_a_clear_error(monkeypatch):
    import sklearn.datasets

    def missing():
        raise FileNotFoundError("china.jpg")

    monkeypatch.setattr(sklearn.datasets, "load_sample_images", missing)
    with pytest.raises(DataError, match="sample images"):
        image_patch_arrays(patch=8, n_train=4, n_val=4, val_rows=0.25, seed=0)


def test_image_patches_are_centred_and_unit_variance():
    d = image_patch_arrays(patch=8, n_train=512, n_val=128, val_rows=0.25, seed=0)
    assert d.x_train.shape == (512, 64) and d.x_val.shape == (128, 64)
    assert float(d.x_train.mean(dim=1).abs().max()) < 1e-5
    assert float(d.x_train.std()) == pytest.approx(1.0, rel=1e-3)
    assert d.y_train is d.x_train


def test_adding_problem_targets_sum_the_two_marked_values():
    d = adding_problem_arrays(length=10, n_train=64, n_val=16, seed=1)
    x = torch.cat([d.x_train, d.x_val])
    marker = x[..., 1]
    assert torch.equal(marker.sum(dim=1), torch.full((80,), 2.0))
    assert torch.equal(marker[:, :5].sum(dim=1), torch.ones(80))  # one in each half
    torch.testing.assert_close(torch.cat([d.y_train, d.y_val]), (x[..., 0] * marker).sum(dim=1))


def test_matrix_completion_validates_on_unobserved_entries_of_a_low_rank_matrix():
    d = low_rank_matrix_arrays(rows=20, cols=15, rank=2, cond=10.0, observed=0.9, n_val=30,
                               noise=0.0, seed=2)
    seen = {tuple(e) for e in d.x_train.tolist()}
    assert len(seen) == 270 and not seen & {tuple(e) for e in d.x_val.tolist()}
    m = torch.full((20, 15), float("nan"), dtype=torch.float64)
    m[d.x_train[:, 0], d.x_train[:, 1]] = d.y_train.double()
    m[d.x_val[:, 0], d.x_val[:, 1]] = d.y_val.double()
    assert not bool(m.isnan().any())  # every entry is either observed or held out
    assert int(torch.linalg.matrix_rank(m, rtol=1e-5)) == 2  # float32 entries
    assert 0.5 < float(m.square().mean()) < 2.0  # unit-variance entries


def test_friedman_validation_targets_are_the_noiseless_function():
    d = friedman1_arrays(n_train=2000, n_val=500, features=10, noise=1.0, seed=0)
    assert d.x_train.shape == (2000, 10) and abs(float(d.y_train.mean())) < 0.1
    u = d.x_val.double() / math.sqrt(12.0) + 0.5
    f = (10 * torch.sin(math.pi * u[:, 0] * u[:, 1]) + 20 * (u[:, 2] - 0.5) ** 2
         + 10 * u[:, 3] + 5 * u[:, 4])
    assert float(torch.corrcoef(torch.stack([f, d.y_val.double()]))[0, 1]) > 0.99999
