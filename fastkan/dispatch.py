"""Which evaluation path a spline call takes, decided in one place (fastkan.explain.PATHS lists them).

The layer (fastkan/layer.py) asks ``takes_plain`` whether a call is small enough for the plain
composition or ``fastkan.paths.small``'s node, and ``spline`` for every other call: Triton's kernels on
CUDA, the local path for compact bases on large grids, the compiled one-output reductions, row
blocks, else the fused blocks. What each PyTorch mode changes is decided in fastkan/modes.py; why
each path exists, and its thresholds: docs/design/paths.md.
"""

from __future__ import annotations

import contextlib

import torch
from torch import Tensor

from . import modes
from .paths import common, compiled, fused, local, rows


def takes_plain(u: Tensor, basis, weight: Tensor, n: int | None = None) -> bool:
    """Whether a call on u (N, in), or on ``n`` inputs like u, is small enough for the plain
    composition (or the small node) to be the faster way."""
    if u.is_cuda:
        return False
    values = (u.shape[0] if n is None else n) * weight.shape[1]
    if values > fused.PLAIN_ELEMENTS:
        return False
    # The checks below cost a few percent of a small call's time: only sizes between the two limits pay them.
    return values <= compiled.PLAIN_ELEMENTS or not (common.is_one_output(basis, u, weight) and compiled.available(u))


def spline(u: Tensor, basis, weight: Tensor, keep_basis_bytes: int | None = None) -> Tensor:
    """``basis(u).flatten(-2) @ weight.T`` for u (N, in), weight (out, in * G) -> (N, out), by the first
    fast path that applies."""
    if weight.is_leaf and weight.requires_grad and torch.is_grad_enabled():
        # A view is a node the engine can say it will run or not: a second derivative's backward
        # then builds the weight's gradient only where it is wanted (fastkan.paths.higher.wanted).
        weight = weight.view_as(weight)
    if u.is_cuda and u.shape[0] > 0:
        from .paths import triton_spline  # imports Triton: only where a GPU asks for it

        if triton_spline.available(u, basis):
            return triton_spline.triton_spline(u, basis, weight)
    geometry = local.plan(u, basis)
    if geometry is not None:
        return local.local_spline(u, basis, weight, geometry)
    if u.shape[0] > 0:
        keep = fused.KEEP_BASIS_BYTES if keep_basis_bytes is None else keep_basis_bytes
        if common.is_one_output(basis, u, weight) and compiled.available(u):
            y = compiled.one_output(u, basis, weight)
            if y is not None:
                return y
        if rows.takes(u, basis, weight, keep):  # never a one-output layer
            return rows.spline(u, basis, weight)
    return fused.fused_spline(u, basis, weight, keep_basis_bytes)


def operator(u: Tensor, basis, weight: Tensor) -> Tensor | None:
    """Inside the user's ``torch.compile``, where the layer is otherwise the plain composition: the
    operator that keeps our compiled one-output kernels in the model, or None where none applies."""
    if u.shape[0] * weight.shape[1] <= compiled.PLAIN_ELEMENTS:
        # The plain composition, compiled with the model, costs less there. Asked first, here: a
        # call into compiled's functions would leave Dynamo guards (fastkan/layer.py, _as_function)
        # that every compiled call of a small model checks.
        return None
    if not compiled.operator_applies(u, basis, weight) or modes.plain_reason(u) != modes.COMPILING:
        return None
    if modes.transforms_active():  # the operator has no rule for torch.func's transforms
        return None
    grid, h = basis.tensors()
    return compiled.one_output_op(u, grid, h, weight, basis.name)


# What makes every call that a path can serve take it: the thresholds of docs/design/paths.md, set
# so that small shapes reach each path (tests/test_layer.py runs every test once per entry).
FORCE = {
    "rebuilt": {
        (fused, "KEEP_BASIS_BYTES"): 0,
        (fused, "PLAIN_ELEMENTS"): 0,
        (fused, "WHOLE_BACKWARD_BYTES"): 0,
        (compiled, "ENABLED"): False,
    },
    "kept": {(fused, "KEEP_BASIS_BYTES"): 1 << 40, (fused, "PLAIN_ELEMENTS"): 0, (compiled, "ENABLED"): False},
    "compiled": {(fused, "PLAIN_ELEMENTS"): 0, (compiled, "ENABLED"): True},
    "small": {(fused, "PLAIN_ELEMENTS"): 1 << 40, (compiled, "ENABLED"): False},
    # fastkan.paths.rows with one row a block: every call with more rows than outputs
    "rows": {
        (fused, "KEEP_BASIS_BYTES"): 0,
        (fused, "PLAIN_ELEMENTS"): 0,
        (compiled, "ENABLED"): False,
        (rows, "BLOCK_ELEMENTS"): 1,
        (rows, "BATCH_PER_COLUMN"): 0.0,
    },
    # fastkan.paths.local for every call of a compact basis, whatever its grid, with either product
    "scattered": {
        (local, "LOCAL_RATIO"): 0,
        (local, "LOCAL_GRID"): 0,
        **{(local, name): 1 << 30 for name in ("SPARSE_RATIO", "SPARSE_OUTPUTS", "SPARSE_ROWS")},
    },
    "sparse": {
        (local, "LOCAL_RATIO"): 0,
        (local, "LOCAL_GRID"): 0,
        **{(local, name): 0 for name in ("SPARSE_RATIO", "SPARSE_OUTPUTS", "SPARSE_ROWS")},
    },
}
#: Paths that only compact bases take: tests/test_local.py forces them, the layer-wide tests the others.
COMPACT_ONLY = ("scattered", "sparse")


@contextlib.contextmanager
def forcing(path: str):
    """Within the block, every call that ``path`` (a key of ``FORCE``) can serve takes it."""
    if path not in FORCE:
        raise ValueError(f"unknown path {path!r}; valid: {', '.join(FORCE)}")
    saved = {(module, name): getattr(module, name) for module, name in FORCE[path]}
    try:
        for (module, name), value in FORCE[path].items():
            setattr(module, name, value)
        yield
    finally:
        for (module, name), value in saved.items():
            setattr(module, name, value)
