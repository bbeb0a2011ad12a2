"""Bad input, everywhere: every public callable of lorabook, found by introspection, is fed
bad values generated from its signature, one parameter at a time, around a valid call.

For each parameter the probes follow what the parameter is (its name and annotation): NaN and
infinities for numbers, zero, negative and fractional sizes, sizes that would need more memory
than the machine has, wrong types, unknown names, empty arrays, arrays with NaN, arrays of the
wrong shape. Every probe must raise a ``ValueError`` or ``TypeError`` whose message names the
parameter, within a second, without allocating more than ``MEMORY_LIMIT`` bytes.

Functions are listed in ``VALID_CALLS`` (a valid call, the baseline of the probes) or in
``NOT_PROBED`` with the reason; a public function in neither fails the test, so a new function
cannot escape the probes.
"""

from __future__ import annotations

import importlib
import inspect
import math
import pkgutil
import signal
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sympy as sp

import lorabook

MEMORY_LIMIT = 200 * 2**20
"""Peak Python/numpy allocation allowed while a bad input is rejected (200 MiB)."""
TIME_LIMIT = 1.0
"""Seconds a rejection may take."""
HUGE = 10**12
"""A size whose arrays would need far more memory than the machine's 24 GB."""

ROOT = Path(__file__).resolve().parents[1]

# About 30 s of CPU (the valid calls derive closed forms with sympy): in the full suite only.
pytestmark = pytest.mark.slow


def _problem(rank: int = 2):
    from lorabook.linear_regression import linear_finetuning as lf

    return lf.finetuning_problem(8, 6, 20, rank, 0.5, seed=0)


def _sgd_result():
    from lorabook.single_index_lora import sgd

    return sgd.simulate_reduced("erf", dimension=50, learning_rate=0.05, batch_size=4, n_steps=20,
                                n_seeds=2, seed=0, pretraining_strength=0.5, n_records=5)


SGD = dict(dimension=50, learning_rate=0.05, batch_size=4, n_steps=20, n_seeds=2, seed=0, n_records=5)

# A valid call of every probed function: keyword arguments (callables give fresh values).
VALID_CALLS: dict[str, Callable[[], dict[str, Any]]] = {
    # activations
    "activations.activation": lambda: dict(name="erf"),
    "activations.activation_derivative": lambda: dict(name="erf"),
    "activations.activation_second_derivative": lambda: dict(name="erf"),
    "activations.activation_sympy": lambda: dict(name="erf"),
    "activations.check_activation": lambda: dict(name="erf"),
    "activations.check_target": lambda: dict(name="erf^2"),
    "activations.hermite_combination": lambda: dict(name="He1+He3"),
    "activations.hermite_degree": lambda: dict(name="He3"),
    "activations.is_composite": lambda: dict(name="He1+He3"),
    "activations.is_polynomial": lambda: dict(name="He3"),
    "activations.squared_base": lambda: dict(name="erf^2"),
    "activations.resolve_teacher": lambda: dict(activation="erf", teacher="He3"),
    "activations.resolve_activation": lambda: dict(name="He1+He3"),
    # committee integrals (Chapter 8)
    "committee_integrals.check_committee_activation": lambda: dict(activation="erf"),
    "committee_integrals.check_covariance": lambda: dict(covariance=np.eye(3), size=3),
    "committee_integrals.two_point": lambda: dict(activation="erf", covariance=np.eye(2)),
    "committee_integrals.three_point": lambda: dict(activation="relu", covariance=np.eye(3)),
    "committee_integrals.four_point": lambda: dict(activation="relu", covariance=np.eye(4), n_nodes=4),
    "committee_integrals.four_point_with_error": lambda: dict(activation="relu", covariance=np.eye(4), n_nodes=4),
    "committee_integrals.orthant_probability_4": lambda: dict(correlation=np.eye(4), n_nodes=4),
    # committee (Chapter 8)
    "committee.best_rank_r_risk": lambda: dict(
        activation="linear", pretraining_strength=0.5, n_neurons=3, rank=1, n_weakened=1, n_starts=0, seed=0
    ),
    "committee.check_lora_shapes": lambda: dict(
        U=np.zeros((3, 1)), M=np.zeros((1, 3)), Q_V=np.ones((1, 1)), D=np.eye(3)
    ),
    "committee.check_rank": lambda: dict(n_neurons=4, rank=2),
    "committee.check_overlaps": lambda: dict(Q=np.eye(2), R=0.5 * np.eye(2), T_overlap=np.eye(2)),
    "committee.check_teacher": lambda: dict(teacher_weights=np.eye(2, 5), n_neurons=2, dimension=5),
    "committee.committee_risk": lambda: dict(
        activation="erf", Q=np.eye(2), R=0.5 * np.eye(2), T_overlap=np.eye(2), readout=0.5
    ),
    "committee.committee_risk_gradient": lambda: dict(
        activation="erf", W=0.5 * np.eye(2, 3), T=np.eye(2, 3), readout=0.5
    ),
    "committee.committee_gradient_covariance": lambda: dict(
        activation="relu", Q=np.eye(2), R=0.5 * np.eye(2), T_overlap=np.eye(2), readout=0.5
    ),
    "committee.lora_overlaps": lambda: dict(U=np.zeros((3, 1)), M=np.zeros((1, 3)), Q_V=np.ones((1, 1)), D=np.eye(3)),
    "committee.lora_overlaps_sympy": lambda: dict(n_neurons=3, rank=1),
    "committee.orthonormal_teacher": lambda: dict(n_neurons=2, dimension=5, seed=0),
    "committee.pretrained_coefficients": lambda: dict(n_neurons=4, pretraining_strength=0.5, n_weakened=2),
    "committee.readout_scale": lambda: dict(activation="relu", n_neurons=4),
    # committee ODE (Chapter 8)
    "overlap_equations.committee_equations": lambda: dict(
        model=importlib.import_module("lorabook.two_layer_lora.committee_ode").lora_committee_model(2, 1)
    ),
    "overlap_equations.committee_symbols": lambda: dict(n_students=2, n_teachers=2),
    "committee_ode.lora_committee_model": lambda: dict(n_neurons=3, rank=1),
    "committee_ode.lora_committee_equations": lambda: dict(n_neurons=2, rank=1),
    "committee_ode.pack_statistics": lambda: dict(U=np.zeros((3, 1)), M=np.zeros((1, 3)), Q_V=np.ones((1, 1))),
    "committee_ode.unpack_statistics": lambda: dict(state=np.zeros(6), n_neurons=3, rank=1),
    "committee_ode.committee_risk_derivatives": lambda: dict(
        activation="erf", Q=np.eye(2), R=0.5 * np.eye(2), T_overlap=np.eye(2), readout=0.5
    ),
    "committee_ode.committee_ode_rhs": lambda: dict(
        activation="erf", state=np.full(4, 0.1), n_neurons=2, rank=1, pretraining_strength=0.5, n_weakened=1,
        noise_strength=0.0
    ),
    "committee_ode.integrate_committee_ode": lambda: dict(
        activation="erf", U=np.zeros((2, 1)), M=np.array([[0.1, 0.0]]), Q_V=np.ones((1, 1)), final_time=1.0,
        pretraining_strength=0.5, n_weakened=1, noise_strength=0.0, n_times=5
    ),
    "committee_ode.committee_linearization": lambda: dict(
        activation="erf", n_neurons=2, rank=1, pretraining_strength=0.5, n_weakened=1
    ),
    # committee SGD (Chapter 8)
    "committee_sgd.lora_loss_gradients": lambda: dict(
        activation="erf",
        U=np.zeros((2, 1)),
        V=np.ones((1, 5)) / np.sqrt(5),
        D=np.eye(2),
        T=np.eye(2, 5),
        x=np.ones((3, 5)),
        readout=0.5,
    ),
    "committee_sgd.simulate_committee_lora": lambda: dict(
        activation="erf", n_neurons=2, rank=1, pretraining_strength=0.5, n_weakened=1, initial_scale=0.01, **SGD
    ),
    # curriculum
    "curriculum.integrate_curriculum_ode": lambda: dict(
        activation="linear",
        pretraining_strength=0.5,
        stages=[("linear^2", 1.0), ("linear", 1.0)],
        initial_scale=0.01,
        initial_overlap=0.05,
        n_times=20,
    ),
    "curriculum.simulate_curriculum": lambda: dict(
        simulator="reduced",
        activation="He3",
        stages=[("He3^2", 10), ("He3", 10)],
        seed=0,
        initial_scale=0.1,
        dimension=50,
        learning_rate=0.001,
        batch_size=4,
        n_seeds=2,
        pretraining_strength=0.5,
    ),
    # factor dynamics
    "factor_dynamics.factor_escape_rate": lambda: dict(shift_singular_value=0.5, initial_scale=1.0),
    "factor_dynamics.factor_flow": lambda: dict(
        B=np.zeros((3, 1)), A=np.ones((1, 4)) * 0.1, task_shift=np.ones((3, 4))
    ),
    "factor_dynamics.factor_linearization": lambda: dict(shift_singular_value=0.5, initial_scale=1.0),
    "factor_dynamics.factor_search_time": lambda: dict(shift_singular_value=0.5, initial_scale=1.0),
    "factor_dynamics.integrate_factor_flow": lambda: dict(
        shift_singular_value=0.5, initial_alpha=0.1, initial_perp_norm_squared=0.5, times=np.linspace(0, 5, 11)
    ),
    "factor_dynamics.lora_factor_trajectory": lambda: (
        lambda p: dict(X=p.X, Y=p.Y, A0=p.pretrained, initial_A=np.ones((1, 8)) * 0.1, steps=5, learning_rate=0.01)
    )(_problem()),
    "factor_dynamics.loss_fraction_time": lambda: dict(time=np.linspace(0, 1, 11), loss=np.linspace(1, 0, 11)),
    "factor_dynamics.reduced_balance": lambda: dict(state=np.array([0.1, 0.0, 0.5])),
    "factor_dynamics.reduced_overlaps": lambda: dict(
        B=np.ones((3, 1)) * 0.1, A=np.ones((1, 4)) * 0.1, left_vector=np.eye(3)[0], right_vector=np.eye(4)[0]
    ),
    "factor_dynamics.reduced_population_loss": lambda: dict(state=np.array([0.1, 0.0, 0.5]), shift_singular_value=0.5),
    "factor_dynamics.reduced_rhs": lambda: dict(state=np.array([0.1, 0.0, 0.5]), shift_singular_value=0.5),
    # full fine-tuning
    "full_finetuning.full_finetuning_ode_rhs": lambda: dict(activation="linear", overlap=0.5, norm_squared=0.3),
    "full_finetuning.integrate_full_finetuning_ode": lambda: dict(
        activation="linear", pretraining_strength=0.5, times=np.linspace(0, 2, 5)
    ),
    "full_finetuning.integrate_strength_flow": lambda: dict(
        activation="linear", pretraining_strength=0.5, times=np.linspace(0, 2, 5)
    ),
    "full_finetuning.simulate_full_finetuning": lambda: dict(activation="erf", pretraining_strength=0.5, **SGD),
    "full_finetuning.strength_flow_time": lambda: dict(activation="linear", start=0.5, end=0.75),
    "full_finetuning.strength_velocity": lambda: dict(activation="linear", strength=0.5),
    # gaussian
    "gaussian.check_covariance_2d": lambda: dict(c11=1.0, c12=0.3, c22=1.0),
    "gaussian.gauss_hermite_expectation": lambda: dict(f=np.cos, variance=1.0, n_nodes=20),
    "gaussian.gauss_hermite_expectation_with_error": lambda: dict(f=np.cos, variance=1.0, n_nodes=20),
    "gaussian.gaussian_expectation_2d": lambda: dict(f=lambda a, b: a * b, c11=1.0, c12=0.3, c22=1.0, n_nodes=10),
    "gaussian.gaussian_expectation_2d_with_error": lambda: dict(
        f=lambda a, b: a * b, c11=1.0, c12=0.3, c22=1.0, n_nodes=10
    ),
    "gaussian.gaussian_expectation_adaptive": lambda: dict(f=math.cos, variance=1.0),
    "gaussian.gaussian_expectation_sympy": lambda: dict(
        expr=sp.Symbol("a") ** 2, variables=[sp.Symbol("a")], covariance=[[1]]
    ),
    "gaussian.gaussian_weighted_expectation_sympy": lambda: dict(
        expr=sp.Symbol("a") ** 2, variable=sp.Symbol("a"), decay=1
    ),
    "gaussian.half_line_expectation_sympy": lambda: dict(expr=sp.Symbol("a"), variable=sp.Symbol("a")),
    "gaussian.hermite": lambda: dict(k=3, z=np.linspace(-1, 1, 5)),
    "gaussian.hermite_expansion_sympy": lambda: dict(expr=sp.Symbol("a") ** 3, variable=sp.Symbol("a")),
    "gaussian.hermite_sympy": lambda: dict(k=3, z=sp.Symbol("a")),
    "gaussian.monte_carlo_expectation_2d": lambda: dict(
        f=lambda a, b: a * b, c11=1.0, c12=0.3, c22=1.0, n_samples=1000, seed=0
    ),
    # hermite
    "hermite.has_exact_hermite_coefficients": lambda: dict(name="erf"),
    "hermite.hermite_coefficients": lambda: dict(name="erf", k_max=5),
    "hermite.hermite_coefficients_quadrature": lambda: dict(name="sigmoid", k_max=5),
    "hermite.hermite_coefficients_sympy": lambda: dict(name="He3", k_max=5),
    "hermite.hermite_kernel_series": lambda: dict(name_f="erf", name_g="relu", correlation=0.3, k_max=5),
    "hermite.information_exponent": lambda: dict(name="He3"),
    # kernels
    "kernels.correlation_kernel": lambda: dict(f="erf", g="relu", c11=1.0, c12=0.3, c22=1.0),
    "kernels.correlation_kernel_sympy": lambda: dict(f="erf", g="relu"),
    "kernels.correlation_kernel_with_error": lambda: dict(f="erf", g="relu", c11=1.0, c12=0.3, c22=1.0),
    "kernels.has_closed_form": lambda: dict(f="erf", g="relu"),
    "kernels.closed_form_family": lambda: dict(name="He3"),
    "kernels.squared_error_risk_sympy": lambda: dict(
        student="linear", teacher="linear", q=sp.Symbol("q"), rho=sp.Symbol("rho")
    ),
    # linear fine-tuning
    "linear_finetuning.detection_threshold": lambda: dict(aspect_ratio=0.5),
    "linear_finetuning.check_regression": lambda: (lambda p: dict(X=p.X, Y=p.Y, A0=p.pretrained))(_problem()),
    "linear_finetuning.estimated_optimal_rank": lambda: (lambda p: dict(X=p.X, Y=p.Y, A0=p.pretrained))(_problem()),
    "linear_finetuning.excess_risk": lambda: dict(estimate=np.ones((6, 8)), true_weights=np.zeros((6, 8))),
    "linear_finetuning.excess_risk_monte_carlo": lambda: dict(
        pretrained=np.zeros((6, 8)),
        task_shift=np.ones((6, 8)) * 0.1,
        num_samples=20,
        noise_std=0.5,
        ranks=[1, 2],
        num_seeds=2,
        seed=0,
    ),
    "linear_finetuning.fft_estimator": lambda: (lambda p: dict(X=p.X, Y=p.Y, A0=p.pretrained))(_problem()),
    "linear_finetuning.fft_excess_risk": lambda: dict(
        input_dimension=8, output_dimension=6, num_samples=20, noise_std=0.5, shift_energy=1.0
    ),
    "linear_finetuning.fft_gradient_descent": lambda: (
        lambda p: dict(X=p.X, Y=p.Y, initial_weights=p.pretrained, steps=5)
    )(_problem()),
    "linear_finetuning.finetuning_problem": lambda: dict(
        input_dimension=8, output_dimension=6, num_samples=20, true_rank=2, noise_std=0.5, seed=0
    ),
    "linear_finetuning.gaussian_task_shift": lambda: dict(output_dimension=6, input_dimension=8, true_rank=2, seed=0),
    "linear_finetuning.input_covariance_sqrt": lambda: dict(X=_problem().X),
    "linear_finetuning.inverse_chi_square_mean_sympy": lambda: dict(degrees_of_freedom=sp.Symbol("k", positive=True)),
    "linear_finetuning.lora_alternating_least_squares": lambda: (
        lambda p: dict(X=p.X, Y=p.Y, A0=p.pretrained, rank=2, iterations=3, seed=0)
    )(_problem()),
    "linear_finetuning.lora_estimator": lambda: (lambda p: dict(X=p.X, Y=p.Y, A0=p.pretrained, rank=2))(_problem()),
    "linear_finetuning.lora_excess_risk_curve": lambda: dict(
        singular_values=[3.0, 1.0],
        input_dimension=40,
        output_dimension=30,
        num_samples=200,
        noise_std=0.5,
        ranks=[1, 2],
    ),
    "linear_finetuning.lora_excess_risk_prediction": lambda: dict(
        singular_values=[3.0, 1.0], input_dimension=40, output_dimension=30, num_samples=200, noise_std=0.5, rank=2
    ),
    "linear_finetuning.lora_gradient_descent": lambda: (
        lambda p: dict(X=p.X, Y=p.Y, A0=p.pretrained, rank=2, steps=5, seed=0)
    )(_problem()),
    "linear_finetuning.noise_top_squared_singular_values": lambda: dict(aspect_ratio=0.5, short_dimension=20, count=3),
    "linear_finetuning.optimal_rank": lambda: dict(
        singular_values=[3.0, 1.0], input_dimension=40, output_dimension=30, num_samples=200, noise_std=0.5
    ),
    "linear_finetuning.pretrained_weights": lambda: dict(output_dimension=6, input_dimension=8, seed=0),
    "linear_finetuning.regression_data": lambda: dict(
        true_weights=np.ones((6, 8)), num_samples=20, noise_std=0.5, seed=0
    ),
    "linear_finetuning.spectral_task_shift": lambda: dict(
        output_dimension=6, input_dimension=8, singular_values=[3.0, 1.0], seed=0
    ),
    "linear_finetuning.spike_strength_from_singular_value": lambda: dict(singular_value=3.0, aspect_ratio=0.5),
    "linear_finetuning.spiked_noise_scale": lambda: dict(
        input_dimension=40, output_dimension=30, num_samples=200, noise_std=0.5
    ),
    "linear_finetuning.spiked_overlaps": lambda: dict(theta=2.0, aspect_ratio=0.5),
    "linear_finetuning.spiked_singular_value": lambda: dict(theta=2.0, aspect_ratio=0.5),
    "linear_finetuning.task_shift_spectrum": lambda: dict(kind="exponential", true_rank=4, scale=2.0, decay_rate=0.5),
    "linear_finetuning.training_loss": lambda: (lambda p: dict(X=p.X, Y=p.Y, weights=p.pretrained))(_problem()),
    "linear_finetuning.unwhitening_factors": lambda: dict(input_dimension=40, num_samples=200, true_rank=2),
    "linear_finetuning.whitened_shift": lambda: (lambda p: dict(X=p.X, Y=p.Y, A0=p.pretrained))(_problem()),
    # lora
    "lora.check_direction_overlap": lambda: dict(m=0.3),
    "lora.check_noise_strength": lambda: dict(noise_strength=0.5),
    "lora.gradient_factor_of_covariances": lambda: dict(activation="erf", rho=0.5, residual_norm=0.2),
    "lora.linearization_from_risk_derivatives": lambda: dict(mu=0.5, risk_q=0.3, risk_rho=-0.8),
    "lora.lora_model": lambda: dict(rank=2),
    "lora.risk_derivatives_of_covariances": lambda: dict(activation="erf", rho=0.5, residual_norm=0.2),
    "lora.risk_of_covariances": lambda: dict(activation="erf", rho=0.5, residual_norm=0.2),
    "overlap_equations.overlap_equations": lambda: dict(
        model=importlib.import_module("lorabook.single_index_lora.lora").MODEL
    ),
    "lora.check_pretraining_strength": lambda: dict(mu=0.5),
    "lora.escape_rate": lambda: dict(coefficient_a=0.5, coefficient_b=-1.0),
    "lora.gradient_second_moment": lambda: dict(activation="erf", mu=0.5, u=0.1, m=0.2),
    "lora.gradient_second_moment_sympy": lambda: dict(activation="linear"),
    "lora.linearization": lambda: dict(activation="erf", mu=0.5),
    "lora.overlap_drift_sympy": lambda: dict(activation="linear"),
    "lora.overlap_ode_rhs": lambda: dict(activation="erf", mu=0.5, u=0.1, m=0.2),
    "lora.population_risk": lambda: dict(activation="erf", mu=0.5, u=0.1, m=0.2),
    "lora.risk_derivatives": lambda: dict(activation="erf", mu=0.5, u=0.1, m=0.2),
    "lora.risk_derivatives_sympy": lambda: dict(activation="linear"),
    "lora.risk_function_sympy": lambda: dict(activation="linear"),
    "lora.search_time": lambda: dict(activation="erf", mu=0.5),
    "lora.trap_strengths": lambda: dict(activation="He3", grid_size=401),
    "lora.trap_strengths_sympy": lambda: dict(activation="He3"),
    # lora dynamics
    "lora_dynamics.integrate_lora_ode": lambda: dict(
        activation="linear",
        pretraining_strength=0.5,
        initial_scale=0.01,
        initial_overlap=0.05,
        final_time=5.0,
        n_times=20,
    ),
    "lora_dynamics.stability_constant": lambda: dict(activation="erf", n_nodes=40),
    "lora_dynamics.stability_threshold": lambda: dict(activation="erf", pretraining_strength=0.5, n_nodes=40),
    # non-aligned
    "non_aligned.overlap_ode_rhs": lambda: dict(activation="erf", mu=0.5, nu=0.3, u=0.1, m=0.2, p=0.1),
    "non_aligned.population_risk": lambda: dict(activation="erf", mu=0.5, nu=0.3, u=0.1, m=0.2, p=0.1),
    "non_aligned.simulate": lambda: dict(
        simulator="reduced", activation="erf", pretraining_strength=0.5, offset_strength=0.3, initial_scale=0.1, **SGD
    ),
    # ode
    "ode.integrate_overlap_ode": lambda: dict(rhs=lambda t, y: -y, initial_state=[0.5], final_time=1.0, n_times=10),
    "ode.output_times": lambda: dict(final_time=10.0, n_times=10),
    # printing
    "printing.print_wrapped": lambda: dict(label="x =", expression=1),
    "printing.wrapped": lambda: dict(label="x =", expression=1),
    # remedies
    "remedies.adiabatic_overlap": lambda: dict(mu=0.5, initial_overlap=0.05, time=1.0),
    "remedies.best_rank_one_update": lambda: dict(mu=0.5, nu=0.3),
    "remedies.curriculum_outcomes": lambda: dict(
        activation="He3",
        mu=0.5,
        switch_times=[0.5],
        first_teacher="He3^2",
        initial_scale=0.01,
        initial_overlap=0.05,
        second_duration=1.0,
    ),
    "remedies.integrate_non_aligned_ode": lambda: dict(
        activation="erf", mu=0.5, nu=0.3, initial_state=[0.01, 0.05, 0.0], final_time=1.0, n_times=10
    ),
    "remedies.non_aligned_linearization": lambda: dict(activation="erf", mu=0.5, nu=0.3),
    "remedies.non_aligned_search_time": lambda: dict(activation="erf", mu=0.5, nu=0.3),
    "remedies.non_aligned_stability_threshold": lambda: dict(activation="erf", mu=0.5, nu=0.3, n_nodes=40),
    # search phase
    "search_phase.discrete_search_time": lambda: dict(search_time=3.0, learning_rate=0.1),
    "search_phase.escape_time_slope": lambda: dict(
        dimensions=[100, 1000, 10000], escape_times=[[2.0, 2.1], [3.1, 3.0], [4.2, 4.1]]
    ),
    "search_phase.hermite_series_linearization": lambda: dict(activation="erf", mu=0.5, n_terms=5),
    "search_phase.hermite_series_search_time": lambda: dict(activation="erf", mu=0.5, n_terms=5),
    "search_phase.measure_search_time": lambda: dict(activation="linear", mu=0.5, n_seeds=2, seed=0, dimension=200),
    "search_phase.output_gradient_moment": lambda: dict(activation="erf", mu=0.5),
    "search_phase.unstable_direction": lambda: dict(coefficient_a=0.5, coefficient_b=-1.0),
    # sgd
    "sgd.escape_time": lambda: dict(result=_sgd_result(), threshold=0.5),
    "sgd.initial_overlaps": lambda: dict(rng=np.random.default_rng(0), dimension=50, n_seeds=3),
    "sgd.record_steps": lambda: dict(n_steps=100, n_records=10),
    "sgd.simulate_full": lambda: dict(activation="erf", pretraining_strength=0.5, initial_scale=0.1, **SGD),
    "sgd.simulate_reduced": lambda: dict(activation="erf", pretraining_strength=0.5, initial_scale=0.1, **SGD),
    "sgd.simulate_sgd": lambda: dict(simulator="reduced", activation="erf", **SGD),
    "sgd.SGDSettings": lambda: dict(SGD),
    "sgd.resolve_settings": lambda: dict(settings=None, keywords=dict(SGD)),
    "sgd.check_model": lambda: dict(activation="erf", teacher=None, pretraining_strength=0.5, initial_scale=0.1,
                                    n_seeds=2),
    # single index
    "single_index.critical_noise_strength": lambda: dict(activation="He3", initial_overlap=0.1),
    "single_index.overlap_ode_rhs": lambda: dict(activation="He3"),
    "single_index.risk": lambda: dict(activation="He3", overlap=0.5),
    "single_index.small_overlap_coefficients": lambda: dict(activation="He3"),
}

NOT_PROBED = {
    "linear_finetuning.fft_excess_risk_symbols": "takes no arguments",
    "non_aligned.overlaps_sympy": "takes no arguments",
    "non_aligned.drift_sympy": "takes no arguments",
    "lora.linearization_coefficients_sympy": "takes no arguments",
    "remedies.effective_potential_sympy": "takes no arguments",
    "plotting.book_colors": "takes no arguments",
    "plotting.use_book_style": "takes no arguments",
    "reexecute.prepare_chapter_environment": "takes no arguments",
    "reexecute.main": "the command line; argparse reports bad arguments and exits",
    "publishing.sphinx_extension.setup": "Sphinx's extension hook",
    **{
        f"validation.{name}": "a validator itself: tests/test_validation.py feeds it bad values"
        for name in ("integer", "real", "real_array", "choice", "boolean", "function", "generator", "check_memory",
                     "matrix")
    },
}
SCALAR_OK = {("ode.integrate_overlap_ode", "initial_state"), ("remedies.curriculum_outcomes", "switch_times")}
"""One-dimensional parameters that also take a single number (one ODE component, one switch time)."""
MAY_BE_EMPTY = {("linear_finetuning.excess_risk_monte_carlo", "ranks")}
"""Sequences that may be empty (no LoRA ranks: only full fine-tuning is measured)."""
TOOLING = ("lorabook.publishing", "lorabook.deprecation")
PROBED_TOOLING = {"lorabook.publishing.plotting", "lorabook.publishing.printing"}
"""Chapters call these with numbers and text: they are probed like the science modules."""
"""The book's tooling works on files and sites, not numbers; its own tests cover its inputs."""

NAMES = {
    "activation",
    "teacher",
    "student",
    "name",
    "name_f",
    "name_g",
    "simulator",
    "spacing",
    "kind",
    "method",
    "first_teacher",
    "second_teacher",
}
"""Parameters that name one of a set of choices: an unknown name must be refused."""
KERNEL_NAMES = {"kernels": {"f", "g"}}
SIZES = {
    "dimension",
    "batch_size",
    "n_steps",
    "n_seeds",
    "n_records",
    "n_times",
    "n_nodes",
    "n_samples",
    "num_samples",
    "num_seeds",
    "iterations",
    "steps",
    "grid_size",
    "n_terms",
    "input_dimension",
    "output_dimension",
    "rank",
    "count",
    "short_dimension",
    "chunk_size",
    "record_every",
    "max_rank",
    "true_rank",
    "k_max",
    "k",
    "n_neurons",
    "n_weakened",
    "n_starts",
    "size",
    "n_students",
    "n_teachers",
}
"""Integer sizes and counts (k and k_max may be 0; the others must be positive)."""
MAY_BE_ZERO = {"k", "k_max", "true_rank", "n_steps", "steps", "count", "n_weakened", "n_starts"}
ALLOCATES = {
    "sgd.simulate_full": {"dimension", "n_seeds", "n_records", "batch_size"},
    "committee_sgd.simulate_committee_lora": {"dimension", "n_seeds", "n_records", "batch_size", "n_neurons"},
    "committee.orthonormal_teacher": {"n_neurons", "dimension"},
    "committee.pretrained_coefficients": {"n_neurons"},
    "committee.best_rank_r_risk": {"n_neurons"},
    "committee.lora_overlaps_sympy": {"n_neurons"},
    "committee_ode.lora_committee_model": {"n_neurons"},
    "committee_ode.lora_committee_equations": {"n_neurons"},
    "committee_ode.committee_linearization": {"n_neurons"},
    "committee_ode.integrate_committee_ode": {"n_times"},
    "overlap_equations.committee_symbols": {"n_students", "n_teachers"},
    "committee_integrals.four_point": {"n_nodes"},
    "committee_integrals.four_point_with_error": {"n_nodes"},
    "committee_integrals.orthant_probability_4": {"n_nodes"},
    "sgd.SGDSettings": {"n_seeds", "n_records", "batch_size"},
    "sgd.simulate_reduced": {"n_seeds", "n_records", "batch_size"},
    "sgd.simulate_sgd": {"n_seeds", "n_records", "batch_size"},
    "sgd.initial_overlaps": {"n_seeds"},
    "sgd.record_steps": {"n_records"},
    "full_finetuning.simulate_full_finetuning": {"n_seeds", "n_records", "batch_size"},
    "non_aligned.simulate": {"n_seeds", "n_records", "batch_size"},
    "search_phase.measure_search_time": {"n_seeds"},
    "gaussian.gauss_hermite_expectation": {"n_nodes"},
    "gaussian.gauss_hermite_expectation_with_error": {"n_nodes"},
    "gaussian.gaussian_expectation_2d": {"n_nodes"},
    "gaussian.gaussian_expectation_2d_with_error": {"n_nodes"},
    "gaussian.monte_carlo_expectation_2d": {"n_samples"},
    "lora.trap_strengths": {"grid_size"},
    "lora_dynamics.stability_constant": {"n_nodes"},
    "lora_dynamics.stability_threshold": {"n_nodes"},
    "lora_dynamics.integrate_lora_ode": {"n_times"},
    "remedies.non_aligned_stability_threshold": {"n_nodes"},
    "remedies.integrate_non_aligned_ode": {"n_times"},
    "ode.integrate_overlap_ode": {"n_times"},
    "ode.output_times": {"n_times"},
    "curriculum.integrate_curriculum_ode": {"n_times"},
    "linear_finetuning.finetuning_problem": {"input_dimension", "output_dimension", "num_samples"},
    "linear_finetuning.pretrained_weights": {"input_dimension", "output_dimension"},
    "linear_finetuning.gaussian_task_shift": {"input_dimension", "output_dimension"},
    "linear_finetuning.spectral_task_shift": {"input_dimension", "output_dimension"},
    "linear_finetuning.regression_data": {"num_samples"},
    "linear_finetuning.excess_risk_monte_carlo": {"num_samples", "num_seeds"},
}
"""Sizes that set the size of arrays: a huge one must be refused before anything is allocated
(closed forms and the exact reduced simulators, whose cost does not grow with d, take any size)."""
MATCHED = {
    "linear_finetuning.estimated_optimal_rank": {"X", "Y", "A0"},
    "linear_finetuning.fft_estimator": {"X", "Y", "A0"},
    "linear_finetuning.lora_estimator": {"X", "Y", "A0"},
    "linear_finetuning.whitened_shift": {"X", "Y", "A0"},
    "linear_finetuning.training_loss": {"X", "Y", "weights"},
    "linear_finetuning.fft_gradient_descent": {"X", "Y", "initial_weights"},
    "linear_finetuning.lora_gradient_descent": {"X", "Y", "A0"},
    "linear_finetuning.lora_alternating_least_squares": {"X", "Y", "A0"},
    "linear_finetuning.excess_risk": {"estimate", "true_weights"},
    "linear_finetuning.excess_risk_monte_carlo": {"pretrained", "task_shift"},
    "factor_dynamics.factor_flow": {"B", "A", "task_shift"},
    "factor_dynamics.reduced_overlaps": {"B", "A", "left_vector", "right_vector"},
    "factor_dynamics.lora_factor_trajectory": {"X", "Y", "A0", "initial_A"},
    "factor_dynamics.loss_fraction_time": {"time", "loss"},
    "factor_dynamics.reduced_balance": {"state"},
    "factor_dynamics.reduced_population_loss": {"state"},
    "factor_dynamics.reduced_rhs": {"state"},
    "remedies.integrate_non_aligned_ode": {"initial_state"},
    "committee_ode.unpack_statistics": {"state"},
    "committee_ode.committee_ode_rhs": {"state"},
    "committee_ode.pack_statistics": {"M", "Q_V"},
    "committee_ode.integrate_committee_ode": {"M", "Q_V"},
}
"""Arrays whose shape must match other arguments (or a fixed length): one more column is wrong."""
POSITIVE = {
    "learning_rate",
    "final_time",
    "aspect_ratio",
    "second_duration",
    "scale",
    "threshold",
    "noise_factor",
    "amplitude",
    "growth",
    "risk_tolerance",
    "rtol",
    "atol",
    "first_time",
    "norm_squared",
    "readout",
}
NON_NEGATIVE = {
    "noise_std",
    "noise_strength",
    "shift_energy",
    "decay_rate",
    "initial_perp_norm_squared",
    "variance",
    "c11",
    "c22",
    "residual_norm",
}
MAY_BE_INFINITE = {"search_time"}
"""A search time is infinite where the pre-trained point does not escape (a trap)."""
UNIT_INTERVAL = {"initial_overlap", "m", "overlap", "fraction"}
"""Cosines and fractions: |value| <= 1."""
NUMBERS = {
    "mu",
    "nu",
    "u",
    "p",
    "pretraining_strength",
    "offset_strength",
    "strength",
    "start",
    "end",
    "c12",
    "correlation",
    "theta",
    "singular_value",
    "shift_singular_value",
    "coefficient_a",
    "coefficient_b",
    "search_time",
    "rho",
    "risk_q",
    "risk_rho",
    "initial_alpha",
    "initial_beta",
    "time",
    "z",
    "initial_scale",
}
ARRAYS = {
    "X",
    "Y",
    "A0",
    "A",
    "B",
    "task_shift",
    "pretrained",
    "weights",
    "initial_weights",
    "initial_A",
    "estimate",
    "true_weights",
    "times",
    "loss",
    "state",
    "left_vector",
    "right_vector",
    "singular_values",
    "switch_times",
    "initial_state",
    "U",
    "V",
    "M",
    "Q_V",
    "D",
    "Q",
    "R",
    "W",
    "T",
    "T_overlap",
    "x",
    "teacher_weights",
}
BOOLEANS = {
    "antithetic",
    "train_scale",
    "include_correction",
    "include_unwhitening",
    "stop_at_escape",
    "stop_when_escaped",
    "escape_on_magnitude",
    "on_magnitude",
}
CALLABLES = {"f", "rhs"}
SYMBOLS = {"variable", "variables"}


def _public_functions() -> dict[str, Callable]:
    found = {}
    for module_info in pkgutil.walk_packages(lorabook.__path__, "lorabook."):
        name = module_info.name
        if name.rsplit(".", 1)[-1].startswith("_") or (name.startswith(TOOLING) and name not in PROBED_TOOLING):
            continue
        module = importlib.import_module(name)
        for attribute, value in vars(module).items():
            if attribute.startswith("_") or getattr(value, "__module__", None) != name:
                continue
            if inspect.isfunction(value):
                found[name.rsplit(".", 1)[-1] + "." + attribute] = value  # module names are unique
    return found


PUBLIC = _public_functions()
# The settings object of the simulators validates its fields itself: probe its constructor.
PUBLIC["sgd.SGDSettings"] = importlib.import_module("lorabook.single_index_lora.sgd").SGDSettings


def _probes(function_name: str, parameter: str, valid: Any) -> list[tuple[str, Any]]:
    """(description, bad value) pairs for one parameter of one function."""
    module = function_name.split(".")[0]
    probes: list[tuple[str, Any]] = []
    if parameter in NAMES or parameter in KERNEL_NAMES.get(module, ()):
        if isinstance(valid, str) or valid is None:
            probes += [("unknown name", "no-such-name"), ("wrong type", 3)]
    elif parameter in CALLABLES:
        probes += [("not callable", 3)]
    elif parameter in SIZES:
        probes += [("negative size", -1), ("fractional size", 2.5), ("size as a string", "3"), ("size as a bool", True)]
        if parameter not in MAY_BE_ZERO:
            probes.append(("zero size", 0))
        if parameter in ALLOCATES.get(function_name, ()):
            probes.append(("size beyond memory", HUGE))
    elif parameter in ARRAYS:
        array = np.asarray(valid, dtype=float)
        probes += [
            ("NaN entry", np.where(np.arange(array.size).reshape(array.shape) == 0, np.nan, array)),
            ("empty array", np.zeros((0,) * max(array.ndim, 1))),
            ("wrong type", "abc"),
        ]
        # Leading axes are batch axes in many functions: fewer axes are what is always wrong.
        if array.ndim >= 2:
            probes.append(("too few dimensions", array.reshape(-1)))
        elif (function_name, parameter) not in SCALAR_OK:
            probes.append(("too few dimensions", array.reshape(-1)[0]))
        if array.ndim >= 1 and parameter in MATCHED.get(function_name, ()):
            probes.append(("mismatched shape", np.concatenate([array, array[..., :1]], axis=-1)))
    elif parameter in BOOLEANS:
        probes += [("bool as a string", "yes")]
    elif parameter in SYMBOLS:
        probes += [("wrong type", 3)]
    elif parameter == "seed":
        probes += [("negative seed", -1), ("fractional seed", 2.5), ("seed as a string", "3")]
    elif parameter == "rng":
        probes += [("not a Generator", 3)]
    elif parameter == "model":
        probes += [("not a model", 3)]
    elif parameter == "settings":
        probes += [("not SGDSettings", 3)]
    elif parameter == "keywords":
        probes += [("unknown setting", {**valid, "no_such_setting": 1})]
    elif parameter == "result":
        probes += [("wrong type", 3)]
    elif parameter == "stages":
        probes += [("no stages", []), ("unknown stage teacher", [("no-such-name", valid[0][1])])]
    elif parameter in ("ranks", "dimensions", "escape_times", "breakpoints", "bounded_components"):
        probes += [("wrong type", "abc")]
        if (function_name, parameter) not in MAY_BE_EMPTY:
            probes.append(("empty", []))
    elif isinstance(valid, (int, float)) and not isinstance(valid, bool):
        kind = POSITIVE | NON_NEGATIVE | UNIT_INTERVAL | NUMBERS
        if parameter in kind or parameter in ("c11", "c12", "c22", "variance", "covariance"):
            probes += [("NaN", math.nan), ("number as a string", "x")]
            if parameter not in MAY_BE_INFINITE:
                probes.append(("infinity", math.inf))
            if parameter in POSITIVE:
                probes += [("zero", 0.0), ("negative", -1.0)]
            elif parameter in NON_NEGATIVE:
                probes += [("negative", -1.0)]
            elif parameter in UNIT_INTERVAL:
                probes += [("above one", 1.5)]
    return probes


class _Overtime(BaseException):
    """Raised in a call that runs far past the time limit (so that the probes finish)."""


def _overtime(signum: int, frame: object) -> None:
    raise _Overtime


def _call(function: Callable, arguments: dict, limit: float = 5.0) -> tuple[BaseException | None, float, int]:
    tracemalloc.start()
    previous = signal.signal(signal.SIGALRM, _overtime)
    signal.setitimer(signal.ITIMER_REAL, limit)
    started = time.perf_counter()
    error = None
    try:
        function(**arguments)
    except BaseException as raised:  # noqa: BLE001 - the point is to see what comes out
        error = raised
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    elapsed = time.perf_counter() - started
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return error, elapsed, peak


def test_every_public_function_is_probed_or_excused() -> None:
    unlisted = sorted(set(PUBLIC) - set(VALID_CALLS) - set(NOT_PROBED))
    assert not unlisted, f"add a valid call (VALID_CALLS) or a reason (NOT_PROBED) for {unlisted}"
    stale = sorted(
        (set(VALID_CALLS) | set(NOT_PROBED))
        - set(PUBLIC)
        - {"reexecute.main", "reexecute.prepare_chapter_environment", "publishing.sphinx_extension.setup"}
    )
    assert not stale, f"no such public function: {stale}"


@pytest.mark.parametrize("name", sorted(VALID_CALLS))
def test_the_valid_call_works(name: str) -> None:
    # A first call may derive closed forms with sympy (seconds); only rejections must be quick.
    error, _, _ = _call(PUBLIC[name], VALID_CALLS[name](), limit=120.0)
    assert error is None, f"{name}: the valid call raised {error!r}"


def test_bad_input_gets_a_clear_error_naming_the_parameter(capsys: pytest.CaptureFixture) -> None:
    tried, clear, problems = 0, 0, []
    unprobed = []
    for name in sorted(VALID_CALLS):
        function = PUBLIC[name]
        valid = VALID_CALLS[name]()
        signature = inspect.signature(function).parameters
        parameters = list(signature)
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in signature.values()):
            parameters += [key for key in valid if key not in signature]  # keywords taken by **kwargs
        for parameter in parameters:
            if parameter not in valid:
                continue
            probes = _probes(name, parameter, valid[parameter])
            if not probes:
                unprobed.append(f"{name}({parameter})")
            for description, bad in probes:
                tried += 1
                arguments = {**VALID_CALLS[name](), parameter: bad}
                error, elapsed, peak = _call(function, arguments, limit=3 * TIME_LIMIT)
                where = f"{name}({parameter}=<{description}>)"
                if isinstance(error, _Overtime):
                    problems.append(f"{where}: still running after {elapsed:.0f} s")
                elif not isinstance(error, (ValueError, TypeError)):
                    problems.append(f"{where}: {'no error' if error is None else repr(error)[:160]}")
                elif parameter not in str(error):
                    problems.append(f"{where}: the message does not name {parameter!r}: {str(error)[:160]}")
                elif elapsed > TIME_LIMIT:
                    problems.append(f"{where}: took {elapsed:.2f} s")
                elif peak > MEMORY_LIMIT:
                    problems.append(f"{where}: allocated {peak / 2**20:.0f} MiB")
                else:
                    clear += 1
    with capsys.disabled():
        print(
            f"\nbad-input probes: {tried} tried, {clear} clear errors, {len(problems)} other; "
            f"{len(unprobed)} parameters without a probe: {', '.join(unprobed)}"
        )
    assert not problems, f"{len(problems)} of {tried} probes:\n" + "\n".join(problems)
