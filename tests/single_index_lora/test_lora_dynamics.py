"""Tests of lorabook.single_index_lora.lora_dynamics: stacked LoRA overlap ODE trajectories
and the stability threshold."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lorabook.single_index_lora import lora
from lorabook.single_index_lora.lora_dynamics import integrate_lora_ode, stability_threshold
from lorabook.toolkit.ode import integrate_overlap_ode


def _linear_rhs(mu: float, delta: float):
    """Independent linear-model ODE: F = (q - 2 rho + 1)/2, E[G^2] = u^2 (q - 2 rho + 1)."""

    def rhs(t, y):
        u, m = y
        q = mu**2 + u**2 + 2 * mu * u * m
        rho = mu + u * m
        du = -(u + mu * m - m)  # -dR/du with F_q = 1/2, F_rho = -1
        dm = -(1 - m**2) * u * (mu - 1) - 0.5 * delta * m * u**2 * (q - 2 * rho + 1)
        return np.array([du, dm])

    return rhs


@pytest.mark.parametrize("delta", [0.0, 1.5])
def test_stacked_runs_match_single_runs_of_an_independent_linear_ode(delta: float) -> None:
    mu = np.array([0.2, 0.5, 0.8])
    u0 = np.array([1e-3, -2e-3, 0.05])
    m0 = np.array([0.05, -0.03, 0.2])
    trajectory = integrate_lora_ode("linear", mu, u0, m0, 40.0, noise_strength=delta, n_times=50)
    for run in range(3):
        reference = integrate_overlap_ode(
            _linear_rhs(mu[run], delta), [u0[run], m0[run]], 40.0, n_times=50, bounded_components=(1,)
        )
        np.testing.assert_allclose(trajectory.time, reference.time)
        np.testing.assert_allclose(trajectory.scale[run], reference.state[:, 0], atol=1e-6)
        np.testing.assert_allclose(trajectory.overlap[run], reference.state[:, 1], atol=1e-6)


def test_risk_and_student_teacher_overlap_follow_the_state() -> None:
    trajectory = integrate_lora_ode("erf", 0.4, 1e-3, 0.1, 300.0, n_times=20)
    np.testing.assert_allclose(
        trajectory.risk[0], lora.population_risk("erf", 0.4, trajectory.scale[0], trajectory.overlap[0])
    )
    np.testing.assert_allclose(trajectory.student_teacher_overlap[0], 0.4 + trajectory.scale[0] * trajectory.overlap[0])
    # Gradient flow decreases the risk.
    assert np.all(np.diff(trajectory.risk[0]) <= 1e-12)
    assert trajectory.risk[0, -1] < 0.5 * trajectory.risk[0, 0]


def test_escape_time_is_the_crossing_of_the_trajectory() -> None:
    trajectory = integrate_lora_ode(
        "linear", 0.5, 0.0, 0.01, 60.0, n_times=4001, spacing="linear", escape_threshold=0.5
    )
    crossing = np.interp(0.5, trajectory.overlap[0], trajectory.time)  # m increases monotonically here
    assert np.all(np.diff(trajectory.overlap[0]) >= 0)
    assert abs(trajectory.escape_time[0] - crossing) < 1e-3


def test_symmetry_u_m_to_minus_u_minus_m() -> None:
    plus = integrate_lora_ode("relu", 0.3, 1e-3, 0.04, 50.0, noise_strength=0.4, n_times=30)
    minus = integrate_lora_ode("relu", 0.3, -1e-3, -0.04, 50.0, noise_strength=0.4, n_times=30)
    np.testing.assert_allclose(plus.overlap, -minus.overlap, atol=1e-7)
    np.testing.assert_allclose(plus.scale, -minus.scale, atol=1e-7)


def test_stability_threshold_closed_forms() -> None:
    mu = np.array([0.1, 0.5, 0.9])
    np.testing.assert_allclose(stability_threshold("linear", mu), 2 / (1 - mu) ** 2)
    # erf: E[s'^2] = (4/pi)/sqrt(5), E[s'^4] = (16/pi^2)/3.
    np.testing.assert_allclose(stability_threshold("erf", mu), 3 * math.pi / (2 * math.sqrt(5) * (1 - mu) ** 2))
    assert stability_threshold("linear", 1.0) == math.inf


@pytest.mark.parametrize("activation", ["linear", "erf"])
def test_stability_threshold_is_where_the_minimum_loses_stability(activation: str) -> None:
    mu = 0.5
    critical = stability_threshold(activation, mu)

    def jacobian_eigenvalues(delta: float) -> np.ndarray:
        """Finite-difference Jacobian at (1 - mu, 1): central in u, backward in m (m <= 1)."""
        step = 1e-6

        def field(u, m):
            return np.array(lora.overlap_ode_rhs(activation, mu, u, m, noise_strength=delta))

        d_du = (field(1 - mu + step, 1.0) - field(1 - mu - step, 1.0)) / (2 * step)
        d_dm = (field(1 - mu, 1.0) - field(1 - mu, 1.0 - step)) / step
        return np.linalg.eigvals(np.column_stack([d_du, d_dm])).real

    assert np.max(jacobian_eigenvalues(0.8 * critical)) < 0
    assert np.max(jacobian_eigenvalues(1.2 * critical)) > 0


def test_bad_input_raises() -> None:
    with pytest.raises(ValueError, match="valid"):
        integrate_lora_ode("tanh", 0.5, 0.0, 0.1, 1.0)
    with pytest.raises(ValueError, match="valid methods"):
        integrate_lora_ode("linear", 0.5, 0.0, 0.1, 1.0, method="Euler")
    with pytest.raises(ValueError):
        integrate_lora_ode("linear", 1.5, 0.0, 0.1, 1.0)
    with pytest.raises(ValueError):
        integrate_lora_ode("linear", 0.5, 0.0, 1.5, 1.0)
    with pytest.raises(ValueError):
        integrate_lora_ode("linear", 0.5, np.nan, 0.1, 1.0)
    with pytest.raises(ValueError, match="broadcast"):
        integrate_lora_ode("linear", [0.2, 0.5], [0.0, 0.0, 0.0], 0.1, 1.0)
    with pytest.raises(ValueError, match="escape_threshold"):
        integrate_lora_ode("linear", 0.5, 0.0, 0.1, 1.0, escape_threshold=2.0)
    with pytest.raises(ValueError, match="valid"):
        stability_threshold("tanh", 0.5)


def test_composite_targets_are_accepted_and_reach_the_target() -> None:
    # A two-term Hermite model as its own student: the ODE ends at the global minimum (1 - mu, 1).
    trajectory = integrate_lora_ode("He1+He3", 0.5, 1e-4, 0.05, 20.0)
    assert abs(trajectory.overlap[0, -1] - 1.0) < 1e-6 and abs(trajectory.scale[0, -1] - 0.5) < 1e-6
    assert trajectory.risk[0, -1] < 1e-10
    with pytest.raises(ValueError, match="valid names"):
        integrate_lora_ode("He1+", 0.5, 1e-4, 0.05, 1.0)


def test_stability_constant_is_the_threshold_times_the_squared_update_scale() -> None:
    from lorabook.single_index_lora.lora_dynamics import stability_constant

    # linear: s' = 1, so 2 E[s'^2] / E[s'^4] = 2; erf: closed form 3 pi / (2 sqrt5) (see stability tests)
    assert stability_constant("linear") == pytest.approx(2.0, rel=1e-14)
    assert stability_constant("erf") == pytest.approx(3 * np.pi / (2 * np.sqrt(5)), rel=1e-12)
    assert stability_threshold("erf", 0.3) == pytest.approx(stability_constant("erf") / 0.7**2, rel=1e-14)
    with pytest.raises(ValueError, match="n_nodes"):
        stability_constant("erf", n_nodes=1)
