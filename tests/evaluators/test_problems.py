"""Data sources and batched models: local data with separate validation splits, and
replicas that never interact (R replicas at once compute what each computes alone)."""

from __future__ import annotations

import pytest
import torch
from optforge.evaluators.data import (
    STDLIB_VAL_FILES,
    VOCAB_SIZE,
    encode_text,
    load_source,
)
from optforge.evaluators.models import build_problem
from optforge.evaluators.tasks import get_suite
from optforge.evaluators.trainer import stream_seed


@pytest.mark.parametrize("source, n_features", [("breast_cancer", 30), ("digits", 64)])
def test_bundled_datasets_are_standardised_with_a_validation_split(source, n_features):
    d = load_source(source)
    assert d.x_train.shape[1] == d.x_val.shape[1] == n_features
    assert len(d.x_val) > 50 and len(d.x_train) > 3 * len(d.x_val)
    assert abs(float(d.x_train.mean())) < 0.05  # standardised with training statistics
    # no training example is also a validation example
    train = {tuple(r) for r in d.x_train.tolist()}
    assert sum(tuple(r) in train for r in d.x_val.tolist()) <= 2  # digits has duplicates


def test_stdlib_text_has_a_held_out_validation_file():
    corpus = load_source("stdlib_text")
    assert corpus.vocab_size == VOCAB_SIZE
    assert len(corpus.train) > 100_000 and len(corpus.val) > 10_000
    assert int(corpus.train.max()) < VOCAB_SIZE and int(corpus.val.min()) >= 0
    assert STDLIB_VAL_FILES == ("statistics.py",)


def test_encode_text():
    ids = encode_text("a\n\t~é")
    assert ids.tolist() == [ord("a") - 32, 95, 96, ord("~") - 32, 96]


def test_teacher_student_data_is_deterministic():
    args = dict(in_dim=4, width=8, depth=4, n_train=64, n_val=32, noise=0.1, gain=1.5, seed=3)
    a = load_source("teacher_student", tuple(sorted(args.items())))
    b = load_source.__wrapped__("teacher_student", tuple(sorted(args.items())))
    assert a.fingerprint == b.fingerprint
    assert torch.equal(a.x_val, b.x_val) and abs(float(a.y_val.std()) - 1) < 0.3


def test_stream_seeds_are_stable_and_distinct():
    assert stream_seed("quadratic", 0, "init") == stream_seed("quadratic", 0, "init")
    assert len({stream_seed(t, s, p) for t in ("a", "b") for s in (0, 1)
                for p in ("init", "data")}) == 8


# every model and size a suite trains: (suite, task)
SIZED_TASKS = [(suite, t.name) for suite in ("tiny", "small", "medium", "validation")
               for t in get_suite(suite).tasks]


@pytest.mark.parametrize("suite, task", SIZED_TASKS)
def test_replicas_do_not_interact(suite, task, one_thread):
    """Losses, gradients and validation losses of 3 replicas at once equal, bit for bit,
    those of each replica alone and of each pair: a replica's numbers do not depend on how
    many train beside it (one alone included, which torch computes along other paths). At
    one thread, as a pool worker trains; with more, torch splits the language models'
    embedding gradient (a scatter-add) by its size, and its sums by another order."""
    t = get_suite(suite).task(task)
    problem = build_problem(t.model, t.model_kwargs, t.data, t.data_args, torch.device("cpu"))
    inits = [problem.init(torch.Generator().manual_seed(s)) for s in range(3)]
    plans = [problem.plan(torch.Generator().manual_seed(10 + s), 2, t.batch_size)
             for s in range(3)]
    params = [torch.stack([init[k] for init in inits]) for k in range(len(problem.shapes))]
    batch = torch.stack([plan[1] for plan in plans])

    def run(rows):
        leaves = [p[rows].clone().requires_grad_() for p in params]
        losses = problem.loss(leaves, batch[rows])
        grads = torch.autograd.grad(losses.sum(), leaves)
        with torch.no_grad():
            val = problem.val_loss([p.detach() for p in leaves])
        return losses.detach(), grads, val

    losses, grads, val = run([0, 1, 2])
    assert losses.shape == val.shape == (3,)
    for rows in ([0], [1], [2], [0, 2], [2, 1]):
        part_losses, part_grads, part_val = run(rows)
        for i, r in enumerate(rows):
            assert torch.equal(part_losses[i], losses[r]), (rows, r)
            assert torch.equal(part_val[i], val[r]), (rows, r)
            for g, g_part in zip(grads, part_grads):
                assert torch.equal(g_part[i], g[r]), (rows, r)


def test_parameter_layouts_follow_torch():
    t = get_suite("tiny").task("cnn_digits")
    problem = build_problem(t.model, t.model_kwargs, t.data, t.data_args, torch.device("cpu"))
    shapes = dict(problem.shapes)
    assert shapes["conv1.weight"] == (4, 1, 3, 3) and shapes["fc.weight"] == (10, 8 * 16)


def test_unknown_model_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown model 'resnet'"):
        build_problem("resnet", {}, None, (), torch.device("cpu"))


def test_the_batched_cnn_is_the_plain_torch_network_per_replica():
    """Grouped convolutions over stacked replicas compute each replica's own network."""
    import torch.nn.functional as F

    t = get_suite("tiny").task("cnn_digits")
    problem = build_problem(t.model, t.model_kwargs, t.data, t.data_args, torch.device("cpu"))
    params = [torch.stack([problem.init(torch.Generator().manual_seed(s))[k] for s in range(2)])
              for k in range(len(problem.shapes))]
    val = problem.val_loss(params)
    x = problem.x_val.reshape(-1, 1, 8, 8)
    for r in range(2):
        w1, b1, w2, b2, wf, bf = (p[r] for p in params)
        h = F.relu(F.conv2d(x, w1, b1, padding=1))
        h = F.relu(F.conv2d(h, w2, b2, stride=2, padding=1))
        logits = F.linear(h.flatten(1), wf, bf)
        torch.testing.assert_close(F.cross_entropy(logits, problem.y_val), val[r],
                                   rtol=1e-5, atol=1e-6)
