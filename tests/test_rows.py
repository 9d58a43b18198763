"""fastkan.paths.rows: the row-blocked spline path agrees with the feature-blocked one, and is taken only where it
applies."""

import pytest
import torch

import fastkan.dispatch as dispatch
import fastkan.paths.fused as fused
import fastkan.paths.rows as rows
from fastkan import FastKAN, FastKANLayer
from fastkan.bases import OF_NEG_SQUARE_DERIVATIVES

SQUARE_BASES = sorted(OF_NEG_SQUARE_DERIVATIVES)


@pytest.fixture(autouse=True)
def fused_and_rebuilt(monkeypatch):
    # These shapes are small: no small-call path, no kept basis.
    monkeypatch.setattr(fused, "PLAIN_ELEMENTS", 0)
    monkeypatch.setattr(fused, "KEEP_BASIS_BYTES", 0)


def rows_per_block(monkeypatch, n_rows, in_dim, g):
    monkeypatch.setattr(rows, "BLOCK_ELEMENTS", n_rows * in_dim * g // torch.get_num_threads())


def grads(model, x, weights):
    """Output and the gradients of every input and trainable parameter for one weighted sum of the output."""
    model.zero_grad(set_to_none=True)
    x = x.detach().clone().requires_grad_(x.requires_grad)
    y = model(x)
    (y * weights).sum().backward()
    found = [x.grad] if x.requires_grad else []
    return [y.detach(), *found, *(p.grad for p in model.parameters() if p.requires_grad)]


@pytest.mark.parametrize("basis", SQUARE_BASES)
@pytest.mark.parametrize(
    "affine, input_grad",
    [(True, False), (False, True), (False, False)],
    ids=["layernorm-affine", "input-grad", "no-input-grad"],
)
def test_row_blocks_match_the_feature_blocks_in_float64(monkeypatch, record_calls, basis, affine, input_grad):
    torch.manual_seed(0)
    model = FastKAN([12, 5, 3], basis=basis, layernorm_affine=affine, dtype=torch.float64)
    x = (3 * torch.randn(203, 12, dtype=torch.float64)).requires_grad_(input_grad)
    with torch.no_grad():
        x[0, 0], x[1, 1] = 1e12, -1e30  # far outside the grid in some blocks
    weights = torch.randn(203, 3, dtype=torch.float64)
    calls = record_calls(rows, "spline")
    rows_per_block(monkeypatch, 10, 12, 8)  # first layer: 21 blocks, the last of 3 rows; second: 24 rows a block
    got = grads(model, x, weights)
    assert len(calls) == 2
    monkeypatch.setattr(rows, "BLOCK_ELEMENTS", 1 << 40)  # one block of every row: the feature blocks
    want = grads(model, x, weights)
    assert len(calls) == 2
    assert len(got) == len(want) == 1 + input_grad + (10 if affine else 6)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("basis", SQUARE_BASES)
def test_row_blocks_in_float32_match_the_unfused_layer(monkeypatch, record_calls, basis):
    torch.manual_seed(0)
    layer = FastKANLayer(16, 4, grid_min=10.0, grid_max=12.0, basis=basis, use_layernorm=False)
    x = (10 + 2 * torch.rand(300, 16)).requires_grad_()
    weights = torch.randn(300, 4)
    calls = record_calls(rows, "spline")
    rows_per_block(monkeypatch, 64, 16, 8)
    got = grads(layer, x, weights)
    assert len(calls) == 1
    layer.fused = False
    want = grads(layer, x, weights)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=2e-4, atol=2e-4 * b.abs().max().item())


def test_row_blocks_gradcheck(monkeypatch, record_calls):
    torch.manual_seed(0)
    layer = FastKANLayer(3, 2, num_grids=4, use_layernorm=False, dtype=torch.float64)
    x = torch.randn(13, 3, dtype=torch.float64, requires_grad=True)  # 12 basis values a row
    # A weight that is not contiguous too (a transposed view), as torch.func may hand one.
    weight = layer.spline_linear.weight.detach().t().contiguous().t().requires_grad_()
    calls = record_calls(rows, "spline")
    rows_per_block(monkeypatch, 2, 3, 4)
    assert torch.autograd.gradcheck(lambda x, w: dispatch.spline(x, layer.basis, w), (x, weight))
    assert calls


def test_row_blocks_are_twice_differentiable(monkeypatch, record_calls):
    layer = FastKANLayer(3, 2, use_layernorm=False, dtype=torch.float64)
    calls = record_calls(rows, "spline")
    rows_per_block(monkeypatch, 2, 3, 8)
    x = torch.randn(30, 3, dtype=torch.float64, requires_grad=True)
    w = layer.spline_linear.weight

    def f(x, w):
        return torch.func.functional_call(layer, {"spline_linear.weight": w}, (x,))

    assert torch.autograd.gradgradcheck(f, (x, w))
    assert calls


def test_row_blocks_are_taken_only_where_they_apply(monkeypatch):
    rows_per_block(monkeypatch, 40, 4, 8)
    x = torch.randn(100, 12)

    def takes(out=3, basis="gaussian", n=80, in_dim=4, dtype=torch.float32, keep=0, **options):
        layer = FastKANLayer(in_dim, out, basis=basis, dtype=dtype, **options)
        return rows.takes(x[:n, :in_dim].to(dtype), layer.basis, layer.spline_linear.weight, keep)

    assert takes()
    assert takes(dtype=torch.float64)
    assert not takes(n=79)  # fewer than two blocks of rows
    assert not takes(in_dim=12, n=95)  # fewer rows than basis values in a row (12 x 8), 13 rows a block
    assert takes(in_dim=12, n=96)
    assert not takes(out=1)  # one output: fastkan.paths.compiled or fastkan.paths.one_output
    assert not takes(out=80)  # no more rows than outputs
    assert not takes(keep=1 << 20)  # a basis small enough to keep
    assert not takes(basis="gauss-p3")  # no basis of -d**2
    assert not takes(basis="bspline")
    assert not takes(dtype=torch.bfloat16)
    assert not takes(train_grid=True)
    assert not takes(train_denominator=True)
