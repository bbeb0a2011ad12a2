"""Tests of lorabook.linear_regression.factor_dynamics: the reduced factor flow, its search
phase, and gradient descent."""

from __future__ import annotations

import numpy as np
import pytest
import sympy as sp

from lorabook.linear_regression import factor_dynamics as fd
from lorabook.linear_regression import linear_finetuning as lf
from lorabook.single_index_lora import lora


def _unit(rng: np.random.Generator, size: int) -> np.ndarray:
    vector = rng.standard_normal(size)
    return vector / np.linalg.norm(vector)


def _matrix_flow(B: np.ndarray, A: np.ndarray, D: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Minus the gradient of ||D - BA||_F^2, written out independently of the module."""
    E = D - B @ A
    return 2.0 * E @ A.T, 2.0 * B.T @ E


def _random_rank_one_state(seed: int, dy: int = 5, dx: int = 7):
    rng = np.random.default_rng(seed)
    u, v = _unit(rng, dy), _unit(rng, dx)
    sigma = rng.uniform(0.1, 2.0)
    B = rng.normal() * u[:, None]  # B_perp = 0
    A = rng.standard_normal((1, dx))
    return u, v, sigma, B, A


# ----------------------------------------------------------------------------- the exact reduction
@pytest.mark.parametrize("seed", range(5))
def test_reduced_rhs_is_the_projection_of_the_matrix_flow(seed: int) -> None:
    u, v, sigma, B, A = _random_rank_one_state(seed)
    D = sigma * np.outer(u, v)
    dB, dA = _matrix_flow(B, A, D)
    beta, alpha = float(u @ B[:, 0]), float(A[0] @ v)
    A_perp = A[0] - alpha * v
    projected = np.array([u @ dB[:, 0], dA[0] @ v, 2.0 * A_perp @ (dA[0] - (dA[0] @ v) * v)])
    state = fd.reduced_overlaps(B, A, u, v)
    np.testing.assert_allclose(state, [beta, alpha, A_perp @ A_perp], rtol=0, atol=1e-13)
    np.testing.assert_allclose(fd.reduced_rhs(state, sigma), projected, rtol=0, atol=1e-12)
    # B_perp stays zero: the component of dB/dt orthogonal to u vanishes.
    np.testing.assert_allclose(dB[:, 0] - (u @ dB[:, 0]) * u, 0.0, atol=1e-12)
    # The module's matrix flow is the same, and the population loss is ||D - BA||_F^2.
    module_dB, module_dA = fd.factor_flow(B, A, D)
    np.testing.assert_allclose(module_dB, dB, rtol=0, atol=1e-13)
    np.testing.assert_allclose(module_dA, dA, rtol=0, atol=1e-13)
    assert fd.reduced_population_loss(state, sigma) == pytest.approx(np.sum((D - B @ A) ** 2), rel=1e-12)


def test_matrix_flow_is_minus_the_gradient_of_the_population_loss() -> None:
    rng = np.random.default_rng(11)
    B, A, D = rng.standard_normal((5, 2)), rng.standard_normal((2, 7)), rng.standard_normal((5, 7))
    dB, dA = fd.factor_flow(B, A, D)
    h = 1e-6

    def loss(B_, A_):
        return np.sum((D - B_ @ A_) ** 2)

    for index in np.ndindex(B.shape):
        step = np.zeros_like(B)
        step[index] = h
        assert -(loss(B + step, A) - loss(B - step, A)) / (2 * h) == pytest.approx(dB[index], abs=1e-6)
    for index in np.ndindex(A.shape):
        step = np.zeros_like(A)
        step[index] = h
        assert -(loss(B, A + step) - loss(B, A - step)) / (2 * h) == pytest.approx(dA[index], abs=1e-6)


def test_reduced_rhs_matches_its_symbolic_derivation_and_is_vectorised() -> None:
    rates = fd.reduced_rhs_sympy()
    symbols = sp.symbols("beta alpha p", real=True) + (fd.SHIFT_SINGULAR_VALUE,)
    rng = np.random.default_rng(3)
    states = rng.standard_normal((4, 6, 3))
    states[..., 2] = np.abs(states[..., 2])
    sigma = rng.uniform(0.1, 2.0, size=(4, 6))
    numeric = fd.reduced_rhs(states, sigma)
    assert numeric.shape == (4, 6, 3)
    for component, rate in enumerate(rates):
        function = sp.lambdify(symbols, rate, "numpy")
        expected = function(states[..., 0], states[..., 1], states[..., 2], sigma)
        np.testing.assert_allclose(numeric[..., component], expected, rtol=1e-14, atol=1e-14)
    # The balance alpha^2 + p - beta^2 has zero time derivative (symbolically).
    beta, alpha, p = symbols[:3]
    assert sp.expand(2 * alpha * rates[1] + rates[2] - 2 * beta * rates[0]) == 0


def test_reduced_overlaps_over_recorded_steps() -> None:
    rng = np.random.default_rng(4)
    u, v = _unit(rng, 5), _unit(rng, 7)
    B = rng.standard_normal((3, 5, 1))
    A = rng.standard_normal((3, 1, 7))
    state = fd.reduced_overlaps(B, A, u, v)
    assert state.shape == (3, 3)
    for k in range(3):
        alpha = A[k, 0] @ v
        np.testing.assert_allclose(state[k], [u @ B[k, :, 0], alpha, A[k, 0] @ A[k, 0] - alpha**2], atol=1e-13)


# ----------------------------------------------------------------------------- the search phase
def test_symbolic_linearization_is_the_jacobian_and_matches_the_numeric_one() -> None:
    matrix, rate = fd.factor_linearization_sympy()
    sigma, s = fd.SHIFT_SINGULAR_VALUE, fd.INITIAL_SCALE
    assert sp.simplify(matrix - 2 * sp.Matrix([[-(s**2), sigma], [sigma, 0]])) == sp.zeros(2, 2)
    assert sp.simplify(matrix.det() + 4 * sigma**2) == 0  # one positive, one negative eigenvalue
    sigmas = np.array([0.05, 0.1, 0.25, 0.5, 1.0, 3.0])
    scales = np.array([0.0, 0.01, 0.3, 1.0, 2.0])
    grid_sigma, grid_scale = np.meshgrid(sigmas, scales, indexing="ij")
    numeric = fd.factor_linearization(grid_sigma, grid_scale)
    assert numeric.shape == grid_sigma.shape + (2, 2)
    rates = fd.factor_escape_rate(grid_sigma, grid_scale)
    assert np.all(rates > 0)
    for index in np.ndindex(grid_sigma.shape):
        values = {sigma: sp.Float(grid_sigma[index], 30), s: sp.Float(grid_scale[index], 30)}
        np.testing.assert_allclose(numeric[index], np.array(matrix.subs(values), dtype=float), rtol=1e-14)
        assert rates[index] == pytest.approx(float(rate.subs(values)), rel=1e-13)
        # lambda_+ is the largest eigenvalue of the numeric matrix, and tau its inverse.
        assert rates[index] == pytest.approx(np.linalg.eigvalsh(numeric[index])[-1], rel=1e-10)
        assert fd.factor_search_time(grid_sigma[index], grid_scale[index]) == pytest.approx(
            1.0 / rates[index], rel=1e-14
        )


def test_search_time_small_shift_asymptotics() -> None:
    # s = 1: tau = (1 + sqrt(1 + 4 sigma^2)) / (4 sigma^2), so 2 sigma^2 tau = 1 + sigma^2 + O(sigma^4).
    for sigma in (1e-2, 1e-3, 1e-5):
        assert abs(2 * sigma**2 * fd.factor_search_time(sigma, 1.0) - 1.0) <= 1.01 * sigma**2
    # s -> 0 at fixed sigma: 2 sigma tau = 1 + s^2 / (2 sigma) + O(s^4).
    sigma = 0.3
    for scale in (1e-2, 1e-3, 1e-5):
        assert abs(2 * sigma * fd.factor_search_time(sigma, scale) - 1.0) <= 1.01 * scale**2 / (2 * sigma)
    assert fd.factor_search_time(sigma, 0.0) == pytest.approx(1.0 / (2 * sigma), rel=1e-15)
    # No cancellation for tiny sigma (the naive -s^2 + sqrt(s^4 + 4 sigma^2) would give 0 here).
    assert fd.factor_search_time(1e-9, 1.0) == pytest.approx(0.5e18, rel=1e-12)
    assert fd.factor_search_time(0.0, 1.0) == np.inf


def test_search_time_is_half_that_of_the_linear_single_index_model() -> None:
    mu = np.array([0.05, 0.2, 0.5, 0.8, 0.95, 0.999])
    for value in mu:
        coefficient_a, coefficient_b = lora.linearization("linear", value)
        assert (coefficient_a, coefficient_b) == pytest.approx((1 - value, -1.0), abs=1e-14)
        np.testing.assert_allclose(
            fd.factor_linearization(1 - value, 1.0),
            2 * np.array([[coefficient_b, coefficient_a], [coefficient_a, 0.0]]),
            rtol=1e-14,
        )
        assert fd.factor_search_time(1 - value, 1.0) == pytest.approx(lora.search_time("linear", value) / 2, rel=1e-12)
    np.testing.assert_allclose(fd.factor_search_time(1 - mu, 1.0), lora.search_time("linear", mu) / 2, rtol=1e-12)


# ----------------------------------------------------------------------------- the integrated flow
@pytest.mark.parametrize("sigma, alpha0, p0", [(0.25, 0.05, 1.0), (1.0, -0.2, 0.5), (0.5, 1e-4, 0.01)])
def test_flow_conserves_the_balance_and_reaches_the_shift(sigma: float, alpha0: float, p0: float) -> None:
    times = np.linspace(0.0, 25 * fd.factor_search_time(sigma, np.sqrt(alpha0**2 + p0)), 400)
    solution = fd.integrate_factor_flow(sigma, alpha0, p0, times)
    np.testing.assert_allclose(solution.balance, alpha0**2 + p0, rtol=0, atol=1e-8)
    assert solution.loss[0] == pytest.approx(sigma**2, rel=1e-14)
    assert np.all(np.diff(solution.loss) <= 1e-12)  # a gradient flow
    np.testing.assert_allclose(solution.loss, fd.reduced_population_loss(solution.state, sigma), rtol=1e-12, atol=1e-15)
    # The end point is a global minimiser: BA = D, i.e. alpha beta = sigma, p = 0.
    assert solution.loss[-1] < 1e-6 * sigma**2
    assert solution.alpha[-1] * solution.beta[-1] == pytest.approx(sigma, rel=1e-3)
    # The solver's event agrees with interpolation of the output.
    assert solution.half_loss_time == pytest.approx(fd.loss_fraction_time(solution.time, solution.loss), rel=1e-3)


@pytest.mark.parametrize("sigma, scale", [(0.25, 1.0), (0.5, 1.0), (0.5, 0.1)])
def test_escape_time_grows_like_tau_log_one_over_alpha0(sigma: float, scale: float) -> None:
    # In the search phase the unstable mode grows like alpha0 exp(t / tau), so the time to halve the
    # loss is tau log(1/alpha0) + const as alpha0 -> 0 (on the balance level set alpha^2 + p = s^2).
    tau = fd.factor_search_time(sigma, scale)
    escapes = []
    for alpha0 in (1e-4 * scale, 1e-7 * scale):
        times = np.array([0.0, 40 * tau])
        escapes.append(fd.integrate_factor_flow(sigma, alpha0, scale**2 - alpha0**2, times).half_loss_time)
    slope = (escapes[1] - escapes[0]) / np.log(1e3)
    assert slope == pytest.approx(tau, rel=1e-4)


# ----------------------------------------------------------------------------- gradient descent
def test_trajectory_is_lora_gradient_descent() -> None:
    problem = lf.finetuning_problem(12, 8, 40, 3, 0.5, seed=3)
    rank, steps, eta, scale, seed = 2, 400, 0.01, 0.3, 7
    weights, losses = lf.lora_gradient_descent(
        problem.X, problem.Y, problem.pretrained, rank, steps, seed=seed, learning_rate=eta, initial_scale=scale
    )
    initial_A = scale * np.random.default_rng(seed).standard_normal((rank, 12)) / np.sqrt(12)  # its initialisation
    trajectory = fd.lora_factor_trajectory(problem.X, problem.Y, problem.pretrained, initial_A, steps, eta)
    np.testing.assert_allclose(trajectory.loss, losses, rtol=1e-11, atol=1e-13)
    np.testing.assert_allclose(problem.pretrained + trajectory.B[-1] @ trajectory.A[-1], weights, rtol=0, atol=1e-12)
    # Recording every k-th step keeps the first and last steps.
    sparse = fd.lora_factor_trajectory(
        problem.X, problem.Y, problem.pretrained, initial_A, steps, eta, record_every=150
    )
    np.testing.assert_array_equal(sparse.step, [0, 150, 300, 400])
    np.testing.assert_allclose(sparse.time, eta * sparse.step)
    np.testing.assert_allclose(sparse.loss, losses[sparse.step], rtol=1e-11, atol=1e-13)
    np.testing.assert_array_equal(sparse.B[0], 0.0)


def _rank_one_problem(n: int, dx: int, dy: int, seed: int, exact_covariance: bool = False):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, dx))
    if exact_covariance:
        X = np.sqrt(n) * np.linalg.qr(X)[0]  # X^T X / n = I exactly: no sampling error
    A0 = rng.standard_normal((dy, dx))
    u, v = _unit(rng, dy), _unit(rng, dx)
    initial_A = rng.standard_normal((1, dx)) / np.sqrt(dx)  # initial_scale s = 1
    return X, A0, u, v, initial_A


def test_gradient_descent_is_euler_on_the_flow_when_the_covariance_is_exact() -> None:
    # With X^T X / n = I and noiseless labels, G = 2 (D - BA) exactly: gradient descent is forward Euler
    # on the factor flow, so the gap to the ODE is O(eta) and halves with eta.
    X, A0, u, v, initial_A = _rank_one_problem(200, 40, 10, seed=1, exact_covariance=True)
    sigma = 0.5
    Y = X @ (A0 + sigma * np.outer(u, v)).T
    gaps = []
    for eta in (0.02, 0.01):
        trajectory = fd.lora_factor_trajectory(X, Y, A0, initial_A, int(round(20 / eta)), eta)
        overlaps = fd.reduced_overlaps(trajectory.B, trajectory.A, u, v)
        solution = fd.integrate_factor_flow(sigma, overlaps[0, 1], overlaps[0, 2], trajectory.time)
        gaps.append(np.max(np.abs(overlaps - solution.state)))
        assert np.max(np.abs(trajectory.loss - solution.loss)) < 0.25 * eta * sigma**2
    assert gaps[0] / gaps[1] == pytest.approx(2.0, rel=0.05)


def test_gradient_descent_with_many_samples_follows_the_flow() -> None:
    n, dx, dy, eta = 20000, 40, 10, 0.01
    X, A0, u, v, initial_A = _rank_one_problem(n, dx, dy, seed=2)
    escapes = {}
    for sigma in (0.25, 0.5):
        Y = X @ (A0 + sigma * np.outer(u, v)).T
        tau = fd.factor_search_time(sigma, 1.0)
        trajectory = fd.lora_factor_trajectory(X, Y, A0, initial_A, int(12 * tau / eta), eta)
        beta0, alpha0, p0 = fd.reduced_overlaps(trajectory.B[0], trajectory.A[0], u, v)
        assert beta0 == 0.0
        solution = fd.integrate_factor_flow(sigma, alpha0, p0, trajectory.time)
        # Tolerance. The empirical covariance S = X^T X / n deviates from I by O(sqrt(dx/n)) ~ 0.045
        # (operator norm about 2 sqrt(dx/n)). Its leading effect in the search phase is that gradient
        # descent sees the initial alignment A(0) S v instead of alpha0 = A(0) v; the difference
        # A(0)(S - I)v ~ s/sqrt(n), i.e. relative delta = s/(sqrt(n)|alpha0|) (= sqrt(dx/n) for a typical
        # alpha0 ~ s/sqrt(dx)). This shifts the escape by about tau*delta, during which the loss moves by
        # about delta*sigma^2/2 (the steepest relative slope of the loss curve is about lambda_+/2).
        # Hence: max |L_GD - L_ODE| <= (0.01 + delta) sigma^2, with the 0.01 covering the O(eta) Euler
        # error and the O(1/sqrt(n)) fluctuation of the initial loss v^T S v. (Measured: about delta/2.)
        delta = 1.0 / (np.sqrt(n) * abs(alpha0))
        assert delta < 0.1  # the seed gives a typical alpha0, so the comparison is informative
        gap = np.max(np.abs(trajectory.loss - solution.loss)) / sigma**2
        assert gap < 0.01 + delta, (sigma, gap, delta)
        escapes[sigma] = (fd.loss_fraction_time(trajectory.time, trajectory.loss), solution.half_loss_time)
        assert escapes[sigma][0] == pytest.approx(escapes[sigma][1], rel=2 * delta)
    # The escape time scales like tau: the sampling error shifts log(1/alpha0) equally for both shifts
    # (same X, u, v, A(0)), so the ratio of escape times is much more precise than each of them.
    gd_ratio = escapes[0.25][0] / escapes[0.5][0]
    ode_ratio = escapes[0.25][1] / escapes[0.5][1]
    assert gd_ratio == pytest.approx(ode_ratio, rel=0.01)
    tau_ratio = fd.factor_search_time(0.25, 1.0) / fd.factor_search_time(0.5, 1.0)
    assert gd_ratio == pytest.approx(tau_ratio, rel=0.1)  # up to the O(1) constant in tau log(1/alpha0) + c


# ----------------------------------------------------------------------------- validation
def test_bad_inputs_raise_with_the_valid_range() -> None:
    state = np.array([0.0, 0.1, 1.0])
    with pytest.raises(ValueError, match="length 3"):
        fd.reduced_rhs(np.zeros(2), 1.0)
    with pytest.raises(ValueError, match=r"\[0, inf\)"):
        fd.reduced_rhs(np.array([0.0, 0.1, -1.0]), 1.0)
    with pytest.raises(ValueError, match=r"\[0, inf\)"):
        fd.reduced_rhs(state, -0.5)
    with pytest.raises(TypeError, match="real number"):
        fd.reduced_rhs(state, "one")
    with pytest.raises(ValueError, match="finite"):
        fd.reduced_rhs(state, np.nan)
    with pytest.raises(ValueError, match=r"\(0, inf\)"):
        fd.integrate_factor_flow(0.0, 0.1, 1.0, np.linspace(0, 1, 5))
    with pytest.raises(ValueError, match=r"\[0, inf\)"):
        fd.integrate_factor_flow(0.5, 0.1, -1.0, np.linspace(0, 1, 5))
    with pytest.raises(ValueError, match="strictly increasing"):
        fd.integrate_factor_flow(0.5, 0.1, 1.0, np.array([0.0, 2.0, 1.0]))
    with pytest.raises(ValueError, match=r"\(0, 1\)"):
        fd.integrate_factor_flow(0.5, 0.1, 1.0, np.linspace(0, 1, 5), rtol=0.0)
    with pytest.raises(TypeError, match="scalar"):
        fd.integrate_factor_flow(np.array([0.5, 1.0]), 0.1, 1.0, np.linspace(0, 1, 5))
    with pytest.raises(ValueError, match=r"\[0, inf\)"):
        fd.factor_search_time(-0.1, 1.0)
    with pytest.raises(ValueError, match=r"\[0, inf\)"):
        fd.factor_linearization(0.5, -1.0)
    with pytest.raises(ValueError, match="broadcast"):
        fd.factor_escape_rate(np.ones(2), np.ones(3))
    rng = np.random.default_rng(0)
    u, v = _unit(rng, 5), _unit(rng, 7)
    with pytest.raises(ValueError, match="rank-one"):
        fd.reduced_overlaps(np.zeros((5, 2)), np.zeros((2, 7)), u, v)
    with pytest.raises(ValueError, match="unit vector"):
        fd.reduced_overlaps(np.zeros((5, 1)), np.zeros((1, 7)), 2 * u, v)
    with pytest.raises(ValueError, match="length 7"):
        fd.reduced_overlaps(np.zeros((5, 1)), np.zeros((1, 7)), u, u)
    X, A0, _, _, initial_A = _rank_one_problem(30, 7, 5, seed=0)
    Y = X @ A0.T
    with pytest.raises(ValueError, match=r"1\.\.min\(dx, dy\) = 1\.\.5"):
        fd.lora_factor_trajectory(X, Y, A0, np.zeros((6, 7)), 10, 0.01)
    with pytest.raises(ValueError, match=r"\(r, dx\)"):
        fd.lora_factor_trajectory(X, Y, A0, np.zeros((1, 6)), 10, 0.01)
    with pytest.raises(ValueError, match=r"\(0, inf\)"):
        fd.lora_factor_trajectory(X, Y, A0, initial_A, 10, 0.0)
    with pytest.raises(ValueError, match=">= 0"):
        fd.lora_factor_trajectory(X, Y, A0, initial_A, -1, 0.01)
    with pytest.raises(TypeError, match="integer"):
        fd.lora_factor_trajectory(X, Y, A0, initial_A, 2.5, 0.01)
    with pytest.raises(ValueError, match=">= 1"):
        fd.lora_factor_trajectory(X, Y, A0, initial_A, 10, 0.01, record_every=0)
    with pytest.raises(ValueError, match=r"\(n, dy\)"):
        fd.lora_factor_trajectory(X, Y[:-1], A0, initial_A, 10, 0.01)
    with pytest.raises(ValueError, match=r"\(0, 1\)"):
        fd.loss_fraction_time(np.arange(3.0), np.array([1.0, 0.5, 0.1]), fraction=1.5)
    with pytest.raises(ValueError, match="positive"):
        fd.loss_fraction_time(np.arange(3.0), np.zeros(3))
    assert fd.loss_fraction_time(np.arange(3.0), np.array([1.0, 0.8, 0.7])) == np.inf
    assert fd.loss_fraction_time(np.arange(3.0), np.array([1.0, 0.8, 0.4])) == pytest.approx(1.75)
