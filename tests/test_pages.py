"""fastkan.pages: large weight gradients on 2 MiB pages, the same values as anywhere else."""

import mmap

import pytest
import torch

import fastkan.fused as fused
import fastkan.pages as pages
from fastkan import FastKANLayer

MIB = 1 << 20
linux_only = pytest.mark.skipif(pages._ADVISE is None, reason="madvise(MADV_HUGEPAGE) exists on Linux only")


def _thp_setting() -> str:
    try:
        text = open("/sys/kernel/mm/transparent_hugepage/enabled").read()
    except OSError:
        return "absent"
    return text[text.index("[") + 1 : text.index("]")]


def _anon_huge_bytes(t: torch.Tensor) -> int:
    """Bytes of the mapping holding ``t`` that the kernel backs with transparent huge pages."""
    address, inside = t.data_ptr(), False
    with open("/proc/self/smaps") as f:
        for line in f:
            head = line.split()[0]
            if "-" in head and not head.endswith(":"):
                start, end = (int(x, 16) for x in head.split("-"))
                inside = start <= address < end
            elif inside and head == "AnonHugePages:":
                return int(line.split()[1]) * 1024
    return 0


def test_small_tensors_are_ordinary_allocations():
    like = torch.empty(3, 5, dtype=torch.float64)
    t = pages.empty_like(like)
    assert t.shape == like.shape and t.dtype == like.dtype and t.is_contiguous()
    assert t.untyped_storage().resizable()  # torch's own allocator, not a mapping


@linux_only
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_large_tensors_start_on_a_huge_page_boundary(monkeypatch, dtype):
    monkeypatch.setattr(pages, "HUGE_PAGE_BYTES", 4 * MIB)
    like = torch.empty(513, 2048, dtype=dtype)  # just over 4 MiB in float32
    t = pages.empty_like(like)
    assert t.shape == like.shape and t.dtype == dtype and t.is_contiguous()
    assert not t.untyped_storage().resizable()
    assert t.data_ptr() % (2 * MIB) == 0
    t.fill_(3.0)  # writable, every element
    assert t.sum().item() == 3.0 * like.numel()


@linux_only
@pytest.mark.skipif(_thp_setting() not in ("madvise", "always"), reason="this kernel does not hand out huge pages")
def test_the_kernel_backs_large_tensors_with_huge_pages(monkeypatch):
    monkeypatch.setattr(pages, "HUGE_PAGE_BYTES", 4 * MIB)
    t = pages.empty_like(torch.empty(16 * MIB // 4))
    t.fill_(1.0)
    assert _anon_huge_bytes(t) >= 2 * MIB


@linux_only
def test_a_failed_mapping_falls_back_to_torch(monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError("no memory")

    monkeypatch.setattr(pages, "HUGE_PAGE_BYTES", 1)
    monkeypatch.setattr(mmap, "mmap", refuse)
    t = pages.empty_like(torch.empty(4, 4))
    assert t.shape == (4, 4) and t.untyped_storage().resizable()


@linux_only
@pytest.mark.parametrize("keep", [True, False], ids=["kept-basis", "rebuilt-basis"])
@pytest.mark.parametrize("input_grad", [True, False])
def test_fused_weight_gradient_lands_in_grad_without_a_copy(monkeypatch, keep, input_grad):
    monkeypatch.setattr(fused, "PLAIN_ELEMENTS", 0)
    monkeypatch.setattr(fused, "KEEP_BASIS_BYTES", 1 << 40 if keep else 0)
    torch.manual_seed(0)
    layer = FastKANLayer(64, 40, layernorm_affine=input_grad)
    x = torch.randn(30, 64)
    weight = layer.spline_linear.weight  # (40, 512) float32: 80 KiB
    grads = []
    for limit in (1 << 60, 64 * 1024):
        monkeypatch.setattr(pages, "HUGE_PAGE_BYTES", limit)
        weight.grad = None
        (layer(x) * torch.arange(1.0, 41.0)).sum().backward()
        grads.append(weight.grad)
    ordinary, huge = grads
    assert ordinary.untyped_storage().resizable()
    assert not huge.untyped_storage().resizable() and huge.data_ptr() % (2 * MIB) == 0, \
        "the gradient was copied out of the huge-page tensor"
    torch.testing.assert_close(huge, ordinary, rtol=1e-6, atol=1e-7)


def test_not_linux_means_ordinary_allocations(monkeypatch):
    monkeypatch.setattr(pages, "_ADVISE", None)
    monkeypatch.setattr(pages, "HUGE_PAGE_BYTES", 1)
    assert pages.empty_like(torch.empty(100, 100)).untyped_storage().resizable()
