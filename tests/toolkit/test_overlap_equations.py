"""The overlap-ODE pipeline against independent derivations: the chain rule of R(u, m), explicit
coordinates of the vectors (sympy for the non-aligned model, numpy for rank two), and the
checks that refuse incomplete descriptions."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import sympy as sp

from lorabook.single_index_lora import lora, non_aligned
from lorabook.toolkit.overlap_equations import F_Q, F_RHO, OverlapModel, TrainedVector, overlap_equations


def test_rank_one_drift_is_the_riemannian_gradient_flow_of_the_risk() -> None:
    u, m, mu = lora.U, lora.M, lora.MU
    q, rho = lora.MODEL.student[0][0] ** 2 + u**2 + 2 * mu * u * m, mu + u * m
    risk = sp.Function("F")(sp.Symbol("q"), sp.Symbol("rho"))
    derivative = {sp.Derivative(risk, sp.Symbol("q")): F_Q, sp.Derivative(risk, sp.Symbol("rho")): F_RHO}

    def partial(variable):  # chain rule through q(u, m), rho(u, m)
        return sum(sp.diff(c, variable) * d for c, d in zip((q, rho), derivative.values(), strict=True))

    equations = overlap_equations(lora.MODEL)
    assert sp.expand(equations.covariances[0] - q) == 0 and sp.expand(equations.covariances[1] - rho) == 0
    assert sp.expand(equations.drift[0] + partial(u)) == 0
    assert sp.expand(equations.drift[1] + (1 - m**2) * partial(m)) == 0
    assert equations.correction == (0, -m * u**2 / 2)
    coefficient_a, coefficient_b = lora.linearization_coefficients_sympy()
    assert sp.expand(coefficient_a + 2 * mu * F_Q + F_RHO) == 0 and sp.expand(coefficient_b + 2 * F_Q) == 0


def test_the_drift_vanishes_exactly_on_the_boundary_of_the_sphere() -> None:
    # Factored drift: dm/dt is exactly 0 at m = +-1, so the ODE cannot leave [-1, 1] by rounding.
    drift = overlap_equations(lora.MODEL).drift_function
    for boundary in (1.0, -1.0):
        assert drift(0.37, boundary, 0.6, 0.41, -0.93)[1] == 0.0


def test_non_aligned_drift_matches_explicit_coordinates() -> None:
    u, m, p, mu, nu = non_aligned.U, non_aligned.M, non_aligned.P, non_aligned.MU, non_aligned.NU
    w_star, xi, v = sp.Matrix([1, 0, 0]), sp.Matrix([0, 1, 0]), sp.Matrix([m, p, sp.sqrt(1 - m**2 - p**2)])
    w = mu * w_star + nu * xi + u * v
    gradient = 2 * F_Q * w + F_RHO * w_star
    along_v = v.dot(gradient)
    expected = (-along_v, -u * (w_star.dot(gradient) - m * along_v), -u * (xi.dot(gradient) - p * along_v))
    third = sp.sqrt(1 - m**2 - p**2)
    for derived, direct in zip(non_aligned.drift_sympy(), expected, strict=True):
        assert sp.expand(sp.expand(derived - direct).subs(third**2, 1 - m**2 - p**2)) == 0
    q, rho = non_aligned.overlaps_sympy()
    assert sp.expand(q - w.dot(w)).subs(third**2, 1 - m**2 - p**2) == 0 and sp.expand(rho - w.dot(w_star)) == 0


def test_non_aligned_linearization_has_the_remedies_structure() -> None:
    jacobian = overlap_equations(non_aligned.MODEL).linearization
    b, a, c = jacobian[0, :]
    assert sp.expand(b + 2 * F_Q) == 0 and sp.expand(a + 2 * non_aligned.MU * F_Q + F_RHO) == 0
    assert sp.expand(c - non_aligned.NU * b) == 0
    assert jacobian == sp.Matrix([[b, a, c], [a, 0, 0], [c, 0, 0]])


def test_rank_two_drift_matches_the_flow_in_coordinates() -> None:
    rng = np.random.default_rng(3)
    dimension = 6
    w_star = np.eye(dimension)[0]
    v = rng.standard_normal((2, dimension))
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    u, mu, risk_q, risk_rho = rng.normal(size=2), 0.6, 0.37, -0.81
    w = mu * w_star + u @ v
    gradient = 2 * risk_q * w + risk_rho * w_star
    velocity = -u[:, None] * (gradient - (v @ gradient)[:, None] * v)  # tangent projection
    expected = np.concatenate([-(v @ gradient), velocity @ w_star,
                               [velocity[0] @ v[1] + v[0] @ velocity[1]]])
    equations = overlap_equations(lora.lora_model(2))
    state = (*u, *(v @ w_star), v[0] @ v[1])
    assert np.allclose(equations.drift_function(*state, mu, risk_q, risk_rho), expected, rtol=1e-12, atol=1e-14)
    q, rho, residual = equations.covariance_function(*state, mu)
    assert np.isclose(q, w @ w, rtol=1e-12) and np.isclose(rho, w @ w_star, rtol=1e-12)
    assert np.isclose(residual**2, w @ w - (w @ w_star) ** 2, rtol=1e-10)


def test_lambdified_drift_equals_its_expression() -> None:
    equations = overlap_equations(non_aligned.MODEL)
    point = dict(zip((*non_aligned.MODEL.statistics, *non_aligned.MODEL.parameters, F_Q, F_RHO),
                     (0.3, 0.2, -0.4, 0.5, 0.25, 0.7, -1.1), strict=True))
    numeric = equations.drift_function(*point.values())
    for value, expr in zip(numeric, equations.drift, strict=True):
        assert np.isclose(value, float(expr.subs(point)), rtol=1e-13)


def test_incomplete_or_inconsistent_descriptions_are_refused() -> None:
    with pytest.raises(TypeError, match="model must be an OverlapModel"):
        overlap_equations("rank-one LoRA")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="inner product of '(v|w_star)' and '(v|w_star)'"):
        overlap_equations(dataclasses.replace(lora.MODEL, overlaps=()))
    with pytest.raises(ValueError, match="residual_norm"):
        overlap_equations(dataclasses.replace(lora.MODEL, residual_norm=sp.Abs(lora.U)))
    with pytest.raises(ValueError, match="not stationary"):
        overlap_equations(dataclasses.replace(lora.MODEL, start=(sp.Integer(1), sp.Integer(0))))
    free = OverlapModel(name="bad", parameters=(lora.MU,), fixed_vectors=("w_star",),
                        student=((lora.MU, "w_star"), (lora.U, "v")), trained_scalars=(lora.U,),
                        trained_vectors=(TrainedVector("v", unit=True),), overlaps=((lora.M, "v", "w_star"),),
                        statistics=(lora.U, sp.Symbol("x")), start=(0, 0),
                        residual_norm=lora.MODEL.residual_norm)
    with pytest.raises(ValueError, match="neither a trained scalar nor an overlap"):
        overlap_equations(free)
    with pytest.raises(ValueError, match="rank"):
        lora.lora_model(0)
