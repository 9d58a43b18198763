"""A fixed workload timed before every round of every case: the machine's own speed.

A shared machine runs 10-40% slower for seconds to minutes at a time, so
two runs of unchanged code differ by more than any one run's rounds show.
The probe is plain torch (a matrix product and an ``exp``, the work a KAN
layer does) and none of this project's code, so it changes only when the
machine does. ``perf.compare`` divides each round by the probe timed just
before it to tell the machine's drift from the code's change.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

#: Bump when the workload below changes: runs with different versions are not probe-corrected.
VERSION = 1


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
