"""Tests of lorabook.single_index_lora.full_finetuning: the strength flow dc/dt = A(c), its times, the noisy ODE and the
exact reduced SGD simulator."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from lorabook.single_index_lora import full_finetuning, lora
from lorabook.toolkit.overlap_equations import overlap_equations


def test_velocity_is_lora_coefficient_a_and_the_gradient_along_w_star() -> None:
    strengths = np.array([0.2, 0.5, 0.8])
    for name in ("linear", "erf", "He3"):
        velocity = full_finetuning.strength_velocity(name, strengths)
        assert np.array_equal(velocity, lora.linearization(name, strengths)[0])
        # -d/dc R(c w_*) by central differences of the population risk on the line (u = 0).
        step = 1e-5
        slope = (lora.population_risk(name, strengths + step, 0.0, 0.0)
                 - lora.population_risk(name, strengths - step, 0.0, 0.0)) / (2 * step)
        assert np.allclose(velocity, -slope, rtol=1e-6, atol=1e-8)


def test_linear_flow_and_times_in_closed_form() -> None:
    # A(c) = 1 - c: 1 - c(t) = (1 - mu) e^{-t}; halving the distance takes log 2.
    times = np.linspace(0, 3, 31)
    flow = full_finetuning.integrate_strength_flow("linear", 0.4, times)
    assert np.allclose(flow.strength, 1 - 0.6 * np.exp(-times), rtol=0, atol=1e-9)
    assert full_finetuning.strength_flow_time("linear", 0.4, 0.7) == pytest.approx(np.log(2), rel=1e-9)


def test_time_near_a_trap_grows_logarithmically() -> None:
    trap = float(lora.trap_strengths("He3")[0])
    slope = (lora.linearization("He3", trap + 1e-6)[0] - lora.linearization("He3", trap - 1e-6)[0]) / 2e-6
    times = [full_finetuning.strength_flow_time("He3", trap + eps, 0.7) for eps in (1e-4, 1e-5)]
    # T(eps) = log(1/eps) / A'(mu_c) + O(1): a decade of eps adds log(10) / A'(mu_c).
    assert times[1] - times[0] == pytest.approx(np.log(10) / slope, rel=1e-3)
    with pytest.raises(ValueError, match="vanishes"):
        full_finetuning.strength_flow_time("He3", trap - 0.05, 0.7)


def test_noiseless_ode_stays_on_the_line_and_equals_the_flow() -> None:
    times = np.linspace(0, 2, 21)
    ode = full_finetuning.integrate_full_finetuning_ode("erf", 0.5, times)
    flow = full_finetuning.integrate_strength_flow("erf", 0.5, times)
    assert np.allclose(ode.overlap, flow.strength, atol=1e-8)
    assert np.allclose(ode.norm_squared, ode.overlap**2, atol=1e-8)


@pytest.mark.parametrize("name", ["erf", "relu", "He3"])
def test_pipeline_drift_is_the_gradient_flow_of_the_risk_by_finite_differences(name: str) -> None:
    # w = a w_* + b e (e a unit vector orthogonal to w_*): rho = a, q = a^2 + b^2, and the flow
    # dw/dt = -grad R gives drho/dt = -dR/da, dq/dt = -2 (a dR/da + b dR/db).
    def risk(a: float, b: float) -> float:
        return float(lora.risk_of_covariances(name, a, abs(b)))

    step = 1e-5
    for a, b in [(0.5, 0.3), (0.8, 0.1), (0.3, 0.6)]:
        slope_a = (risk(a + step, b) - risk(a - step, b)) / (2 * step)
        slope_b = (risk(a, b + step) - risk(a, b - step)) / (2 * step)
        d_rho, d_q = full_finetuning.full_finetuning_ode_rhs(name, a, a * a + b * b)
        assert abs(d_rho + slope_a) < 1e-7
        assert abs(d_q + 2 * (a * slope_a + b * slope_b)) < 1e-7


def test_the_model_is_one_free_vector_with_no_search_phase() -> None:
    equations = overlap_equations(full_finetuning.MODEL)
    assert equations.covariances == (lora.Q, lora.RHO)
    assert equations.correction == (0, 1)  # only |w|^2 gains the noise term delta E[h^2]
    assert equations.linearization is None and equations.linearization_function is None


def test_reduced_simulator_matches_full_d_sgd_in_law() -> None:
    # Reference: explicit d-dimensional SGD on w from mu w_* (w_* = e_1), same settings.
    name, mu, d, eta, batch, steps, seeds = "erf", 0.5, 50, 0.05, 4, 60, 400
    rng = np.random.default_rng(5)
    w = np.zeros((seeds, d))
    w[:, 0] = mu
    from lorabook.toolkit.activations import activation, activation_derivative
    s, s_prime = activation(name), activation_derivative(name)
    for _ in range(steps):
        x = rng.standard_normal((seeds, batch, d))
        lam = np.einsum("sbd,sd->sb", x, w)
        h = (s(lam) - s(x[..., 0])) * s_prime(lam)
        w -= (eta / batch) * np.einsum("sb,sbd->sd", h, x)
    reduced = full_finetuning.simulate_full_finetuning(name, dimension=d, learning_rate=eta, batch_size=batch,
                                                       n_steps=steps, n_seeds=seeds, seed=6, pretraining_strength=mu,
                                                       n_records=2)
    assert stats.ks_2samp(w[:, 0], reduced.overlap[:, -1]).pvalue > 1e-3
    assert stats.ks_2samp(np.linalg.norm(w[:, 1:], axis=1), reduced.perpendicular[:, -1]).pvalue > 1e-3
    # Power: the off-line norm is far from zero (the noise term of the ODE), many standard errors.
    off_line = reduced.perpendicular[:, -1]
    assert off_line.mean() > 10 * off_line.std() / np.sqrt(seeds)


def test_sgd_mean_follows_the_noisy_ode_and_not_the_flow() -> None:
    name, mu, d, eta, batch = "erf", 0.5, 1000, 0.01, 200
    run = full_finetuning.simulate_full_finetuning(name, dimension=d, learning_rate=eta, batch_size=batch, n_steps=400,
                                                   n_seeds=16, seed=1, pretraining_strength=mu, n_records=21)
    ode = full_finetuning.integrate_full_finetuning_ode(name, mu, run.time, noise_strength=eta * d / batch)
    flow = full_finetuning.integrate_strength_flow(name, mu, run.time)
    mean = run.overlap.mean(axis=0)[1:]
    error = run.overlap.std(axis=0, ddof=1)[1:] / 4
    assert np.all(np.abs(mean - ode.overlap[1:]) < 5 * error)
    assert np.any(np.abs(mean - flow.strength[1:]) > 5 * error)


def test_validation() -> None:
    with pytest.raises(ValueError, match="strength|mu"):
        full_finetuning.strength_velocity("erf", 1.5)
    with pytest.raises(ValueError, match="times"):
        full_finetuning.integrate_strength_flow("erf", 0.5, [0.0, 0.0])
    with pytest.raises(ValueError, match="differ"):
        full_finetuning.strength_flow_time("erf", 0.5, 0.5)
    with pytest.raises(ValueError, match="q >= rho"):
        full_finetuning.full_finetuning_ode_rhs("erf", 0.5, 0.1)
    with pytest.raises(ValueError, match="dimension"):
        full_finetuning.simulate_full_finetuning("erf", dimension=2, learning_rate=0.1, batch_size=1, n_steps=1,
                                                 n_seeds=1, seed=0, pretraining_strength=0.5)
