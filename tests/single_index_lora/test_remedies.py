"""Tests of lorabook.single_index_lora.remedies (Chapter 7: label change, non-aligned
pre-training, curriculum, potential)."""

from __future__ import annotations

import numpy as np
import pytest
import sympy as sp

from lorabook.single_index_lora import lora, non_aligned, remedies
from lorabook.single_index_lora.lora_dynamics import integrate_lora_ode, stability_threshold


def test_integrate_lora_ode_accepts_a_squared_teacher_and_ends_at_the_zero_predictor() -> None:
    # Linear student, teacher z^2: F = (q + 3)/2, minimised at w = 0, i.e. u = -mu, m = 1 (for m0 > 0).
    trajectory = integrate_lora_ode("linear", 0.5, 1e-6, 0.01, 200.0, teacher="linear^2", n_times=3)
    assert abs(trajectory.scale[0, -1] + 0.5) < 1e-6 and abs(trajectory.overlap[0, -1] - 1) < 1e-6


def test_non_aligned_linearization_reduces_to_the_aligned_one_at_nu_zero() -> None:
    mu = np.array([0.2, 0.5, 0.8])
    a, b, c = remedies.non_aligned_linearization("erf", mu, 0.0)
    a_aligned, b_aligned = lora.linearization("erf", mu)
    assert np.allclose(a, a_aligned, atol=1e-12) and np.allclose(b, b_aligned, atol=1e-12) and np.allclose(c, 0)
    assert np.allclose(remedies.non_aligned_search_time("erf", mu, 0.0), lora.search_time("erf", mu))


def test_non_aligned_linearization_is_the_jacobian_of_the_ode() -> None:
    # Finite differences of lorabook.single_index_lora.non_aligned.overlap_ode_rhs at the pre-trained point.
    mu, nu, step = 0.4, 0.6, 1e-6
    a, b, c = remedies.non_aligned_linearization("relu", mu, nu)
    columns = []
    for k in range(3):
        plus, minus = np.zeros(3), np.zeros(3)
        plus[k], minus[k] = step, -step
        columns.append(
            (
                np.array(non_aligned.overlap_ode_rhs("relu", mu, nu, *plus))
                - np.array(non_aligned.overlap_ode_rhs("relu", mu, nu, *minus))
            )
            / (2 * step)
        )
    jacobian = np.array(columns).T
    assert np.allclose(jacobian, [[b, a, c], [a, 0, 0], [c, 0, 0]], atol=1e-6)
    rate = max(np.linalg.eigvalsh(jacobian))
    assert abs(1 / rate - remedies.non_aligned_search_time("relu", mu, nu)) < 1e-4


def test_linear_non_aligned_search_time_sees_only_the_error_length() -> None:
    # Linear model: tau depends on mu, nu only through u_* = |w_* - w_0| (exercise of the chapter).
    u_star = remedies.best_rank_one_update(0.3, 0.4)[0]
    aligned_mu = 1 - u_star
    assert np.isclose(remedies.non_aligned_search_time("linear", 0.3, 0.4), lora.search_time("linear", aligned_mu))


def test_best_rank_one_update_has_zero_risk_and_one_over_sqrt_two() -> None:
    for mu in (0.1, 0.4, 0.9):
        u, m, p = remedies.best_rank_one_update(mu, 1 - mu)
        assert np.isclose(m, 1 / np.sqrt(2)) and np.isclose(p, -1 / np.sqrt(2)) and np.isclose(u, np.sqrt(2) * (1 - mu))
        for name in ("linear", "erf", "relu"):
            assert non_aligned.population_risk(name, mu, 1 - mu, u, m, p) < 1e-12
    u, m, p = remedies.best_rank_one_update(0.4, 0.2)
    assert np.isclose(m, 0.6 / np.hypot(0.6, 0.2)) and non_aligned.population_risk("erf", 0.4, 0.2, u, m, p) < 1e-12
    with pytest.raises(ValueError, match="no direction"):
        remedies.best_rank_one_update(1.0, 0.0)
    with pytest.raises(ValueError, match="nu"):
        remedies.best_rank_one_update(0.5, -0.1)


def test_non_aligned_stability_threshold_is_half_the_aligned_one() -> None:
    for name in ("linear", "erf", "He3"):
        assert np.isclose(
            remedies.non_aligned_stability_threshold(name, 0.3, 0.7), 0.5 * stability_threshold(name, 0.3)
        )
    assert np.isclose(remedies.non_aligned_stability_threshold("linear", 0.4, 0.0), stability_threshold("linear", 0.4))


def test_non_aligned_ode_saturates_above_the_threshold() -> None:
    # Linear model above delta_c: |m| -> c_*/sqrt2 with c_* = sqrt(2/delta)/u_* (the chapter's prediction).
    mu, nu, delta = 0.4, 0.6, 4.0
    _, scale, overlap, offset = remedies.integrate_non_aligned_ode(
        "linear", mu, nu, [1e-6, 0.05, 0.0], 200.0, noise_strength=delta, n_times=3
    )
    u_star = remedies.best_rank_one_update(mu, nu)[0]
    c_star = np.sqrt(2 / delta) / u_star
    assert np.isclose(overlap[0, -1], c_star / np.sqrt(2), atol=1e-6)
    assert np.isclose(offset[0, -1], -c_star / np.sqrt(2), atol=1e-6)
    # and below it the zero-risk point is reached
    _, scale, overlap, offset = remedies.integrate_non_aligned_ode(
        "linear", mu, nu, [[1e-6, 0.05, 0.0]], 200.0, noise_strength=1.0, n_times=3
    )
    assert np.allclose([scale[0, -1], overlap[0, -1], offset[0, -1]], remedies.best_rank_one_update(mu, nu), atol=1e-6)


def test_integrate_non_aligned_ode_validates_its_state() -> None:
    with pytest.raises(ValueError, match="m0"):
        remedies.integrate_non_aligned_ode("linear", 0.4, 0.6, [0.0, 0.9, 0.9], 1.0)
    with pytest.raises(ValueError, match="u0, m0, p0"):
        remedies.integrate_non_aligned_ode("linear", 0.4, 0.6, [0.0, 0.1], 1.0)


def test_curriculum_outcomes_has_a_window_at_the_he3_trap() -> None:
    result = remedies.curriculum_outcomes(
        "He3",
        0.325,
        [2.0, 5.25, 20.0],
        first_teacher="He3^2",
        initial_scale=1e-6,
        initial_overlap=0.03,
        second_duration=300.0,
        method="LSODA",
    )
    assert list(result["outcome"]) == ["not escaped", "target", "zero predictor"]
    assert abs(result["switch_scale"][2] + 0.325) < 1e-4 and abs(result["switch_overlap"][2] - 1) < 1e-4
    with pytest.raises(ValueError, match="positive"):
        remedies.curriculum_outcomes(
            "He3", 0.325, [0.0], first_teacher="He3^2", initial_scale=0.0, initial_overlap=0.03, second_duration=1.0
        )
    with pytest.raises(ValueError, match="valid"):
        remedies.curriculum_outcomes(
            "He3", 0.325, [1.0], first_teacher="He99", initial_scale=0.0, initial_overlap=0.03, second_duration=1.0
        )


def test_effective_potential_and_adiabatic_solution() -> None:
    g, mu = remedies.G_SYMBOL, lora.MU
    potential = remedies.effective_potential_sympy()
    assert sp.simplify(potential + (1 - mu) ** 2 * sp.log(sp.cosh(g))) == 0
    # the closed form solves dm/dt = (1 - mu)^2 m (1 - m^2), the slaved linear ODE
    times = np.linspace(0, 30, 301)
    values = remedies.adiabatic_overlap(0.6, 0.01, times)
    derivative = np.gradient(values, times)
    # central differences (interior points), error O(h^2) = 1e-5 here
    assert np.allclose(derivative[1:-1], (0.16 * values * (1 - values**2))[1:-1], atol=1e-5)
    assert remedies.adiabatic_overlap(0.6, -0.01, 5.0) < 0 and remedies.adiabatic_overlap(
        0.6, 0.01, 0.0
    ) == pytest.approx(0.01)
    with pytest.raises(ValueError, match="initial_overlap"):
        remedies.adiabatic_overlap(0.5, 1.0, 1.0)
