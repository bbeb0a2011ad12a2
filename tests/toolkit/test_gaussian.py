"""Tests of lorabook.toolkit.gaussian: Hermite polynomials, exact moments, quadrature, Monte Carlo."""

from __future__ import annotations

import math

import numpy as np
import pytest
import sympy as sp

from lorabook.toolkit import gaussian

Z = sp.Symbol("z", real=True)


def test_hermite_numeric_matches_sympy_and_recurrence() -> None:
    points = np.linspace(-3.0, 3.0, 13)
    for k in range(8):
        exact = sp.lambdify(Z, gaussian.hermite_sympy(k, Z), "numpy")(points)
        np.testing.assert_allclose(gaussian.hermite(k, points), exact, rtol=1e-12, atol=1e-12)
    # Three-term recurrence He_{k+1} = z He_k - k He_{k-1}.
    for k in range(1, 8):
        recurrence = points * gaussian.hermite(k, points) - k * gaussian.hermite(k - 1, points)
        np.testing.assert_allclose(gaussian.hermite(k + 1, points), recurrence, rtol=1e-12, atol=1e-10)


def test_hermite_orthogonality_exact() -> None:
    for j in range(6):
        for k in range(6):
            value = gaussian.gaussian_expectation_sympy(
                gaussian.hermite_sympy(j, Z) * gaussian.hermite_sympy(k, Z), (Z,), 1
            )
            assert value == (math.factorial(k) if j == k else 0)


def test_hermite_rejects_bad_degree() -> None:
    with pytest.raises(ValueError):
        gaussian.hermite(-1, 0.0)
    with pytest.raises(TypeError):
        gaussian.hermite(1.5, 0.0)


def test_half_line_expectation_matches_direct_integration() -> None:
    v = sp.Symbol("v", positive=True)
    for power in range(6):
        direct = sp.integrate(Z**power * sp.exp(-(Z**2) / (2 * v)) / sp.sqrt(2 * sp.pi * v), (Z, 0, sp.oo))
        assert sp.simplify(gaussian.half_line_expectation_sympy(Z**power, Z, v) - direct) == 0


def test_gaussian_weighted_expectation_matches_quadrature() -> None:
    expr = 3 * Z**4 - Z**2 + 2
    for decay, variance in [(1.0, 1.0), (0.7, 2.3), (2.0, 0.4)]:
        exact = float(
            gaussian.gaussian_weighted_expectation_sympy(expr, Z, sp.nsimplify(decay), sp.nsimplify(variance))
        )
        numeric = gaussian.gauss_hermite_expectation(
            lambda z: (3 * z**4 - z**2 + 2) * np.exp(-decay * z**2), variance, 200
        )
        assert abs(exact - numeric) < 1e-12


def test_hermite_expansion_roundtrip() -> None:
    expr = 5 * Z**5 - 2 * Z**3 + Z - 7
    coefficients = gaussian.hermite_expansion_sympy(expr, Z)
    rebuilt = sum(c * gaussian.hermite_sympy(k, Z) for k, c in enumerate(coefficients))
    assert sp.expand(rebuilt - expr) == 0
    assert gaussian.hermite_expansion_sympy(sp.Integer(0), Z) == [0]


def test_gauss_hermite_exact_for_polynomials_and_vectorised() -> None:
    variances = np.array([0.5, 1.0, 3.0])
    # E[z^6] = 15 v^3, exact with 4 nodes (degree 7).
    np.testing.assert_allclose(gaussian.gauss_hermite_expectation(lambda z: z**6, variances, 4), 15 * variances**3)
    value, error = gaussian.gauss_hermite_expectation_with_error(np.cos, 2.0, 20)
    assert abs(value - np.exp(-1.0)) < 1e-14 and error < 1e-10


def test_gaussian_expectation_2d_polynomial_exact_and_vectorised() -> None:
    rng = np.random.default_rng(0)
    c11, c22 = rng.uniform(0.3, 2.0, (2, 5))
    c12 = rng.uniform(-1, 1, 5) * np.sqrt(c11 * c22)
    # E[a^2 b^2] = c11 c22 + 2 c12^2 (Wick).
    value = gaussian.gaussian_expectation_2d(lambda a, b: a**2 * b**2, c11, c12, c22, 4)
    np.testing.assert_allclose(value, c11 * c22 + 2 * c12**2, rtol=1e-12)
    # Degenerate covariances: a = 0, and perfectly correlated a = b.
    assert abs(gaussian.gaussian_expectation_2d(lambda a, b: b**2 + a, 0.0, 0.0, 2.0, 4) - 2.0) < 1e-12
    assert abs(gaussian.gaussian_expectation_2d(lambda a, b: (a - b) ** 2, 1.5, 1.5, 1.5, 4)) < 1e-12


def test_gaussian_expectation_2d_matches_monte_carlo() -> None:
    def integrand(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.tanh(a) * np.cos(b) + np.sin(a * b)

    value, error = gaussian.gaussian_expectation_2d_with_error(integrand, 1.3, 0.7, 0.9, 30)
    mean, stderr = gaussian.monte_carlo_expectation_2d(integrand, 1.3, 0.7, 0.9, 200_000, seed=1)
    assert error < 1e-8
    assert abs(mean - value) < 5 * stderr, (mean, value, stderr)  # 5 standard errors


def test_monte_carlo_is_seeded() -> None:
    first = gaussian.monte_carlo_expectation_2d(lambda a, b: a * b, 1.0, 0.3, 1.0, 1000, seed=3)
    second = gaussian.monte_carlo_expectation_2d(lambda a, b: a * b, 1.0, 0.3, 1.0, 1000, seed=3)
    assert first == second


def test_adaptive_handles_kinks() -> None:
    value, error = gaussian.gaussian_expectation_adaptive(lambda z: max(z, 0.0), 2.0)
    assert abs(value - np.sqrt(2.0 / (2 * np.pi))) < 1e-12 and error < 1e-10


@pytest.mark.parametrize(
    "entries", [(1.0, 1.5, 1.0), (-1.0, 0.0, 1.0), (1.0, 0.0, np.nan), (np.ones(2), np.zeros(3), 1.0)]
)
def test_invalid_covariance_raises(entries: tuple) -> None:
    with pytest.raises(ValueError):
        gaussian.gaussian_expectation_2d(lambda a, b: a * b, *entries)


def test_invalid_nodes_and_variance_raise() -> None:
    with pytest.raises(ValueError):
        gaussian.gauss_hermite_expectation(np.cos, 1.0, 0)
    with pytest.raises(ValueError):
        gaussian.gauss_hermite_expectation(np.cos, -1.0)
    with pytest.raises(ValueError):
        gaussian.monte_carlo_expectation_2d(lambda a, b: a, 1.0, 0.0, 1.0, 1, seed=0)
