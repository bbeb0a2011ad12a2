r"""Remedies and variants of rank-one LoRA fine-tuning (Chapter 7 of the book).

Tools for the four variants of Nwemadji, Loureiro and Barbier (2026) studied in the chapter
"Remedies and variants":

* non-aligned pre-training :math:`w_0 = \mu w_\star + \nu\xi`
  (:func:`non_aligned_linearization`, :func:`non_aligned_search_time`,
  :func:`best_rank_one_update`, :func:`non_aligned_stability_threshold`,
  :func:`integrate_non_aligned_ode`);
* the curriculum :math:`y^2 \to y` (:func:`curriculum_outcomes`);
* the effective potential of the linear model (:func:`effective_potential_sympy`,
  :func:`adiabatic_overlap`).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
import sympy as sp

from lorabook.single_index_lora import lora, non_aligned
from lorabook.single_index_lora.lora import check_noise_strength, escape_rate
from lorabook.single_index_lora.lora_dynamics import integrate_lora_ode, stability_constant
from lorabook.toolkit.activations import check_activation, check_target
from lorabook.toolkit.ode import SOLVER_METHODS, SPACINGS, integrate_overlap_ode
from lorabook.toolkit.overlap_equations import overlap_equations
from lorabook.toolkit.validation import check_memory, choice, integer, real, real_array

OUTCOMES = ("target", "zero predictor", "not escaped")
"""Labels of :func:`curriculum_outcomes`."""


def _check_strengths(mu: object, nu: object) -> tuple[np.ndarray, np.ndarray]:
    mu_array = real_array(mu, "mu", nonempty=False, minimum=0.0, strict_minimum=True, maximum=1.0)
    nu_array = real_array(nu, "nu", nonempty=False, minimum=0.0)
    try:
        return np.broadcast_arrays(mu_array, nu_array)
    except ValueError:
        raise ValueError(f"mu and nu must broadcast to one shape, got shapes {mu_array.shape} and "
                         f"{nu_array.shape}") from None


def _output(value: np.ndarray) -> float | np.ndarray:
    value = np.asarray(value, dtype=float)
    return float(value) if value.ndim == 0 else value


# --- Non-aligned pre-training -------------------------------------------------------------------

def non_aligned_linearization(
    activation: str, mu: float | np.ndarray, nu: float | np.ndarray, teacher: str | None = None,
) -> tuple[float | np.ndarray, float | np.ndarray, float | np.ndarray]:
    r"""Coefficients :math:`(A, B, C)` of the flow of :math:`(u, m, p)` linearised at :math:`(0, 0, 0)`.

    For :math:`w_0 = \mu w_\star + \nu\xi` (:mod:`lorabook.single_index_lora.non_aligned`), the drift at first
    order in :math:`(u, m, p)` is

    .. math:: \frac{d}{dt}\begin{pmatrix} u \\ m \\ p \end{pmatrix}
              = \begin{pmatrix} B & A & C \\ A & 0 & 0 \\ C & 0 & 0 \end{pmatrix}
                \begin{pmatrix} u \\ m \\ p \end{pmatrix},
              \quad A = -(2\mu F_q + F_\rho),\ B = -2F_q,\ C = \nu B,

    with :math:`F_q, F_\rho` at the pre-trained point :math:`q = \mu^2 + \nu^2`,
    :math:`\rho = \mu` (inside the allowed region when :math:`\nu > 0`). At :math:`\nu = 0` it
    reduces to :func:`lorabook.single_index_lora.lora.linearization` (with :math:`C = 0`).

    Parameters
    ----------
    activation, teacher
        Student and teacher names (``teacher=None``: the student).
    mu, nu
        :math:`\mu \in (0, 1]` and :math:`\nu \ge 0`, scalars or arrays (broadcast).

    Returns
    -------
    (A, B, C)
        Floats for scalar input, arrays otherwise.

    Raises
    ------
    ValueError, TypeError
        For unknown names (the message lists the valid ones) or invalid strengths.
    """
    activation = check_activation(activation, parameter="activation")
    if teacher is not None:
        teacher = check_target(teacher, parameter="teacher")
    mu_array, nu_array = _check_strengths(mu, nu)
    # The Jacobian of the non-aligned drift at (u, m, p) = 0, derived from its model description,
    # with (F_q, F_rho) at the pre-trained point q = mu^2 + nu^2, rho = mu.
    equations = overlap_equations(non_aligned.MODEL)
    zero = np.zeros_like(mu_array)
    _, rho, residual = equations.covariance_function(zero, zero, zero, mu_array, nu_array)
    risk_q, risk_rho = lora.risk_derivatives_of_covariances(activation, rho, residual, teacher)
    jacobian = equations.linearization_function(mu_array, nu_array, risk_q, risk_rho)
    coefficient_b, coefficient_a, coefficient_c = (
        np.broadcast_to(np.asarray(entry, dtype=float), mu_array.shape) for entry in jacobian[0])
    return _output(coefficient_a), _output(coefficient_b), _output(coefficient_c)


def non_aligned_search_time(
    activation: str, mu: float | np.ndarray, nu: float | np.ndarray, teacher: str | None = None,
) -> float | np.ndarray:
    r"""Search time :math:`\tau = 1/\lambda_+` of non-aligned pre-training.

    The matrix of :func:`non_aligned_linearization` has eigenvalues :math:`0` and the roots of
    :math:`\lambda^2 - B\lambda - (A^2 + C^2) = 0`, so

    .. math:: \lambda_+ = \frac{B + \sqrt{B^2 + 4(A^2 + C^2)}}{2}:

    the aligned formula with :math:`A^2` replaced by :math:`A^2 + C^2`. Returns ``inf`` where
    :math:`\lambda_+ = 0`. Parameters and errors as for :func:`non_aligned_linearization`.
    """
    coefficient_a, coefficient_b, coefficient_c = non_aligned_linearization(activation, mu, nu, teacher)
    coupling = np.sqrt(np.asarray(coefficient_a) ** 2 + np.asarray(coefficient_c) ** 2)
    rate = escape_rate(coupling, coefficient_b)
    with np.errstate(divide="ignore"):
        time = np.where(rate > 0, 1.0 / np.where(rate > 0, rate, 1.0), np.inf)
    return _output(time)


def best_rank_one_update(mu: float | np.ndarray, nu: float | np.ndarray) -> tuple[float | np.ndarray, ...]:
    r"""The zero-risk rank-one update :math:`uv = w_\star - w_0` of non-aligned pre-training.

    With :math:`w_0 = \mu w_\star + \nu\xi` and :math:`\xi \perp w_\star`,
    :math:`w_\star - w_0 = (1 - \mu)w_\star - \nu\xi`, so (choosing :math:`u > 0`)

    .. math:: u = \sqrt{(1 - \mu)^2 + \nu^2}, \qquad m = \frac{1 - \mu}{u}, \qquad p = -\frac{\nu}{u};

    for the paper's :math:`\nu = 1 - \mu`: :math:`m = -p = 1/\sqrt2` and :math:`u = \sqrt2(1 - \mu)`.
    The other representative is :math:`(-u, -m, -p)`.

    Parameters
    ----------
    mu, nu
        :math:`\mu \in (0, 1]`, :math:`\nu \ge 0`, not both :math:`\mu = 1` and :math:`\nu = 0`.

    Returns
    -------
    (u, m, p)

    Raises
    ------
    ValueError, TypeError
        For invalid strengths, or :math:`w_0 = w_\star` (no update needed, direction undefined).
    """
    mu_array, nu_array = _check_strengths(mu, nu)
    scale = np.hypot(1 - mu_array, nu_array)
    if np.any(scale == 0):
        raise ValueError("w_0 = w_* (mu = 1, nu = 0): the update is zero and has no direction")
    return _output(scale), _output((1 - mu_array) / scale), _output(-nu_array / scale)


def non_aligned_stability_threshold(
    activation: str, mu: float | np.ndarray, nu: float | np.ndarray, n_nodes: int = 200,
) -> float | np.ndarray:
    r"""Largest :math:`\delta` at which the zero-risk point of non-aligned LoRA is stable.

    For a matching teacher the residual vanishes at :math:`w = w_\star`, and the expansion of
    Chapter 4 (:func:`lorabook.single_index_lora.lora_dynamics.stability_threshold`) applies to the overlap
    :math:`c = v\cdot v_\star` with the optimal direction :math:`v_\star` and the optimal scale
    :math:`u_\star` of :func:`best_rank_one_update`:

    .. math:: \delta_c = \frac{2\,\mathbb E[s'(z)^2]}{u_\star^2\,\mathbb E[s'(z)^4]},
              \qquad u_\star^2 = (1 - \mu)^2 + \nu^2,

    half the aligned threshold when :math:`\nu = 1 - \mu`. Parameters as in
    :func:`best_rank_one_update`; ``n_nodes`` Gauss-Hermite nodes for the two moments.

    Raises
    ------
    ValueError, TypeError
        For an unknown activation (the message lists the valid names) or invalid strengths.
    """
    activation = check_activation(activation, parameter="activation")
    integer(n_nodes, "n_nodes", minimum=2)
    scale = np.asarray(best_rank_one_update(mu, nu)[0], dtype=float)
    return _output(stability_constant(activation, n_nodes) / scale**2)


def integrate_non_aligned_ode(
    activation: str,
    mu: float,
    nu: float,
    initial_state: Sequence[float] | np.ndarray,
    final_time: float,
    *,
    teacher: str | None = None,
    noise_strength: float = 0.0,
    n_times: int = 200,
    spacing: str = "log",
    method: str = "DOP853",
    rtol: float = 1e-9,
    atol: float = 1e-12,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    r"""Integrate :math:`(\dot u, \dot m, \dot p)` of :func:`lorabook.single_index_lora.non_aligned.overlap_ode_rhs`.

    .. math:: \dot u = -\partial_u R, \quad
              \dot m = -(1 - m^2)\partial_m R + mp\,\partial_p R - \tfrac{\delta}{2} m\,\mathbb E[G^2], \quad
              \dot p = -(1 - p^2)\partial_p R + mp\,\partial_m R - \tfrac{\delta}{2} p\,\mathbb E[G^2],

    for one or several initial conditions at once (stacked into one system; the overlaps are kept
    in :math:`[-1, 1]` and projected back onto the disc :math:`m^2 + p^2 \le 1`).

    Parameters
    ----------
    activation, teacher
        Student and teacher names.
    mu, nu
        Pre-trained components, :math:`w_0 = \mu w_\star + \nu\xi`.
    initial_state
        :math:`(u_0, m_0, p_0)`, shape ``(3,)``, or one row per run, shape ``(n_runs, 3)``, with
        :math:`m_0^2 + p_0^2 \le 1`.
    final_time, noise_strength, n_times, spacing, method, rtol, atol
        As in :func:`lorabook.single_index_lora.lora_dynamics.integrate_lora_ode`.

    Returns
    -------
    (time, scale, overlap, offset_overlap)
        ``time`` of shape ``(n_times,)``; :math:`u`, :math:`m`, :math:`p` of shape ``(n_runs, n_times)``.

    Raises
    ------
    ValueError, TypeError
        For invalid names, strengths or states.
    """
    activation = check_activation(activation, parameter="activation")
    if teacher is not None:
        teacher = check_target(teacher, parameter="teacher")
    _check_strengths(mu, nu)
    choice(method, "method", SOLVER_METHODS)
    states = np.atleast_2d(real_array(initial_state, "initial_state", ndim=(1, 2)))
    if states.shape[1] != 3:
        raise ValueError(f"initial_state must be (u0, m0, p0) or rows of them, got shape {np.shape(initial_state)}")
    if np.any(states[:, 1] ** 2 + states[:, 2] ** 2 > 1):
        raise ValueError("initial_state must satisfy m0^2 + p0^2 <= 1")
    n_runs = states.shape[0]
    real(final_time, "final_time", minimum=0.0, strict_minimum=True)
    check_noise_strength(noise_strength)
    check_memory(integer(n_times, "n_times", minimum=2) * 10 * n_runs, "n_times", "the trajectories of every run")
    choice(spacing, "spacing", SPACINGS)
    real(rtol, "rtol", minimum=0.0, strict_minimum=True)
    real(atol, "atol", minimum=0.0, strict_minimum=True)

    def rhs(t: float, y: np.ndarray) -> np.ndarray:
        u, m, p = y[:n_runs], y[n_runs:2 * n_runs], y[2 * n_runs:]
        norm = np.maximum(np.hypot(m, p), 1.0)  # the solver may step a hair outside the disc
        derivatives = non_aligned.overlap_ode_rhs(activation, mu, nu, u, m / norm, p / norm, teacher=teacher,
                                                  noise_strength=noise_strength)
        return np.concatenate([np.atleast_1d(value) for value in derivatives])

    solution = integrate_overlap_ode(rhs, states.T.ravel(), final_time, n_times=n_times, spacing=spacing,
                                     bounded_components=tuple(range(n_runs, 3 * n_runs)), method=method,
                                     rtol=rtol, atol=atol)
    state = solution.state
    return solution.time, state[:, :n_runs].T, state[:, n_runs:2 * n_runs].T, state[:, 2 * n_runs:].T


# --- The curriculum y^2 -> y ----------------------------------------------------------------------

def curriculum_outcomes(
    activation: str,
    mu: float,
    switch_times: Sequence[float] | np.ndarray,
    *,
    first_teacher: str,
    second_teacher: str | None = None,
    initial_scale: float,
    initial_overlap: float,
    second_duration: float,
    noise_strength: float = 0.0,
    risk_tolerance: float = 1e-2,
    method: str = "DOP853",
) -> dict[str, np.ndarray]:
    r"""End states of the two-stage curriculum for many switching times at once (overlap ODE).

    Stage 1 integrates the ODE with ``first_teacher`` (e.g. ``"He3^2"``, the squared labels) from
    :math:`(u_0, m_0)`; at each switching time :math:`T_1` its state starts stage 2, with
    ``second_teacher`` (default: the student, i.e. the original labels :math:`y`), for
    ``second_duration`` time units. Each end state is classified as

    * ``"target"``: risk on the second teacher below ``risk_tolerance``;
    * ``"zero predictor"``: :math:`|\rho| = |\mu + um| < 0.05` and :math:`|m| > 0.9`, i.e.
      :math:`w \approx 0`;
    * ``"not escaped"``: anything else (for example :math:`m` still small).

    Parameters
    ----------
    activation
        Student name.
    mu
        Pre-training strength.
    switch_times
        Stage-1 durations :math:`T_1 > 0` (time units).
    first_teacher, second_teacher
        Teachers of the two stages.
    initial_scale, initial_overlap, second_duration, noise_strength, method
        Start, length of stage 2, :math:`\delta`, and solver (see
        :func:`lorabook.single_index_lora.lora_dynamics.integrate_lora_ode`).
    risk_tolerance
        Threshold of the ``"target"`` class.

    Returns
    -------
    dict
        ``"switch_time"``, ``"switch_scale"``, ``"switch_overlap"`` (state at :math:`T_1`),
        ``"final_scale"``, ``"final_overlap"``, ``"final_risk"`` (arrays over the switching times)
        and ``"outcome"`` (strings from :data:`OUTCOMES`).

    Raises
    ------
    ValueError, TypeError
        For invalid names, times or states.
    """
    activation = check_activation(activation, parameter="activation")
    lora.check_pretraining_strength(mu)
    first_teacher = check_target(first_teacher, parameter="first_teacher")
    second = activation if second_teacher is None else check_target(second_teacher, parameter="second_teacher")
    times = real_array(switch_times, "switch_times", ndim=(0, 1)).ravel()
    if np.any(times <= 0):
        raise ValueError("switch_times must be a non-empty array of positive times")
    real(initial_scale, "initial_scale")
    real(initial_overlap, "initial_overlap", minimum=-1.0, maximum=1.0)
    real(second_duration, "second_duration", minimum=0.0, strict_minimum=True)
    check_noise_strength(noise_strength)
    real(risk_tolerance, "risk_tolerance", minimum=0.0, strict_minimum=True)
    choice(method, "method", SOLVER_METHODS)
    # Stage 1 once, read at the sorted switching times (dense output through the grid's end points).
    grid = np.unique(np.concatenate([[0.0], times]))
    scale_1, overlap_1 = [float(initial_scale)], [float(initial_overlap)]
    for start, end in itertools.pairwise(grid):
        stage = integrate_lora_ode(activation, mu, scale_1[-1], overlap_1[-1], end - start, teacher=first_teacher,
                                   noise_strength=noise_strength, n_times=2, spacing="linear", method=method)
        scale_1.append(float(stage.scale[0, -1]))
        overlap_1.append(float(stage.overlap[0, -1]))
    index = np.searchsorted(grid, times)
    switch_scale, switch_overlap = np.array(scale_1)[index], np.array(overlap_1)[index]
    stage = integrate_lora_ode(activation, mu, switch_scale, switch_overlap, second_duration, teacher=second,
                               noise_strength=noise_strength, n_times=2, spacing="linear", method=method)
    final_scale, final_overlap = stage.scale[:, -1], stage.overlap[:, -1]
    final_risk = np.asarray(lora.population_risk(activation, mu, final_scale, final_overlap, teacher=second))
    rho = mu + final_scale * final_overlap
    outcome = np.where(final_risk < risk_tolerance, OUTCOMES[0],
                       np.where((np.abs(rho) < 0.05) & (np.abs(final_overlap) > 0.9), OUTCOMES[1], OUTCOMES[2]))
    return dict(switch_time=times, switch_scale=switch_scale, switch_overlap=switch_overlap,
                final_scale=final_scale, final_overlap=final_overlap, final_risk=final_risk, outcome=outcome)


# --- The effective potential of the linear model --------------------------------------------------

G_SYMBOL = sp.Symbol("g", real=True)
r"""Symbol of the rapidity :math:`g = \operatorname{artanh} m`."""


def effective_potential_sympy() -> sp.Expr:
    r"""The effective potential :math:`V(g)` of the linear model's search, derived with sympy.

    For :math:`s = s_\star` linear the overlap ODE (:math:`\delta = 0`) is
    :math:`\dot u = (1 - \mu)m - u`, :math:`\dot m = (1 - \mu)(1 - m^2)u`
    (:func:`lorabook.single_index_lora.lora.overlap_drift_sympy`). On the slow manifold :math:`u = (1 - \mu)m`
    (the nullcline of :math:`\dot u`) and with :math:`m = \tanh g`,

    .. math:: \dot g = \frac{\dot m}{1 - m^2} = (1 - \mu)^2\tanh g = -V'(g), \qquad
              V(g) = -(1 - \mu)^2\log\cosh g,

    normalised by :math:`V(0) = 0`.
    """
    drift_u, drift_m = lora.overlap_drift_sympy("linear")
    slaved = sp.solve(sp.Eq(drift_u, 0), lora.U)[0]
    speed = sp.simplify((drift_m.subs(lora.U, slaved) / (1 - lora.M**2)).subs(lora.M, sp.tanh(G_SYMBOL)))
    # speed = c(mu) tanh g; the antiderivative of tanh is log cosh (checked by differentiation).
    coefficient = sp.simplify(speed / sp.tanh(G_SYMBOL))
    if coefficient.has(G_SYMBOL):
        raise RuntimeError(f"unexpected slaved speed {speed}")  # pragma: no cover - a derivation error
    potential = -coefficient * sp.log(sp.cosh(G_SYMBOL))
    if sp.simplify(sp.diff(potential, G_SYMBOL) + speed) != 0:
        raise RuntimeError("V'(g) does not match the slaved speed")  # pragma: no cover
    return sp.factor(potential)


def adiabatic_overlap(
    mu: float | np.ndarray, initial_overlap: float | np.ndarray, time: float | np.ndarray,
) -> float | np.ndarray:
    r"""Overlap :math:`m(t)` of the linear model in the adiabatic (slaved-:math:`u`) approximation.

    Motion in :math:`V(g)` of :func:`effective_potential_sympy` is solved exactly by
    :math:`\frac{d}{dt}\log\sinh g = \coth g\,\dot g = (1 - \mu)^2`:

    .. math:: m(t) = \tanh\operatorname{arsinh}\big(\sinh(\operatorname{artanh} m_0)\,
              e^{(1 - \mu)^2 t}\big) = \frac{S}{\sqrt{1 + S^2}},
              \quad S = \frac{m_0}{\sqrt{1 - m_0^2}}\,e^{(1 - \mu)^2 t}.

    Parameters
    ----------
    mu
        :math:`\mu \in (0, 1]`.
    initial_overlap
        :math:`m_0 \in (-1, 1)`.
    time
        :math:`t \ge 0` (units of :math:`\eta\times` steps); the three arguments broadcast.

    Raises
    ------
    ValueError, TypeError
        For :math:`\mu` outside :math:`(0, 1]`, :math:`|m_0| \ge 1` or negative times.
    """
    mu_array = lora.check_pretraining_strength(mu)
    m0 = real_array(initial_overlap, "initial_overlap", nonempty=False, minimum=-1.0, strict_minimum=True,
                    maximum=1.0, strict_maximum=True)
    t = real_array(time, "time", nonempty=False, minimum=0.0)
    # S = sinh(g); computed through log to avoid overflow at long times.
    log_s = np.log(np.abs(m0) / np.sqrt(1 - m0**2) + 1e-300) + (1 - mu_array) ** 2 * t
    value = np.sign(m0) / np.sqrt(1 + np.exp(-2 * log_s))
    return _output(value)
