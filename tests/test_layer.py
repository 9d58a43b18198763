"""FastKANLayer, FastKAN, BSplineKAN and MLP: counts, shapes, gradients, bad input."""

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from fastkan import (
    BASES,
    MLP,
    BSplineKAN,
    BSplineKANLinear,
    FastKAN,
    FastKANLayer,
    RadialBasis,
    dispatch,
    matched_mlp,
)
from fastkan.bases import OF_NEG_SQUARE_DERIVATIVES
from fastkan.mlp import matched_hidden
from fastkan.paths import rows


# Every test here runs once per evaluation path of the fused layer, forced by fastkan.dispatch.forcing:
# the basis rebuilt in backward block by block (test_backward_rebuilds_a_basis_whole_... covers it
# rebuilt whole), the basis kept for backward, the compiled one-output kernels (fastkan.paths.compiled), the
# small calls' node (fastkan.paths.small: the whole layer as one autograd node) and row blocks (fastkan.paths.rows).
# The compact bases' local path has its own tests (tests/test_local.py).
@pytest.fixture(autouse=True, params=[p for p in dispatch.FORCE if p not in dispatch.COMPACT_ONLY])
def fused_path(request):
    if request.param == "compiled":
        request.getfixturevalue("compiler")
    with dispatch.forcing(request.param):
        yield request.param


def gradcheck_module(module, x, check=torch.autograd.gradcheck):
    """``check`` (gradcheck, or gradgradcheck) of module(x) with respect to x and every trainable parameter."""
    names = [n for n, p in module.named_parameters() if p.requires_grad]
    params = [p for p in module.parameters() if p.requires_grad]

    def f(x, *ps):
        return torch.func.functional_call(module, dict(zip(names, ps)), (x,))

    return check(f, (x, *params))


def count(model, trainable=False):
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable)


def test_seed_table_parameter_counts():
    fk = FastKAN([2, 10000, 1], grid_min=-1.4, grid_max=1.4, num_grids=8)
    assert count(fk) == 300021
    assert count(fk, trainable=True) == 300005
    assert count(BSplineKAN([2, 10000, 1])) == 300000
    assert count(MLP([2, 75000, 1])) == 300001


def test_fast_kan_layer_parameter_formula():
    i, o, g = 7, 5, 6
    layer = FastKANLayer(i, o, num_grids=g)
    assert count(layer) == i * o * g + i * o + o + 2 * i + g
    assert count(FastKANLayer(i, o, num_grids=g, train_grid=True, train_denominator=True), True) == count(layer) + 1
    assert count(FastKANLayer(i, o, num_grids=g, layernorm_affine=False)) == count(layer) - 2 * i


def test_layernorm_without_affine_gradcheck():
    torch.manual_seed(4)
    layer = FastKANLayer(5, 3, num_grids=4, layernorm_affine=False, dtype=torch.float64)
    assert layer.layernorm.weight is None
    x = torch.randn(6, 5, dtype=torch.float64, requires_grad=True)
    assert gradcheck_module(layer, x)


def test_matched_mlp_is_closest_in_parameter_count():
    model = FastKAN([2, 10000, 1], grid_min=-1.4, grid_max=1.4, num_grids=8)
    mlp = matched_mlp(model, 2, 1)
    n = count(model)
    h = matched_hidden(2, 1, n)
    assert abs(count(mlp) - n) <= abs(count(MLP([2, h + 1, 1])) - n)
    assert abs(count(mlp) - n) <= abs(count(MLP([2, h - 1, 1])) - n)
    assert abs(count(mlp) - n) < 4


@pytest.mark.parametrize("shape", [(3,), (2, 3), (4, 2, 3), (0, 3)])
def test_nd_input_shapes(shape):
    for model, out in ((FastKAN([3, 4, 2]), 2), (BSplineKAN([3, 4, 2]), 2), (MLP([3, 4, 2]), 2)):
        assert model(torch.randn(*shape)).shape == (*shape[:-1], out)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_dtype_argument(dtype):
    layer = FastKANLayer(3, 2, dtype=dtype)
    assert all(p.dtype == dtype for p in layer.parameters())
    assert layer.basis.width.dtype == dtype
    assert layer.to(torch.float64).basis.width.dtype == torch.float64
    assert layer(torch.randn(4, 3, dtype=torch.float64)).dtype == torch.float64
    assert FastKANLayer(3, 2, dtype=dtype)(torch.randn(4, 3, dtype=dtype)).dtype == dtype
    assert all(p.dtype == dtype for p in BSplineKAN([3, 2], dtype=dtype).parameters())


def test_device_argument():
    layer = FastKANLayer(3, 2, device="meta")
    assert all(p.device.type == "meta" for p in layer.parameters())
    assert BSplineKANLinear(3, 2, device="cpu").grid.device.type == "cpu"


@pytest.mark.parametrize("basis", list(BASES))
@pytest.mark.parametrize(
    "batch, out", [(33, 4), (5, 40), (33, 1)], ids=["blockwise-grad-w", "one-product-grad-w", "one-output"]
)
def test_fused_path_matches_reference_float32(basis, batch, out):
    torch.manual_seed(0)
    layer = FastKANLayer(9, out, basis=basis, train_grid=True, train_denominator=True)
    x = torch.randn(batch, 9, requires_grad=True)
    grads = []
    for fused in (True, False):
        layer.fused = fused
        y = layer(x)
        grads.append((y, *torch.autograd.grad((y * torch.arange(float(out))).sum(), [x, *layer.parameters()])))
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("basis", ["gaussian", "rswaf", "bspline"])
@pytest.mark.parametrize("out", [4, 1])
def test_weight_gradient_without_an_input_gradient_matches_reference(basis, out):
    # The first layer of a model without LayerNorm's affine: backward owes the weights only.
    torch.manual_seed(0)
    layer = FastKANLayer(9, out, basis=basis, layernorm_affine=False)
    x = torch.randn(33, 9)
    params = [p for p in layer.parameters() if p.requires_grad]
    grads = []
    for fused in (True, False):
        layer.fused = fused
        y = layer(x)
        grads.append((y, *torch.autograd.grad((y * torch.arange(1.0, out + 1)).sum(), params)))
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("basis", ["gaussian", "inverse-quadratic", "expit", "centred-expit"])
# The last two grids reach past fastkan.paths.common.WIDE_GRID widths from their middle: their input gradient sums
# its centres in groups (two, then five).
@pytest.mark.parametrize("grid", [(-2.0, 2.0, 8), (10.0, 12.0, 8), (-300.0, 300.0, 64), (-1000.0, 1000.0, 160)])
@pytest.mark.parametrize("out", [3, 60, 1], ids=["feature-major", "input-major", "centre-major"])
def test_square_shortcut_is_accurate_in_float32(basis, grid, out):
    # The fused path gets d**2 of these bases as one sum of large terms (one
    # output: as a square of d), and the input gradient as v * S1 - S2; both
    # must stay as accurate as the plain d * d where the bumps matter.
    lo, hi, g = grid
    torch.manual_seed(0)
    layer = FastKANLayer(16, out, grid_min=lo, grid_max=hi, num_grids=g, basis=basis, use_layernorm=False)
    x = lo + (hi - lo) * torch.rand(50, 16)
    x[0] = 1e12  # and far outside the grid
    x.requires_grad_()
    results = []
    for fused in (True, False):
        layer.fused = fused
        y = layer(x)
        (gx,) = torch.autograd.grad((y * torch.arange(1.0, out + 1.0)).sum(), x)
        results.append((y, gx * (hi - lo) / g))  # gradients in units of the grid spacing
    torch.testing.assert_close(results[0][0], results[1][0], rtol=2e-4, atol=2e-5)
    torch.testing.assert_close(results[0][1], results[1][1], rtol=2e-4, atol=2e-4)


@pytest.mark.parametrize("out", [3, 30, 1], ids=["feature-major", "input-major-gathered-grad-w", "centre-major"])
def test_fused_path_blocks_match_one_block(monkeypatch, fused_path, out):
    import fastkan.paths.common as common

    # A kept basis is built in one block; where it is input-major (out=30), the input gradient's product
    # with it still runs in column blocks.
    if fused_path == "kept" and out != 30:
        pytest.skip("a kept basis is built in one block")
    if fused_path == "compiled" and out == 1:
        pytest.skip("the compiled one-output kernels work on the whole input, in no blocks")

    torch.manual_seed(0)
    layer = FastKANLayer(50, out, dtype=torch.float64)
    x = torch.randn(20, 50, dtype=torch.float64, requires_grad=True)
    y1 = layer(x)
    g1 = torch.autograd.grad(y1.sum(), [x, layer.spline_linear.weight])
    monkeypatch.setattr(common, "block_elements", lambda: 20 * 8 * 3)  # 3 inputs a block, the last one short
    y2 = layer(x)
    g2 = torch.autograd.grad(y2.sum(), [x, layer.spline_linear.weight])
    torch.testing.assert_close(y1, y2)
    for a, b in zip(g1, g2):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("basis", list(BASES))
@pytest.mark.parametrize("fused, out", [(True, 2), (True, 7), (True, 1), (False, 2)])
def test_layer_gradcheck(basis, fused, out):
    torch.manual_seed(1)
    layer = FastKANLayer(
        3, out, num_grids=4, basis=basis, fused=fused, train_grid=True, train_denominator=True, dtype=torch.float64
    )
    x = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    assert all(p.requires_grad for p in layer.parameters())  # grid and width included
    assert gradcheck_module(layer, x)


@pytest.mark.parametrize("basis", list(BASES))
@pytest.mark.parametrize("out", [1, 3])
def test_frozen_grid_gradcheck(basis, out):
    # A frozen grid (the default) takes the backward's shortcuts: one output
    # applies grad_out after the sum over centres; bases of d**2 need no pass over d.
    torch.manual_seed(3)
    layer = FastKANLayer(6, out, num_grids=5, basis=basis, grid_min=-1.5, grid_max=2.5, dtype=torch.float64)
    x = torch.randn(7, 6, dtype=torch.float64, requires_grad=True)
    assert gradcheck_module(layer, x)


@pytest.mark.parametrize("basis", list(BASES))
@pytest.mark.parametrize(
    "batch, out", [(33, 4), (5, 40), (33, 1)], ids=["blockwise-grad-w", "one-product-grad-w", "one-output"]
)
def test_frozen_grid_fused_path_matches_reference_float32(basis, batch, out):
    torch.manual_seed(0)
    layer = FastKANLayer(9, out, basis=basis, grid_min=-1.0, grid_max=3.0)
    x = torch.randn(batch, 9, requires_grad=True)
    params = [p for p in layer.parameters() if p.requires_grad]
    grads = []
    for fused in (True, False):
        layer.fused = fused
        y = layer(x)
        grads.append((y, *torch.autograd.grad((y * torch.arange(float(out))).sum(), [x, *params])))
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("activation", [torch.tanh, torch.nn.SiLU()], ids=["tanh", "silu-module"])
def test_other_base_activations_match_reference(activation):
    # Only F.silu itself joins the small path's node; any other callable is applied outside it.
    torch.manual_seed(5)
    layer = FastKANLayer(6, 3, base_activation=activation, dtype=torch.float64)
    x = torch.randn(7, 6, dtype=torch.float64, requires_grad=True)
    assert gradcheck_module(layer, x)
    u = F.layer_norm(x, (6,), layer.layernorm.weight, layer.layernorm.bias)
    expected = F.linear(activation(x), layer.base_linear.weight, layer.base_linear.bias) + F.linear(
        layer.basis(u).flatten(-2), layer.spline_linear.weight
    )
    for fused in (True, False):
        layer.fused = fused
        torch.testing.assert_close(layer(x), expected)


def test_fastkan_and_bspline_kan_gradcheck():
    torch.manual_seed(2)
    for model in (FastKAN([2, 3, 2], num_grids=4, dtype=torch.float64), BSplineKAN([2, 3, 2], dtype=torch.float64)):
        x = (torch.rand(4, 2, dtype=torch.float64) * 1.6 - 0.8).requires_grad_()
        assert gradcheck_module(model, x)


@pytest.mark.parametrize("out", [2, 1], ids=["many-outputs", "one-output"])
def test_fused_backward_is_twice_differentiable(out):
    # create_graph=True: each fast path's backward differentiates the plain composition (fastkan.modes),
    # so second derivatives (input and parameters) match the reference's. Five centres, as in the
    # gradchecks below: on the compiled path each grid layout compiles kernels of its own (seconds).
    torch.manual_seed(0)
    layer = FastKANLayer(3, out, num_grids=5, dtype=torch.float64)
    x = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    assert gradcheck_module(layer, x, torch.autograd.gradgradcheck)
    second = []
    for fused in (True, False):
        layer.fused = fused
        (g,) = torch.autograd.grad(layer(x).pow(2).sum(), x, create_graph=True)
        trainable = [p for p in layer.parameters() if p.requires_grad]
        second.append(torch.autograd.grad(g.sin().sum(), [x, *trainable], allow_unused=True))
    for a, b in zip(*second):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("basis", list(BASES))
@given(scale=st.sampled_from([1e-30, 1.0, 1e3, 1e6, 1e12, 1e15]), seed=st.integers(0, 2**16))
# A third of the profile's examples (at least 8): 160 variants of four layers each (16 s with all 25).
@settings(max_examples=max(8, settings().max_examples // 3))
def test_finite_inputs_give_finite_outputs_and_gradients(dtype, basis, scale, seed):
    torch.manual_seed(seed)
    for fused in (True, False):
        for ln in (True, False):
            layer = FastKANLayer(4, 3, basis=basis, fused=fused, use_layernorm=ln, dtype=dtype)
            x = (torch.randn(6, 4, dtype=dtype) * scale).requires_grad_()
            y = layer(x)
            y.sum().backward()
            assert torch.isfinite(y).all(), (fused, ln)
            assert torch.isfinite(x.grad).all(), (fused, ln)
            assert all(torch.isfinite(p.grad).all() for p in layer.parameters() if p.grad is not None)


def test_fast_kan_state_dict_keys_load():
    # fast-kan names the basis "rbf"; its checkpoints load unchanged.
    layer = FastKANLayer(3, 2)
    sd = {k.replace("basis.", "rbf."): v for k, v in layer.state_dict().items()}
    other = FastKANLayer(3, 2)
    other.load_state_dict(sd)
    x = torch.randn(5, 3)
    torch.testing.assert_close(other(x), layer(x))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"num_grids": 1}, "num_grids must be at least 2, got 1"),
        ({"grid_min": 1.0, "grid_max": 1.0}, "grid_min=1.0, grid_max=1.0"),
        ({"grid_min": 2.0, "grid_max": -2.0}, "grid_min=2.0, grid_max=-2.0"),
        ({"grid_min": -math.inf}, "grid_min=-inf"),
        ({"denominator": 0.0}, "denominator must be positive and finite, got 0.0"),
        ({"denominator": -1.0}, "got -1.0"),
        ({"denominator": math.nan}, "got nan"),
        ({"denominator": math.inf}, "got inf"),
        ({"basis": "nope"}, "unknown basis 'nope'; known bases: gaussian, "),
        ({"input_dim": 1}, "use_layernorm=False"),
        ({"output_dim": 0}, "output_dim must be at least 1, got 0"),
    ],
)
def test_bad_constructor_arguments(kwargs, message):
    args = {"input_dim": 3, "output_dim": 2, **kwargs}
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        FastKANLayer(**args)


def test_an_assigned_width_is_the_width_every_path_uses():
    # denominator is a number, as fast-kan keeps it; the fast paths read its tensor copy (basis.width).
    torch.manual_seed(0)
    layer, ref = FastKANLayer(3, 2, dtype=torch.float64), FastKANLayer(3, 2, denominator=0.3, dtype=torch.float64)
    ref.load_state_dict(layer.state_dict())
    layer.basis.denominator = 0.3
    assert layer.basis.denominator == 0.3 and layer.basis.width.item() == 0.3
    x = torch.randn(64, 3, dtype=torch.float64, requires_grad=True)
    y, y_ref = layer(x), ref(x)
    torch.testing.assert_close(y, y_ref)
    torch.testing.assert_close(torch.autograd.grad(y.sum(), x)[0], torch.autograd.grad(y_ref.sum(), x)[0])


@pytest.mark.parametrize(
    "value, error, message",
    [
        (0.0, ValueError, "denominator must be positive and finite, got 0.0"),
        (-2, ValueError, "got -2"),
        (True, ValueError, "got True"),
        ("wide", TypeError, "denominator must be a number, got 'wide'"),
        (torch.ones(2), TypeError, r"got tensor\(\[1., 1.\]\)"),
    ],
)
def test_a_bad_width_assigned_is_a_clear_error(value, error, message):
    layer = FastKANLayer(3, 2)
    with pytest.raises(error, match=message):
        layer.basis.denominator = value
    assert layer.basis.denominator == 4 / 7 and layer.basis.width.item() == pytest.approx(4 / 7)  # unchanged


@pytest.mark.parametrize("basis", list(BASES))
def test_a_whole_model_saves_and_loads_with_torch_save(basis):
    # torch.save(model) pickles the modules; the bases' registries hold lambdas, which pickle cannot
    # save, so a basis is saved by its name and looked up again on load.
    import io

    torch.manual_seed(0)
    models = [FastKAN([3, 4, 2], basis=basis), BSplineKAN([3, 4, 2]), MLP([3, 4, 2])]
    buffer = io.BytesIO()
    torch.save(models, buffer)
    buffer.seek(0)
    x = torch.randn(5, 3)
    loaded = torch.load(buffer, weights_only=False)
    for model, copy in zip(models, loaded):
        torch.testing.assert_close(copy(x), model(x))
    assert loaded[0].layers[0].basis.fn is models[0].layers[0].basis.fn  # looked up again, by name


def test_non_integer_sizes_are_type_errors():
    with pytest.raises(TypeError, match="num_grids must be an int, got 2.5"):
        FastKANLayer(3, 2, num_grids=2.5)
    with pytest.raises(TypeError, match="input_dim"):
        FastKANLayer("3", 2)


def test_layernorm_over_two_inputs_warns():
    with pytest.warns(UserWarning, match="use_layernorm=False"):
        FastKANLayer(2, 3)
    x = torch.tensor([[0.1, 0.9], [-3.0, 5.0]])
    # Why: both rows normalise to the same pair, whatever the inputs' size.
    ln = torch.nn.LayerNorm(2)
    torch.testing.assert_close(ln(x)[0], ln(x)[1], atol=1e-3, rtol=0)


def test_autograd_fallback_for_a_basis_without_derivative():
    from fastkan.bases import BASES, register

    register("test-cosine-bump", lambda d: torch.cos(d.clamp(-3, 3) * 0.5) ** 2)
    try:
        torch.manual_seed(0)
        layer = FastKANLayer(
            4, 3, basis="test-cosine-bump", train_grid=True, train_denominator=True, dtype=torch.float64
        )
        assert layer.basis.derivative is None
        x = torch.randn(6, 4, dtype=torch.float64, requires_grad=True)
        assert gradcheck_module(layer, x)
    finally:
        del BASES["test-cosine-bump"]


@pytest.mark.parametrize("basis", list(BASES))
def test_registered_derivatives_match_autograd(basis):
    from fastkan.bases import DERIVATIVES, get_basis

    d = ((torch.rand(4000, dtype=torch.float64) - 0.5) * 10).requires_grad_()
    phi = get_basis(basis)(d)
    (expected,) = torch.autograd.grad(phi.sum(), d)
    torch.testing.assert_close(DERIVATIVES[basis](d.detach(), phi.detach()), expected)


def test_input_dim_one_without_layernorm_works():
    layer = FastKANLayer(1, 2, use_layernorm=False)
    assert layer(torch.randn(5, 1)).shape == (5, 2)


@pytest.mark.parametrize("model", [FastKAN([3, 2]), BSplineKAN([3, 2]), FastKANLayer(3, 2)], ids=type)
def test_wrong_last_dimension(model):
    # The message names the layer class that checks (the first layer of a FastKAN or BSplineKAN).
    name = "BSplineKANLinear" if isinstance(model, BSplineKAN) else "FastKANLayer"
    with pytest.raises(ValueError, match=rf"^{name} expects input of shape \(\.\.\., 3\), got \(5, 4\)$"):
        model(torch.randn(5, 4))
    with pytest.raises(ValueError, match=rf"^{name} expects input of shape \(\.\.\., 3\), got \(\)$"):
        model(torch.tensor(1.0))
    with pytest.raises(TypeError, match=rf"^{name} expects a torch.Tensor, got list$"):
        model([[1.0, 2.0, 3.0]])


def test_bad_model_sizes():
    with pytest.raises(ValueError, match=r"got \[3\]"):
        FastKAN([3])
    with pytest.raises(ValueError, match=r"got \[3, 0\]"):
        MLP([3, 0])
    with pytest.raises(ValueError, match=r"grid_range must be finite and increasing, got \(1.0, -1.0\)"):
        BSplineKAN([2, 2], grid_range=(1.0, -1.0))


def test_small_calls_take_one_node_and_large_ones_keep_or_rebuild(monkeypatch, record_calls):
    import fastkan.paths.fused as fused
    import fastkan.paths.small as small

    calls = record_calls(fused._FusedSpline, "apply")
    small_calls = record_calls(small._SmallLayers, "apply")
    monkeypatch.setattr(fused, "PLAIN_ELEMENTS", 4 * 5 * 8)
    monkeypatch.setattr(fused, "KEEP_BASIS_BYTES", 4 * 5 * 8 * 4 * 2)
    monkeypatch.setattr(rows, "BLOCK_ELEMENTS", 1 << 40)  # the rebuilt call below: not fastkan.paths.rows
    layer = FastKANLayer(5, 2)
    y = layer(torch.randn(4, 5))  # 160 basis values: small
    assert calls == [] and len(small_calls) == 1
    assert y.grad_fn.name() == "_SmallLayersBackward"  # LayerNorm and the base branch are in the same node
    assert {f.name() for f, _ in y.grad_fn.next_functions if f is not None} == {"torch::autograd::AccumulateGrad"}
    with torch.no_grad():
        layer(torch.randn(4, 5))  # no node to build
    assert len(small_calls) == 1
    layer.basis.grid.requires_grad_()  # a trained grid: the plain composition
    layer(torch.randn(4, 5))
    assert len(small_calls) == 1 and calls == []
    layer.basis.grid.requires_grad_(False)
    layer(torch.randn(8, 5)).sum().backward()  # 320 values, 1280 bytes: kept
    layer(torch.randn(9, 5)).sum().backward()  # 1440 bytes: rebuilt
    assert [a[-1] for a in calls] == [1280, 1280]  # keep_bytes, the last argument
    with pytest.raises(ValueError, match="keep_basis_bytes"):
        FastKANLayer(5, 2, keep_basis_bytes=-1)


@pytest.mark.parametrize("basis", list(BASES))
def test_a_fastkan_of_small_layers_is_one_node_with_every_gradient(fused_path, basis):
    torch.manual_seed(3)
    model = FastKAN([3, 4, 2], basis=basis, dtype=torch.float64)
    x = (torch.rand(5, 3, dtype=torch.float64) * 1.6 - 0.8).requires_grad_()
    assert gradcheck_module(model, x)
    y = model(x.detach())  # an input that needs a gradient keeps small calls off the node (FastKAN.forward)
    if fused_path == "small":
        # Both layers, LayerNorms and base branches included: nothing between x, the parameters and y.
        assert y.grad_fn.name() == "_SmallLayersBackward"
        assert {f.name() for f, _ in y.grad_fn.next_functions if f is not None} == {"torch::autograd::AccumulateGrad"}
    else:
        assert "_SmallLayers" not in y.grad_fn.name()


@pytest.mark.parametrize(
    "options",
    [{}, {"use_base_update": False}, {"use_layernorm": False}, {"layernorm_affine": False}, {"basis": "rswaf"}],
    ids=["default", "no-base", "no-layernorm", "no-affine", "rswaf"],
)
@pytest.mark.parametrize("frozen", [None, 0, 1], ids=["all-trained", "first-frozen", "last-frozen"])
def test_a_stack_of_small_layers_matches_the_plain_composition(options, frozen):
    torch.manual_seed(4)
    model = FastKAN([5, 6, 3, 2], dtype=torch.float64, **options)  # float32 rounding would hide small errors
    if frozen is not None:
        model.layers[frozen].requires_grad_(False)
    x = torch.randn(
        2, 7, 5, dtype=torch.float64
    )  # leading dimensions, and no input gradient: what each layer owes depends on the others
    results = []
    for fused in (True, False):
        for layer in model.layers:
            layer.fused = fused
        y = model(x)
        params = [p for p in model.parameters() if p.requires_grad]
        results.append((y, *torch.autograd.grad((y * torch.arange(2.0)).sum(), params)))
    for a, b in zip(*results):
        torch.testing.assert_close(a, b)


def test_a_stack_is_one_node_only_where_every_layer_takes_the_small_node(monkeypatch, record_calls):
    import fastkan.paths.fused as fused
    import fastkan.paths.small as small

    monkeypatch.setattr(fused, "PLAIN_ELEMENTS", 1 << 40)
    calls = record_calls(small._SmallLayers, "apply")
    model = FastKAN([5, 4, 3])
    x = torch.randn(6, 5)
    model(x).sum().backward()
    assert len(calls) == 1 and len(calls[0][1]) == 2  # one node, two layers
    calls.clear()
    model.layers[1].basis.grid.requires_grad_()  # a trained grid: that layer alone leaves the node
    model(x).sum().backward()
    assert len(calls) == 1 and len(calls[0][1]) == 1
    model.layers[1].basis.grid.requires_grad_(False)
    calls.clear()
    monkeypatch.setattr(fused, "PLAIN_ELEMENTS", 6 * 4 * 8)  # the second layer's 192 values; the first has 240
    model(x)
    assert [len(c[1]) for c in calls] == [1]  # the first layer is fused, the second its own small node
    model.layers[1] = FastKANLayer(6, 3)  # widths that do not chain: the layer's own error
    with pytest.raises(ValueError, match=r"\(\.\.\., 6\)"):
        model(x)


@pytest.mark.parametrize("out", [3, 1])
def test_autocast_keeps_small_calls_out_of_the_small_node(record_calls, out):
    import fastkan.paths.small as small

    calls = record_calls(small._SmallLayers, "apply")
    torch.manual_seed(0)
    layer = FastKANLayer(5, out)
    x = torch.randn(4, 5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = layer(x)
    (y.float() ** 2).sum().backward()  # the node's float32 weights and bfloat16 products would not mix here
    assert calls == []
    grads = [p.grad for p in layer.parameters() if p.requires_grad]
    assert all(g.dtype == torch.float32 and torch.isfinite(g).all() for g in grads)


def test_one_output_takes_the_centre_major_path_for_bases_of_the_square(record_calls, fused_path):
    import fastkan.paths.compiled as compiled
    import fastkan.paths.one_output as one_output

    # With the compiled kernels on, they take these layers; else the eager centre-major path does, but
    # where the small node is forced: it takes these calls whole.
    calls = record_calls(compiled.OneOutput if fused_path == "compiled" else one_output._OneOutput, "apply")
    x = torch.randn(6, 5)
    took = []
    for basis in BASES:
        FastKANLayer(5, 1, basis=basis)(x).sum().backward()
        took += [basis] * len(calls)
        calls.clear()
    FastKANLayer(5, 2)(x).sum().backward()  # two outputs: the input-major path
    FastKANLayer(5, 1, train_grid=True)(x).sum().backward()  # a trained grid: the general backward
    assert calls == []
    assert took == ([] if fused_path == "small" else [b for b in BASES if b in OF_NEG_SQUARE_DERIVATIVES])
    layer = FastKANLayer(5, 1)
    y = layer(x)
    y.sum().backward(retain_graph=True)
    g1 = layer.spline_linear.weight.grad.clone()
    y.sum().backward()  # a second backward sees the same kept basis
    torch.testing.assert_close(layer.spline_linear.weight.grad, 2 * g1)


def test_a_kept_basis_is_smaller_than_the_budget_and_saved():
    from perf.measure.memory import saved_tensor_bytes

    torch.manual_seed(0)
    layer = FastKANLayer(50, 3, layernorm_affine=False, keep_basis_bytes=20 * 50 * 8 * 4)
    x = torch.randn(20, 50)
    with dispatch.forcing("kept"):  # the fused blocks; the layer's keep_basis_bytes sets the budget
        kept = saved_tensor_bytes(layer, lambda: layer(x))
        layer.keep_basis_bytes = 0
        rebuilt = saved_tensor_bytes(layer, lambda: layer(x))
        assert kept - rebuilt == 20 * 50 * 8 * 4  # the (N, in * G) float32 basis
        x.requires_grad_()  # the input gradient needs the centred inputs (N, in) as well
        layer.keep_basis_bytes = 20 * 50 * 8 * 4
        kept = saved_tensor_bytes(layer, lambda: layer(x))
        layer.keep_basis_bytes = 0
        assert kept - saved_tensor_bytes(layer, lambda: layer(x)) == 20 * 50 * 9 * 4


@pytest.mark.parametrize("basis", ["gaussian", "rswaf"])
def test_the_small_node_keeps_the_basis_derivative_only_for_an_input_gradient(basis):
    from perf.measure.memory import saved_tensor_bytes

    layer = FastKANLayer(50, 3, basis=basis, layernorm_affine=False)
    x = torch.randn(20, 50)
    with dispatch.forcing("small"):
        without = saved_tensor_bytes(layer, lambda: layer(x))
        assert saved_tensor_bytes(layer, lambda: layer(x.requires_grad_())) - without == 20 * 50 * 8 * 4


@pytest.mark.parametrize("basis", ["gaussian", "rswaf"])
def test_backward_rebuilds_a_basis_whole_within_its_budget_and_saves_no_more(monkeypatch, basis):
    import fastkan.paths.common as common
    import fastkan.paths.fused as fused
    from perf.measure.memory import saved_tensor_bytes

    monkeypatch.setattr(fused, "PLAIN_ELEMENTS", 0)  # the "small" path's calls too
    monkeypatch.setattr(fused, "KEEP_BASIS_BYTES", 0)
    monkeypatch.setattr(common, "block_elements", lambda: 20 * 8 * 3)  # 3 inputs a block
    monkeypatch.setattr(rows, "BLOCK_ELEMENTS", 1 << 40)  # feature blocks, not fastkan.paths.rows
    torch.manual_seed(0)
    layer = FastKANLayer(10, 3, basis=basis)
    x = torch.randn(20, 10, requires_grad=True)
    results, saved, steps = [], [], []
    real = common.inputs_per_block
    monkeypatch.setattr(common, "inputs_per_block", lambda *a: steps.append(real(*a)) or steps[-1])
    for budget in (0, 1 << 20):
        monkeypatch.setattr(fused, "WHOLE_BACKWARD_BYTES", budget)
        y = layer(x)
        results.append(
            (
                y,
                *torch.autograd.grad(
                    (y * torch.arange(3.0)).sum(), [x, *(p for p in layer.parameters() if p.requires_grad)]
                ),
            )
        )
        saved.append(saved_tensor_bytes(layer, lambda: layer(x)))
    assert steps[:2] == [3, 3] and 10 in steps[2:]  # blocks in the first backward, one whole block in the second
    assert saved[0] == saved[1]
    for a, b in zip(*results):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("name", ["layernorm", "basis", "spline_linear", "base_linear"])
def test_hooks_on_submodules_fire(name):
    # forward uses plain submodules' tensors through functions; one with hooks must be called as a
    # module, or its hooks would silently not run.
    torch.manual_seed(0)
    layer = FastKANLayer(6, 3)
    x = torch.randn(40, 6)
    want = layer(x)
    seen = []
    handle = getattr(layer, name).register_forward_hook(lambda module, args, out: seen.append(out.shape) or 2.0 * out)
    got = layer(x)
    handle.remove()
    assert len(seen) == 1
    torch.testing.assert_close(layer(x), want)
    assert not torch.allclose(got, want)  # the hook's doubling reached the output


def test_hooks_on_fastkan_layers_fire():
    # FastKAN calls a hook-free layer's forward directly; a layer with hooks must get a module call.
    torch.manual_seed(0)
    model = FastKAN([6, 4, 2])
    x = torch.randn(5, 6)
    want = model(x)
    handle = model.layers[0].register_forward_hook(lambda module, args, out: 2.0 * out)
    got = model(x)
    handle.remove()
    torch.testing.assert_close(got, model.layers[1](2.0 * model.layers[0](x)))
    torch.testing.assert_close(model(x), want)


def test_module_wide_hooks_fire_on_submodules():
    layer = FastKANLayer(6, 3)
    seen = []
    handle = torch.nn.modules.module.register_module_forward_hook(lambda m, args, out: seen.append(type(m).__name__))
    try:
        layer(torch.randn(5, 6))
    finally:
        handle.remove()
    assert {"LayerNorm", "RadialBasis", "Linear", "FastKANLayer"} <= set(seen)


@pytest.mark.filterwarnings("ignore:`torch.nn.utils.weight_norm` is deprecated:FutureWarning")
def test_weight_norm_pre_hook_is_honoured():
    # torch.nn.utils.weight_norm recomputes `weight` in a forward pre-hook; reading the attribute
    # without calling the module would use the weight of its previous call.
    torch.manual_seed(0)
    layer = FastKANLayer(6, 3)
    torch.nn.utils.weight_norm(layer.base_linear)
    x = torch.randn(40, 6)
    layer(x)
    with torch.no_grad():
        layer.base_linear.weight_g.mul_(3.0)
    got = layer(x)  # first: the module calls below would refresh the stale weight
    want = layer.spline(layer.layernorm(x), layer.base_linear(F.silu(x)))
    torch.testing.assert_close(got, want)


def test_replaced_submodules_are_called_as_modules():
    # forward uses its submodules' parameters through functions; a submodule swapped for another kind
    # (a LoRA wrapper, an Identity) must still compute what its own forward says.
    class Shifted(nn.Linear):
        def forward(self, z):
            return super().forward(z) + 1.0

    class Doubled(RadialBasis):
        def forward(self, u):
            return 2.0 * super().forward(u)

    torch.manual_seed(0)
    layer = FastKANLayer(6, 3)
    x = torch.randn(40, 6)
    want = layer(x)
    for shift, name in enumerate(("base_linear", "spline_linear"), start=1):
        old = getattr(layer, name)
        new = Shifted(old.in_features, old.out_features, bias=old.bias is not None)
        new.load_state_dict(old.state_dict())
        setattr(layer, name, new)
        torch.testing.assert_close(layer(x), want + shift)

    layer = FastKANLayer(6, 3)
    u = layer.layernorm(x)
    base = layer.base_linear(F.silu(x))
    layer.basis = Doubled()
    torch.testing.assert_close(layer(x), 2.0 * layer.spline_linear(RadialBasis()(u).flatten(-2)) + base)

    layer.layernorm = nn.Identity()
    got = layer(x)
    layer.layernorm = None
    torch.testing.assert_close(got, layer(x))


# Every PyTorch mode on every path (the autouse fixture above forces each): a mode that a path cannot
# serve takes the plain composition (fastkan.modes); never an error, never a different number.
MODE_CASES = [("gaussian", 3), ("gaussian", 1), ("rswaf", 3), ("bspline", 1)]


def _pair(basis, out, dtype=torch.float64):
    """A fused layer and the plain reference with the same parameters (five centres: the grid of the
    gradchecks above, whose compiled kernels they reuse)."""
    torch.manual_seed(0)
    fast = FastKANLayer(5, out, num_grids=5, basis=basis, dtype=dtype)
    plain = FastKANLayer(5, out, num_grids=5, basis=basis, dtype=dtype, fused=False)
    plain.load_state_dict(fast.state_dict())
    return fast, plain


@pytest.mark.parametrize("basis, out", MODE_CASES)
def test_torch_func_grad_vmap_and_jacrev(basis, out):
    from torch.func import functional_call, grad, jacrev, vmap

    fast, plain = _pair(basis, out)
    x = torch.randn(6, 5, dtype=torch.float64)
    for fn in (
        lambda m: vmap(lambda xi: m(xi[None])[0])(x),
        lambda m: jacrev(lambda xi: m(xi[None])[0])(x[0]),
        lambda m: grad(lambda xi: m(xi[None]).sum())(x[1]),
        lambda m: grad(lambda p: functional_call(m, p, (x,)).pow(2).sum())(dict(m.named_parameters())),
    ):
        torch.testing.assert_close(fn(fast), fn(plain))


@pytest.mark.parametrize("basis, out", MODE_CASES)
def test_export_gives_the_eager_output(basis, out):
    fast, _ = _pair(basis, out, torch.float32)
    x = torch.randn(6, 5)
    program = torch.export.export(fast, (x,))
    torch.testing.assert_close(program.module()(x), fast(x))
    torch.testing.assert_close(program.module()(2 * x), fast(2 * x))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("basis, out", MODE_CASES)
def test_cpu_autocast_gives_what_linear_gives(basis, out, dtype):
    fast, _ = _pair(basis, out, torch.float32)
    x = torch.randn(6, 5, requires_grad=True)
    want = fast(x)
    with torch.autocast("cpu", dtype=dtype):
        got = fast(x)
        assert got.dtype == torch.nn.Linear(5, out)(x).dtype == dtype
    torch.testing.assert_close(got.float(), want, rtol=0.05, atol=0.05)
    got.float().sum().backward()  # and trains
    assert x.grad is not None and torch.isfinite(x.grad).all()


@pytest.mark.parametrize("basis, out", MODE_CASES)
def test_second_derivatives_of_every_basis_match_the_plain_composition(basis, out):
    fast, plain = _pair(basis, out)
    x = torch.randn(6, 5, dtype=torch.float64, requires_grad=True)
    results = []
    for m in (fast, plain):
        (g,) = torch.autograd.grad(m(x).pow(2).sum(), x, create_graph=True)
        results.append(torch.autograd.grad(g.pow(2).sum(), [x, m.spline_linear.weight]))
    for a, b in zip(*results):
        torch.testing.assert_close(a, b)


def test_state_dict_names_the_grid_as_fast_kan_does():
    # fast-kan's FastKANLayer keeps the grid in its `rbf` module: our checkpoints load into it unchanged.
    layer = FastKANLayer(5, 3)
    state = layer.state_dict()
    assert set(state) == {
        "layernorm.weight",
        "layernorm.bias",
        "rbf.grid",
        "spline_linear.weight",
        "base_linear.weight",
        "base_linear.bias",
    }
    again = FastKANLayer(5, 3)
    again.load_state_dict(state)
    x = torch.randn(4, 5)
    torch.testing.assert_close(again(x), layer(x))
    legacy = {k.replace("rbf.", "basis."): v for k, v in state.items()}  # as this package saved them before
    again.load_state_dict(legacy)
    torch.testing.assert_close(again(x), layer(x))
