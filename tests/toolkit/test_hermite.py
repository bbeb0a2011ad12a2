"""Tests of lorabook.toolkit.hermite: Hermite coefficients and information exponents."""

from __future__ import annotations

import math

import numpy as np
import pytest
import sympy as sp

from lorabook.toolkit import hermite
from lorabook.toolkit.activations import ACTIVATION_NAMES

K_MAX = 12


@pytest.mark.parametrize("name", ["linear", "erf", "relu", "He1", "He4", "He7"])
def test_exact_coefficients_match_adaptive_quadrature(name: str) -> None:
    exact = np.array([float(c) for c in hermite.hermite_coefficients_sympy(name, K_MAX)])
    values, errors = hermite.hermite_coefficients_quadrature(name, K_MAX, "adaptive")
    assert np.all(errors < 1e-9)
    np.testing.assert_allclose(values, exact, atol=1e-10)


def test_smooth_coefficients_match_gauss_hermite_within_estimated_error() -> None:
    for name in ("erf", "He5"):
        exact = hermite.hermite_coefficients(name, K_MAX)
        values, errors = hermite.hermite_coefficients_quadrature(name, K_MAX, "gauss-hermite", 60)
        assert np.all(np.abs(values - exact) <= errors + 1e-15)


def test_relu_coefficients_closed_form() -> None:
    # Integration by parts: c_k = He_{k-2}(0) / (sqrt(2 pi) k!) for k >= 2.
    coefficients = hermite.hermite_coefficients_sympy("relu", K_MAX)
    assert coefficients[0] == 1 / sp.sqrt(2 * sp.pi) and coefficients[1] == sp.Rational(1, 2)
    for k in range(2, K_MAX + 1):
        expected = sp.hermite_prob(k - 2, 0) / (sp.sqrt(2 * sp.pi) * sp.factorial(k))
        assert sp.simplify(coefficients[k] - expected) == 0


def test_erf_coefficients_closed_form() -> None:
    # c_1 = E[erf'(z)] = 2 / sqrt(3 pi); even coefficients vanish (erf is odd).
    coefficients = hermite.hermite_coefficients_sympy("erf", K_MAX)
    assert sp.simplify(coefficients[1] - 2 / sp.sqrt(3 * sp.pi)) == 0
    assert all(coefficients[k] == 0 for k in range(0, K_MAX + 1, 2))


def test_sigmoid_coefficients_two_methods_agree() -> None:
    values = hermite.hermite_coefficients("sigmoid", K_MAX)
    adaptive, errors = hermite.hermite_coefficients_quadrature("sigmoid", K_MAX, "adaptive")
    np.testing.assert_allclose(values, adaptive, atol=1e-10)
    assert values[0] == pytest.approx(0.5, abs=1e-14)
    with pytest.raises(NotImplementedError):
        hermite.hermite_coefficients_sympy("sigmoid", 3)


def test_parseval_identity() -> None:
    # E[s(z)^2] = sum_k k! c_k^2, all terms positive, so partial sums approach it from below.
    # erf: the kernel (2/pi) asin(2 rho / 3) is singular at rho = 3/2, so the terms decay like
    # (2/3)^k and the ratio of successive odd terms stays below 4/9: the tail after the last odd
    # term t is below t (4/9) / (5/9) < t.
    erf_terms = [math.factorial(k) * c**2 for k, c in enumerate(hermite.hermite_coefficients("erf", 31))]
    gap = 2 / np.pi * np.arcsin(2 / 3) - sum(erf_terms)
    assert 0 < gap < erf_terms[-1], (gap, erf_terms[-1])
    np.testing.assert_array_less(np.array(erf_terms[3::2]) / np.array(erf_terms[1:-2:2]), 4 / 9)
    # ReLU: the terms decay only algebraically (~ k^-5/2).
    relu_terms = [math.factorial(k) * c**2 for k, c in enumerate(hermite.hermite_coefficients("relu", 30))]
    assert 0 < 0.5 - sum(relu_terms) < 0.01


@pytest.mark.parametrize(
    ("name", "expected"),
    [("linear", 1), ("erf", 1), ("relu", 1), ("sigmoid", 1)] + [(f"He{k}", k) for k in range(1, 11)],
)
def test_information_exponent(name: str, expected: int) -> None:
    assert hermite.information_exponent(name) == expected


def test_kernel_series_matches_closed_form_erf() -> None:
    # Terms ~ (2 rho / 3)^k: at |rho| <= 0.6 and 40 terms the truncation error is ~ 0.4^40.
    rho = np.linspace(-0.6, 0.6, 7)
    series = hermite.hermite_kernel_series("erf", "erf", rho, 40)
    np.testing.assert_allclose(series, 2 / np.pi * np.arcsin(2 * rho / 3), atol=1e-12)


def test_validation_messages_name_the_choices() -> None:
    with pytest.raises(ValueError, match="valid names: " + ", ".join(ACTIVATION_NAMES[:3])):
        hermite.hermite_coefficients("tanh", 3)
    with pytest.raises(ValueError, match="valid names"):
        hermite.information_exponent("softplus")
    with pytest.raises(ValueError, match="valid methods: gauss-hermite, adaptive"):
        hermite.hermite_coefficients_quadrature("erf", 3, method="simpson")
    with pytest.raises(ValueError):
        hermite.hermite_coefficients("erf", -1)
    with pytest.raises(ValueError):
        hermite.hermite_kernel_series("erf", "erf", 1.5, 3)


@pytest.mark.parametrize("name", ["relu^2", "erf^2", "He1+He3", "He3^2"])
def test_composite_target_coefficients_match_adaptive_quadrature(name: str) -> None:
    exact = hermite.hermite_coefficients(name, 8)
    reference, errors = hermite.hermite_coefficients_quadrature(name, 8, method="adaptive")
    np.testing.assert_allclose(exact, reference, rtol=0, atol=1e-9 + 10 * errors.max())
    if name == "erf^2":  # an even function: its odd coefficients vanish (by quadrature, to rounding)
        assert np.all(np.abs(exact[1::2]) < 1e-12)
