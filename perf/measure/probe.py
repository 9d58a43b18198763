"""Fixed workloads timed before every round of every case: the machine's own speed.

A shared machine runs 10-40% slower for seconds to minutes at a time, so
two runs of unchanged code differ by more than any one run's rounds show.
The probes are plain torch and none of this project's code, so they change
only when the machine does. ``probe`` is arithmetic (a matrix product and an
``exp``, the work a large KAN layer does); ``small_probe`` is a few small
operations with their autograd (the per-call costs a small network pays):
a machine does not slow both alike (docs/results/repeatability.md), so
``perf.compare`` divides each round by each probe timed just before it and
counts a change only where both agree it is the code's.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

#: Bump when a workload below changes: runs with different versions are not probe-corrected.
VERSION = 1
SMALL_VERSION = 1


def probe(device: torch.device) -> Callable[[], None]:
    """The probe for ``device``: about 0.2 ms of work on one CPU thread here, synchronised on CUDA."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 256, generator=g).to(device)
    w = torch.randn(256, 256, generator=g).div_(256**0.5).to(device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def run() -> None:
        torch.exp(torch.mm(x, w).clamp_(max=10.0))
        sync()

    return run


def small_probe(device: torch.device) -> Callable[[], None]:
    """The small probe for ``device``: a [4, 16, 1] network's forward and backward on 32 rows, about
    0.1 ms on one CPU thread here, bound by per-operation costs rather than arithmetic."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(32, 4, generator=g).to(device)
    w1 = torch.randn(16, 4, generator=g).to(device).requires_grad_()
    w2 = torch.randn(1, 16, generator=g).to(device).requires_grad_()
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def run() -> None:
        with torch.enable_grad():
            y = torch.nn.functional.linear(torch.nn.functional.silu(torch.nn.functional.linear(x, w1)), w2)
            torch.autograd.grad(y.square().mean(), (w1, w2))
        sync()

    return run
