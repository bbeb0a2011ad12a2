"""Tests of lorabook.single_index_lora.lora: the linearisation at the pre-trained point and the search time."""

from __future__ import annotations

import mpmath as mp
import numpy as np
import pytest
import sympy as sp
from numpy.polynomial.hermite_e import hermegauss

from lorabook.single_index_lora import lora
from lorabook.toolkit.activations import (
    ACTIVATION_NAMES,
    activation,
    activation_derivative,
    activation_second_derivative,
    activation_sympy,
    is_polynomial,
)
from lorabook.toolkit.overlap_equations import overlap_equations

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


@pytest.mark.slow  # high-precision quadrature, seconds per case
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


@pytest.mark.slow  # high-precision quadrature, seconds per case
@pytest.mark.parametrize("student, teacher", [("erf", "erf"), ("relu", "relu"), ("relu", "He3"),
                                              ("relu", "erf"), ("He3", "relu"), ("linear", "relu")])
def test_quadrature_path_matches_closed_forms(student: str, teacher: str) -> None:
    # The quadrature branch (sigmoid and mixed erf/relu pairs) on pairs that also have a closed
    # form, including a ReLU student, whose delta term the quadrature branch handles analytically.
    for mu in (0.2, 0.8):
        closed = lora.linearization(student, mu, teacher=teacher)
        quadrature = lora._quadrature_linearization(student, teacher, mu)
        np.testing.assert_allclose(closed, quadrature, rtol=1e-9, atol=1e-12)


def _mp_mixed_linearization(student: str, teacher: str, mu: float):
    """(A, B) for any pair in 20-digit mpmath, from the 1-D formulas (ReLU handled analytically)."""
    mu = mp.mpf(mu)
    density = lambda z: mp.exp(-z * z / 2) / mp.sqrt(2 * mp.pi)  # noqa: E731
    expect = lambda f: mp.quad(lambda z: f(z) * density(z), [-mp.inf, 0, mp.inf])  # noqa: E731
    relu = (lambda z: z if z > 0 else mp.mpf(0)), (lambda z: mp.mpf(1) if z > 0 else mp.mpf(0))
    t, dt = relu if teacher == "relu" else _mp_functions(teacher)[:2]
    if student == "relu":
        risk_q = (mp.mpf(1) / 2 - t(mp.mpf(0)) / (mu * mp.sqrt(2 * mp.pi))) / 2
        risk_rho = -expect(lambda z: dt(z) if z > 0 else mp.mpf(0))
    else:
        s, ds, d2s = _mp_functions(student)
        risk_q = expect(lambda z: ds(mu * z) ** 2 + d2s(mu * z) * (s(mu * z) - t(z))) / 2
        risk_rho = -expect(lambda z: ds(mu * z) * dt(z))
    return -(2 * mu * risk_q + risk_rho), -2 * risk_q


@pytest.mark.parametrize("student, teacher", [("erf", "relu"), ("relu", "sigmoid"), ("sigmoid", "relu"),
                                              ("erf", "sigmoid"), ("sigmoid", "He3")])
def test_mixed_pairs_without_closed_form_match_mpmath(student: str, teacher: str) -> None:
    grid = (0.1, 0.5, 0.9)
    computed = np.array(lora.linearization(student, np.array(grid), teacher=teacher))
    with mp.workdps(20):
        expected = np.array([[float(v) for v in _mp_mixed_linearization(student, teacher, mu)] for mu in grid]).T
    np.testing.assert_allclose(computed, expected, rtol=1e-8, atol=1e-12)
    with pytest.raises(NotImplementedError, match="quadrature"):
        lora.linearization_sympy(student, teacher)


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


# --- The full overlap flow: risk, gradient, E[G^2] and the ODE right-hand side ----------------

SMOOTH_OR_CLOSED = [name for name in ACTIVATION_NAMES if name != "sigmoid"]
# (student, teacher) pairs beyond the matching ones: a polynomial student with a Hermite teacher,
# mixed closed-form pairs, and the quadrature path with a kinked partner.
CROSS_PAIRS = [("linear", "He3"), ("erf", "relu"), ("relu", "He2"), ("He2", "erf"), ("relu", "sigmoid"),
               ("sigmoid", "He3")]
# Composite targets (lorabook.toolkit.activations): squared teachers and a two-term Hermite model.
COMPOSITE_PAIRS = [("erf", "erf^2"), ("relu", "relu^2"), ("sigmoid", "sigmoid^2"), ("He3", "He3^2"),
                   ("linear", "linear^2"), ("He1+He3", None), ("He2", "He2+0.5*He4")]
ALL_PAIRS = [(name, None) for name in ACTIVATION_NAMES] + CROSS_PAIRS + COMPOSITE_PAIRS


def _explicit_preactivations(mu: float, u: float, m: float, n_samples: int, seed: int):
    """(lambda, lambda_*) from explicit vectors in dimension 3, independent of the (q, rho) reduction."""
    rng = np.random.default_rng(seed)
    target = np.array([1.0, 0.0, 0.0])
    direction = np.array([m, np.sqrt(1.0 - m * m), 0.0])
    weight = mu * target + u * direction
    inputs = rng.standard_normal((n_samples, 3))
    return inputs @ weight, inputs @ target


def _random_states(seed: int, count: int = 3):
    rng = np.random.default_rng(seed)
    return [(rng.uniform(0.1, 1.0), rng.uniform(-1.2, 1.2), rng.uniform(-1.0, 1.0)) for _ in range(count)]


def _polynomial_degree(name: str) -> int:
    return int(sp.degree(activation_sympy(name, sp.Symbol("z"))))


def _monte_carlo_is_reliable(student: str, teacher: str, power: int) -> bool:
    """Whether the sample standard error of a degree-`power`-in-s statistic can be trusted.

    Moments of high-degree polynomials of Gaussians are dominated by rare large samples, and the
    sample standard error then underestimates the error badly (e.g. G^2 for He5 has degree 18:
    2e5 samples gave 1.5e5 +- 5e4 for an exact 1.3e6). Polynomial statistics of degree <= 12 are
    checked by Monte Carlo, the others against independent quadrature instead.
    """
    degrees = [_polynomial_degree(name) for name in (student, teacher) if is_polynomial(name)]
    return not degrees or power * max(degrees) <= 12


def _tensor_quadrature_moment(student: str, teacher: str, mu: float, u: float, m: float, moment: str) -> float:
    """Tensor Gauss-Hermite with 30 nodes per axis: exact (to rounding) for the polynomial
    statistics here (degree <= 38 < 2 * 30), and independent of Wick's theorem."""
    from lorabook.toolkit.gaussian import gaussian_expectation_2d

    q, rho = mu**2 + u**2 + 2 * mu * u * m, mu + u * m
    rho = float(np.clip(rho, -np.sqrt(q), np.sqrt(q)))
    s, t, ds = activation(student), activation(teacher), activation_derivative(student)
    if moment == "risk":
        integrand = lambda a, b: 0.5 * (s(a) - t(b)) ** 2  # noqa: E731
    else:
        integrand = lambda a, b: (u * (s(a) - t(b)) * ds(a)) ** 2  # noqa: E731
    return float(gaussian_expectation_2d(integrand, q, rho, 1.0, n_nodes=30))


@pytest.mark.parametrize("student, teacher", ALL_PAIRS)
def test_population_risk_and_gradient_moment_match_monte_carlo(student: str, teacher) -> None:
    teacher_name = student if teacher is None else teacher
    s, t, ds = activation(student), activation(teacher_name), activation_derivative(student)
    for index, (mu, u, m) in enumerate(_random_states(seed=11)):
        preactivation, target = _explicit_preactivations(mu, u, m, n_samples=100_000, seed=100 + index)
        residual = s(preactivation) - t(target)
        checks = (("risk", 2, lora.population_risk(student, mu, u, m, teacher), 0.5 * residual**2),
                  ("moment", 4, lora.gradient_second_moment(student, mu, u, m, teacher),
                   (u * residual * ds(preactivation)) ** 2))
        for moment, power, exact, samples in checks:
            if _monte_carlo_is_reliable(student, teacher_name, power):
                standard_error = samples.std(ddof=1) / np.sqrt(samples.size)
                # 5 standard errors: a false alarm has probability ~1e-6 per comparison (CLT).
                assert abs(samples.mean() - exact) < 5 * standard_error, (moment, mu, u, m, exact, samples.mean())
            else:
                # Wick's theorem against tensor Gauss-Hermite (both exact for polynomials).
                reference = _tensor_quadrature_moment(student, teacher_name, mu, u, m, moment)
                assert exact == pytest.approx(reference, rel=1e-9), (moment, mu, u, m)


@pytest.mark.parametrize("name", ACTIVATION_NAMES)
def test_global_minimum_for_a_matching_teacher(name: str) -> None:
    mu = np.array([0.1, 0.5, 0.9, 1.0])
    u, m = 1.0 - mu, np.ones_like(mu)
    risk = lora.population_risk(name, mu, u, m)
    du_dt, dm_dt = lora.overlap_ode_rhs(name, mu, u, m, noise_strength=0.4)
    scale = max(1.0, float(lora.population_risk(name, 0.5, 0.0, 0.0)))
    # Rounding only: q = rho = 1 is reached up to ~1e-16, and the risk is a sum of O(scale) terms.
    assert np.all(np.abs(risk) < 1e-12 * scale), risk
    # At the minimum the flow stops: 2 F_q + F_rho = 0 at q = rho = 1, G = 0 identically.
    assert np.all(np.abs(du_dt) < 1e-9 * scale) and np.all(np.abs(dm_dt) < 1e-9 * scale), (du_dt, dm_dt)
    # ... and it is a minimum: the risk is positive away from it.
    assert np.all(lora.population_risk(name, mu, u + 0.1, m) > 0)


@pytest.mark.parametrize("student, teacher", ALL_PAIRS)
def test_gradient_matches_central_differences_of_the_risk(student: str, teacher) -> None:
    # A central difference with step h has truncation error ~ h^2 R'''/6 and rounding error
    # ~ eps |R| / h; the quadrature path (sigmoid pairs) is accurate to ~1e-14, so h = 1e-4 keeps
    # both below ~1e-8 relative to the scale of the gradient.
    step = 1e-4
    for mu, u, m in _random_states(seed=5):
        m = float(np.clip(m, -0.9, 0.9))  # m +- step stays inside [-1, 1]
        du_dt, dm_dt = lora.overlap_ode_rhs(student, mu, u, m, teacher)
        risk = lambda uu, mm: lora.population_risk(student, mu, uu, mm, teacher)  # noqa: E731
        d_risk_du = (risk(u + step, m) - risk(u - step, m)) / (2 * step)
        d_risk_dm = (risk(u, m + step) - risk(u, m - step)) / (2 * step)
        scale = max(1.0, abs(d_risk_du), abs(d_risk_dm))
        assert abs(-du_dt - d_risk_du) < 1e-6 * scale, (mu, u, m, -du_dt, d_risk_du)
        assert abs(-dm_dt - (1 - m * m) * d_risk_dm) < 1e-6 * scale, (mu, u, m, -dm_dt, d_risk_dm)


def _boundary_derivatives_by_quadrature(student: str, teacher: str, mu: float) -> tuple[float, float]:
    """F_q, F_rho at q = mu^2, rho = mu from the 1-D formulas by adaptive quadrature (scipy).

    F_q = E[s'(mu z)^2 + s''(mu z)(s(mu z) - t(z))]/2, F_rho = -E[s'(mu z) t'(z)]; for a ReLU
    student s''(mu z) = delta(z)/mu, so its term is phi(0) (relu(0) - t(0)) / mu.
    """
    from scipy import integrate

    density = lambda z: np.exp(-0.5 * z * z) / np.sqrt(2 * np.pi)  # noqa: E731
    expect = lambda f: sum(integrate.quad(lambda z: f(z) * density(z), low, high, epsabs=1e-13, epsrel=1e-13,  # noqa: E731
                                          limit=200)[0] for low, high in ((-np.inf, 0.0), (0.0, np.inf)))
    s, ds = activation(student), activation_derivative(student)
    t, dt = activation(teacher), activation_derivative(teacher)
    first_q = expect(lambda z: ds(mu * z) ** 2)
    if student == "relu":
        second_q = density(0.0) * (0.0 - float(t(np.array(0.0)))) / mu
    else:
        d2s = activation_second_derivative(student)
        second_q = expect(lambda z: d2s(mu * z) * (s(mu * z) - t(z)))
    return 0.5 * (first_q + second_q), -expect(lambda z: ds(mu * z) * dt(z))


@pytest.mark.parametrize("student, teacher", ALL_PAIRS)
def test_gradient_at_the_boundary_equals_the_one_dimensional_formulas(student: str, teacher) -> None:
    mu = np.array([0.1, 0.4, 0.7, 1.0])
    if teacher is not None:
        # Mixed pairs: lora's sympy 1-D integrals are not needed elsewhere; check against scipy.
        pairs = [_boundary_derivatives_by_quadrature(student, teacher, value) for value in mu]
        expected_q, expected_rho = np.array(pairs).T
    elif student == "sigmoid":
        coefficient_a, coefficient_b = lora.linearization(student, mu, teacher)
        expected_q = -coefficient_b / 2
        expected_rho = -(coefficient_a + 2 * mu * expected_q)
    else:
        risk_q, risk_rho = lora.pretrained_risk_derivatives_sympy(student, teacher)
        expected_q = np.array([float(risk_q.subs(lora.MU, value)) for value in mu])
        expected_rho = np.array([float(risk_rho.subs(lora.MU, value)) for value in mu])
    scale = max(1.0, np.max(np.abs(expected_q)), np.max(np.abs(expected_rho)))
    # q = rho^2 at u = 0 for any m; the quadrature references are accurate to ~1e-13, the
    # sympy ones exact.
    for m in (0.0, 0.6, -1.0, 1.0):
        risk_q, risk_rho = lora.risk_derivatives(student, mu, 0.0, m, teacher)
        np.testing.assert_allclose(risk_q, expected_q, rtol=0, atol=1e-10 * scale)
        np.testing.assert_allclose(risk_rho, expected_rho, rtol=0, atol=1e-10 * scale)
    # Approaching the boundary (the start of fine-tuning, u ~ d^-2) is continuous, without loss of
    # digits: the change is O(u) (for ReLU, sqrt(q - rho^2) = |u| sqrt(1 - m^2)).
    for u in (1e-6, -1e-9):
        risk_q, risk_rho = lora.risk_derivatives(student, mu, u, 0.3, teacher)
        assert np.all(np.abs(risk_q - expected_q) < 100 * abs(u) * scale), (u, risk_q, expected_q)
        assert np.all(np.abs(risk_rho - expected_rho) < 100 * abs(u) * scale), (u, risk_rho, expected_rho)


def test_relu_boundary_term_is_exact_near_the_boundary() -> None:
    # F_q = 1/4 - sqrt(q - rho^2) / (4 pi q) for relu/relu at u = 1e-12: computing q - rho^2 by
    # subtracting two floats near mu^2 = 0.25 would err by ~1e-17, hence by ~1e-9 in F_q; the
    # result must instead be correct to rounding (a few ulps of 0.25, i.e. ~1e-16).
    mu, u, m = 0.5, 1e-12, 0.3
    risk_q, _ = lora.risk_derivatives("relu", mu, u, m)
    with mp.workdps(40):
        mu_, u_, m_ = mp.mpf(mu), mp.mpf(u), mp.mpf(m)
        q = mu_**2 + u_**2 + 2 * mu_ * u_ * m_
        expected = float(mp.mpf(1) / 4 - mp.sqrt(q - (mu_ + u_ * m_) ** 2) / (4 * mp.pi * q))
    assert abs(risk_q - expected) < 2e-16, (risk_q, expected)
    assert 0.25 - risk_q > 2e-13  # the O(u) boundary term is resolved, not rounded away


@pytest.mark.parametrize("name", ACTIVATION_NAMES)
def test_jacobian_at_the_pretrained_point_is_the_linearisation(name: str) -> None:
    # Central differences: O(step^2) truncation for smooth activations, O(step / (2 pi mu^2)) for
    # ReLU (its F_q contains |u| sqrt(1 - m^2) / (4 pi q)), O(1e-16 / step) rounding: all < 1e-7.
    step = 1e-8
    for mu in (0.2, 0.7):
        coefficient_a, coefficient_b = lora.linearization(name, mu)
        columns = []
        for direction in ((step, 0.0), (0.0, step)):
            plus = np.array(lora.overlap_ode_rhs(name, mu, direction[0], direction[1], noise_strength=0.4))
            minus = np.array(lora.overlap_ode_rhs(name, mu, -direction[0], -direction[1], noise_strength=0.4))
            columns.append((plus - minus) / (2 * step))
        jacobian = np.column_stack(columns)
        expected = np.array([[coefficient_b, coefficient_a], [coefficient_a, 0.0]])
        scale = max(1.0, np.max(np.abs(expected)))
        np.testing.assert_allclose(jacobian, expected, rtol=0, atol=1e-6 * scale)


@pytest.mark.parametrize(
    "student, teacher",
    [("linear", None), ("erf", None), ("relu", None), ("He3", None), ("He4", None), ("linear", "He3"), ("relu", "He2")],
)
def test_symbolic_drift_and_risk_are_what_the_numerics_evaluate(student: str, teacher) -> None:
    du_expr, dm_expr = lora.overlap_drift_sympy(student, teacher)
    risk_expr = lora.risk_function_sympy(student, teacher)
    for mu, u, m in _random_states(seed=3):
        values = {lora.MU: mu, lora.U: u, lora.M: m}
        du_dt, dm_dt = lora.overlap_ode_rhs(student, mu, u, m, teacher)
        assert float(du_expr.subs(values)) == pytest.approx(du_dt, rel=1e-10, abs=1e-12)
        assert float(dm_expr.subs(values)) == pytest.approx(dm_dt, rel=1e-10, abs=1e-12)
        q, rho = mu**2 + u**2 + 2 * mu * u * m, mu + u * m
        assert float(risk_expr.subs({lora.Q: q, lora.RHO: rho})) == pytest.approx(
            lora.population_risk(student, mu, u, m, teacher), rel=1e-10, abs=1e-12
        )


def test_linear_flow_in_closed_form() -> None:
    # F = q/2 - rho + 1/2: du/dt = (1 - mu) m - u, dm/dt = (1 - mu) u (1 - m^2), E[G^2] = u^2 (q - 2 rho + 1).
    du_expr, dm_expr = lora.overlap_drift_sympy("linear")
    mu, u, m = lora.MU, lora.U, lora.M
    assert sp.simplify(du_expr - ((1 - mu) * m - u)) == 0
    assert sp.simplify(dm_expr - (1 - mu) * u * (1 - m**2)) == 0
    assert sp.expand(lora.gradient_second_moment_sympy("linear") - (lora.Q - 2 * lora.RHO + 1)) == 0
    du_dt, dm_dt = lora.overlap_ode_rhs("linear", 0.3, 0.4, 0.5, noise_strength=2.0)
    q, rho = 0.09 + 0.16 + 0.12, 0.3 + 0.2
    assert du_dt == pytest.approx(0.7 * 0.5 - 0.4, rel=1e-13)
    assert dm_dt == pytest.approx(0.7 * 0.4 * 0.75 - 0.5 * 2.0 * 0.5 * 0.16 * (q - 2 * rho + 1), rel=1e-13)


def test_relu_gradient_has_no_inverse_square_roots() -> None:
    risk_q, risk_rho = lora.risk_derivatives_sympy("relu")
    q, rho = lora.Q, lora.RHO
    assert sp.simplify(risk_q - (sp.Rational(1, 4) - sp.sqrt(q - rho**2) / (4 * sp.pi * q))) == 0
    assert sp.simplify(risk_rho + sp.Rational(1, 4) + sp.asin(rho / sp.sqrt(q)) / (2 * sp.pi)) == 0


@pytest.mark.parametrize("name", ACTIVATION_NAMES)
def test_no_nan_on_a_grid_including_the_boundary(name: str) -> None:
    mu, u, m = np.meshgrid(
        [0.1, 0.5, 1.0],
        [-1.5, -1.0, -0.5, -1e-8, 0.0, 1e-8, 0.3, 0.5, 1.0, 1.5],
        [-1.0, -0.5, 0.0, 0.5, 1.0],
        indexing="ij",
    )
    if name == "relu":
        # w = mu w_* + u v = 0 (u = mu, m = -1 or u = -mu, m = 1) is where the ReLU risk is not
        # differentiable (p_lambda(0) ~ q^-1/2 diverges); keep every other point of the grid.
        keep = ~(((u == mu) & (m == -1.0)) | ((u == -mu) & (m == 1.0)))
        mu, u, m = mu[keep], u[keep], m[keep]
    outputs = [
        lora.population_risk(name, mu, u, m),
        lora.gradient_second_moment(name, mu, u, m),
        *lora.risk_derivatives(name, mu, u, m),
        *lora.overlap_ode_rhs(name, mu, u, m, noise_strength=0.4),
    ]
    for output in outputs:
        assert output.shape == mu.shape and np.all(np.isfinite(output))


def test_scalar_in_scalar_out_and_broadcasting() -> None:
    assert isinstance(lora.population_risk("erf", 0.5, 0.1, 0.2), float)
    du_dt, dm_dt = lora.overlap_ode_rhs("erf", 0.5, 0.1, 0.2)
    assert isinstance(du_dt, float) and isinstance(dm_dt, float)
    grid = lora.population_risk("erf", np.array([[0.2], [0.6]]), np.array([0.0, 0.1, 0.4]), 0.3)
    assert grid.shape == (2, 3)
    assert grid[1, 2] == pytest.approx(lora.population_risk("erf", 0.6, 0.4, 0.3), rel=1e-14)
    noisy = lora.overlap_ode_rhs("erf", 0.5, 0.1, 0.2, noise_strength=np.array([0.0, 1.0]))
    assert noisy[0].shape == (2,) and noisy[0][0] == noisy[0][1] and noisy[1][1] < noisy[1][0]


def test_validation_of_the_overlap_flow_arguments() -> None:
    with pytest.raises(ValueError, match="valid names: linear, erf, relu, sigmoid, He1"):
        lora.population_risk("tanh", 0.5, 0.1, 0.2)
    with pytest.raises(ValueError, match="valid names"):
        lora.overlap_ode_rhs("erf", 0.5, 0.1, 0.2, teacher="He11")
    with pytest.raises(TypeError, match="valid names"):
        lora.gradient_second_moment(3, 0.5, 0.1, 0.2)
    for bad_mu in (0.0, 1.2, np.nan):
        with pytest.raises(ValueError, match=r"\(0, 1\]"):
            lora.population_risk("linear", bad_mu, 0.1, 0.2)
    for bad_m in (1.0001, -2.0, [0.5, 1.5]):
        with pytest.raises(ValueError, match=r"\[-1, 1\]"):
            lora.risk_derivatives("linear", 0.5, 0.1, bad_m)
    with pytest.raises(ValueError, match="finite"):
        lora.population_risk("linear", 0.5, np.inf, 0.2)
    with pytest.raises(ValueError, match=">= 0"):
        lora.overlap_ode_rhs("linear", 0.5, 0.1, 0.2, noise_strength=-1.0)
    with pytest.raises(TypeError):
        lora.population_risk("linear", 0.5, "large", 0.2)
    with pytest.raises(NotImplementedError, match="sigmoid"):
        lora.risk_function_sympy("erf", "sigmoid")
    with pytest.raises(NotImplementedError, match="polynomial"):
        lora.gradient_second_moment_sympy("erf")


@pytest.mark.parametrize("name", ["linear", "erf"])
def test_noise_correction_matches_one_spherical_sgd_step(name: str) -> None:
    """Mean change of m in one step of spherical SGD, E[m' - m] / eta, against dm/dt.

    Exact reduced simulator of one step: with w_* = e1 and v = m e1 + sqrt(1 - m^2) e2, only the
    two input components (a, b) along e1, e2 enter the labels; the gradient's component orthogonal
    to both, (1/B) sum_nu G_nu x_perp_nu, has squared norm (sum_nu G_nu^2 / B^2) chi^2_{d-2}.
    """
    mu, u, m = 0.5, 1.0, 0.6
    learning_rate, dimension, batch_size, n_steps = 1e-3, 20_000, 10, 100_000
    noise_strength = learning_rate * dimension / batch_size
    rng = np.random.default_rng(2024)
    a, b = rng.standard_normal((2, n_steps, batch_size))
    s, ds = activation(name), activation_derivative(name)
    preactivation = mu * a + u * (m * a + np.sqrt(1 - m * m) * b)
    coefficient = u * (s(preactivation) - s(a)) * ds(preactivation)
    along_target = (coefficient * a).mean(axis=1)
    along_normal = (coefficient * b).mean(axis=1)
    perpendicular_sq = (coefficient**2).sum(axis=1) / batch_size**2 * rng.chisquare(dimension - 2, n_steps)
    new_target = m - learning_rate * along_target
    new_norm = np.sqrt(
        new_target**2 + (np.sqrt(1 - m * m) - learning_rate * along_normal) ** 2 + learning_rate**2 * perpendicular_sq
    )
    rate = (new_target / new_norm - m) / learning_rate
    mean, standard_error = rate.mean(), rate.std(ddof=1) / np.sqrt(n_steps)
    _, predicted = lora.overlap_ode_rhs(name, mu, u, m, noise_strength=noise_strength)
    _, drift_only = lora.overlap_ode_rhs(name, mu, u, m)
    # 5 standard errors plus the O(eta) terms dropped in the derivation (eta * O(1) = 1e-3 * 3).
    assert abs(mean - predicted) < 5 * standard_error + 3e-3, (mean, predicted, standard_error)
    # The correction is resolved: the drift alone is many standard errors away.
    assert abs(mean - drift_only) > 20 * standard_error + 3e-3, (mean, drift_only, standard_error)


@pytest.mark.parametrize("name", ["linear", "erf"])
def test_rank_two_noise_correction_and_its_cross_term_match_one_sgd_step(name: str) -> None:
    """Mean change of (u1, u2, m1, m2, c12) in one step of rank-two LoRA SGD against the ODE.

    The pipeline's correction for an overlap c = v1 . v2 of two unit trained vectors has the cross
    term delta K u1 u2 (from the per-sample gradients u_k h x on both) besides the renormalisation
    terms; this step checks every statistic, and that the cross term is resolved. Exact reduced
    step: with w_* = e1, v1 in span(e1, e2) and v2 in span(e1, e2, e3), the labels see only the
    three input components along e1, e2, e3; the gradient's component orthogonal to them has
    squared norm (sum_nu h_nu^2 / B^2) chi^2_{d-3}.
    """
    mu, scales, overlaps, cosine = 0.5, np.array([0.8, -0.6]), np.array([0.3, -0.2]), 0.25
    learning_rate, dimension, batch_size, n_steps = 1e-3, 20_000, 10, 100_000
    noise_strength = learning_rate * dimension / batch_size
    v1 = np.array([overlaps[0], np.sqrt(1 - overlaps[0] ** 2), 0.0])
    second = (cosine - overlaps[0] * overlaps[1]) / v1[1]
    v2 = np.array([overlaps[1], second, np.sqrt(1 - overlaps[1] ** 2 - second**2)])
    directions = np.stack([v1, v2])  # (2, 3)
    w = mu * np.eye(3)[0] + scales @ directions
    rng = np.random.default_rng(2025)
    x = rng.standard_normal((n_steps, batch_size, 3))
    s, ds = activation(name), activation_derivative(name)
    preactivation = x @ w
    h = (s(preactivation) - s(x[..., 0])) * ds(preactivation)
    gradient = np.einsum("nb,nbi->ni", h, x) / batch_size  # in-span part of g = (1/B) sum h x
    perpendicular_sq = (h**2).sum(axis=1) / batch_size**2 * rng.chisquare(dimension - 3, n_steps)
    # v_k' = (v_k - eta u_k g) / norm, u_k' = u_k - eta g . v_k
    moved = directions[None] - learning_rate * scales[None, :, None] * gradient[:, None, :]
    norms = np.sqrt((moved**2).sum(axis=2) + learning_rate**2 * scales**2 * perpendicular_sq[:, None])
    new_scales = scales - learning_rate * gradient @ directions.T
    new_overlaps = moved[..., 0] / norms
    new_cosine = ((moved[:, 0] * moved[:, 1]).sum(axis=1)
                  + learning_rate**2 * scales[0] * scales[1] * perpendicular_sq) / (norms[:, 0] * norms[:, 1])
    state = np.array([*scales, *overlaps, cosine])
    rates = (np.column_stack([new_scales, new_overlaps, new_cosine]) - state) / learning_rate
    mean, standard_error = rates.mean(axis=0), rates.std(axis=0, ddof=1) / np.sqrt(n_steps)

    equations = overlap_equations(lora.lora_model(2))
    assert [str(symbol) for symbol in equations.model.statistics] == ["u1", "u2", "m1", "m2", "c12"]
    _, rho, residual = equations.covariance_function(*state, mu)
    risk_q, risk_rho = lora.risk_derivatives_of_covariances(name, rho, residual)
    factor = noise_strength * float(lora.gradient_factor_of_covariances(name, rho, residual))
    drift = np.array(equations.drift_function(*state, mu, risk_q, risk_rho), dtype=float)
    correction = np.array(equations.correction_function(*state, mu), dtype=float)
    predicted = drift + factor * correction
    # 5 standard errors plus the O(eta) terms dropped in the derivation (eta * O(1) = 1e-3 * 3).
    assert np.all(np.abs(mean - predicted) < 5 * standard_error + 3e-3), (mean, predicted, standard_error)
    # The cross term of the c12 correction, delta K u1 u2, is resolved: without it, many errors off.
    without_cross = predicted[4] - factor * scales[0] * scales[1]
    assert abs(mean[4] - without_cross) > 10 * standard_error[4] + 3e-3, (mean[4], without_cross)


@pytest.mark.parametrize(
    "student, teacher",
    [
        ("linear", None),
        ("He2", None),
        ("He3", None),
        ("He5", None),
        ("He3", "linear"),
        ("linear", "He2"),
        ("He4", "He2"),
    ],
)
def test_risk_function_agrees_with_a_direct_wick_derivation(student: str, teacher: str | None) -> None:
    # F(q, rho) is built once, from the kernels (lorabook.toolkit.kernels.squared_error_risk_sympy), and
    # shared with the from-scratch model. Check it against 1/2 E[(s - s_*)^2] by Wick's theorem
    # directly, and check that the from-scratch model returns the same expression.
    from lorabook.single_index_lora import single_index
    from lorabook.toolkit.activations import activation_sympy
    from lorabook.toolkit.gaussian import gaussian_expectation_sympy

    a, b = sp.symbols("a b", real=True)
    target = activation_sympy(teacher or student, b)
    direct = gaussian_expectation_sympy(
        sp.Rational(1, 2) * (activation_sympy(student, a) - target) ** 2, (a, b), (lora.Q, lora.RHO, 1)
    )
    assert sp.expand(lora.risk_function_sympy(student, teacher) - direct) == 0
    from_scratch = single_index.population_risk_sympy(student, teacher)
    assert sp.expand(from_scratch.subs({single_index.Q: lora.Q, single_index.RHO: lora.RHO}) - direct) == 0


# --- The fixed outer quadrature rule against nested adaptive quadrature -------------------------


def _nested_adaptive_expectation(function, mu: float, u: float, m: float) -> float:
    """E[function(lambda, lambda_*)] by nested scipy.integrate.quad, independently of lora's rules.

    lambda_* = z1, lambda = mu z1 + u (m z1 + sqrt(1 - m^2) z2) with z1, z2 independent standard
    normals; both integrals are split at the kinks (z1 = 0, and lambda = 0 in z2).
    """
    from scipy import integrate

    density = lambda z: np.exp(-0.5 * z * z) / np.sqrt(2.0 * np.pi)  # noqa: E731
    across = u * np.sqrt(1.0 - m * m)

    def inner(z1: float) -> float:
        along = (mu + u * m) * z1
        points = [] if across == 0 else [float(np.clip(-along / across, -11.0, 11.0))]
        if across == 0:
            return float(function(np.array(along), np.array(z1)))
        value, _ = integrate.quad(
            lambda z2: function(along + across * z2, z1) * density(z2),
            -12.0,
            12.0,
            points=points,
            epsabs=1e-14,
            epsrel=1e-13,
            limit=400,
        )
        return value

    total = 0.0
    for low, high in ((-12.0, 0.0), (0.0, 12.0)):
        value, _ = integrate.quad(lambda z1: inner(z1) * density(z1), low, high, epsabs=1e-13, epsrel=1e-12, limit=400)
        total += value
    return total


_QUADRATURE_POINTS = ((0.3, 0.4, 0.2), (0.7, -0.5, 0.9), (0.5, 0.8, -1.0), (0.9, 0.0, 0.3), (0.1, 1.3, 0.6))


@pytest.mark.slow  # high-precision quadrature, seconds per case
@pytest.mark.parametrize(
    "student,teacher",
    [
        ("sigmoid", "sigmoid"),
        ("sigmoid", "relu"),
        ("relu", "sigmoid"),
        ("erf", "sigmoid"),
        ("sigmoid", "He3"),
        ("erf", "erf"),
        ("erf", "He3"),
        ("relu", "relu"),
        ("erf", "relu"),
    ],
)
def test_fixed_outer_rule_matches_nested_adaptive_quadrature(student: str, teacher: str) -> None:
    s, s_star = activation(student), activation(teacher)
    s1 = activation_derivative(student)
    for mu, u, m in _QUADRATURE_POINTS:
        expected_moment = _nested_adaptive_expectation(
            lambda a, b: (s(a) - s_star(b)) ** 2 * s1(a) ** 2 * u**2, mu, u, m
        )
        got_moment = lora.gradient_second_moment(student, mu, u, m, teacher=teacher)
        assert abs(got_moment - expected_moment) < 1e-11, (student, teacher, mu, u, m)
        if "sigmoid" in (student, teacher):
            expected_risk = _nested_adaptive_expectation(lambda a, b: 0.5 * (s(a) - s_star(b)) ** 2, mu, u, m)
            got_risk = lora.population_risk(student, mu, u, m, teacher=teacher)
            assert abs(got_risk - expected_risk) < 1e-11, (student, teacher, mu, u, m)
            s1_star = activation_derivative(teacher)
            expected_rho = -_nested_adaptive_expectation(lambda a, b: s1(a) * s1_star(b), mu, u, m)
            _, got_rho = lora.risk_derivatives(student, mu, u, m, teacher=teacher)
            assert abs(got_rho - expected_rho) < 1e-11, (student, teacher, mu, u, m)


# --- Composite targets: search times, the relu^2 inner moments, and traps -----------------------


def _mp_composite(name: str):
    """(s, s') in mpmath for a plain activation, its square or a Hermite combination."""
    from lorabook.toolkit.activations import hermite_combination, squared_base

    base = squared_base(name)
    if base is not None:
        s, ds, _ = _mp_functions(base)
        return (lambda z: s(z) ** 2), (lambda z: 2 * s(z) * ds(z))
    terms = hermite_combination(name)
    if terms is not None:
        pairs = [(mp.mpf(c.numerator) / c.denominator, k) for k, c in terms.items()]
        return (
            lambda z: sum(c * _mp_hermite(k, z) for c, k in pairs),
            lambda z: sum(c * k * _mp_hermite(k - 1, z) for c, k in pairs),
        )
    s, ds, _ = _mp_functions(name)
    return s, ds


@pytest.mark.slow  # high-precision quadrature, seconds per case
@pytest.mark.parametrize(
    "student, teacher",
    [
        ("erf", "erf^2"),
        ("sigmoid", "sigmoid^2"),
        ("He3", "He3^2"),
        ("linear", "linear^2"),
        ("He1+He3", None),
        ("He3+He5", None),
        ("erf", "He5"),
    ],
)
def test_composite_search_time_matches_high_precision_quadrature(student: str, teacher) -> None:
    teacher_name = student if teacher is None else teacher
    if student in ACTIVATION_NAMES:
        s, ds, d2s = _mp_functions(student)
    else:  # a Hermite combination as its own student
        s, ds = _mp_composite(student)
        terms = [
            (mp.mpf(c.numerator) / c.denominator, k)
            for k, c in __import__("lorabook.toolkit.activations")
            .toolkit.activations.hermite_combination(student)
            .items()
        ]
        d2s = lambda z: sum(c * k * (k - 1) * _mp_hermite(k - 2, z) for c, k in terms if k >= 2)  # noqa: E731
    t, dt = _mp_composite(teacher_name)
    density = lambda z: mp.exp(-z * z / 2) / mp.sqrt(2 * mp.pi)  # noqa: E731
    expect = lambda f: mp.quad(lambda z: f(z) * density(z), [-mp.inf, 0, mp.inf])  # noqa: E731
    expected = []
    with mp.workdps(20):
        for mu in (0.05, 0.3, 0.7, 0.95):
            mu = mp.mpf(mu)
            risk_q = expect(lambda z: ds(mu * z) ** 2 + d2s(mu * z) * (s(mu * z) - t(z))) / 2
            risk_rho = -expect(lambda z: ds(mu * z) * dt(z))
            a, b = -(2 * mu * risk_q + risk_rho), -2 * risk_q
            expected.append(float(2 / (b + mp.sqrt(b * b + 4 * a * a))))
    computed = lora.search_time(student, np.array([0.05, 0.3, 0.7, 0.95]), teacher)
    np.testing.assert_allclose(computed, expected, rtol=1e-6)


def test_relu_student_with_squared_relu_teacher_in_closed_form() -> None:
    # F_q = (1/2)(E[Theta] + E[delta(mu z)(relu(mu z) - relu(z)^2)]) = 1/4 (the delta term is 0 at z = 0);
    # F_rho = -E[Theta(z) 2 relu(z)] = -2 E[z; z > 0] = -sqrt(2/pi).
    mu = np.array([0.1, 0.5, 0.9, 1.0])
    coefficient_a, coefficient_b = lora.linearization("relu", mu, teacher="relu^2")
    np.testing.assert_allclose(coefficient_a, np.sqrt(2 / np.pi) - mu / 2, rtol=1e-10)
    np.testing.assert_allclose(coefficient_b, -0.5, rtol=1e-10)


@pytest.mark.parametrize("power", [0, 1, 2, 3, 4])
def test_half_line_moments_of_relu(power: int) -> None:
    from scipy import integrate

    for mean, sd in ((0.7, 0.4), (-0.3, 1.2), (2.0, 0.05), (-1.0, 0.0), (0.5, 0.0)):
        if sd == 0:
            expected = max(mean, 0.0) ** power if mean > 0 else 0.0
        else:
            # the Gaussian weight is negligible beyond |y| = 12: a finite interval keeps quad reliable
            expected, _ = integrate.quad(
                lambda y: (mean + sd * y) ** power * np.exp(-y * y / 2) / np.sqrt(2 * np.pi),
                max(-mean / sd, -12.0),
                12.0,
                epsabs=1e-14,
                epsrel=1e-12,
                limit=200,
            )
        got = float(lora._relu_moment(power, np.array(mean), np.array(sd)))
        assert got == pytest.approx(expected, rel=1e-10, abs=1e-13), (power, mean, sd)


@pytest.mark.parametrize("name", ["He3", "He5", "He7", "He9"])
def test_traps_of_odd_hermite_targets(name: str) -> None:
    roots = lora.trap_strengths_sympy(name)
    assert len(roots) == 1
    root = float(roots[0].evalf(30))
    # A vanishes and changes sign there, and B < 0, so the search time diverges.
    coefficient_a, coefficient_b = lora.linearization(name, np.array([root - 1e-6, root, root + 1e-6]))
    assert abs(coefficient_a[1]) < 1e-9 * max(1.0, abs(coefficient_a[0]) * 1e6)
    assert coefficient_a[0] * coefficient_a[2] < 0 and coefficient_b[1] < 0
    assert lora.search_time(name, root) > 1e6 * lora.search_time(name, root - 0.05)
    np.testing.assert_allclose(lora.trap_strengths(name), [root], rtol=0, atol=1e-15)


@pytest.mark.slow  # high-precision quadrature, seconds per case
def test_trap_values_quoted_by_the_paper_and_none_for_even_targets() -> None:
    assert abs(lora.trap_strengths("He3")[0] - 0.32) < 0.005 and abs(lora.trap_strengths("He5")[0] - 0.43) < 0.01
    for name in ("linear", "He2", "He4", "erf", "relu", "sigmoid"):
        assert lora.trap_strengths(name).size == 0, name


def test_numerical_trap_search_matches_a_symbolic_root() -> None:
    # (erf, He5): A(mu) is a closed form but not a polynomial, so trap_strengths scans and refines.
    coefficient_a, _ = lora.linearization_sympy("erf", "He5")
    found = lora.trap_strengths("erf", "He5")
    assert found.size == 1
    reference = sp.nsolve(coefficient_a, lora.MU, float(found[0]), prec=30)
    assert abs(found[0] - float(reference)) < 1e-13
    with pytest.raises(NotImplementedError, match="trap_strengths"):
        lora.trap_strengths_sympy("erf", "He5")
    with pytest.raises(ValueError, match="grid_size"):
        lora.trap_strengths("erf", "He5", grid_size=2)
