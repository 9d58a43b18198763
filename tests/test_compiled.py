"""fastkan.paths.compiled: the one-output kernels agree with the eager path, fall back, and compile once per basis."""

import pytest
import torch

import fastkan.paths.compiled as compiled
from fastkan import FastKANLayer
from fastkan.bases import OF_NEG_SQUARE_DERIVATIVES
from fastkan.dispatch import forcing

SQUARE_BASES = sorted(OF_NEG_SQUARE_DERIVATIVES)


@pytest.fixture(autouse=True)
def fused_only(request):
    if "failed_compilation" not in request.node.name:
        request.getfixturevalue("compiler")
    with forcing("compiled"):  # these shapes are small
        yield


def run(layer, x):
    y = layer(x)
    return (
        y,
        *torch.autograd.grad((y * torch.linspace(-1, 2, y.shape[0])[:, None]).sum(), [x, layer.spline_linear.weight]),
    )


# The default run compiles one layout of each kernel kind (grouped: the Gaussian; general: expit);
# every other basis and dtype compiles its own kernels, 3 to 10 s each from an empty cache, and runs
# in the exhaustive step (pytest -m exhaustive; .ci/run runs it).
DEFAULT = {("gaussian", torch.float32), ("expit", torch.float64)}


def exhaustive(*values, keep: bool = False):
    return pytest.param(*values, marks=() if keep else pytest.mark.exhaustive)


@pytest.mark.parametrize(
    "basis, dtype",
    [exhaustive(b, d, keep=(b, d) in DEFAULT) for b in SQUARE_BASES for d in (torch.float32, torch.float64)],
    ids=lambda v: str(v).replace("torch.", ""),
)
def test_compiled_one_output_matches_the_eager_path(monkeypatch, record_calls, basis, dtype):
    # Several bases and both dtypes in one process: each (basis, dtype) compiles its own code, so
    # none falls back to eager on dynamo's recompilation limit.
    torch.manual_seed(0)
    layer = FastKANLayer(300, 1, basis=basis, use_layernorm=False, dtype=dtype)
    x = (3 * torch.randn(37, 300, dtype=dtype)).requires_grad_()
    calls = record_calls(compiled.OneOutput, "apply")
    got = run(layer, x)
    assert len(calls) == 1
    monkeypatch.setattr(compiled, "ENABLED", False)
    want = run(layer, x)
    assert len(calls) == 1
    tol = {"rtol": 1e-4, "atol": 1e-5} if dtype == torch.float32 else {"rtol": 1e-10, "atol": 1e-12}
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, **tol)


@pytest.mark.parametrize("shape", [(1, 5), (2, 1), (1, 1)])
def test_a_size_of_1_takes_the_eager_path_and_compiles_nothing(record_calls, shape):
    # Dynamo would compile code of its own for a size of 1: seconds, silently, for one row.
    torch.manual_seed(0)
    layer = FastKANLayer(shape[1], 1, use_layernorm=False)
    x = torch.randn(*shape, requires_grad=True)
    layer(torch.randn(4, shape[1]))  # the kernels of the general sizes, where they apply
    built = set(compiled._KERNELS)
    calls = record_calls(compiled.OneOutput, "apply")
    got = run(layer, x)
    assert calls == [] and set(compiled._KERNELS) == built
    layer.fused = False
    for a, b in zip(got, run(layer, x)):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    if compiled.OPERATORS:  # the operator inside a compiled model: the plain composition for one row
        grid, h = layer.basis.tensors()
        w = layer.spline_linear.weight
        y = compiled.one_output_op(x, grid, h, w, layer.basis.name)
        grads = torch.autograd.grad(y.sum(), [x, w])
        y_plain = layer(x) - layer.base_linear(layer.base_activation(x))
        for a, b in zip((y, *grads), (y_plain, *torch.autograd.grad(y_plain.sum(), [x, w]))):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
        assert calls == [] and set(compiled._KERNELS) == built


# The Gaussian with a narrow width: its grouped kernels split the 15 centres into two groups. Both
# layouts are those of the tests around, whose compiled kernels they reuse (8 to 20 s each to compile).
@pytest.mark.parametrize(
    "basis, options",
    [exhaustive(b, dict(num_grids=8), keep=b == "expit") for b in SQUARE_BASES]
    + [exhaustive("gaussian", dict(num_grids=15, denominator=0.1))],
)
def test_compiled_one_output_gradcheck(record_calls, basis, options):
    torch.manual_seed(0)
    layer = FastKANLayer(4, 1, basis=basis, dtype=torch.float64, **options)
    calls = record_calls(compiled.OneOutput, "apply")
    w = layer.spline_linear.weight
    x = torch.randn(6, 4, dtype=torch.float64, requires_grad=True)

    def f(x, w):
        return torch.func.functional_call(layer, {"spline_linear.weight": w}, (x,))

    assert torch.autograd.gradcheck(f, (x, w.detach().clone().requires_grad_()))
    assert calls
    groups = calls[0][5]  # OneOutput.apply(u, grid, h, weight, kernels, groups, fn)
    assert (groups is not None) == layer.basis.exponential
    if options.get("denominator"):
        assert len(groups.chunks) > 1


def test_a_failed_compilation_warns_once_and_takes_the_eager_path(monkeypatch):
    def no_compiler(fn, **options):
        def fail(*args):
            raise RuntimeError("no C++ compiler here")

        return fail

    monkeypatch.setattr(compiled, "_KERNELS", {})
    monkeypatch.setattr(compiled, "_broken", [])
    monkeypatch.setattr(compiled.torch, "compile", no_compiler)
    torch.manual_seed(0)
    layer = FastKANLayer(6, 1)
    x = torch.randn(5, 6, requires_grad=True)
    with pytest.warns(RuntimeWarning, match="no C.. compiler here"):
        got = run(layer, x)
    assert not compiled.available(x)
    monkeypatch.setattr(compiled, "ENABLED", False)
    for a, b in zip(got, run(layer, x)):
        torch.testing.assert_close(a, b)


def test_compiled_backward_is_twice_differentiable(record_calls):
    # create_graph=True: backward differentiates the plain composition (fastkan.modes). Five centres:
    # the float64 kernels of the frozen-grid gradchecks (tests/test_layer.py) and tests/test_higher.py.
    layer = FastKANLayer(4, 1, num_grids=5, use_layernorm=False, dtype=torch.float64)
    calls = record_calls(compiled.OneOutput, "apply")
    w = layer.spline_linear.weight
    x = torch.randn(6, 4, dtype=torch.float64, requires_grad=True)

    def f(x, w):
        return torch.func.functional_call(layer, {"spline_linear.weight": w}, (x,))

    assert torch.autograd.gradgradcheck(f, (x, w))
    assert calls


def test_each_thread_count_gets_its_own_kernels():
    # Inductor builds the thread count into a CPU kernel; a kernel built for one count must not serve another.
    layer = FastKANLayer(5, 1)
    x = torch.randn(4, 5)
    threads = torch.get_num_threads()
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            layer(x)
    finally:
        torch.set_num_threads(threads)
    assert {("gaussian", torch.float32, 1), ("gaussian", torch.float32, 2)} <= {k[:3] for k in compiled._KERNELS}


def test_compiled_backward_writes_no_basis():
    # One kernel for both gradients kept the whole (N, G, in) basis in a buffer; two kernels write none.
    from perf.measure.memory import cpu_peak_alloc_bytes

    layer = FastKANLayer(500, 1)
    x = torch.randn(64, 500, requires_grad=True)
    layer(x).sum().backward()  # compiled before the measured pass
    y = layer(x)
    basis_bytes = 64 * 500 * 8 * 4
    assert cpu_peak_alloc_bytes(lambda: y.sum().backward()) < basis_bytes / 2


# Grids whose Gaussian bumps the exponential kernels build in groups: one group (the default 8
# centres), several groups (a narrow width; inputs up to 50 widths outside: the clamp), and a grid
# far from 0 (in float32, where the subtraction loses most). Each layout and dtype compiles its own
# kernels (9 to 23 s here from an empty cache), hence only these.
GROUPED = [
    (dict(num_grids=8), torch.float32),
    exhaustive(dict(num_grids=8), torch.float64),
    exhaustive(dict(num_grids=15, denominator=0.1), torch.float32),
    exhaustive(dict(num_grids=15, denominator=0.1), torch.float64),
    exhaustive(dict(num_grids=6, grid_min=10.0, grid_max=12.0), torch.float32),
]


@pytest.mark.parametrize(
    "options, dtype",
    GROUPED,
    ids=lambda v: "-".join(f"{k}={x}" for k, x in v.items()) if isinstance(v, dict) else str(v).replace("torch.", ""),
)
def test_exponential_kernels_match_the_eager_path(monkeypatch, record_calls, options, dtype):
    torch.manual_seed(0)
    layer = FastKANLayer(40, 1, use_layernorm=False, dtype=dtype, **options)
    grid, h = layer.basis.tensors()
    groups = compiled._Groups.of(grid, h, layer.basis.neg_square_scale)
    assert groups is not None and sum(m for _, m in groups.chunks) == grid.numel()
    if options.get("denominator"):
        assert len(groups.chunks) > 1  # float32: five groups of 3; float64: groups of 8 and 7
    # Inputs across the grid, up to 1.25 grid widths beyond either end, and two at +-1e30.
    lo, hi = options.get("grid_min", -2.0), options.get("grid_max", 2.0)
    x = lo + (hi - lo) * (3.5 * torch.rand(23, 40, dtype=dtype) - 1.25)
    x[0, :2] = torch.tensor([1e30, -1e30])  # clamped, as the eager path clamps
    x.requires_grad_()
    calls = record_calls(compiled.OneOutput, "apply")
    got = run(layer, x)
    assert calls and calls[0][5] is groups
    monkeypatch.setattr(compiled, "ENABLED", False)
    want = run(layer, x)
    tol = {"rtol": 1e-4, "atol": 1e-5} if dtype == torch.float32 else {"rtol": 1e-10, "atol": 1e-12}
    for a, b in zip(got, want):
        assert torch.isfinite(a).all()
        torch.testing.assert_close(a, b, **tol)


def test_a_grid_that_is_not_uniform_takes_the_general_kernels(record_calls):
    torch.manual_seed(0)
    layer = FastKANLayer(30, 1, use_layernorm=False)
    with torch.no_grad():
        layer.basis.grid[3] += 0.05
    x = torch.randn(9, 30, requires_grad=True)
    assert compiled._Groups.of(*layer.basis.tensors(), layer.basis.neg_square_scale) is None
    calls = record_calls(compiled.OneOutput, "apply")
    got = run(layer, x)
    assert calls and calls[0][5] is None
    plain = FastKANLayer(30, 1, use_layernorm=False, fused=False)
    plain.load_state_dict(layer.state_dict())
    for a, b in zip(got, run(plain, x)):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_inside_torch_compile_a_one_output_layer_keeps_the_kernels_as_an_operator(monkeypatch):
    # Otherwise the compiled model is the plain composition (fastkan.modes): the operator keeps
    # fastkan.paths.compiled's kernels in the graph, opaque to the compiler, with its own backward.
    torch._dynamo.reset()
    torch.manual_seed(0)
    layer = FastKANLayer(200, 1)
    x = torch.randn(64, 200, requires_grad=True)
    calls = []
    real = compiled.one_output
    monkeypatch.setattr(compiled, "one_output", lambda *a: calls.append(1) or real(*a))
    y = torch.compile(layer, fullgraph=True)(x)
    grads = torch.autograd.grad(y.pow(2).sum(), [x, layer.spline_linear.weight])
    assert calls, "the operator did not run"
    monkeypatch.undo()
    y_eager = layer(x)
    for a, b in zip(grads, torch.autograd.grad(y_eager.pow(2).sum(), [x, layer.spline_linear.weight])):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(y, y_eager, rtol=1e-4, atol=1e-5)
    grid, h = layer.basis.tensors()
    u = torch.randn(16, 200, requires_grad=True)
    torch.library.opcheck(compiled.one_output_op, (u, grid, h, layer.spline_linear.weight, "gaussian"))


def test_under_autocast_a_compiled_one_output_layer_returns_what_eager_does(monkeypatch):
    # Autocast takes the plain composition (fastkan.modes), whose products return the autocast dtype
    # as nn.Linear's do: compiled, the layer must too, not the operator's float32.
    torch._dynamo.reset()
    torch.manual_seed(2)
    layer = FastKANLayer(200, 1)
    x = torch.randn(64, 200)
    calls = []
    real = compiled.one_output
    monkeypatch.setattr(compiled, "one_output", lambda *a: calls.append(1) or real(*a))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = torch.compile(layer, fullgraph=True)(x)
        y_eager = layer(x)
    assert not calls and y.dtype == y_eager.dtype == torch.bfloat16
    torch.testing.assert_close(y.float(), y_eager.float(), rtol=2e-2, atol=2e-2)


def test_the_operator_falls_back_where_its_kernels_do_not_compile(monkeypatch):
    torch._dynamo.reset()
    torch.manual_seed(1)
    layer = FastKANLayer(200, 1)
    x = torch.randn(64, 200, requires_grad=True)
    monkeypatch.setattr(compiled, "_kernels", lambda *a: None)
    y = torch.compile(layer, fullgraph=True)(x)
    grads = torch.autograd.grad(y.pow(2).sum(), [x, layer.spline_linear.weight])
    monkeypatch.undo()
    layer.fused = False
    y_plain = layer(x)
    torch.testing.assert_close(y, y_plain, rtol=1e-4, atol=1e-5)
    for a, b in zip(grads, torch.autograd.grad(y_plain.pow(2).sum(), [x, layer.spline_linear.weight])):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


# Each variant compiles the layer (2 to 4 s from an empty cache); under torch.compile all three are the
# same plain composition, whose one-output layer also weighs the operator: the others are exhaustive.
@pytest.mark.parametrize("out", [exhaustive(3), exhaustive(30), 1], ids=["feature-major", "input-major", "one-output"])
def test_a_compiled_layer_takes_the_plain_composition_whole(out, monkeypatch, compiler):
    # --perf-mode=compile times compiled models: under torch.compile the layer takes the plain
    # composition (fastkan.modes.plain_reason), which must trace whole (fullgraph) and agree with
    # eager in values and gradients. No fast path is traced: each raises if it is. (Here, not in
    # tests/test_layer.py: the path forced there changes nothing inside torch.compile, and each
    # compilation costs seconds.)
    import fastkan.dispatch as dispatch

    torch._dynamo.reset()  # each case compiles the layer's forward anew: dynamo allows 8 per code object
    monkeypatch.setattr(dispatch, "spline", lambda *a, **k: (_ for _ in ()).throw(AssertionError("traced")))
    torch.manual_seed(0)
    layer = FastKANLayer(5, out)  # the default 8 centres: the kernels the tests above built
    x = torch.randn(7, 5)
    compiled = torch.compile(layer, fullgraph=True)
    y = compiled(x)
    (g,) = torch.autograd.grad(y.sum(), layer.spline_linear.weight)
    monkeypatch.undo()
    y_eager = layer(x)
    (g_eager,) = torch.autograd.grad(y_eager.sum(), layer.spline_linear.weight)
    torch.testing.assert_close(y, y_eager)
    torch.testing.assert_close(g, g_eager)


def test_a_compiled_fastkan_checks_no_object_twice_before_each_call():
    # Dynamo checks every guard of a compiled model before each call. An object that the trace reaches
    # two ways (a module through two imports, torch through two modules, the type of two layers) adds
    # a check, in Python, that they are still one (an "epilogue" guard), and keeps the other checks
    # from being skipped: with 8 of them FastKAN([4, 16, 1])'s compiled forward took 1.02x to 1.14x
    # compiled fast-kan's time, without them 0.99x to 1.08x (docs/results/modes.md).
    from fastkan import FastKAN

    entries = getattr(torch._dynamo.eval_frame, "_debug_get_cache_entry_list", None)
    torch._dynamo.reset()
    model = FastKAN([4, 16, 1])
    torch.compile(model)(torch.rand(32, 4)).sum().backward()
    guards = getattr(entries(FastKAN.forward.__code__)[0], "guard_manager", None) if entries else None
    root = getattr(guards, "root", None)
    if not hasattr(root, "get_epilogue_lambda_guards"):
        pytest.skip("this torch does not list a compiled frame's guards")
    assert root.get_leaf_guards()  # the listing is there (the global state, ...)
    assert [part for g in root.get_epilogue_lambda_guards() for part in g.verbose_code_parts()] == []


def test_a_compiled_fastkan_takes_no_tensor_but_its_parameters_and_the_input():
    # Each tensor a compiled graph reads is one more input that every call checks and passes: a frozen
    # width is a number (docs/results/modes.md). An assigned width recompiles the model, not ignored.
    from fastkan import FastKAN

    inputs = []

    def backend(gm, example_inputs):
        inputs.append(len(example_inputs))
        return gm.forward

    torch._dynamo.reset()
    torch.manual_seed(0)
    model = FastKAN([4, 16, 1])
    compiled = torch.compile(model, backend=backend)
    x = torch.rand(32, 4)
    compiled(x)
    assert inputs == [1 + len(list(model.parameters()))]
    for layer in model.layers:
        layer.basis.denominator = 0.3
    torch.testing.assert_close(compiled(x), model(x))
    assert len(inputs) == 2
