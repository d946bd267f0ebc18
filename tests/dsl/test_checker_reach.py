"""The checker on the language's reach (#16): value classes of the context inputs, whole-model
ops and grad_at, and the "varies along" proof that a factored slot loses nothing."""

from __future__ import annotations

import pytest
from optforge.dsl.checker import (
    BOTH,
    COLS,
    NEITHER,
    ROWS,
    check,
    check_source,
    varies_along,
)

from optforge import dsl


def _errors(source: str) -> list[str]:
    return [d.format() for d in check_source(source).errors]


def test_context_inputs_have_their_value_classes():
    # loss, rows, cols, numel are scalars: a matrix op refuses them; hess is a tensor
    for name in ("loss", "rows", "cols", "numel"):
        errs = _errors(f"def r(w, g, lr, t):\n    return g + orth({name})\n")
        assert len(errs) == 1 and "orth() needs a tensor" in errs[0], errs
    assert _errors("def r(w, g, lr, t):\n    return g + orth(hess)\n") == []


def test_a_whole_model_op_gives_a_scalar():
    errs = _errors("def r(w, g, lr, t):\n    return g + row_mean(global_norm(g))\n")
    assert len(errs) == 1 and "row_mean() needs a tensor" in errs[0]
    assert _errors("def r(w, g, lr, t):\n    return g / global_norm(g)\n") == []


def test_grad_at_needs_a_tensor_and_counts_as_a_gradient():
    errs = _errors("def r(w, g, lr, t):\n    return grad_at(lr)\n")
    assert len(errs) == 1 and "1:1" not in errs[0] and "grad_at() needs a tensor" in errs[0]
    # the step of SAM depends on g through grad_at, and grad_at(w) is a gradient too
    assert _errors("def r(w, g, lr, t):\n    return lr * grad_at(0.0 * w)\n") == []


def test_a_step_of_the_context_alone_does_not_depend_on_g():
    errs = _errors("def r(w, g, lr, t):\n    return lr * hess * loss\n")
    assert len(errs) == 1 and "does not depend on the gradient" in errs[0]


ADAFACTOR = """def r(w, g, lr, t, vr: row, vc: col, s: scalar, beta=0.9):
    sq = g * g + 1e-30
    vr = interp(row_mean(sq), vr, beta)
    vc = interp(col_mean(sq), vc, beta)
    s = interp(rms(g) + global_norm(g) + loss + rows, s, beta)
    return lr * g * rsqrt(vr * vc / mean(vr)), vr, vc, s
"""


def test_factored_slots_whose_values_are_reduced_pass():
    report = check(dsl.parse(ADAFACTOR))
    assert report.ok, report.errors


@pytest.mark.parametrize("line, slot, along", [
    ("    vr = interp(col_mean(sq), vr, beta)\n", "vr", "columns"),
    ("    vr = interp(sq, vr, beta)\n", "vr", "columns"),
    ("    vc = interp(row_mean(sq), vc, beta)\n", "vc", "rows"),
    ("    vc = vc + hess\n", "vc", "rows"),
    ("    s = s + grad_at(g)\n", "s", "rows and columns"),
    ("    s = s + orth(vr)\n", "s", "rows and columns"),
    ("    s = s + row_mean(w)\n", "s", "rows"),
    ("    s = s + vr\n", "s", "rows"),
])
def test_a_factored_slot_that_would_lose_values_is_a_positioned_error(line, slot, along):
    lines = ADAFACTOR.splitlines(keepends=True)
    source = "".join(lines[:5] + [line] + lines[5:])
    errs = check_source(source).errors
    assert len(errs) == 1, [e.format() for e in errs]
    e = errs[0]
    assert e.message.startswith(f"state '{slot}' is stored as")
    assert e.message.endswith(f"its new value varies along {along}")
    assert e.line == 6 and e.source_line == line.rstrip("\n")


def test_a_slot_returned_as_an_input_is_checked_at_the_return():
    errs = check_source("def r(w, g, lr, t, m: scalar):\n    return g, g\n").errors
    assert len(errs) == 1 and errs[0].line == 2 and "varies along rows and columns" in \
        errs[0].message


def test_varies_along_follows_the_ops():
    p = dsl.parse("def r(w, g, lr, t, a: row, b: col):\n"
                  "    x = row_mean(g) * b\n"
                  "    y = col_mean(row_mean(g))\n"
                  "    z = row_mean(b) + numel\n"
                  "    return g + x + y + z, a, b\n")
    axes = varies_along(p)
    assert axes["x"] == BOTH and axes["y"] == NEITHER and axes["z"] == NEITHER
    assert axes["a"] == frozenset((ROWS,)) and axes["b"] == frozenset((COLS,))
