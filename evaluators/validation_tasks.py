"""The tasks of the held-out `validation` suite: models and data that no search suite uses.

A search selects rules on its suites (`evaluators.tasks`), so its best candidates are
partly fitted to those tasks' quirks. These tasks are never selected on: a rule's score
here is the honest estimate of what a campaign found. Each differs from every search task
in architecture AND in the kind of data:

=================  ================================  ========================================
task               model                             data
=================  ================================  ========================================
english_lm         2-block pre-LayerNorm             English prose: Python's help topics
                   transformer, d_model 64, learned  (pydoc_data), characters, split by
                   LN gains (115k parameters, over   position
                   4x any search-suite model)
adding_gru         GRU, 16 units, backpropagation    the adding problem (generated): a
                   through 20 steps; 3000 training   long-memory sequence regression
                   steps, the long-horizon task
matrix_completion  bilinear factorisation U V^T,     30% of the entries of a generated
                   rank 10 (over-parameterised),     ill-conditioned rank-5 100 x 80 matrix;
                   small initialisation              validated on unobserved entries
patch_autoencoder  tanh MLP autoencoder 64-128-64-   8x8 grey patches of scikit-learn's two
                   16-64-128-64, linear bottleneck   sample photographs (validation: the
                                                     images' bottom quarters)
resmlp_friedman    residual MLP, pre-LayerNorm,      Friedman's regression #1 (generated
                   GELU, 2 blocks of width 32        tabular: 10 features, 5 irrelevant)
spirals_deep       deep narrow tanh MLP, 8 hidden    two interleaved spirals (generated 2-D
                   layers of 16 (the `MLP` class,    classification)
                   twice as deep as any search MLP)
=================  ================================  ========================================

Every task uses the search suites' protocol: 13 learning rates (half decades 1e-4 .. 100)
times 2 seeds trained together as 26 replicas, under the `Task` default schedule (warm-up,
then cosine decay). Measured when the suite was made (tuned AdamW's and SGD with
momentum's best mean final validation loss, initial loss about L0):

=================  =========  ======  =====  ===========  ==================  =================
task               params     steps   batch  AdamW cpu s  AdamW loss (lr)     SGD-m loss (lr)
=================  =========  ======  =====  ===========  ==================  =================
english_lm         114,560    400     8      53           2.369 (3.16e-3)     2.362 (0.1)
adding_gru         977        3000    16     14.5         4.9e-5 (0.0316)     3.3e-4 (0.316)
matrix_completion  1,800      2000    64     1.0          4.4e-4 (0.1)        0.0366 (0.316)
patch_autoencoder  35,280     1000    64     8.8          0.614 (0.01)        0.646 (0.316)
resmlp_friedman    8,961      500     32     1.3          0.0081 (0.0316)     0.0234 (0.1)
spirals_deep       1,986      1500    32     1.8          0.0072 (3.16e-3)    0.0184 (0.0316)
=================  =========  ======  =====  ===========  ==================  =================

(L0: 4.58, 0.6-1.4, 1.10, 1.55, 1.2-1.7, 0.68.) AdamW costs about 80 s of one CPU core per
candidate for the whole suite (process CPU time, torch with one thread; SGD with momentum
46 s: on english_lm the update of 26 x 115k parameters costs as much as the model). Every
best rate is interior to the grid for both rules. The transformer is the one task where the
two baselines tie; elsewhere AdamW leads by 5% to 80x.
"""

from __future__ import annotations

from .tasks import Task, _args, lr_grid

__all__ = ["VALIDATION_TASKS", "VALIDATION_GRID", "VALIDATION_SEEDS"]

VALIDATION_GRID = lr_grid(-4, 2, 2)  # half decades 1e-4 .. 100 (13 rates)
VALIDATION_SEEDS = (0, 1)
_BUDGET_S = 300.0  # per task: over 5x the measured cost, a guard against a stuck rule


def _task(name: str, model: str, model_args: dict, data: str, data_args: dict, *, steps: int,
          batch_size: int, metric: str) -> Task:
    return Task(name=name, model=model, model_args=_args(**model_args), data=data,
                data_args=_args(**data_args), steps=steps, batch_size=batch_size,
                metric=metric, lrs=VALIDATION_GRID, seeds=VALIDATION_SEEDS,
                time_budget_s=_BUDGET_S)


VALIDATION_TASKS: tuple[Task, ...] = (
    _task("english_lm", "transformer_lm",
          dict(d_model=64, heads=4, layers=2, context=32, val_windows=64),
          "pydoc_text", {}, steps=400, batch_size=8,
          metric="validation next-character cross-entropy on held-out help topics (nats)"),
    _task("adding_gru", "gru_regressor", dict(units=16),
          "adding_problem", dict(length=20, n_train=16384, n_val=256, seed=5),
          steps=3000, batch_size=16,
          metric="validation mean squared error (1/6 predicts the mean)"),
    _task("matrix_completion", "matrix_factorization", dict(rank=10, init_scale=0.1),
          "low_rank_matrix", dict(rows=100, cols=80, rank=5, cond=10.0, observed=0.3,
                                  n_val=2000, noise=0.0, seed=7),
          steps=2000, batch_size=64,
          metric="mean squared error on unobserved entries (1 predicts zero)"),
    _task("patch_autoencoder", "autoencoder",
          dict(encoder=(128, 64), code=16, activation="tanh"),
          "image_patches", dict(patch=8, n_train=8192, n_val=2048, val_rows=0.25, seed=11),
          steps=1000, batch_size=64,
          metric="validation reconstruction mean squared error per pixel"),
    _task("resmlp_friedman", "residual_mlp", dict(width=32, blocks=2, out=1),
          "friedman1", dict(n_train=4096, n_val=1024, features=10, noise=1.0, seed=17),
          steps=500, batch_size=32,
          metric="validation mean squared error to the true function (standardised)"),
    _task("spirals_deep", "mlp", dict(hidden=(16,) * 8, activation="tanh", out=2),
          "two_spirals", dict(n_train=2048, n_val=1024, turns=1.5, noise=0.02, seed=13),
          steps=1500, batch_size=32,
          metric="validation cross-entropy"),
)
