"""Physics tasks: the exact solutions, inputs on the grid without LayerNorm, the second-derivative column."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from fastkan import FastKAN
from perf.matrix import models as registry
from perf.matrix.physics import PDES, PHYSICS_SETTINGS, burgers_exact, check_second_derivative, evaluate


def test_the_burgers_solution_starts_at_minus_sine_and_solves_the_equation():
    x = np.linspace(-1, 1, 41)
    np.testing.assert_allclose(burgers_exact(x, np.full_like(x, 1e-12)), -np.sin(np.pi * x), atol=1e-9)
    # Its residual u_t + u u_x - nu u_xx by central differences, away from the shock at x = 0.
    xs, t, e = np.array([-0.7, -0.4, 0.3, 0.6]), 0.3, 1e-4
    u = burgers_exact(xs, t)
    u_t = (burgers_exact(xs, t + e) - burgers_exact(xs, t - e)) / (2 * e)
    u_x = (burgers_exact(xs + e, t) - burgers_exact(xs - e, t)) / (2 * e)
    u_xx = (burgers_exact(xs + e, t) - 2 * u + burgers_exact(xs - e, t)) / e**2
    np.testing.assert_allclose(u_t + u * u_x - 0.01 / math.pi * u_xx, 0, atol=1e-4)
    assert np.all(np.abs(burgers_exact(np.array([-1.0, 1.0]), 0.5)) < 1e-12)  # the walls


@pytest.mark.parametrize("task", ["poisson-2d", "poisson-1d"])  # Burgers': by finite differences, above
def test_each_exact_solution_zeroes_its_residual_and_its_boundary(task):
    pde = PDES[task]
    x = pde.collocation(64, 0).double().requires_grad_()
    u = pde.exact(x)[:, None]
    torch.testing.assert_close(pde.residual(u, x), torch.zeros(64, dtype=torch.float64), atol=1e-9, rtol=0)
    xb, yb = pde.boundary(16, 0)
    torch.testing.assert_close(pde.exact(xb.double()).float(), yb, atol=1e-6, rtol=0)


def test_a_two_input_network_keeps_its_inputs_apart_on_a_domain():
    # LayerNorm over two inputs maps (0.1, 0.2) and (0.5, 0.9) both to about (-1, 1); a grid on the
    # domain keeps them apart.
    torch.manual_seed(0)
    x = torch.tensor([[0.1, 0.2], [0.5, 0.9]])
    with pytest.warns(UserWarning, match="LayerNorm over input_dim=2"):
        normed = FastKAN([2, 8, 1], use_base_update=False)
    a, b = normed(x)
    assert (a - b).abs() < 1e-3
    a, b = FastKAN([2, 8, 1], input_domain=(-1, 1), use_base_update=False)(x)
    assert (a - b).abs() > 1e-2
    with pytest.raises(ValueError, match="domain must be finite with lo < hi"):
        FastKAN([2, 8, 1], input_domain=(1, -1))


class _FrozenDerivative(torch.autograd.Function):
    """tanh whose backward uses a detached derivative: first derivatives right, second ones zero."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return torch.tanh(x)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * (1 - torch.tanh(x.detach()) ** 2)


class _Planted(nn.Module):
    def __init__(self, layers):
        super().__init__()
        self.a, self.b = nn.Linear(layers[0], layers[1]), nn.Linear(layers[1], layers[-1])

    def forward(self, x):
        return self.b(_FrozenDerivative.apply(self.a(x)))


def test_the_second_derivative_column_flags_a_planted_wrong_one():
    registry.add(registry.Model("planted-grad2", lambda s: _Planted(s.layers), "user"))
    try:
        wrong = check_second_derivative("planted-grad2")
        assert wrong["grad2_ok"] is False and wrong["grad2_rel_err"] > 0.5
    finally:
        del registry.models()["planted-grad2"]
    for model in ("fastkan-gaussian", "bspline", "mlp-tanh"):
        right = check_second_derivative(model)
        assert right["grad2_ok"] is True and right["grad2_rel_err"] < 1e-6, model


def test_training_reduces_the_error_and_counts_equal_time():
    info = evaluate("poisson-2d", "fastkan-gaussian", PHYSICS_SETTINGS["smoke"])
    assert info["equal_time_steps"] == info["steps"] == 3  # the reference's own budget
    assert 0 < info["equal_steps_mean"] < 10 and info["time_per_step_s"] > 0


def test_equal_time_reads_the_error_at_the_budget_not_at_the_step_count(monkeypatch):
    # A model slower than the reference gets fewer steps at equal time: its error is read there.
    from perf.matrix import physics

    monkeypatch.setitem(physics._REFERENCE_TIMES, ("poisson-1d", PHYSICS_SETTINGS["smoke"]), 1e-9)
    info = evaluate("poisson-1d", "mlp-tanh", PHYSICS_SETTINGS["smoke"])
    assert info["equal_time_steps"] == 1 < info["steps"]
    first = physics.train("poisson-1d", "mlp-tanh", PHYSICS_SETTINGS["smoke"], 0, 1, (1,)).at[1]
    assert info["equal_time"] == [first] and info["equal_time"] != info["equal_steps"]


def test_a_diverged_seed_is_reported_not_a_crash():
    from perf.matrix.accuracy import mean_std

    assert mean_std([float("inf"), 0.8]) == (float("inf"), float("inf"))
    assert mean_std([0.5, 0.7]) == (0.6, pytest.approx(0.1414, abs=1e-4))


def test_the_pde_step_timer_runs_and_refuses_wrong_layers(capsys):
    from perf.pde_step import main

    assert main(["--layers", "2,4,1", "--points", "16", "--rounds", "5"]) == 0
    out = capsys.readouterr().out
    assert "fastkan.paths.higher on" in out and "fastkan / plain-fastkan:" in out and "[" in out
    assert main(["--layers", "2,4,1", "--points", "16", "--rounds", "5", "--no-higher"]) == 0
    assert "fastkan.paths.higher off" in capsys.readouterr().out
    import fastkan.paths.higher

    assert fastkan.paths.higher.ENABLED  # restored after the run
    with pytest.raises(SystemExit):
        main(["--layers", "3,4,1"])
    assert "must start with 2" in capsys.readouterr().err
