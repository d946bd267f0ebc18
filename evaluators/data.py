"""Data for the proxy tasks: everything local and deterministic, nothing downloaded.

Three kinds of source:

* datasets bundled inside scikit-learn (breast cancer, digits), standardised with statistics
  of their training split, and its two sample photographs (cut into patches);
* text that every CPython install carries: the source files of its own standard library,
  and the English prose of its help topics (`pydoc_data`), for character-level language
  models;
* synthetic problems generated from a fixed task seed (the teacher network of a
  teacher-student regression, the adding problem, a low-rank matrix, two spirals,
  Friedman's regression).

Every source is split once, by a fixed permutation, into training and validation parts, so
that a task's validation loss is measured on data its optimizer never saw. Each loaded source
carries a `fingerprint` (a hash of its arrays): the suite version includes it, so a different
scikit-learn or Python release that changes the data also changes the version and therefore
invalidates cached baselines.

Loading is cached per process (`functools.lru_cache`): a pool worker loads each source once.
"""

from __future__ import annotations

import hashlib
import math
import os
import sysconfig
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

__all__ = ["Arrays", "TextCorpus", "load_source", "DataError", "STDLIB_TRAIN_FILES",
           "STDLIB_VAL_FILES", "VOCAB_SIZE", "encode_text"]


class DataError(RuntimeError):
    """A data source cannot be built on this installation (e.g. no stdlib sources)."""


@dataclass(frozen=True, eq=False)
class Arrays:
    """A supervised dataset: float32 inputs (int64 ``(row, col)`` pairs for matrix
    completion) and targets (int64 class ids or float32 values)."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    fingerprint: str


@dataclass(frozen=True, eq=False)
class TextCorpus:
    """Token ids (int64) of a training text and a separate validation text."""

    train: torch.Tensor
    val: torch.Tensor
    vocab_size: int
    fingerprint: str


def _fingerprint(*arrays: np.ndarray | torch.Tensor) -> str:
    h = hashlib.sha256()
    for a in arrays:
        a = a.numpy() if isinstance(a, torch.Tensor) else a
        a = np.ascontiguousarray(a)
        h.update(str(a.dtype).encode())
        h.update(str(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()[:16]


def _split(n: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.random.default_rng(seed).permutation(n)
    n_val = int(round(n * val_fraction))
    return order[n_val:], order[:n_val]


def _standardised(x: np.ndarray, train: np.ndarray, val: np.ndarray):
    mean = x[train].mean(axis=0)
    std = x[train].std(axis=0)
    std = np.where(std > 1e-8, std, 1.0)  # constant features (digit borders) stay at zero
    z = (x - mean) / std
    return z[train], z[val]


def _sklearn_arrays(loader_name: str, val_fraction: float, split_seed: int,
                    classification: bool, feature_spread: float = 0.0) -> Arrays:
    """A bundled dataset, standardised. `feature_spread` > 0 then rescales feature j by
    ``10 ** (feature_spread * (u_j - 1/2))`` with the u_j evenly spaced in [0, 1] in a fixed
    random order: features on scales `feature_spread` decades apart, as raw measurements
    often are (an ill-conditioned problem that rewards per-coordinate step sizes)."""
    try:
        import sklearn.datasets as skd
    except ImportError as e:  # pragma: no cover - scikit-learn is a core dependency
        raise DataError("scikit-learn is needed for the bundled datasets "
                        "(pip install scikit-learn)") from e
    bunch = getattr(skd, loader_name)()
    x = np.asarray(bunch.data, dtype=np.float64)
    y = np.asarray(bunch.target)
    train, val = _split(len(x), val_fraction, split_seed)
    x_train, x_val = _standardised(x, train, val)
    if feature_spread:
        u = np.linspace(0.0, 1.0, x.shape[1])[np.random.default_rng(split_seed + 1)
                                               .permutation(x.shape[1])]
        scale = 10.0 ** (feature_spread * (u - 0.5))
        x_train, x_val = x_train * scale, x_val * scale
    y_dtype = torch.int64 if classification else torch.float32
    out = Arrays(torch.tensor(x_train, dtype=torch.float32),
                 torch.tensor(y[train], dtype=y_dtype),
                 torch.tensor(x_val, dtype=torch.float32),
                 torch.tensor(y[val], dtype=y_dtype),
                 fingerprint="")
    return _with_fingerprint(out)


def _with_fingerprint(a: Arrays) -> Arrays:
    return Arrays(a.x_train, a.y_train, a.x_val, a.y_val,
                  _fingerprint(a.x_train, a.y_train, a.x_val, a.y_val))


# ---- the standard library as a text corpus --------------------------------------------------

# Files present in every CPython >= 3.10. Validation text is a different file from the
# training text, so the metric measures generalisation to unseen code, not memorisation.
STDLIB_TRAIN_FILES = ("textwrap.py", "string.py", "heapq.py", "functools.py", "shlex.py",
                      "fractions.py", "calendar.py", "bisect.py")
STDLIB_VAL_FILES = ("statistics.py",)

# Printable ASCII (32..126) and newline get their own ids; everything else (tabs, non-ASCII
# characters in docstrings) shares one "other" id.
VOCAB_SIZE = 97
_OTHER = 96


def encode_text(text: str) -> np.ndarray:
    """Character ids in ``[0, VOCAB_SIZE)``: newline -> 95, printable ASCII c -> ord(c) - 32,
    anything else -> 96."""
    codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32).astype(np.int64)
    ids = np.full(codes.shape, _OTHER, dtype=np.int64)
    printable = (codes >= 32) & (codes <= 126)
    ids[printable] = codes[printable] - 32
    ids[codes == 10] = 95
    return ids


def _read_stdlib(names: tuple[str, ...]) -> str:
    root = sysconfig.get_paths()["stdlib"]
    parts = []
    for name in names:
        path = os.path.join(root, name)
        try:
            with open(path, encoding="utf-8") as f:
                parts.append(f.read())
        except OSError as e:
            raise DataError(
                f"the char_lm task reads the Python standard library's source files, but "
                f"{path} cannot be read ({e.strerror}); this Python install ships without "
                f"its .py sources") from None
    return "\n".join(parts)


def _stdlib_corpus() -> TextCorpus:
    train = torch.from_numpy(encode_text(_read_stdlib(STDLIB_TRAIN_FILES)))
    val = torch.from_numpy(encode_text(_read_stdlib(STDLIB_VAL_FILES)))
    return TextCorpus(train, val, VOCAB_SIZE, _fingerprint(train, val))


# ---- a synthetic teacher-student regression ---------------------------------------------------

def teacher_student_arrays(in_dim: int, width: int, depth: int, n_train: int, n_val: int,
                           noise: float, gain: float, seed: int) -> Arrays:
    """Gaussian inputs labelled by a fixed random deep tanh network (the teacher).

    teacher: h_0 = x, h_{k+1} = tanh(W_k h_k) for `depth` hidden layers of `width`, then a
    linear read-out to one output; W_k ~ N(0, gain^2 / fan_in). A gain above 1 keeps the
    teacher in the nonlinear regime of tanh. Targets get N(0, noise^2) label noise on the
    training split only: the validation loss measures distance to the true function.
    """
    gen = torch.Generator().manual_seed(seed)
    dims = [in_dim] + [width] * depth
    weights = [torch.randn(dims[k + 1], dims[k], generator=gen) * (gain / dims[k] ** 0.5)
               for k in range(depth)]
    readout = torch.randn(1, width, generator=gen) / width ** 0.5
    x = torch.randn(n_train + n_val, in_dim, generator=gen)
    h = x
    for w in weights:
        h = torch.tanh(h @ w.T)
    y = (h @ readout.T).squeeze(1)
    y = y / y.std()  # unit-variance targets: losses read the same for any width or depth
    y_train = y[:n_train] + noise * torch.randn(n_train, generator=gen)
    return _with_fingerprint(Arrays(x[:n_train].contiguous(), y_train.contiguous(),
                                    x[n_train:].contiguous(), y[n_train:].contiguous(), ""))


# ---- held-out (validation-suite) sources ------------------------------------------------------
#
# The sources below feed the `validation` suite only: data kinds that no search suite trains on
# (English prose, natural-image patches, generated sequences, a generated low-rank matrix,
# a generated 2-D classification, a generated tabular regression), so that a rule selected on
# the search suites is measured on data it was never selected on.

def _pydoc_topics_text() -> str:
    """The text of Python's interactive help topics (`pydoc_data.topics`, shipped with every
    CPython): the language reference's prose, topic after topic in sorted key order."""
    try:
        from pydoc_data.topics import topics
    except ImportError as e:
        raise DataError(
            "the english_lm task reads the English prose of Python's help topics "
            f"(pydoc_data/topics.py), but it cannot be imported ({e}); this Python install "
            "ships without pydoc_data") from None
    if not isinstance(topics, dict) or not topics:
        raise DataError("pydoc_data.topics holds no help topics on this Python install")
    return "\n\n".join(topics[k] for k in sorted(topics))


def pydoc_corpus(val_fraction: float = 0.1) -> TextCorpus:
    """English prose as a character corpus: the help topics text (`_pydoc_topics_text`,
    about 465k characters), encoded as `encode_text` does, split by position: the first
    ``1 - val_fraction`` of the characters train, the last `val_fraction` (whole topics the
    model never read, near the end of the alphabet) validate."""
    ids = torch.from_numpy(encode_text(_pydoc_topics_text()))
    cut = int(round(len(ids) * (1.0 - val_fraction)))
    train, val = ids[:cut].contiguous(), ids[cut:].contiguous()
    return TextCorpus(train, val, VOCAB_SIZE, _fingerprint(train, val))


def adding_problem_arrays(length: int, n_train: int, n_val: int, seed: int) -> Arrays:
    """The adding problem (Hochreiter & Schmidhuber, 1997), a long-memory sequence regression.

    Each sequence has `length` steps of two inputs: a value ``u_t ~ U[0, 1]`` and a marker
    that is 1 at exactly two steps (one drawn uniformly in the first half, one in the second
    half) and 0 elsewhere. The target is the sum of the two marked values. Predicting the mean
    (1) scores MSE 1/6; a model has to carry one value across up to `length` steps to do
    better. x: ``[N, length, 2]`` float32, y: ``[N]`` float32; the validation sequences are
    drawn after the training ones from the same generator.
    """
    if length < 4:
        raise ValueError("the adding problem needs length >= 4")
    gen = torch.Generator().manual_seed(seed)
    n = n_train + n_val
    u = torch.rand(n, length, generator=gen)
    half = length // 2
    first = torch.randint(half, (n,), generator=gen)
    second = half + torch.randint(length - half, (n,), generator=gen)
    marker = torch.zeros(n, length)
    rows = torch.arange(n)
    marker[rows, first] = 1.0
    marker[rows, second] = 1.0
    x = torch.stack([u, marker], dim=2)
    y = (u * marker).sum(dim=1)
    return _with_fingerprint(Arrays(x[:n_train].contiguous(), y[:n_train].contiguous(),
                                    x[n_train:].contiguous(), y[n_train:].contiguous(), ""))


def low_rank_matrix_arrays(rows: int, cols: int, rank: int, cond: float, observed: float,
                           n_val: int, noise: float, seed: int) -> Arrays:
    """Matrix completion data: entries of a fixed rank-`rank` matrix.

        M = A diag(s) B^T,   A [rows, rank], B [cols, rank] ~ N(0, 1),
        s_k log-spaced from 1 down to 1 / cond, rescaled so that M's entries have unit
        variance (sum_k s_k^2 = 1).

    A random `observed` fraction of the entries is the training set (with N(0, noise^2)
    added), `n_val` other entries, noiseless, the validation set: the task is to predict
    entries never observed. x holds int64 ``(row, col)`` pairs ``[N, 2]``, y float32 values.
    """
    gen = torch.Generator().manual_seed(seed)
    a = torch.randn(rows, rank, generator=gen, dtype=torch.float64)
    b = torch.randn(cols, rank, generator=gen, dtype=torch.float64)
    s = torch.logspace(0.0, -math.log10(cond), rank, dtype=torch.float64)
    s = s / s.square().sum().sqrt()
    m = (a * s) @ b.T
    order = torch.randperm(rows * cols, generator=gen)
    n_train = int(round(observed * rows * cols))
    if n_train < 1 or n_train + n_val > rows * cols:
        raise ValueError("low_rank_matrix: observed fraction and n_val do not fit the matrix")
    tr, va = order[:n_train], order[n_train:n_train + n_val]
    idx = lambda k: torch.stack([k // cols, k % cols], dim=1)  # noqa: E731
    y_train = m.flatten()[tr] + noise * torch.randn(n_train, generator=gen, dtype=torch.float64)
    return _with_fingerprint(Arrays(idx(tr), y_train.float(), idx(va),
                                    m.flatten()[va].float(), ""))


def _grey_sample_images() -> list[np.ndarray]:
    """scikit-learn's two bundled sample photographs (china.jpg, flower.jpg, 427 x 640 RGB)
    as grey levels in [0, 1] (ITU-R 601 luma)."""
    try:
        from sklearn.datasets import load_sample_images
        images = load_sample_images().images
    except (ImportError, OSError, ValueError) as e:
        raise DataError(
            "the patch_autoencoder task reads scikit-learn's bundled sample images "
            f"(sklearn/datasets/images/*.jpg, decoded by Pillow), but they cannot be read "
            f"({type(e).__name__}: {e})") from None
    luma = np.array([0.299, 0.587, 0.114])
    return [np.asarray(im, dtype=np.float64) @ luma / 255.0 for im in images]


def image_patch_arrays(patch: int, n_train: int, n_val: int, val_rows: float,
                       seed: int) -> Arrays:
    """Grey `patch` x `patch` patches of natural photographs, for an autoencoder.

    Patches are cut at uniformly random positions (a fixed generator) from both of
    scikit-learn's sample images, training patches from the top ``1 - val_rows`` of each
    image and validation patches from the bottom `val_rows` (no pixel is shared). Each patch
    has its mean removed (the DC component, as in sparse-coding studies) and all are divided
    by the training patches' standard deviation (all pixels pooled: unit mean square on the
    training split; the bottoms of both photographs are busier, about 1.5 there).
    x: ``[N, patch^2]`` float32; y is x (the reconstruction target).
    """
    images = _grey_sample_images()
    rng = np.random.default_rng(seed)

    def cut(n: int, top: bool) -> np.ndarray:
        out = []
        for k, im in enumerate(images):
            h, w = im.shape
            border = int(round(h * (1.0 - val_rows)))
            lo, hi = (0, border - patch) if top else (border, h - patch)
            count = n // len(images) + (1 if k < n % len(images) else 0)
            ys = rng.integers(lo, hi + 1, count)
            xs = rng.integers(0, w - patch + 1, count)
            out.extend(im[y:y + patch, x:x + patch].reshape(-1) for y, x in zip(ys, xs))
        p = np.stack(out)
        return p - p.mean(axis=1, keepdims=True)

    train, val = cut(n_train, True), cut(n_val, False)
    scale = train.std()
    x_train = torch.tensor(train / scale, dtype=torch.float32)
    x_val = torch.tensor(val / scale, dtype=torch.float32)
    return _with_fingerprint(Arrays(x_train, x_train, x_val, x_val, ""))


def two_spirals_arrays(n_train: int, n_val: int, turns: float, noise: float,
                       seed: int) -> Arrays:
    """Two interleaved spirals in the plane (Lang & Witbrock, 1988), a classic hard
    classification for deep nets: class c in {0, 1} (fair coin), radius ``r = t``, angle
    ``2 pi turns t + pi c`` with ``t = 0.05 + 0.95 sqrt(u)``, ``u ~ U[0, 1]`` (a density
    growing with the radius, so the points are spread about evenly along the arms), plus
    N(0, noise^2) per coordinate; then x ``[N, 2]`` is doubled (about unit variance per
    coordinate). y: int64 classes; validation points drawn after the training points."""
    gen = torch.Generator().manual_seed(seed)
    n = n_train + n_val
    c = torch.randint(2, (n,), generator=gen)
    t = 0.05 + 0.95 * torch.rand(n, generator=gen).sqrt()
    angle = 2 * math.pi * turns * t + math.pi * c
    x = torch.stack([t * torch.cos(angle), t * torch.sin(angle)], dim=1)
    x = (x + noise * torch.randn(n, 2, generator=gen)) * 2.0
    return _with_fingerprint(Arrays(x[:n_train].contiguous(), c[:n_train].contiguous(),
                                    x[n_train:].contiguous(), c[n_train:].contiguous(), ""))


def friedman1_arrays(n_train: int, n_val: int, features: int, noise: float,
                     seed: int) -> Arrays:
    """Friedman's first regression benchmark (Friedman, 1991; scikit-learn's
    `make_friedman1`), a tabular problem with interactions, curvature and distractors:

        x ~ U[0, 1]^features,   y = 10 sin(pi x_1 x_2) + 20 (x_3 - 1/2)^2 + 10 x_4 + 5 x_5

    (features 6.. are irrelevant), plus N(0, noise^2) on the training targets only.
    Generated here from a torch generator (not scikit-learn's), so it is the same on every
    installation. Inputs are centred to [-1/2, 1/2] * sqrt(12) (unit variance); targets
    standardised with the noiseless training targets' mean and deviation, so a validation
    MSE of 1 is predicting the mean and 0 is the true function."""
    if features < 5:
        raise ValueError("friedman1 needs at least 5 features")
    gen = torch.Generator().manual_seed(seed)
    n = n_train + n_val
    x = torch.rand(n, features, generator=gen, dtype=torch.float64)
    y = (10 * torch.sin(math.pi * x[:, 0] * x[:, 1]) + 20 * (x[:, 2] - 0.5) ** 2
         + 10 * x[:, 3] + 5 * x[:, 4])
    mean, std = y[:n_train].mean(), y[:n_train].std()
    y_train = y[:n_train] + noise * torch.randn(n_train, generator=gen, dtype=torch.float64)
    x = (x - 0.5) * math.sqrt(12.0)
    return _with_fingerprint(Arrays(x[:n_train].float(), ((y_train - mean) / std).float(),
                                    x[n_train:].float(), ((y[n_train:] - mean) / std).float(),
                                    ""))


# ---- the registry -------------------------------------------------------------------------

@lru_cache(maxsize=None)
def load_source(name: str, args: tuple[tuple[str, object], ...] = ()) -> Arrays | TextCorpus:
    """The data source `name` built with keyword `args` (a sorted tuple of pairs, as tasks
    hold them). Cached per process."""
    kw = dict(args)
    if name == "breast_cancer":
        return _sklearn_arrays("load_breast_cancer", kw.get("val_fraction", 0.2),
                               kw.get("split_seed", 0), classification=True,
                               feature_spread=kw.get("feature_spread", 0.0))
    if name == "digits":
        return _sklearn_arrays("load_digits", kw.get("val_fraction", 0.2),
                               kw.get("split_seed", 0), classification=True)
    if name == "stdlib_text":
        return _stdlib_corpus()
    if name == "teacher_student":
        return teacher_student_arrays(**kw)
    if name == "pydoc_text":
        return pydoc_corpus(**kw)
    if name == "adding_problem":
        return adding_problem_arrays(**kw)
    if name == "low_rank_matrix":
        return low_rank_matrix_arrays(**kw)
    if name == "image_patches":
        return image_patch_arrays(**kw)
    if name == "two_spirals":
        return two_spirals_arrays(**kw)
    if name == "friedman1":
        return friedman1_arrays(**kw)
    raise DataError(f"unknown data source {name!r}")
