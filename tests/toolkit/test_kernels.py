"""Tests of lorabook.toolkit.kernels: closed-form Gaussian kernels vs Monte Carlo, quadrature and theory."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import sympy as sp

from lorabook.toolkit import kernels
from lorabook.toolkit.activations import activation, activation_derivative
from lorabook.toolkit.gaussian import (
    gaussian_expectation_2d_with_error,
    gaussian_expectation_adaptive,
    monte_carlo_expectation_2d,
)
from lorabook.toolkit.hermite import hermite_kernel_series
from lorabook.toolkit.kernels import C11, C12, C22

CLOSED_FORM_NAMES = ("linear", "erf", "relu", "He2", "He3")
PAIRS = list(itertools.product(CLOSED_FORM_NAMES, repeat=2))


def _random_covariance(seed: int) -> tuple[float, float, float]:
    rng = np.random.default_rng(seed)
    c11, c22 = rng.uniform(0.3, 2.0, 2)
    c12 = rng.uniform(-0.95, 0.95) * math.sqrt(c11 * c22)
    return float(c11), float(c12), float(c22)


def _product(f: str, g: str):
    first, second = activation(f), activation(g)
    return lambda a, b: first(a) * second(b)


@pytest.mark.parametrize(("f", "g"), PAIRS)
def test_closed_form_matches_monte_carlo(f: str, g: str) -> None:
    c11, c12, c22 = _random_covariance(PAIRS.index((f, g)))  # a fixed seed per pair
    exact = kernels.correlation_kernel(f, g, c11, c12, c22)
    mean, stderr = monte_carlo_expectation_2d(_product(f, g), c11, c12, c22, 100_000, seed=7)
    # 5 standard errors: a false failure has probability ~ 6e-7 per pair.
    assert abs(mean - exact) < 5 * stderr, (f, g, mean, exact, stderr)


@pytest.mark.parametrize(("f", "g"), [p for p in PAIRS if "relu" not in p])
def test_closed_form_matches_quadrature_for_smooth_pairs(f: str, g: str) -> None:
    c11, c12, c22 = _random_covariance(11)
    exact = kernels.correlation_kernel(f, g, c11, c12, c22)
    value, error = gaussian_expectation_2d_with_error(_product(f, g), c11, c12, c22, 40)
    assert error < 1e-10 and abs(value - exact) < 1e-10 + error, (value, exact, error)


@pytest.mark.parametrize(("f", "g"), PAIRS)
def test_symbolic_and_numeric_paths_agree(f: str, g: str) -> None:
    rng = np.random.default_rng(3)
    c11 = rng.uniform(0.3, 2.0, 4)
    c22 = rng.uniform(0.3, 2.0, 4)
    c12 = rng.uniform(-1, 1, 4) * np.sqrt(c11 * c22)
    numeric = kernels.correlation_kernel(f, g, c11, c12, c22)
    assert numeric.shape == (4,)
    for i in range(4):
        exact = kernels.correlation_kernel_sympy(
            f, g, sp.Float(c11[i], 30), sp.Float(c12[i], 30), sp.Float(c22[i], 30)
        )
        assert abs(float(exact) - numeric[i]) < 1e-12 * (1 + abs(numeric[i]))


def test_derived_erf_kernel_is_the_textbook_formula() -> None:
    derivation = kernels.erf_kernel_derivation()
    textbook = 2 / sp.pi * sp.asin(2 * C12 / sp.sqrt((1 + 2 * C11) * (1 + 2 * C22)))
    assert sp.simplify(derivation.kernel - textbook) == 0
    assert sp.simplify(sp.diff(derivation.kernel, C12) - derivation.derivative_kernel) == 0
    assert kernels.correlation_kernel_sympy("erf", "erf") == derivation.kernel


def test_derived_relu_kernel_is_the_textbook_formula() -> None:
    derivation = kernels.relu_kernel_derivation()
    theta = sp.acos(C12 / sp.sqrt(C11 * C22))
    textbook = sp.sqrt(C11 * C22) / (2 * sp.pi) * (sp.sin(theta) + (sp.pi - theta) * sp.cos(theta))
    rng = np.random.default_rng(5)
    for _ in range(5):
        c11, c22 = rng.uniform(0.2, 3.0, 2)
        c12 = rng.uniform(-1, 1) * math.sqrt(c11 * c22)
        values = {C11: c11, C12: c12, C22: c22}
        assert abs(float(derivation.kernel.subs(values)) - float(textbook.subs(values))) < 1e-13
    # Price's theorem: the c12-derivative is the orthant probability 1/4 + asin(rho)/(2 pi).
    orthant = sp.Rational(1, 4) + sp.asin(C12 / sp.sqrt(C11 * C22)) / (2 * sp.pi)
    assert sp.simplify(sp.diff(derivation.kernel, C12) - orthant) == 0
    assert sp.simplify(derivation.derivative_kernel - orthant) == 0


def test_price_theorem_for_hermite_pairs() -> None:
    # He_k' = k He_{k-1}, so d/dc12 K_{He3,He3} = 9 K_{He2,He2}.
    lhs = sp.diff(kernels.correlation_kernel_sympy("He3", "He3"), C12)
    assert sp.expand(lhs - 9 * kernels.correlation_kernel_sympy("He2", "He2")) == 0
    # d/dc12 K_{erf,linear} = E[erf'(a)] is independent of c12 and c22.
    derivative = sp.diff(kernels.correlation_kernel_sympy("linear", "erf"), C12)
    assert sp.simplify(derivative - 2 / sp.sqrt(sp.pi * (1 + 2 * C22))) == 0


@pytest.mark.parametrize(("f", "g"), [("relu", "relu"), ("erf", "relu"), ("relu", "He3"), ("erf", "He2")])
def test_hermite_series_at_unit_variances(f: str, g: str) -> None:
    rho = np.array([-0.5, -0.1, 0.3, 0.5])
    exact = kernels.correlation_kernel(f, g, 1.0, rho, 1.0)
    # Terms decay at least like 0.5^k here (|rho| <= 0.5, coefficients bounded): 45 terms leave < 1e-13.
    np.testing.assert_allclose(hermite_kernel_series(f, g, rho, 45), exact, atol=1e-12)


def test_boundary_of_the_psd_cone() -> None:
    q = np.array([0.01, 0.3, 1.0, 7.0])
    np.testing.assert_allclose(kernels.correlation_kernel("relu", "relu", q, q, q), q / 2, rtol=1e-13)
    np.testing.assert_allclose(
        kernels.correlation_kernel("erf", "erf", q, q, q), 2 / np.pi * np.arcsin(2 * q / (1 + 2 * q)), rtol=1e-13
    )
    np.testing.assert_allclose(kernels.correlation_kernel("relu", "relu", q, -q, q), 0.0, atol=1e-15)


def test_sigmoid_uses_quadrature_with_small_error() -> None:
    with pytest.raises(NotImplementedError, match="sigmoid"):
        kernels.correlation_kernel_sympy("sigmoid", "erf")
    assert not kernels.has_closed_form("relu", "sigmoid")
    value, error = kernels.correlation_kernel_with_error("sigmoid", "sigmoid", 1.2, 0.5, 0.8)
    assert error < 1e-12
    mean, stderr = monte_carlo_expectation_2d(_product("sigmoid", "sigmoid"), 1.2, 0.5, 0.8, 100_000, seed=2)
    assert abs(mean - value) < 5 * stderr  # 5 standard errors
    # The quadrature path against an exact reduction: sigmoid(a) = 1/2 + odd part, so by Stein's
    # lemma K_{sigmoid,linear}(c11, c12, c22) = c12 E[sigmoid'(a)], a one-dimensional integral.
    derivative_mean, derivative_error = gaussian_expectation_adaptive(
        lambda z: float(activation_derivative("sigmoid")(np.asarray(z))), 1.0
    )
    assert derivative_error < 1e-10
    value = kernels.correlation_kernel("sigmoid", "linear", 1.0, 0.4, 1.7)
    assert abs(value - 0.4 * derivative_mean) < 1e-12


def test_symbols_substitute_for_part_two() -> None:
    q, rho = sp.symbols("q rho", positive=True)
    expr = kernels.correlation_kernel_sympy("erf", "erf", q, rho, 1)
    assert sp.simplify(expr - 2 / sp.pi * sp.asin(2 * rho / sp.sqrt(3 * (1 + 2 * q)))) == 0


def test_validation() -> None:
    with pytest.raises(ValueError, match="valid names"):
        kernels.correlation_kernel("tanh", "erf", 1.0, 0.0, 1.0)
    with pytest.raises(ValueError, match="valid names"):
        kernels.correlation_kernel_sympy("erf", "gelu")
    with pytest.raises(ValueError, match="positive semi-definite"):
        kernels.correlation_kernel("erf", "erf", 1.0, 1.1, 1.0)
    with pytest.raises(ValueError, match="positive"):
        kernels.correlation_kernel("erf", "erf", 0.0, 0.0, 1.0)
