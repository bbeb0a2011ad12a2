r"""The rank-one LoRA single-index model: the search phase at the pre-trained fixed point.

Model (Nwemadji, Loureiro and Barbier, 2026): inputs :math:`x \sim \mathcal N(0, I_d)`, labels
:math:`y = s_\star(w_\star\cdot x)`, pre-trained weight :math:`w_0 = \mu w_\star` with
pre-training strength :math:`\mu \in (0, 1]`, fine-tuned weight :math:`w = w_0 + u v` with
:math:`\lVert v\rVert = 1`. With :math:`m = v\cdot w_\star` the preactivations
:math:`\lambda = w\cdot x` and :math:`\lambda_\star = w_\star\cdot x` are jointly Gaussian with

.. math:: q = \operatorname{Var}\lambda = \mu^2 + u^2 + 2\mu u m, \qquad
          \rho = \operatorname{Cov}(\lambda, \lambda_\star) = \mu + u m,

so the population risk is :math:`R(u, m) = F(q, \rho)` with
:math:`F(q, \rho) = \tfrac12 \mathbb E[(s(\lambda) - s_\star(\lambda_\star))^2]`.

The search phase starts at :math:`(u, m) = (0, 0)`, where :math:`\lambda = \mu\lambda_\star`
exactly (:math:`q = \rho^2`: the edge of the allowed region :math:`q \ge \rho^2`). Linearising
the gradient flow :math:`\dot u = -\partial_u R`, :math:`\dot m = -(1 - m^2)\partial_m R`
there gives the matrix :math:`\begin{pmatrix} B & A \\ A & 0 \end{pmatrix}` acting on
:math:`(u, m)`, with

.. math:: A(\mu) = -(2\mu F_q + F_\rho), \qquad B(\mu) = -2 F_q,

and :math:`F_q` (one-sided) and :math:`F_\rho` evaluated at :math:`q = \mu^2, \rho = \mu`.
Gaussian integration by parts (Price's theorem) turns both into one-dimensional expectations
over :math:`z \sim \mathcal N(0, 1)`:

.. math:: F_\rho = -\mathbb E[s'(\mu z)\, s_\star'(z)], \qquad
          F_q = \tfrac12 \mathbb E\big[s'(\mu z)^2 + s''(\mu z)\,(s(\mu z) - s_\star(z))\big].

These are derived exactly with sympy where a closed form exists (linear, Hermite polynomials,
erf, ReLU) and evaluated by adaptive quadrature otherwise (sigmoid). The escape rate is the
positive eigenvalue :math:`\lambda_+ = (B + \sqrt{B^2 + 4A^2})/2` and the characteristic search
time :math:`\tau(\mu) = 1/\lambda_+`, in units of learning rate :math:`\times` steps
(:func:`linearization`, :func:`search_time`).

Away from the pre-trained point the module gives the whole overlap flow:

* :func:`risk_function_sympy`, :func:`population_risk`: :math:`F(q, \rho)` from the correlation
  kernels of :mod:`lorabook.toolkit.kernels`, and :math:`R(u, m)`;
* :func:`risk_derivatives_sympy`, :func:`risk_derivatives`: :math:`(F_q, F_\rho)` in Price's-theorem
  form, :math:`F_\rho = -\mathbb E[s'(\lambda) s_\star'(\lambda_\star)]`,
  :math:`F_q = \tfrac12\mathbb E[s'(\lambda)^2 + s(\lambda)s''(\lambda)] - \tfrac12\mathbb
  E[s''(\lambda)s_\star(\lambda_\star)]`,
  exact and finite on the whole region :math:`q \ge \rho^2` including its boundary
  (:math:`\sqrt{q - \rho^2}` is evaluated as :math:`|u|\sqrt{1 - m^2}`);
* :func:`gradient_second_moment`: :math:`\mathbb E[G^2]`, the mean square of the per-sample gradient
  coefficient :math:`G = u(s(\lambda) - s_\star(\lambda_\star))s'(\lambda)` on :math:`v`;
* :func:`overlap_ode_rhs`, :func:`overlap_drift_sympy`: the overlap ODE in time
  :math:`t = \eta \times` steps,

  .. math:: \dot u = -\partial_u R, \qquad
            \dot m = -(1 - m^2)\,\partial_m R - \frac{\delta}{2}\, m\,\mathbb E[G^2],

  with :math:`\delta = \eta d / B` (the second-order effect of renormalising :math:`v`; derived in
  :func:`overlap_ode_rhs`). Its Jacobian at :math:`(0, 0)` is the matrix above.

Pairs involving the sigmoid have no closed forms and use quadrature (inner Gauss-Hermite, outer
composite Gauss-Legendre split at 0), with absolute errors below about 1e-11.
"""

from __future__ import annotations

from functools import cache, lru_cache

import numpy as np
import sympy as sp
from scipy import integrate

from lorabook.toolkit.activations import activation as activation_function
from lorabook.toolkit.activations import (
    activation_derivative,
    activation_second_derivative,
    activation_sympy,
    is_polynomial,
    resolve_teacher,
    squared_base,
)
from lorabook.toolkit.gaussian import gaussian_expectation_sympy, half_line_expectation_sympy
from lorabook.toolkit.overlap_equations import F_Q, F_RHO, OverlapModel, TrainedVector, overlap_equations
from lorabook.toolkit.validation import UnsupportedChoiceError, check_memory, integer, real_array

MU = sp.Symbol("mu", positive=True)
"""The pre-training strength symbol used in every expression of this module."""

_Z = sp.Symbol("z", real=True)


def check_pretraining_strength(mu: object, *, parameter: str = "mu") -> np.ndarray:
    r"""Validate a pre-training strength :math:`\mu \in (0, 1]` (scalar or array); return it as a float array.

    Parameters
    ----------
    mu
        The strength(s).
    parameter
        The name of the caller's parameter that holds ``mu`` (e.g. ``"pretraining_strength"``),
        for the error messages.

    Raises
    ------
    TypeError
        If ``mu`` is not a real number or an array of real numbers.
    ValueError
        If any value lies outside ``(0, 1]`` or is not finite.
    """
    return real_array(mu, parameter, nonempty=False, minimum=0.0, strict_minimum=True, maximum=1.0)


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


@cache
def pretrained_risk_derivatives_sympy(activation: str, teacher: str | None = None) -> tuple[sp.Expr, sp.Expr]:
    r"""Exact :math:`(F_q, F_\rho)` at the pre-trained point :math:`q = \mu^2, \rho = \mu`.

    .. math:: F_q = \tfrac12 \mathbb E\big[s'(\mu z)^2 + s''(\mu z)(s(\mu z) - s_\star(z))\big],
              \qquad F_\rho = -\mathbb E[s'(\mu z)\, s_\star'(z)].

    Parameters
    ----------
    activation, teacher
        Activation names (see :data:`lorabook.toolkit.activations.ACTIVATION_NAMES`); ``teacher=None``
        means the teacher equals the student.

    Returns
    -------
    tuple of sympy.Expr
        :math:`F_q(\mu)` and :math:`F_\rho(\mu)` in the symbol :data:`MU`.

    Raises
    ------
    lorabook.toolkit.validation.UnsupportedChoiceError
        (a :class:`ValueError`, also a :class:`NotImplementedError`) for pairs with a sigmoid (no
        closed form) and mixed pairs of two different
        non-polynomial activations (erf with ReLU, where sympy's integration does not finish in
        reasonable time); :func:`linearization` evaluates those by quadrature.
    """
    teacher_name = resolve_teacher(activation, teacher)
    if not _closed_form_linearization_pair(activation, teacher_name):
        which = "activation" if activation == "sigmoid" or (teacher is None) else "teacher"
        raise UnsupportedChoiceError(
            f"{which}={(activation if which == 'activation' else teacher_name)!r}: no closed form is derived for the "
            f"pair (activation, teacher) = ({activation!r}, {teacher_name!r}) (sigmoid, or erf with relu); supported: "
            "pairs without the sigmoid in which the two names are equal or one is a polynomial; "
            "linearization() uses quadrature"
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


def linearization_coefficients_sympy() -> tuple[sp.Expr, sp.Expr]:
    r"""The coefficients :math:`(A, B)` of the search-phase matrix, in :data:`MU` and the symbols
    :data:`~lorabook.toolkit.overlap_equations.F_Q`, :data:`~lorabook.toolkit.overlap_equations.F_RHO`.

    They are the entries of the Jacobian of the overlap drift at :math:`(u, m) = (0, 0)` that
    :func:`lorabook.toolkit.overlap_equations.overlap_equations` derives for :data:`MODEL`,

    .. math:: \begin{pmatrix} B & A \\ A & 0 \end{pmatrix}, \qquad
              A = -(2\mu F_q + F_\rho), \quad B = -2F_q;

    the symmetric form is checked here, not assumed.
    """
    jacobian = overlap_equations(MODEL).linearization
    if sp.expand(jacobian[1, 0] - jacobian[0, 1]) != 0 or jacobian[1, 1] != 0:
        raise AssertionError(f"the search-phase Jacobian is not of the form [[B, A], [A, 0]]: {jacobian}")
    return jacobian[0, 1], jacobian[0, 0]


def linearization_from_risk_derivatives(
    mu: float | np.ndarray, risk_q: float | np.ndarray, risk_rho: float | np.ndarray,
) -> tuple[float | np.ndarray, float | np.ndarray]:
    r"""The coefficients :math:`(A, B)` for given :math:`(F_q, F_\rho)` at the pre-trained point.

    The lambdified :func:`linearization_coefficients_sympy`, for callers that compute
    :math:`F_q, F_\rho` their own way (quadrature, Hermite series).

    Parameters
    ----------
    mu
        Pre-training strength(s) in ``(0, 1]``.
    risk_q, risk_rho
        :math:`F_q` and :math:`F_\rho` at :math:`q = \mu^2`, :math:`\rho = \mu`; finite, broadcasting
        with ``mu``.

    Returns
    -------
    (A, B)
        Floats for scalar input, arrays of the broadcast shape otherwise.

    Raises
    ------
    ValueError, TypeError
        For ``mu`` outside ``(0, 1]``, non-finite derivatives or shapes that do not broadcast.
    """
    mu = check_pretraining_strength(mu)
    risk_q = real_array(risk_q, "risk_q", nonempty=False)
    risk_rho = real_array(risk_rho, "risk_rho", nonempty=False)
    try:
        shape = np.broadcast_shapes(mu.shape, risk_q.shape, risk_rho.shape)
    except ValueError:
        raise ValueError(f"mu, risk_q and risk_rho must broadcast to one shape, got shapes {mu.shape}, "
                         f"{risk_q.shape} and {risk_rho.shape}") from None
    jacobian = overlap_equations(MODEL).linearization_function(mu, risk_q, risk_rho)
    return (_as_output(np.broadcast_to(np.asarray(jacobian[0][1], dtype=float), shape), shape),
            _as_output(np.broadcast_to(np.asarray(jacobian[0][0], dtype=float), shape), shape))


@cache
def linearization_sympy(activation: str, teacher: str | None = None) -> tuple[sp.Expr, sp.Expr]:
    r"""Exact coefficients :math:`A(\mu) = -(2\mu F_q + F_\rho)` and :math:`B(\mu) = -2F_q`.

    :func:`linearization_coefficients_sympy` with :math:`(F_q, F_\rho)` from
    :func:`pretrained_risk_derivatives_sympy`. See there for the arguments and errors.
    """
    risk_q, risk_rho = pretrained_risk_derivatives_sympy(activation, teacher)
    coefficient_a, coefficient_b = linearization_coefficients_sympy()
    values = {F_Q: risk_q, F_RHO: risk_rho}
    return sp.simplify(coefficient_a.subs(values)), sp.simplify(coefficient_b.subs(values))


@cache
def _linearization_function(activation: str, teacher: str):
    coefficient_a, coefficient_b = linearization_sympy(activation, teacher)
    return sp.lambdify(MU, (coefficient_a, coefficient_b), modules="numpy")


def _quadrature(function, tolerance: float = 1e-13) -> float:
    """E over z ~ N(0, 1) of a piecewise-smooth function by adaptive quadrature.

    The real line is split at 0, where ReLU and its derivative have their kink and jump.
    """
    density = lambda z: np.exp(-0.5 * z * z) / np.sqrt(2.0 * np.pi)  # noqa: E731
    total = 0.0
    for lower, upper in ((-np.inf, 0.0), (0.0, np.inf)):
        value, _ = integrate.quad(lambda z: function(z) * density(z), lower, upper,
                                  epsabs=tolerance, epsrel=tolerance, limit=200)
        total += value
    return total


def _closed_form_linearization_pair(activation: str, teacher: str) -> bool:
    """Whether :func:`linearization` uses the sympy closed form for this student/teacher pair.

    sympy integrates every pair without a sigmoid in which the two activations are equal or one
    of them is a polynomial, in at most a few seconds; for mixed pairs of two different
    non-polynomial activations (erf and ReLU) its integration can run for minutes, so those go to
    quadrature like the sigmoid.
    """
    if not _closed_form_pair(activation, teacher):
        return False
    return activation == teacher or is_polynomial(activation) or is_polynomial(teacher)


def _quadrature_linearization(activation: str, teacher: str, mu: float) -> tuple[float, float]:
    r"""(A, B) by adaptive quadrature of the same one-dimensional formulas.

    Uses lorabook's numerically stable numpy forms of the activations (sympy's lambdified sigmoid
    overflows for large negative arguments). For a ReLU student :math:`s'(\mu z)^2 = \Theta(z)` and
    :math:`s'' = \delta`, whose term is analytic:
    :math:`\mathbb E[\delta(\mu z)(s(\mu z) - s_\star(z))] = -s_\star(0)/(\mu\sqrt{2\pi})`.
    """
    target = activation_function(teacher)
    target_first = activation_derivative(teacher)
    if activation == "relu":
        risk_q = 0.5 * (0.5 - float(target(np.array(0.0))) / (mu * np.sqrt(2.0 * np.pi)))
        risk_rho = -_quadrature(lambda z: (z > 0) * target_first(z))
    else:
        student = activation_function(activation)
        first = activation_derivative(activation)
        second = activation_second_derivative(activation)
        risk_q = 0.5 * _quadrature(
            lambda z: first(mu * z) ** 2 + second(mu * z) * (student(mu * z) - target(z))
        )
        risk_rho = -_quadrature(lambda z: first(mu * z) * target_first(z))
    return linearization_from_risk_derivatives(mu, risk_q, risk_rho)


def linearization(activation: str, mu: float | np.ndarray, teacher: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    r"""Coefficients :math:`(A(\mu), B(\mu))` of the linearised overlap flow at :math:`(u, m) = (0, 0)`.

    .. math:: \frac{d}{dt}\begin{pmatrix} u \\ m \end{pmatrix}
              = \begin{pmatrix} B & A \\ A & 0 \end{pmatrix}\begin{pmatrix} u \\ m \end{pmatrix},
              \quad A = -(2\mu F_q + F_\rho),\ B = -2F_q.

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
        (lambdified from :func:`linearization_sympy`) for pairs of equal activations and pairs
        with a polynomial; adaptive quadrature (absolute and relative tolerance 1e-13) for pairs
        with a sigmoid and mixed erf/ReLU pairs.

    Raises
    ------
    ValueError
        For an unknown activation name or ``mu`` outside ``(0, 1]``.
    """
    teacher_name = resolve_teacher(activation, teacher)
    values = check_pretraining_strength(mu)
    if not _closed_form_linearization_pair(activation, teacher_name):
        pairs = [_quadrature_linearization(activation, teacher_name, float(value)) for value in values.ravel()]
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
    r"""Positive eigenvalue :math:`\lambda_+ = (B + \sqrt{B^2 + 4A^2})/2` of ``[[B, A], [A, 0]]``.

    Evaluated as :math:`2A^2 / (\sqrt{B^2 + 4A^2} - B)` when :math:`B < 0`, which avoids the
    cancellation that would otherwise lose all digits as :math:`A \to 0` (e.g. :math:`\mu \to 1`).

    Raises
    ------
    TypeError
        If a coefficient is not a real number or array.
    ValueError
        If a coefficient is not finite.
    """
    real_array(coefficient_a, "coefficient_a", nonempty=False)
    real_array(coefficient_b, "coefficient_b", nonempty=False)
    return _escape_rate(coefficient_a, coefficient_b)


def _escape_rate(coefficient_a, coefficient_b) -> np.ndarray:
    """:func:`escape_rate` without the validation (for coefficients computed here)."""
    coefficient_a = np.asarray(coefficient_a, dtype=float)
    coefficient_b = np.asarray(coefficient_b, dtype=float)
    root = np.sqrt(coefficient_b**2 + 4.0 * coefficient_a**2)
    with np.errstate(divide="ignore", invalid="ignore"):
        stable = np.where(root - coefficient_b > 0, 2.0 * coefficient_a**2 / (root - coefficient_b), 0.0)
    return np.where(coefficient_b < 0, stable, 0.5 * (coefficient_b + root))


def search_time(activation: str, mu: float | np.ndarray, teacher: str | None = None) -> float | np.ndarray:
    r"""Characteristic search time :math:`\tau(\mu) = 1/\lambda_+` (units: learning rate x steps).

    The escape from :math:`(u, m) \approx (0, m_0)` takes about
    :math:`\tau \log(1/|m_0|) \approx (\tau/2)\log d`. :math:`\tau = \infty` where
    :math:`\lambda_+ = 0` (for example :math:`\mu = 1` with a matching teacher, where
    :math:`A = 0` and :math:`B < 0`).

    Parameters and errors as for :func:`linearization`.
    """
    coefficient_a, coefficient_b = linearization(activation, mu, teacher)
    rate = _escape_rate(coefficient_a, coefficient_b)
    with np.errstate(divide="ignore"):
        time = np.where(rate > 0, 1.0 / np.where(rate > 0, rate, 1.0), np.inf)
    return float(time) if np.ndim(time) == 0 else time


def trap_strengths_sympy(activation: str, teacher: str | None = None) -> list[sp.Expr]:
    r"""Exact roots of :math:`A(\mu)` in :math:`(0, 1)`, for pairs where :math:`A` is a polynomial in :math:`\mu`.

    At such a root :math:`\mu_c` the off-diagonal drive vanishes: :math:`\lambda_+ = \max(B, 0)`,
    so wherever :math:`B(\mu_c) < 0` the search time :math:`\tau` diverges (a *trap*). For two
    polynomial activations :math:`A(\mu)` is a polynomial (:func:`linearization_sympy`); its real
    roots are returned as exact algebraic numbers (``sympy.CRootOf`` or radicals), so
    ``root.evalf(50)`` gives them to any precision. Roots of even multiplicity are included.

    Returns
    -------
    list of sympy.Expr
        The distinct roots in the open interval :math:`(0, 1)`, increasing.

    Raises
    ------
    lorabook.toolkit.validation.UnsupportedChoiceError
        (a :class:`ValueError`, also a :class:`NotImplementedError`) if :math:`A(\mu)` is not a
        polynomial for this pair (use :func:`trap_strengths`).
    """
    teacher_name = resolve_teacher(activation, teacher)
    if not (is_polynomial(activation) and is_polynomial(teacher_name)):
        which = "activation" if not is_polynomial(activation) else "teacher"
        raise UnsupportedChoiceError(
            f"{which}={(activation if which == 'activation' else teacher_name)!r}: A(mu) is a polynomial only for two "
            f"polynomial activations (supported: {_POLYNOMIAL_NAMES}), got ({activation!r}, {teacher_name!r}); "
            "trap_strengths finds the roots numerically"
        )
    coefficient_a, _ = linearization_sympy(activation, teacher_name)
    polynomial = sp.Poly(sp.expand(coefficient_a), MU)
    roots = [root for root in sp.real_roots(polynomial) if 0 < root < 1]
    return sorted(set(roots), key=lambda root: float(root))


def trap_strengths(activation: str, teacher: str | None = None, grid_size: int = 4001) -> np.ndarray:
    r"""Every pre-training strength :math:`\mu_c \in (0, 1)` with :math:`A(\mu_c) = 0`, as floats.

    Exact polynomial roots (:func:`trap_strengths_sympy`) for two polynomial activations.
    Otherwise :math:`A` is scanned on ``grid_size`` points of :math:`(0, 1)` and each sign change
    is refined with Brent's method to machine precision; a root where :math:`A` touches zero
    without changing sign would be missed (none occurs for the book's activations, whose
    :math:`A(\mu)` are checked against the exact polynomial roots in the tests).

    Returns
    -------
    numpy.ndarray
        The roots in increasing order (empty if there is none).
    """
    from scipy import optimize

    teacher_name = resolve_teacher(activation, teacher)
    grid_size = integer(grid_size, "grid_size", minimum=3)
    check_memory(8 * (grid_size + 2), "grid_size", "the scan of A(mu) on the grid")
    if is_polynomial(activation) and is_polynomial(teacher_name):
        return np.array([float(root.evalf(30)) for root in trap_strengths_sympy(activation, teacher_name)])
    grid = np.linspace(0.0, 1.0, grid_size + 2)[1:-1]
    values, _ = linearization(activation, grid, teacher_name)
    function = lambda value: float(linearization(activation, value, teacher_name)[0])  # noqa: E731
    roots = [float(grid[i]) for i in np.flatnonzero(values == 0)]
    for i in np.flatnonzero(np.sign(values[:-1]) * np.sign(values[1:]) < 0):
        roots.append(optimize.brentq(function, grid[i], grid[i + 1], xtol=1e-15, rtol=4 * np.finfo(float).eps))
    return np.array(sorted(roots))


# ---------------------------------------------------------------------------------------------
# The full overlap flow: population risk, its gradient in (q, rho), and the ODE right-hand side.
# ---------------------------------------------------------------------------------------------

Q = sp.Symbol("q", positive=True)
r"""Student norm symbol :math:`q = \operatorname{Var}\lambda`."""
RHO = sp.Symbol("rho", real=True)
r"""Student-teacher overlap symbol :math:`\rho = \operatorname{Cov}(\lambda, \lambda_\star)`."""
U = sp.Symbol("u", real=True)
"""LoRA scale symbol :math:`u`."""
M = sp.Symbol("m", real=True)
r"""LoRA direction overlap symbol :math:`m = v\cdot w_\star`."""

# Internal stand-in for sqrt(q - rho^2) = |u| sqrt(1 - m^2): numerically it is computed from (u, m)
# directly, never by subtracting q - rho^2 (which cancels catastrophically near the boundary).
_SIGMA = sp.Symbol("sigma", nonnegative=True)
_A2 = sp.Symbol("a", real=True)
_B2 = sp.Symbol("b", real=True)

# Quadrature settings (see _conditional_expectation): inner Gauss-Hermite nodes, and the cut-off,
# panel width and nodes per panel of the outer composite Gauss-Legendre rule.
_INNER_NODES = 64
_OUTER_CUTOFF = 16.0
_OUTER_PANEL_WIDTH = 2.0
_OUTER_PANEL_NODES = 24


def lora_model(rank: int = 1) -> OverlapModel:
    r"""The LoRA single-index model of rank ``rank`` as an :class:`~lorabook.toolkit.overlap_equations.OverlapModel`.

    .. math:: w = \mu w_\star + \sum_{k=1}^{r} u_k v_k, \qquad \lVert v_k\rVert = 1,

    with statistics :math:`u_k`, :math:`m_k = v_k\cdot w_\star` and, for :math:`r > 1`,
    :math:`c_{kl} = v_k\cdot v_l` (:math:`k < l`), all zero at the start of fine-tuning. For
    :math:`r = 1` the symbols are :data:`U`, :data:`M` and :data:`MU`, the state is
    :math:`(u, m)` and :math:`\sqrt{q - \rho^2} = |u|\sqrt{(1 - m)(1 + m)}`; for :math:`r > 1`
    it is :math:`\sqrt{\sum_{kl} u_k u_l (c_{kl} - m_k m_l)}` (with :math:`c_{kk} = 1`).

    Raises
    ------
    ValueError, TypeError
        If ``rank`` is not a positive integer.
    """
    rank = integer(rank, "rank", minimum=1)
    if rank == 1:
        return OverlapModel(
            name="rank-one LoRA", parameters=(MU,), fixed_vectors=("w_star",),
            student=((MU, "w_star"), (U, "v")), trained_scalars=(U,),
            trained_vectors=(TrainedVector("v", unit=True),), overlaps=((M, "v", "w_star"),),
            statistics=(U, M), start=(sp.Integer(0), sp.Integer(0)),
            residual_norm=sp.Abs(U) * sp.sqrt((1 - M) * (1 + M)),
        )
    scales = sp.symbols(f"u1:{rank + 1}", real=True)
    overlaps = sp.symbols(f"m1:{rank + 1}", real=True)
    pairs = [(first, second) for first in range(rank) for second in range(first + 1, rank)]
    cosines = {pair: sp.Symbol(f"c{pair[0] + 1}{pair[1] + 1}", real=True) for pair in pairs}

    def cosine(k: int, j: int) -> sp.Expr:
        return sp.Integer(1) if k == j else cosines[(min(k, j), max(k, j))]

    residual = sum(scales[k] * scales[j] * (cosine(k, j) - overlaps[k] * overlaps[j])
                   for k in range(rank) for j in range(rank))
    return OverlapModel(
        name=f"rank-{rank} LoRA", parameters=(MU,), fixed_vectors=("w_star",),
        student=((MU, "w_star"), *((scales[k], f"v{k + 1}") for k in range(rank))),
        trained_scalars=tuple(scales),
        trained_vectors=tuple(TrainedVector(f"v{k + 1}", unit=True) for k in range(rank)),
        overlaps=(*((overlaps[k], f"v{k + 1}", "w_star") for k in range(rank)),
                  *((cosines[(k, j)], f"v{k + 1}", f"v{j + 1}") for k, j in pairs)),
        statistics=(*scales, *overlaps, *(cosines[pair] for pair in pairs)),
        start=(sp.Integer(0),) * (2 * rank + len(pairs)),
        residual_norm=sp.sqrt(residual),
    )


MODEL = lora_model(1)
"""The rank-one model of this module; :func:`~lorabook.toolkit.overlap_equations.overlap_equations` of it is the ODE
that
:func:`overlap_ode_rhs` evaluates."""


def check_direction_overlap(m: object, *, parameter: str = "m") -> np.ndarray:
    r"""Validate an overlap :math:`m = v\cdot w_\star \in [-1, 1]` (scalar or array) of unit vectors.

    Parameters
    ----------
    m
        The overlap(s).
    parameter
        The name of the caller's parameter that holds ``m`` (e.g. ``"initial_overlap"``), for the
        error messages.

    Raises
    ------
    TypeError
        If ``m`` is not a real number or array.
    ValueError
        If any value is not finite or lies outside ``[-1, 1]``.
    """
    return real_array(m, parameter, nonempty=False, minimum=-1.0, maximum=1.0)


def _check_scale(u: object, parameter: str = "u") -> np.ndarray:
    return real_array(u, parameter, nonempty=False)


def _overlap_state(mu: object, u: object, m: object) -> tuple[np.ndarray, ...]:
    """Validated, broadcast (mu, u, m) and the derived (q, rho, sigma = sqrt(q - rho^2))."""
    mu = check_pretraining_strength(mu)
    u = _check_scale(u)
    m = check_direction_overlap(m)
    try:
        mu, u, m = np.broadcast_arrays(mu, u, m)
    except ValueError:
        raise ValueError(f"mu, u and m must broadcast to one shape, got shapes {mu.shape}, {u.shape} and "
                         f"{m.shape}") from None
    # q = rho^2 + u^2 (1 - m^2): a sum of non-negative terms, exact to rounding near q = rho^2.
    q, rho, sigma = overlap_equations(MODEL).covariance_function(u, m, mu)
    return mu, u, m, q, rho, sigma


def _as_output(value: np.ndarray, shape: tuple[int, ...]) -> float | np.ndarray:
    value = np.asarray(value, dtype=float).reshape(shape)
    return float(value) if value.ndim == 0 else value


def _closed_form_pair(activation: str, teacher: str) -> bool:
    from lorabook.toolkit.kernels import has_closed_form

    return has_closed_form(activation, teacher)


def _to_internal(expr: sp.Expr) -> sp.Expr:
    """Kernel expression in (c11, c12, c22) -> (q, rho, sigma) with c11 = q, c12 = rho, c22 = 1.

    ``sqrt(q - rho^2)`` becomes the symbol sigma and ``asin(rho/sqrt(q))``, ``acos(rho/sqrt(q))``
    become ``atan2(rho, sigma)`` and ``atan2(sigma, rho)``: the same functions on q >= rho^2, but
    evaluated from sigma = |u| sqrt(1 - m^2) they keep full relative precision at the boundary.
    """
    from lorabook.toolkit.kernels import C11, C12, C22

    expr = sp.sympify(expr).subs({C11: Q, C12: RHO, C22: 1}, simultaneous=True)
    expr = expr.subs(sp.sqrt(Q - RHO**2), _SIGMA)
    expr = expr.subs(sp.asin(RHO / sp.sqrt(Q)), sp.atan2(RHO, _SIGMA))
    expr = expr.subs(sp.acos(RHO / sp.sqrt(Q)), sp.atan2(_SIGMA, RHO))
    if any(power.base == Q - RHO**2 for power in expr.atoms(sp.Pow)):
        # A power of q - rho^2 that is not sqrt(q - rho^2) itself would lose precision (or be
        # singular) at the boundary: refuse rather than evaluate it naively.
        raise AssertionError(f"unreduced power of q - rho^2 in {expr}")
    return expr


def _from_internal(expr: sp.Expr) -> sp.Expr:
    """Back to the symbols (q, rho) only, for printing: sigma -> sqrt(q - rho^2)."""
    expr = expr.subs(sp.atan2(RHO, _SIGMA), sp.asin(RHO / sp.sqrt(Q)))
    expr = expr.subs(sp.atan2(_SIGMA, RHO), sp.acos(RHO / sp.sqrt(Q)))
    return sp.simplify(expr.subs(_SIGMA, sp.sqrt(Q - RHO**2)))


def _safe_sqrt(x):
    # Arguments of square roots are non-negative on q >= rho^2; clip rounding residue.
    return np.sqrt(np.maximum(x, 0.0))


def _safe_asin(x):
    return np.arcsin(np.clip(x, -1.0, 1.0))


def _lambdify_internal(expr: sp.Expr):
    function = sp.lambdify(
        (Q, RHO, _SIGMA), expr,
        modules=[{"sqrt": _safe_sqrt, "asin": _safe_asin, "atan2": np.arctan2}, "numpy"],
    )
    return lambda q, rho, sigma: np.broadcast_to(np.asarray(function(q, rho, sigma), dtype=float),
                                                 np.broadcast_shapes(np.shape(q), np.shape(rho), np.shape(sigma)))


@cache
def _risk_internal(activation: str, teacher: str) -> sp.Expr:
    from lorabook.toolkit.kernels import squared_error_risk_sympy

    return _to_internal(squared_error_risk_sympy(activation, teacher, Q, RHO))


_POLYNOMIAL_NAMES = "'linear', 'He1'..'He10', their sums such as 'He1+He3' and squares such as 'He3^2'"
"""The polynomial names, for messages."""


def _no_closed_form(activation: str, teacher: str, what: str) -> UnsupportedChoiceError:
    from lorabook.toolkit.kernels import CLOSED_FORM_NAMES, closed_form_family

    which, value = ("activation", activation) if closed_form_family(activation) is None else ("teacher", teacher)
    return UnsupportedChoiceError(
        f"{which}={value!r}: no closed form for the {what} of (activation, teacher) = ({activation!r}, {teacher!r}): "
        f"pairs with the sigmoid have none (supported names: {CLOSED_FORM_NAMES}); the numerical functions of "
        "lorabook.single_index_lora.lora use quadrature instead"
    )


def risk_function_sympy(activation: str, teacher: str | None = None) -> sp.Expr:
    r"""Exact :math:`F(q, \rho) = \tfrac12\mathbb E[(s(\lambda) - s_\star(\lambda_\star))^2]` in the symbols
    :data:`Q`, :data:`RHO`.

    With :math:`K_{f,g}` the correlation kernels of :mod:`lorabook.toolkit.kernels`,

    .. math:: F(q, \rho) = \tfrac12\big[K_{s,s}(q, q, q) - 2K_{s,s_\star}(q, \rho, 1)
              + K_{s_\star,s_\star}(1, 1, 1)\big].

    Parameters
    ----------
    activation
        Student activation name (see :data:`lorabook.toolkit.activations.ACTIVATION_NAMES`).
    teacher
        Teacher activation name; ``None`` means the same as the student.

    Returns
    -------
    sympy.Expr
        :math:`F` in :data:`Q` (positive) and :data:`RHO` (real), valid on :math:`q \ge \rho^2`.

    Raises
    ------
    lorabook.toolkit.validation.UnsupportedChoiceError
        (a :class:`ValueError`, also a :class:`NotImplementedError`) for pairs involving
        ``"sigmoid"`` (no closed form; :func:`population_risk` uses quadrature).
    ValueError, TypeError
        For unknown activation names (the message lists the valid names).
    """
    teacher_name = resolve_teacher(activation, teacher)
    if not _closed_form_pair(activation, teacher_name):
        raise _no_closed_form(activation, teacher_name, "population risk")
    return _from_internal(_risk_internal(activation, teacher_name))


# --- Quadrature for pairs without closed forms -------------------------------------------------

@lru_cache(maxsize=1)
def _inner_rule() -> tuple[np.ndarray, np.ndarray]:
    """Probabilists' Gauss-Hermite nodes and weights (normalised to 1) for the inner expectation."""
    nodes, weights = np.polynomial.hermite_e.hermegauss(_INNER_NODES)
    return nodes, weights / np.sqrt(2.0 * np.pi)


@lru_cache(maxsize=1)
def _outer_rule() -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights for E over x ~ N(0, 1) of a function smooth on each half-line.

    Composite Gauss-Legendre with _OUTER_PANEL_NODES nodes on each of the panels of width
    _OUTER_PANEL_WIDTH covering [-_OUTER_CUTOFF, 0] and [0, _OUTER_CUTOFF], the Gaussian density
    folded into the weights. The cut-off drops a tail of mass below 1e-40 (with polynomial
    factors up to degree 40 below 1e-20).
    """
    panel_nodes, panel_weights = np.polynomial.legendre.leggauss(_OUTER_PANEL_NODES)
    edges = np.arange(0.0, _OUTER_CUTOFF + 0.5 * _OUTER_PANEL_WIDTH, _OUTER_PANEL_WIDTH)
    half = 0.5 * _OUTER_PANEL_WIDTH
    positive_nodes = np.concatenate([left + half * (panel_nodes + 1.0) for left in edges[:-1]])
    positive_weights = np.tile(half * panel_weights, edges.size - 1)
    nodes = np.concatenate([-positive_nodes[::-1], positive_nodes])
    weights = np.concatenate([positive_weights[::-1], positive_weights])
    return nodes, weights * np.exp(-0.5 * nodes**2) / np.sqrt(2.0 * np.pi)


def _relu_moment(n: int, mean: np.ndarray, sd: np.ndarray) -> np.ndarray:
    """E[(mean + sd y)^n 1{mean + sd y > 0}] for y ~ N(0, 1), in closed form.

    With t = mean/sd and the partial moments M_j = E[y^j 1{y > -t}], M_0 = Phi(t),
    M_1 = phi(t), M_j = (-t)^(j-1) phi(t) + (j - 1) M_(j-2) (integration by parts), the moment is
    sum_j binom(n, j) mean^(n-j) sd^j M_j. t is clipped to +-40, where phi underflows to 0 and
    Phi is exactly 0 or 1, so sd = 0 gives relu(mean)^n.
    """
    from math import comb

    from scipy import special

    mean, sd = np.broadcast_arrays(np.asarray(mean, dtype=float), np.asarray(sd, dtype=float))
    with np.errstate(divide="ignore", invalid="ignore"):
        # sd = 0: a point mass at mean; the sign of mean decides (mean = 0 gives 0 for n >= 1).
        ratio = np.where(sd > 0, mean / np.where(sd > 0, sd, 1.0), 40.0 * np.sign(mean))
    ratio = np.clip(ratio, -40.0, 40.0)
    pdf = np.exp(-0.5 * ratio**2) / np.sqrt(2.0 * np.pi)
    partial = [special.ndtr(ratio), pdf]
    for j in range(2, n + 1):
        partial.append((-ratio) ** (j - 1) * pdf + (j - 1) * partial[j - 2])
    return sum(comb(n, j) * mean ** (n - j) * sd**j * partial[j] for j in range(n + 1))


def _teacher_inner_moments(teacher: str, kind: str, mean: np.ndarray, sd: np.ndarray) -> np.ndarray:
    """E[b(mean + sd y)], y ~ N(0, 1), for b = s_*^k (kind "power1", "power2") or s_*' ("derivative").

    Closed forms for relu and relu^2 (half-line Gaussian moments, :func:`_relu_moment`); Gauss-Hermite with
    _INNER_NODES nodes otherwise (exact for polynomials up to degree 127; for erf^2 and the sigmoid,
    whose integrands are analytic with sd <= 1, the error is at rounding level).
    """

    relu_power = 1 if teacher == "relu" else 2 if squared_base(teacher) == "relu" else None
    if relu_power is not None:
        # s_* = relu^p: every kind is a half-line moment E[(mean + sd y)^n; mean + sd y > 0].
        n = {"power1": relu_power, "power2": 2 * relu_power, "derivative": relu_power - 1}[kind]
        return (relu_power if kind == "derivative" else 1) * _relu_moment(n, mean, sd)
    function = activation_function(teacher) if kind != "derivative" else activation_derivative(teacher)
    power = 2 if kind == "power2" else 1
    nodes, weights = _inner_rule()
    values = function(mean[..., None] + sd[..., None] * nodes) ** power
    return values @ weights


def _conditional_expectation(terms, teacher: str, q, rho, sigma) -> np.ndarray:
    """E[sum_k a_k(lambda) b_k(lambda_*)] by conditioning on lambda.

    With lambda = sqrt(q) x and lambda_* = (rho/sqrt(q)) x + (sigma/sqrt(q)) y, x, y independent
    standard normals, the inner expectation over y is :func:`_teacher_inner_moments` and the outer
    one over x uses the fixed rule of :func:`_outer_rule` (composite Gauss-Legendre on [-L, 0] and
    [0, L], so a kink of the student or of a ReLU teacher at 0 sits on a panel edge). Every
    integrand here is smooth on each half-line and bounded by a polynomial times exp(-x^2/2), so
    the rule converges exponentially; tests/single_index_lora/test_lora.py checks it against adaptive quadrature to
    1e-11 absolute. Vectorised over all evaluation points at once (about 1000x faster than the
    adaptive rule, which matters inside ODE solvers).

    ``terms`` is a list of (a, kind) with a a numpy function of lambda and kind one of "one",
    "power1", "power2", "derivative" (b = 1, s_*, s_*^2, s_*').
    """
    q, rho, sigma = (np.asarray(v, dtype=float).ravel() for v in (q, rho, sigma))
    scale = np.sqrt(q)
    positive = scale > 0
    # q = 0 means w = 0: lambda = 0 and rho = 0, so lambda_* is independent of lambda.
    slope = np.divide(rho, scale, out=np.zeros_like(rho), where=positive)
    residual = np.divide(sigma, scale, out=np.ones_like(sigma), where=positive)
    nodes, weights = _outer_rule()
    # Shape (n_points, n_nodes): every evaluation point against every outer node at once.
    x = nodes[None, :]
    student_value = scale[:, None] * x
    mean = slope[:, None] * x
    sd = np.broadcast_to(residual[:, None], mean.shape)
    total = np.zeros_like(mean)
    for student_factor, kind in terms:
        inner = 1.0 if kind == "one" else _teacher_inner_moments(teacher, kind, mean, sd)
        total = total + student_factor(student_value) * inner
    return total @ weights


def _risk_quadrature(activation: str, teacher: str, q, rho, sigma) -> np.ndarray:
    student = activation_function(activation)
    terms = [(lambda z: student(z) ** 2, "one"), (lambda z: -2.0 * student(z), "power1"),
             (lambda z: np.ones_like(z), "power2")]
    return 0.5 * _conditional_expectation(terms, teacher, q, rho, sigma)


def population_risk(
    activation: str,
    mu: float | np.ndarray,
    u: float | np.ndarray,
    m: float | np.ndarray,
    teacher: str | None = None,
) -> float | np.ndarray:
    r"""Population risk :math:`R(u, m) = F(q, \rho)` of the rank-one LoRA model.

    .. math:: R(u, m) = \tfrac12\mathbb E\big[(s(\lambda) - s_\star(\lambda_\star))^2\big],
              \quad q = \mu^2 + u^2 + 2\mu u m,\ \rho = \mu + u m.

    Parameters
    ----------
    activation
        Student activation name (see :data:`lorabook.toolkit.activations.ACTIVATION_NAMES`).
    mu
        Pre-training strength(s) in ``(0, 1]``.
    u
        LoRA scale(s), any real numbers.
    m
        Overlap(s) :math:`m = v\cdot w_\star` in ``[-1, 1]``.
    teacher
        Teacher activation name; ``None`` for the same as the student.

    Returns
    -------
    float or numpy.ndarray
        A float when ``mu``, ``u``, ``m`` are scalars, else an array of their broadcast shape.
        Exact (lambdified :func:`risk_function_sympy`) where a closed form exists; for pairs with
        the sigmoid, :math:`\tfrac12\mathbb E[(s - s_\star)^2]` by quadrature (inner
        Gauss-Hermite, outer composite Gauss-Legendre; absolute error below about 1e-11).

    Raises
    ------
    ValueError, TypeError
        For unknown activation names, ``mu`` outside ``(0, 1]``, ``|m| > 1`` or non-finite ``u``.
    """
    teacher_name = resolve_teacher(activation, teacher)
    _, _, _, q, rho, sigma = _overlap_state(mu, u, m)
    return _as_output(_risk_at(activation, teacher_name, q, rho, sigma), q.shape)


def _risk_at(activation: str, teacher: str, q, rho, sigma) -> np.ndarray:
    """F(q, rho) with sigma = sqrt(q - rho^2) given separately (names already validated)."""
    if _closed_form_pair(activation, teacher):
        return _risk_function(activation, teacher)(q, rho, sigma)
    return _risk_quadrature(activation, teacher, q, rho, sigma).reshape(np.shape(q))


@cache
def _risk_function(activation: str, teacher: str):
    return _lambdify_internal(_risk_internal(activation, teacher))


# --- The gradient of F: Price's-theorem forms --------------------------------------------------

def _gaussian_mean_sympy(name: str, variance: sp.Expr) -> sp.Expr:
    """Exact E[t(b)] for b ~ N(0, variance): Wick for polynomials, half line for relu, 0 for erf."""
    if is_polynomial(name):
        return gaussian_expectation_sympy(activation_sympy(name, _B2), (_B2,), variance)
    if name == "relu":
        return half_line_expectation_sympy(_B2, _B2, variance)
    if name == "erf":
        if sp.erf(-_B2) != -sp.erf(_B2):
            raise AssertionError("erf is odd")
        return sp.Integer(0)
    raise AssertionError(name)


@cache
def _risk_derivatives_internal(activation: str, teacher: str) -> tuple[sp.Expr, sp.Expr]:
    """(F_q, F_rho) in (q, rho, sigma) for a closed-form pair; see :func:`risk_derivatives_sympy`."""
    from lorabook.toolkit.kernels import C11, C12, correlation_kernel_sympy

    self_slope = sp.diff(correlation_kernel_sympy(activation, activation, Q, Q, Q), Q)
    cross = correlation_kernel_sympy(activation, teacher)
    cross_c12 = _to_internal(sp.simplify(sp.diff(cross, C12)))
    if activation == "relu":
        # d/dc11 E[relu(a) t(b)] = E[delta(a) t(b)]/2 = p_a(0) E[t(b) | a = 0]/2, with
        # b | a = 0 ~ N(0, c22 - c12^2/c11) = N(0, sigma^2/q).
        variance = sp.Symbol("V", positive=True)
        conditional_mean = _gaussian_mean_sympy(teacher, variance).subs(variance, _SIGMA**2 / Q)
        cross_c11 = sp.Rational(1, 2) / sp.sqrt(2 * sp.pi * Q) * conditional_mean
    else:
        cross_c11 = _to_internal(sp.simplify(sp.diff(cross, C11)))
    risk_q = sp.simplify(self_slope / 2 - cross_c11)
    risk_rho = sp.simplify(-cross_c12)
    return risk_q, risk_rho


def risk_derivatives_sympy(activation: str, teacher: str | None = None) -> tuple[sp.Expr, sp.Expr]:
    r"""Exact :math:`(F_q, F_\rho)` in the symbols :data:`Q`, :data:`RHO`, valid on all of :math:`q \ge \rho^2`.

    Gaussian integration by parts (Price's theorem, :math:`\partial_{c_{12}}\mathbb E[f(a)g(b)] =
    \mathbb E[f'(a)g'(b)]`, :math:`\partial_{c_{11}}\mathbb E[f(a)g(b)] = \tfrac12\mathbb E[f''(a)g(b)]`)
    and the heat equation :math:`\tfrac{d}{dq}\mathbb E[s(\lambda)^2] = \mathbb E[s'(\lambda)^2 +
    s(\lambda)s''(\lambda)]`
    (all entries of the covariance of :math:`(\lambda, \lambda)` move together) give

    .. math:: F_\rho = -\mathbb E[s'(\lambda)\,s_\star'(\lambda_\star)], \qquad
              F_q = \tfrac12\mathbb E\big[s'(\lambda)^2 + s(\lambda)s''(\lambda)\big]
                    - \tfrac12\mathbb E\big[s''(\lambda)\,s_\star(\lambda_\star)\big].

    The first term of :math:`F_q` is :math:`\tfrac{d}{dq}K_{s,s}(q,q,q)`, a smooth function of
    :math:`q`; :math:`F_\rho` is :math:`\partial_{c_{12}}K_{s,s_\star}` (bounded on the closed
    cone for every pair). The last term is :math:`\partial_{c_{11}}K_{s,s_\star}` for smooth
    students; for ReLU, :math:`s'' = \delta` and it is evaluated as
    :math:`p_\lambda(0)\,\mathbb E[s_\star(\lambda_\star)\mid\lambda = 0]`, e.g.
    :math:`\mathbb E[\delta(\lambda)\mathrm{relu}(\lambda_\star)] = \sqrt{q - \rho^2}/(2\pi q)`.
    Differentiating
    the ReLU kernel in :math:`c_{11}` directly would instead produce terms in
    :math:`(q - \rho^2)^{-1/2}` that cancel only analytically.

    Parameters
    ----------
    activation, teacher
        Student and teacher names; ``teacher=None`` means the same as the student.

    Returns
    -------
    (F_q, F_rho) : tuple of sympy.Expr

    Raises
    ------
    lorabook.toolkit.validation.UnsupportedChoiceError
        (a :class:`ValueError`, also a :class:`NotImplementedError`) for pairs involving
        ``"sigmoid"`` (use :func:`risk_derivatives`, which uses quadrature).
    """
    teacher_name = resolve_teacher(activation, teacher)
    if not _closed_form_pair(activation, teacher_name):
        raise _no_closed_form(activation, teacher_name, "risk gradient")
    return tuple(_from_internal(expr) for expr in _risk_derivatives_internal(activation, teacher_name))


@cache
def _risk_derivative_functions(activation: str, teacher: str):
    return tuple(_lambdify_internal(expr) for expr in _risk_derivatives_internal(activation, teacher))


def _risk_derivatives_quadrature(activation: str, teacher: str, q, rho, sigma) -> tuple[np.ndarray, np.ndarray]:
    """The same Price's-theorem forms, by quadrature, for pairs involving the sigmoid."""
    from lorabook.toolkit.kernels import correlation_kernel_sympy

    first = activation_derivative(activation)
    if not _closed_form_pair(activation, activation):
        student = activation_function(activation)
        second = activation_second_derivative(activation)
        self_slope = _conditional_expectation([(lambda z: first(z) ** 2 + student(z) * second(z), "one")],
                                              teacher, q, rho, sigma)
    else:
        self_slope = _lambdify_internal(sp.diff(correlation_kernel_sympy(activation, activation, Q, Q, Q), Q))(
            q, rho, sigma)
    cross_c12 = _conditional_expectation([(first, "derivative")], teacher, q, rho, sigma)
    if activation == "relu":
        scale = np.sqrt(q)
        with np.errstate(divide="ignore", invalid="ignore"):
            residual = np.where(scale > 0, sigma / np.where(scale > 0, scale, 1.0), 1.0)
            density_at_zero = 1.0 / np.sqrt(2.0 * np.pi * q)
        conditional_mean = _teacher_inner_moments(teacher, "power1", np.zeros_like(q), residual)
        cross_c11 = 0.5 * density_at_zero * conditional_mean
    else:
        second = activation_second_derivative(activation)
        cross_c11 = 0.5 * _conditional_expectation([(second, "power1")], teacher, q, rho, sigma)
    return 0.5 * self_slope - cross_c11, -cross_c12


def _risk_derivatives_at(activation: str, teacher: str, q, rho, sigma) -> tuple[np.ndarray, np.ndarray]:
    if _closed_form_pair(activation, teacher):
        risk_q, risk_rho = (f(q, rho, sigma) for f in _risk_derivative_functions(activation, teacher))
        return np.asarray(risk_q, dtype=float), np.asarray(risk_rho, dtype=float)
    risk_q, risk_rho = _risk_derivatives_quadrature(activation, teacher, q, rho, sigma)
    return risk_q.reshape(q.shape), risk_rho.reshape(q.shape)


def risk_derivatives(
    activation: str,
    mu: float | np.ndarray,
    u: float | np.ndarray,
    m: float | np.ndarray,
    teacher: str | None = None,
) -> tuple[float | np.ndarray, float | np.ndarray]:
    r""":math:`(F_q, F_\rho)` at :math:`q = \mu^2 + u^2 + 2\mu u m`, :math:`\rho = \mu + u m`.

    Evaluates the Price's-theorem forms of :func:`risk_derivatives_sympy` (lambdified), with
    :math:`\sqrt{q - \rho^2}` computed as :math:`|u|\sqrt{1 - m^2}` so that the boundary
    :math:`q = \rho^2` (:math:`u = 0` or :math:`m = \pm1`, where fine-tuning starts) keeps full
    precision. At :math:`u = 0` the result equals :func:`pretrained_risk_derivatives_sympy`. Pairs
    with the sigmoid use the same forms by quadrature (absolute error below about 1e-10).

    For a ReLU student, :math:`F_q` contains :math:`p_\lambda(0) \propto q^{-1/2}` and diverges at
    :math:`w = 0` (:math:`q = 0`, i.e. :math:`u = \mu, m = -1` or :math:`u = -\mu, m = 1`), where
    the ReLU risk is not differentiable; the result there is ``inf`` or ``nan``.

    Parameters and errors as for :func:`population_risk`.

    Returns
    -------
    (F_q, F_rho)
        Floats for scalar input, arrays of the broadcast shape otherwise.
    """
    teacher_name = resolve_teacher(activation, teacher)
    _, _, _, q, rho, sigma = _overlap_state(mu, u, m)
    with np.errstate(divide="ignore", invalid="ignore"):
        risk_q, risk_rho = _risk_derivatives_at(activation, teacher_name, q, rho, sigma)
    return _as_output(risk_q, q.shape), _as_output(risk_rho, q.shape)


# --- The risk as a function of the covariances: the public layer for variants ------------------

def _covariance_state(activation: object, teacher: object, rho: object, residual_norm: object):
    teacher_name = resolve_teacher(activation, teacher)
    rho = real_array(rho, "rho", nonempty=False)
    residual_norm = real_array(residual_norm, "residual_norm", nonempty=False, minimum=0.0)
    try:
        rho, residual_norm = np.broadcast_arrays(rho, residual_norm)
    except ValueError:
        raise ValueError(f"rho and residual_norm must broadcast to one shape, got shapes {rho.shape} and "
                         f"{residual_norm.shape}") from None
    return teacher_name, rho**2 + residual_norm**2, rho, residual_norm


def risk_of_covariances(activation: str, rho: float | np.ndarray, residual_norm: float | np.ndarray,
                        teacher: str | None = None) -> float | np.ndarray:
    r"""The population risk :math:`F(q, \rho) = \tfrac12\mathbb E[(s(\lambda) - s_\star(\lambda_\star))^2]`.

    For preactivations with :math:`\operatorname{Var}\lambda_\star = 1`,
    :math:`\operatorname{Cov}(\lambda, \lambda_\star) = \rho` and
    :math:`\operatorname{Var}\lambda = q = \rho^2 + \sigma^2`, where :math:`\sigma` =
    ``residual_norm`` :math:`= \sqrt{q - \rho^2}` is given directly (a model computes it without
    cancellation, e.g. :math:`|u|\sqrt{1 - m^2}`). This is the layer every variant of the model
    (non-aligned pre-training, label change, curriculum) evaluates its risk with.

    Parameters
    ----------
    activation, teacher
        Student and teacher names (:func:`lorabook.toolkit.activations.check_target`); ``teacher=None``
        is the student.
    rho
        :math:`\rho`, any real numbers (scalar or array).
    residual_norm
        :math:`\sigma = \sqrt{q - \rho^2} \ge 0`, broadcasting with ``rho``.

    Returns
    -------
    float or numpy.ndarray
        Exact where a closed form exists, quadrature otherwise (see :func:`population_risk`).

    Raises
    ------
    ValueError, TypeError
        For unknown names, non-finite values or a negative ``residual_norm``.
    """
    teacher_name, q, rho, sigma = _covariance_state(activation, teacher, rho, residual_norm)
    return _as_output(_risk_at(activation, teacher_name, q, rho, sigma), q.shape)


def risk_derivatives_of_covariances(
    activation: str, rho: float | np.ndarray, residual_norm: float | np.ndarray, teacher: str | None = None,
) -> tuple[float | np.ndarray, float | np.ndarray]:
    r""":math:`(F_q, F_\rho)` at :math:`q = \rho^2 + \sigma^2`, :math:`\rho`, in the Price's-theorem forms.

    These are the numbers that :data:`~lorabook.toolkit.overlap_equations.F_Q` and
    :data:`~lorabook.toolkit.overlap_equations.F_RHO` stand for in every derived drift
    (:func:`risk_derivatives_sympy` gives the closed forms). Parameters and errors as for
    :func:`risk_of_covariances`.
    """
    teacher_name, q, rho, sigma = _covariance_state(activation, teacher, rho, residual_norm)
    with np.errstate(divide="ignore", invalid="ignore"):
        risk_q, risk_rho = _risk_derivatives_at(activation, teacher_name, q, rho, sigma)
    return _as_output(risk_q, q.shape), _as_output(risk_rho, q.shape)


def gradient_factor_of_covariances(
    activation: str, rho: float | np.ndarray, residual_norm: float | np.ndarray, teacher: str | None = None,
) -> float | np.ndarray:
    r""":math:`K = \mathbb E[(s(\lambda) - s_\star(\lambda_\star))^2\,s'(\lambda)^2]` at :math:`(q, \rho)`.

    The number that :data:`~lorabook.toolkit.overlap_equations.GRADIENT_FACTOR` stands for in the
    finite-learning-rate corrections (:func:`gradient_second_moment` is :math:`u^2 K`).
    Parameters and errors as for :func:`risk_of_covariances`.
    """
    teacher_name, q, rho, sigma = _covariance_state(activation, teacher, rho, residual_norm)
    return _as_output(_gradient_factor_at(activation, teacher_name, q, rho, sigma), q.shape)


def check_noise_strength(noise_strength: object, *, parameter: str = "noise_strength") -> np.ndarray:
    r"""Validate :math:`\delta = \eta d / B \ge 0` (scalar or array); return it as a float array.

    Raises
    ------
    TypeError
        If ``noise_strength`` is not a real number or array.
    ValueError
        If a value is negative or not finite.
    """
    return real_array(noise_strength, parameter, nonempty=False, minimum=0.0)


# --- The overlap ODE ---------------------------------------------------------------------------

@cache
def _gradient_factor_internal(activation: str, teacher: str) -> sp.Expr:
    """E[(s(lambda) - s_*(lambda_*))^2 s'(lambda)^2] in (q, rho) by Wick, for polynomial pairs."""
    student = activation_sympy(activation, _A2)
    target = activation_sympy(teacher, _B2)
    integrand = (student - target) ** 2 * sp.diff(student, _A2) ** 2
    return sp.factor(gaussian_expectation_sympy(integrand, (_A2, _B2), (Q, RHO, 1)))


def gradient_second_moment_sympy(activation: str, teacher: str | None = None) -> sp.Expr:
    r"""Exact :math:`\mathbb E[(s(\lambda) - s_\star(\lambda_\star))^2\,s'(\lambda)^2]` in :data:`Q`, :data:`RHO`,
    for polynomial pairs.

    :math:`\mathbb E[G^2]` of :func:`gradient_second_moment` is :math:`u^2` times this. Computed by
    Wick's theorem (:func:`lorabook.toolkit.gaussian.gaussian_expectation_sympy`) with
    :math:`\operatorname{Var}\lambda = q`, :math:`\operatorname{Var}\lambda_\star = 1`,
    :math:`\operatorname{Cov} = \rho`.

    Raises
    ------
    lorabook.toolkit.validation.UnsupportedChoiceError
        (a :class:`ValueError`, also a :class:`NotImplementedError`) unless both activations are
        polynomials (linear or Hermite); the other pairs are evaluated by quadrature in
        :func:`gradient_second_moment`.
    """
    teacher_name = resolve_teacher(activation, teacher)
    if not (is_polynomial(activation) and is_polynomial(teacher_name)):
        which = "activation" if not is_polynomial(activation) else "teacher"
        raise UnsupportedChoiceError(
            f"{which}={(activation if which == 'activation' else teacher_name)!r}: gradient_second_moment_sympy needs "
            f"two polynomial activations (supported: {_POLYNOMIAL_NAMES}), got ({activation!r}, {teacher_name!r}); "
            "gradient_second_moment evaluates the others by quadrature"
        )
    return _gradient_factor_internal(activation, teacher_name)


@cache
def _gradient_factor_function(activation: str, teacher: str):
    return _lambdify_internal(_gradient_factor_internal(activation, teacher))


@cache
def _erf_gradient_factor_internal(teacher: str) -> sp.Expr:
    """E[(erf(lambda) - s_*(lambda_*))^2 erf'(lambda)^2] in closed form, for erf or polynomial teachers.

    erf'(lambda)^2 = c exp(-2 lambda^2) (c = 4/pi, read off sympy's derivative) tilts the Gaussian
    law of (lambda, lambda_*): E[f exp(-2 lambda^2)] = Z E'[f] with precision
    Sigma'^{-1} = Sigma^{-1} + diag(4, 0) and Z = sqrt(det Sigma' / det Sigma). Under Sigma' the
    remaining expectation is three correlation kernels with closed forms (lorabook.toolkit.kernels).
    """
    from lorabook.toolkit.kernels import correlation_kernel_sympy

    z = sp.Symbol("z", real=True)
    weight = sp.simplify(sp.diff(sp.erf(z), z) ** 2 / sp.exp(-2 * z**2))
    if weight.has(z):
        raise AssertionError(weight)
    covariance = sp.Matrix([[Q, RHO], [RHO, 1]])
    tilted = sp.simplify((covariance.inv() + sp.diag(4, 0)).inv())
    normaliser = sp.sqrt(sp.simplify(tilted.det() / covariance.det()))
    c11, c12, c22 = tilted[0, 0], tilted[0, 1], tilted[1, 1]
    square = (correlation_kernel_sympy("erf", "erf", c11, c11, c11)
              - 2 * correlation_kernel_sympy("erf", teacher, c11, c12, c22)
              + correlation_kernel_sympy(teacher, teacher, c22, c22, c22))
    return sp.simplify(weight * normaliser * square)


@cache
def _erf_gradient_factor_function(teacher: str):
    return _lambdify_internal(_erf_gradient_factor_internal(teacher))


def _gradient_factor_at(activation: str, teacher: str, q, rho, sigma) -> np.ndarray:
    if is_polynomial(activation) and is_polynomial(teacher):
        return np.asarray(_gradient_factor_function(activation, teacher)(q, rho, sigma), dtype=float)
    if activation == "erf" and (teacher == "erf" or is_polynomial(teacher)):
        return np.asarray(_erf_gradient_factor_function(teacher)(q, rho, sigma), dtype=float)
    student = activation_function(activation)
    first = activation_derivative(activation)
    terms = [(lambda z: (student(z) * first(z)) ** 2, "one"),
             (lambda z: -2.0 * student(z) * first(z) ** 2, "power1"),
             (lambda z: first(z) ** 2, "power2")]
    return _conditional_expectation(terms, teacher, q, rho, sigma).reshape(q.shape)


def gradient_second_moment(
    activation: str,
    mu: float | np.ndarray,
    u: float | np.ndarray,
    m: float | np.ndarray,
    teacher: str | None = None,
) -> float | np.ndarray:
    r"""Mean square :math:`\mathbb E[G^2]` of the per-sample gradient coefficient on :math:`v`.

    The gradient of the per-sample loss :math:`\tfrac12(s(\lambda) - s_\star(\lambda_\star))^2`
    with respect to :math:`v` is :math:`G\,x` with

    .. math:: G = u\,(s(\lambda) - s_\star(\lambda_\star))\,s'(\lambda), \qquad
              \mathbb E[G^2] = u^2\,\mathbb E\big[(s(\lambda) - s_\star(\lambda_\star))^2 s'(\lambda)^2\big].

    Parameters
    ----------
    activation, mu, u, m, teacher
        As for :func:`population_risk`.

    Returns
    -------
    float or numpy.ndarray
        Exact for two polynomials (Wick, :func:`gradient_second_moment_sympy`) and for an erf
        student with an erf or polynomial teacher (:math:`\operatorname{erf}'(\lambda)^2 \propto e^{-2\lambda^2}`
        tilts the Gaussian law, leaving closed-form kernels). Otherwise by
        conditioning on :math:`\lambda`: the inner expectation over :math:`\lambda_\star` is a
        closed form for a ReLU teacher and 64-node Gauss-Hermite otherwise (exact for polynomial
        teachers), the outer one a fixed composite Gauss-Legendre rule split at :math:`\lambda = 0`
        (absolute error below about 1e-11 before the factor :math:`u^2`).

    Raises
    ------
    ValueError, TypeError
        As for :func:`population_risk`.
    """
    teacher_name = resolve_teacher(activation, teacher)
    _, u, _, q, rho, sigma = _overlap_state(mu, u, m)
    value = u**2 * _gradient_factor_at(activation, teacher_name, q, rho, sigma)
    return _as_output(value, q.shape)


def overlap_ode_rhs(
    activation: str,
    mu: float | np.ndarray,
    u: float | np.ndarray,
    m: float | np.ndarray,
    teacher: str | None = None,
    noise_strength: float | np.ndarray = 0.0,
) -> tuple[float | np.ndarray, float | np.ndarray]:
    r"""Right-hand side :math:`(\dot u, \dot m)` of the overlap ODE, time :math:`t` = learning rate x steps.

    .. math:: \frac{du}{dt} = -\partial_u R = -\big(F_q\,(2u + 2\mu m) + F_\rho\, m\big),

    .. math:: \frac{dm}{dt} = -(1 - m^2)\,\partial_m R - \frac{\delta}{2}\, m\, \mathbb E[G^2],
              \qquad \partial_m R = u\,(2\mu F_q + F_\rho),

    with :math:`\delta` = ``noise_strength`` :math:`= \eta d / B` and :math:`\mathbb E[G^2]` from
    :func:`gradient_second_moment`.

    Derivation of the :math:`\delta` term. One SGD step on a batch of :math:`B` fresh samples
    moves :math:`v \to v' = (v - \eta g)/\lVert v - \eta g\rVert` with
    :math:`g = B^{-1}\sum_\nu G_\nu x_\nu`. Then
    :math:`\lVert v - \eta g\rVert^{-1} = 1 + \eta\, g\cdot v - \tfrac{\eta^2}{2}\lVert g\rVert^2 +
    O(\eta^2)`,
    where only :math:`\eta^2\lVert g\rVert^2` is kept at second order because it is large:
    :math:`\lVert g\rVert^2 = B^{-2}\sum_\nu G_\nu^2 \lVert x_\nu\rVert^2 + B^{-2}\sum_{\nu\ne\nu'}G_\nu
    G_{\nu'} x_\nu\cdot x_{\nu'}`
    has mean :math:`(d/B)\,\mathbb E[G^2] + O(1)`, so :math:`\eta^2\lVert g\rVert^2 \approx
    \eta\,\delta\,\mathbb E[G^2]`
    is of the same order :math:`\eta` as the drift. Multiplying by :math:`m - \eta\, g\cdot w_\star`,
    :math:`m' = m - \eta\,(g\cdot w_\star - m\, g\cdot v) - \tfrac{\eta\delta}{2} m\,\mathbb E[G^2] +
    O(\eta^2)`.
    The mean of :math:`g` is :math:`\nabla_v R = \partial_m R\, w_\star` (the risk depends on
    :math:`v` only through :math:`m`), so :math:`\mathbb E[g\cdot w_\star - m\, g\cdot v] = (1 - m^2)\,\partial_m
    R`;
    the fluctuations average out over the :math:`1/\eta` steps of a unit of time. Dividing by
    :math:`\eta` gives the equation above. :math:`u` is not renormalised: :math:`du/dt` has no such term.

    Parameters
    ----------
    activation, mu, u, m, teacher
        As for :func:`population_risk`.
    noise_strength
        :math:`\delta = \eta d / B \ge 0`; ``0`` gives the gradient flow (the limit
        :math:`\eta \to 0` at fixed :math:`B/d`).

    Returns
    -------
    (du_dt, dm_dt)
        Floats for scalar input, arrays of the broadcast shape otherwise.

    Raises
    ------
    ValueError, TypeError
        As for :func:`population_risk`, or a negative / non-finite ``noise_strength``.

    Notes
    -----
    At the fixed point :math:`(u, m) = (0, 0)` the Jacobian is
    :math:`\begin{pmatrix} B & A \\ A & 0 \end{pmatrix}` of :func:`linearization` (the
    :math:`\delta` term is :math:`O(u^2 m)`). For a ReLU student :math:`\dot u` is undefined at
    :math:`w = 0` (:math:`u = \pm\mu`, :math:`m = \mp 1`), where the ReLU risk is not differentiable.
    """
    teacher_name = resolve_teacher(activation, teacher)
    noise = check_noise_strength(noise_strength)
    mu, u, m, q, rho, sigma = _overlap_state(mu, u, m)
    with np.errstate(divide="ignore", invalid="ignore"):
        risk_q, risk_rho = _risk_derivatives_at(activation, teacher_name, q, rho, sigma)
    equations = overlap_equations(MODEL)
    du_dt, dm_dt = equations.drift_function(u, m, mu, risk_q, risk_rho)
    if np.any(noise > 0):
        factor = noise * _gradient_factor_at(activation, teacher_name, q, rho, sigma)
        correction_u, correction_m = equations.correction_function(u, m, mu)
        du_dt, dm_dt = du_dt + factor * correction_u, dm_dt + factor * correction_m
    shape = np.broadcast_shapes(q.shape, noise.shape)
    return _as_output(np.broadcast_to(du_dt, shape), shape), _as_output(np.broadcast_to(dm_dt, shape), shape)


def overlap_drift_sympy(activation: str, teacher: str | None = None) -> tuple[sp.Expr, sp.Expr]:
    r"""Gradient-flow drift :math:`(\dot u, \dot m)` at :math:`\delta = 0` as sympy expressions in :data:`U`,
    :data:`M`, :data:`MU`.

    .. math:: \dot u = -\big(F_q\,(2u + 2\mu m) + F_\rho m\big), \qquad
              \dot m = -(1 - m^2)\,u\,(2\mu F_q + F_\rho),

    with :math:`(F_q, F_\rho)` from :func:`risk_derivatives_sympy` at
    :math:`q = \mu^2 + u^2 + 2\mu u m`, :math:`\rho = \mu + u m` and
    :math:`\sqrt{q - \rho^2} = |u|\sqrt{1 - m^2}`.

    Raises
    ------
    lorabook.toolkit.validation.UnsupportedChoiceError
        (a :class:`ValueError`, also a :class:`NotImplementedError`) for pairs involving
        ``"sigmoid"`` (use :func:`overlap_ode_rhs`).
    """
    teacher_name = resolve_teacher(activation, teacher)
    if not _closed_form_pair(activation, teacher_name):
        raise _no_closed_form(activation, teacher_name, "overlap drift")
    equations = overlap_equations(MODEL)
    q, rho = equations.covariances
    substitution = {Q: q, RHO: rho, _SIGMA: sp.Abs(U) * sp.sqrt(1 - M**2)}
    risk_q, risk_rho = (expr.subs(substitution, simultaneous=True)
                        for expr in _risk_derivatives_internal(activation, teacher_name))
    return tuple(sp.simplify(drift.subs({F_Q: risk_q, F_RHO: risk_rho}, simultaneous=True))
                 for drift in equations.drift)
