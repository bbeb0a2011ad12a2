r"""Full fine-tuning of the pre-trained single-index model: the flow of the pre-training strength.

Part II of the book fine-tunes :math:`w_0 = \mu w_\star` with a rank-one LoRA update
:math:`w = \mu w_\star + u v`. Full fine-tuning (FFT) trains :math:`w` itself. With the risk
:math:`R(w) = F(q, \rho)`, :math:`q = \lVert w\rVert^2`, :math:`\rho = w\cdot w_\star`
(:mod:`lorabook.single_index_lora.lora`), the gradient is

.. math:: \nabla_w R = 2F_q\, w + F_\rho\, w_\star ,

so on the line :math:`w = c\, w_\star` (:math:`q = c^2`, :math:`\rho = c`) it points along
:math:`w_\star` and the population gradient flow never leaves the line:

.. math:: \frac{dc}{dt} = -(2cF_q + F_\rho)\big|_{q = c^2,\ \rho = c} = A(c),

where :math:`A` is the coefficient of the LoRA linearisation (:func:`lorabook.single_index_lora.lora.linearization`)
evaluated at the current strength. FFT moves the pre-training strength itself, with velocity
:math:`A(c)`: a first-order push from the start, where rank-one LoRA has to grow the product
:math:`u m` from :math:`m_0 \sim d^{-1/2}` at the rate :math:`\lambda_+ \approx A^2/|B|` (for small
:math:`A`).

* :func:`strength_velocity`: :math:`A(c)`;
* :func:`integrate_strength_flow`: :math:`c(t)` from :math:`c(0) = \mu`;
* :func:`strength_flow_time`: the time :math:`\int_{c_0}^{c_1} dc / A(c)` to go from one strength to another;
* :data:`MODEL` and :func:`full_finetuning_ode_rhs`: the two-overlap ODE of SGD, derived by
  :func:`lorabook.toolkit.overlap_equations.overlap_equations` from the description "one free
  trained vector :math:`w`", with its noise term: :math:`\dot q` gains :math:`\delta\,\E[h^2]`
  (:math:`\delta = \eta d/B`), which moves the weight off the line;
* :func:`integrate_full_finetuning_ode`: that ODE integrated from :math:`(\rho, q) = (\mu, \mu^2)`;
* :func:`simulate_full_finetuning`: one-pass SGD on :math:`w` (an exact reduced simulator, like
  :func:`lorabook.single_index_lora.sgd.simulate_reduced`), recording :math:`\rho = w\cdot w_\star` and
  :math:`\lVert w_\perp\rVert`.

Time is :math:`t = \eta \times` steps, the per-sample loss :math:`\tfrac12(s(\lambda) - y)^2`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import sympy as sp
from scipy import integrate

from lorabook.single_index_lora.lora import (
    RHO,
    Q,
    check_pretraining_strength,
    gradient_factor_of_covariances,
    linearization,
    risk_derivatives_of_covariances,
)
from lorabook.single_index_lora.sgd import SGDSettings, check_model, resolve_settings
from lorabook.toolkit.activations import activation as activation_function
from lorabook.toolkit.activations import activation_derivative, resolve_teacher
from lorabook.toolkit.overlap_equations import OverlapModel, TrainedVector, overlap_equations
from lorabook.toolkit.validation import real, real_array

MODEL = OverlapModel(
    name="full fine-tuning", parameters=(), fixed_vectors=("w_star",), student=((sp.Integer(1), "w"),),
    trained_scalars=(), trained_vectors=(TrainedVector("w", unit=False),),
    overlaps=((RHO, "w", "w_star"), (Q, "w", "w")), statistics=(RHO, Q), start=None,
    residual_norm=sp.sqrt(Q - RHO**2),
)
r"""Full fine-tuning as an :class:`~lorabook.toolkit.overlap_equations.OverlapModel`: the student is
one free trained vector :math:`w` (not renormalised), with statistics :math:`\rho = w\cdot w_\star`
and :math:`q = w\cdot w`. It has no search phase (``start=None``): :math:`\rho` moves at first
order from the pre-trained point. Its :func:`~lorabook.toolkit.overlap_equations.overlap_equations`
are what :func:`full_finetuning_ode_rhs` evaluates."""


def strength_velocity(activation: str, strength: float | np.ndarray, teacher: str | None = None) -> np.ndarray:
    r"""Velocity :math:`dc/dt = A(c)` of full fine-tuning on the line :math:`w = c\,w_\star`.

    .. math:: A(c) = -\big(2cF_q + F_\rho\big)\big|_{q = c^2,\ \rho = c},

    the coefficient :math:`A` of :func:`lorabook.single_index_lora.lora.linearization` at :math:`\mu = c` (the same
    function: one source of truth).

    Parameters
    ----------
    activation, teacher
        Student and teacher names (the teacher defaults to the student).
    strength
        :math:`c \in (0, 1]`, scalar or array.

    Raises
    ------
    ValueError
        For unknown names or a strength outside :math:`(0, 1]`.
    """
    resolve_teacher(activation, teacher)
    check_pretraining_strength(strength, parameter="strength")
    coefficient_a, _ = linearization(activation, strength, teacher)
    return np.asarray(coefficient_a, dtype=float)


@dataclass(frozen=True)
class StrengthFlow:
    """Solution :math:`c(t)` of :math:`dc/dt = A(c)`.

    Attributes
    ----------
    time
        Output times, shape ``(n_times,)``.
    strength
        :math:`c(t)`, same shape.
    """

    time: np.ndarray
    strength: np.ndarray


def integrate_strength_flow(
    activation: str,
    pretraining_strength: float,
    times: np.ndarray,
    teacher: str | None = None,
    *,
    rtol: float = 1e-10,
    atol: float = 1e-12,
) -> StrengthFlow:
    r"""Integrate :math:`dc/dt = A(c)` from :math:`c(0) = \mu` (population full fine-tuning).

    A one-dimensional flow never crosses a zero of :math:`A`: from :math:`\mu` above the largest
    trap it increases to the target :math:`c = 1`; below a trap it decreases (for the odd Hermite
    targets, towards the zero predictor :math:`c = 0`, outside the domain of :func:`strength_velocity`,
    which raises if the solver leaves :math:`(0, 1]`).

    Parameters
    ----------
    activation, teacher
        Student and teacher names.
    pretraining_strength
        :math:`\mu \in (0, 1]`, a scalar.
    times
        Increasing output times starting at 0.
    rtol, atol
        Tolerances of :func:`scipy.integrate.solve_ivp` (RK45).

    Raises
    ------
    ValueError
        For unknown names, :math:`\mu` outside :math:`(0, 1]`, bad times, or a path leaving
        :math:`(0, 1]`.
    """
    name = resolve_teacher(activation, teacher)
    mu = _scalar_strength(pretraining_strength, "pretraining_strength")
    grid = _check_times(times)
    _check_tolerances(rtol, atol)

    def rhs(_, state):
        # The exact flow stays in (0, 1]; a trial stage of the solver may step an ulp beyond 1.
        return strength_velocity(activation, np.clip(state, 1e-300, 1.0), name)

    solution = integrate.solve_ivp(rhs, (0.0, grid[-1]), [mu], t_eval=grid, rtol=rtol, atol=atol, method="RK45")
    if not solution.success:
        raise ValueError(f"the strength flow could not be integrated: {solution.message}")
    strength = solution.y[0]
    if np.any(strength <= 0) or np.any(strength > 1 + 1e-9):
        raise ValueError("the strength left (0, 1]: the flow runs towards c = 0 (below a trap); use shorter times")
    return StrengthFlow(time=grid, strength=np.minimum(strength, 1.0))


def strength_flow_time(activation: str, start: float, end: float, teacher: str | None = None) -> float:
    r"""Time for full fine-tuning to move the strength from ``start`` to ``end``.

    .. math:: T = \int_{c_0}^{c_1} \frac{dc}{A(c)},

    finite when :math:`A` has the sign of :math:`c_1 - c_0` on the closed interval (no zero of
    :math:`A`, i.e. no trap and not the target :math:`c = 1`, in between). Near a simple zero
    :math:`c_\star` of :math:`A` it grows only like :math:`\log(1/|c_0 - c_\star|)/|A'(c_\star)|`.

    Raises
    ------
    ValueError
        For strengths outside :math:`(0, 1]`, equal strengths, or an :math:`A` that vanishes or has the
        wrong sign on the interval.
    """
    name = resolve_teacher(activation, teacher)
    c0, c1 = _scalar_strength(start, "start"), _scalar_strength(end, "end")
    if c0 == c1:
        raise ValueError("start and end strengths must differ")
    probe = strength_velocity(activation, np.linspace(min(c0, c1), max(c0, c1), 401), name)
    if not np.all(probe * np.sign(c1 - c0) > 0):
        raise ValueError(f"A(c) vanishes or points away from {c1} between {c0} and {c1}: the flow does not get there")
    value, _ = integrate.quad(lambda c: 1.0 / float(strength_velocity(activation, c, name)), c0, c1,
                              epsabs=0.0, epsrel=1e-10, limit=200)
    return float(value)


@dataclass(frozen=True)
class FullFinetuningTrajectory:
    r"""Solution of the full fine-tuning overlap ODE.

    Attributes
    ----------
    time
        Output times, shape ``(n_times,)``.
    overlap
        :math:`\rho(t) = w\cdot w_\star`.
    norm_squared
        :math:`q(t) = \lVert w\rVert^2`; :math:`q - \rho^2` is the squared norm off the line.
    """

    time: np.ndarray
    overlap: np.ndarray
    norm_squared: np.ndarray


def full_finetuning_ode_rhs(activation: str, overlap: float, norm_squared: float, noise_strength: float = 0.0,
                            teacher: str | None = None) -> tuple[float, float]:
    r"""Right-hand side of the overlap ODE of one-pass SGD on :math:`w` (full fine-tuning).

    The drift and correction of :data:`MODEL`, derived by
    :func:`lorabook.toolkit.overlap_equations.overlap_equations`: from :math:`w' = w - \eta\hat g`,
    :math:`\E\hat g = \nabla R = 2F_q w + F_\rho w_\star` and
    :math:`\E\lVert\hat g\rVert^2 = (d/B)\,\E[h^2] + O(1)`, in time :math:`t = \eta\times` steps,

    .. math:: \frac{d\rho}{dt} = -(2F_q\rho + F_\rho), \qquad
              \frac{dq}{dt} = -2(2F_q q + F_\rho\rho) + \delta\,\E[h^2],

    with :math:`h = (s(\lambda) - s_\star(\lambda_\star))s'(\lambda)` and :math:`\delta = \eta d / B`.
    :math:`F_q, F_\rho` and :math:`\E[h^2]` are
    :func:`lorabook.single_index_lora.lora.risk_derivatives_of_covariances` and
    :func:`lorabook.single_index_lora.lora.gradient_factor_of_covariances` at :math:`(\rho,
    \sqrt{q - \rho^2})`.

    Raises
    ------
    TypeError, ValueError
        For unknown names, :math:`\rho` outside :math:`(0, 1]`, a non-finite :math:`q`,
        :math:`q < \rho^2` or a negative noise strength.
    """
    name = resolve_teacher(activation, teacher)
    rho = real(overlap, "overlap", minimum=0.0, strict_minimum=True, maximum=1.0)
    q = real(norm_squared, "norm_squared", minimum=0.0)
    if not q >= rho**2 - 1e-12:
        raise ValueError(f"norm_squared must be at least overlap^2 (q >= rho^2), got q = {q!r}, rho = {rho!r}")
    delta = real(noise_strength, "noise_strength", minimum=0.0)
    equations = overlap_equations(MODEL)
    _, _, off_line = equations.covariance_function(rho, q)
    f_q, f_rho = risk_derivatives_of_covariances(activation, rho, off_line, name)
    d_rho, d_q = equations.drift_function(rho, q, f_q, f_rho)
    if delta > 0:
        factor = delta * gradient_factor_of_covariances(activation, rho, off_line, name)
        correction_rho, correction_q = equations.correction_function(rho, q)
        d_rho, d_q = d_rho + factor * correction_rho, d_q + factor * correction_q
    return float(d_rho), float(d_q)


def integrate_full_finetuning_ode(
    activation: str,
    pretraining_strength: float,
    times: np.ndarray,
    noise_strength: float = 0.0,
    teacher: str | None = None,
    *,
    rtol: float = 1e-9,
    atol: float = 1e-12,
) -> FullFinetuningTrajectory:
    r"""Integrate :func:`full_finetuning_ode_rhs` from :math:`(\rho, q) = (\mu, \mu^2)`.

    With ``noise_strength = 0`` the solution stays on the line, :math:`q = \rho^2`, and
    :math:`\rho` is :func:`integrate_strength_flow`'s :math:`c(t)`.

    Raises
    ------
    ValueError
        As :func:`integrate_strength_flow`, and for a negative noise strength.
    """
    name = resolve_teacher(activation, teacher)
    mu = _scalar_strength(pretraining_strength, "pretraining_strength")
    grid = _check_times(times)
    real(noise_strength, "noise_strength", minimum=0.0)
    _check_tolerances(rtol, atol)

    def rhs(_, state):
        rho = min(max(state[0], 1e-300), 1.0)
        return full_finetuning_ode_rhs(activation, rho, max(state[1], rho**2), noise_strength, name)

    solution = integrate.solve_ivp(rhs, (0.0, grid[-1]), [mu, mu**2], t_eval=grid, rtol=rtol, atol=atol, method="RK45")
    if not solution.success:
        raise ValueError(f"the full fine-tuning ODE could not be integrated: {solution.message}")
    return FullFinetuningTrajectory(time=grid, overlap=solution.y[0], norm_squared=solution.y[1])


@dataclass(frozen=True)
class FullFinetuningResult:
    r"""Trajectories of one-pass SGD on :math:`w` from :math:`w_0 = \mu w_\star`.

    Attributes
    ----------
    steps, time
        Recorded steps and :math:`t = \eta\times` steps, shape ``(n_records,)``.
    overlap
        :math:`\rho = w\cdot w_\star` per seed, shape ``(n_seeds, n_records)`` (the strength :math:`c`).
    perpendicular
        :math:`\lVert w - \rho\, w_\star\rVert` per seed, same shape (zero in the population flow).
    dimension, batch_size, learning_rate, pretraining_strength, activation, teacher
        The run's settings.
    """

    steps: np.ndarray
    time: np.ndarray
    overlap: np.ndarray
    perpendicular: np.ndarray
    dimension: int
    batch_size: int
    learning_rate: float
    pretraining_strength: float
    activation: str
    teacher: str


def simulate_full_finetuning(
    activation: str,
    settings: SGDSettings | None = None,
    *,
    pretraining_strength: float,
    teacher: str | None = None,
    **sgd_settings: object,
) -> FullFinetuningResult:
    r"""One-pass SGD on the full weight :math:`w`, from :math:`w_0 = \mu w_\star`, exact in law with :math:`O(B)` work.

    The step on a batch of fresh Gaussian samples is
    :math:`w \leftarrow w - \frac{\eta}{B}\sum_i h_i x_i`,
    :math:`h_i = (s(\lambda_i) - s_\star(\lambda_{\star,i}))\,s'(\lambda_i)`, :math:`\lambda = w\cdot x`.
    Writing :math:`w = \rho\, w_\star + r\, e` (:math:`e \perp w_\star` a unit vector), each sample
    enters through :math:`z_1 = w_\star\cdot x`, :math:`z_2 = e\cdot x` and its part
    :math:`x^\perp` orthogonal to both, so (as in :func:`lorabook.single_index_lora.sgd.simulate_reduced`)

    .. math:: \rho' = \rho - \frac{\eta}{B}\sum_i h_i z_{1,i}, \qquad
              r'^2 = \Big(r - \frac{\eta}{B}\sum_i h_i z_{2,i}\Big)^2
                     + \frac{\eta^2}{B^2}\Big(\sum_i h_i^2\Big)\chi^2_{d-2},

    and :math:`(\rho, r)` is a Markov chain with the law of the :math:`d`-dimensional SGD.

    Parameters
    ----------
    activation, teacher
        Student and teacher names (teacher defaults to the student).
    settings
        The :class:`lorabook.single_index_lora.sgd.SGDSettings` of the runs, or ``None`` and its
        fields as keywords (here ``spacing`` defaults to ``"linear"``); antithetic batches are not
        supported.
    pretraining_strength
        :math:`\mu \in [0, 1]`, the start :math:`w_0 = \mu w_\star`.

    Raises
    ------
    ValueError, TypeError
        For invalid settings (those of :func:`lorabook.single_index_lora.sgd.simulate_reduced`).
    """
    settings = resolve_settings(settings, sgd_settings, spacing="linear")
    if settings.antithetic:
        raise ValueError("simulate_full_finetuning draws independent samples: settings.antithetic must be False")
    teacher = check_model(activation, teacher, pretraining_strength, 0.0, settings.n_seeds)
    dimension, learning_rate, batch_size = settings.dimension, settings.learning_rate, settings.batch_size
    n_steps, n_seeds = settings.n_steps, settings.n_seeds
    rng = settings.rng()
    steps = settings.record_steps()
    s, s_prime = activation_function(activation), activation_derivative(activation)
    s_star = activation_function(teacher)
    overlap = np.empty((n_seeds, steps.size))
    perpendicular = np.empty((n_seeds, steps.size))
    rho = np.full(n_seeds, float(pretraining_strength))
    r = np.zeros(n_seeds)
    step_size = learning_rate / batch_size
    position = 0
    for step in range(n_steps + 1):
        if position < steps.size and step == steps[position]:
            overlap[:, position], perpendicular[:, position] = rho, r
            position += 1
        if step == n_steps:
            break
        z1, z2 = rng.standard_normal((2, n_seeds, batch_size))
        chi_square = rng.chisquare(dimension - 2, size=n_seeds)
        lam = rho[:, None] * z1 + r[:, None] * z2
        h = (s(lam) - s_star(z1)) * s_prime(lam)
        rho = rho - step_size * np.sum(h * z1, axis=1)
        r = np.sqrt((r - step_size * np.sum(h * z2, axis=1)) ** 2 + step_size**2 * np.sum(h * h, axis=1) * chi_square)
    return FullFinetuningResult(
        steps=steps,
        time=learning_rate * steps.astype(float),
        overlap=overlap,
        perpendicular=perpendicular,
        dimension=int(dimension),
        batch_size=int(batch_size),
        learning_rate=float(learning_rate),
        pretraining_strength=float(pretraining_strength),
        activation=activation,
        teacher=teacher,
    )


def _scalar_strength(value: object, parameter: str) -> float:
    values = check_pretraining_strength(value, parameter=parameter)
    if values.ndim != 0:
        raise ValueError(f"{parameter} must be a scalar in (0, 1], got an array of shape {values.shape}")
    return float(values)


def _check_times(times: object) -> np.ndarray:
    grid = real_array(times, "times", ndim=1)
    if grid.size < 2 or grid[0] != 0 or np.any(np.diff(grid) <= 0):
        raise ValueError("times must be an increasing 1-d array of at least two finite times starting at 0")
    return grid


def _check_tolerances(rtol: object, atol: object) -> None:
    real(rtol, "rtol", minimum=0.0, strict_minimum=True)
    real(atol, "atol", minimum=0.0, strict_minimum=True)
