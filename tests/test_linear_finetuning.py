"""Tests of lorabook.linear_finetuning: estimators, reference solvers, FFT risk theory, validation."""

from __future__ import annotations

import numpy as np
import pytest
import sympy as sp
from scipy import integrate, stats

from lorabook import linear_finetuning as lf

# (input_dimension, output_dimension, num_samples): one overdetermined, one underdetermined problem.
REGIMES = {"overdetermined": (12, 8, 40), "underdetermined": (30, 10, 12)}


def _problem(regime: str, seed: int, true_rank: int = 3, noise_std: float = 0.5) -> lf.FinetuningProblem:
    dx, dy, n = REGIMES[regime]
    return lf.finetuning_problem(dx, dy, n, true_rank, noise_std, seed=seed)


def _row_space_projector(X: np.ndarray) -> np.ndarray:
    return np.linalg.pinv(X) @ X


# ----------------------------------------------------------------------------- LoRA is the global minimiser
@pytest.mark.parametrize("regime", list(REGIMES))
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("rank", [1, 3, 5])
def test_lora_loss_not_above_factor_solvers(regime: str, seed: int, rank: int) -> None:
    p = _problem(regime, seed)
    closed_form = lf.training_loss(p.X, p.Y, lf.lora_estimator(p.X, p.Y, p.pretrained, rank))
    _, gd_losses = lf.lora_gradient_descent(p.X, p.Y, p.pretrained, rank, steps=12000, seed=seed + 10)
    _, als_losses = lf.lora_alternating_least_squares(p.X, p.Y, p.pretrained, rank, iterations=300, seed=seed + 20)
    slack = 1e-10 * (1.0 + closed_form)  # round-off only
    assert closed_form <= gd_losses.min() + slack, (closed_form, gd_losses.min())
    assert closed_form <= als_losses.min() + slack, (closed_form, als_losses.min())
    # The iterative solvers do get there (so the comparison is not vacuous): ALS to round-off,
    # gradient descent (slowly along small singular values of T, hence 12000 steps) to a relative 1e-6.
    assert als_losses[-1] - closed_form < 1e-8 * (1.0 + closed_form)
    assert gd_losses[-1] - closed_form < 1e-6 * (1.0 + closed_form)


@pytest.mark.parametrize("regime", list(REGIMES))
def test_lora_is_stationary_for_the_factors(regime: str) -> None:
    """First-order optimality: at B = U s^(1/2), A = s^(1/2) V^T from the closed form, both factor
    gradients G A^T and B^T G vanish, with G = (2/n) (R - X (BA)^T)^T X."""
    p = _problem(regime, 3)
    n = p.X.shape[0]
    for rank in (1, 2, 4):
        shift = lf.lora_estimator(p.X, p.Y, p.pretrained, rank) - p.pretrained
        U, s, Vt = np.linalg.svd(shift)
        B = U[:, :rank] * np.sqrt(s[:rank])
        A = np.sqrt(s[:rank])[:, None] * Vt[:rank]
        G = (2.0 / n) * (p.Y - p.X @ (p.pretrained + B @ A).T).T @ p.X
        scale = np.linalg.norm(G) * (np.linalg.norm(A) + np.linalg.norm(B)) + 1.0
        assert np.linalg.norm(G @ A.T) < 1e-10 * scale and np.linalg.norm(B.T @ G) < 1e-10 * scale


@pytest.mark.parametrize("regime", list(REGIMES))
def test_lora_matches_literal_whitening_formula(regime: str) -> None:
    """The SVD implementation equals A0 + [D_hat S^(1/2)]_r (S^(1/2))^+ built literally."""
    p = _problem(regime, 4)
    n = p.X.shape[0]
    S = p.X.T @ p.X / n
    eigenvalues, Q = np.linalg.eigh(S)
    # Zero eigenvalues (underdetermined) are set to exactly zero so their square root is not ~1e-8.
    eigenvalues = np.where(eigenvalues > 1e-10 * eigenvalues.max(), eigenvalues, 0.0)
    S_half = (Q * np.sqrt(eigenvalues)) @ Q.T
    S_half_pinv = np.linalg.pinv(S_half, rcond=1e-10)
    D_ls = (np.linalg.pinv(p.X) @ (p.Y - p.X @ p.pretrained.T)).T
    T = D_ls @ S_half
    U, s, Vt = np.linalg.svd(T)
    for rank in (1, 2, 4):
        literal = p.pretrained + (U[:, :rank] * s[:rank]) @ Vt[:rank] @ S_half_pinv
        estimate = lf.lora_estimator(p.X, p.Y, p.pretrained, rank)
        assert np.allclose(estimate, literal, atol=1e-9, rtol=0), np.abs(estimate - literal).max()
        assert np.linalg.matrix_rank(estimate - p.pretrained, tol=1e-9) == rank


def test_lora_underdetermined_returns_row_space_minimiser() -> None:
    """GD on the factors reaches the same loss; its row-space part equals the closed form, and
    the rest (inherited from the random initial A) is as small as the initialisation."""
    p = _problem("underdetermined", 5)
    rank = 3
    closed_form = lf.lora_estimator(p.X, p.Y, p.pretrained, rank)
    P = _row_space_projector(p.X)
    assert np.allclose((closed_form - p.pretrained) @ P, closed_form - p.pretrained, atol=1e-10)
    gd, _ = lf.lora_gradient_descent(p.X, p.Y, p.pretrained, rank, steps=6000, seed=1, initial_scale=1e-2)
    assert np.allclose((gd - p.pretrained) @ P, closed_form - p.pretrained, atol=1e-5)
    outside = np.linalg.norm((gd - p.pretrained) @ (np.eye(P.shape[0]) - P))
    assert 0 < outside < 0.1
    # Min-norm: the closed form is the closest minimiser to A0.
    assert np.linalg.norm(closed_form - p.pretrained) < np.linalg.norm(gd - p.pretrained)


# ----------------------------------------------------------------------------- LoRA versus FFT
@pytest.mark.parametrize("regime", list(REGIMES))
def test_lora_full_rank_equals_fft(regime: str) -> None:
    """At r = min(dx, dy), rank T <= r so the truncation is exact and LoRA = FFT (both regimes)."""
    p = _problem(regime, 6)
    dx, dy = p.X.shape[1], p.Y.shape[1]
    fft = lf.fft_estimator(p.X, p.Y, p.pretrained)
    assert np.allclose(lf.lora_estimator(p.X, p.Y, p.pretrained, min(dx, dy)), fft, atol=1e-10)
    # A smaller rank is strictly worse on the training set (T has full rank min(n, dx, dy) a.s.).
    assert (lf.training_loss(p.X, p.Y, lf.lora_estimator(p.X, p.Y, p.pretrained, min(dx, dy) - 1))
            > lf.training_loss(p.X, p.Y, fft) + 1e-6)


def test_lora_rank_at_least_n_equals_fft_underdetermined() -> None:
    """Underdetermined with n < min(dx, dy): rank T <= n, so any r >= n already gives FFT."""
    dx, dy, n = 30, 20, 8
    p = lf.finetuning_problem(dx, dy, n, 4, 0.3, seed=7)
    fft = lf.fft_estimator(p.X, p.Y, p.pretrained)
    for rank in (n, n + 3, min(dx, dy)):
        assert np.allclose(lf.lora_estimator(p.X, p.Y, p.pretrained, rank), fft, atol=1e-10)
    assert not np.allclose(lf.lora_estimator(p.X, p.Y, p.pretrained, n - 1), fft, atol=1e-3)


def test_fft_is_pseudo_inverse_and_gd_limit() -> None:
    p = _problem("underdetermined", 8)
    fft = lf.fft_estimator(p.X, p.Y, p.pretrained)
    reference = p.pretrained + (np.linalg.pinv(p.X) @ (p.Y - p.X @ p.pretrained.T)).T
    assert np.allclose(fft, reference, atol=1e-12)
    assert lf.training_loss(p.X, p.Y, fft) < 1e-20  # interpolates
    gd, losses = lf.fft_gradient_descent(p.X, p.Y, p.pretrained, steps=3000)
    assert np.allclose(gd, fft, atol=1e-8)
    assert losses[-1] < 1e-16 and np.all(np.diff(losses) <= 1e-12)
    # Another start converges to another interpolator: the one closest to that start.
    start = p.pretrained + np.random.default_rng(0).standard_normal(p.pretrained.shape)
    other, _ = lf.fft_gradient_descent(p.X, p.Y, start, steps=3000)
    assert lf.training_loss(p.X, p.Y, other) < 1e-14
    assert np.allclose(other, lf.fft_estimator(p.X, p.Y, start), atol=1e-8)
    assert np.linalg.norm(other - fft) > 1.0


def test_fft_overdetermined_least_squares() -> None:
    p = _problem("overdetermined", 9)
    fft = lf.fft_estimator(p.X, p.Y, p.pretrained)
    solution, *_ = np.linalg.lstsq(p.X, p.Y, rcond=None)
    assert np.allclose(fft, solution.T, atol=1e-10)


def test_batched_estimators_match_single_problems() -> None:
    A0 = lf.pretrained_weights(5, 7, seed=0)
    D = lf.gaussian_task_shift(5, 7, 2, seed=1)
    X, Y = lf.regression_data(A0 + D, 6, 0.4, seed=2, num_seeds=3)
    fft = lf.fft_estimator(X, Y, A0)
    lora = lf.lora_estimator(X, Y, A0, 2)
    assert fft.shape == lora.shape == (3, 5, 7)
    for s in range(3):
        assert np.allclose(fft[s], lf.fft_estimator(X[s], Y[s], A0), atol=1e-12)
        assert np.allclose(lora[s], lf.lora_estimator(X[s], Y[s], A0, 2), atol=1e-12)
    assert lf.training_loss(X, Y, lora).shape == (3,)


def test_monte_carlo_matches_public_estimators() -> None:
    """excess_risk_monte_carlo shares SVDs across ranks; it must equal the public estimators."""
    A0 = lf.pretrained_weights(6, 9, seed=0)
    D = lf.gaussian_task_shift(6, 9, 2, seed=1)
    ranks = [1, 2, 6]
    for n in (5, 20):
        fft_risks, lora_risks = lf.excess_risk_monte_carlo(A0, D, n, 0.3, ranks, 8, seed=2, chunk_size=8)
        X, Y = lf.regression_data(A0 + D, n, 0.3, seed=2, num_seeds=8)
        assert np.allclose(fft_risks, lf.excess_risk(lf.fft_estimator(X, Y, A0), A0 + D), rtol=1e-10)
        for j, rank in enumerate(ranks):
            assert np.allclose(lora_risks[j], lf.excess_risk(lf.lora_estimator(X, Y, A0, rank), A0 + D), rtol=1e-10)


# ----------------------------------------------------------------------------- FFT risk theory
@pytest.mark.parametrize(
    "dx, dy, n, noise_std",
    [(10, 6, 30, 1.0), (8, 5, 16, 2.0), (20, 6, 8, 0.7), (24, 4, 14, 1.5)],
)
def test_fft_excess_risk_against_monte_carlo(dx: int, dy: int, n: int, noise_std: float) -> None:
    A0 = lf.pretrained_weights(dy, dx, seed=0)
    D = lf.gaussian_task_shift(dy, dx, 2, seed=1)
    num_seeds = 3000
    risks, _ = lf.excess_risk_monte_carlo(A0, D, n, noise_std, [], num_seeds, seed=2)
    theory = lf.fft_excess_risk(dx, dy, n, noise_std, float(np.sum(D**2)))
    standard_error = risks.std(ddof=1) / np.sqrt(num_seeds)
    # 5 standard errors: a false alarm has probability ~1e-6 per point (|n - dx| >= 4 keeps the variance finite).
    assert abs(risks.mean() - theory) < 5 * standard_error, (risks.mean(), theory, standard_error)


def test_fft_excess_risk_noiseless_matches_projection() -> None:
    dx, dy, n = 15, 4, 6
    A0 = lf.pretrained_weights(dy, dx, seed=3)
    D = lf.gaussian_task_shift(dy, dx, 2, seed=4)
    risks, _ = lf.excess_risk_monte_carlo(A0, D, n, 0.0, [], 2000, seed=5)
    theory = lf.fft_excess_risk(dx, dy, n, 0.0, float(np.sum(D**2)))
    assert abs(risks.mean() - theory) < 5 * risks.std(ddof=1) / np.sqrt(risks.size)
    assert lf.fft_excess_risk(dx, dy, dx, 0.0, 3.0) == 0.0  # noiseless, n = dx: exact recovery


def test_fft_excess_risk_closed_forms_and_errors() -> None:
    assert lf.fft_excess_risk(10, 3, 20, 2.0, 99.0) == pytest.approx(4 * 10 * 3 / 9)
    assert lf.fft_excess_risk(10, 3, 5, 2.0, 40.0) == pytest.approx(0.5 * 40 + 4 * 3 * 5 / 4)
    for n in (9, 10, 11):
        with pytest.raises(ValueError, match="infinite"):
            lf.fft_excess_risk(10, 3, n, 1.0, 1.0)
    with pytest.raises(ValueError, match="noise_std"):
        lf.fft_excess_risk(10, 3, 20, -1.0, 1.0)
    with pytest.raises(ValueError, match="shift_energy"):
        lf.fft_excess_risk(10, 3, 20, 1.0, -1.0)
    with pytest.raises(ValueError, match="num_samples"):
        lf.fft_excess_risk(10, 3, 0, 1.0, 1.0)
    with pytest.raises(TypeError, match="num_samples"):
        lf.fft_excess_risk(10, 3, 20.5, 1.0, 1.0)


def test_sympy_expressions() -> None:
    s = lf.fft_excess_risk_symbols()
    dx, dy, n, sigma, delta = (s[k] for k in ("input_dimension", "output_dimension", "num_samples",
                                              "noise_std", "shift_energy"))
    expressions = lf.fft_excess_risk_expressions()
    assert sp.simplify(expressions["overdetermined"] - sigma**2 * dx * dy / (n - dx - 1)) == 0
    assert sp.simplify(expressions["underdetermined"] - ((1 - n / dx) * delta + sigma**2 * dy * n / (dx - n - 1))) == 0
    m = sp.Symbol("m")
    assert sp.simplify(lf.inverse_chi_square_mean_sympy(m) - 1 / (m - 2)) == 0
    # Cross-check the symbolic inverse chi-square mean by quadrature at m = 5.
    numeric, _ = integrate.quad(lambda q: stats.chi2.pdf(q, 5) / q, 0, np.inf)
    assert numeric == pytest.approx(float(lf.inverse_chi_square_mean_sympy(5)), rel=1e-8)


# ----------------------------------------------------------------------------- generators
def test_task_shift_generators() -> None:
    D = lf.gaussian_task_shift(9, 13, 3, seed=0)
    assert D.shape == (9, 13) and np.linalg.matrix_rank(D) == 3
    energies = [np.sum(lf.gaussian_task_shift(6, 8, 2, seed=s) ** 2) for s in range(2000)]
    # E|D|^2 = dx dy = 48; 5 standard errors.
    assert abs(np.mean(energies) - 48) < 5 * np.std(energies) / np.sqrt(len(energies))
    spectrum = lf.task_shift_spectrum("exponential", 4, scale=5.0, decay_rate=0.5)
    assert np.allclose(spectrum, 5 * np.exp(-0.5 * np.arange(4)))
    assert np.allclose(lf.task_shift_spectrum("power", 3, scale=2.0, decay_rate=1.0), [2, 1, 2 / 3])
    assert np.allclose(lf.task_shift_spectrum("constant", 2, scale=3.0), [3, 3])
    D = lf.spectral_task_shift(7, 10, spectrum, seed=1)
    assert np.allclose(np.linalg.svd(D, compute_uv=False)[:4], spectrum)
    assert np.linalg.matrix_rank(D) == 4


# ----------------------------------------------------------------------------- validation and seeds
def test_validation_errors() -> None:
    p = _problem("overdetermined", 0)
    with pytest.raises(ValueError, match=r"rank must be in 1\.\.min\(dx, dy\) = 1\.\.8"):
        lf.lora_estimator(p.X, p.Y, p.pretrained, 0)
    with pytest.raises(ValueError, match="rank must be in"):
        lf.lora_estimator(p.X, p.Y, p.pretrained, 9)
    with pytest.raises(TypeError, match="rank"):
        lf.lora_estimator(p.X, p.Y, p.pretrained, 2.0)
    with pytest.raises(ValueError, match=r"\(n, dy\)"):
        lf.fft_estimator(p.X, p.Y[:-1], p.pretrained)
    with pytest.raises(ValueError, match=r"A0 must have shape \(dy, dx\) = \(8, 12\)"):
        lf.fft_estimator(p.X, p.Y, p.pretrained.T)
    with pytest.raises(TypeError, match="numpy array"):
        lf.fft_estimator(p.X.tolist(), p.Y, p.pretrained)
    with pytest.raises(ValueError, match="at least 2 axes"):
        lf.fft_estimator(p.X[0], p.Y, p.pretrained)
    with pytest.raises(ValueError, match="NaN"):
        lf.fft_estimator(np.full_like(p.X, np.nan), p.Y, p.pretrained)
    with pytest.raises(ValueError, match="constant, exponential, power"):
        lf.task_shift_spectrum("flat", 3)
    with pytest.raises(ValueError, match="true_rank"):
        lf.gaussian_task_shift(4, 5, 6, seed=0)
    with pytest.raises(ValueError, match="at most min"):
        lf.spectral_task_shift(3, 5, [1, 1, 1, 1], seed=0)
    with pytest.raises(TypeError, match="seed"):
        lf.pretrained_weights(3, 4, seed="zero")
    with pytest.raises(ValueError, match="noise_std"):
        lf.regression_data(p.pretrained, 5, -0.1, seed=0)


def test_reproducibility() -> None:
    a, b, c = (lf.finetuning_problem(6, 4, 9, 2, 0.5, seed=s) for s in (11, 11, 12))
    for x, y in zip(a, b):
        assert np.array_equal(x, y)
    assert not np.array_equal(a.X, c.X)
    rng_result = lf.finetuning_problem(6, 4, 9, 2, 0.5, seed=np.random.default_rng(11))
    assert np.array_equal(rng_result.Y, a.Y)
    first = lf.excess_risk_monte_carlo(a.pretrained, a.task_shift, 9, 0.5, [1, 2], 10, seed=3, chunk_size=4)
    second = lf.excess_risk_monte_carlo(a.pretrained, a.task_shift, 9, 0.5, [1, 2], 10, seed=3, chunk_size=4)
    assert np.array_equal(first[0], second[0]) and np.array_equal(first[1], second[1])
    gd1 = lf.lora_gradient_descent(a.X, a.Y, a.pretrained, 2, steps=50, seed=4)
    gd2 = lf.lora_gradient_descent(a.X, a.Y, a.pretrained, 2, steps=50, seed=4)
    assert np.array_equal(gd1[0], gd2[0])
