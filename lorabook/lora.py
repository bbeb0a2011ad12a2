"""The rank-one LoRA single-index model: the search phase at the pre-trained fixed point.

Model (Nwemadji, Loureiro and Barbier, 2026): inputs :math:`x \\sim \\mathcal N(0, I_d)`, labels
:math:`y = s_\\star(w_\\star\\cdot x)`, pre-trained weight :math:`w_0 = \\mu w_\\star` with
pre-training strength :math:`\\mu \\in (0, 1]`, fine-tuned weight :math:`w = w_0 + u v` with
:math:`\\lVert v\\rVert = 1`. With :math:`m = v\\cdot w_\\star` the preactivations
:math:`\\lambda = w\\cdot x` and :math:`\\lambda_\\star = w_\\star\\cdot x` are jointly Gaussian with

.. math:: q = \\operatorname{Var}\\lambda = \\mu^2 + u^2 + 2\\mu u m, \\qquad
          \\rho = \\operatorname{Cov}(\\lambda, \\lambda_\\star) = \\mu + u m,

so the population risk is :math:`R(u, m) = F(q, \\rho)` with
:math:`F(q, \\rho) = \\tfrac12 \\mathbb E[(s(\\lambda) - s_\\star(\\lambda_\\star))^2]`.

The search phase starts at :math:`(u, m) = (0, 0)`, where :math:`\\lambda = \\mu\\lambda_\\star`
exactly (:math:`q = \\rho^2`: the edge of the allowed region :math:`q \\ge \\rho^2`). Linearising
the gradient flow :math:`\\dot u = -\\partial_u R`, :math:`\\dot m = -(1 - m^2)\\partial_m R`
there gives the matrix :math:`\\begin{pmatrix} B & A \\\\ A & 0 \\end{pmatrix}` acting on
:math:`(u, m)`, with

.. math:: A(\\mu) = -(2\\mu F_q + F_\\rho), \\qquad B(\\mu) = -2 F_q,

and :math:`F_q` (one-sided) and :math:`F_\\rho` evaluated at :math:`q = \\mu^2, \\rho = \\mu`.
Gaussian integration by parts (Price's theorem) turns both into one-dimensional expectations
over :math:`z \\sim \\mathcal N(0, 1)`:

.. math:: F_\\rho = -\\mathbb E[s'(\\mu z)\\, s_\\star'(z)], \\qquad
          F_q = \\tfrac12 \\mathbb E\\big[s'(\\mu z)^2 + s''(\\mu z)\\,(s(\\mu z) - s_\\star(z))\\big].

These are derived exactly with sympy where a closed form exists (linear, Hermite polynomials,
erf, ReLU) and evaluated by adaptive quadrature otherwise (sigmoid). The escape rate is the
positive eigenvalue :math:`\\lambda_+ = (B + \\sqrt{B^2 + 4A^2})/2` and the characteristic search
time :math:`\\tau(\\mu) = 1/\\lambda_+`, in units of learning rate :math:`\\times` steps.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import sympy as sp
from scipy import integrate

from lorabook.activations import activation as activation_function
from lorabook.activations import (
    activation_derivative,
    activation_second_derivative,
    activation_sympy,
    check_activation,
)
from lorabook.gaussian import gaussian_expectation_sympy

MU = sp.Symbol("mu", positive=True)
"""The pre-training strength symbol used in every expression of this module."""

_Z = sp.Symbol("z", real=True)


def _teacher_name(activation: str, teacher: str | None) -> str:
    check_activation(activation)
    return activation if teacher is None else check_activation(teacher)


def check_pretraining_strength(mu: object) -> np.ndarray:
    """Validate :math:`\\mu \\in (0, 1]` (scalar or array) and return it as a float array.

    Raises
    ------
    TypeError
        If ``mu`` is not a real number or an array of real numbers.
    ValueError
        If any value lies outside ``(0, 1]`` or is not finite.
    """
    try:
        values = np.asarray(mu, dtype=float)
    except (TypeError, ValueError) as error:
        raise TypeError(f"pre-training strength mu must be a real number or array, got {mu!r}") from error
    if not np.all(np.isfinite(values)) or np.any(values <= 0.0) or np.any(values > 1.0):
        raise ValueError(f"pre-training strength mu must lie in (0, 1], got {mu!r}")
    return values


def _standard_gaussian_expectation(expr: sp.Expr) -> sp.Expr:
    """Exact E over z ~ N(0, 1) of an expression in z (and mu); NotImplementedError if none."""
    expr = sp.expand(expr)
    if expr.is_polynomial(_Z):
        return gaussian_expectation_sympy(expr, (_Z,), 1)
    density = sp.exp(-(_Z**2) / 2) / sp.sqrt(2 * sp.pi)
    result = sp.integrate(expr * density, (_Z, -sp.oo, sp.oo))
    if result.has(sp.Integral):
        raise NotImplementedError("no closed form found for this Gaussian expectation")
    return sp.simplify(result)


@lru_cache(maxsize=None)
def pretrained_risk_derivatives_sympy(activation: str, teacher: str | None = None) -> tuple[sp.Expr, sp.Expr]:
    """Exact :math:`(F_q, F_\\rho)` at the pre-trained point :math:`q = \\mu^2, \\rho = \\mu`.

    .. math:: F_q = \\tfrac12 \\mathbb E\\big[s'(\\mu z)^2 + s''(\\mu z)(s(\\mu z) - s_\\star(z))\\big],
              \\qquad F_\\rho = -\\mathbb E[s'(\\mu z)\\, s_\\star'(z)].

    Parameters
    ----------
    activation, teacher
        Activation names (see :data:`lorabook.activations.ACTIVATION_NAMES`); ``teacher=None``
        means the teacher equals the student.

    Returns
    -------
    tuple of sympy.Expr
        :math:`F_q(\\mu)` and :math:`F_\\rho(\\mu)` in the symbol :data:`MU`.

    Raises
    ------
    NotImplementedError
        If no closed form exists (any pair involving ``"sigmoid"``); use
        :func:`linearization`, which falls back to quadrature.
    """
    teacher_name = _teacher_name(activation, teacher)
    if "sigmoid" in (activation, teacher_name):
        raise NotImplementedError(
            "the sigmoid has no closed-form Gaussian integrals; linearization() uses quadrature"
        )
    student = activation_sympy(activation, _Z)
    target = activation_sympy(teacher_name, _Z)
    first = sp.diff(student, _Z)
    second = sp.diff(student, _Z, 2)

    def at_mu_z(expr: sp.Expr) -> sp.Expr:
        return expr.subs(_Z, MU * _Z)

    risk_q = sp.Rational(1, 2) * _standard_gaussian_expectation(
        at_mu_z(first) ** 2 + at_mu_z(second) * (at_mu_z(student) - target)
    )
    risk_rho = -_standard_gaussian_expectation(at_mu_z(first) * sp.diff(target, _Z))
    return sp.simplify(risk_q), sp.simplify(risk_rho)


@lru_cache(maxsize=None)
def linearization_sympy(activation: str, teacher: str | None = None) -> tuple[sp.Expr, sp.Expr]:
    """Exact coefficients :math:`A(\\mu) = -(2\\mu F_q + F_\\rho)` and :math:`B(\\mu) = -2F_q`.

    See :func:`pretrained_risk_derivatives_sympy` for the arguments and errors.
    """
    risk_q, risk_rho = pretrained_risk_derivatives_sympy(activation, teacher)
    return sp.simplify(-(2 * MU * risk_q + risk_rho)), sp.simplify(-2 * risk_q)


@lru_cache(maxsize=None)
def _linearization_function(activation: str, teacher: str):
    coefficient_a, coefficient_b = linearization_sympy(activation, teacher)
    return sp.lambdify(MU, (coefficient_a, coefficient_b), modules="numpy")


def _quadrature(function, tolerance: float = 1e-13) -> float:
    """E over z ~ N(0, 1) of a smooth function by adaptive quadrature on the real line."""
    density = lambda z: np.exp(-0.5 * z * z) / np.sqrt(2.0 * np.pi)  # noqa: E731
    value, _ = integrate.quad(lambda z: function(z) * density(z), -np.inf, np.inf,
                              epsabs=tolerance, epsrel=tolerance, limit=200)
    return value


def _sigmoid_pair_linearization(activation: str, teacher: str, mu: float) -> tuple[float, float]:
    """(A, B) by quadrature from the same one-dimensional formulas, for pairs with a sigmoid.

    Uses lorabook's numerically stable numpy forms of the activations (sympy's lambdified sigmoid
    overflows for large negative arguments).
    """
    if activation == "relu":
        raise NotImplementedError("a relu student with a sigmoid teacher is not supported")
    student = activation_function(activation)
    first = activation_derivative(activation)
    second = activation_second_derivative(activation)
    target = activation_function(teacher)
    target_first = activation_derivative(teacher)
    risk_q = 0.5 * _quadrature(
        lambda z: first(mu * z) ** 2 + second(mu * z) * (student(mu * z) - target(z))
    )
    risk_rho = -_quadrature(lambda z: first(mu * z) * target_first(z))
    return -(2.0 * mu * risk_q + risk_rho), -2.0 * risk_q


def linearization(activation: str, mu: float | np.ndarray, teacher: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Coefficients :math:`(A(\\mu), B(\\mu))` of the linearised overlap flow at :math:`(u, m) = (0, 0)`.

    .. math:: \\frac{d}{dt}\\begin{pmatrix} u \\\\ m \\end{pmatrix}
              = \\begin{pmatrix} B & A \\\\ A & 0 \\end{pmatrix}\\begin{pmatrix} u \\\\ m \\end{pmatrix},
              \\quad A = -(2\\mu F_q + F_\\rho),\\ B = -2F_q.

    Parameters
    ----------
    activation
        Student activation name.
    mu
        Pre-training strength(s) in ``(0, 1]``; scalar or array.
    teacher
        Teacher activation name; ``None`` for the same as the student.

    Returns
    -------
    (A, B)
        Floats for scalar ``mu``, arrays of ``mu``'s shape otherwise. Exact closed forms
        (lambdified from :func:`linearization_sympy`) where they exist, adaptive quadrature
        (absolute and relative tolerance 1e-13) for the sigmoid.

    Raises
    ------
    ValueError
        For an unknown activation name or ``mu`` outside ``(0, 1]``.
    """
    teacher_name = _teacher_name(activation, teacher)
    values = check_pretraining_strength(mu)
    if "sigmoid" in (activation, teacher_name):
        pairs = [_sigmoid_pair_linearization(activation, teacher_name, float(value)) for value in values.ravel()]
        coefficient_a = np.array([pair[0] for pair in pairs]).reshape(values.shape)
        coefficient_b = np.array([pair[1] for pair in pairs]).reshape(values.shape)
    else:
        function = _linearization_function(activation, teacher_name)
        coefficient_a, coefficient_b = (np.broadcast_to(np.asarray(c, dtype=float), values.shape).copy()
                                        for c in function(values))
    if values.ndim == 0:
        return float(coefficient_a), float(coefficient_b)
    return coefficient_a, coefficient_b


def escape_rate(coefficient_a: float | np.ndarray, coefficient_b: float | np.ndarray) -> np.ndarray:
    """Positive eigenvalue :math:`\\lambda_+ = (B + \\sqrt{B^2 + 4A^2})/2` of ``[[B, A], [A, 0]]``.

    Evaluated as :math:`2A^2 / (\\sqrt{B^2 + 4A^2} - B)` when :math:`B < 0`, which avoids the
    cancellation that would otherwise lose all digits as :math:`A \\to 0` (e.g. :math:`\\mu \\to 1`).
    """
    coefficient_a = np.asarray(coefficient_a, dtype=float)
    coefficient_b = np.asarray(coefficient_b, dtype=float)
    root = np.sqrt(coefficient_b**2 + 4.0 * coefficient_a**2)
    with np.errstate(divide="ignore", invalid="ignore"):
        stable = np.where(root - coefficient_b > 0, 2.0 * coefficient_a**2 / (root - coefficient_b), 0.0)
    return np.where(coefficient_b < 0, stable, 0.5 * (coefficient_b + root))


def search_time(activation: str, mu: float | np.ndarray, teacher: str | None = None) -> float | np.ndarray:
    """Characteristic search time :math:`\\tau(\\mu) = 1/\\lambda_+` (units: learning rate x steps).

    The escape from :math:`(u, m) \\approx (0, m_0)` takes about
    :math:`\\tau \\log(1/|m_0|) \\approx (\\tau/2)\\log d`. :math:`\\tau = \\infty` where
    :math:`\\lambda_+ = 0` (for example :math:`\\mu = 1` with a matching teacher, where
    :math:`A = 0` and :math:`B < 0`).

    Parameters and errors as for :func:`linearization`.
    """
    coefficient_a, coefficient_b = linearization(activation, mu, teacher)
    rate = escape_rate(coefficient_a, coefficient_b)
    with np.errstate(divide="ignore"):
        time = np.where(rate > 0, 1.0 / np.where(rate > 0, rate, 1.0), np.inf)
    return float(time) if np.ndim(time) == 0 else time
