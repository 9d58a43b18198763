"""fastkan.paths.local: compact bases on large grids from the bumps near each input, against the plain composition."""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from fastkan import FastKANLayer
from fastkan.bases import SUPPORTS, register
from fastkan.dispatch import COMPACT_ONLY, forcing
from fastkan.paths import local

COMPACT = sorted(SUPPORTS)


@pytest.fixture(params=COMPACT_ONLY)
def always_local(request):
    """The local path for every call of a compact basis, whatever its size, with either product."""
    with forcing(request.param):
        yield "_SparseBackward" if request.param == "sparse" else "_ScatteredBackward"


def inputs(n, in_dim, grid_min, grid_max, dtype=torch.float64):
    """Inputs across and beyond the grid, some exactly on its centres and edges."""
    g = torch.Generator().manual_seed(0)
    u = torch.empty(n, in_dim, dtype=dtype).uniform_(grid_min - 1.5, grid_max + 1.5, generator=g)
    u[0, :3] = torch.tensor([grid_min, grid_max, 0.0], dtype=dtype)
    return u


def plain(u, layer):
    return layer.basis.forward(u).flatten(-2) @ layer.spline_linear.weight.t()


@pytest.mark.parametrize("width", [1.0, 1.5, 0.7])  # the bumps' width h, in grid spacings
@pytest.mark.parametrize("basis", COMPACT)
def test_values_and_gradients_match_the_plain_composition(basis, width, always_local):
    g = 12
    layer = FastKANLayer(5, 3, num_grids=g, basis=basis, denominator=width * 4.0 / (g - 1), dtype=torch.float64)
    u = inputs(40, 5, -2.0, 2.0)
    assert local.plan(u, layer.basis)
    outs, grads = [], []
    for f in (lambda x: local.local_spline(x, layer.basis, layer.spline_linear.weight), lambda x: plain(x, layer)):
        x = u.clone().requires_grad_()
        layer.zero_grad()
        y = f(x)
        if not outs:
            assert type(y.grad_fn).__name__.startswith(always_local)
        y.backward(torch.linspace(-1, 1, y.numel(), dtype=y.dtype).view_as(y))
        outs.append(y.detach())
        grads.append((x.grad, layer.spline_linear.weight.grad.clone()))
    torch.testing.assert_close(outs[0], outs[1], rtol=1e-10, atol=1e-12)
    # Row 0's inputs sit on knots, where hat's derivative jumps: either side's value is right there.
    torch.testing.assert_close(grads[0][0][1:], grads[1][0][1:], rtol=1e-9, atol=1e-11)
    torch.testing.assert_close(grads[0][1], grads[1][1], rtol=1e-10, atol=1e-12)


@given(
    basis=st.sampled_from(COMPACT),
    width=st.floats(0.3, 3.0),
    g=st.integers(2, 40),
    sparse=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_any_grid_and_width_matches_the_plain_composition(basis, width, g, sparse, seed):
    layer = FastKANLayer(
        3,
        4,
        num_grids=g,
        basis=basis,
        grid_min=-1.0,
        grid_max=2.0,
        denominator=width * 3.0 / (g - 1),
        dtype=torch.float64,
    )
    u = torch.empty(16, 3, dtype=torch.float64).uniform_(-3.0, 4.0, generator=torch.Generator().manual_seed(seed))
    u.requires_grad_()
    with forcing("sparse" if sparse else "scattered"):
        y = local.local_spline(u, layer.basis, layer.spline_linear.weight)
    expected = plain(u, layer)
    torch.testing.assert_close(y, expected, rtol=1e-10, atol=1e-12)
    go = torch.randn(y.shape, dtype=y.dtype, generator=torch.Generator().manual_seed(seed + 1))
    (a,) = torch.autograd.grad(y, u, go)
    (b,) = torch.autograd.grad(expected, u, go)
    torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("basis", COMPACT)
def test_gradcheck(basis, always_local):
    layer = FastKANLayer(3, 2, num_grids=10, basis=basis, dtype=torch.float64)
    # Away from the knots, where hat and bspline's derivatives jump or bend.
    u = (torch.arange(12, dtype=torch.float64).view(4, 3) * 0.377 - 2.1).requires_grad_()
    w = layer.spline_linear.weight
    assert torch.autograd.gradcheck(lambda x, w: local.local_spline(x, layer.basis, w), (u, w))


def test_non_finite_inputs(always_local):
    layer = FastKANLayer(4, 3, num_grids=16, basis="bspline", dtype=torch.float64)
    u = inputs(6, 4, -2.0, 2.0)
    u[1, 0], u[2, 1], u[3, 2] = float("inf"), float("-inf"), float("nan")
    y = local.local_spline(u, layer.basis, layer.spline_linear.weight)
    expected = plain(u, layer)
    assert torch.isnan(y[3]).all() and torch.isnan(expected[3]).all()
    keep = [0, 1, 2, 4, 5]
    torch.testing.assert_close(y[keep], expected[keep], rtol=1e-10, atol=1e-12)


def test_which_calls_take_it():
    u = torch.randn(256, 8)
    assert local.plan(u, FastKANLayer(8, 4, num_grids=64, basis="bspline").basis)
    assert local.plan(u, FastKANLayer(8, 4, num_grids=16, basis="bspline").basis)
    assert local.plan(u, FastKANLayer(8, 4, num_grids=16, basis="hat").basis)
    assert not local.plan(u, FastKANLayer(8, 4, num_grids=15, basis="hat").basis)  # below LOCAL_GRID
    # Wider bumps have more candidates: ceil(2 * 2 * 3) = 12 for bspline with h three spacings.
    assert local.plan(u, FastKANLayer(8, 4, num_grids=24, basis="bspline", denominator=3 * 4 / 23).basis)
    assert not local.plan(u, FastKANLayer(8, 4, num_grids=16, basis="bspline", denominator=3 * 4 / 15).basis)
    assert not local.plan(u, FastKANLayer(8, 4, num_grids=64, basis="gaussian").basis)
    assert not local.plan(u, FastKANLayer(8, 4, num_grids=64, basis="bspline", train_grid=True).basis)
    assert not local.plan(u, FastKANLayer(8, 4, num_grids=64, basis="bspline", train_denominator=True).basis)
    assert not local.plan(u.bfloat16(), FastKANLayer(8, 4, num_grids=64, basis="bspline").basis)
    underived = FastKANLayer(8, 4, num_grids=64, basis="bspline").basis
    underived.derivative = None  # backward needs it for the input gradient
    assert not local.plan(u, underived)
    uneven = FastKANLayer(8, 4, num_grids=64, basis="bspline").basis
    with torch.no_grad():
        uneven.grid[10] += 0.01
    assert not local.plan(u, uneven)


@pytest.mark.parametrize(
    "n, out, g, product",
    [(64, 64, 64, "_Sparse"), (256, 64, 32, "_Scattered"), (32, 64, 64, "_Scattered"), (64, 32, 64, "_Scattered")],
)
def test_which_product(n, out, g, product):
    """The sparse product for many centres per candidate (bspline: 4), many outputs and rows; else scattered."""
    layer = FastKANLayer(4, out, num_grids=g, basis="bspline")
    y = local.local_spline(torch.randn(n, 4), layer.basis, layer.spline_linear.weight)
    assert type(y.grad_fn).__name__.startswith(product)


def test_the_layer_takes_it_and_matches_the_reference(record_calls):
    torch.manual_seed(0)
    layer = FastKANLayer(16, 8, num_grids=64, basis="bspline")
    reference = FastKANLayer(16, 8, num_grids=64, basis="bspline", fused=False, dtype=torch.float64)
    reference.load_state_dict({k: v.double() for k, v in layer.state_dict().items()})
    calls = record_calls(local, "local_spline")
    x = torch.randn(512, 16)  # above fastkan.paths.fused.PLAIN_ELEMENTS basis values
    y = layer(x)
    assert len(calls) == 1
    expected = reference(x.double())
    torch.testing.assert_close(y.double(), expected, rtol=1e-5, atol=1e-5)
    y.square().sum().backward()
    expected.square().sum().backward()
    for a, b in zip(layer.parameters(), reference.parameters()):
        if a.requires_grad:  # float32 sums over 512 rows: roundoff relative to the gradient's largest entry
            torch.testing.assert_close(a.grad.double(), b.grad, rtol=0, atol=1e-5 * b.grad.abs().max().item())


def test_the_scattered_product_keeps_only_the_inputs():
    layer = FastKANLayer(8, 4, num_grids=32, basis="bspline")
    u = torch.randn(64, 8, requires_grad=True)
    saved = []
    hooks = torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.data_ptr()) or t, lambda t: t)
    with forcing("scattered"), hooks:
        y = local.local_spline(u, layer.basis, layer.spline_linear.weight)
    assert type(y.grad_fn).__name__ == "_ScatteredBackward"
    assert set(saved) <= {u.data_ptr(), layer.spline_linear.weight.data_ptr()}


def test_an_empty_batch(always_local):
    layer = FastKANLayer(4, 3, num_grids=16, basis="bspline")
    x = torch.empty(0, 4, requires_grad=True)
    y = local.local_spline(x, layer.basis, layer.spline_linear.weight)
    assert y.shape == (0, 3)
    y.sum().backward()
    assert x.grad.shape == (0, 4) and not layer.spline_linear.weight.grad.any()


def test_double_backward_matches_the_plain_composition(always_local):
    # embedding_bag's backward has no derivative: a second derivative differentiates the plain composition.
    layer = FastKANLayer(4, 3, num_grids=16, basis="bspline", dtype=torch.float64)
    x = inputs(8, 4, -2.0, 2.0).requires_grad_()
    w = layer.spline_linear.weight.detach().requires_grad_()
    assert torch.autograd.gradgradcheck(lambda x, w: local.local_spline(x, layer.basis, w), (x, w))


@pytest.mark.parametrize("support", [0.0, -1.0, float("inf"), float("nan"), "2", True])
def test_bad_support(support):
    with pytest.raises(ValueError, match="support must be a positive finite radius"):
        register("never-registered", lambda d: d, support=support)
