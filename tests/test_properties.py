"""Property-based tests (hypothesis) of the closed forms at random parameters.

* Gaussian kernels ``E[f(a) g(b)]`` in closed form against adaptive two-dimensional quadrature
  of the bivariate normal density.
* The population risk of the LoRA single-index model, ``F(q, rho)``, against the same quadrature
  of ``(s(lambda) - s*(lambda*))^2 / 2`` with the covariance its overlaps imply.
* The right-hand side of the overlap ODE against central finite differences of the risk
  (``du/dt = -dR/du``, ``dm/dt = -(1 - m^2) dR/dm`` without SGD noise).

Examples are drawn deterministically (``derandomize=True``): the same examples on every run.
Tolerances are the quadrature's own error estimate (times a safety factor) plus a floor of
1e-9, and for the finite differences the O(h^2) truncation error at h = 1e-4.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import integrate

from lorabook.single_index_lora import lora
from lorabook.toolkit import kernels
from lorabook.toolkit.activations import activation

pytestmark = pytest.mark.slow

SETTINGS = settings(
    max_examples=12, deadline=None, derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
LIMIT = 9.0  # standard normal coordinates beyond +-9 carry less than 1e-18 of the mass
KINKED = {"relu"}


def _bivariate_expectation(f, g, c11: float, c12: float, c22: float, kinked: bool) -> tuple[float, float]:
    """E[f(a) g(b)] for (a, b) ~ N(0, [[c11, c12], [c12, c22]]), by adaptive quadrature over
    standard normal coordinates: a = sqrt(c11) z1, b = (c12 z1 + s z2) / sqrt(c11)."""
    root = math.sqrt(c11)
    spread = math.sqrt(max(c11 * c22 - c12**2, 0.0)) / root

    def integrand(z2: float, z1: float) -> float:
        a = root * z1
        b = c12 / root * z1 + spread * z2
        return float(f(np.array(a)) * g(np.array(b))) * math.exp(-(z1 * z1 + z2 * z2) / 2) / (2 * math.pi)

    # A kink at b = 0 sits on a line in (z1, z2); split the inner integral there.
    def inner(z1: float) -> float:
        points = [-c12 / root * z1 / spread] if kinked and spread > 0 else None
        value, _ = integrate.quad(integrand, -LIMIT, LIMIT, args=(z1,), points=points,
                                  epsabs=1e-12, epsrel=1e-11, limit=200)
        return value

    value, error = integrate.quad(inner, -LIMIT, LIMIT, points=[0.0] if kinked else None,
                                  epsabs=1e-11, epsrel=1e-10, limit=200)
    return value, error


covariances = st.tuples(
    st.floats(0.2, 3.0), st.floats(-0.9, 0.9), st.floats(0.2, 3.0)
).map(lambda t: (t[0], t[1] * math.sqrt(t[0] * t[2]), t[2]))

PAIRS = [("erf", "erf"), ("erf", "relu"), ("relu", "relu"), ("linear", "erf"), ("He3", "relu"),
         ("He2", "erf"), ("He4", "He2")]


@pytest.mark.parametrize(("f", "g"), PAIRS, ids=[f"{f}-{g}" for f, g in PAIRS])
@SETTINGS
@given(covariance=covariances)
def test_closed_form_kernels_match_quadrature(f: str, g: str, covariance: tuple) -> None:
    c11, c12, c22 = covariance
    closed = float(kernels.correlation_kernel(f, g, c11, c12, c22))
    reference, error = _bivariate_expectation(
        activation(f), activation(g), c11, c12, c22, kinked=bool({f, g} & KINKED))
    assert abs(closed - reference) <= 1e-9 * (1 + abs(reference)) + 10 * error, (closed, reference, error)


overlaps = st.tuples(st.floats(0.05, 0.95), st.floats(-1.5, 1.5), st.floats(-0.99, 0.99))
STUDENTS = ["linear", "erf", "relu", "sigmoid", "He3"]


@pytest.mark.parametrize("name", STUDENTS)
@SETTINGS
@given(point=overlaps)
def test_population_risk_matches_quadrature(name: str, point: tuple) -> None:
    mu, u, m = point
    q, rho = mu**2 + u**2 + 2 * mu * u * m, mu + u * m
    s = activation(name)
    square = lambda a, b: 0.5 * (s(a) - s(b)) ** 2  # noqa: E731 - the integrand
    reference, error = _risk_reference(square, q, rho, kinked=name in KINKED)
    risk = float(lora.population_risk(name, mu, u, m))
    assert abs(risk - reference) <= 1e-9 * (1 + abs(reference)) + 10 * error, (risk, reference, error)


def _risk_reference(square, q: float, rho: float, kinked: bool) -> tuple[float, float]:
    """E[square(lambda, lambda*)] with Var(lambda) = q, Var(lambda*) = 1, Cov = rho."""
    # lambda* = z1, lambda = rho z1 + sqrt(q - rho^2) z2: the same quadrature as the kernels.
    spread = math.sqrt(max(q - rho**2, 0.0))

    def integrand(z2: float, z1: float) -> float:
        return float(square(np.array(rho * z1 + spread * z2), np.array(z1))) * math.exp(
            -(z1 * z1 + z2 * z2) / 2) / (2 * math.pi)

    def inner(z1: float) -> float:
        points = [-rho * z1 / spread] if kinked and spread > 0 else None
        value, _ = integrate.quad(integrand, -LIMIT, LIMIT, args=(z1,), points=points,
                                  epsabs=1e-12, epsrel=1e-11, limit=200)
        return value

    return integrate.quad(inner, -LIMIT, LIMIT, points=[0.0] if kinked else None,
                          epsabs=1e-11, epsrel=1e-10, limit=200)


@pytest.mark.parametrize("name", ["linear", "erf", "sigmoid", "He3"])
@SETTINGS
@given(point=st.tuples(st.floats(0.1, 0.9), st.floats(-1.0, 1.0), st.floats(-0.9, 0.9)))
def test_overlap_ode_is_the_gradient_flow_of_the_risk(name: str, point: tuple) -> None:
    mu, u, m = point
    h = 1e-4
    risk = lambda u_, m_: float(lora.population_risk(name, mu, u_, m_))  # noqa: E731
    dr_du = (risk(u + h, m) - risk(u - h, m)) / (2 * h)
    dr_dm = (risk(u, m + h) - risk(u, m - h)) / (2 * h)
    du, dm = (float(value) for value in lora.overlap_ode_rhs(name, mu, u, m))
    # Central differences err by h^2 |R'''| / 6: about 1e-8 here; the risks are smooth.
    assert abs(du + dr_du) <= 1e-6 * (1 + abs(dr_du)), (du, -dr_du)
    assert abs(dm + (1 - m**2) * dr_dm) <= 1e-6 * (1 + abs(dr_dm)), (dm, -(1 - m**2) * dr_dm)
