"""The Triton spline kernels, run on the CPU by Triton's interpreter (TRITON_INTERPRET=1).

The interpreter has to be chosen before Triton is imported, so the checks
run in a subprocess; they print what they measured and the test asserts.
"""

import json
import os
import subprocess
import sys

import pytest
import torch

pytest.importorskip("triton", reason="Triton is not installed (pip install triton)")

CHECK = r"""
import contextlib, json, torch, fastkan
from fastkan.paths.triton_spline import available, triton_spline

@contextlib.contextmanager
def no_host_reads():
    # On CUDA each of these is a device-to-host copy and a sync; the kernels' path must call none.
    names = ["item", "tolist", "__float__", "__int__", "__bool__", "cpu", "numpy"]
    saved = {n: getattr(torch.Tensor, n) for n in names}
    def refuse(name):
        def f(*a, **k):
            raise AssertionError(f"host read: Tensor.{name}")
        return f
    for n in names:
        setattr(torch.Tensor, n, refuse(n))
    try:
        yield
    finally:
        for n, f in saved.items():
            setattr(torch.Tensor, n, f)

out = []
for name in ["gaussian", "inverse-quadratic", "rswaf"]:
    for (n, i, o, g) in [(37, 5, 3, 8), (3, 40, 33, 9), (64, 16, 70, 4)]:
        torch.manual_seed(0)
        layer = fastkan.FastKANLayer(i, o, num_grids=g, basis=name, fused=False)
        u = (torch.randn(n, i) * 1.5).requires_grad_()
        w = layer.spline_linear.weight
        gy = torch.randn(n, o)
        ref = layer.spline(u)
        ref_gu, ref_gw = torch.autograd.grad(ref, [u, w], gy)
        with no_host_reads():
            got = triton_spline(u, layer.basis, w)
            gu, gw = torch.autograd.grad(got, [u, w], gy)
        err = lambda a, b: ((a - b).abs().max() / b.abs().max().clamp(min=1e-12)).item()
        out.append({"basis": name, "shape": [n, i, o, g], "available": available(u, layer.basis),
                    "value": err(got, ref), "grad_u": err(gu, ref_gu), "grad_w": err(gw, ref_gw)})
trained = fastkan.FastKANLayer(4, 2, train_grid=True)
other = fastkan.FastKANLayer(4, 2, basis="hat")
out.append({"trainable_grid": available(torch.zeros(1, 4), trained.basis),
            "hat": available(torch.zeros(1, 4), other.basis)})
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def results():
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    proc = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_values_and_gradients_match_the_reference(results):
    checked = [r for r in results if "basis" in r]
    assert {r["basis"] for r in checked} == {"gaussian", "inverse-quadratic", "rswaf"}
    for r in checked:
        assert r["available"], r
        assert r["value"] < 1e-5 and r["grad_u"] < 1e-5 and r["grad_w"] < 1e-5, r


def test_falls_back_where_it_cannot_run(results):
    assert results[-1] == {"trainable_grid": False, "hat": False}


def test_cpu_tensors_never_take_the_triton_path_outside_the_interpreter():
    from fastkan import FastKANLayer
    from fastkan.paths.triton_spline import available

    layer = FastKANLayer(4, 2)
    if os.environ.get("TRITON_INTERPRET") != "1":
        assert not available(torch.zeros(1, 4), layer.basis)
    assert layer(torch.randn(3, 4)).shape == (3, 2)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
@pytest.mark.parametrize("basis", ["gaussian", "inverse-quadratic", "rswaf"])
def test_cuda_layer_takes_the_triton_path_and_matches_the_reference(basis):
    from fastkan import FastKANLayer
    from fastkan.paths.triton_spline import available

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.manual_seed(0)
    layer = FastKANLayer(300, 70, basis=basis, device="cuda")
    x = torch.randn(129, 300, device="cuda", requires_grad=True)
    assert available(x, layer.basis)
    y = layer(x)
    grads = torch.autograd.grad(y.square().sum(), [x, *layer.parameters()])
    layer.fused = False
    y_ref = layer(x)
    grads_ref = torch.autograd.grad(y_ref.square().sum(), [x, *layer.parameters()])
    torch.testing.assert_close(y, y_ref, rtol=1e-4, atol=1e-4)
    for a, b in zip(grads, grads_ref):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-3)


def test_cuda_peak_memory_resets_then_reads_the_peak_around_the_pass(monkeypatch):
    """perf.measure.cuda_peak_bytes with the CUDA calls substituted: sync, reset, run, sync, read."""
    from perf.measure import memory as measure

    calls = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: calls.append("sync"))
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", lambda device=None: calls.append("reset"))
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda device=None: calls.append("read") or 1234)
    assert measure.cuda_peak_bytes(lambda: calls.append("run"), torch.device("cuda")) == 1234
    assert calls == ["sync", "reset", "run", "sync", "read"]
