"""Tests of lorabook.single_index_lora.single_index: exact risk and overlap ODE of the from-scratch model."""

from __future__ import annotations

import math

import numpy as np
import pytest
import sympy as sp

from lorabook.single_index_lora import single_index as si
from lorabook.toolkit.activations import activation, activation_derivative


@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_risk_of_hermite_matches_closed_form(k: int) -> None:
    # E[He_k(a) He_k(b)] = k! m^k for unit variances, so R(m) = k! (1 - m^k).
    assert sp.expand(si.risk_sympy(f"He{k}") - math.factorial(k) * (1 - si.M**k)) == 0


@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_small_overlap_coefficients_of_hermite(k: int) -> None:
    exponent, drift, _ = si.small_overlap_coefficients(f"He{k}")
    assert exponent == k and drift == k * math.factorial(k)


def test_drift_equals_tangent_projection_of_mean_gradient() -> None:
    # E[G lambda_*] - m E[G lambda] is the tangent component of the mean gradient along w_*.
    a, b, m = sp.symbols("a b m", real=True)
    from lorabook.toolkit.gaussian import gaussian_expectation_sympy

    for name in ("linear", "He2", "He3"):
        s = sp.expand(sp.hermite_prob(int(name[2:]), a)) if name != "linear" else a
        s_star = s.subs(a, b)
        g = (s - s_star) * sp.diff(s, a)
        along_star = gaussian_expectation_sympy(g * b, (a, b), (1, m, 1))
        along_w = gaussian_expectation_sympy(g * a, (a, b), (1, m, 1))
        drift = -(along_star - m * along_w)
        assert sp.expand(drift - si.overlap_drift_sympy(name).subs(si.M, m)) == 0


@pytest.mark.parametrize("name", ["linear", "He2", "He3"])
def test_gradient_second_moment_against_monte_carlo(name: str) -> None:
    rng = np.random.default_rng(11)
    m = 0.37
    n = 400_000
    z = rng.standard_normal((2, n))
    lam_star = z[0]
    lam = m * z[0] + math.sqrt(1 - m**2) * z[1]
    g = (activation(name)(lam) - activation(name)(lam_star)) * activation_derivative(name)(lam)
    estimate = np.mean(g**2)
    stderr = np.std(g**2) / math.sqrt(n)
    exact = float(si.gradient_second_moment_sympy(name).subs(si.M, m))
    assert abs(estimate - exact) < 5 * stderr, (estimate, exact, stderr)  # 5 standard errors


@pytest.mark.parametrize("name", ["linear", "He2", "He3", "He4"])
def test_numeric_rhs_matches_symbolic(name: str) -> None:
    delta = 0.3
    rhs = si.overlap_ode_rhs(name, delta)
    expression = si.overlap_ode_sympy(name)
    for m in (-0.8, -0.1, 0.0, 0.25, 0.9):
        exact = float(expression.subs({si.M: m, si.DELTA: delta}))
        assert rhs(0.0, np.array([m]))[0] == pytest.approx(exact, rel=1e-12, abs=1e-12)
    drift_only = si.overlap_ode_rhs(name, delta, include_correction=False)
    assert drift_only(0.0, np.array([0.3]))[0] == pytest.approx(float(si.overlap_drift_sympy(name).subs(si.M, 0.3)))


def test_linear_ode_closed_form() -> None:
    # s = s_* = z: dm/dt = (1 - m^2) - delta m (1 - m), since E[G^2] = 2 (1 - m).
    expected = (1 - si.M**2) - si.DELTA * si.M * (1 - si.M)
    assert sp.expand(si.overlap_ode_sympy("linear") - expected) == 0


def test_risk_numeric_and_critical_strength() -> None:
    assert si.risk("He3", np.array([0.0, 1.0])) == pytest.approx([6.0, 0.0])
    # He3: a = 18, b = 3456, delta_c = 2 a m0 / b.
    assert si.critical_noise_strength("He3", 0.1) == pytest.approx(2 * 18 * 0.1 / 3456)


def test_validation() -> None:
    with pytest.raises(ValueError, match="valid names"):
        si.overlap_ode_sympy("tanh")
    with pytest.raises(NotImplementedError, match="polynomial"):
        si.population_risk_sympy("erf")
    with pytest.raises(ValueError, match="noise_strength"):
        si.overlap_ode_rhs("He2", -1.0)
    with pytest.raises(ValueError, match="overlap"):
        si.risk("He2", 1.5)
    with pytest.raises(ValueError, match="initial_overlap"):
        si.critical_noise_strength("He3", 0.0)
