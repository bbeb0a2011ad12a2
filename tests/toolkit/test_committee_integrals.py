"""The committee integrals against Monte Carlo, Saad & Solla's formulas (rescaled to erf(z)), known
orthant probabilities and finer quadrature rules.

Monte Carlo tolerances are 5 standard errors estimated from the samples (plus the quadrature's
own error estimate for the ReLU four-point integral)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lorabook.toolkit import committee_integrals as ci
from lorabook.toolkit.activations import activation, activation_derivative
from lorabook.toolkit.kernels import correlation_kernel
from lorabook.toolkit.validation import UnsupportedChoiceError

NAMES = ("erf", "relu", "linear")


def _covariance(seed: int, size: int) -> np.ndarray:
    a = np.random.default_rng(seed).standard_normal((size, size))
    return a @ a.T / size


def _twins() -> np.ndarray:
    """A singular 4x4 covariance: a = b (a repeated preactivation) and c = 0.8 a + 0.6 z."""
    basis = np.array([[1.0, 0, 0], [1.0, 0, 0], [0.8, 0.6, 0], [0.3, -0.2, 0.9]])
    return basis @ basis.T


def _monte_carlo(name: str, covariance: np.ndarray, order: int, n: int = 400_000, seed: int = 3
                 ) -> tuple[float, float]:
    size = covariance.shape[0]
    values, vectors = np.linalg.eigh(covariance)
    root = vectors * np.sqrt(np.maximum(values, 0.0))
    x = np.random.default_rng(seed).standard_normal((n, size)) @ root.T
    s, s_prime = activation(name), activation_derivative(name)
    if order == 3:
        samples = s_prime(x[:, 0]) * x[:, 1] * s(x[:, 2])
    else:
        samples = s_prime(x[:, 0]) * s_prime(x[:, 1]) * s(x[:, 2]) * s(x[:, 3])
    return float(samples.mean()), float(samples.std(ddof=1) / np.sqrt(n))


def _saad_solla_i3(c: np.ndarray) -> float:
    """Saad & Solla's I3 for g(u) = erf(u / sqrt 2), at the covariance c of (u1, u2, u3)."""
    lam = (1 + c[0, 0]) * (1 + c[2, 2]) - c[0, 2] ** 2
    return 2 / np.pi / np.sqrt(lam) * (c[1, 2] * (1 + c[0, 0]) - c[0, 1] * c[0, 2]) / (1 + c[0, 0])


def _saad_solla_i4(c: np.ndarray) -> float:
    """Saad & Solla's I4 for g(u) = erf(u / sqrt 2)."""
    c11, c22, c33, c44 = np.diag(c)
    c12, c13, c14, c23, c24, c34 = c[0, 1], c[0, 2], c[0, 3], c[1, 2], c[1, 3], c[2, 3]
    lam4 = (1 + c11) * (1 + c22) - c12**2
    lam0 = lam4 * c34 - c23 * c24 * (1 + c11) - c13 * c14 * (1 + c22) + c12 * c13 * c24 + c12 * c14 * c23
    lam1 = lam4 * (1 + c33) - c23**2 * (1 + c11) - c13**2 * (1 + c22) + 2 * c12 * c13 * c23
    lam2 = lam4 * (1 + c44) - c24**2 * (1 + c11) - c14**2 * (1 + c22) + 2 * c12 * c14 * c24
    return 4 / np.pi**2 / np.sqrt(lam4) * np.arcsin(lam0 / np.sqrt(lam1 * lam2))


@pytest.mark.parametrize("name", NAMES)
def test_three_point_matches_monte_carlo(name: str) -> None:
    for covariance in (_covariance(1, 3), _twins()[1:, 1:]):
        mean, error = _monte_carlo(name, covariance, 3)
        assert abs(ci.three_point(name, covariance) - mean) < 5 * error


@pytest.mark.parametrize("name", NAMES)
def test_four_point_matches_monte_carlo(name: str) -> None:
    for covariance in (_covariance(2, 4), _twins()):
        mean, error = _monte_carlo(name, covariance, 4)
        value, quadrature_error = ci.four_point_with_error(name, covariance)
        assert abs(value - mean) < 5 * error + quadrature_error


def test_erf_integrals_are_saad_solla_at_twice_the_covariance() -> None:
    # s(z) = erf(z) = g(sqrt 2 z): I3(C) = I3_SS(2C) and I4(C) = 2 I4_SS(2C) (two derivatives, one sqrt 2 each).
    for seed in range(5):
        c = _covariance(10 + seed, 4)
        assert ci.three_point("erf", c[:3, :3]) == pytest.approx(_saad_solla_i3(2 * c[:3, :3]), rel=1e-12)
        assert ci.four_point("erf", c) == pytest.approx(2 * _saad_solla_i4(2 * c), rel=1e-12)


def test_two_point_is_the_correlation_kernel_and_vanishes_for_a_zero_variance() -> None:
    c = np.array([[[1.3, 0.4], [0.4, 0.7]], [[0.0, 0.0], [0.0, 0.7]]])
    for name in NAMES:
        values = ci.two_point(name, c)
        assert values[0] == correlation_kernel(name, name, 1.3, 0.4, 0.7)
        assert values[1] == 0.0
    assert ci.two_point("linear", c)[0] == pytest.approx(0.4)


def test_integrals_are_vectorised_over_leading_axes() -> None:
    stack = np.stack([_covariance(seed, 4) for seed in range(6)]).reshape(2, 3, 4, 4)
    for name in NAMES:
        batched = ci.four_point(name, stack)
        assert batched.shape == (2, 3)
        assert batched[1, 2] == pytest.approx(ci.four_point(name, stack[1, 2]), rel=1e-12, abs=1e-15)
        assert ci.three_point(name, stack[..., :3, :3]).shape == (2, 3)


def test_orthant_probability_at_known_values() -> None:
    equicorrelated = np.full((4, 4), 0.5) + 0.5 * np.eye(4)  # exchangeable, rho = 1/2: P = 1/(n + 1)
    assert ci.orthant_probability_4(equicorrelated) == pytest.approx(0.2, abs=1e-10)
    assert ci.orthant_probability_4(np.eye(4)) == pytest.approx(1 / 16, abs=1e-14)
    block = np.kron(np.eye(2), np.array([[1.0, 0.3], [0.3, 1.0]]))  # two independent pairs
    pair = 0.25 + np.arcsin(0.3) / (2 * np.pi)
    assert ci.orthant_probability_4(block) == pytest.approx(pair**2, abs=1e-10)


def test_relu_four_point_singular_cases_in_closed_form() -> None:
    # All four equal: E[relu(a)^2] = 1/2. a = b, c and d independent of it and of each other:
    # E[Theta(a)] E[relu(c)] E[relu(d)] = (1/2)(1/(2 pi)).
    value, error = ci.four_point_with_error("relu", np.ones((4, 4)))
    assert abs(value - 0.5) < max(error, 1e-12) and error < 1e-5
    twins = np.eye(4)
    twins[0, 1] = twins[1, 0] = 1.0
    value, error = ci.four_point_with_error("relu", twins)
    assert abs(value - 0.25 / np.pi) <= max(error, 1e-12)


def test_relu_four_point_error_estimate_bounds_a_finer_rule() -> None:
    covariances = np.stack([_covariance(20 + seed, 4) for seed in range(4)] + [_twins()])
    value, error = ci.four_point_with_error("relu", covariances)
    finer = ci.four_point("relu", covariances, n_nodes=24)
    assert np.all(np.abs(value - finer) <= error + 1e-14)
    assert np.all(error < 1e-4)


def test_validation() -> None:
    with pytest.raises(ValueError, match="covariance must have shape"):
        ci.three_point("erf", np.eye(2))
    with pytest.raises(ValueError, match="covariance must be symmetric"):
        ci.two_point("erf", np.array([[1.0, 0.5], [0.2, 1.0]]))
    with pytest.raises(ValueError, match="covariance must be positive semi-definite"):
        ci.four_point("relu", np.eye(4) - 0.6 * (np.ones((4, 4)) - np.eye(4)))
    with pytest.raises(UnsupportedChoiceError, match="activation='sigmoid'"):
        ci.two_point("sigmoid", np.eye(2))
    with pytest.raises(ValueError, match="activation='tanh'"):
        ci.two_point("tanh", np.eye(2))
    with pytest.raises(ValueError, match="correlation must have a unit diagonal"):
        ci.orthant_probability_4(2 * np.eye(4))


_NORMALS = np.random.default_rng(11).standard_normal((200_000, 4))


@st.composite
def _random_covariances(draw: st.DrawFn) -> np.ndarray:
    entries = draw(st.lists(st.floats(-1.5, 1.5), min_size=16, max_size=16))
    a = np.array(entries).reshape(4, 4)
    return a @ a.T + 0.05 * np.eye(4)


@pytest.mark.slow
@settings(max_examples=10, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(_random_covariances(), st.sampled_from(NAMES))
def test_property_integrals_match_monte_carlo_at_random_covariances(covariance: np.ndarray, name: str) -> None:
    x = _NORMALS @ np.linalg.cholesky(covariance).T
    s, s_prime = activation(name), activation_derivative(name)
    three = s_prime(x[:, 0]) * x[:, 1] * s(x[:, 2])
    four = s_prime(x[:, 0]) * s_prime(x[:, 1]) * s(x[:, 2]) * s(x[:, 3])
    n = x.shape[0]
    assert abs(ci.three_point(name, covariance[:3, :3]) - three.mean()) < 5 * three.std() / np.sqrt(n)
    value, error = ci.four_point_with_error(name, covariance)
    assert abs(value - four.mean()) < 5 * four.std() / np.sqrt(n) + error
