"""Each basis against the cubic B-spline basis, and its gradients."""

import re

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from fastkan import BASES, RadialBasis
from fastkan import bases as bases_module
from fastkan.approx import best_width, bspline_fit_error
from fastkan.bases import (
    EXPONENTIAL,
    NEG_SQUARE_SCALES,
    OF_NEG_SQUARE,
    OF_NEG_SQUARE_DERIVATIVES,
    bspline,
    get_basis,
    register,
)

# Relative L2 error of the best linear map from each basis (default width: one
# grid spacing) to the cubic B-spline basis, on the grid's interior. Measured
# with fastkan.approx.bspline_fit_error for 3..32 centres: the worst case over
# grids, rounded up by about 10%. A basis not listed must stay under 0.5.
APPROX_BOUND = {
    "gaussian": 0.015,  # measured up to 0.0135
    "gauss-p1.5": 0.05,  # 0.0454
    "gauss-p3": 0.1,  # 0.0911
    "gauss-p4": 0.15,  # 0.1376
    "expit": 0.15,  # 0.1358
    "centred-expit": 0.15,  # 0.1358
    "rswaf": 0.012,  # 0.0109
    "inverse-quadratic": 0.03,  # 0.0264
    "wendland": 0.4,  # 0.3670: support of one spacing is too narrow at this width
    "hat": 0.09,  # 0.0832
    "bspline": 1e-9,  # exact
}


def _cubic_bspline_reference(x):
    """The cubic cardinal B-spline by its textbook piecewise definition, independent of the library's."""
    out = []
    for v in x.tolist():
        a = abs(v)
        out.append(2 / 3 - a * a + a**3 / 2 if a < 1 else (2 - a) ** 3 / 6 if a < 2 else 0.0)
    return torch.tensor(out, dtype=torch.float64)


def test_bspline_basis_is_the_cardinal_cubic_b_spline():
    x = torch.linspace(-3, 3, 601, dtype=torch.float64)
    torch.testing.assert_close(bspline(x), _cubic_bspline_reference(x))


def test_bspline_partition_of_unity_inside_the_grid():
    rb = RadialBasis(-1.4, 1.4, 8, basis="bspline", denominator=0.4, dtype=torch.float64)
    u = torch.linspace(-0.6, 0.6, 101, dtype=torch.float64)
    torch.testing.assert_close(rb(u).sum(-1), torch.ones_like(u))


@pytest.mark.parametrize("name", list(BASES))
@given(
    num_grids=st.integers(3, 32),
    grid_min=st.floats(-3.0, 1.0),
    span=st.floats(0.5, 6.0),
)
def test_basis_approximates_cubic_bspline(name, num_grids, grid_min, span):
    rel, _ = bspline_fit_error(name, num_grids, grid_min, grid_min + span)
    assert rel <= APPROX_BOUND.get(name, 0.5), f"{name}: relative L2 {rel:.4f} with {num_grids} centres"


def test_fit_error_detects_a_poor_basis():
    # A constant "basis" cannot reproduce localized B-splines: the measure must say so.
    register("test-constant", lambda d: torch.ones_like(d))
    try:
        assert bspline_fit_error("test-constant", 8)[0] > 0.5
    finally:
        del BASES["test-constant"]


def test_best_width_improves_on_default_width():
    width, err = best_width("wendland", 8)
    assert err < bspline_fit_error("wendland", 8)[0] / 5
    assert 1.5 < width < 4.5


@pytest.mark.parametrize("name", list(BASES))
def test_basis_gradcheck_input(name):
    d = (torch.rand(40, dtype=torch.float64) - 0.5) * 8
    fn = get_basis(name)
    assert torch.autograd.gradcheck(fn, (d.requires_grad_(),))


@pytest.mark.parametrize("name", list(BASES))
def test_radial_basis_gradcheck_grid_and_width(name):
    rb = RadialBasis(-1.0, 1.0, 5, basis=name, train_grid=True, train_denominator=True, dtype=torch.float64)
    u = (torch.rand(6, 3, dtype=torch.float64) * 3 - 1.5).requires_grad_()

    def f(u, grid, h):
        return rb.fn((u[..., None] - grid) / h)

    assert torch.autograd.gradcheck(f, (u, rb.grid, rb.denominator))
    # The module itself routes gradients to both trainable tensors.
    rb(u).sum().backward()
    assert rb.grid.grad is not None and rb.denominator.grad is not None


def test_expit_is_the_seeds_formula():
    d = torch.linspace(-4, 4, 81, dtype=torch.float64)
    torch.testing.assert_close(get_basis("expit")(d), 1 / (torch.exp(-(d**2)) + 1))
    assert get_basis("expit")(torch.zeros(1)).item() == pytest.approx(0.5)


@pytest.mark.parametrize("name, p", [("gaussian", 2.0), ("gauss-p1.5", 1.5), ("gauss-p3", 3.0)])
@pytest.mark.parametrize("dtype, rtol", [(torch.float32, 1e-5), (torch.float64, 1e-13)])
@pytest.mark.parametrize("size", ["below", "above"])
def test_gaussian_bases_are_exp_on_both_sides_of_the_exp2_switch(name, p, dtype, rtol, size):
    # Small calls take exp, large ones exp2(x * log2 e) (fastkan.bases._EXP2_VALUES); both must be
    # exp(-|d|**p) with its gradient, wherever the bump is not negligible.
    n = bases_module._EXP2_VALUES + (-1 if size == "below" else 1)
    d = torch.linspace(-3.5, 3.5, n, dtype=dtype).requires_grad_()
    phi = get_basis(name)(d)
    (grad,) = torch.autograd.grad(phi.sum(), d)
    ref = torch.exp(-(d.detach().double().abs() ** p))
    ref_grad = -p * d.detach().double().abs() ** (p - 1) * torch.sign(d.detach().double()) * ref
    torch.testing.assert_close(phi.double(), ref, rtol=rtol, atol=0)
    torch.testing.assert_close(grad.double(), ref_grad, rtol=rtol * 10, atol=rtol * 1e-3)


def test_rswaf_input_gradient_matches_its_formula():
    # faster-kan's custom backward scales this gradient by 1/h while its forward does not.
    rb = RadialBasis(-1.0, 1.0, 5, basis="rswaf", denominator=0.5, dtype=torch.float64)
    u = torch.tensor([0.3], dtype=torch.float64, requires_grad=True)
    rb(u).sum().backward()
    d = (0.3 - rb.grid) / 0.5
    expected = (-2 * torch.tanh(d) * (1 - torch.tanh(d) ** 2) / 0.5).sum()
    torch.testing.assert_close(u.grad[0], expected)


@pytest.mark.parametrize("name", list(BASES))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_basis_finite_for_huge_distances(name, dtype):
    d = torch.tensor([-1e30, -1e6, 0.0, 1e6, 1e30], dtype=dtype, requires_grad=True)
    y = get_basis(name)(d)
    y.sum().backward()
    assert torch.isfinite(y).all() and torch.isfinite(d.grad).all()


def test_register_rejects_duplicate_names():
    with pytest.raises(ValueError, match="gaussian"):
        register("gaussian", lambda d: d)


def test_unknown_basis_lists_known_names():
    with pytest.raises(ValueError, match="unknown basis 'nope'.*gaussian.*rswaf"):
        get_basis("nope")


@pytest.mark.parametrize("name", sorted(OF_NEG_SQUARE))
def test_neg_square_form_is_the_basis(name):
    # The fused path evaluates these bases as k(s * -d**2) and differentiates k by
    # the registered formula (with respect to -d**2); both must be the basis itself.
    t = -torch.linspace(0.01, 12, 2001, dtype=torch.float64).square().requires_grad_()
    reference = get_basis(name)(torch.sqrt(-t))  # k(t) by the basis itself
    (expected,) = torch.autograd.grad(reference.sum(), t)
    phi = OF_NEG_SQUARE[name](t.detach() * NEG_SQUARE_SCALES.get(name, 1.0))
    torch.testing.assert_close(phi, reference.detach())
    if name in OF_NEG_SQUARE_DERIVATIVES:
        torch.testing.assert_close(OF_NEG_SQUARE_DERIVATIVES[name](phi.clone()), expected)


def test_neg_square_derivative_needs_neg_square():
    with pytest.raises(ValueError, match="test-half.*needs of_neg_square"):
        register("test-half", lambda d: d, of_neg_square_derivative=lambda phi: phi)
    assert "test-half" not in BASES


@pytest.mark.parametrize("scale", [0.0, -1.0, float("inf"), float("nan"), True, "2"])
def test_neg_square_scale_must_be_positive_and_finite(scale):
    with pytest.raises(ValueError, match="test-scaled.*must be positive and finite, got " + re.escape(repr(scale))):
        register("test-scaled", lambda d: d, of_neg_square=lambda t: t, neg_square_scale=scale)
    assert "test-scaled" not in BASES


def test_neg_square_scale_needs_neg_square():
    with pytest.raises(ValueError, match="test-scaled.*needs of_neg_square"):
        register("test-scaled", lambda d: d, neg_square_scale=2.0)
    assert "test-scaled" not in BASES


def test_exponential_needs_neg_square():
    with pytest.raises(ValueError, match="test-exp.*exponential needs of_neg_square"):
        register("test-exp", lambda d: d, exponential=True)
    assert "test-exp" not in BASES and "test-exp" not in EXPONENTIAL


@pytest.mark.parametrize("name", sorted(EXPONENTIAL))
def test_an_exponential_basis_is_two_to_the_power_of_its_argument(name):
    # fastkan.paths.compiled's grouped kernels build these bumps from products of powers of 2.
    assert name in OF_NEG_SQUARE
    t = torch.linspace(-60.0, 0.0, 301, dtype=torch.float64)
    torch.testing.assert_close(OF_NEG_SQUARE[name](t.clone()), torch.exp2(t), rtol=1e-12, atol=0)
    assert RadialBasis(basis=name).exponential
