"""BSplineKAN: efficient-kan's formulation, and agreement with efficient-kan itself when installed."""

import pytest
import torch

from fastkan import BSplineKAN, BSplineKANLinear, RadialBasis
from perf.matrix.peers import PEERS

EFFICIENT_KAN_INSTALL = PEERS["efficient-kan"].install


def test_default_basis_equals_bspline_bumps_on_the_seed_grid():
    layer = BSplineKANLinear(3, 2, dtype=torch.float64)
    x = torch.linspace(-2.5, 2.5, 501, dtype=torch.float64)[:, None].expand(-1, 3)
    bumps = RadialBasis(-1.4, 1.4, 8, basis="bspline", denominator=0.4, dtype=torch.float64)
    torch.testing.assert_close(layer.b_splines(x), bumps(x))


def test_knots_and_shapes_follow_efficient_kan():
    layer = BSplineKANLinear(4, 3, grid_size=5, spline_order=3)
    assert layer.grid.shape == (4, 5 + 2 * 3 + 1)
    torch.testing.assert_close(layer.grid[0], torch.arange(-3, 9) * 0.4 - 1.0)
    assert layer.spline_weight.shape == (3, 4, 8)
    assert layer.spline_scaler.shape == (3, 4)
    assert layer.base_weight.shape == (3, 4)
    assert "grid" in dict(layer.named_buffers())


def test_initial_spline_interpolates_small_noise_at_the_knots():
    torch.manual_seed(0)
    layer = BSplineKANLinear(6, 5)
    knots = layer.grid.T[3:-3]  # the grid_size + 1 interior knots
    per_edge = torch.einsum("nic,oic->nio", layer.b_splines(knots), layer.spline_weight)
    # efficient-kan fits uniform noise in +-scale_noise / (2 * grid_size) there.
    assert per_edge.abs().max() <= 0.1 / 5 / 2 + 1e-6
    assert per_edge.abs().max() > 0


def test_update_grid_keeps_the_function():
    torch.manual_seed(0)
    model = BSplineKAN([3, 4, 2], dtype=torch.float64)
    x = torch.randn(512, 3, dtype=torch.float64) * 0.5
    before = model(x)
    model(x, update_grid=True)
    after = model(x)
    assert (after - before).abs().max() < 0.05 * before.abs().max()
    assert not torch.equal(model.layers[0].grid[0], torch.arange(-3, 9, dtype=torch.float64) * 0.4 - 1.0)


def test_regularization_loss_is_positive_and_differentiable():
    model = BSplineKAN([3, 4, 2])
    loss = model.regularization_loss()
    loss.backward()
    assert loss.item() > 0 and model.layers[0].spline_weight.grad is not None


def test_efficient_kan_state_dict_matches_outputs_and_gradients():
    efficient_kan = pytest.importorskip("efficient_kan", reason=EFFICIENT_KAN_INSTALL)
    torch.manual_seed(0)
    theirs = efficient_kan.KAN([3, 5, 2])
    ours = BSplineKAN([3, 5, 2])
    ours.load_state_dict(theirs.state_dict())
    x = torch.rand(64, 3) * 2 - 1
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    ya, yb = theirs(xa), ours(xb)
    torch.testing.assert_close(yb, ya)
    ya.square().sum().backward()
    yb.square().sum().backward()
    torch.testing.assert_close(xb.grad, xa.grad)
    for (n, p), q in zip(theirs.named_parameters(), ours.parameters()):
        torch.testing.assert_close(q.grad, p.grad, msg=n)


def test_efficient_kan_same_seed_same_weights():
    efficient_kan = pytest.importorskip("efficient_kan", reason=EFFICIENT_KAN_INSTALL)
    torch.manual_seed(3)
    theirs = efficient_kan.KAN([3, 5, 2])
    torch.manual_seed(3)
    ours = BSplineKAN([3, 5, 2])
    for (n, a), b in zip(theirs.state_dict().items(), ours.state_dict().values()):
        torch.testing.assert_close(b, a, msg=n)


def test_efficient_kan_says_how_to_install(monkeypatch):
    import sys

    from perf.matrix import peers

    peers._module.cache_clear()
    monkeypatch.setitem(sys.modules, "efficient_kan", None)  # None makes the import fail
    try:
        with pytest.raises(ImportError, match="--no-deps git\\+https://github.com/Blealtan/efficient-kan"):
            PEERS["efficient-kan"].model([2, 3, 1])
    finally:
        peers._module.cache_clear()
