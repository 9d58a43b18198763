"""``fastkan.explain(model, x)``: which evaluation path each FastKAN layer's call takes, and why.

``PATHS`` is the table of paths in the order a call tries them, with where each applies (the
README's table of paths is checked against it by tests/test_explain.py). ``explain`` runs the model
once on ``x`` and reads which path each layer's output came from in the autograd graph, so what it
says is what ran, not a guess.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from . import modes


@dataclass(frozen=True)
class Path:
    name: str
    module: str
    where: str
    nodes: tuple[str, ...]  # the autograd nodes (class names) it leaves in the graph


PATHS = (
    Path(
        "small node",
        "fastkan/paths/small.py",
        "CPU calls of at most 262144 basis values: LayerNorm, spline and base branch as one autograd node",
        ("_SmallLayersBackward",),
    ),
    Path(
        "compiled one-output",
        "fastkan/paths/compiled.py",
        "CPU layers with one output and a basis of d^2, two rows and inputs or more: TorchInductor reductions",
        ("OneOutputBackward",),
    ),
    Path(
        "row blocks",
        "fastkan/paths/rows.py",
        "CPU batches larger than the outputs and the basis values per row",
        ("_RowBlocksBackward",),
    ),
    Path(
        "local",
        "fastkan/paths/local.py",
        "compact bases on grids of 16 centres or more: only the centres near each input",
        ("_ScatteredBackward", "_SparseBackward"),
    ),
    Path(
        "Triton",
        "fastkan/paths/triton_spline.py",
        "CUDA, `gaussian`, `inverse-quadratic`, `rswaf`: the basis built inside the products",
        ("_TritonSplineBackward",),
    ),
    Path(
        "fused blocks",
        "fastkan/paths/fused.py",
        "everything else: the basis built block by block, kept or rebuilt in backward",
        ("_FusedSplineBackward", "_OneOutputBackward"),
    ),
    Path(
        "plain",
        "fastkan/layer.py",
        "`fused=False`, trained grids, torch.func, torch.export, autocast (fastkan/modes.py)",
        (),
    ),
)
_BY_NODE = {node: p for p in PATHS for node in p.nodes}


def _nodes(out: Tensor, stop) -> list[str]:
    """Class names of the autograd nodes between ``out`` and the nodes in ``stop`` (the layer's input)."""
    seen, names, todo = set(), [], [out.grad_fn]
    while todo:
        node = todo.pop()
        if node is None or node in stop or id(node) in seen:
            continue
        seen.add(id(node))
        names.append(type(node).__name__)
        todo.extend(n for n, _ in node.next_functions)
    return names


def _why(layer, x: Tensor, path: Path, small_node: bool = True) -> str:
    if path.name != "plain":
        return path.where
    basis = layer._modules.get("basis")
    grid, h = basis.tensors() if hasattr(basis, "tensors") else (None, None)
    reason = modes.plain_reason(x)
    if not layer.fused:
        return "fused=False"
    if reason:
        return reason
    if grid is not None and (grid.requires_grad or h.requires_grad):
        return "a trained grid or width"
    if layer._forward_hooks or layer._forward_pre_hooks:
        return "a replaced or hooked submodule"
    if not small_node:
        return "a small call whose input needs a gradient, which FastKAN keeps off the small node"
    return "the call is small and the basis has no registered derivative, or a submodule is replaced or hooked"


def paths(model: nn.Module, x: Tensor) -> list[tuple[str, Path, str]]:
    """(layer name, path, why) for each FastKANLayer of ``model`` (or ``model`` itself), in order.

    Runs ``model`` once on ``x`` with gradients recorded (nothing is accumulated into ``.grad``).
    ``x`` keeps its ``requires_grad``: a FastKAN whose input needs a gradient takes the plain
    composition for its small calls (FastKAN.forward). Where nothing would need a gradient (a
    frozen model, an input without one), ``x`` is made to need one so that the call leaves a graph.
    """
    from .layer import FastKAN, FastKANLayer, calls_recorded

    layers = [(n or type(model).__name__, m) for n, m in model.named_modules() if isinstance(m, FastKANLayer)]
    if not layers:
        raise ValueError(f"{type(model).__name__} holds no FastKANLayer")
    if not (x.requires_grad or any(p.requires_grad for p in model.parameters())):
        x = x.detach().requires_grad_(x.is_floating_point())
    with torch.enable_grad(), calls_recorded() as seen:
        out = model(x)
    found = []
    for name, layer in layers:
        if layer in seen:
            inp, y, small_node = seen[layer]
            names = _nodes(y, {inp.grad_fn})
        else:
            # A FastKAN whose every layer took the small node ran them as one node, without the layers' calls.
            inp, names, small_node = x, _nodes(out, set()), True
            stack = next((n for n, m in model.named_modules() if isinstance(m, FastKAN) and layer in m.layers), "")
        path = _BY_NODE.get(next((n for n in names if n in _BY_NODE), ""), PATHS[-1])
        why = _why(layer, inp, path, small_node)
        found.append((name, path, why if layer in seen else f"with every layer of {stack or 'the model'}: {why}"))
    return found


def explain(model: nn.Module, x: Tensor) -> list[str]:
    """One line per FastKAN layer of ``model`` (or ``model`` itself): '<name>: <path> (<module>): <why>'.

    What a call of ``model`` on ``x`` takes, with gradients recorded (``paths``).
    """
    return [f"{name}: {path.name} ({path.module}): {why}" for name, path, why in paths(model, x)]
