"""Tests of lorabook.lora: the linearisation at the pre-trained point and the search time."""

from __future__ import annotations

import mpmath as mp
import numpy as np
import pytest
import sympy as sp
from numpy.polynomial.hermite_e import hermegauss

from lorabook import lora
from lorabook.activations import (
    ACTIVATION_NAMES,
    activation,
    activation_derivative,
    activation_second_derivative,
)

MU_GRID = (0.05, 0.1, 0.3, 0.5, 0.7, 0.9, 0.99)


def _mp_hermite(k: int, z):
    """He_k by the three-term recurrence, in mpmath arithmetic (independent of numpy/sympy)."""
    previous, current = mp.mpf(1), z
    if k == 0:
        return previous
    for n in range(1, k):
        previous, current = current, z * current - n * previous
    return current


def _mp_functions(name: str):
    """(s, s', s'') in mpmath for a smooth activation."""
    if name == "linear":
        return (lambda z: z), (lambda z: mp.mpf(1)), (lambda z: mp.mpf(0))
    if name == "erf":
        return (mp.erf, lambda z: 2 / mp.sqrt(mp.pi) * mp.exp(-z * z),
                lambda z: -4 * z / mp.sqrt(mp.pi) * mp.exp(-z * z))
    if name == "sigmoid":
        sig = lambda z: 1 / (1 + mp.exp(-z))  # noqa: E731
        return (sig, lambda z: sig(z) * (1 - sig(z)),
                lambda z: sig(z) * (1 - sig(z)) * (1 - 2 * sig(z)))
    k = int(name[2:])
    return ((lambda z: _mp_hermite(k, z)), (lambda z: k * _mp_hermite(k - 1, z)),
            (lambda z: k * (k - 1) * _mp_hermite(k - 2, z) if k >= 2 else mp.mpf(0)))


def _mp_search_time(name: str, mu: float):
    """tau(mu) from 20-digit mpmath quadrature of the one-dimensional fixed-point integrals."""
    mu = mp.mpf(mu)
    if name == "relu":
        # s' = Theta; s'' = delta(mu z) multiplies relu(mu z) - relu(z), which vanishes at z = 0.
        risk_q, risk_rho = mp.mpf(1) / 4, -mp.mpf(1) / 2
    else:
        s, ds, d2s = _mp_functions(name)
        density = lambda z: mp.exp(-z * z / 2) / mp.sqrt(2 * mp.pi)  # noqa: E731
        expect = lambda f: mp.quad(lambda z: f(z) * density(z), [-mp.inf, 0, mp.inf])  # noqa: E731
        risk_q = expect(lambda z: ds(mu * z) ** 2 + d2s(mu * z) * (s(mu * z) - s(z))) / 2
        risk_rho = -expect(lambda z: ds(mu * z) * ds(z))
    coefficient_a, coefficient_b = -(2 * mu * risk_q + risk_rho), -2 * risk_q
    rate = (coefficient_b + mp.sqrt(coefficient_b**2 + 4 * coefficient_a**2)) / 2
    return 1 / rate


@pytest.mark.parametrize("name", ACTIVATION_NAMES)
def test_search_time_matches_high_precision_quadrature(name: str) -> None:
    with mp.workdps(20):
        expected = np.array([float(_mp_search_time(name, mu)) for mu in MU_GRID])
    computed = lora.search_time(name, np.array(MU_GRID))
    np.testing.assert_allclose(computed, expected, rtol=1e-6)


def _risk_2d(name: str, q: float, rho: float, nodes: int = 120) -> float:
    """F(q, rho) = E[(s(lambda) - s(lambda_*))^2]/2 by tensor Gauss-Hermite quadrature."""
    z, weights = hermegauss(nodes)
    weights = weights / weights.sum()
    target_part, noise_part = np.meshgrid(z, z, indexing="ij")
    preactivation = rho * target_part + np.sqrt(q - rho**2) * noise_part
    s = activation(name)
    return 0.5 * float(np.sum(np.outer(weights, weights) * (s(preactivation) - s(target_part)) ** 2))


@pytest.mark.parametrize("name", ["linear", "erf", "sigmoid", "He2", "He3"])
@pytest.mark.parametrize("mu", [0.25, 0.6, 0.95])
def test_price_theorem_reduction_against_finite_differences(name: str, mu: float) -> None:
    """The 1-D formulas for F_q (one-sided) and F_rho equal differences of the 2-D risk."""
    step = 1e-6
    risk_q_fd = (_risk_2d(name, mu**2 + 2 * step, mu) - _risk_2d(name, mu**2 + step, mu)) / step
    # Move rho at fixed q = mu^2 + step, staying inside q >= rho^2 on both sides.
    half = 0.25 * step / mu
    risk_rho_fd = (_risk_2d(name, mu**2 + step, mu + half) - _risk_2d(name, mu**2 + step, mu - half)) / (2 * half)
    coefficient_a, coefficient_b = lora.linearization(name, mu)
    risk_q, risk_rho = -coefficient_b / 2, -(coefficient_a + 2 * mu * (-coefficient_b / 2))
    scale = max(1.0, abs(risk_q), abs(risk_rho))
    # Forward differences carry an O(step) = 1e-6 bias per unit of second derivative; the
    # quadrature itself is exact to ~1e-12 for these smooth integrands.
    assert abs(risk_q - risk_q_fd) < 1e-4 * scale, (risk_q, risk_q_fd)
    assert abs(risk_rho - risk_rho_fd) < 1e-4 * scale, (risk_rho, risk_rho_fd)


def test_closed_forms_linear_and_relu() -> None:
    mu = lora.MU
    assert lora.linearization_sympy("linear") == (1 - mu, -1)
    assert sp.simplify(lora.linearization_sympy("relu")[0] - (1 - mu) / 2) == 0
    assert lora.linearization_sympy("relu")[1] == sp.Rational(-1, 2)
    # ReLU is positively homogeneous: its search is exactly twice as slow as the linear one.
    grid = np.linspace(0.05, 0.99, 11)
    np.testing.assert_allclose(lora.search_time("relu", grid), 2 * lora.search_time("linear", grid), rtol=1e-12)


@pytest.mark.parametrize("name", ["linear", "erf", "relu", "He2", "He3", "He4", "He7"])
def test_matching_teacher_has_no_drive_at_mu_one(name: str) -> None:
    coefficient_a, _ = lora.linearization_sympy(name)
    assert sp.simplify(coefficient_a.subs(lora.MU, 1)) == 0
    assert lora.search_time(name, 1.0) == np.inf


def test_linear_search_time_diverges_like_inverse_square() -> None:
    # tau = 1/lambda_+ with lambda_+ = (sqrt(1 + 4 a^2) - 1)/2 ~ a^2, a = 1 - mu.
    gaps = np.array([1e-2, 1e-3, 1e-4])
    np.testing.assert_allclose(lora.search_time("linear", 1 - gaps) * gaps**2, 1.0, rtol=3e-4)


def test_sigmoid_quadrature_matches_symbolic_path_on_smooth_pairs() -> None:
    # The quadrature branch used for the sigmoid, applied to erf (which also has a closed form).
    for mu in (0.2, 0.8):
        closed = lora.linearization("erf", mu)
        quadrature = lora._sigmoid_pair_linearization("erf", "erf", mu)
        np.testing.assert_allclose(closed, quadrature, rtol=1e-10)


def test_vectorised_over_mu_and_scalar_in_scalar_out() -> None:
    grid = np.linspace(0.1, 0.9, 6).reshape(2, 3)
    times = lora.search_time("erf", grid)
    assert times.shape == (2, 3)
    assert isinstance(lora.search_time("erf", 0.5), float)
    assert times[0, 1] == pytest.approx(lora.search_time("erf", float(grid[0, 1])), rel=1e-14)


def test_teacher_differing_from_student() -> None:
    coefficient_a, coefficient_b = lora.linearization_sympy("linear", "He3")
    # F_rho = -E[He3'(z)] = -3 E[z^2 - 1] = 0; F_q = 1/2: A = -mu, B = -1.
    assert sp.simplify(coefficient_a + lora.MU) == 0 and coefficient_b == -1


@pytest.mark.parametrize("bad_mu", [0.0, -0.1, 1.5, np.nan, [0.5, 2.0]])
def test_mu_outside_unit_interval_is_rejected(bad_mu) -> None:
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        lora.search_time("linear", bad_mu)


def test_unknown_names_are_rejected_with_the_valid_list() -> None:
    with pytest.raises(ValueError, match="valid names: linear, erf, relu, sigmoid, He1"):
        lora.search_time("tanh", 0.5)
    with pytest.raises(ValueError, match="valid names"):
        lora.linearization("linear", 0.5, teacher="cubic")
    with pytest.raises(TypeError):
        lora.search_time("linear", "half")


def test_second_derivative_of_relu_is_refused() -> None:
    with pytest.raises(ValueError, match="Dirac"):
        activation_second_derivative("relu")
    np.testing.assert_allclose(activation_derivative("He3")(np.array([2.0])), [9.0])
