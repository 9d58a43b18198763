"""The speed cases of the matrix: a case per model, configuration, device, pass, dtype and mode, and its setup.

A case id reads like a sentence: ``model/config/device/pass``, with
``/dtype`` and ``/mode`` appended when they are not the defaults
(float32, eager), e.g. ``fastkan-gaussian/seed-300k/cpu/forward``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from perf.matrix.configs import CONFIGS
from perf.matrix.models import models


@dataclass(frozen=True)
class Case:
    model: str
    config: str
    device: str
    pass_: str
    dtype: str = "float32"
    mode: str = "eager"

    @property
    def id(self) -> str:
        parts = [self.model, self.config, self.device, self.pass_]
        if self.dtype != "float32":
            parts.append(self.dtype)
        if self.mode != "eager":
            parts.append(self.mode)
        return "/".join(parts)


def target(x: torch.Tensor, out_dim: int) -> torch.Tensor:
    """The seed's synthetic task ``exp(sin(pi * x0) + x1**2)``, repeated over the outputs."""
    x1 = x[:, 1] if x.shape[1] > 1 else x[:, 0]
    y = torch.exp(torch.sin(torch.pi * x[:, 0]) + x1**2)
    return y[:, None].expand(-1, out_dim)


class Setup:
    """Model, data and optimizer of one case, and the three passes over them.

    The same object serves the timed runs and the untimed memory pass, so
    both measure the same thing.
    """

    def __init__(self, case: Case, seed: int = 0):
        self.case = case
        cfg = CONFIGS[case.config]
        self.device = torch.device(case.device)
        self.dtype = getattr(torch, case.dtype)
        torch.manual_seed(seed)
        spec = models()[case.model]
        model = spec.move(spec.build(cfg.shape), self.device, self.dtype)
        self.eager = model
        self.x = torch.rand(cfg.batch, cfg.layers[0], device=self.device, dtype=self.dtype) * 2 - 1
        self.y = target(self.x, cfg.layers[-1])
        self.optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-3)
        self.compile_seconds = None
        self.model = model
        if case.mode == "compile":
            self.model = torch.compile(model)
            start = time.perf_counter()
            self.loss().backward()
            self.sync()
            self.compile_seconds = time.perf_counter() - start
            self.optimizer.zero_grad(set_to_none=True)

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def loss(self) -> torch.Tensor:
        return torch.nn.functional.mse_loss(self.model(self.x), self.y)

    # Each pass is (setup, run): setup builds the untimed state, run is timed.
    # run ends with a device sync, so GPU timings cover the kernels, not their launch.
    def forward_setup(self):
        self.optimizer.zero_grad(set_to_none=True)
        self.sync()
        return (), {}

    def forward(self):
        out = self.model(self.x)
        self.sync()
        return out

    def backward_setup(self):
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.loss()  # a fresh graph every round, as in the seed's method
        self.sync()
        return (loss,), {}

    def backward(self, loss):
        loss.backward()
        self.sync()

    def train_step_setup(self):
        self.sync()
        return (), {}

    def train_step(self):
        self.optimizer.zero_grad(set_to_none=True)
        self.loss().backward()
        self.optimizer.step()
        self.sync()

    def grad2_setup(self):
        self.sync()
        return (), {}

    def grad2(self):
        """A training step on loss = MSE + mean(|d out / d x|^2): backward differentiates a gradient."""
        self.optimizer.zero_grad(set_to_none=True)
        x = self.x.detach().requires_grad_()
        out = self.model(x)
        (gx,) = torch.autograd.grad(out.sum(), x, create_graph=True)
        (torch.nn.functional.mse_loss(out, self.y) + gx.pow(2).mean()).backward()
        self.optimizer.step()
        self.sync()

    def pass_fns(self):
        """(setup, run) of this case's pass."""
        name = self.case.pass_.replace("-", "_")
        return getattr(self, f"{name}_setup"), getattr(self, name)

    def num_params(self) -> tuple[int, int]:
        params = list(self.eager.parameters())
        return sum(p.numel() for p in params), sum(p.numel() for p in params if p.requires_grad)
