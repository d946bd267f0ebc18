"""Data for the proxy tasks: everything local and deterministic, nothing downloaded.

Three kinds of source:

* datasets bundled inside scikit-learn (breast cancer, digits), standardised with statistics
  of their training split;
* text that every CPython install carries: the source files of its own standard library,
  for a character-level language model;
* synthetic problems generated from a fixed task seed (the teacher network of a
  teacher-student regression).

Every source is split once, by a fixed permutation, into training and validation parts, so
that a task's validation loss is measured on data its optimizer never saw. Each loaded source
carries a `fingerprint` (a hash of its arrays): the suite version includes it, so a different
scikit-learn or Python release that changes the data also changes the version and therefore
invalidates cached baselines.

Loading is cached per process (`functools.lru_cache`): a pool worker loads each source once.
"""

from __future__ import annotations

import hashlib
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
    """A supervised dataset: float32 inputs and targets (int64 class ids or float32 values)."""

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
    raise DataError(f"unknown data source {name!r}")
