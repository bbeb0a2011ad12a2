"""Tests of lorabook.single_index_lora.search_phase: eigen-direction, truncated Hermite series, escape-time fits."""

from __future__ import annotations

import numpy as np
import pytest
import sympy as sp

from lorabook.single_index_lora import lora, search_phase

MU_VALUES = np.array([0.1, 0.3, 0.5, 0.8])


@pytest.mark.parametrize("degree", [1, 2, 3, 4])
def test_hermite_series_is_exact_for_hermite_polynomials_from_their_degree(degree: int) -> None:
    name = f"He{degree}"
    exact = np.array(lora.linearization(name, MU_VALUES))
    for n_terms in (degree, degree + 1, degree + 5):
        series = np.array(search_phase.hermite_series_linearization(name, MU_VALUES, n_terms))
        np.testing.assert_allclose(series, exact, rtol=1e-10, atol=1e-10)
    if degree >= 2:
        # One term short, the truncation must show: the top coefficient is missing.
        short = np.array(search_phase.hermite_series_linearization(name, MU_VALUES, degree - 1))
        assert np.max(np.abs(short - exact)) > 1e-3


def test_hermite_series_with_a_different_polynomial_teacher() -> None:
    exact = np.array(lora.linearization("He3", MU_VALUES, teacher="He1"))
    series = np.array(search_phase.hermite_series_linearization("He3", MU_VALUES, 3, teacher="He1"))
    np.testing.assert_allclose(series, exact, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("name", ["erf", "sigmoid"])
def test_hermite_series_converges_to_the_exact_search_time_for_smooth_activations(name: str) -> None:
    exact = lora.search_time(name, MU_VALUES)
    errors = [np.max(np.abs(search_phase.hermite_series_search_time(name, MU_VALUES, n) / exact - 1))
              for n in (3, 10, 60)]
    assert errors[0] > 1e-6  # truncation visible at small N
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] < 1e-10


def test_relu_series_converges_slowly_from_below() -> None:
    exact = lora.search_time("relu", 0.1)
    values = np.array([search_phase.hermite_series_search_time("relu", 0.1, n) for n in (10, 20, 40, 80)])
    assert np.all(values < exact) and np.all(np.diff(values) > 0)
    assert exact - values[-1] < 0.5 * (exact - values[0])


def test_mean_term_of_the_relu_series_matches_its_closed_form() -> None:
    # The k = 0 term contributes c_0 a_0'(mu^2) = (1/sqrt(2 pi)) (1/(2 mu sqrt(2 pi))) = 1/(4 pi mu) to -F_q,
    # so dropping it changes B = -2 F_q by -1/(2 pi mu) and A by -2 mu/(4 pi mu) = -1/(2 pi), at any N.
    for n_terms in (5, 30):
        full = np.array(search_phase.hermite_series_linearization("relu", MU_VALUES, n_terms))
        without = np.array(search_phase.hermite_series_linearization("relu", MU_VALUES, n_terms, lowest_order=1))
        np.testing.assert_allclose(without[1] - full[1], -1 / (2 * np.pi * MU_VALUES), rtol=1e-10)
        np.testing.assert_allclose(without[0] - full[0], -1 / (2 * np.pi), rtol=1e-10)


def test_hermite_series_shapes_and_errors() -> None:
    a, b = search_phase.hermite_series_linearization("linear", 0.5, 3)
    assert isinstance(a, float) and isinstance(b, float)
    a, b = search_phase.hermite_series_linearization("linear", np.full((2, 3), 0.5), 3)
    assert a.shape == b.shape == (2, 3)
    with pytest.raises(ValueError, match="n_terms"):
        search_phase.hermite_series_linearization("linear", 0.5, -1)
    with pytest.raises(TypeError, match="n_terms"):
        search_phase.hermite_series_linearization("linear", 0.5, 2.0)
    with pytest.raises(ValueError, match="lowest_order"):
        search_phase.hermite_series_linearization("linear", 0.5, 3, lowest_order=2)
    with pytest.raises(ValueError):
        search_phase.hermite_series_linearization("tanh", 0.5, 3)
    with pytest.raises(ValueError):
        search_phase.hermite_series_linearization("linear", 1.5, 3)


@pytest.mark.parametrize("a, b", [(0.5, -1.0), (-0.3, -0.5), (0.2, 1.0), (0.0, 2.0)])
def test_unstable_direction_is_the_unit_eigenvector_of_the_positive_eigenvalue(a: float, b: float) -> None:
    e = np.array(search_phase.unstable_direction(a, b))
    matrix = np.array([[b, a], [a, 0.0]])
    rate = float(lora.escape_rate(a, b))
    assert rate > 0
    np.testing.assert_allclose(matrix @ e, rate * e, atol=1e-14)
    assert abs(np.linalg.norm(e) - 1) < 1e-14 and e[0] >= 0


def test_unstable_direction_errors() -> None:
    with pytest.raises(ValueError, match="no unstable mode"):
        search_phase.unstable_direction(0.0, -1.0)
    with pytest.raises(ValueError, match="finite"):
        search_phase.unstable_direction(np.nan, -1.0)
    with pytest.raises(TypeError):
        search_phase.unstable_direction("a", -1.0)


def test_discrete_search_time() -> None:
    tau = np.array([0.5, 3.0, 40.0])
    for rate in (1e-6, 0.05, 0.2):
        value = search_phase.discrete_search_time(tau, rate)
        # (1 + eta/tau)^(1/eta) = exp(1/tau_eta): the per-unit-time growth of the mean map (the power of a
        # rounded 1 + eta/tau with eta = 1e-6 keeps about 9 digits).
        np.testing.assert_allclose((1 + rate / tau) ** (1 / rate), np.exp(1 / value), rtol=1e-8)
    np.testing.assert_allclose(search_phase.discrete_search_time(tau, 1e-6), tau + 0.5e-6, rtol=1e-9)
    assert search_phase.discrete_search_time(np.inf, 0.1) == np.inf
    with pytest.raises(ValueError, match="learning_rate"):
        search_phase.discrete_search_time(1.0, 0.0)
    with pytest.raises(ValueError, match="search_time"):
        search_phase.discrete_search_time(-1.0, 0.1)


def test_escape_time_slope_recovers_a_known_slope_with_a_calibrated_error() -> None:
    rng = np.random.default_rng(3)
    dimensions = np.array([1e2, 1e3, 1e4, 1e5])
    true_slope, spread = 1.7, 0.8
    slopes, errors = [], []
    for _ in range(400):
        times = 2.0 + true_slope * np.log(dimensions)[:, None] + spread * rng.standard_normal((4, 10))
        slope, intercept, error = search_phase.escape_time_slope(dimensions, times)
        slopes.append(slope)
        errors.append(error)
    slopes, errors = np.array(slopes), np.array(errors)
    # Unbiased, and the reported standard error matches the spread of the estimates (within 10%).
    assert abs(slopes.mean() - true_slope) < 4 * slopes.std() / np.sqrt(slopes.size)
    assert abs(errors.mean() / slopes.std() - 1) < 0.1


def test_escape_time_slope_exact_line_and_flat_input() -> None:
    dimensions = np.repeat([10.0, 100.0, 1000.0], 2)
    times = 0.5 * np.log(dimensions) + 3.0
    slope, intercept, error = search_phase.escape_time_slope(dimensions, times)
    assert abs(slope - 0.5) < 1e-12 and abs(intercept - 3.0) < 1e-12 and error < 1e-12


def test_escape_time_slope_errors() -> None:
    with pytest.raises(ValueError, match="finite"):
        search_phase.escape_time_slope([10, 100, 1000], [1.0, np.inf, 2.0])
    with pytest.raises(ValueError, match="distinct"):
        search_phase.escape_time_slope([10, 10, 10], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="one entry per run"):
        search_phase.escape_time_slope([10, 100], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="positive"):
        search_phase.escape_time_slope([-10, 100, 1000], [1.0, 2.0, 3.0])


def test_search_time_divergence_constant() -> None:
    assert search_phase.search_time_divergence_sympy("linear") == 1
    assert search_phase.search_time_divergence_sympy("relu") == 2
    for name in ("erf", "He3"):
        constant = float(search_phase.search_time_divergence_sympy(name))
        mu = 1 - 1e-4
        assert abs((1 - mu) ** 2 * lora.search_time(name, mu) / constant - 1) < 1e-2
    assert isinstance(search_phase.search_time_divergence_sympy("erf"), sp.Expr)
    # A mismatched teacher with A(1) != 0 has no divergence.
    with pytest.raises(ValueError, match="A\\(1\\)"):
        search_phase.search_time_divergence_sympy("linear", teacher="He3")


def test_series_accepts_composite_targets() -> None:
    # A squared teacher: the series (analytic erf, erf^2) converges to the exact linearisation.
    series = search_phase.hermite_series_linearization("erf", 0.5, 40, teacher="erf^2")
    exact = lora.linearization("erf", 0.5, teacher="erf^2")
    np.testing.assert_allclose(series, exact, rtol=1e-9)


def test_output_gradient_moment_closed_forms() -> None:
    # Linear student, linear teacher: h = (mu - 1) z, E[h^2] = (1 - mu)^2.
    assert search_phase.output_gradient_moment("linear", 0.3) == pytest.approx(0.49, rel=1e-12)
    # Linear student, teacher He1^2 = z^2: h = mu z - z^2, E[h^2] = mu^2 + 3.
    assert search_phase.output_gradient_moment("linear", 0.3, teacher="He1^2") == pytest.approx(3.09, rel=1e-12)


@pytest.mark.parametrize("name, mu, seed", [("linear", 0.5, 11), ("erf", 0.5, 12), ("linear", 0.8, 13)])
def test_measure_search_time_recovers_the_exact_search_time(name: str, mu: float, seed: int) -> None:
    measured, measured_se, tau_eta = search_phase.measure_search_time(name, mu, n_seeds=8, seed=seed)
    tau = lora.search_time(name, mu)
    assert tau < tau_eta < 1.02 * tau  # at least 20 steps: tau_eta - tau < 1.3% tau
    # 5 standard errors of an 8-seed mean (the sample s.e. of 8 seeds fluctuates by ~25%).
    assert abs(measured - tau_eta) < 5 * measured_se, (measured, measured_se, tau_eta)
    # The check has power: the error bar is a small fraction of tau.
    assert measured_se < 0.03 * tau


def test_measure_search_time_with_a_squared_teacher_and_its_power() -> None:
    # erf student on y^2 at mu = 0.5: tau = 8.04, against 45.6 for the matching teacher.
    measured, measured_se, tau_eta = search_phase.measure_search_time("erf", 0.5, teacher="erf^2", n_seeds=8, seed=14)
    tau = lora.search_time("erf", 0.5, teacher="erf^2")
    assert tau < tau_eta < 1.02 * tau
    # 5 standard errors of an 8-seed mean, as above.
    assert abs(measured - tau_eta) < 5 * measured_se, (measured, measured_se, tau_eta)
    # The same measurement rejects the matching-teacher value and a 20% error in tau.
    assert abs(measured - lora.search_time("erf", 0.5)) > 5 * measured_se
    assert abs(measured - 1.2 * tau_eta) > 5 * measured_se


@pytest.mark.parametrize("settings, message", [
    (dict(n_seeds=1, seed=0), "n_seeds"),
    (dict(n_seeds=4, seed=0, amplitude=0.0), "amplitude"),
    (dict(n_seeds=4, seed=0, growth=-1.0), "growth"),
    (dict(n_seeds=4, seed=0, noise_factor=np.inf), "noise_factor"),
])
def test_measure_search_time_rejects_bad_settings(settings: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        search_phase.measure_search_time("linear", 0.5, **settings)


def test_measure_search_time_rejects_bad_mu_and_names() -> None:
    with pytest.raises(ValueError, match="mu"):
        search_phase.measure_search_time("linear", 1.5, n_seeds=4, seed=0)
    with pytest.raises(ValueError, match="scalar"):
        search_phase.measure_search_time("linear", [0.5, 0.6], n_seeds=4, seed=0)
    with pytest.raises(ValueError, match="valid"):
        search_phase.output_gradient_moment("linear", 0.5, teacher="cubic")


@pytest.mark.parametrize("name, teacher", [("linear", None), ("erf", None), ("He3", None), ("He2", None),
                                           ("erf", "He3")])
def test_antithetic_moment_doubles_an_odd_output_gradient(name: str, teacher: str | None) -> None:
    # h(z) = (s(mu z) - s_*(z)) s'(mu z) is odd when s, s_* are both odd or both even: a pair
    # (x, -x) then carries 2 z2 h(z) and the moment of the pairs is 2 E[h^2].
    plain = search_phase.output_gradient_moment(name, 0.4, teacher=teacher)
    paired = search_phase.output_gradient_moment(name, 0.4, teacher=teacher, antithetic=True)
    assert paired == pytest.approx(2 * plain, rel=1e-10)


@pytest.mark.parametrize("name, teacher", [("He5", "He5^2"), ("erf", "erf^2"), ("He3", "He4"), ("relu", "relu^2")])
def test_antithetic_moment_against_adaptive_quadrature(name: str, teacher: str) -> None:
    from scipy import integrate

    from lorabook.toolkit.activations import activation, activation_derivative

    s, s_prime, target = activation(name), activation_derivative(name), activation(teacher)
    mu = 0.3

    def odd_part_squared(z: float) -> float:
        h_plus = (s(mu * z) - target(z)) * s_prime(mu * z)
        h_minus = (s(-mu * z) - target(-z)) * s_prime(-mu * z)
        return 0.5 * (h_plus - h_minus) ** 2 * np.exp(-0.5 * z * z) / np.sqrt(2 * np.pi)

    # Even integrand: twice the half line, split at 0 where ReLU has its kink.
    expected = 2 * integrate.quad(odd_part_squared, 0, np.inf, epsabs=0, epsrel=1e-12, limit=200)[0]
    paired = search_phase.output_gradient_moment(name, mu, teacher=teacher, antithetic=True)
    assert paired == pytest.approx(expected, rel=1e-8)
    if name != "relu":  # odd student, even teacher: the label drops out, 2 E[(s s')(mu z)^2]
        no_label = 2 * integrate.quad(lambda z: 2 * (s(mu * z) * s_prime(mu * z)) ** 2 * np.exp(-0.5 * z * z)
                                      / np.sqrt(2 * np.pi), 0, np.inf, epsabs=0, epsrel=1e-12)[0]
        assert paired == pytest.approx(no_label, rel=1e-8)
        gain = search_phase.output_gradient_moment(name, mu, teacher=teacher) / paired
        assert gain > (1e6 if name == "He5" else 2)  # He5^2: E[h^2] = 4.7e10 against 2.9e3


def test_measure_search_time_with_antithetic_batches_for_a_squared_hermite_teacher() -> None:
    # He5 on y^2: E[h^2] tau^2 ~ 6e8 makes plain SGD unaffordable, antithetic pairs remove the label noise.
    measured, measured_se, tau_eta = search_phase.measure_search_time("He5", 0.3, teacher="He5^2", n_seeds=8,
                                                                      seed=21, antithetic=True)
    tau = lora.search_time("He5", 0.3, teacher="He5^2")
    assert tau < tau_eta < 1.02 * tau
    assert abs(measured - tau_eta) < 5 * measured_se, (measured, measured_se, tau_eta)  # 8 seeds, as above
    assert abs(measured - 1.1 * tau_eta) > 5 * measured_se  # power: a 10% error is rejected


def test_antithetic_flag_must_be_a_bool() -> None:
    with pytest.raises(TypeError, match="antithetic"):
        search_phase.output_gradient_moment("He3", 0.5, antithetic="yes")
    with pytest.raises(TypeError, match="antithetic"):
        search_phase.measure_search_time("He3", 0.5, n_seeds=4, seed=0, antithetic=1)
