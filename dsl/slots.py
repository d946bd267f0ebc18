"""Factored state: a state slot kept at a reduced shape.

In a rule every state slot *means* a tensor of the parameter's shape. A slot may be declared
with a reduced storage, written as an annotation in the rule's signature::

    def adafactor(w, g, lr, t, r: row, c: col, ...):

* ``row``: one value per row of the matrix view (stored ``(d0, 1, ..., 1)``);
* ``col``: one value per column of it (stored ``(1, d1, ..., dk)``);
* ``scalar``: one value per parameter tensor (stored ``(1, ..., 1)``);
* ``full`` (the default, no annotation): the parameter's shape.

This changes what is stored, never what a rule computes: a slot is loaded as a broadcast
view of the parameter's shape (`load`, no copy), and its new value is stored by taking the
first column (or row, or entry) of it (`store`, exact). The checker proves, for every
annotated slot, that the value the rule returns for it is constant along the axes the
storage drops (`row_mean` varies along rows only, a reduction along neither, `g` along
both, ...), so nothing is lost. A vector of n entries is an ``n x 1`` column: its `row` slot
is the whole vector, its `col` and `scalar` slots one number.

Layouts follow the interpreter's: `lead` leading replica axes come before the parameter's
own axes and are never reduced.
"""

from __future__ import annotations

from enum import Enum
from typing import Sequence

import torch

__all__ = ["SlotShape", "stored_shape", "load", "store", "zeros"]


class SlotShape(str, Enum):
    FULL = "full"
    ROW = "row"
    COL = "col"
    SCALAR = "scalar"


def _kept(slot: SlotShape, ndim: int) -> tuple[bool, ...]:
    """For each of the parameter's axes: does the storage keep it?"""
    if slot is SlotShape.FULL or ndim == 0:
        return (True,) * ndim
    if slot is SlotShape.ROW:
        return (True,) + (False,) * (ndim - 1)
    if slot is SlotShape.COL:
        return (False,) + (True,) * (ndim - 1)
    return (False,) * ndim


def stored_shape(slot: SlotShape, shape: Sequence[int], lead: int = 0) -> tuple[int, ...]:
    """The storage shape of a slot of a parameter whose (replica-led) shape is `shape`."""
    shape = tuple(shape)
    own = shape[lead:]
    return shape[:lead] + tuple(d if keep else 1 for d, keep in zip(own, _kept(slot, len(own))))


def load(slot: SlotShape, stored: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """The slot's value at the parameter's full (replica-led) `shape`: a broadcast view."""
    shape = tuple(shape)
    return stored if stored.shape == shape else stored.expand(shape)


def store(slot: SlotShape, value: torch.Tensor, shape: Sequence[int],
          lead: int = 0) -> torch.Tensor:
    """The storage of `value` (a value of the parameter's full shape, or one that broadcasts
    to it) for a slot of the given kind: the first entry along every dropped axis, copied
    into its own memory (so that it keeps no full-size temporary alive)."""
    shape = tuple(shape)
    full = value.expand(shape) if value.shape != shape else value
    if slot is SlotShape.FULL:
        return full
    index = (slice(None),) * lead + tuple(
        slice(None) if keep else slice(0, 1) for keep in _kept(slot, len(shape) - lead))
    return full[index].clone(memory_format=torch.contiguous_format)


def zeros(slot: SlotShape, like: torch.Tensor, lead: int = 0) -> torch.Tensor:
    """A zero-initialised slot for the parameter `like`."""
    return like.new_zeros(stored_shape(slot, like.shape, lead))
