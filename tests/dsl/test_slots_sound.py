"""Factored state is storage only: wherever the checker accepts a slot's annotation, the rule
steps bit for bit as the same rule with full-size state (the "varies along" proof is sound),
and the parser reads annotations and reserved names as documented."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from optforge.dsl.interpreter import init_state, run_group_step
from optforge.dsl.slots import SlotShape

from optforge import dsl

from .strategies import ELEMENTWISE_OPS, MATRIX_OPS, REDUCTION_OPS, programs

F64 = torch.float64


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    return torch.equal(torch.nan_to_num(a, 7.0, 8.0, -8.0), torch.nan_to_num(b, 7.0, 8.0, -8.0))


@settings(max_examples=60, deadline=None)
@given(p=programs(ops=ELEMENTWISE_OPS + REDUCTION_OPS + MATRIX_OPS * 3, max_statements=8,
                  valid=True),
       kinds=st.lists(st.sampled_from(list(SlotShape)), min_size=3, max_size=3),
       seed=st.integers(0, 3))
def test_an_accepted_annotation_never_changes_a_step(p, kinds, seed):
    shapes = tuple((s, k) for s, k in zip(p.state, kinds) if k is not SlotShape.FULL)
    q = replace(p, slot_shapes=shapes)
    if not shapes or not dsl.check(q).ok:
        return
    gen = torch.Generator().manual_seed(seed)
    ws = [torch.randn(4, 3, generator=gen, dtype=F64), torch.randn(5, generator=gen, dtype=F64),
          torch.randn(3, 2, 2, generator=gen, dtype=F64)]
    s_full = [init_state(p, w) for w in ws]
    s_fact = [init_state(q, w) for w in ws]
    for t in (1, 2, 3):
        gs = [torch.randn(w.shape, generator=gen, dtype=F64) for w in ws]
        a, s_full = run_group_step(p, ws, gs, 0.1, t, s_full)
        b, s_fact = run_group_step(q, ws, gs, 0.1, t, s_fact)
        assert all(_same(x, y) for x, y in zip(a, b)), dsl.format_program(q)
        for full, fact, w in zip(s_full, s_fact, ws):
            for slot, x, y in zip(q.state, full, fact):
                assert _same(x, dsl.slots.load(q.slot_shape(slot), y, w.shape))


def test_full_is_the_default_and_is_not_stored():
    p = dsl.parse("def r(w, g, lr, t, m: full, v: col):\n    return g, m, col_mean(v)\n")
    assert p.slot_shapes == (("v", SlotShape.COL),)
    assert "m: full" not in dsl.format_program(p) and "v: col" in dsl.format_program(p)


@pytest.mark.parametrize("source, message, col", [
    ("def r(w, g, lr, t, loss):\n    return g, loss\n",
     ("'loss' is a reserved input (w, g, lr, t, loss, hess, rows, cols, numel); a state slot "
      "cannot take its name"), 20),
    ("def r(w, g, lr, t, numel=1.0):\n    return g\n",
     "'numel' is a reserved input", 20),
    ("def r(w, g, lr, t):\n    hess = g\n    return g\n",
     "cannot assign to the input 'hess' (a reserved input:", 5),
    ("def r(w, g, lr, t):\n    t = g\n    return g\n", "cannot assign to the input 't'", 5),
    ("def r(w, g, lr, t, m: rows):\n    return g, m\n",
     "unknown slot storage 'rows': annotate a state slot with one of row, col, scalar", 23),
    ("def r(w, g, lr, t, m: row(2)):\n    return g, m\n", "unknown slot storage 'row(2)'", 23),
    ("def r(w, g: row, lr, t):\n    return g\n",
     "only state slots take an annotation (their storage: row, col, scalar); 'g' is not", 13),
    ("def r(w, g, lr, t, b: scalar = 0.5):\n    return g\n", "'b' is not a state slot", 23),
])
def test_reserved_names_and_annotations_are_positioned_errors(source, message, col):
    with pytest.raises(dsl.RuleError) as info:
        dsl.parse(source)
    (d,) = info.value.diagnostics
    assert message in d.message and d.col == col, d.format()


def test_context_inputs_are_read_anywhere():
    p = dsl.parse("def r(w, g, lr, t, m):\n    m = interp(g * loss, m, numel / rows)\n"
                  "    x = hess + cols\n    return lr * m * x, m\n")
    assert {"loss", "numel", "rows", "hess", "cols"} <= {a for s in p.body for a in s.args}
