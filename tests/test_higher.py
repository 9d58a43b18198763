"""fastkan.paths.higher's Functions against autograd through the plain composition, to third order."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fastkan import FastKAN, FastKANLayer
from fastkan.bases import BASES, NTH_DERIVATIVES, nth_derivative_of
from fastkan.dispatch import COMPACT_ONLY, FORCE, forcing
from fastkan.paths import higher

NTH = sorted(NTH_DERIVATIVES)


def _setup(name, n=5, in_dim=3, g=6):
    torch.manual_seed(0)
    u = (torch.randn(n, in_dim, dtype=torch.float64) * 1.5).requires_grad_()
    grid = torch.linspace(-2, 2, g, dtype=torch.float64)
    h = torch.tensor(4.0 / (g - 1), dtype=torch.float64)
    return u, grid, h, NTH_DERIVATIVES[name]


def test_the_gaussian_has_every_derivative():
    assert "gaussian" in NTH and nth_derivative_of(BASES["gaussian"]) is NTH_DERIVATIVES["gaussian"]
    assert nth_derivative_of(BASES["expit"]) is None


@pytest.mark.parametrize("name", NTH)
@given(k=st.integers(0, 6), seed=st.integers(0, 2**16))
@settings(max_examples=20, deadline=None)
def test_nth_derivative_is_autograd_of_the_basis(name, k, seed):
    torch.manual_seed(seed)
    d = (torch.randn(40, dtype=torch.float64) * 3).requires_grad_()
    g = BASES[name](d)
    for _ in range(k):
        (g,) = torch.autograd.grad(g.sum(), d, create_graph=True)
    torch.testing.assert_close(NTH_DERIVATIVES[name](d.detach(), k), g.detach(), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("name", NTH)
@pytest.mark.parametrize("k", [0, 1, 2])
def test_derivative_and_contract_pass_gradcheck_and_gradgradcheck(name, k):
    u, grid, h, nth = _setup(name)
    m = torch.randn(*u.shape, grid.numel(), dtype=torch.float64, requires_grad=True)
    for check in (torch.autograd.gradcheck, torch.autograd.gradgradcheck):
        assert check(lambda u: higher.derivative(u, grid, h, nth, k), (u,))
        assert check(lambda u, m: higher.contract(u, m, grid, h, nth, k), (u, m))


@pytest.mark.parametrize("name", NTH)
def test_third_derivatives_of_the_spline_match_the_plain_composition(name):
    # A physics-informed step: the Laplacian's loss, then its gradient in the weight: third order in u.
    u, grid, h, nth = _setup(name)
    weight = torch.randn(2, u.shape[1] * grid.numel(), dtype=torch.float64, requires_grad=True)
    plain = lambda u, w: torch.nn.functional.linear(BASES[name]((u[..., None] - grid) / h).flatten(-2), w)  # noqa: E731
    ours = lambda u, w: higher.spline(u, grid, h, w, nth)  # noqa: E731
    results = []
    for f in (plain, ours):
        y = f(u, weight)
        (g,) = torch.autograd.grad(y.pow(2).sum(), u, create_graph=True)
        (g2,) = torch.autograd.grad(g.sum(), u, create_graph=True)
        results.append(torch.autograd.grad(g2.pow(2).sum(), [u, weight]))
    for a, b in zip(*results):
        torch.testing.assert_close(a, b)


def test_compiled_kernels_give_the_eager_functions_values(monkeypatch):
    # Both ways of the Poisson step's third derivatives: TorchInductor's loops and eager operations.
    u, grid, h, nth = _setup("gaussian", n=40, in_dim=3, g=6)
    weight = torch.randn(2, u.shape[1] * grid.numel(), dtype=torch.float64, requires_grad=True)
    results = []
    for eager_values in (0, 1 << 40):
        monkeypatch.setattr(higher, "EAGER_VALUES", eager_values)
        y = higher.spline(u, grid, h, weight, nth)
        (g,) = torch.autograd.grad(y.pow(2).sum(), u, create_graph=True)
        (g2,) = torch.autograd.grad(g.sum(), u, create_graph=True)
        results.append((y, g, g2, *torch.autograd.grad(g2.pow(2).sum(), [u, weight])))
    assert any(k[0] is higher._contracted for k in higher._KERNELS) and not higher._broken
    for a, b in zip(*results):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("path", [p for p in FORCE if p not in COMPACT_ONLY])
@pytest.mark.parametrize("out", [1, 3])
def test_a_laplacian_loss_through_every_path_matches_the_plain_layer(path, out, monkeypatch):
    # Every fast path's second derivative takes fastkan.paths.higher for the Gaussian: the Poisson step's
    # parameter gradients (third order in the input) equal the plain composition's.
    calls = []
    original = higher.derivative
    monkeypatch.setattr(higher, "derivative", lambda *a: calls.append(a) or original(*a))
    torch.manual_seed(1)
    # The layers as a user stacks them: FastKAN itself keeps small calls off the small node here (below).
    # Five centres, as in tests/test_compiled.py: each grid layout compiles its own kernels (seconds).
    model = torch.nn.Sequential(
        *FastKAN([2, 4, out], num_grids=5, dtype=torch.float64, input_domain=(-1.0, 1.0)).layers
    )
    x = (torch.rand(9, 2, dtype=torch.float64) * 2 - 1).requires_grad_()
    results = []
    for fused in (True, False):
        calls.clear()
        for layer in model:
            layer.fused = fused
        with forcing(path):
            (g,) = torch.autograd.grad(model(x).sum(), x, create_graph=True)
            lap = sum(torch.autograd.grad(g[:, i].sum(), x, create_graph=True)[0][:, i] for i in range(2))
            params = [p for p in model.parameters() if p.requires_grad]
            # A bias is constant in x: the Laplacian does not depend on it.
            results.append(torch.autograd.grad(lap.pow(2).sum(), params, allow_unused=True))
        assert bool(calls) == fused, f"fastkan.paths.higher taken {len(calls)} times"
    assert sum(g is not None for g in results[0]) >= 4
    for a, b in zip(*results):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(a, b)


def test_a_trained_grid_takes_the_plain_composition_and_stays_exact():
    torch.manual_seed(2)
    layer = FastKANLayer(3, 2, train_grid=True, dtype=torch.float64)
    x = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradgradcheck(lambda x, g: layer(x), (x, layer.basis.grid))


def test_a_fastkan_differentiated_in_its_input_keeps_small_calls_off_the_small_node():
    # Its node would recompute the layers in Python nodes for every order of derivative.
    torch.manual_seed(3)
    model = FastKAN([2, 5, 1], input_domain=(-1.0, 1.0), dtype=torch.float64)
    plain = FastKAN([2, 5, 1], input_domain=(-1.0, 1.0), dtype=torch.float64, fused=False)
    plain.load_state_dict(model.state_dict())
    x = torch.rand(16, 2, dtype=torch.float64)
    assert type(model(x.requires_grad_()).grad_fn).__name__ != "_SmallLayersBackward"
    assert torch.equal(model(x), plain(x))  # the very operations of the plain layer
    assert type(model(x.detach()).grad_fn).__name__ == "_SmallLayersBackward"
    (g,) = torch.autograd.grad(model(x).sum(), x, create_graph=True)
    (g_plain,) = torch.autograd.grad(plain(x).sum(), x, create_graph=True)
    torch.testing.assert_close(g, g_plain)
