"""Whole-model reductions: one value over every parameter of a group.

``global_sum(x)`` is the sum of `x`'s entries over every parameter tensor of the group
(`x` evaluated for each parameter, a scalar standing for a tensor filled with it);
``global_norm(x)`` the L2 norm over all of them, computed as torch's ``clip_grad_norm_``
does: the norm of the per-tensor norms. Both are scalars (one per replica with ``lead=1``):
the same value for every parameter of the group. Every backend calls these functions (the
interpreter and the kernel directly, an exported optimizer through its inlined copy), so
they agree bit for bit. A group-level value is computed once per step, however many
parameters read it.
"""

from __future__ import annotations

from typing import Sequence

import torch

__all__ = ["global_sum", "global_norm", "GLOBAL_FNS"]


def _flat(lead: int, x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """`x` at `like`'s shape (a broadcast view), its parameter axes flattened."""
    if x.shape != like.shape:
        x = x.expand(like.shape)
    return x.reshape(*like.shape[:lead], -1)


def global_sum(lead: int, xs: Sequence[torch.Tensor],
               params: Sequence[torch.Tensor]) -> torch.Tensor:
    """Sum of every entry of `xs[i]` (broadcast to `params[i]`'s shape) over all i: a 0-d
    tensor (``lead=0``) or one value per replica, ``[R]`` (``lead=1``)."""
    parts = [_flat(lead, x, p).sum(dim=-1) for x, p in zip(xs, params)]
    return torch.stack(parts, dim=-1).sum(dim=-1)


def global_norm(lead: int, xs: Sequence[torch.Tensor],
                params: Sequence[torch.Tensor]) -> torch.Tensor:
    """L2 norm of all the entries of `xs` together (see `global_sum`): the norm of the
    per-tensor norms."""
    parts = [torch.linalg.vector_norm(_flat(lead, x, p), dim=-1) for x, p in zip(xs, params)]
    return torch.linalg.vector_norm(torch.stack(parts, dim=-1), dim=-1)


GLOBAL_FNS = {"global_sum": global_sum, "global_norm": global_norm}
