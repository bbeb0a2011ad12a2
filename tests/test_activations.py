"""Tests of lorabook.activations (lead-owned module): validation, derivatives, sympy forms."""

from __future__ import annotations

import numpy as np
import pytest
import sympy as sp

from lorabook import activations
from lorabook.activations import ACTIVATION_NAMES

POINTS = np.array([-2.7, -1.3, -0.4, 0.35, 0.9, 1.8, 2.6])  # avoid the ReLU kink at 0


@pytest.mark.parametrize("name", ACTIVATION_NAMES)
def test_derivative_matches_finite_differences(name: str) -> None:
    step = 1e-6
    function = activations.activation(name)
    central = (function(POINTS + step) - function(POINTS - step)) / (2 * step)
    scale = 1 + np.abs(central)
    np.testing.assert_allclose(activations.activation_derivative(name)(POINTS) / scale, central / scale, atol=1e-6)


@pytest.mark.parametrize("name", [n for n in ACTIVATION_NAMES if n != "relu"])
def test_second_derivative_matches_finite_differences(name: str) -> None:
    step = 1e-5
    derivative = activations.activation_derivative(name)
    central = (derivative(POINTS + step) - derivative(POINTS - step)) / (2 * step)
    scale = 1 + np.abs(central)
    np.testing.assert_allclose(
        activations.activation_second_derivative(name)(POINTS) / scale, central / scale, atol=1e-6
    )


@pytest.mark.parametrize("name", ACTIVATION_NAMES)
def test_sympy_form_matches_numpy_form(name: str) -> None:
    z = sp.Symbol("z", real=True)
    expr = activations.activation_sympy(name, z)
    numeric = np.array([float(expr.subs(z, float(point))) for point in POINTS])
    np.testing.assert_allclose(activations.activation(name)(POINTS), numeric, rtol=1e-12, atol=1e-12)
    derivative = np.array([float(sp.diff(expr, z).subs(z, float(point))) for point in POINTS])
    np.testing.assert_allclose(activations.activation_derivative(name)(POINTS), derivative, rtol=1e-12, atol=1e-12)


def test_hermite_names_and_polynomial_flags() -> None:
    assert activations.hermite_degree("He7") == 7 and activations.hermite_degree("erf") is None
    assert activations.is_polynomial("linear") and activations.is_polynomial("He3")
    assert not activations.is_polynomial("relu")


def test_relu_second_derivative_is_refused() -> None:
    with pytest.raises(ValueError, match="Dirac"):
        activations.activation_second_derivative("relu")


@pytest.mark.parametrize(
    "function",
    [
        activations.check_activation,
        activations.activation,
        activations.activation_derivative,
        activations.activation_sympy,
        activations.is_polynomial,
        activations.hermite_degree,
    ],
)
def test_unknown_names_list_the_valid_ones(function) -> None:
    with pytest.raises(ValueError) as error:
        function("tanh")
    for name in ACTIVATION_NAMES:
        assert name in str(error.value)
    with pytest.raises(TypeError, match="valid names"):
        function(3)
