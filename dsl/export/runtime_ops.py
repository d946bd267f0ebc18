"""The math helpers of exported modules: real code, linted here and inlined by source.

Each exported module holds the source of the helpers its rule uses (`dsl.export.inline`
copies them), so the exported file needs nothing but torch. A helper computes one reduction
or matrix op of the op table on one tensor, keeping the reduced shape (broadcastable where
it is used), with the values the interpreter's `dsl.ops` implementation gives.

Inlined source must run on every Python that torch 2.1 supports: annotations stay plain
(``torch.Tensor``, ``float``), evaluated when the function is defined.
"""

import torch

from ..ops import NS_COEFFS, NS_EPS, NS_STEPS

# Each exported module defines these three from dsl.ops (see dsl.export.inline); here they
# come from the op table itself.
_NS_COEFFS = tuple(NS_COEFFS)
_NS_EPS = NS_EPS
_NS_STEPS = NS_STEPS


def _norm(x: torch.Tensor) -> torch.Tensor:
    """L2 norm over the whole tensor, in a broadcastable shape; |x| for a 0-d x."""
    if x.dim() == 0:
        return x.abs()
    return torch.linalg.vector_norm(x, dim=tuple(range(x.dim())), keepdim=True)


def _rms(x: torch.Tensor) -> torch.Tensor:
    """sqrt(mean(x ** 2)) over the whole tensor, in a broadcastable shape; |x| for a 0-d x."""
    if x.dim() == 0:
        return x.abs()
    return x.square().mean(dim=tuple(range(x.dim())), keepdim=True).sqrt()


def _logsumexp(x: torch.Tensor) -> torch.Tensor:
    """log(sum(exp(x))) over the whole tensor, in a broadcastable shape; x for a 0-d x (a
    copy: the updaters may overwrite x, a state, before they read the result)."""
    if x.dim() == 0:
        return x.clone()
    return torch.logsumexp(x, dim=tuple(range(x.dim())), keepdim=True)


def _mean(x: torch.Tensor) -> torch.Tensor:
    """Mean over the whole tensor, in a broadcastable shape."""
    if x.dim() == 0:
        return x.clone()
    return x.mean(dim=tuple(range(x.dim())), keepdim=True)


def _sum(x: torch.Tensor) -> torch.Tensor:
    """Sum over the whole tensor, in a broadcastable shape."""
    if x.dim() == 0:
        return x.clone()
    return x.sum(dim=tuple(range(x.dim())), keepdim=True)


def _row_mean(x: torch.Tensor) -> torch.Tensor:
    """Mean of each row of the matrix view (rows: the first dimension; columns: the rest),
    in a broadcastable shape; a vector is a column, so this is x itself."""
    if x.dim() <= 1:
        return x.clone()
    return x.mean(dim=tuple(range(1, x.dim())), keepdim=True)


def _col_mean(x: torch.Tensor) -> torch.Tensor:
    """Mean of each column of the matrix view, in a broadcastable shape (the mean of a
    vector)."""
    if x.dim() == 0:
        return x.clone()
    return x.mean(dim=0, keepdim=True)


def _orth(x: torch.Tensor) -> torch.Tensor:
    """Muon's quintic Newton–Schulz iteration (_NS_STEPS steps) towards U V^T of the matrix
    view of x (rows: the first dimension), in x's dtype; a vector is a column."""
    rows = x.shape[0] if x.dim() >= 1 else 1
    m = x.reshape(rows, -1)
    a, b, c = _NS_COEFFS
    y = m / (torch.linalg.matrix_norm(m, keepdim=True) + _NS_EPS)
    transposed = m.shape[-2] > m.shape[-1]
    if transposed:
        y = y.mT
    for _ in range(_NS_STEPS):
        gram = y @ y.mT
        y = a * y + (b * gram + c * gram @ gram) @ y
    return (y.mT if transposed else y).reshape(x.shape)


def _scalar_like(value: float, like: torch.Tensor, on_device: bool = False) -> torch.Tensor:
    """A 0-d tensor holding `value` in `like`'s dtype, for the ops that need a tensor."""
    return torch.tensor(value, dtype=like.dtype, device=like.device if on_device else "cpu")
