"""A small call's whole layer (LayerNorm, spline path and SiLU base branch) as one autograd node (CPU).

For calls of at most ``fastkan.paths.fused.PLAIN_ELEMENTS`` basis values, the fixed
costs of each operation decide the time: the plain composition records some
ten autograd nodes per layer (LayerNorm, the SiLU, the base product, the
subtraction, the basis' steps, the spline product), and each costs backward a
dispatch and a pass. Here forward runs torch's LayerNorm kernel, builds the
(N, in, G) basis in the fused path's few passes and both products, and
backward is one function: the registered derivative, then torch's LayerNorm
backward kernel. A FastKAN whose every layer is covered runs as one node for all
its layers (``small_stack``): each node costs forward and backward a fixed
dispatch, and on ``tiny`` (two layers) one node took 0.94x the step time of
one per layer (alternating rounds in one process, 1 thread).
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import Tensor

from .. import modes
from . import common, higher

_silu_backward = torch.ops.aten.silu_backward
_layer_norm_backward = torch.ops.aten.native_layer_norm_backward

try:  # torch >= 2.4 takes the device type; older versions have a function per device
    torch.is_autocast_enabled("cpu")
    _autocast = functools.partial(torch.is_autocast_enabled, "cpu")
except TypeError:
    _autocast = torch.is_autocast_cpu_enabled


def kind(x: Tensor, basis) -> str | None:
    """How ``small_layer`` evaluates a call, or None where it does not cover it: ``"neg_square"`` (a basis of
    ``-d**2`` with its derivative, float32/64) or ``"d"`` (a basis with a registered derivative), eager on
    the CPU without autocast, on a frozen grid and width."""
    grid, h = basis.tensors()
    # Under autocast the plain composition's products run in the lower precision, with the casts
    # recorded for backward; this node's products would not.
    if x.device.type != "cpu" or grid.requires_grad or h.requires_grad or modes.is_compiling() or _autocast():
        return None
    if common.neg_square_backward(basis, x, grid, h):
        return "neg_square"
    return "d" if basis.derivative is not None else None


def small_layer(
    x: Tensor, basis, kind: str, weight: Tensor, norm: tuple | None = None, base: tuple | None = None
) -> Tensor:
    """``basis(u).flatten(-2) @ weight.T + silu(x) @ base_weight.T + base_bias`` for x (N, in), weight
    (out, in*G) -> (N, out), where ``u = layer_norm(x)`` with ``norm = (ln_weight, ln_bias, eps)`` (either
    tensor may be None), else ``u = x``; ``base = (base_weight, base_bias)`` adds the base branch."""
    return small_stack(x, [(basis, kind, weight, norm, base)])


def small_stack(x: Tensor, layers: list) -> Tensor:
    """Layers of ``small_layer``'s arguments ``(basis, kind, weight, norm, base)``, each taking the one
    before's output, as ONE autograd node: x (N, in) -> (N, out of the last)."""
    meta, tensors = [], []
    for basis, kind, weight, norm, base in layers:
        ln_weight, ln_bias, eps = norm if norm is not None else (None, None, None)
        base_weight, base_bias = base if base is not None else (None, None)
        meta.append((basis, kind, eps))
        tensors += (ln_weight, ln_bias, weight, base_weight, base_bias)
    if torch.is_grad_enabled():
        return _SmallLayers.apply(x, tuple(meta), *tensors)
    for i, (basis, kind, eps) in enumerate(meta):  # no node to build, nothing to keep
        x = _evaluate(x, *tensors[_PER_LAYER * i : _PER_LAYER * (i + 1)], basis, kind, eps, False)[0]
    return x


_PER_LAYER = 5  # tensors per layer in _SmallLayers' arguments: ln_weight, ln_bias, weight, base_weight, base_bias
_SAVED_PER_LAYER = 11  # tensors per layer that _SmallLayers saves for backward


def _evaluate(x, ln_weight, ln_bias, weight, base_weight, base_bias, basis, kind, eps, need_u):
    """(output, what backward needs): where need_u, ``grad_d`` of a basis of ``-d**2`` is ``dphi/du``
    (one pass here saves two there) and ``d`` of the other bases is ``(u - grid) / h``; else both None."""
    mean = rstd = None
    if eps is None:
        u = x
    else:
        u, mean, rstd = torch.native_layer_norm(x, (x.shape[1],), ln_weight, ln_bias, eps)
    grid, h = basis.tensors()
    inv_h = 1.0 / float(h)  # a CPU scalar: reading it is free
    d = u[..., None] - grid  # (N, in, G)
    grad_d = None
    if kind == "neg_square":
        phi = basis.of_neg_square(
            torch.addcmul(common.zero(d.dtype), d, d, value=-basis.neg_square_scale * inv_h * inv_h)
        )
        if need_u:
            # d/du of k(-(u - c)**2 / h**2) is k'(phi) * (u - c) * -2 / h**2.
            grad_d = torch.addcmul(
                common.zero(d.dtype), d, basis.of_neg_square_derivative(phi), value=-2.0 * inv_h * inv_h
            )
        d = None
    else:
        phi = basis.fn(d.mul_(inv_h))
        d = d if need_u else None  # only the input gradient reads it
    n, in_dim, g = phi.shape
    p = phi.view(n, in_dim * g)  # not -1: an empty batch has no size to infer
    s = None
    if base_weight is None:
        y = p.mm(weight.t())
    else:
        s = F.silu(x)
        y = s.mm(base_weight.t()) if base_bias is None else torch.addmm(base_bias, s, base_weight.t())
        y.addmm_(p, weight.t())
    return y, (mean, rstd, s, d, grad_d, phi, inv_h)


def _needs(needs_input_grad: tuple, meta: tuple) -> list:
    """Per layer: (whether its input needs a gradient, and each of its five tensors)."""
    out, upstream = [], needs_input_grad[0]
    for i in range(len(meta)):
        own = needs_input_grad[2 + _PER_LAYER * i : 2 + _PER_LAYER * (i + 1)]
        out.append((upstream, *own))
        upstream = upstream or any(own)
    return out


class _SmallLayers(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, meta, *tensors):
        needs = _needs(ctx.needs_input_grad, meta)
        saved, layers = [], []
        for i, (basis, kind, eps) in enumerate(meta):
            need = needs[i]
            need_u = need[0] or (eps is not None and (need[1] or need[2]))
            ln_weight, ln_bias, weight, base_weight, base_bias = tensors[_PER_LAYER * i : _PER_LAYER * (i + 1)]
            y, (mean, rstd, s, d, grad_d, phi, inv_h) = _evaluate(
                x, ln_weight, ln_bias, weight, base_weight, base_bias, basis, kind, eps, need_u
            )
            saved += (x, ln_weight, ln_bias, weight, base_weight, mean, rstd, s, d, grad_d, phi)
            layers.append((basis, inv_h, eps, need_u, need))
            x = y
        ctx.layers, ctx.meta = layers, meta
        # The inputs themselves last: a second derivative differentiates their plain composition.
        ctx.save_for_backward(*saved, *tensors)
        return x

    @staticmethod
    def backward(ctx, grad_out):
        saved = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph=True: a gradient that can be differentiated again
            inputs = (saved[0], *saved[_SAVED_PER_LAYER * len(ctx.layers) :])
            needs = (ctx.needs_input_grad[0], *ctx.needs_input_grad[2:])
            grads = modes.differentiate(lambda x, *t: _plain(x, ctx.meta, t), inputs, needs, grad_out)
            return (grads[0], None, *grads[1:])
        grads, per = [], _SAVED_PER_LAYER
        for i in reversed(range(len(ctx.layers))):
            # The last layer first; each layer's input gradient is the output gradient of the one before.
            grads[:0] = _layer_backward(grad_out, saved[per * i : per * (i + 1)], *ctx.layers[i])
            grad_out = grads.pop(0)
        return (grad_out, None, *grads)


def _plain(x: Tensor, meta, tensors) -> Tensor:
    """The layers of ``meta`` as a composition of torch operations (and fastkan.paths.higher's), for a second
    derivative."""
    for i, (basis, _, eps) in enumerate(meta):
        ln_weight, ln_bias, weight, base_weight, base_bias = tensors[_PER_LAYER * i : _PER_LAYER * (i + 1)]
        u = x if eps is None else F.layer_norm(x, (x.shape[1],), ln_weight, ln_bias, eps)
        grid, h = basis.tensors()
        y = higher.differentiable_spline(u, grid, h, weight, basis.fn)
        if base_weight is not None:
            y = y + F.linear(F.silu(x), base_weight, base_bias)
        x = y
    return x


def _layer_backward(grad_out, saved, basis, inv_h, eps, need_u, needs):
    """One layer's (input, ln_weight, ln_bias, weight, base_weight, base_bias) gradients, None where not owed."""
    x, ln_weight, ln_bias, weight, base_weight, mean, rstd, s, d, grad_d, phi = saved
    need_x, need_lnw, need_lnb, need_w, need_bw, need_b = needs
    grad_x = grad_lnw = grad_lnb = grad_w = grad_bw = grad_b = None
    n, in_dim, g = phi.shape
    if need_w:
        grad_w = grad_out.t().mm(phi.view(n, in_dim * g))
    if need_u:
        q = grad_out.mm(weight).view_as(phi)
        if grad_d is not None:
            grad_u = q.mul_(grad_d).sum(-1)
        else:
            grad_u = q.mul_(basis.derivative(d, phi)).sum(-1).mul_(inv_h)
        if eps is None:
            grad_x = grad_u
        else:
            grad_x, grad_lnw, grad_lnb = _layer_norm_backward(
                grad_u, x, (in_dim,), mean, rstd, ln_weight, ln_bias, (need_x, need_lnw, need_lnb)
            )
    if need_x and base_weight is not None:
        grad_base = _silu_backward(grad_out.mm(base_weight), x)
        grad_x = grad_base if grad_x is None else grad_x.add_(grad_base)
    if need_bw:
        grad_bw = grad_out.t().mm(s)
    if need_b:
        grad_b = grad_out.sum(0)
    return [grad_x, grad_lnw, grad_lnb, grad_w, grad_bw, grad_b]
