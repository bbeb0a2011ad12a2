r"""Trajectories of the rank-one LoRA overlap ODE, for many runs at once.

The summary statistics :math:`(u, m)` of one-pass SGD on the LoRA single-index model
(:mod:`lorabook.single_index_lora.lora`) follow, in time :math:`t = \eta \times \text{steps}`,

.. math:: \frac{du}{dt} = -\partial_u R(u, m), \qquad
          \frac{dm}{dt} = -(1 - m^2)\,\partial_m R(u, m) - \frac{\delta}{2}\, m\, \mathbb E[G^2],

with :math:`\delta = \eta d / B` and :math:`G = u\,(s(\lambda) - s_\star(\lambda_\star))\,s'(\lambda)`
(:func:`lorabook.single_index_lora.lora.overlap_ode_rhs`). :func:`integrate_lora_ode` integrates it from several
initial conditions (one per SGD seed, or one per pre-training strength) as a single stacked system,
which costs one vectorised right-hand-side call per solver stage for all runs, and returns the
trajectories of :math:`u`, :math:`m`, :math:`\rho = \mu + u m` and the population risk
:math:`R(u, m)`. :func:`stability_threshold` gives the largest :math:`\delta` at which the global
minimum :math:`(u, m) = (1 - \mu, 1)` of a matching teacher stays stable.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lorabook.single_index_lora.lora import (
    check_direction_overlap,
    check_noise_strength,
    check_pretraining_strength,
    overlap_ode_rhs,
    population_risk,
)
from lorabook.toolkit.activations import activation_derivative, check_target, resolve_teacher
from lorabook.toolkit.ode import SOLVER_METHODS, SPACINGS, integrate_overlap_ode
from lorabook.toolkit.validation import check_memory, choice, integer, real, real_array


@dataclass(frozen=True)
class LoRATrajectory:
    r"""Solutions of the LoRA overlap ODE for ``n_runs`` initial conditions on a common time grid.

    Attributes
    ----------
    time
        Output times :math:`t = \eta\times\text{steps}`, shape ``(n_times,)``, starting at 0.
    scale, overlap
        :math:`u` and :math:`m` per run, shape ``(n_runs, n_times)``.
    risk
        Population risk :math:`R(u, m)` per run, same shape.
    pretraining_strength
        :math:`\mu` per run, shape ``(n_runs,)``.
    escape_time
        Per run, the first time :math:`|m|` reaches the escape threshold (located by the solver's
        event detection on each run separately); ``inf`` if never or if no threshold was given.
    """

    time: np.ndarray
    scale: np.ndarray
    overlap: np.ndarray
    risk: np.ndarray
    pretraining_strength: np.ndarray
    escape_time: np.ndarray

    @property
    def student_teacher_overlap(self) -> np.ndarray:
        r""":math:`\rho = \mu + u m = w\cdot w_\star` per run and time."""
        return self.pretraining_strength[:, None] + self.scale * self.overlap


def _stacked_rhs(activation, teacher, mu, noise_strength):
    n_runs = mu.size

    def rhs(t: float, y: np.ndarray) -> np.ndarray:
        du_dt, dm_dt = overlap_ode_rhs(activation, mu, y[:n_runs], y[n_runs:], teacher=teacher,
                                       noise_strength=noise_strength)
        return np.concatenate([np.atleast_1d(du_dt), np.atleast_1d(dm_dt)])

    return rhs


def integrate_lora_ode(
    activation: str,
    pretraining_strength: float | np.ndarray,
    initial_scale: float | np.ndarray,
    initial_overlap: float | np.ndarray,
    final_time: float,
    *,
    teacher: str | None = None,
    noise_strength: float = 0.0,
    n_times: int = 200,
    spacing: str = "log",
    first_time: float | None = None,
    escape_threshold: float | None = None,
    method: str = "LSODA",
    rtol: float = 1e-9,
    atol: float = 1e-12,
) -> LoRATrajectory:
    r"""Integrate the LoRA overlap ODE from one or several initial conditions :math:`(u_0, m_0)`.

    .. math:: \dot u = -\partial_u R, \qquad
              \dot m = -(1 - m^2)\,\partial_m R - \frac{\delta}{2}\, m\,\mathbb E[G^2],

    evaluated by :func:`lorabook.single_index_lora.lora.overlap_ode_rhs`. The ``n_runs`` initial conditions (the
    broadcast of ``pretraining_strength``, ``initial_scale`` and ``initial_overlap``) are
    integrated as one stacked system of ``2 n_runs`` components with
    :func:`lorabook.toolkit.ode.integrate_overlap_ode`, every overlap kept in :math:`[-1, 1]`.

    Parameters
    ----------
    activation, teacher
        Student and teacher activation names (:data:`lorabook.toolkit.activations.ACTIVATION_NAMES`);
        ``teacher=None`` means the teacher equals the student.
    pretraining_strength
        :math:`\mu \in (0, 1]`, a scalar or one value per run.
    initial_scale, initial_overlap
        :math:`u_0` (finite) and :math:`m_0 \in [-1, 1]`, scalars or one value per run (e.g.
        :attr:`lorabook.single_index_lora.sgd.SGDResult.scale` ``[:, 0]`` and ``overlap[:, 0]``).
    final_time
        End of the integration, in units of :math:`t = \eta\times\text{steps}`.
    noise_strength
        :math:`\delta = \eta d / B \ge 0`; ``0`` gives the gradient flow (drift only).
    n_times, spacing, first_time
        Output grid, see :func:`lorabook.toolkit.ode.output_times`.
    escape_threshold
        If given, each run is also integrated alone until :math:`|m|` reaches this value, and the
        event time is stored in :attr:`LoRATrajectory.escape_time`.
    method, rtol, atol
        Solver settings; ``method`` one of :data:`lorabook.toolkit.ode.SOLVER_METHODS`. LSODA (the
        default) switches to a stiff method only when needed, which is cheapest here.

    Returns
    -------
    LoRATrajectory

    Raises
    ------
    ValueError
        For an unknown activation or method (the message lists the valid names), :math:`\mu`
        outside ``(0, 1]``, :math:`|m_0| > 1`, a non-finite :math:`u_0`, initial conditions that do
        not broadcast to one dimension, or an ``escape_threshold`` outside ``(0, 1]``.
    """
    resolve_teacher(activation, teacher)  # composite names (squared teachers, sums) are valid for both
    choice(method, "method", SOLVER_METHODS)
    mu = check_pretraining_strength(pretraining_strength, parameter="pretraining_strength")
    m0 = check_direction_overlap(initial_overlap, parameter="initial_overlap")
    u0 = real_array(initial_scale, "initial_scale", nonempty=False)
    try:
        mu, u0, m0 = (np.atleast_1d(array).astype(float) for array in np.broadcast_arrays(mu, u0, m0))
    except ValueError as error:
        raise ValueError("pretraining_strength, initial_scale and initial_overlap must broadcast to one "
                         "shape") from error
    if mu.ndim != 1:
        raise ValueError(f"pretraining_strength, initial_scale and initial_overlap must be scalars or one-dimensional, "
                         f"got the shape {mu.shape}")
    if mu.size == 0:
        raise ValueError("pretraining_strength, initial_scale and initial_overlap must hold at least one run, got none")
    real(final_time, "final_time", minimum=0.0, strict_minimum=True)
    check_noise_strength(noise_strength)
    check_memory(integer(n_times, "n_times", minimum=2) * 8 * mu.size, "n_times",
                 "the trajectories of every run")
    choice(spacing, "spacing", SPACINGS)
    if escape_threshold is not None:
        real(escape_threshold, "escape_threshold", minimum=0.0, strict_minimum=True, maximum=1.0)
    real(rtol, "rtol", minimum=0.0, strict_minimum=True)
    real(atol, "atol", minimum=0.0, strict_minimum=True)
    n_runs = mu.size
    solution = integrate_overlap_ode(
        _stacked_rhs(activation, teacher, mu, noise_strength), np.concatenate([u0, m0]), final_time,
        n_times=n_times, spacing=spacing, first_time=first_time,
        bounded_components=tuple(range(n_runs, 2 * n_runs)), method=method, rtol=rtol, atol=atol,
    )
    scale = solution.state[:, :n_runs].T
    overlap = solution.state[:, n_runs:].T
    risk = np.asarray(population_risk(activation, mu[:, None], scale, overlap, teacher=teacher), dtype=float)
    escape = np.full(n_runs, np.inf)
    if escape_threshold is not None:
        for run in range(n_runs):
            alone = integrate_overlap_ode(
                _stacked_rhs(activation, teacher, mu[run:run + 1], noise_strength), [u0[run], m0[run]],
                final_time, n_times=2, spacing="linear", escape_threshold=escape_threshold,
                escape_component=1, stop_at_escape=True, bounded_components=(1,), method=method,
                rtol=rtol, atol=atol,
            )
            escape[run] = alone.escape_time
    return LoRATrajectory(time=solution.time, scale=scale, overlap=overlap, risk=risk,
                          pretraining_strength=mu, escape_time=escape)


def stability_constant(activation: str, n_nodes: int = 200) -> float:
    r""":math:`2\,\mathbb E[s'(z)^2] / \mathbb E[s'(z)^4]`, :math:`z \sim \mathcal N(0, 1)`, by Gauss-Hermite
    quadrature.

    The stability threshold of a zero-risk point reached by a LoRA update of scale :math:`u_\star`
    is this constant over :math:`u_\star^2` (:func:`stability_threshold`, where
    :math:`u_\star = 1 - \mu`; :func:`lorabook.single_index_lora.remedies.non_aligned_stability_threshold`).

    Raises
    ------
    ValueError
        For an unknown activation or ``n_nodes < 2``.
    """
    activation = check_target(activation, parameter="activation")  # any student, composite ones included
    n_nodes = integer(n_nodes, "n_nodes", minimum=2)
    # numpy's hermegauss finds the nodes as the eigenvalues of an n x n companion matrix.
    check_memory(n_nodes**2, "n_nodes", "the companion matrix of the Gauss-Hermite rule")
    nodes, weights = np.polynomial.hermite_e.hermegauss(n_nodes)
    weights = weights / np.sqrt(2.0 * np.pi)
    slope = activation_derivative(activation)(nodes)
    return float(2.0 * np.dot(weights, slope**2) / np.dot(weights, slope**4))


def stability_threshold(activation: str, pretraining_strength: float | np.ndarray,
                        n_nodes: int = 200) -> float | np.ndarray:
    r"""Largest :math:`\delta` at which the global minimum :math:`(u, m) = (1 - \mu, 1)` is stable.

    For a matching teacher (:math:`s_\star = s`) and :math:`\epsilon = 1 - m \to 0` with
    :math:`u = 1 - \mu`, the overlap ODE gives
    :math:`\dot\epsilon = 2(1 - \mu)^2\big(\tfrac{\delta}{2}(1 - \mu)^2\,\mathbb E[s'(z)^4]
    - \mathbb E[s'(z)^2]\big)\,\epsilon`, :math:`z \sim \mathcal N(0, 1)`, so the minimum is stable
    if and only if

    .. math:: \delta < \delta_c(\mu) = \frac{2\,\mathbb E[s'(z)^2]}{(1 - \mu)^2\,\mathbb E[s'(z)^4]}.

    Parameters
    ----------
    activation
        Activation name of student and teacher.
    pretraining_strength
        :math:`\mu \in (0, 1]` (scalar or array); :math:`\delta_c = \infty` at :math:`\mu = 1`.
    n_nodes
        Gauss-Hermite nodes for the two moments (exact for polynomials of degree below
        ``2 n_nodes``).

    Returns
    -------
    float or numpy.ndarray

    Raises
    ------
    ValueError
        For an unknown activation, :math:`\mu` outside ``(0, 1]`` or ``n_nodes < 2``.
    """
    activation = check_target(activation, parameter="activation")
    mu = check_pretraining_strength(pretraining_strength, parameter="pretraining_strength")
    ratio = stability_constant(activation, n_nodes)
    with np.errstate(divide="ignore"):
        threshold = np.where(mu < 1, ratio / np.where(mu < 1, (1.0 - mu) ** 2, 1.0), np.inf)
    return float(threshold) if threshold.ndim == 0 else threshold
