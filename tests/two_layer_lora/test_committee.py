"""The committee model: teacher, pre-training, the sympy overlaps against numpy and against the actual
matrices, the population risk against Monte Carlo of the networks, its gradient against finite
differences, and the best rank-r update."""

from __future__ import annotations

import numpy as np
import pytest
import sympy as sp

from lorabook.toolkit.activations import activation
from lorabook.two_layer_lora import committee as cm

NAMES = ("erf", "relu", "linear")


def test_readout_and_teacher_and_pretraining() -> None:
    assert cm.readout_scale("erf", 4) == 0.5 and cm.readout_scale("linear", 9) == pytest.approx(1 / 3)
    assert cm.readout_scale("relu", 4) == 0.25
    teacher = cm.orthonormal_teacher(n_neurons=4, dimension=30, seed=3)
    assert teacher.shape == (4, 30)
    np.testing.assert_allclose(teacher @ teacher.T, np.eye(4), atol=1e-12)
    np.testing.assert_array_equal(teacher, cm.orthonormal_teacher(4, 30, seed=3))
    assert not np.allclose(teacher, cm.orthonormal_teacher(4, 30, seed=4))
    np.testing.assert_array_equal(cm.pretrained_coefficients(4, 0.9), np.diag([0.9, 0.9, 1.0, 1.0]))
    np.testing.assert_array_equal(cm.pretrained_coefficients(n_neurons=3, pretraining_strength=0.2, n_weakened=1),
                                  np.diag([0.2, 1.0, 1.0]))


def test_sympy_overlaps_are_the_block_formulas() -> None:
    derived = cm.lora_overlaps_sympy(3, 2)
    D, U = sp.MatrixSymbol("D", 3, 3), sp.MatrixSymbol("U", 3, 2)
    M, Q_V = sp.MatrixSymbol("M", 2, 3), sp.MatrixSymbol("Q_V", 2, 2)
    expected_q = D**2 + D * M.T * U.T + U * M * D + U * Q_V * U.T
    assert sp.simplify(derived.R_block - (D + U * M)) == sp.ZeroMatrix(3, 3)
    assert sp.simplify(derived.Q_block - expected_q) == sp.ZeroMatrix(3, 3)


def test_numeric_overlaps_match_sympy_and_the_actual_matrices() -> None:
    K, r, d = 3, 2, 7
    rng = np.random.default_rng(0)
    derived = cm.lora_overlaps_sympy(K, r)
    teacher = cm.orthonormal_teacher(K, d, seed=1)
    V = rng.standard_normal((r, d))
    U = rng.standard_normal((K, r))
    D = np.diag(rng.uniform(0.2, 1.0, K))
    M, Q_V = V @ teacher.T, V @ V.T
    R, Q = cm.lora_overlaps(U, M, Q_V, D)
    W = D @ teacher + U @ V
    np.testing.assert_allclose(R, W @ teacher.T, atol=1e-12)
    np.testing.assert_allclose(Q, W @ W.T, atol=1e-12)
    values = {**dict(zip(derived.D.diagonal(), np.diag(D), strict=True)),
              **dict(zip(derived.U, U.ravel(), strict=True)), **dict(zip(derived.M, M.ravel(), strict=True)),
              **{derived.Q_V[p, q]: Q_V[p, q] for p in range(r) for q in range(p, r)}}
    np.testing.assert_allclose(np.array(derived.R.subs(values), dtype=float), R, atol=1e-12)
    np.testing.assert_allclose(np.array(derived.Q.subs(values), dtype=float), Q, atol=1e-12)


def _monte_carlo_risk(name: str, W: np.ndarray, teacher: np.ndarray, n: int = 400_000) -> tuple[float, float]:
    x = np.random.default_rng(5).standard_normal((n, W.shape[1]))
    s, g = activation(name), cm.readout_scale(name, W.shape[0])
    samples = 0.5 * (g * s(x @ W.T).sum(axis=1) - g * s(x @ teacher.T).sum(axis=1)) ** 2
    return float(samples.mean()), float(samples.std(ddof=1) / np.sqrt(n))


@pytest.mark.parametrize("name", NAMES)
def test_committee_risk_matches_monte_carlo_of_the_networks(name: str) -> None:
    rng = np.random.default_rng(2)
    teacher = cm.orthonormal_teacher(3, 6, seed=0)
    W = 0.8 * teacher + 0.4 * rng.standard_normal((3, 6))
    mean, error = _monte_carlo_risk(name, W, teacher)
    risk = cm.committee_risk(name, W @ W.T, W @ teacher.T, np.eye(3), cm.readout_scale(name, 3))
    assert abs(risk - mean) < 5 * error
    assert cm.committee_risk(name, np.eye(3), np.eye(3), np.eye(3), 0.5) == pytest.approx(0.0, abs=1e-14)


def test_linear_risk_at_the_pretrained_point() -> None:
    # (g^2/2) |1^T (D - I) T|^2 = n_weakened (1 - mu)^2 / (2K) for g = 1/sqrt(K).
    K, mu = 4, 0.7
    D = cm.pretrained_coefficients(K, mu)
    risk = cm.committee_risk("linear", D @ D, D, np.eye(K), cm.readout_scale("linear", K))
    assert risk == pytest.approx(2 * (1 - mu) ** 2 / (2 * K), rel=1e-12)


def test_risk_is_vectorised_over_leading_axes() -> None:
    teacher = np.eye(3, 5)
    Ws = [teacher + 0.3 * np.random.default_rng(seed).standard_normal((3, 5)) for seed in range(4)]
    Q = np.stack([W @ W.T for W in Ws])
    R = np.stack([W @ teacher.T for W in Ws])
    batched = cm.committee_risk("relu", Q, R, np.eye(3), 1 / 3)
    assert batched.shape == (4,)
    assert batched[2] == pytest.approx(cm.committee_risk("relu", Q[2], R[2], np.eye(3), 1 / 3), rel=1e-12)


@pytest.mark.parametrize("name", NAMES)
def test_risk_gradient_matches_finite_differences(name: str) -> None:
    rng = np.random.default_rng(4)
    teacher = np.eye(3, 5)
    W = teacher * 0.7 + 0.3 * rng.standard_normal((3, 5))
    g = cm.readout_scale(name, 3)

    def risk(weights: np.ndarray) -> float:
        return float(cm.committee_risk(name, weights @ weights.T, weights @ teacher.T, np.eye(3), g))

    gradient = cm.committee_risk_gradient(name, W, teacher, g)
    step = 1e-5
    numeric = np.zeros_like(W)
    for index in np.ndindex(W.shape):
        shift = np.zeros_like(W)
        shift[index] = step
        numeric[index] = (risk(W + shift) - risk(W - shift)) / (2 * step)
    np.testing.assert_allclose(gradient, numeric, atol=1e-8)


def test_best_rank_one_linear_update_is_exact() -> None:
    # The linear committee sees only 1^T W: the needed update is a rank-one row, Eckart-Young at r = 1 is exact.
    assert abs(cm.best_rank_r_risk("linear", pretraining_strength=0.5, n_neurons=4, rank=1, n_starts=0)) < 1e-12


@pytest.mark.slow
@pytest.mark.parametrize("name", ("erf", "relu"))
def test_rank_plateau_below_the_needed_rank_and_zero_at_it(name: str) -> None:
    K, mu = 4, 0.5
    D = cm.pretrained_coefficients(K, mu)
    start = float(cm.committee_risk(name, D @ D, D, np.eye(K), cm.readout_scale(name, K)))
    plateau = cm.best_rank_r_risk(name, mu, K, 1)
    assert 1e-4 * start < plateau < start  # rank one helps, but cannot reach the teacher
    assert cm.best_rank_r_risk(name, mu, K, 2) < 1e-10 * start


def test_validation() -> None:
    with pytest.raises(ValueError, match="rank must be an integer in 1..n_neurons"):
        cm.lora_overlaps_sympy(2, 3)
    with pytest.raises(ValueError, match="rank must be an integer"):
        cm.best_rank_r_risk("erf", 0.5, 4, 0)
    with pytest.raises(ValueError, match="n_neurons must be an integer"):
        cm.pretrained_coefficients(0, 0.5)
    with pytest.raises(ValueError, match="pretraining_strength must be"):
        cm.pretrained_coefficients(4, 1.5)
    with pytest.raises(ValueError, match="n_weakened must be"):
        cm.pretrained_coefficients(1, 0.5)
    with pytest.raises(ValueError, match="dimension must be >= n_neurons"):
        cm.orthonormal_teacher(4, 3, seed=0)
    with pytest.raises(ValueError, match="U must have shape"):  # rank 2 > 1 neuron
        cm.lora_overlaps(np.zeros((1, 2)), np.zeros((2, 1)), np.eye(2), np.eye(1))
    with pytest.raises(ValueError, match="D must have shape"):
        cm.lora_overlaps(np.zeros((4, 1)), np.zeros((1, 4)), np.ones((1, 1)), np.eye(3))
    with pytest.raises(ValueError, match="teacher_weights must have orthonormal rows"):
        cm.check_teacher(2 * np.eye(2, 5), 2, 5)
    with pytest.raises(ValueError, match="activation='tanh'"):
        cm.committee_risk("tanh", np.eye(2), np.eye(2), np.eye(2), 0.5)
    with pytest.raises(ValueError, match="joint overlap matrix"):
        cm.committee_risk("erf", np.eye(2), 2 * np.eye(2), np.eye(2), 0.5)
    with pytest.raises(ValueError, match="readout must be"):
        cm.committee_risk("erf", np.eye(2), np.eye(2), np.eye(2), 0.0)
