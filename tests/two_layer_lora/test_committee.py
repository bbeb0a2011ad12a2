"""The committee model: teacher, pre-training, the sympy overlaps against numpy and against the actual
matrices, the population risk against Monte Carlo of the networks, its gradient against finite
differences, the best rank-r update, and the SGD-noise matrix G against Monte Carlo of the networks
(5 standard errors plus the stated quadrature error), the linear closed form, the slow four_point
sum and a finer quadrature rule."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import sympy as sp

from lorabook.toolkit import committee_integrals as ci
from lorabook.toolkit.activations import activation, activation_derivative
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


# The SGD-noise matrix G_kl = E[h_k h_l], h_k = g (yhat - y) s'(lambda_k).


def _joint_scale(W: np.ndarray, teacher: np.ndarray) -> float:
    """(sum_a sqrt(C_aa))^2 over the student and teacher units: the scale of the error bound."""
    return float(np.sqrt(np.sum(W**2, axis=1)).sum() + np.sqrt(np.sum(teacher**2, axis=1)).sum()) ** 2


def _relu_bound(W: np.ndarray, teacher: np.ndarray, g: float) -> float:
    return g**4 * cm.RELU_NOISE_TOLERANCE * _joint_scale(W, teacher)


def _monte_carlo_noise(name: str, W: np.ndarray, teacher: np.ndarray, n: int = 400_000, seed: int = 7
                       ) -> tuple[np.ndarray, np.ndarray]:
    x = np.random.default_rng(seed).standard_normal((n, W.shape[1]))
    s, s_prime = activation(name), activation_derivative(name)
    g = cm.readout_scale(name, W.shape[0])
    lam = x @ W.T
    h = (g * g * (s(lam).sum(axis=1) - s(x @ teacher.T).sum(axis=1)))[:, None] * s_prime(lam)
    samples = h[:, :, None] * h[:, None, :]
    return samples.mean(axis=0), samples.std(axis=0, ddof=1) / np.sqrt(n)


def _noise(name: str, W: np.ndarray, teacher: np.ndarray) -> np.ndarray:
    g = cm.readout_scale(name, W.shape[0])
    return cm.committee_gradient_covariance(name, W @ W.T, W @ teacher.T, teacher @ teacher.T, g)


def _students(K: int, dimension: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    teacher = cm.orthonormal_teacher(K, dimension, seed=K)
    rng = np.random.default_rng(10 + K)
    return teacher, {
        "generic": 0.8 * teacher + 0.4 * rng.standard_normal((K, dimension)),
        "pretrained W = DT": cm.pretrained_coefficients(K, 0.9) @ teacher,  # D = diag(0.9, 0.9, 1, ...)
    }


@pytest.mark.parametrize("K", (2, 4))
@pytest.mark.parametrize("student", ("generic", "pretrained W = DT"))
@pytest.mark.parametrize("name", NAMES)
def test_gradient_covariance_matches_monte_carlo(name: str, student: str, K: int) -> None:
    teacher, students = _students(K, 2 * K + 2)
    W = students[student]
    G = _noise(name, W, teacher)
    mean, error = _monte_carlo_noise(name, W, teacher)
    assert G.shape == (K, K)
    assert np.all(error > 0)
    quadrature = _relu_bound(W, teacher, cm.readout_scale(name, K)) if name == "relu" else 0.0
    assert np.all(np.abs(G - mean) < 5 * error + quadrature), np.abs(G - mean) / error


def test_the_monte_carlo_check_of_the_gradient_covariance_can_fail() -> None:
    # A wrong noise matrix (the ReLU one at a 1% different student) is refused by the same tolerance.
    teacher, students = _students(4, 10)
    W = students["generic"]
    mean, error = _monte_carlo_noise("relu", W, teacher)
    wrong = _noise("relu", 1.01 * W, teacher)
    assert np.any(np.abs(wrong - mean) > 5 * error + _relu_bound(W, teacher, 0.25))


@pytest.mark.parametrize("name", NAMES)
def test_gradient_covariance_is_symmetric_positive_semidefinite_and_zero_at_the_teacher(name: str) -> None:
    rng = np.random.default_rng(21)
    teacher = cm.orthonormal_teacher(4, 9, seed=2)
    g = cm.readout_scale(name, 4)
    for _ in range(3):
        W = rng.standard_normal((4, 9)) * rng.uniform(0.3, 1.5)
        G = _noise(name, W, teacher)
        np.testing.assert_array_equal(G, G.T)
        assert np.linalg.eigvalsh(G).min() >= -1e-12 * np.abs(G).max()
    # Student equals teacher: yhat = y for every input. Also with a repeated teacher row seen by two students.
    G = _noise(name, teacher.copy(), teacher)
    assert np.abs(G).max() <= (_relu_bound(teacher, teacher, g) if name == "relu" else 1e-15)
    twins = np.vstack([teacher[0], teacher[0], teacher[2]])
    assert np.abs(_noise(name, twins, twins)).max() <= (_relu_bound(twins, twins, g) if name == "relu" else 1e-15)


def test_linear_gradient_covariance_in_closed_form() -> None:
    # s' = 1, so h_k = g^2 1^T (W - T) x for every k: G_kl = g^4 E[(1^T (W - T) x)^2] = g^4 |(W - T)^T 1|^2
    # = g^4 1^T (Q - R - R^T + T_overlap) 1, the same for every (k, l). Also with M = 2 teachers != K = 3.
    rng = np.random.default_rng(5)
    for K, M in ((3, 3), (3, 2)):
        W, T = rng.standard_normal((K, 6)), rng.standard_normal((M, 6))
        G = cm.committee_gradient_covariance("linear", W @ W.T, W @ T.T, T @ T.T, 0.7)
        expected = 0.7**4 * float(np.sum((W.sum(axis=0) - T.sum(axis=0)) ** 2))
        np.testing.assert_allclose(G, np.full((K, K), expected), rtol=1e-12)


def test_relu_gradient_covariance_agrees_with_the_four_point_sum() -> None:
    # The slow route: every term I_4(lambda_k, lambda_l, u_a, u_b) by four_point_with_error (Stein and
    # Plackett, regularised singular covariances), summed with the signs sigma_a sigma_b.
    teacher, students = _students(4, 10)
    g = cm.readout_scale("relu", 4)
    sign = np.repeat([1.0, -1.0], 4)
    for W in (*students.values(), teacher + 0.05 * np.random.default_rng(1).standard_normal((4, 10))):
        Z = np.vstack([W, teacher])
        joint = Z @ Z.T
        index = np.array([(k, m, a, b) for k in range(4) for m in range(k, 4) for a in range(8) for b in range(a, 8)])
        values, errors = ci.four_point_with_error("relu", joint[index[:, :, None], index[:, None, :]])
        weights = sign[index[:, 2]] * sign[index[:, 3]] * np.where(index[:, 2] == index[:, 3], 1.0, 2.0)
        slow, bound = np.zeros((4, 4)), np.zeros((4, 4))
        np.add.at(slow, (index[:, 0], index[:, 1]), weights * values)
        np.add.at(bound, (index[:, 0], index[:, 1]), np.abs(weights) * errors)
        upper = np.triu_indices(4)
        G = _noise("relu", W, teacher)
        difference = np.abs(G[upper] - g**4 * slow[upper])
        assert np.all(difference <= g**4 * bound[upper] + _relu_bound(W, teacher, g))
        assert np.abs(G).max() > 100 * np.max(g**4 * bound[upper])  # the check is not empty


def _fine_rule() -> tuple[np.ndarray, np.ndarray]:
    """A 320-node reference rule: 16 Gauss-Legendre nodes on each of 20 panels graded by 4 towards s = 0."""
    edges = np.concatenate([[0.0], 4.0 ** -np.arange(19, -1, -1, dtype=float)])
    x, w = np.polynomial.legendre.leggauss(16)
    low, high = edges[:-1, None], edges[1:, None]
    s = (low + (high - low) * (x + 1) / 2).ravel()
    return s**2, 2 * s * ((high - low) * w / 2).ravel()


def _stress_correlations() -> np.ndarray:
    """4 x 4 correlations of (lambda_p, lambda_q, u_a, u_b) near singular: every F4 tuple of five families."""
    rng = np.random.default_rng(7)
    d = 10
    T = cm.orthonormal_teacher(4, d, seed=7)
    D = cm.pretrained_coefficients(4, 0.9)
    P = rng.standard_normal((4, d))
    G0 = rng.standard_normal((4, d)) / np.sqrt(d)
    tuples = np.array([(p, q, a, b) for p, q in itertools.combinations(range(4), 2)
                       for a, b in itertools.combinations(range(8), 2) if a not in (p, q) and b not in (p, q)])
    out = []
    for e in 10.0 ** -np.arange(0.0, 8.1, 1.0):
        for W in (D @ T + e * P,  # approaching the pre-trained start
                  np.vstack([G0[0], G0[0] + e * P[1], G0[2], G0[3]]),  # two nearly equal students
                  np.vstack([-T[0] + e * P[0], -0.5 * T[1] + e * P[1], G0[2], T[3]]),  # opposite to teachers
                  np.vstack([G0[0], G0[0] + e * P[1], G0[0] + e * P[2], T[3] + e * P[3]]),  # three nearly equal
                  np.vstack([(T[0] + T[1]) / np.sqrt(2) + e * P[0], T[1] - 2 * T[2] + e * P[1], G0[2],
                             T[3] - T[2] + e * P[3]])):  # in the span of teachers
            Z = np.vstack([W, T])
            C = Z @ Z.T
            std = np.sqrt(np.diag(C))
            out.append((C / np.outer(std, std))[tuples[:, :, None], tuples[:, None, :]])
    return np.concatenate(out)


def test_relu_quadrature_error_is_below_the_stated_tolerance(monkeypatch: pytest.MonkeyPatch) -> None:
    correlations = _stress_correlations()
    value = cm._relu_orthant_moment_4(correlations)
    monkeypatch.setattr(cm, "_relu_noise_rule", _fine_rule)
    reference = np.concatenate([cm._relu_orthant_moment_4(chunk) for chunk in np.array_split(correlations, 8)])
    error = np.abs(value - reference)
    assert error.max() < cm.RELU_NOISE_TOLERANCE
    assert error.max() > 1e-16  # the two rules differ: the comparison is not trivial


def test_relu_four_unit_term_at_exact_values() -> None:
    # Rank one, x_i = sigma_i z: E[Theta(s0 z) Theta(s1 z) (s2 z)^+ (s3 z)^+] = 1/2 if all signs agree, else 0.
    signs = np.array(list(itertools.product((1.0, -1.0), repeat=4)))
    exact = np.where(np.all(signs == signs[:, :1], axis=1), 0.5, 0.0)
    rank_one = signs[:, :, None] * signs[:, None, :]
    # Independent pairs (0, 2) and (1, 3): E[Theta_0 x_2^+] E[Theta_1 x_3^+] = (1 + rho)(1 + rho') / (8 pi).
    pairs = np.eye(4)
    pairs[0, 2] = pairs[2, 0] = 0.6
    pairs[1, 3] = pairs[3, 1] = -0.9
    values = cm._relu_orthant_moment_4(np.concatenate([rank_one, np.stack([np.eye(4), pairs])]))
    np.testing.assert_allclose(values[:16], exact, atol=cm.RELU_NOISE_TOLERANCE)
    assert values[16] == pytest.approx(1 / (8 * np.pi), abs=1e-15)
    assert values[17] == pytest.approx(1.6 * 0.1 / (8 * np.pi), abs=cm.RELU_NOISE_TOLERANCE)


def test_relu_gradient_covariance_is_continuous_at_the_singular_start() -> None:
    # W = DT + e U V: the difference from the singular start is linear in e down to e = 1e-10 (a
    # jump or noise at the singular overlaps would break the constant ratio).
    teacher = cm.orthonormal_teacher(4, 10, seed=3)
    start = cm.pretrained_coefficients(4, 0.9) @ teacher
    rng = np.random.default_rng(0)
    update = rng.standard_normal((4, 1)) @ rng.standard_normal((1, 10))
    G0 = _noise("relu", start, teacher)
    slopes = [np.abs(_noise("relu", start + e * update, teacher) - G0).max() / e for e in (1e-5, 1e-7, 1e-10)]
    assert slopes[0] > 0
    np.testing.assert_allclose(slopes[1:], slopes[0], rtol=1e-3)


def test_gradient_covariance_is_vectorised_over_leading_axes() -> None:
    teacher = np.eye(3, 5)
    Ws = [0.8 * teacher + 0.3 * np.random.default_rng(seed).standard_normal((3, 5)) for seed in range(6)]
    Q = np.stack([W @ W.T for W in Ws]).reshape(2, 3, 3, 3)
    R = np.stack([W @ teacher.T for W in Ws]).reshape(2, 3, 3, 3)
    for name in NAMES:
        batched = cm.committee_gradient_covariance(name, Q, R, np.eye(3), 0.3)
        assert batched.shape == (2, 3, 3, 3)
        single = cm.committee_gradient_covariance(name, Q[1, 2], R[1, 2], np.eye(3), 0.3)
        np.testing.assert_allclose(batched[1, 2], single, rtol=1e-12, atol=1e-18)
    # One student against a stack of (equal) teacher overlaps: Q and R broadcast against T_overlap.
    shared = cm.committee_gradient_covariance("relu", Q[0, 1], R[0, 1], np.broadcast_to(np.eye(3), (2, 1, 3, 3)), 0.3)
    assert shared.shape == (2, 1, 3, 3)
    single = cm.committee_gradient_covariance("relu", Q[0, 1], R[0, 1], np.eye(3), 0.3)
    np.testing.assert_allclose(shared, np.broadcast_to(single, (2, 1, 3, 3)), rtol=1e-12, atol=1e-18)


def test_gradient_covariance_validation() -> None:
    good = dict(Q=np.eye(2), R=0.5 * np.eye(2), T_overlap=np.eye(2), readout=0.5)
    with pytest.raises(ValueError, match="activation='tanh'"):
        cm.committee_gradient_covariance("tanh", **good)
    with pytest.raises(TypeError, match="activation"):
        cm.committee_gradient_covariance(3, **good)
    with pytest.raises(ValueError, match="Q must have shape"):
        cm.committee_gradient_covariance("relu", **{**good, "Q": np.eye(2, 3)})
    with pytest.raises(ValueError, match="R must have shape"):
        cm.committee_gradient_covariance("relu", **{**good, "R": np.ones((3, 2))})
    with pytest.raises(ValueError, match="T_overlap must have shape"):
        cm.committee_gradient_covariance("relu", **{**good, "T_overlap": np.eye(3)})
    with pytest.raises(ValueError, match="Q"):
        cm.committee_gradient_covariance("relu", **{**good, "Q": np.array([[np.nan, 0.0], [0.0, 1.0]])})
    with pytest.raises(ValueError, match="joint overlap matrix"):
        cm.committee_gradient_covariance("erf", **{**good, "R": 2 * np.eye(2)})
    with pytest.raises(ValueError, match="readout must be"):
        cm.committee_gradient_covariance("linear", **{**good, "readout": 0.0})
