"""fastkan.explain names the path each layer's call takes; the README's tables are the library's."""

import re
from pathlib import Path

import pytest
import torch

import fastkan
from fastkan import FastKAN, FastKANLayer
from fastkan.explain import PATHS
from fastkan.modes import MODES, PATH_NAMES

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def _table(header: str) -> list[list[str]]:
    """The rows of the README table whose header row starts with ``header``."""
    lines = README[README.index(header) :].splitlines()[2:]
    rows = []
    for line in lines:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip("|").split("|")])
    return rows


def test_the_readme_lists_the_paths_of_the_library_in_order():
    assert _table("| path | where | module |") == [[p.name, p.where, f"`{p.module}`"] for p in PATHS]


def test_the_readme_lists_the_modes_of_the_library_on_every_path():
    assert list(PATH_NAMES) == [p.name for p in PATHS if p.name != "plain"]
    assert _table("| mode | " + " | ".join(PATH_NAMES) + " |") == [[mode, *cells] for mode, cells in MODES]


@pytest.mark.parametrize(
    "layers, batch, options, paths",
    [
        ([784, 64, 10], 64, {}, ["fused blocks", "small node"]),
        ([4, 16, 1], 32, {}, ["small node", "small node"]),
        ([256, 256, 1], 4096, {}, ["row blocks", "compiled one-output"]),
        ([128, 128, 1], 128, dict(basis="wendland", num_grids=64), ["local", "local"]),
        ([784, 64, 10], 64, dict(fused=False), ["plain", "plain"]),
    ],
)
def test_explain_names_the_path_each_layer_took(compiler, layers, batch, options, paths):
    lines = fastkan.explain(FastKAN(layers, **options), torch.randn(batch, layers[0]))
    assert [re.match(r"layers\.\d+: ([a-z -]+) \(", line).group(1) for line in lines] == paths
    if options.get("fused") is False:
        assert all(line.endswith("fused=False") for line in lines)


def test_explain_says_why_a_mode_takes_the_plain_composition():
    layer = FastKANLayer(784, 10)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        (line,) = fastkan.explain(layer, torch.randn(8, 784))
    assert line == "FastKANLayer: plain (fastkan/layer.py): autocast on cpu is on"
    with pytest.raises(ValueError, match="holds no FastKANLayer"):
        fastkan.explain(torch.nn.Linear(3, 3), torch.randn(2, 3))


def test_explain_reports_what_the_call_takes_for_an_input_that_needs_a_gradient():
    from fastkan.layer import FastKANLayer as Layer

    model, x = FastKAN([4, 16, 1]), torch.randn(32, 4)
    plain = Layer._forward
    assert all(" small node " in line for line in fastkan.explain(model, x))
    lines = fastkan.explain(model, x.requires_grad_())
    assert all("plain" in line and "input needs a gradient" in line for line in lines), lines
    assert Layer._forward is plain  # explain leaves the layer as it found it
    assert not any(m._forward_hooks for m in model.modules())


def test_warmup_builds_without_touching_gradients(compiler, caplog):
    layer = FastKANLayer(300, 1)
    fastkan.warmup(layer, torch.randn(64, 300))
    assert all(p.grad is None for p in layer.parameters())


# The modes table's plain cells, seen on every CPU path that a small layer can be forced onto.
@pytest.mark.parametrize(
    "path, out, name",
    [
        ("small", 1, "small node"),
        ("compiled", 1, "compiled one-output"),
        ("rows", 2, "row blocks"),
        ("rebuilt", 2, "fused blocks"),
    ],
)
def test_modes_that_take_the_plain_composition_take_it_on_every_path(compiler, path, out, name):
    from fastkan.dispatch import forcing

    layer = FastKANLayer(6, out)
    x = torch.randn(12, 6)
    with forcing(path):
        (eager,) = fastkan.explain(layer, x)
        assert eager.startswith(f"FastKANLayer: {name} (")
        with torch.autocast("cpu", dtype=torch.bfloat16):
            (line,) = fastkan.explain(layer, x)
        assert line.startswith("FastKANLayer: plain")
        seen = []
        hook = layer.register_forward_pre_hook(lambda m, inp: seen.append(fastkan.modes.plain_reason(inp[0])))
        try:
            torch.func.vmap(layer)(x[:, None])
            torch.export.export(layer, (x,))
        finally:
            hook.remove()
        assert seen[0].startswith("a torch.func transform") and seen[-1] == "torch.export is tracing"
