"""The spline path on CUDA as Triton kernels: the basis is built inside the matrix products.

``basis(u).flatten(-2) @ weight.T`` without the (N, in, G) basis tensor ever
reaching GPU memory, forward and backward (weight and input gradients; a
trainable grid or width falls back to ``fastkan.paths.fused``). Supported bases are
those in ``TRITON_BASES``. Where Triton or CUDA is missing, ``available``
says no and the layer uses ``fastkan.paths.fused``. With ``TRITON_INTERPRET=1`` the
kernels run on CPU tensors, which is how the tests check them.
"""

from __future__ import annotations

import os

import torch
from torch import Tensor

try:
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - depends on the environment
    triton = None

from ..bases import EXP_CAP as _EXP_CAP_VALUE
from . import higher

#: basis name -> kernel code of its formula
TRITON_BASES = {"gaussian": 0, "inverse-quadratic": 1, "rswaf": 2}
#: input dtypes the layer can hand to the kernels, and the float32 product precisions torch may ask for
DTYPES = ("float32", "bfloat16", "float16")
PRECISIONS = ("ieee", "tf32")


def available(u: Tensor, basis) -> bool:
    """Whether the Triton path can evaluate this basis for this input (CUDA, or the interpreter)."""
    if triton is None or basis.name not in TRITON_BASES:
        return False
    if any(t.requires_grad for t in basis.tensors()):
        return False
    return u.is_cuda or os.environ.get("TRITON_INTERPRET") == "1"


def _precision(u: Tensor) -> str:
    # Follow torch's own choice for float32 products (TF32 only when allowed).
    return "tf32" if u.is_cuda and torch.backends.cuda.matmul.allow_tf32 else "ieee"


if triton is not None:
    # A @triton.jit function may read a module-level value only when it is a
    # tl.constexpr (Triton >= 3.0); a plain float fails to compile on a GPU.
    # Keeps exp out of denormals, as in the torch bases.
    _EXP_CAP = tl.constexpr(_EXP_CAP_VALUE)

    # Block shapes tried per kernel: small tiles for narrow layers (one output),
    # larger ones for wide layers. tl.dot needs every dimension >= 16.
    CONFIGS = [
        triton.Config({"BLOCK_N": 32, "BLOCK_O": 32, "BLOCK_K": 32}, num_warps=4),
        triton.Config({"BLOCK_N": 64, "BLOCK_O": 16, "BLOCK_K": 64}, num_warps=4),
        triton.Config({"BLOCK_N": 64, "BLOCK_O": 64, "BLOCK_K": 32}, num_warps=8),
    ]
    _KEY = ["N", "IN", "OUTD", "G"]
    # The interpreter cannot time a trial (no driver); with one config the autotuner times nothing.
    _TUNED = CONFIGS[:1] if os.environ.get("TRITON_INTERPRET") == "1" else CONFIGS

    @triton.jit
    def _phi(d, KIND: tl.constexpr):
        """Basis value and its derivative in d."""
        if KIND == 0:
            p = tl.exp(-tl.minimum(d * d, _EXP_CAP))
            return p, -2.0 * d * p
        elif KIND == 1:
            p = 1.0 / (1.0 + d * d)
            return p, -2.0 * d * p * p
        else:
            e = tl.exp(-2.0 * tl.abs(d))
            t = (1.0 - e) / (1.0 + e)
            t = tl.where(d < 0, -t, t)
            p = 1.0 - t * t
            return p, -2.0 * t * p

    @triton.jit
    def _basis_tile(U, C, offs_n, offs_k, N, IN, G: tl.constexpr, inv_h, KIND: tl.constexpr):
        k_ok = offs_k < IN * G
        i = offs_k // G
        u = tl.load(U + offs_n[:, None] * IN + i[None, :], mask=(offs_n[:, None] < N) & k_ok[None, :], other=0.0)
        c = tl.load(C + offs_k % G, mask=k_ok, other=0.0)
        d = (u.to(tl.float32) - c.to(tl.float32)[None, :]) * inv_h
        p, dp = _phi(d, KIND)
        valid = (offs_n[:, None] < N) & k_ok[None, :]
        return tl.where(valid, p, 0.0), tl.where(valid, dp, 0.0)

    @triton.jit
    def _tile(P, rows, cols, n_rows, n_cols, row_stride, col_stride):
        """P[rows, cols] as float32, zero outside (n_rows, n_cols)."""
        mask = (rows[:, None] < n_rows) & (cols[None, :] < n_cols)
        return tl.load(P + rows[:, None] * row_stride + cols[None, :] * col_stride, mask=mask, other=0.0).to(tl.float32)

    @triton.jit
    def _store_tile(P, rows, cols, n_rows, n_cols, row_stride, value):
        """P[rows, cols] = value (row-major, unit column stride), inside (n_rows, n_cols) only."""
        mask = (rows[:, None] < n_rows) & (cols[None, :] < n_cols)
        tl.store(P + rows[:, None] * row_stride + cols[None, :], value.to(P.dtype.element_ty), mask=mask)

    @triton.autotune(configs=_TUNED, key=_KEY)
    @triton.jit
    def _forward(
        U,
        C,
        W,
        OUT,
        N,
        IN,
        OUTD,
        G: tl.constexpr,
        INV_H,
        KIND: tl.constexpr,
        PRECISION: tl.constexpr,
        BLOCK_N: tl.constexpr,
        BLOCK_O: tl.constexpr,
        BLOCK_K: tl.constexpr,
    ):
        inv_h = tl.load(INV_H).to(tl.float32)
        offs_n = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
        offs_o = tl.program_id(1) * BLOCK_O + tl.arange(0, BLOCK_O)
        acc = tl.zeros((BLOCK_N, BLOCK_O), dtype=tl.float32)
        K = IN * G
        for k0 in range(0, K, BLOCK_K):
            offs_k = k0 + tl.arange(0, BLOCK_K)
            p, _ = _basis_tile(U, C, offs_n, offs_k, N, IN, G, inv_h, KIND)
            w = _tile(W, offs_k, offs_o, K, OUTD, 1, K)  # weight (OUTD, K) read as (K, OUTD)
            acc += tl.dot(p, w, input_precision=PRECISION)
        _store_tile(OUT, offs_n, offs_o, N, OUTD, OUTD, acc)

    @triton.autotune(configs=_TUNED, key=_KEY)
    @triton.jit
    def _grad_weight(
        U,
        C,
        GO,
        GW,
        N,
        IN,
        OUTD,
        G: tl.constexpr,
        INV_H,
        KIND: tl.constexpr,
        PRECISION: tl.constexpr,
        BLOCK_N: tl.constexpr,
        BLOCK_O: tl.constexpr,
        BLOCK_K: tl.constexpr,
    ):
        inv_h = tl.load(INV_H).to(tl.float32)
        offs_o = tl.program_id(0) * BLOCK_O + tl.arange(0, BLOCK_O)
        offs_k = tl.program_id(1) * BLOCK_K + tl.arange(0, BLOCK_K)
        acc = tl.zeros((BLOCK_O, BLOCK_K), dtype=tl.float32)
        for n0 in range(0, N, BLOCK_N):
            offs_n = n0 + tl.arange(0, BLOCK_N)
            p, _ = _basis_tile(U, C, offs_n, offs_k, N, IN, G, inv_h, KIND)
            go = _tile(GO, offs_n, offs_o, N, OUTD, OUTD, 1)
            acc += tl.dot(tl.trans(go), p, input_precision=PRECISION)
        K = IN * G
        _store_tile(GW, offs_o, offs_k, OUTD, K, K, acc)

    # Tiles add into GU atomically: every trial of the autotuner starts from zeros.
    @triton.autotune(configs=_TUNED, key=_KEY, reset_to_zero=["GU"])
    @triton.jit
    def _grad_input(
        U,
        C,
        GO,
        W,
        GU,
        N,
        IN,
        OUTD,
        G: tl.constexpr,
        INV_H,
        KIND: tl.constexpr,
        PRECISION: tl.constexpr,
        BLOCK_N: tl.constexpr,
        BLOCK_O: tl.constexpr,
        BLOCK_K: tl.constexpr,
    ):
        inv_h = tl.load(INV_H).to(tl.float32)
        offs_n = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
        offs_k = tl.program_id(1) * BLOCK_K + tl.arange(0, BLOCK_K)
        K = IN * G
        grad_phi = tl.zeros((BLOCK_N, BLOCK_K), dtype=tl.float32)
        for o0 in range(0, OUTD, BLOCK_O):
            offs_o = o0 + tl.arange(0, BLOCK_O)
            go = _tile(GO, offs_n, offs_o, N, OUTD, OUTD, 1)
            w = _tile(W, offs_o, offs_k, OUTD, K, K, 1)
            grad_phi += tl.dot(go, w, input_precision=PRECISION)
        _, dp = _basis_tile(U, C, offs_n, offs_k, N, IN, G, inv_h, KIND)
        # Several columns of a tile belong to one input: sum them into it atomically.
        tl.atomic_add(
            GU + offs_n[:, None] * IN + (offs_k // G)[None, :],
            grad_phi * dp * inv_h,
            mask=(offs_n[:, None] < N) & (offs_k[None, :] < K),
        )


def _grid(rows: int, cols: int, row_block: str, col_block: str):
    return lambda meta: (triton.cdiv(rows, meta[row_block]), triton.cdiv(cols, meta[col_block]))


class _TritonSpline(torch.autograd.Function):
    @staticmethod
    def forward(ctx, u: Tensor, grid: Tensor, weight: Tensor, inv_h: Tensor, kind: int, fn) -> Tensor:
        u, grid, weight = u.contiguous(), grid.contiguous(), weight.contiguous()
        n, in_dim = u.shape
        out_dim, g = weight.shape[0], grid.numel()
        out = torch.empty(n, out_dim, device=u.device, dtype=u.dtype)
        _forward[_grid(n, out_dim, "BLOCK_N", "BLOCK_O")](
            u, grid, weight, out, n, in_dim, out_dim, g, inv_h, kind, _precision(u)
        )
        ctx.save_for_backward(u, grid, weight, inv_h)
        ctx.kind, ctx.fn = kind, fn
        return out

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        u, grid, weight, inv_h = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph=True: a gradient that can be differentiated again
            needs = higher.wanted(ctx)
            grad_u, grad_grid, _, grad_w = higher.spline_double_backward(
                (needs[0], needs[1], False, needs[2]), grad_out, u, grid, 1.0 / inv_h, weight, ctx.fn
            )
            return grad_u, grad_grid, grad_w, None, None, None
        grad_out = grad_out.contiguous()
        n, in_dim = u.shape
        out_dim, g = weight.shape[0], grid.numel()
        grad_u = grad_w = None
        if ctx.needs_input_grad[2]:
            grad_w = torch.empty_like(weight)
            _grad_weight[_grid(out_dim, in_dim * g, "BLOCK_O", "BLOCK_K")](
                u, grid, grad_out, grad_w, n, in_dim, out_dim, g, inv_h, ctx.kind, _precision(u)
            )
        if ctx.needs_input_grad[0]:
            grad_u = torch.zeros(n, in_dim, device=u.device, dtype=torch.float32)
            _grad_input[_grid(n, in_dim * g, "BLOCK_N", "BLOCK_K")](
                u, grid, grad_out, weight, grad_u, n, in_dim, out_dim, g, inv_h, ctx.kind, _precision(u)
            )
            grad_u = grad_u.to(u.dtype)
        return grad_u, None, grad_w, None, None, None


def triton_spline(u: Tensor, basis, weight: Tensor) -> Tensor:
    """``basis(u).flatten(-2) @ weight.T`` for u (N, in), weight (out, in*G) -> (N, out), in Triton."""
    if not available(u, basis):
        raise RuntimeError(f"the Triton spline path cannot run basis {basis.name!r} here")
    # The width stays on the device: the kernels load it, so no call reads it back to the host (no sync).
    inv_h = torch.reciprocal(basis.tensors()[1].detach().to(device=u.device, dtype=torch.float32)).reshape(1)
    return _TritonSpline.apply(u, basis.grid, weight, inv_h, TRITON_BASES[basis.name], basis.fn)
