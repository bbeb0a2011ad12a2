"""Tests of lorabook.toolkit.activations (lead-owned module): validation, derivatives, sympy forms."""

from __future__ import annotations

import numpy as np
import pytest
import sympy as sp

from lorabook.toolkit import activations
from lorabook.toolkit.activations import ACTIVATION_NAMES

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


# --- Composite targets: squared activations and Hermite combinations ---------------------------

COMPOSITES = ["erf^2", "relu^2", "sigmoid^2", "He3^2", "linear^2", "He1+He3", "He2+0.5*He4", "2*He1-He3"]


@pytest.mark.parametrize("name", COMPOSITES)
def test_composite_derivatives_match_finite_differences(name: str) -> None:
    step = 1e-6
    function, derivative = activations.activation(name), activations.activation_derivative(name)
    central = (function(POINTS + step) - function(POINTS - step)) / (2 * step)
    scale = 1 + np.abs(central)
    np.testing.assert_allclose(derivative(POINTS) / scale, central / scale, atol=1e-6)
    central2 = (derivative(POINTS + step) - derivative(POINTS - step)) / (2 * step)
    scale2 = 1 + np.abs(central2)
    np.testing.assert_allclose(activations.activation_second_derivative(name)(POINTS) / scale2, central2 / scale2,
                               atol=1e-5)


@pytest.mark.parametrize("name", COMPOSITES)
def test_composite_sympy_form_matches_the_definition(name: str) -> None:
    z = sp.Symbol("z", real=True)
    expr = activations.activation_sympy(name, z)
    numeric = np.array([float(expr.subs(z, float(point))) for point in POINTS])
    np.testing.assert_allclose(activations.activation(name)(POINTS), numeric, rtol=1e-12, atol=1e-12)
    base = activations.squared_base(name)
    if base is not None:  # the definition: the square of the base activation
        np.testing.assert_allclose(numeric, activations.activation(base)(POINTS) ** 2, rtol=1e-12)
    else:  # the definition: the linear combination of Hermite polynomials, from numpy's hermeval
        terms = activations.hermite_combination(name)
        expected = sum(float(c) * np.polynomial.hermite_e.hermeval(POINTS, [0] * k + [1]) for k, c in terms.items())
        np.testing.assert_allclose(numeric, expected, rtol=1e-12, atol=1e-12)


def test_composite_names_parse_exactly() -> None:
    from fractions import Fraction

    assert activations.hermite_combination("He2+0.5*He4") == {2: Fraction(1), 4: Fraction(1, 2)}
    assert activations.hermite_combination("2*He1 - He3") == {1: Fraction(2), 3: Fraction(-1)}
    assert activations.hermite_combination("He3+He3") == {3: Fraction(2)}
    assert activations.hermite_combination("He3") is None and activations.hermite_combination("erf^2") is None
    assert activations.squared_base("relu^2") == "relu" and activations.squared_base("relu") is None
    assert activations.is_polynomial("He3^2") and activations.is_polynomial("He1+He3")
    assert not activations.is_polynomial("erf^2") and not activations.is_polynomial("relu^2")
    assert activations.is_composite("He1+He3") and not activations.is_composite("He3")
    # student names stay the plain list; composite names are targets only for check_activation
    with pytest.raises(ValueError):
        activations.check_activation("erf^2")


@pytest.mark.parametrize("bad", ["He3+", "foo^2", "erf^3", "He11+He1", "He0+He1", "He3-He3", "He3 He5", "3*erf"])
def test_invalid_composite_names_are_rejected_with_the_valid_list(bad: str) -> None:
    with pytest.raises(ValueError, match="valid names: linear, erf, relu, sigmoid, He1"):
        activations.check_target(bad)


def test_target_name_must_be_a_string() -> None:
    with pytest.raises(TypeError, match="valid names"):
        activations.check_target(3)


# Activations as objects: a name is resolved once, at the public boundary.


def test_a_name_resolves_to_one_shared_activation_that_is_still_its_name() -> None:
    resolved = activations.resolve_activation("He1+He3")
    assert isinstance(resolved, activations.Activation) and isinstance(resolved, str)
    assert resolved == "He1+He3" and hash(resolved) == hash("He1+He3") and f"{resolved}" == "He1+He3"
    assert activations.resolve_activation("He1+He3") is resolved
    assert activations.check_target(resolved) is resolved
    assert resolved.hermite_terms == {1: 1, 3: 1} and resolved.base is None and not resolved.is_student
    squared = activations.check_target("erf^2")
    assert squared.base is activations.check_activation("erf") and squared.degree is None
    assert activations.check_activation("He4").degree == 4


def test_the_numeric_forms_are_built_once_per_name() -> None:
    assert activations.activation("sigmoid") is activations.activation("sigmoid")
    assert activations.activation_derivative("He2+He4") is activations.resolve_activation("He2+He4").derivative


def test_below_the_boundary_nothing_parses_a_name_again(monkeypatch: pytest.MonkeyPatch) -> None:
    from lorabook.single_index_lora import lora, sgd

    student = activations.resolve_activation("He1+He3")
    teacher = activations.resolve_activation("erf^2")

    def refuse(name: str) -> None:
        raise AssertionError(f"{name!r} parsed again")

    monkeypatch.setattr(activations, "_hermite_combination", refuse)
    monkeypatch.setattr(activations, "_squared_base", refuse)
    monkeypatch.setattr(activations, "_resolved", refuse)
    result = sgd.simulate_reduced(student, teacher=teacher, dimension=50, learning_rate=0.05, batch_size=4,
                                  n_steps=5, n_seeds=2, seed=0, pretraining_strength=0.5, n_records=3)
    assert result.activation is student and result.teacher is teacher
    assert np.isfinite(lora.population_risk(student, 0.5, 0.1, 0.2, teacher=teacher))


def test_a_composite_activation_is_still_refused_as_a_student() -> None:
    composite = activations.resolve_activation("He1+He3")
    with pytest.raises(ValueError, match="activation='He1\\+He3' is not an activation"):
        activations.check_activation(composite, parameter="activation")


def test_an_activation_pickles_as_its_name() -> None:
    import pickle

    resolved = activations.resolve_activation("relu^2")
    resolved.function  # noqa: B018 - a cached lambda must not stop pickling
    assert pickle.loads(pickle.dumps(resolved)) is resolved


@pytest.mark.parametrize("bad, error", [("tanh", ValueError), (3, TypeError), ("He11", ValueError)])
def test_resolve_activation_names_the_parameter(bad: object, error: type) -> None:
    with pytest.raises(error, match="teacher"):
        activations.resolve_activation(bad, parameter="teacher")
