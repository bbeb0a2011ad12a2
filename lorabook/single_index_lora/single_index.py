r"""The spherical single-index model learned from scratch: risk and overlap ODE, derived exactly.

Model (Ben Arous, Gheissari and Jagannath, 2021): inputs :math:`x \sim \mathcal N(0, I_d)`,
labels :math:`y = s_\star(w_\star\cdot x)` with :math:`\lVert w_\star\rVert = 1`, student
:math:`s(w\cdot x)` with :math:`\lVert w\rVert = 1`, per-sample loss
:math:`\tfrac12 (s(w\cdot x) - y)^2`. One-pass SGD with batch size :math:`B` and learning rate
:math:`\eta`, followed by renormalisation, :math:`w \leftarrow (w - \eta g)/\lVert w - \eta g\rVert`.

The preactivations :math:`\lambda = w\cdot x` and :math:`\lambda_\star = w_\star\cdot x` are
jointly Gaussian with :math:`\operatorname{Var}\lambda = q`, :math:`\operatorname{Var}\lambda_\star = 1`,
:math:`\operatorname{Cov}(\lambda, \lambda_\star) = \rho`, so the population risk is

.. math:: F(q, \rho) = \tfrac12\,\mathbb E\big[(s(\lambda) - s_\star(\lambda_\star))^2\big],
          \qquad R(m) = F(1, m),\quad m = w\cdot w_\star.

In time :math:`t = \eta\times\text{steps}` and with :math:`\delta = \eta d / B` held fixed as
:math:`d \to \infty`, the overlap follows

.. math:: \frac{dm}{dt} = -(1 - m^2)\,\partial_\rho F(1, m) - \frac{\delta}{2}\, m\,
          \mathbb E[G^2], \qquad G = (s(\lambda) - s_\star(\lambda_\star))\, s'(\lambda),

where the first term is the spherical gradient flow and the second comes from the
renormalisation (the squared norm of the gradient is :math:`\approx d\,\mathbb E[G^2]/B`).

For polynomial activations (``"linear"`` and ``"He1"`` to ``"He10"``) every expectation is an exact
polynomial obtained with :func:`lorabook.toolkit.gaussian.gaussian_expectation_sympy`; the numeric
functions lambdify those same expressions. Other activations raise
:class:`lorabook.toolkit.validation.UnsupportedChoiceError` (a :class:`ValueError`, also a
:class:`NotImplementedError`).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

import numpy as np
import sympy as sp

from lorabook.toolkit.activations import activation_sympy, check_activation, is_polynomial
from lorabook.toolkit.gaussian import gaussian_expectation_sympy
from lorabook.toolkit.kernels import squared_error_risk_sympy
from lorabook.toolkit.validation import UnsupportedChoiceError, boolean, real, real_array

Q = sp.Symbol("q", positive=True)
r"""Variance of the student preactivation, :math:`q = \lVert w\rVert^2`."""
RHO = sp.Symbol("rho", real=True)
r"""Student-teacher preactivation covariance :math:`\rho`."""
M = sp.Symbol("m", real=True)
r"""Overlap :math:`m = w\cdot w_\star`."""
DELTA = sp.Symbol("delta", nonnegative=True)
r"""Noise strength :math:`\delta = \eta d / B`."""

_LAMBDA = sp.Symbol("lambda", real=True)
_LAMBDA_STAR = sp.Symbol("lambda_star", real=True)


def _names(activation: str, teacher: str | None) -> tuple[str, str]:
    """Validate the names; the teacher defaults to the student activation."""
    activation = check_activation(activation, parameter="activation")
    teacher = activation if teacher is None else check_activation(teacher, parameter="teacher")
    for parameter, name in (("activation", activation), ("teacher", teacher)):
        if not is_polynomial(name):
            raise UnsupportedChoiceError(
                f"{parameter}={name!r}: the exact overlap ODE is implemented for polynomial activations only; "
                f"supported names: 'linear', 'He1'...'He10'"
            )
    return activation, teacher


@cache
def population_risk_sympy(activation: str, teacher: str | None = None) -> sp.Expr:
    r"""Population risk :math:`F(q, \rho) = \tfrac12\mathbb E[(s(\lambda) - s_\star(\lambda_\star))^2]`.

    Parameters
    ----------
    activation, teacher
        Student and teacher activation names (polynomial ones); the teacher defaults to the
        student.

    Returns
    -------
    sympy.Expr
        A polynomial in :data:`Q` and :data:`RHO`, exact: the kernels' construction
        :func:`lorabook.toolkit.kernels.squared_error_risk_sympy` (Wick's theorem for polynomials), the
        same one the LoRA model uses.
    """
    activation, teacher = _names(activation, teacher)
    return sp.expand(squared_error_risk_sympy(activation, teacher, Q, RHO))


@cache
def risk_sympy(activation: str, teacher: str | None = None) -> sp.Expr:
    """Risk on the sphere, :math:`R(m) = F(1, m)`, a polynomial in :data:`M`."""
    return sp.expand(population_risk_sympy(activation, teacher).subs({Q: 1, RHO: M}))


@cache
def overlap_drift_sympy(activation: str, teacher: str | None = None) -> sp.Expr:
    r"""Spherical gradient-flow drift :math:`-(1 - m^2)\,\partial_\rho F(q, \rho)|_{q=1, \rho=m}`.

    The Euclidean gradient of :math:`F(\lVert w\rVert^2, w\cdot w_\star)` is
    :math:`2F_q w + F_\rho w_\star`; projecting on the tangent space of the sphere at :math:`w`
    removes the radial part :math:`2F_q w`, and :math:`w_\star\cdot(I - ww^\top)w_\star = 1 - m^2`.
    """
    risk = population_risk_sympy(activation, teacher)
    derivative = sp.diff(risk, RHO).subs({Q: 1, RHO: M})
    return sp.expand(-(1 - M**2) * derivative)


@cache
def gradient_second_moment_sympy(activation: str, teacher: str | None = None) -> sp.Expr:
    r"""Mean squared gradient coefficient :math:`\mathbb E[G^2]` on the sphere, as a polynomial in m.

    .. math:: G = (s(\lambda) - s_\star(\lambda_\star))\,s'(\lambda), \qquad
              \operatorname{Var}\lambda = \operatorname{Var}\lambda_\star = 1,\
              \operatorname{Cov}(\lambda, \lambda_\star) = m.

    The per-sample gradient of the loss is :math:`G\,x`.
    """
    activation, teacher = _names(activation, teacher)
    student = activation_sympy(activation, _LAMBDA)
    coefficient = (student - activation_sympy(teacher, _LAMBDA_STAR)) * sp.diff(student, _LAMBDA)
    return gaussian_expectation_sympy(coefficient**2, (_LAMBDA, _LAMBDA_STAR), (1, M, 1))


@cache
def overlap_ode_sympy(
    activation: str, teacher: str | None = None, include_correction: bool = True
) -> sp.Expr:
    r"""Right-hand side of the overlap ODE, a polynomial in :data:`M` and :data:`DELTA`.

    .. math:: \frac{dm}{dt} = -(1 - m^2)\,\partial_\rho F(1, m)
              - \frac{\delta}{2}\, m\, \mathbb E[G^2]

    Parameters
    ----------
    activation, teacher
        Student and teacher activation names (polynomial ones).
    include_correction
        Whether to include the finite-learning-rate term :math:`-(\delta/2) m\,\mathbb E[G^2]`
        (``False``: drift only, the :math:`\delta \to 0` limit).
    """
    drift = overlap_drift_sympy(activation, teacher)
    if not include_correction:
        return drift
    correction = -DELTA / 2 * M * gradient_second_moment_sympy(activation, teacher)
    return sp.expand(drift + correction)


def _check_noise_strength(noise_strength: float) -> float:
    """delta = eta d / B, a finite number >= 0."""
    return real(noise_strength, "noise_strength", minimum=0.0)


@cache
def _lambdified_ode(activation: str, teacher: str | None, include_correction: bool):
    expression = overlap_ode_sympy(activation, teacher, include_correction)
    return sp.lambdify((M, DELTA), expression, modules="numpy")


def overlap_ode_rhs(
    activation: str,
    noise_strength: float = 0.0,
    teacher: str | None = None,
    include_correction: bool = True,
) -> Callable[[float, np.ndarray], np.ndarray]:
    r"""Numeric right-hand side ``f(t, m)`` of the overlap ODE, for :mod:`lorabook.toolkit.ode`.

    Lambdifies :func:`overlap_ode_sympy`,

    .. math:: f(t, m) = -(1 - m^2)\,\partial_\rho F(1, m) - \frac{\delta}{2}\, m\,\mathbb E[G^2],

    at the given :math:`\delta` = ``noise_strength`` (:math:`\eta d / B`).

    Returns
    -------
    callable
        ``f(t, m)`` returning an array shaped like ``m`` (``t`` is ignored: the ODE is autonomous).
    """
    names = _names(activation, teacher)
    delta = _check_noise_strength(noise_strength)
    function = _lambdified_ode(*names, boolean(include_correction, "include_correction"))

    def rhs(t: float, m: np.ndarray) -> np.ndarray:
        m = np.asarray(m, dtype=float)
        return np.asarray(function(m, delta), dtype=float) + 0.0 * m

    return rhs


def risk(activation: str, overlap: float | np.ndarray, teacher: str | None = None) -> np.ndarray:
    r"""Population risk on the sphere :math:`R(m) = F(1, m)`, evaluated numerically.

    For :math:`s = s_\star = \mathrm{He}_k`, :math:`R(m) = k!\,(1 - m^k)`.
    """
    names = _names(activation, teacher)
    overlap = real_array(overlap, "overlap", nonempty=False, minimum=-1.0, maximum=1.0)
    function = sp.lambdify(M, risk_sympy(*names), modules="numpy")
    return np.asarray(function(overlap), dtype=float) + 0.0 * overlap


def small_overlap_coefficients(activation: str, teacher: str | None = None) -> tuple[int, sp.Expr, sp.Expr]:
    r"""Leading behaviour of the overlap ODE at small :math:`m`.

    .. math:: \frac{dm}{dt} = a\, m^{k-1} + O(m^{k}) - \frac{\delta}{2}\, b\, m + O(\delta m^2),
              \qquad b = \mathbb E[G^2]\big|_{m=0},

    with :math:`k` the information exponent (the lowest power of the drift) and :math:`a > 0`
    for a matching teacher (:math:`a = k\,k!` for :math:`s = s_\star = \mathrm{He}_k`).

    Returns
    -------
    (k, a, b)
        The information exponent and the exact coefficients (sympy numbers).

    Raises
    ------
    ValueError
        If the drift vanishes identically (nothing to learn).
    """
    drift = sp.Poly(overlap_drift_sympy(activation, teacher), M)
    powers = sorted(exponent for (exponent,), coefficient in drift.terms() if coefficient != 0)
    if not powers:
        raise ValueError("the drift vanishes identically: the student cannot learn this teacher")
    lowest = powers[0]
    coefficient = drift.coeff_monomial(M**lowest)
    second_moment = gradient_second_moment_sympy(activation, teacher).subs(M, 0)
    return lowest + 1, sp.nsimplify(coefficient), sp.nsimplify(second_moment)


def critical_noise_strength(
    activation: str, initial_overlap: float, teacher: str | None = None
) -> float:
    r"""Noise strength at which the small-m drift and the correction balance at :math:`m_0`.

    .. math:: \delta_c(m_0) = \frac{2 a\, m_0^{k-2}}{b}

    with :math:`(k, a, b)` from :func:`small_overlap_coefficients`. For :math:`\delta < \delta_c`
    the overlap grows from :math:`m_0 > 0` (to leading order in small :math:`m`); for
    :math:`\delta > \delta_c` it decays towards 0. Meaningful for :math:`k \ge 2`; for
    :math:`k = 1` the drift at :math:`m = 0` is :math:`O(1)` and the formula returns
    :math:`2a/(b m_0)`, which is not a constraint in the search phase.
    """
    _names(activation, teacher)
    m0 = real(initial_overlap, "initial_overlap", minimum=0.0, strict_minimum=True, maximum=1.0)
    k, a, b = small_overlap_coefficients(activation, teacher)
    return float(2 * a * m0 ** (k - 2) / b)
