"""Large CPU tensors on 2 MiB pages.

glibc serves every block above 32 MiB (its largest mmap threshold) straight
from the kernel, so a weight gradient that large, freed by ``zero_grad`` and
written again by the next backward, touches fresh 4 KiB pages every step,
each first touch a page fault: on this project's CPU, a backward of
``kanbench-10m``'s first layer wrote its 36 MB weight gradient in 35.9 ms
where a reused buffer took 21.1 ms, and 23.5 ms on 2 MiB pages. PyTorch's
``THP_MEM_ALLOC_ENABLE=1`` asks for such pages for every tensor of the
process; ``empty_like`` asks for them for the one tensor it makes, where the
kernel allows it (``madvise`` or ``always`` in
``/sys/kernel/mm/transparent_hugepage/enabled``), and otherwise behaves
like ``torch.empty_like``.
"""

from __future__ import annotations

import mmap
import sys

import torch
from torch import Tensor

# At or above this many bytes a tensor goes on 2 MiB pages; glibc keeps smaller blocks on its heap.
HUGE_PAGE_BYTES = 32 << 20

_PAGE = 2 << 20
_is_compiling = getattr(torch.compiler, "is_compiling", lambda: False)  # new in torch 2.3
_ADVISE = getattr(mmap, "MADV_HUGEPAGE", None) if sys.platform.startswith("linux") else None


def empty_like(t: Tensor) -> Tensor:
    """An uninitialised contiguous tensor shaped like ``t``, on 2 MiB pages where large enough and allowed."""
    nbytes = t.numel() * t.element_size()
    if _ADVISE is None or nbytes < HUGE_PAGE_BYTES or t.device.type != "cpu" or _is_compiling():
        return torch.empty(t.shape, dtype=t.dtype, device=t.device)
    try:
        # Private and anonymous: the kernel backs shared mappings by shmem, whose huge pages are a separate setting.
        block = mmap.mmap(-1, nbytes + _PAGE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        block.madvise(_ADVISE)
    except (OSError, ValueError):
        return torch.empty(t.shape, dtype=t.dtype, device=t.device)
    # The kernel maps a huge page only where a whole aligned 2 MiB lies inside the mapping.
    address = torch.frombuffer(block, dtype=torch.uint8, count=1).data_ptr()
    offset = -address % _PAGE
    return torch.frombuffer(block, dtype=t.dtype, count=t.numel(), offset=offset).view(t.shape)
