r"""Gradient flow on the LoRA factors in linear regression with a rank-one task shift: the search phase.

The setting of Part III of the book (:mod:`lorabook.linear_regression.linear_finetuning`) in the population limit.
:func:`lorabook.linear_regression.linear_finetuning.lora_gradient_descent` minimises
:math:`L(B, A) = \frac1n\|R - XA^\top B^\top\|_F^2`, :math:`R = Y - XA_0^\top`, from
:math:`B = 0` and :math:`A_{ij}\sim\mathcal N(0, s^2/d_x)` (``s`` is ``initial_scale``: each row
of ``A`` has squared norm about :math:`s^2`), with the update

.. math:: G = \tfrac2n (R - XA^\top B^\top)^\top X,\qquad
    B \leftarrow B + \eta\, G A^\top,\qquad A \leftarrow A + \eta\, B^\top G.

For noiseless labels :math:`Y = X(A_0 + D)^\top` and isotropic inputs, :math:`G \to 2(D - BA)`
as :math:`n \to \infty`, and in time :math:`t = \eta\times\text{steps}` the factors follow the
gradient flow of :math:`\|D - BA\|_F^2`,

.. math:: \dot B = 2(D - BA)A^\top, \qquad \dot A = 2B^\top(D - BA),

which conserves :math:`AA^\top - B^\top B` (the balance). For rank :math:`r = 1` and a rank-one
shift :math:`D = \sigma u v^\top` (:math:`\|u\| = \|v\| = 1`, :math:`\sigma > 0`) write
:math:`B = \beta u + B_\perp`, :math:`A = \alpha v^\top + A_\perp` (:math:`A_\perp v = 0`),
:math:`p = \|A_\perp\|^2`. From :math:`B(0) = 0`, :math:`B_\perp` stays zero and

.. math:: \dot\beta = 2\big(\sigma\alpha - \beta(\alpha^2 + p)\big),\qquad
    \dot\alpha = 2\beta(\sigma - \alpha\beta),\qquad \dot p = -4\beta^2 p,

with population loss :math:`\|D - BA\|_F^2 = \sigma^2 - 2\sigma\alpha\beta + \beta^2(\alpha^2 + p)`
and the conserved balance :math:`\alpha^2 + p - \beta^2`. At the LoRA start
(:math:`\beta = 0`, :math:`\alpha = O(s/\sqrt{d_x})`, :math:`\alpha^2 + p = s^2`) the flow of
:math:`(\beta, \alpha)` linearises to

.. math:: \frac{d}{dt}\begin{pmatrix}\beta\\ \alpha\end{pmatrix}
    = 2\begin{pmatrix} -s^2 & \sigma \\ \sigma & 0\end{pmatrix}\begin{pmatrix}\beta\\ \alpha\end{pmatrix},
    \qquad \lambda_+ = -s^2 + \sqrt{s^4 + 4\sigma^2} = \frac{4\sigma^2}{s^2 + \sqrt{s^4 + 4\sigma^2}},

so the search time is :math:`\tau = 1/\lambda_+`: :math:`\tau \approx 1/(2\sigma^2)` for
:math:`s = 1` and small :math:`\sigma` (the quadratic slowdown), :math:`\tau \to 1/(2\sigma)` as
:math:`s \to 0`. For :math:`s = 1` this is half the search time of Part II's linear single-index
model (:func:`lorabook.single_index_lora.lora.search_time` ``("linear", mu)``) at :math:`\sigma = 1 - \mu`: the same
matrix up to the factor 2 of the loss :math:`\|\cdot\|^2` versus :math:`\frac12(\cdot)^2`.

Contents:

* the exact reduction: :func:`factor_flow` (the matrix flow), :func:`reduced_rhs`,
  :func:`reduced_overlaps`, :func:`reduced_population_loss`, :func:`reduced_balance`, and the
  symbolic derivation :func:`reduced_rhs_sympy`;
* integration: :func:`integrate_factor_flow` (scipy ``solve_ivp``, tight tolerances), returning a
  :class:`FactorFlowSolution`;
* the search phase: :func:`factor_linearization_sympy` (the single source of truth),
  :func:`factor_linearization`, :func:`factor_escape_rate`, :func:`factor_search_time`;
* simulation: :func:`lora_factor_trajectory` (full-batch gradient descent on the factors from an
  explicit initial ``A``, returning a :class:`FactorTrajectory`) and :func:`loss_fraction_time`
  (the first time a loss curve falls to a fraction of its start).

All functions are pure; time is :math:`t = \eta\times\text{steps}` throughout.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

import numpy as np
import sympy as sp
from scipy.integrate import solve_ivp

from lorabook.linear_regression.linear_finetuning import check_regression
from lorabook.toolkit.validation import check_memory, integer, matrix, real_array

__all__ = [
    "INITIAL_SCALE",
    "SHIFT_SINGULAR_VALUE",
    "FactorFlowSolution",
    "FactorTrajectory",
    "factor_escape_rate",
    "factor_flow",
    "factor_linearization",
    "factor_linearization_sympy",
    "factor_search_time",
    "integrate_factor_flow",
    "lora_factor_trajectory",
    "loss_fraction_time",
    "reduced_balance",
    "reduced_overlaps",
    "reduced_population_loss",
    "reduced_rhs",
    "reduced_rhs_sympy",
]

SHIFT_SINGULAR_VALUE = sp.Symbol("sigma", positive=True)
r""":math:`\sigma`, the singular value of the rank-one task shift, in every expression of this module."""

INITIAL_SCALE = sp.Symbol("s", positive=True)
""":math:`s`, the initial row norm of ``A`` (``initial_scale``), in every expression of this module."""

_BETA, _ALPHA, _PERP = sp.symbols("beta alpha p", real=True)


# ----------------------------------------------------------------------------- validation
def _nonnegative_array(value: object, name: str) -> np.ndarray:
    values = real_array(value, name)
    if np.any(values < 0):
        raise ValueError(f"{name} must lie in [0, inf), got {value!r}")
    return values


def _positive_scalar(value: object, name: str) -> float:
    values = real_array(value, name)
    if values.ndim != 0:
        raise TypeError(f"{name} must be a scalar, got an array of shape {values.shape}")
    if values <= 0:
        raise ValueError(f"{name} must lie in (0, inf), got {value!r}")
    return float(values)


def _real_scalar(value: object, name: str) -> float:
    values = real_array(value, name)
    if values.ndim != 0:
        raise TypeError(f"{name} must be a scalar, got an array of shape {values.shape}")
    return float(values)


def _unit_vector(value: object, name: str, length: int | None = None, matching: str = "") -> np.ndarray:
    if not isinstance(value, np.ndarray):
        raise TypeError(f"{name} must be a numpy array, got {type(value).__name__}")
    vector = real_array(value, name)
    if vector.ndim != 1:
        raise ValueError(f"{name} must be a vector (1 axis), got shape {vector.shape}")
    if length is not None and vector.size != length:
        raise ValueError(f"{name} must have length {length}{' to match ' + matching if matching else ''}, "
                         f"got {vector.size}")
    if not np.isclose(np.linalg.norm(vector), 1.0, rtol=0, atol=1e-10):
        raise ValueError(f"{name} must be a unit vector (norm 1 to within 1e-10), got norm {np.linalg.norm(vector)!r}")
    return vector


def _state(state: object) -> np.ndarray:
    values = real_array(state, "state")
    if values.ndim == 0 or values.shape[-1] != 3:
        raise ValueError(f"state must have a last axis of length 3, (beta, alpha, p), got shape {values.shape}")
    if np.any(values[..., 2] < 0):
        raise ValueError("p = |A_perp|^2 (state[..., 2]) must lie in [0, inf)")
    return values


# ----------------------------------------------------------------------------- the exact reduction
def factor_flow(B: np.ndarray, A: np.ndarray, task_shift: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    r"""Population gradient flow on the factors, :math:`(\dot B, \dot A)`.

    .. math:: \dot B = 2(D - BA)A^\top, \qquad \dot A = 2B^\top(D - BA),

    minus the gradient of :math:`\|D - BA\|_F^2` (the population loss of noiseless labels with
    isotropic inputs). Leading axes are batch axes.

    Parameters
    ----------
    B, A
        Factors, shapes ``(..., dy, r)`` and ``(..., r, dx)``.
    task_shift
        :math:`D`, shape ``(..., dy, dx)``.

    Returns
    -------
    (dB_dt, dA_dt)
        Arrays of the shapes of ``B`` and ``A`` (broadcast over the batch axes).

    Raises
    ------
    TypeError, ValueError
        If an argument is not a real, finite array with at least 2 axes or the shapes do not match.
    """
    B = matrix(B, "B")
    A = matrix(A, "A")
    D = matrix(task_shift, "task_shift")
    if B.shape[-1] != A.shape[-2] or D.shape[-2:] != (B.shape[-2], A.shape[-1]):
        raise ValueError(f"B (dy, r), A (r, dx) and task_shift (dy, dx) do not match: got {B.shape}, {A.shape}, "
                         f"{D.shape}")
    E = D - B @ A
    return 2.0 * E @ np.swapaxes(A, -1, -2), 2.0 * np.swapaxes(B, -1, -2) @ E


def _rhs(beta, alpha, p, sigma):
    return (2.0 * (sigma * alpha - beta * (alpha**2 + p)),
            2.0 * beta * (sigma - alpha * beta),
            -4.0 * beta**2 * p)


def reduced_rhs(state: np.ndarray, shift_singular_value: float | np.ndarray) -> np.ndarray:
    r"""Right-hand side of the three-overlap flow of rank-one LoRA on a rank-one shift.

    .. math:: \dot\beta = 2\big(\sigma\alpha - \beta(\alpha^2 + p)\big),\qquad
        \dot\alpha = 2\beta(\sigma - \alpha\beta),\qquad \dot p = -4\beta^2 p,

    the projection of :func:`factor_flow` for :math:`D = \sigma uv^\top`, :math:`B = \beta u`,
    :math:`A = \alpha v^\top + A_\perp`, :math:`p = \|A_\perp\|^2` (derived symbolically in
    :func:`reduced_rhs_sympy`). Exact whenever :math:`B_\perp = 0`, which the flow preserves.

    Parameters
    ----------
    state
        :math:`(\beta, \alpha, p)` in the last axis, shape ``(..., 3)``, :math:`p \ge 0`.
    shift_singular_value
        :math:`\sigma \ge 0`, scalar or broadcastable to ``state.shape[:-1]``.

    Returns
    -------
    numpy.ndarray
        :math:`(\dot\beta, \dot\alpha, \dot p)`, shape ``(..., 3)`` (broadcast).

    Raises
    ------
    TypeError
        If an argument is not real.
    ValueError
        If the last axis of ``state`` does not have length 3, :math:`p < 0`, :math:`\sigma < 0`, or a
        value is not finite.
    """
    y = _state(state)
    sigma = _nonnegative_array(shift_singular_value, "shift_singular_value")
    return np.stack(np.broadcast_arrays(*_rhs(y[..., 0], y[..., 1], y[..., 2], sigma)), axis=-1)


def reduced_population_loss(state: np.ndarray, shift_singular_value: float | np.ndarray) -> np.ndarray | float:
    r"""Population loss :math:`\|D - BA\|_F^2 = \sigma^2 - 2\sigma\alpha\beta + \beta^2(\alpha^2 + p)`.

    Evaluated as the sum of squares :math:`(\sigma - \alpha\beta)^2 + \beta^2 p` (no cancellation
    near the minimum). Arguments and errors as for :func:`reduced_rhs`; returns shape ``state.shape[:-1]``.
    """
    y = _state(state)
    sigma = _nonnegative_array(shift_singular_value, "shift_singular_value")
    beta, alpha, p = y[..., 0], y[..., 1], y[..., 2]
    loss = (sigma - alpha * beta) ** 2 + beta**2 * p
    return float(loss) if loss.ndim == 0 else loss


def reduced_balance(state: np.ndarray) -> np.ndarray | float:
    r"""Balance :math:`AA^\top - B^\top B = \alpha^2 + p - \beta^2`, conserved by the flow.

    Parameters
    ----------
    state
        :math:`(\beta, \alpha, p)` in the last axis, shape ``(..., 3)``.
    """
    y = _state(state)
    value = y[..., 1] ** 2 + y[..., 2] - y[..., 0] ** 2
    return float(value) if value.ndim == 0 else value


def reduced_overlaps(B: np.ndarray, A: np.ndarray, left_vector: np.ndarray, right_vector: np.ndarray) -> np.ndarray:
    r"""Overlaps :math:`(\beta, \alpha, p)` of rank-one factors with the shift :math:`\sigma uv^\top`.

    .. math:: \beta = u^\top B, \qquad \alpha = A v, \qquad p = \|A\|^2 - \alpha^2 = \|A_\perp\|^2.

    The part :math:`B_\perp = B - \beta u` is not returned: it is zero from the LoRA start
    :math:`B = 0` and stays zero under the flow (under gradient descent on finite data it is only
    approximately zero).

    Parameters
    ----------
    B, A
        Factors of rank one, shapes ``(..., dy, 1)`` and ``(..., 1, dx)`` (leading axes are batch
        axes, e.g. the recorded steps of ``B`` of a
        :class:`lorabook.linear_regression.factor_dynamics.FactorTrajectory`).
    left_vector, right_vector
        Unit vectors :math:`u \in \mathbb R^{d_y}`, :math:`v \in \mathbb R^{d_x}`.

    Returns
    -------
    numpy.ndarray
        Shape ``(..., 3)``.

    Raises
    ------
    TypeError, ValueError
        For non-array or non-finite input, a rank other than one, mismatched lengths, or vectors
        that are not of unit norm.
    """
    B = matrix(B, "B")
    A = matrix(A, "A")
    if B.shape[-1] != 1 or A.shape[-2] != 1:
        raise ValueError(f"reduced_overlaps needs rank-one factors, B (..., dy, 1) and A (..., 1, dx); got {B.shape}, "
                         f"{A.shape}")
    u = _unit_vector(left_vector, "left_vector", B.shape[-2], f"the dy = {B.shape[-2]} rows of B")
    v = _unit_vector(right_vector, "right_vector", A.shape[-1], f"the dx = {A.shape[-1]} columns of A")
    beta = B[..., :, 0] @ u
    row = A[..., 0, :]
    alpha = row @ v
    perp = row - alpha[..., None] * v
    p = np.sum(perp**2, axis=-1)
    beta, alpha, p = np.broadcast_arrays(beta, alpha, p)
    return np.stack([beta, alpha, p], axis=-1)


@cache
def reduced_rhs_sympy() -> tuple[sp.Expr, sp.Expr, sp.Expr]:
    r""":math:`(\dot\beta, \dot\alpha, \dot p)` derived symbolically from the matrix flow.

    By rotation invariance it suffices to take :math:`u = e_1 \in \mathbb R^2`,
    :math:`v = e_1 \in \mathbb R^2`, :math:`B = (\beta, 0)^\top`, :math:`A = (\alpha, a)` with
    :math:`A_\perp = a e_2`; then :math:`\dot\beta = (\dot B)_1`, :math:`\dot\alpha = (\dot A)_1`,
    :math:`\dot p = 2a(\dot A)_2` with :math:`a^2 = p`. Also checks :math:`(\dot B)_2 = 0`
    (:math:`B_\perp` stays zero). Symbols: ``beta``, ``alpha``, ``p`` and :data:`SHIFT_SINGULAR_VALUE`.
    """
    a = sp.Symbol("a", real=True)
    sigma = SHIFT_SINGULAR_VALUE
    B = sp.Matrix([[_BETA], [0]])
    A = sp.Matrix([[_ALPHA, a]])
    D = sp.Matrix([[sigma, 0], [0, 0]])
    residual = D - B * A
    dB = 2 * residual * A.T
    dA = 2 * B.T * residual
    if sp.expand(dB[1]) != 0:
        raise AssertionError("B_perp is not invariant")  # pragma: no cover
    rates = [sp.expand(dB[0]), sp.expand(dA[0]), sp.expand(2 * a * dA[1])]
    rates = [sp.expand(rate.subs(a**2, _PERP)) for rate in rates]
    if any(rate.has(a) for rate in rates):
        raise AssertionError("the reduction did not close on (beta, alpha, p)")  # pragma: no cover
    return tuple(rates)


# ----------------------------------------------------------------------------- integration
@dataclass(frozen=True)
class FactorFlowSolution:
    r"""Output of :func:`integrate_factor_flow`.

    Attributes
    ----------
    time
        Output times :math:`t = \eta\times\text{steps}`, shape ``(n_times,)``.
    beta, alpha, perp_norm_squared
        :math:`\beta`, :math:`\alpha` and :math:`p` at those times, each ``(n_times,)``.
    loss
        Population loss :math:`\|D - BA\|_F^2` along the path, ``(n_times,)``.
    shift_singular_value
        :math:`\sigma`.
    half_loss_time
        First time the loss reaches half its initial value (solver event location; ``inf`` if
        not within ``time[-1]``).
    """

    time: np.ndarray
    beta: np.ndarray
    alpha: np.ndarray
    perp_norm_squared: np.ndarray
    loss: np.ndarray
    shift_singular_value: float
    half_loss_time: float

    @property
    def state(self) -> np.ndarray:
        r""":math:`(\beta, \alpha, p)` stacked, shape ``(n_times, 3)``."""
        return np.stack([self.beta, self.alpha, self.perp_norm_squared], axis=-1)

    @property
    def balance(self) -> np.ndarray:
        r""":math:`\alpha^2 + p - \beta^2` along the path (constant up to the solver tolerance)."""
        return self.alpha**2 + self.perp_norm_squared - self.beta**2


def integrate_factor_flow(shift_singular_value: float, initial_alpha: float, initial_perp_norm_squared: float,
                          times: np.ndarray, initial_beta: float = 0.0, rtol: float = 1e-11,
                          atol: float = 1e-14) -> FactorFlowSolution:
    r"""Integrate the three-overlap flow of :func:`reduced_rhs` from :math:`t = 0`.

    .. math:: \dot\beta = 2\big(\sigma\alpha - \beta(\alpha^2 + p)\big),\quad
        \dot\alpha = 2\beta(\sigma - \alpha\beta),\quad \dot p = -4\beta^2 p,\qquad
        (\beta, \alpha, p)(0) = (\beta_0, \alpha_0, p_0),

    with ``scipy.integrate.solve_ivp`` (DOP853; :math:`p`, which is :math:`p_0 e^{-4\int\beta^2} \ge 0`
    exactly, is clipped at 0 against the solver's :math:`O(\text{atol})` undershoot). To follow a
    gradient-descent run, start from its own initial overlaps (:func:`reduced_overlaps` of its
    initial factors): :math:`\beta_0 = 0`, :math:`\alpha_0 = A(0)v`,
    :math:`p_0 = \|A(0)\|^2 - \alpha_0^2`.

    Parameters
    ----------
    shift_singular_value
        :math:`\sigma > 0`.
    initial_alpha
        :math:`\alpha_0`, real.
    initial_perp_norm_squared
        :math:`p_0 \ge 0`.
    times
        Output times, strictly increasing, in ``[0, inf)``.
    initial_beta
        :math:`\beta_0` (0 at the LoRA start).
    rtol, atol
        Solver tolerances, in ``(0, 1)``.

    Returns
    -------
    FactorFlowSolution

    Raises
    ------
    TypeError
        If an argument is not real (or a scalar where one is expected).
    ValueError
        For :math:`\sigma \le 0`, :math:`p_0 < 0`, non-finite values, times that are not a strictly
        increasing 1-d array in ``[0, inf)``, tolerances outside ``(0, 1)``, or a failed integration.
    """
    sigma = _positive_scalar(shift_singular_value, "shift_singular_value")
    alpha0 = _real_scalar(initial_alpha, "initial_alpha")
    beta0 = _real_scalar(initial_beta, "initial_beta")
    p0 = float(_nonnegative_array(_real_scalar(initial_perp_norm_squared, "initial_perp_norm_squared"),
                                  "initial_perp_norm_squared"))
    t = real_array(times, "times")
    if t.ndim != 1 or t.size == 0 or t[0] < 0 or np.any(np.diff(t) <= 0):
        raise ValueError("times must be a non-empty, strictly increasing 1-d array of values in [0, inf)")
    for value, name in ((rtol, "rtol"), (atol, "atol")):
        value = _real_scalar(value, name)
        if not 0 < value < 1:
            raise ValueError(f"{name} must lie in (0, 1), got {value!r}")

    def rhs(_: float, y: np.ndarray) -> np.ndarray:
        return np.array(_rhs(y[0], y[1], y[2], sigma))

    def loss(y: np.ndarray) -> np.ndarray:
        return (sigma - y[1] * y[0]) ** 2 + y[0] ** 2 * y[2]

    y0 = np.array([beta0, alpha0, p0])
    half = 0.5 * float(loss(y0))

    def halved(_: float, y: np.ndarray) -> float:
        return float(loss(y)) - half

    halved.terminal = False
    halved.direction = -1
    final = float(t[-1])
    if final == 0.0:
        states = y0[:, None].copy()
        event_times = np.empty(0)
    else:
        result = solve_ivp(rhs, (0.0, final), y0, method="DOP853", t_eval=t, rtol=rtol, atol=atol, events=halved)
        if not result.success:
            raise ValueError(f"integration failed: {result.message}")
        states, event_times = result.y, result.t_events[0]
    # p(t) = p0 exp(-4 int beta^2) >= 0 exactly; clip the solver's O(atol) undershoot near p = 0.
    states[2] = np.maximum(states[2], 0.0)
    return FactorFlowSolution(time=t.copy(), beta=states[0], alpha=states[1], perp_norm_squared=states[2],
                              loss=loss(states), shift_singular_value=sigma,
                              half_loss_time=float(event_times[0]) if event_times.size else np.inf)


# ----------------------------------------------------------------------------- the search phase
@cache
def factor_linearization_sympy() -> tuple[sp.Matrix, sp.Expr]:
    r"""The linearised flow of :math:`(\beta, \alpha)` at the LoRA start and its escape rate.

    .. math:: M = 2\begin{pmatrix} -s^2 & \sigma \\ \sigma & 0\end{pmatrix},\qquad
        \lambda_+ = -s^2 + \sqrt{s^4 + 4\sigma^2} = \frac{4\sigma^2}{s^2 + \sqrt{s^4 + 4\sigma^2}}.

    :math:`M` is the Jacobian of :math:`(\dot\beta, \dot\alpha)` from :func:`reduced_rhs_sympy` at
    :math:`\beta = \alpha = 0`, :math:`p = s^2` (on the balance level set
    :math:`\alpha^2 + p - \beta^2 = s^2` the correction to :math:`p` is quadratic, so it does not
    enter). :math:`\lambda_+` is its positive eigenvalue, returned in the rationalised form above
    (no cancellation as :math:`\sigma \to 0`); the two forms are checked equal symbolically.

    Returns
    -------
    (matrix, rate)
        A 2x2 sympy Matrix and :math:`\lambda_+`, in :data:`SHIFT_SINGULAR_VALUE` and
        :data:`INITIAL_SCALE`.
    """
    sigma, s = SHIFT_SINGULAR_VALUE, INITIAL_SCALE
    d_beta, d_alpha, _ = reduced_rhs_sympy()
    on_balance = {_PERP: s**2 + _BETA**2 - _ALPHA**2}
    flow = sp.Matrix([d_beta.subs(on_balance), d_alpha.subs(on_balance)])
    matrix = flow.jacobian([_BETA, _ALPHA]).subs({_BETA: 0, _ALPHA: 0})
    matrix = matrix.applyfunc(sp.expand)
    eigenvalues = [ev for ev in matrix.eigenvals() if sp.simplify(ev.subs({sigma: 1, s: 1})) > 0]
    if len(eigenvalues) != 1:
        raise AssertionError(f"expected one positive eigenvalue, got {matrix.eigenvals()}")  # pragma: no cover
    rate = 4 * sigma**2 / (s**2 + sp.sqrt(s**4 + 4 * sigma**2))
    if sp.simplify(sp.radsimp(rate - eigenvalues[0])) != 0:
        raise AssertionError("rationalised escape rate differs from the eigenvalue")  # pragma: no cover
    return matrix, rate


@cache
def _lambdified() -> tuple[Callable, Callable]:
    matrix, rate = factor_linearization_sympy()
    symbols = (SHIFT_SINGULAR_VALUE, INITIAL_SCALE)
    return sp.lambdify(symbols, matrix.tolist(), "numpy"), sp.lambdify(symbols, rate, "numpy")


def _sigma_and_scale(shift_singular_value: object, initial_scale: object) -> tuple[np.ndarray, np.ndarray]:
    sigma = _nonnegative_array(shift_singular_value, "shift_singular_value")
    scale = _nonnegative_array(initial_scale, "initial_scale")
    try:
        return tuple(np.broadcast_arrays(sigma, scale))
    except ValueError:
        raise ValueError(f"shift_singular_value {sigma.shape} and initial_scale {scale.shape} do not "
                         "broadcast") from None


def factor_linearization(shift_singular_value: float | np.ndarray, initial_scale: float | np.ndarray) -> np.ndarray:
    r"""Linearised flow :math:`M = 2\begin{pmatrix} -s^2 & \sigma \\ \sigma & 0\end{pmatrix}` of :math:`(\beta,
    \alpha)`.

    Lambdified from :func:`factor_linearization_sympy`.

    Parameters
    ----------
    shift_singular_value
        :math:`\sigma \ge 0`, scalar or array.
    initial_scale
        :math:`s \ge 0` (the initial row norm of ``A``), broadcastable with :math:`\sigma`.

    Returns
    -------
    numpy.ndarray
        Shape ``broadcast_shape + (2, 2)``.

    Raises
    ------
    TypeError
        If an argument is not real.
    ValueError
        If a value is negative or not finite, or the shapes do not broadcast.
    """
    sigma, scale = _sigma_and_scale(shift_singular_value, initial_scale)
    matrix_function, _ = _lambdified()
    zero = np.zeros(sigma.shape)
    rows = [[np.asarray(entry, dtype=float) + zero for entry in row] for row in matrix_function(sigma, scale)]
    return np.stack([np.stack(row, axis=-1) for row in rows], axis=-2)


def factor_escape_rate(
    shift_singular_value: float | np.ndarray, initial_scale: float | np.ndarray
) -> np.ndarray | float:
    r"""Escape rate :math:`\lambda_+ = 4\sigma^2/(s^2 + \sqrt{s^4 + 4\sigma^2}) = -s^2 + \sqrt{s^4 + 4\sigma^2}`.

    Lambdified from :func:`factor_linearization_sympy`; :math:`\lambda_+ = 0` at :math:`\sigma = 0`.
    Arguments and errors as for :func:`factor_linearization`.
    """
    sigma, scale = _sigma_and_scale(shift_singular_value, initial_scale)
    _, rate_function = _lambdified()
    with np.errstate(divide="ignore", invalid="ignore"):
        rate = np.where(sigma > 0, np.asarray(rate_function(sigma, scale), dtype=float) + 0.0 * sigma, 0.0)
    return float(rate) if rate.ndim == 0 else rate


def factor_search_time(
    shift_singular_value: float | np.ndarray, initial_scale: float | np.ndarray
) -> np.ndarray | float:
    r"""Search time :math:`\tau = 1/\lambda_+ = (s^2 + \sqrt{s^4 + 4\sigma^2})/(4\sigma^2)` (units:
    :math:`\eta\times` steps).

    :math:`\tau \approx 1/(2\sigma^2)` for :math:`s = 1`, :math:`\sigma \to 0`;
    :math:`\tau \to 1/(2\sigma)` as :math:`s \to 0`; :math:`\tau = \infty` at :math:`\sigma = 0`.
    For :math:`s = 1`, :math:`\tau(\sigma) = \tfrac12` :func:`lorabook.single_index_lora.lora.search_time`
    ``("linear", 1 - sigma)``.
    Arguments and errors as for :func:`factor_linearization`.
    """
    rate = np.asarray(factor_escape_rate(shift_singular_value, initial_scale))
    with np.errstate(divide="ignore"):
        time = np.where(rate > 0, 1.0 / np.where(rate > 0, rate, 1.0), np.inf)
    return float(time) if time.ndim == 0 else time


# ----------------------------------------------------------------------------- simulation
@dataclass(frozen=True)
class FactorTrajectory:
    r"""Output of :func:`lora_factor_trajectory`.

    Attributes
    ----------
    step
        Recorded step numbers, shape ``(n_records,)`` (0, every ``record_every``-th, and the last).
    time
        :math:`t = \eta\times` step.
    B, A
        Factors at the recorded steps, shapes ``(n_records, dy, r)`` and ``(n_records, r, dx)``.
    loss
        Training loss :math:`\frac1n\|R - XA^\top B^\top\|_F^2` at the recorded steps.
    """

    step: np.ndarray
    time: np.ndarray
    B: np.ndarray
    A: np.ndarray
    loss: np.ndarray


def lora_factor_trajectory(
    X: np.ndarray,
    Y: np.ndarray,
    A0: np.ndarray,
    initial_A: np.ndarray,
    steps: int,
    learning_rate: float,
    record_every: int = 1,
) -> FactorTrajectory:
    r"""Full-batch gradient descent on the LoRA factors from :math:`B = 0` and a given :math:`A`.

    The update of :func:`lorabook.linear_regression.linear_finetuning.lora_gradient_descent`,

    .. math:: G = \tfrac2n (R - XA^\top B^\top)^\top X,\qquad
        B \leftarrow B + \eta\, G A^\top,\qquad A \leftarrow A + \eta\, B^\top G,\qquad
        R = Y - XA_0^\top,

    with the initial ``A`` given explicitly (to start :func:`integrate_factor_flow` from the same
    overlaps) and the factors recorded along the way. The update is computed from the sufficient
    statistics :math:`S = X^\top X/n` and :math:`C = R^\top X/n`, as
    :math:`G = 2(C - BAS)` (algebraically identical; :math:`O(d_x d_y r + d_x^2 r)` per step
    instead of :math:`O(n d_x d_y)`), and the loss as
    :math:`\|R\|_F^2/n - 2\langle C, BA\rangle + \langle BAS, BA\rangle` (absolute round-off about
    :math:`10^{-16}\|R\|_F^2/n`).

    Parameters
    ----------
    X, Y, A0
        Data ``(n, dx)``, ``(n, dy)`` and pre-trained weights ``(dy, dx)`` (a single problem).
    initial_A
        :math:`A(0)`, shape ``(r, dx)`` with ``r`` in ``1..min(dx, dy)``; e.g.
        ``initial_scale * rng.standard_normal((r, dx)) / sqrt(dx)`` as in ``lora_gradient_descent``.
    steps
        Number of steps, ``>= 0``.
    learning_rate
        :math:`\eta > 0`.
    record_every
        Record every this many steps (``>= 1``); step 0 and the last step are always recorded.

    Returns
    -------
    FactorTrajectory

    Raises
    ------
    TypeError, ValueError
        For invalid data (as in :mod:`lorabook.linear_regression.linear_finetuning`), an ``initial_A`` of the wrong
        shape or rank, ``steps < 0``, :math:`\eta \le 0`, ``record_every < 1``.
    FloatingPointError
        If the iterates diverge (lower the learning rate).
    """
    X, Y, A0 = check_regression(X, Y, A0, single="lora_factor_trajectory")
    n, dx = X.shape
    dy = Y.shape[1]
    A = matrix(initial_A, "initial_A")
    if A.ndim != 2 or A.shape[1] != dx or not 1 <= A.shape[0] <= min(dx, dy):
        raise ValueError(
            f"initial_A must have shape (r, dx) = (r, {dx}) with r in 1..min(dx, dy) = 1..{min(dx, dy)}, got {A.shape}"
        )
    r = A.shape[0]
    steps = integer(steps, "steps", minimum=0)
    record_every = integer(record_every, "record_every", minimum=1)
    eta = _positive_scalar(learning_rate, "learning_rate")
    check_memory(
        (steps // record_every + 2) * (r * (dx + dy) + 1) + steps // record_every, "steps", "the recorded factors"
    )

    R = Y - X @ A0.T
    S = X.T @ X / n
    C = R.T @ X / n
    residual_energy = np.sum(R**2) / n
    recorded = sorted(set(range(0, steps + 1, record_every)) | {steps})
    Bs = np.empty((len(recorded), dy, r))
    As = np.empty((len(recorded), r, dx))
    losses = np.empty(len(recorded))
    B = np.zeros((dy, r))
    index = 0
    for t in range(steps + 1):
        W = B @ A
        WS = W @ S
        if t == recorded[index]:
            Bs[index], As[index] = B, A
            losses[index] = residual_energy - 2.0 * np.sum(C * W) + np.sum(WS * W)
            index += 1
        if t < steps:
            G = 2.0 * (C - WS)  # minus the gradient with respect to the product BA
            B, A = B + eta * G @ A.T, A + eta * B.T @ G
    if not (np.all(np.isfinite(Bs)) and np.all(np.isfinite(As))):
        raise FloatingPointError("gradient descent on the LoRA factors diverged; lower the learning rate")
    step = np.array(recorded)
    return FactorTrajectory(step=step, time=eta * step, B=Bs, A=As, loss=losses)


def loss_fraction_time(time: np.ndarray, loss: np.ndarray, fraction: float = 0.5) -> float:
    r"""First time a loss curve reaches ``fraction`` times its initial value, interpolated linearly.

    .. math:: t_f = \min\{t : L(t) \le f\,L(0)\},

    located between the two recorded points that bracket it (``inf`` if never reached).

    Parameters
    ----------
    time
        Strictly increasing times, shape ``(n,)``, ``n >= 1``.
    loss
        Losses at those times, ``loss[0] > 0``.
    fraction
        :math:`f \in (0, 1)`.

    Raises
    ------
    TypeError, ValueError
        For mismatched or non-finite input, non-increasing times, :math:`L(0) \le 0`, or
        :math:`f` outside ``(0, 1)``.
    """
    t = real_array(time, "time")
    values = real_array(loss, "loss")
    if t.ndim != 1 or t.shape != values.shape or t.size == 0:
        raise ValueError(
            f"time and loss must be 1-d arrays of the same non-zero length, got {t.shape} and {values.shape}"
        )
    if np.any(np.diff(t) <= 0):
        raise ValueError("time must be strictly increasing")
    f = _real_scalar(fraction, "fraction")
    if not 0 < f < 1:
        raise ValueError(f"fraction must lie in (0, 1), got {fraction!r}")
    if values[0] <= 0:
        raise ValueError(f"loss[0] must be positive, got {values[0]!r}")
    target = f * values[0]
    below = np.flatnonzero(values <= target)
    if below.size == 0:
        return np.inf
    k = int(below[0])
    weight = (values[k - 1] - target) / (values[k - 1] - values[k])
    return float(t[k - 1] + weight * (t[k] - t[k - 1]))
