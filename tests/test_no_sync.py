"""The layer never reads a device tensor back to the host on its forward or backward path.

On CUDA such a read (``.item()``, ``float()``) is a copy and a synchronisation
per layer per step. Tensors on the ``meta`` device have no data, so any read
raises: a whole forward and backward on meta proves the fused path (the
one CUDA takes for bases without a Triton kernel, and for trainable grids)
reads nothing. The Triton path is checked the same way in tests/test_triton.py.
"""

import pytest
import torch

from fastkan import BASES, FastKAN


def test_a_host_read_of_a_meta_tensor_raises():
    with pytest.raises(RuntimeError):
        float(torch.ones((), device="meta"))


@pytest.mark.parametrize("basis", sorted(BASES))
@pytest.mark.parametrize("trainable", [False, True], ids=["frozen-grid", "trainable-grid"])
@pytest.mark.parametrize("outputs", [1, 3])
def test_fused_path_runs_without_host_reads(basis, trainable, outputs):
    model = FastKAN([6, 5, outputs], basis=basis, train_grid=trainable, train_denominator=trainable, device="meta")
    x = torch.empty(4, 6, device="meta", requires_grad=True)
    y = model(x)
    y.sum().backward()
    assert y.shape == (4, outputs) and x.grad.shape == x.shape
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
