r"""The overlap ODE of rank-r LoRA on a pre-trained committee, derived by the lorabook pipeline.

Model: that of :mod:`lorabook.two_layer_lora.committee`, :math:`W = DT + UV` with unit rows
:math:`v_p` of :math:`V`. :func:`lora_committee_model` describes it once, as a
:class:`lorabook.toolkit.overlap_equations.CommitteeModel`: fixed orthonormal teacher rows
:math:`t_1, \dots, t_K`, trained unit vectors :math:`v_1, \dots, v_r`, trained scales
:math:`u_{kp}`, and student rows

.. math:: w_k = \delta_k t_k + \sum_{p=1}^r u_{kp} v_p,

with statistics :math:`U = (u_{kp})`, :math:`M = (m_{pk}) = VT^\top` and the off-diagonal
:math:`q_{pq} = v_p\cdot v_q` of :math:`Q_V` (the diagonal is 1). From that description
:func:`lorabook.toolkit.overlap_equations.committee_equations` derives, with sympy, the
overlaps :math:`Q = WW^\top`, :math:`R = WT^\top`, the drift of every statistic in the
derivatives :math:`\partial\varepsilon/\partial Q`, :math:`\partial\varepsilon/\partial R` of the
population risk, and the noise term in :math:`G_{kl} = \mathbb E[h_kh_l]`. In matrix form the
drift is the chain rule of the committee gradient
:math:`\nabla_W\varepsilon = 2F_QW + F_RT` (:math:`F_Q = \partial\varepsilon/\partial Q`
symmetric, :math:`F_R = \partial\varepsilon/\partial R`):

.. math:: \dot U = -(2F_Q(DM^\top + UQ_V) + F_RM^\top), \qquad
    \dot V = -\Pi\big(U^\top(2F_QW + F_RT)\big),

with :math:`\Pi` the projection of each row :math:`p` on the tangent space of the sphere at
:math:`v_p`, so that :math:`\dot M = \dot VT^\top` and :math:`\dot Q_V = \dot VV^\top + V\dot V^\top`.
With :math:`\delta = \eta d/B`, the finite-batch correction is
:math:`\delta\,(U^\top GU)_{pq}` on :math:`q_{pq}` less the renormalisation terms
:math:`-\tfrac\delta2((U^\top GU)_{pp} + (U^\top GU)_{qq})\,q_{pq}` and
:math:`-\tfrac\delta2(U^\top GU)_{pp}\,m_{pk}` (rules in
:mod:`lorabook.toolkit.overlap_equations`). Time is :math:`t = \eta\times` steps, as in
:func:`lorabook.two_layer_lora.committee_sgd.simulate_committee_lora`.

The numeric inputs (:func:`committee_risk_derivatives`):

.. math:: \varepsilon = \frac{g^2}{2}\Big[\sum_{kl}K(Q_{kk}, Q_{kl}, Q_{ll})
    - 2\sum_{kj}K(Q_{kk}, R_{kj}, T_{jj}) + \text{const}\Big],

with :math:`K(c_{11}, c_{12}, c_{22}) = \mathbb E[s(a)s(b)]` the closed-form kernel of
:func:`lorabook.toolkit.kernels.correlation_kernel_sympy`, whose partial derivatives
:math:`K_{11}, K_{12}` are taken with sympy. For a symmetric perturbation of :math:`Q`,

.. math:: (F_Q)_{kl} = \frac{g^2}{2}K_{12}(Q_{kk}, Q_{kl}, Q_{ll})
    + \delta_{kl}\Big[g^2\sum_m K_{11}(Q_{kk}, Q_{km}, Q_{mm}) - g^2\sum_j K_{11}(Q_{kk}, R_{kj}, T_{jj})\Big],
    \qquad (F_R)_{kj} = -g^2K_{12}(Q_{kk}, R_{kj}, T_{jj}),

(the :math:`m = k` term of the first sum counts :math:`K_{11} + K_{22} = 2K_{11}` at
:math:`c_{11} = c_{22}`, hence no factor :math:`\tfrac12`). :math:`G` is
:func:`lorabook.two_layer_lora.committee.committee_gradient_covariance`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np
import sympy as sp

from lorabook.toolkit.committee_integrals import check_committee_activation
from lorabook.toolkit.kernels import C11, C12, C22, correlation_kernel_sympy
from lorabook.toolkit.ode import integrate_overlap_ode
from lorabook.toolkit.overlap_equations import CommitteeEquations, CommitteeModel, TrainedVector, committee_equations
from lorabook.toolkit.validation import check_memory, integer, real, real_array
from lorabook.two_layer_lora import committee
from lorabook.two_layer_lora.committee import (
    check_lora_shapes,
    check_overlaps,
    check_rank,
    committee_risk,
    lora_overlaps,
    pretrained_coefficients,
    readout_scale,
)

__all__ = [
    "CommitteeODESolution",
    "committee_linearization",
    "committee_ode_rhs",
    "committee_risk_derivatives",
    "integrate_committee_ode",
    "lora_committee_equations",
    "lora_committee_model",
    "pack_statistics",
    "unpack_statistics",
]


@cache
def _lora_committee_model(n_neurons: int, rank: int) -> CommitteeModel:
    delta = sp.symbols(f"delta_1:{n_neurons + 1}", real=True)
    u = [[sp.Symbol(f"u_{k + 1}{p + 1}", real=True) for p in range(rank)] for k in range(n_neurons)]
    m = [[sp.Symbol(f"m_{p + 1}{k + 1}", real=True) for k in range(n_neurons)] for p in range(rank)]
    pairs = [(p, q) for p in range(rank) for q in range(p + 1, rank)]
    cosines = [sp.Symbol(f"q_{p + 1}{q + 1}", real=True) for p, q in pairs]
    teachers = tuple(f"t{k + 1}" for k in range(n_neurons))
    directions = tuple(f"v{p + 1}" for p in range(rank))
    students = tuple(((delta[k], teachers[k]), *((u[k][p], directions[p]) for p in range(rank)))
                     for k in range(n_neurons))
    statistics = (*(s for row in u for s in row), *(s for row in m for s in row), *cosines)
    return CommitteeModel(
        name=f"rank-{rank} LoRA on a {n_neurons}-neuron committee", parameters=tuple(delta),
        fixed_vectors=teachers, teachers=teachers, students=students,
        trained_scalars=tuple(s for row in u for s in row),
        trained_vectors=tuple(TrainedVector(name, unit=True) for name in directions),
        overlaps=(*((m[p][k], directions[p], teachers[k]) for p in range(rank) for k in range(n_neurons)),
                  *((c, directions[p], directions[q]) for c, (p, q) in zip(cosines, pairs, strict=True))),
        statistics=statistics, start=(sp.Integer(0),) * len(statistics),
    )


def lora_committee_model(n_neurons: int, rank: int) -> CommitteeModel:
    r"""Rank-:math:`r` LoRA on a :math:`K`-neuron committee as a
    :class:`~lorabook.toolkit.overlap_equations.CommitteeModel`.

    .. math:: w_k = \delta_k t_k + \sum_{p=1}^r u_{kp} v_p, \qquad \lVert v_p\rVert = 1,

    statistics :math:`u_{kp}` (row-major), :math:`m_{pk} = v_p\cdot t_k` (row-major) and
    :math:`q_{pq} = v_p\cdot v_q` (:math:`p < q`), all zero at the start; parameters
    :math:`\delta_1, \dots, \delta_K` (the diagonal of :math:`D`). The symbol names are those of
    :func:`lorabook.two_layer_lora.committee.lora_overlaps_sympy`.

    Raises
    ------
    TypeError, ValueError
        For ``n_neurons < 1`` or ``rank`` outside ``1..n_neurons``.
    """
    K, r = check_rank(n_neurons, rank)
    check_memory(2 * K * r * (K + r) * 64, "n_neurons", "the symbolic statistics of the model")
    return _lora_committee_model(K, r)


def lora_committee_equations(n_neurons: int, rank: int) -> CommitteeEquations:
    """The derived overlap ODE of :func:`lora_committee_model` (cached).

    Raises
    ------
    TypeError, ValueError
        As :func:`lora_committee_model`.
    """
    return committee_equations(lora_committee_model(n_neurons, rank))


def _n_statistics(n_neurons: int, rank: int) -> int:
    return 2 * n_neurons * rank + rank * (rank - 1) // 2


def pack_statistics(U: np.ndarray, M: np.ndarray, Q_V: np.ndarray) -> np.ndarray:
    r"""The ODE state of LoRA statistics: :math:`U` and :math:`M` row-major, then :math:`q_{pq}`, :math:`p < q`.

    Parameters
    ----------
    U, M, Q_V
        Shapes ``(..., K, r)``, ``(..., r, K)``, ``(..., r, r)``.

    Returns
    -------
    numpy.ndarray
        Shape ``(..., 2Kr + r(r-1)/2)``.

    Raises
    ------
    TypeError, ValueError
        For inconsistent shapes or non-finite values.
    """
    U, M, Q_V, _ = check_lora_shapes(U, M, Q_V, np.eye(np.shape(U)[-2]) if np.ndim(U) >= 2 else U)
    batch = np.broadcast_shapes(U.shape[:-2], M.shape[:-2], Q_V.shape[:-2])
    K, r = U.shape[-2:]
    upper = np.triu_indices(r, 1)
    return np.concatenate([np.broadcast_to(U, (*batch, K, r)).reshape(*batch, K * r),
                           np.broadcast_to(M, (*batch, r, K)).reshape(*batch, r * K),
                           np.broadcast_to(Q_V, (*batch, r, r))[..., upper[0], upper[1]]], axis=-1)


def unpack_statistics(state: np.ndarray, n_neurons: int, rank: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Inverse of :func:`pack_statistics`: ``(U, M, Q_V)`` from states of shape ``(..., n_statistics)``.

    Raises
    ------
    TypeError, ValueError
        For a bad rank or a last axis of the wrong length.
    """
    K, r = check_rank(n_neurons, rank)
    state = real_array(state, "state")
    size = _n_statistics(K, r)
    if state.ndim < 1 or state.shape[-1] != size:
        raise ValueError(f"state must have last axis 2 K r + r (r - 1) / 2 = {size} (K = {K}, r = {r}), got "
                         f"shape {state.shape}")
    batch = state.shape[:-1]
    U = state[..., : K * r].reshape(*batch, K, r)
    M = state[..., K * r: 2 * K * r].reshape(*batch, r, K)
    Q_V = np.broadcast_to(np.eye(r), (*batch, r, r)).copy()
    upper = np.triu_indices(r, 1)
    Q_V[..., upper[0], upper[1]] = state[..., 2 * K * r:]
    Q_V[..., upper[1], upper[0]] = state[..., 2 * K * r:]
    return U, M, Q_V


def _safe_sqrt(x):  # noqa: ANN001, ANN202
    return np.sqrt(np.maximum(x, 0.0))


def _safe_asin(x):  # noqa: ANN001, ANN202
    return np.arcsin(np.clip(x, -1.0, 1.0))


@cache
def _kernel_derivative_functions(name: str):  # noqa: ANN202
    """Numeric (K_11, K_12) of the closed-form kernel K(c11, c12, c22), differentiated and simplified by sympy."""
    kernel = correlation_kernel_sympy(name, name)
    derivatives = [sp.simplify(sp.diff(kernel, symbol)) for symbol in (C11, C12)]
    modules = [{"sqrt": _safe_sqrt, "asin": _safe_asin}, "numpy"]
    functions = [sp.lambdify((C11, C12, C22), expr, modules=modules) for expr in derivatives]

    def evaluate(c11: np.ndarray, c12: np.ndarray, c22: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        shape = np.broadcast_shapes(np.shape(c11), np.shape(c12), np.shape(c22))
        return tuple(np.broadcast_to(np.asarray(function(c11, c12, c22), dtype=float), shape)
                     for function in functions)

    return evaluate


def committee_risk_derivatives(activation: str, Q: object, R: object, T_overlap: object,
                               readout: float) -> tuple[np.ndarray, np.ndarray]:
    r"""The risk derivatives :math:`F_Q = \partial_Q\varepsilon` (symmetric) and :math:`F_R = \partial_R\varepsilon`.

    Formulas in the module docstring; the gradient of the risk in the student weights is then
    :math:`\nabla_W\varepsilon = 2F_QW + F_RT` (tested against
    :func:`lorabook.two_layer_lora.committee.committee_risk_gradient` and finite differences).

    Parameters
    ----------
    activation
        ``"erf"``, ``"relu"`` or ``"linear"`` (student and teacher).
    Q, R, T_overlap
        :math:`WW^\top` (..., K, K), :math:`WT^\top` (..., K, M), :math:`TT^\top` (..., M, M), with
        positive student variances.
    readout
        :math:`g > 0`.

    Returns
    -------
    F_Q, F_R : numpy.ndarray
        Shapes ``(..., K, K)`` and ``(..., K, M)``.

    Raises
    ------
    TypeError, ValueError
        For an unknown activation, inconsistent or indefinite overlaps, a zero student variance
        or a non-positive readout.
    """
    name = check_committee_activation(activation)
    readout = real(readout, "readout", minimum=0.0, strict_minimum=True)
    Q, R, T_overlap = check_overlaps(Q, R, T_overlap)
    variances = np.diagonal(Q, axis1=-2, axis2=-1)
    if np.any(variances <= 0):
        raise ValueError("Q must have a positive diagonal (every student row non-zero): the risk is not "
                         "differentiable at a zero row")
    derivatives = _kernel_derivative_functions(name)
    teacher_variances = np.diagonal(T_overlap, axis1=-2, axis2=-1)
    s11, s12 = derivatives(variances[..., :, None], Q, variances[..., None, :])
    t11, t12 = derivatives(variances[..., :, None], R, teacher_variances[..., None, :])
    g2 = readout**2
    F_Q = 0.5 * g2 * s12
    diagonal = g2 * s11.sum(axis=-1) - g2 * t11.sum(axis=-1)
    F_Q = F_Q + diagonal[..., :, None] * np.eye(Q.shape[-1])
    return F_Q, -g2 * t12


def _coefficients_vector(pretraining_strength: float, n_neurons: int, n_weakened: int) -> np.ndarray:
    # mu = 0 would make a student row zero, where the risk is not differentiable.
    real(pretraining_strength, "pretraining_strength", minimum=0.0, strict_minimum=True, maximum=1.0)
    return np.diagonal(pretrained_coefficients(n_neurons, pretraining_strength, n_weakened)).copy()


def _rhs(name: str, K: int, r: int, delta: np.ndarray, readout: float, noise_strength: float,
         state: np.ndarray) -> np.ndarray:
    """Drift + delta * correction at one state (validated arguments)."""
    equations = lora_committee_equations(K, r)
    U, M, Q_V = unpack_statistics(state, K, r)
    D = np.diag(delta)
    R, Q = lora_overlaps(U, M, Q_V, D)
    identity = np.eye(K)
    F_Q, F_R = committee_risk_derivatives(name, Q, R, identity, readout)
    rate = np.asarray(equations.drift_function(*state, *delta, F_Q, F_R), dtype=float)
    if noise_strength > 0:
        G = committee.committee_gradient_covariance(name, Q, R, identity, readout)
        rate = rate + noise_strength * np.asarray(equations.correction_function(*state, *delta, G), dtype=float)
    return rate


def committee_ode_rhs(activation: str, state: object, *, n_neurons: int = 4, rank: int = 1,
                      pretraining_strength: float = 0.9, n_weakened: int = 2,
                      noise_strength: float = 0.0) -> np.ndarray:
    r"""The right-hand side of the committee LoRA overlap ODE at one state.

    .. math:: \dot x = \text{drift}(x; F_Q, F_R) + \delta\,\text{correction}(x; G)

    with :math:`x` = :func:`pack_statistics` of :math:`(U, M, Q_V)`, the drift and correction of
    :func:`lora_committee_equations`, :math:`F_Q, F_R` from :func:`committee_risk_derivatives` and
    :math:`G` from :func:`lorabook.two_layer_lora.committee.committee_gradient_covariance`, at
    :math:`D` = :func:`lorabook.two_layer_lora.committee.pretrained_coefficients` and the readout of
    :func:`lorabook.two_layer_lora.committee.readout_scale`.

    Parameters
    ----------
    activation
        ``"erf"``, ``"relu"`` or ``"linear"``.
    state
        The packed statistics, shape ``(2Kr + r(r-1)/2,)``.
    n_neurons, rank, pretraining_strength, n_weakened
        :math:`K`, :math:`r`, :math:`\mu` and the number of weakened teacher directions.
    noise_strength
        :math:`\delta = \eta d / B \ge 0` (0: the drift alone, the limit :math:`\eta \to 0`).

    Returns
    -------
    numpy.ndarray
        Shape ``state.shape``.

    Raises
    ------
    TypeError, ValueError
        For invalid arguments (the message names the parameter).
    """
    name = check_committee_activation(activation)
    K, r = check_rank(n_neurons, rank)
    delta = _coefficients_vector(pretraining_strength, K, n_weakened)
    noise_strength = real(noise_strength, "noise_strength", minimum=0.0)
    state = real_array(state, "state")
    if state.ndim != 1:
        raise ValueError(f"state must be one packed state of shape ({_n_statistics(K, r)},), got shape {state.shape}")
    if state.size != _n_statistics(K, r):
        raise ValueError(f"state must have shape ({_n_statistics(K, r)},) (K = {K}, r = {r}), got {state.shape}")
    U, M, Q_V = unpack_statistics(state, K, r)
    check_lora_shapes(U, M, Q_V, np.diag(delta))
    return _rhs(name, K, r, delta, readout_scale(name, K), noise_strength, state)


@dataclass(frozen=True)
class CommitteeODESolution:
    r"""Output of :func:`integrate_committee_ode`.

    Attributes
    ----------
    time
        Output times :math:`t = \eta\times` steps, shape ``(n_times,)``.
    U, M, Q_V
        The statistics at those times, shapes ``(n_times, K, r)``, ``(n_times, r, K)``, ``(n_times, r, r)``.
    risk
        The population risk at those times.
    noise_strength
        The :math:`\delta` integrated with.
    """

    time: np.ndarray
    U: np.ndarray
    M: np.ndarray
    Q_V: np.ndarray
    risk: np.ndarray
    noise_strength: float


def integrate_committee_ode(activation: str, U: object, M: object, Q_V: object, final_time: float, *,
                            pretraining_strength: float = 0.9, n_weakened: int = 2, noise_strength: float = 0.0,
                            n_times: int = 200, spacing: str = "log", first_time: float | None = None,
                            method: str = "LSODA", rtol: float = 1e-9, atol: float = 1e-12) -> CommitteeODESolution:
    r"""Integrate the committee LoRA overlap ODE from the statistics :math:`(U_0, M_0, Q_{V,0})`.

    Started from one SGD run's initial statistics (for example ``result.U[seed, 0]``,
    ``result.M[seed, 0]``, ``result.Q_V[seed, 0]`` of
    :func:`lorabook.two_layer_lora.committee_sgd.simulate_committee_lora`), the ODE predicts that
    run's trajectory up to the fluctuations of order :math:`d^{-1/2}`.

    Parameters
    ----------
    activation
        ``"erf"``, ``"relu"`` or ``"linear"``.
    U, M, Q_V
        Initial statistics, shapes ``(K, r)``, ``(r, K)``, ``(r, r)`` with unit diagonal.
    final_time
        End of the integration in :math:`t = \eta\times` steps.
    pretraining_strength, n_weakened, noise_strength
        :math:`\mu`, the number of weakened directions, :math:`\delta = \eta d/B`.
    n_times, spacing, first_time, method, rtol, atol
        As :func:`lorabook.toolkit.ode.integrate_overlap_ode`.

    Returns
    -------
    CommitteeODESolution

    Raises
    ------
    TypeError, ValueError
        For invalid arguments, or a :math:`Q_V` without unit diagonal.
    """
    name = check_committee_activation(activation)
    U, M, Q_V, _ = check_lora_shapes(U, M, Q_V, np.eye(np.shape(U)[-2]) if np.ndim(U) == 2 else U)
    if U.ndim != 2 or M.ndim != 2 or Q_V.ndim != 2:
        raise ValueError(f"U, M and Q_V must be single matrices (no leading axes), got shapes {U.shape}, {M.shape}, "
                         f"{Q_V.shape}")
    K, r = U.shape
    if np.max(np.abs(np.diagonal(Q_V) - 1.0)) > 1e-8:
        raise ValueError(f"Q_V must have a unit diagonal (the rows of V are unit vectors), got {np.diagonal(Q_V)}")
    delta = _coefficients_vector(pretraining_strength, K, integer(n_weakened, "n_weakened", minimum=0, maximum=K))
    noise_strength = real(noise_strength, "noise_strength", minimum=0.0)
    readout = readout_scale(name, K)
    initial = pack_statistics(U, M, Q_V)
    bounded = range(K * r, initial.size)  # the entries of M and the cosines of Q_V lie in [-1, 1]
    solution = integrate_overlap_ode(
        lambda t, y: _rhs(name, K, r, delta, readout, noise_strength, y), initial, final_time, n_times=n_times,
        spacing=spacing, first_time=first_time, bounded_components=bounded, method=method, rtol=rtol, atol=atol,
    )
    U_t, M_t, Q_t = unpack_statistics(solution.state, K, r)
    R, Q = lora_overlaps(U_t, M_t, Q_t, np.diag(delta))
    risk = committee_risk(name, Q, R, np.eye(K), readout)
    return CommitteeODESolution(time=solution.time, U=U_t, M=M_t, Q_V=Q_t, risk=risk, noise_strength=noise_strength)


def committee_linearization(activation: str, *, n_neurons: int = 4, rank: int = 1, pretraining_strength: float = 0.9,
                            n_weakened: int = 2) -> np.ndarray:
    r"""The Jacobian of the drift at the start of fine-tuning, :math:`U = 0`, :math:`M = 0`, :math:`Q_V = I`.

    :func:`lorabook.toolkit.overlap_equations.committee_equations` checks that :math:`Q` and
    :math:`R` are stationary there (so no derivative of :math:`F_Q, F_R` enters), and the Jacobian
    is evaluated at :math:`F_Q, F_R` of the pre-trained student (:math:`Q = D^2`, :math:`R = D`).
    Its largest eigenvalue is the escape rate of the search phase.

    Returns
    -------
    numpy.ndarray
        Shape ``(n, n)`` with ``n = 2Kr + r(r-1)/2``, in the order of :func:`pack_statistics`.

    Raises
    ------
    TypeError, ValueError
        For invalid arguments.
    """
    name = check_committee_activation(activation)
    K, r = check_rank(n_neurons, rank)
    delta = _coefficients_vector(pretraining_strength, K, n_weakened)
    F_Q, F_R = committee_risk_derivatives(name, np.diag(delta**2), np.diag(delta), np.eye(K), readout_scale(name, K))
    function = lora_committee_equations(K, r).linearization_function
    return np.asarray(function(*delta, F_Q, F_R), dtype=float)
