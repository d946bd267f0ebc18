"""The op table is complete in every column, and each op does what its docs say."""

import math

import pytest
import sympy
import torch
from optforge.dsl.ops import OPS, OpKind, matrix_view, newton_schulz


@pytest.mark.parametrize("name", sorted(OPS))
def test_every_op_is_complete_in_every_column(name):
    op = OPS[name]
    assert op.name == name
    assert op.arity in (1, 2, 3)
    assert isinstance(op.kind, OpKind)
    assert isinstance(op.cost, int) and op.cost >= 1
    assert op.domain.strip(), "each op documents its behaviour on its whole domain"
    # the LaTeX template takes exactly `arity` arguments
    rendered = op.latex.format(*(f"ARG{i}" for i in range(op.arity)))
    assert all(f"ARG{i}" in rendered for i in range(op.arity))
    # the sympy form builds an expression over `arity` symbols
    symbols = sympy.symbols(f"x0:{op.arity}", real=True)
    assert isinstance(op.sympy_fn(*symbols), sympy.Basic)
    if op.kind is OpKind.GLOBAL:  # over a group of two tensors: a scalar (one per replica)
        ws = [torch.rand(4, 3, dtype=torch.float64), torch.rand(5, dtype=torch.float64)]
        assert op.torch_fn(0, ws, ws).shape == ()
        wb = [torch.rand(2, 4, 3, dtype=torch.float64), torch.rand(2, 5, dtype=torch.float64)]
        assert op.torch_fn(1, wb, wb).shape == (2,)
        return
    if op.kind is OpKind.GRADIENT:  # the caller's gradient, once for the group
        calls = []
        ws = [torch.rand(4, 3, dtype=torch.float64), torch.rand(5, dtype=torch.float64)]
        out = op.torch_fn(0, ws, ws, lambda es: calls.append(es) or [2 * e for e in es])
        assert len(calls) == 1 and [o.shape for o in out] == [(4, 3), (5,)]
        return
    # the torch form runs on a 2-D tensor, single and batched, and keeps the shape
    x = [torch.rand(4, 3, dtype=torch.float64) + 0.5 for _ in range(op.arity)]
    assert op.torch_fn(0, *x).shape == (4, 3)
    xb = [torch.rand(2, 4, 3, dtype=torch.float64) + 0.5 for _ in range(op.arity)]
    assert op.torch_fn(1, *xb).shape == (2, 4, 3)


ELEMENTWISE_SAMPLES = [0.3, 1.7, 2.5]


@pytest.mark.parametrize("name", sorted(n for n, op in OPS.items()
                                        if op.kind is OpKind.ELEMENTWISE))
def test_elementwise_torch_form_agrees_with_sympy_form(name):
    op = OPS[name]
    args = ELEMENTWISE_SAMPLES[: op.arity]
    symbols = sympy.symbols(f"x0:{op.arity}", real=True)
    expected = float(op.sympy_fn(*symbols).subs(dict(zip(symbols, args))))
    got = float(op.torch_fn(0, *(torch.tensor(a, dtype=torch.float64) for a in args)))
    assert math.isclose(got, expected, rel_tol=1e-12)


def test_documented_edge_values():
    t = lambda v: torch.tensor(v, dtype=torch.float64)  # noqa: E731
    assert math.isnan(OPS["sqrt"].torch_fn(0, t(-1.0)))
    assert OPS["log"].torch_fn(0, t(0.0)) == -math.inf
    assert OPS["div"].torch_fn(0, t(1.0), t(0.0)) == math.inf
    assert math.isnan(OPS["div"].torch_fn(0, t(0.0), t(0.0)))
    assert OPS["rsqrt"].torch_fn(0, t(0.0)) == math.inf
    assert OPS["sign"].torch_fn(0, t(0.0)) == 0
    assert OPS["clip"].torch_fn(0, t(5.0), t(2.0), t(1.0)) == 1.0  # lo > hi gives hi
    assert OPS["interp"].torch_fn(0, t(2.0), t(10.0), t(1.5)) == 14.0  # a outside [0, 1]


def test_reductions_run_over_non_replica_axes_and_broadcast_back():
    x = torch.randn(3, 4, 5, dtype=torch.float64)
    for name, ref in [("norm", lambda v: v.norm()), ("mean", lambda v: v.mean()),
                      ("rms", lambda v: v.pow(2).mean().sqrt())]:
        out = OPS[name].torch_fn(1, x)
        assert out.shape == x.shape
        for r in range(3):
            torch.testing.assert_close(out[r], ref(x[r]).expand(4, 5))
    y = torch.randn(3, 4, 5, dtype=torch.float64)
    dot = OPS["dot"].torch_fn(1, x, y)
    torch.testing.assert_close(dot[1], (x[1] * y[1]).sum().expand(4, 5))


def test_matrix_view_of_vectors_is_a_column():
    v = torch.tensor([1.0, 2.0, 6.0], dtype=torch.float64)
    torch.testing.assert_close(OPS["row_mean"].torch_fn(0, v), v)
    torch.testing.assert_close(OPS["col_mean"].torch_fn(0, v), torch.full((3,), 3.0,
                                                                           dtype=torch.float64))
    assert matrix_view(0, torch.zeros(2, 3, 4)).shape == (2, 12)


def test_row_and_col_means_of_a_matrix():
    m = torch.arange(6, dtype=torch.float64).reshape(2, 3)
    torch.testing.assert_close(OPS["row_mean"].torch_fn(0, m),
                               torch.tensor([[1.0] * 3, [4.0] * 3], dtype=torch.float64))
    torch.testing.assert_close(OPS["col_mean"].torch_fn(0, m),
                               torch.tensor([[1.5, 2.5, 3.5]] * 2, dtype=torch.float64))


def test_orth_approximately_orthogonalises():
    gen = torch.Generator().manual_seed(0)
    for shape in [(8, 5), (5, 8)]:
        g = torch.randn(shape, generator=gen, dtype=torch.float64)
        o = OPS["orth"].torch_fn(0, g)
        s = torch.linalg.svdvals(o)
        # Muon's quintic iteration lands singular values in roughly [0.7, 1.2]
        assert s.min() > 0.6 and s.max() < 1.25
        u, _, vh = torch.linalg.svd(g, full_matrices=False)
        cos = (o * (u @ vh)).sum() / (o.norm() * (u @ vh).norm())
        assert cos > 0.95
    assert torch.equal(OPS["orth"].torch_fn(0, torch.zeros(3, 2)), torch.zeros(3, 2))


def test_newton_schulz_batched_equals_one_by_one():
    m = torch.randn(3, 6, 4, dtype=torch.float64)
    batched = newton_schulz(m)
    for r in range(3):
        torch.testing.assert_close(batched[r], newton_schulz(m[r]))


def test_atan2_is_the_angle_in_the_right_quadrant():
    import math

    from optforge.dsl.ops import OPS
    y = torch.tensor([1.0, 1.0, -1.0, -1.0, 0.0, 0.0], dtype=torch.float64)
    x = torch.tensor([1.0, -1.0, -1.0, 1.0, 0.0, -1.0], dtype=torch.float64)
    got = OPS["atan2"].torch_fn(0, y, x)
    want = [math.atan2(a, b) for a, b in zip(y.tolist(), x.tolist())]
    assert got.tolist() == want


def test_logsumexp_is_a_reduction_that_does_not_overflow():
    from optforge.dsl.ops import OPS
    x = torch.tensor([[1000.0, 1000.0], [999.0, -5.0]], dtype=torch.float64)
    got = OPS["logsumexp"].torch_fn(0, x)
    m = x.max()
    want = m + torch.log(torch.exp(x - m).sum())
    assert got.shape == x.shape and torch.isfinite(got).all()
    assert torch.allclose(got, want.expand_as(x), rtol=0, atol=1e-12)
    # over the non-replica axes only, one value per replica
    reps = OPS["logsumexp"].torch_fn(1, torch.stack([x, x - 1000.0]))
    assert torch.allclose(reps[1], reps[0] - 1000.0, rtol=0, atol=1e-9)
