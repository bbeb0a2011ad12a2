"""The committee overlap ODE against independent derivations: the sympy overlaps of committee.py,
the single-index pipeline at K = 1, the flow in explicit coordinates, the three-point gradient,
and one-pass SGD."""

from __future__ import annotations

import numpy as np
import pytest
import sympy as sp

from lorabook.single_index_lora import lora
from lorabook.toolkit.overlap_equations import (
    F_Q,
    F_RHO,
    CommitteeModel,
    committee_equations,
    overlap_equations,
)
from lorabook.two_layer_lora import committee, committee_ode
from lorabook.two_layer_lora.committee_sgd import simulate_committee_lora


@pytest.mark.parametrize(("n_neurons", "rank"), [(3, 1), (4, 2), (3, 3)])
def test_pipeline_overlaps_equal_the_matrix_derivation(n_neurons: int, rank: int) -> None:
    equations = committee_ode.lora_committee_equations(n_neurons, rank)
    reference = committee.lora_overlaps_sympy(n_neurons, rank)
    unit = {reference.Q_V[p, p]: 1 for p in range(rank)}
    assert sp.expand(equations.student_overlaps - reference.Q.subs(unit)) == sp.zeros(n_neurons, n_neurons)
    assert sp.expand(equations.teacher_overlaps - reference.R) == sp.zeros(n_neurons, n_neurons)


def test_one_neuron_committee_is_the_single_index_model() -> None:
    single = lora.MODEL
    as_committee = CommitteeModel(
        name="rank-one LoRA as a committee", parameters=single.parameters, fixed_vectors=single.fixed_vectors,
        teachers=(single.teacher,), students=(single.student,), trained_scalars=single.trained_scalars,
        trained_vectors=single.trained_vectors, overlaps=single.overlaps, statistics=single.statistics,
        start=single.start,
    )
    equations = committee_equations(as_committee)
    symbols = equations.symbols
    values = {symbols.risk_q[0, 0]: F_Q, symbols.risk_r[0, 0]: F_RHO, symbols.noise[0, 0]: 1}
    reference = overlap_equations(single)
    for derived, expected in zip(equations.drift, reference.drift, strict=True):
        assert sp.expand(derived.subs(values) - expected) == 0
    for derived, expected in zip(equations.correction, reference.correction, strict=True):
        assert sp.expand(derived.subs(values) - expected) == 0
    assert sp.expand(equations.linearization.subs(values) - reference.linearization) == sp.zeros(2, 2)


@pytest.mark.parametrize(("n_neurons", "rank"), [(4, 1), (4, 2), (3, 3)])
def test_drift_and_correction_match_the_flow_in_coordinates(n_neurons: int, rank: int) -> None:
    rng = np.random.default_rng(11 + rank)
    dimension = n_neurons + rank + 2
    T = np.eye(dimension)[:n_neurons]
    V = rng.standard_normal((rank, dimension))
    V /= np.linalg.norm(V, axis=1, keepdims=True)
    U = rng.normal(size=(n_neurons, rank))
    delta = rng.uniform(0.3, 1.0, n_neurons)
    D = np.diag(delta)
    W = D @ T + U @ V
    F_Q_matrix = rng.normal(size=(n_neurons, n_neurons))
    F_Q_matrix = (F_Q_matrix + F_Q_matrix.T) / 2
    F_R_matrix = rng.normal(size=(n_neurons, n_neurons))
    G = rng.normal(size=(n_neurons, n_neurons))
    G = G @ G.T
    gradient = 2 * F_Q_matrix @ W + F_R_matrix @ T
    grad_v = U.T @ gradient
    velocity = -(grad_v - np.sum(grad_v * V, axis=1, keepdims=True) * V)  # per-row tangent projection
    dQ_V = velocity @ V.T + V @ velocity.T
    upper = np.triu_indices(rank, 1)
    expected = np.concatenate([(-gradient @ V.T).ravel(), (velocity @ T.T).ravel(), dQ_V[upper]])
    state = committee_ode.pack_statistics(U, V @ T.T, V @ V.T)
    equations = committee_ode.lora_committee_equations(n_neurons, rank)
    drift = np.asarray(equations.drift_function(*state, *delta, F_Q_matrix, F_R_matrix))
    assert np.allclose(drift, expected, rtol=1e-12, atol=1e-12)
    # Noise: delta (U^T G U)_pq on q_pq, minus the renormalisation of both rows.
    noise = U.T @ G @ U
    own = np.diagonal(noise)
    Q_V = V @ V.T
    expected_noise = np.concatenate([np.zeros(n_neurons * rank), (-own[:, None] / 2 * (V @ T.T)).ravel(),
                                     (noise - (own[:, None] + own[None, :]) / 2 * Q_V)[upper]])
    correction = np.asarray(equations.correction_function(*state, *delta, G), dtype=float)
    assert np.allclose(correction, expected_noise, rtol=1e-12, atol=1e-12)


def test_statistics_pack_and_unpack() -> None:
    rng = np.random.default_rng(2)
    U, M = rng.normal(size=(5, 4, 3)), rng.normal(size=(5, 3, 4))
    A = rng.normal(size=(5, 3, 3))
    Q_V = A @ np.swapaxes(A, -1, -2)
    Q_V /= np.sqrt(np.diagonal(Q_V, axis1=-2, axis2=-1))[..., :, None] * np.sqrt(
        np.diagonal(Q_V, axis1=-2, axis2=-1))[..., None, :]
    state = committee_ode.pack_statistics(U, M, Q_V)
    assert state.shape == (5, 2 * 4 * 3 + 3)
    for unpacked, original in zip(committee_ode.unpack_statistics(state, 4, 3), (U, M, Q_V), strict=True):
        assert np.allclose(unpacked, original, rtol=0, atol=1e-15)
    with pytest.raises(ValueError, match="state"):
        committee_ode.unpack_statistics(state[..., :-1], 4, 3)


@pytest.mark.parametrize("activation", ["erf", "relu", "linear"])
def test_risk_derivatives_give_the_committee_gradient(activation: str) -> None:
    rng = np.random.default_rng(5)
    T = np.linalg.qr(rng.normal(size=(7, 4)))[0].T
    g = committee.readout_scale(activation, 4)
    for W in (rng.normal(size=(4, 7)) / 2, np.diag([0.9, 0.9, 1.0, 1.0]) @ T):  # generic, and the start W = DT
        F_Q_matrix, F_R_matrix = committee_ode.committee_risk_derivatives(activation, W @ W.T, W @ T.T, T @ T.T, g)
        assert np.allclose(F_Q_matrix, F_Q_matrix.T, rtol=0, atol=1e-15)
        gradient = 2 * F_Q_matrix @ W + F_R_matrix @ T
        assert np.allclose(gradient, committee.committee_risk_gradient(activation, W, T, g), rtol=1e-9, atol=1e-9)
        # Central finite differences of the risk along a random direction of W.
        direction = rng.normal(size=W.shape)
        step = 1e-5

        def risk(weights: np.ndarray) -> float:
            return float(committee.committee_risk(activation, weights @ weights.T, weights @ T.T, T @ T.T, g))

        slope = (risk(W + step * direction) - risk(W - step * direction)) / (2 * step)
        assert np.isclose(slope, np.sum(gradient * direction), rtol=1e-6, atol=1e-9)


def test_start_is_stable_without_weakened_directions_and_unstable_with() -> None:
    # D = I: the student is the teacher, a minimum of the risk; no direction escapes.
    jacobian = committee_ode.committee_linearization("erf", n_neurons=4, rank=2, n_weakened=0)
    assert np.max(np.linalg.eigvals(jacobian).real) <= 1e-12
    weakened = committee_ode.committee_linearization("erf", n_neurons=4, rank=1, pretraining_strength=0.5)
    assert np.max(np.linalg.eigvals(weakened).real) > 1e-3


def test_linearization_is_the_jacobian_of_the_rhs() -> None:
    # The symbolic Jacobian at the start against finite differences of the full right-hand side.
    jacobian = committee_ode.committee_linearization("relu", n_neurons=3, rank=2, pretraining_strength=0.6)
    start = committee_ode.pack_statistics(np.zeros((3, 2)), np.zeros((2, 3)), np.eye(2))
    step = 1e-6
    columns = []
    for index in range(start.size):
        shift = np.zeros(start.size)
        shift[index] = step
        plus = committee_ode.committee_ode_rhs("relu", start + shift, n_neurons=3, rank=2, pretraining_strength=0.6)
        minus = committee_ode.committee_ode_rhs("relu", start - shift, n_neurons=3, rank=2, pretraining_strength=0.6)
        columns.append((plus - minus) / (2 * step))
    assert np.allclose(np.array(columns).T, jacobian, rtol=1e-5, atol=1e-8)


@pytest.mark.slow
def test_ode_from_each_seed_follows_sgd_to_the_rank_one_plateau() -> None:
    # erf, K = 4, r = 1, mu = 0.3 (escape near t = 50), d = 100, delta = eta d / B = 0.02. The ODE
    # starts from each seed's own (U, M, Q_V), so the seeds differ only by O(d^-1/2) fluctuations.
    result = simulate_committee_lora("erf", dimension=100, learning_rate=0.4, batch_size=2000, n_steps=500,
                                     n_seeds=6, seed=4, n_records=26, spacing="linear", rank=1,
                                     pretraining_strength=0.3)
    differences = []
    for seed in range(result.U.shape[0]):
        solution = committee_ode.integrate_committee_ode(
            "erf", result.U[seed, 0], result.M[seed, 0], result.Q_V[seed, 0], float(result.time[-1]),
            pretraining_strength=0.3, noise_strength=result.noise_strength, n_times=26, spacing="linear")
        assert np.allclose(solution.time, result.time, rtol=1e-12)
        differences.append(result.risk[seed] - solution.risk)
    differences = np.array(differences)
    n_seeds = differences.shape[0]
    drop = result.risk[:, 0].mean() - result.risk[:, -1].mean()
    assert drop > 0.8 * result.risk[:, 0].mean()  # the run escaped the search phase
    # No bias: the mean difference within 4 standard errors of the seeds at every time.
    standard_error = differences.std(axis=0, ddof=1) / np.sqrt(n_seeds)
    assert np.all(np.abs(differences.mean(axis=0)) <= 4 * standard_error + 1e-6)
    # Each seed within 2 d^-1/2 of the risk drop.
    assert np.abs(differences).max() <= 2 / np.sqrt(result.dimension) * drop
    # Both end on the rank-one plateau: the best rank-one update.
    plateau = committee.best_rank_r_risk("erf", 0.3, 4, 1)
    assert np.allclose(result.risk[:, -1], plateau, rtol=2e-3)
