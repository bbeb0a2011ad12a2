r"""Gaussian correlation kernels of pairs of named activations.

For centred jointly Gaussian :math:`(a, b)` with covariance
:math:`C = \begin{pmatrix} c_{11} & c_{12} \\ c_{12} & c_{22} \end{pmatrix}` the correlation
kernel of activations :math:`f, g` is

.. math:: K_{f,g}(c_{11}, c_{12}, c_{22}) = \mathbb{E}[f(a)\, g(b)].

Every population risk in the book is a combination of such kernels, e.g. with
:math:`\operatorname{Var}\lambda = q`, :math:`\operatorname{Var}\lambda_\star = 1`,
:math:`\operatorname{Cov}(\lambda, \lambda_\star) = \rho`,

.. math:: F(q, \rho) = \tfrac12 \big[K_{s,s}(q, q, q) - 2 K_{s,s_\star}(q, \rho, 1)
    + K_{s_\star,s_\star}(1, 1, 1)\big].

Closed forms (:func:`correlation_kernel_sympy`) are *derived* here with sympy, never typed in:

* two polynomials: Wick's theorem (:func:`lorabook.toolkit.gaussian.gaussian_expectation_sympy`);
* a polynomial and erf or ReLU: regress :math:`a` on :math:`b`, then one-dimensional exact moments;
* (erf, erf) and (relu, relu): Price's theorem
  :math:`\partial_{c_{12}} K_{f,g} = K_{f',g'}`, integrated in :math:`c_{12}` from the
  independent case :math:`c_{12} = 0` (:func:`erf_kernel_derivation`,
  :func:`relu_kernel_derivation`);
* (erf, relu): :math:`\mathrm{relu}(b) = (b + |b|)/2` and :math:`\mathbb{E}[\operatorname{erf}(a)|b|] = 0`
  by symmetry, so :math:`K_{\mathrm{erf},\mathrm{relu}} = K_{\mathrm{erf},\mathrm{linear}}/2`.

Pairs involving the sigmoid have no closed form; :func:`correlation_kernel` evaluates them by
two-dimensional Gauss-Hermite quadrature with an error estimate.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache, lru_cache
from typing import NamedTuple

import numpy as np
import sympy as sp

from lorabook.toolkit.activations import activation, activation_sympy, check_target, is_polynomial
from lorabook.toolkit.gaussian import (
    DEFAULT_NODES_2D,
    check_covariance_2d,
    gaussian_expectation_2d,
    gaussian_expectation_sympy,
    gaussian_weighted_expectation_sympy,
    half_line_expectation_sympy,
)
from lorabook.toolkit.validation import UnsupportedChoiceError, check_memory, integer

C11 = sp.Symbol("c_11", positive=True)
r"""Variance of the first preactivation, :math:`c_{11} = \operatorname{Var} a`."""
C12 = sp.Symbol("c_12", real=True)
r"""Covariance of the two preactivations, :math:`c_{12} = \operatorname{Cov}(a, b)`."""
C22 = sp.Symbol("c_22", positive=True)
r"""Variance of the second preactivation, :math:`c_{22} = \operatorname{Var} b`."""

_A = sp.Symbol("a", real=True)
_B = sp.Symbol("b", real=True)
_XI = sp.Symbol("xi", real=True)
_T = sp.Symbol("t", real=True)  # integration variable standing for c12


class KernelDerivation(NamedTuple):
    """The steps of a Price's-theorem derivation of a kernel, in :data:`C11`, :data:`C12`, :data:`C22`."""

    derivative_kernel: sp.Expr
    r""":math:`\partial_{c_{12}} K_{f,g} = \mathbb{E}[f'(a)\, g'(b)]`."""
    value_at_zero: sp.Expr
    r""":math:`K_{f,g}` at :math:`c_{12} = 0`, i.e. :math:`\mathbb{E}[f(a)]\,\mathbb{E}[g(b)]`."""
    kernel: sp.Expr
    r""":math:`K_{f,g} = K_{f,g}|_{c_{12}=0} + \int_0^{c_{12}} \mathbb{E}[f'(a) g'(b)]\,dc_{12}'`."""


@lru_cache(maxsize=1)
def gaussian_exponential_moment_sympy() -> sp.Expr:
    r"""Derive :math:`\mathbb{E}[e^{-\gamma z^2}]` for :math:`z \sim \mathcal N(m, v)` by direct integration.

    .. math:: \mathbb{E}[e^{-\gamma z^2}] = \frac{1}{\sqrt{1 + 2\gamma v}}
        \exp\Big(-\frac{\gamma m^2}{1 + 2\gamma v}\Big).

    Returns
    -------
    sympy.Expr
        The expectation in the symbols ``gamma`` (positive), ``m`` (real), ``v`` (positive).
    """
    z = sp.Symbol("z", real=True)
    gamma, v = sp.symbols("gamma v", positive=True)
    m = sp.Symbol("m", real=True)
    density = sp.exp(-((z - m) ** 2) / (2 * v)) / sp.sqrt(2 * sp.pi * v)
    result = sp.integrate(sp.exp(-gamma * z**2) * density, (z, -sp.oo, sp.oo))
    return sp.simplify(sp.factor(sp.simplify(result)))


def _integrate_in_c12(integrand: sp.Expr, scale_name: str, scale: sp.Expr) -> sp.Expr:
    """Integrate ``integrand`` (in C12) from 0 to C12, with ``scale`` replaced by a positive dummy.

    Replacing the positive combination ``scale`` of c11, c22 by one positive symbol keeps sympy's
    antiderivatives free of sign case distinctions.
    """
    dummy = sp.Symbol(scale_name, positive=True)
    reduced = sp.simplify(integrand.subs(scale, dummy))
    if reduced.has(C11) or reduced.has(C22):
        raise AssertionError(f"integrand does not reduce to {scale_name}: {reduced}")
    antiderivative = sp.integrate(reduced.subs(C12, _T), (_T, 0, C12))
    return antiderivative.subs(dummy, scale)


@lru_cache(maxsize=1)
def erf_kernel_derivation() -> KernelDerivation:
    r"""Derive :math:`K_{\mathrm{erf},\mathrm{erf}}` with sympy (Price's theorem).

    1. :math:`\operatorname{erf}'(z) = \tfrac{2}{\sqrt\pi} e^{-z^2}`, so
       :math:`\partial_{c_{12}} K = \tfrac{4}{\pi}\mathbb{E}[e^{-a^2 - b^2}]`. Conditionally on
       :math:`a`, :math:`b \sim \mathcal N(c_{12} a / c_{11},\, c_{22} - c_{12}^2/c_{11})`; the inner
       and then the outer expectation follow from
       :func:`gaussian_exponential_moment_sympy`, giving
       :math:`\tfrac{4}{\pi}\big[(1 + 2c_{11})(1 + 2c_{22}) - 4 c_{12}^2\big]^{-1/2}`.
    2. At :math:`c_{12} = 0`, :math:`K = \mathbb{E}[\operatorname{erf}(a)]\,\mathbb{E}[\operatorname{erf}(b)] = 0`
       (erf is odd).
    3. Integrating in :math:`c_{12}`:
       :math:`K = \tfrac{2}{\pi}\arcsin\frac{2 c_{12}}{\sqrt{(1 + 2c_{11})(1 + 2c_{22})}}`.
    """
    z = sp.Symbol("z", real=True)
    prefactor = sp.simplify(sp.diff(sp.erf(z), z) * sp.exp(z**2))  # erf'(z) = prefactor * exp(-z^2)
    if prefactor.has(z):
        raise AssertionError(prefactor)
    moment = gaussian_exponential_moment_sympy()
    gamma, m, v = (sp.Symbol("gamma", positive=True), sp.Symbol("m", real=True), sp.Symbol("v", positive=True))
    # Inner expectation over b given a, then outer over a ~ N(0, c11): exp(-a^2) times the inner
    # result is exp(-decay a^2) / sqrt(1 + 2 v_cond), with decay read off the exponent.
    conditional_variance = C22 - C12**2 / C11
    inner = moment.subs({gamma: 1, m: C12 * _A / C11, v: conditional_variance})
    # The product is constant * exp(-decay a^2): read decay off the curvature of its logarithm.
    product = sp.exp(-(_A**2)) * inner
    decay = sp.simplify(-sp.diff(sp.log(product), _A, 2) / 2)
    constant = sp.simplify(product.subs(_A, 0))
    if decay.has(_A) or constant.has(_A):
        raise AssertionError((decay, constant))
    outer = constant * moment.subs({gamma: decay, m: 0, v: C11})
    # outer is positive: put it over a single square root of its inverse square.
    inverse_square = sp.factor(sp.simplify(1 / outer**2))
    determinant = sp.expand(inverse_square)
    derivative_kernel = prefactor**2 / sp.sqrt(determinant)
    # At c12 = 0, a and b are independent: K = E[erf(a)] E[erf(b)], zero because erf is odd.
    if sp.erf(-z) != -sp.erf(z):
        raise AssertionError("erf is odd")
    value_at_zero = sp.Integer(0)
    scale = (1 + 2 * C11) * (1 + 2 * C22)
    if sp.expand(determinant - (scale - 4 * C12**2)) != 0:
        raise AssertionError(determinant)
    kernel = value_at_zero + _integrate_in_c12(derivative_kernel.subs(determinant, scale - 4 * C12**2), "S", scale)
    return KernelDerivation(derivative_kernel, value_at_zero, sp.simplify(kernel))


@lru_cache(maxsize=1)
def relu_kernel_derivation() -> KernelDerivation:
    r"""Derive :math:`K_{\mathrm{relu},\mathrm{relu}}` with sympy (Price's theorem, twice).

    1. :math:`\mathrm{relu}' = \Theta` and :math:`\Theta' = \delta`, so
       :math:`\partial_{c_{12}}\mathbb{E}[\Theta(a)\Theta(b)] = \mathbb{E}[\delta(a)\delta(b)] = p_C(0, 0)
       = \big(2\pi\sqrt{c_{11}c_{22} - c_{12}^2}\big)^{-1}`, the density at the origin.
    2. At :math:`c_{12} = 0`, :math:`\mathbb{E}[\Theta(a)\Theta(b)] = 1/4`; integrating,
       :math:`\partial_{c_{12}} K = \mathbb{E}[\Theta(a)\Theta(b)] = \tfrac14 + \tfrac{1}{2\pi}\arcsin\rho`,
       :math:`\rho = c_{12}/\sqrt{c_{11}c_{22}}`.
    3. At :math:`c_{12} = 0`, :math:`K = \mathbb{E}[\mathrm{relu}(a)]\,\mathbb{E}[\mathrm{relu}(b)] =
       \sqrt{c_{11}c_{22}}/(2\pi)` (half-line moments); integrating once more gives
       :math:`K = \frac{\sqrt{c_{11}c_{22}}}{2\pi}\big(\sin\theta + (\pi - \theta)\cos\theta\big)`,
       :math:`\cos\theta = \rho`.
    """
    covariance = sp.Matrix([[C11, C12], [C12, C22]])
    origin_density = 1 / (2 * sp.pi * sp.sqrt(covariance.det()))
    scale = sp.sqrt(C11 * C22)
    orthant_at_zero = sp.Rational(1, 2) * sp.Rational(1, 2)  # P(a > 0) P(b > 0), independent
    orthant = orthant_at_zero + _integrate_in_c12(
        origin_density.subs(C11 * C22, scale**2), "r", scale
    )
    value_at_zero = half_line_expectation_sympy(_A, _A, C11) * half_line_expectation_sympy(_B, _B, C22)
    kernel = value_at_zero + _integrate_in_c12(orthant, "r", scale)
    return KernelDerivation(sp.simplify(orthant), sp.simplify(value_at_zero), sp.simplify(kernel))


def _polynomial_conditional_moment(polynomial_in_a: sp.Expr) -> sp.Expr:
    """E[p(a) | b] as a polynomial in b: a = (c12/c22) b + xi, xi ~ N(0, c11 - c12^2/c22)."""
    shifted = polynomial_in_a.subs(_A, C12 / C22 * _B + _XI)
    return sp.expand(gaussian_expectation_sympy(shifted, (_XI,), C11 - C12**2 / C22))


def _erf_moment(polynomial_in_b: sp.Expr) -> sp.Expr:
    """E[p(b) erf(b)] for b ~ N(0, c22), by Stein's lemma E[b h(b)] = c22 E[h'(b)] per monomial.

    With g_n = E[b^n erf(b)]: g_0 = 0 (oddness), g_n = c22 [(n - 1) g_{n-2} + E[b^(n-1) erf'(b)]],
    and E[b^j erf'(b)] = (2/sqrt(pi)) E[b^j exp(-b^2)] is a narrowed polynomial moment.
    """
    polynomial = sp.Poly(polynomial_in_b, _B)
    degree = max(polynomial.degree(), 0)
    moments: list[sp.Expr] = [sp.Integer(0)] * (degree + 1)
    for n in range(1, degree + 1):
        derivative_term = 2 / sp.sqrt(sp.pi) * gaussian_weighted_expectation_sympy(_B ** (n - 1), _B, 1, C22)
        previous = moments[n - 2] if n >= 2 else sp.Integer(0)
        moments[n] = sp.expand(C22 * ((n - 1) * previous + derivative_term))
    return sum((coefficient * moments[power] for (power,), coefficient in polynomial.terms()), sp.Integer(0))


def _symmetric_pair(f: str, g: str) -> tuple[str, str, bool]:
    """Order a pair so that the polynomial (if any) comes first; flag whether it was swapped."""
    if not is_polynomial(f) and is_polynomial(g):
        return g, f, True
    if (f, g) == ("relu", "erf"):
        return "erf", "relu", True
    return f, g, False


def closed_form_family(name: str) -> str | None:
    """``"polynomial"``, ``"erf"`` or ``"relu"`` for the names with closed-form kernels, else ``None``.

    Raises
    ------
    TypeError, ValueError
        If ``name`` is not a valid activation or target name.
    """
    name = check_target(name)
    return _closed_form_family(name)


def _closed_form_family(name: str) -> str | None:
    if is_polynomial(name):
        return "polynomial"
    return name if name in ("erf", "relu") else None


def has_closed_form(f: str, g: str) -> bool:
    """Whether :func:`correlation_kernel_sympy` has a closed form for the pair.

    Every pair of polynomials (including composite polynomial targets such as ``"He3+He5"`` or
    ``"He2^2"``), erf and ReLU has one; pairs with the sigmoid or a non-polynomial composite
    target (``"erf^2"``, ``"relu^2"``) do not.
    """
    f = check_target(f, parameter="f")
    g = check_target(g, parameter="g")
    return _has_closed_form(f, g)


def _has_closed_form(f: str, g: str) -> bool:
    return _closed_form_family(f) is not None and _closed_form_family(g) is not None


CLOSED_FORM_NAMES = ("polynomials ('linear', 'He1'..'He10', their sums and squares), 'erf' and 'relu' "
                      "(not 'sigmoid', 'erf^2', 'relu^2' or 'sigmoid^2')")
"""The names whose pairs have closed-form kernels, for messages."""


@cache
def _kernel_in_standard_symbols(f: str, g: str) -> sp.Expr:
    """The closed-form K_{f,g} in C11, C12, C22 (names validated, no sigmoid)."""
    first, second, swapped = _symmetric_pair(f, g)
    if swapped:
        return _kernel_in_standard_symbols(first, second).subs({C11: C22, C22: C11}, simultaneous=True)
    if is_polynomial(first) and is_polynomial(second):
        expr = activation_sympy(first, _A) * activation_sympy(second, _B)
        return sp.factor(gaussian_expectation_sympy(expr, (_A, _B), (C11, C12, C22)))
    if is_polynomial(first):
        conditional = _polynomial_conditional_moment(activation_sympy(first, _A))
        if second == "erf":
            return sp.simplify(_erf_moment(conditional))
        if second == "relu":
            return sp.simplify(half_line_expectation_sympy(conditional * _B, _B, C22))
    if (first, second) == ("erf", "erf"):
        return erf_kernel_derivation().kernel
    if (first, second) == ("relu", "relu"):
        return relu_kernel_derivation().kernel
    if (first, second) == ("erf", "relu"):
        # relu(b) = (b + |b|)/2 and E[erf(a)|b|] = 0 ((a, b) -> (-a, -b) flips its sign).
        return sp.simplify(_kernel_in_standard_symbols("erf", "linear") / 2)
    raise AssertionError((f, g))


def correlation_kernel_sympy(
    f: str, g: str, c11: object = C11, c12: object = C12, c22: object = C22
) -> sp.Expr:
    r"""Exact :math:`K_{f,g}(c_{11}, c_{12}, c_{22}) = \mathbb{E}[f(a)\,g(b)]` as a sympy expression.

    Derived, not tabulated (see the module docstring); e.g.

    .. math:: K_{\mathrm{erf},\mathrm{erf}} = \frac{2}{\pi}\arcsin\frac{2c_{12}}{\sqrt{(1 + 2c_{11})(1 +
        2c_{22})}},
        \qquad K_{\mathrm{relu},\mathrm{relu}} = \frac{\sqrt{c_{11}c_{22}}}{2\pi}\big(\sin\theta + (\pi -
        \theta)\cos\theta\big),

    with :math:`\cos\theta = c_{12}/\sqrt{c_{11}c_{22}}`.

    Parameters
    ----------
    f, g
        Activation names (see :data:`lorabook.toolkit.activations.ACTIVATION_NAMES`).
    c11, c12, c22
        Covariance entries: sympy expressions or numbers; by default the symbols
        :data:`C11` (positive), :data:`C12` (real), :data:`C22` (positive). Substituted
        expressions are assumed to satisfy the same signs and :math:`c_{12}^2 \le c_{11}c_{22}`,
        so derivatives (e.g. in :math:`c_{11}` and :math:`c_{12}`) are exact.

    Returns
    -------
    sympy.Expr

    Raises
    ------
    lorabook.toolkit.validation.UnsupportedChoiceError
        (a :class:`ValueError`, also a :class:`NotImplementedError`) for any pair involving
        ``"sigmoid"`` or a non-polynomial composite target (no closed form;
        :func:`correlation_kernel` uses quadrature).
    ValueError, TypeError
        For unknown activation names (the message lists the valid names).
    """
    if not has_closed_form(f, g):
        unsupported = "f" if _closed_form_family(f) is None else "g"
        raise UnsupportedChoiceError(
            f"{unsupported}={(f if unsupported == 'f' else g)!r}: no closed-form Gaussian kernel for ({f!r}, {g!r}): "
            f"pairs involving the sigmoid or a non-polynomial composite target have none; supported names: "
            f"{CLOSED_FORM_NAMES}; use correlation_kernel (2-D Gauss-Hermite quadrature) or "
            "correlation_kernel_with_error"
        )
    expr = _kernel_in_standard_symbols(f, g)
    substitutions = {C11: sp.sympify(c11), C12: sp.sympify(c12), C22: sp.sympify(c22)}
    if all(substitutions[key] == key for key in substitutions):
        return expr
    return expr.subs(substitutions, simultaneous=True)


def squared_error_risk_sympy(student: str, teacher: str, q: object, rho: object) -> sp.Expr:
    r"""Exact :math:`F(q, \rho) = \tfrac12\mathbb E[(s(\lambda) - s_\star(\lambda_\star))^2]` from the kernels.

    With :math:`\operatorname{Var}\lambda = q`, :math:`\operatorname{Var}\lambda_\star = 1` and
    :math:`\operatorname{Cov}(\lambda, \lambda_\star) = \rho`,

    .. math:: F(q, \rho) = \tfrac12\big[K_{s,s}(q, q, q) - 2K_{s,s_\star}(q, \rho, 1)
        + K_{s_\star,s_\star}(1, 1, 1)\big].

    The one construction of the single-index risk: the from-scratch model
    (:func:`lorabook.single_index_lora.single_index.population_risk_sympy`) and the LoRA model
    (:func:`lorabook.single_index_lora.lora.risk_function_sympy`) both use it.

    Parameters
    ----------
    student, teacher
        Activation names.
    q, rho
        Sympy symbols or expressions (or numbers) with :math:`q \ge \rho^2`.

    Raises
    ------
    lorabook.toolkit.validation.UnsupportedChoiceError
        (a :class:`ValueError`, also a :class:`NotImplementedError`) for pairs involving
        ``"sigmoid"`` or a non-polynomial composite target.
    ValueError, TypeError
        For unknown names.
    """
    student = check_target(student, parameter="student")
    teacher = check_target(teacher, parameter="teacher")
    for name, value in (("student", student), ("teacher", teacher)):
        if _closed_form_family(value) is None:
            raise UnsupportedChoiceError(f"{name}={value!r} has no closed-form kernels (so no exact risk); "
                                         f"supported names: {CLOSED_FORM_NAMES}")
    return sp.Rational(1, 2) * (
        correlation_kernel_sympy(student, student, q, q, q)
        - 2 * correlation_kernel_sympy(student, teacher, q, rho, 1)
        + correlation_kernel_sympy(teacher, teacher, 1, 1, 1)
    )


def _safe_arcsin(x: np.ndarray) -> np.ndarray:
    # Rounding can push c12 / sqrt(c11 c22) a few ulps past 1 on the PSD boundary.
    return np.arcsin(np.clip(x, -1.0, 1.0))


def _safe_sqrt(x: np.ndarray) -> np.ndarray:
    # Every square root in the closed forms has a non-negative argument on the PSD cone;
    # clip rounding residue (e.g. c11 c22 - c12^2 = -1e-17) to zero.
    return np.sqrt(np.maximum(x, 0.0))


_CORRELATION = sp.Symbol("rho", real=True)


@cache
def _lambdified_kernel(f: str, g: str) -> Callable[..., np.ndarray]:
    """K_{f,g} as a numpy function of (c11, rho, c22), rho = c12 / sqrt(c11 c22).

    Written in the correlation rho, the ReLU kernel's sqrt(1 - rho^2) and rho asin(rho), each
    with an infinite slope at |rho| = 1, are computed from the same rounded rho and their slopes
    cancel; computed from c11 c22 - c12^2 and c12 separately they would not, and a covariance on the
    boundary of the PSD cone would lose half its digits.
    """
    expr = _kernel_in_standard_symbols(f, g)
    expr = sp.simplify(expr.subs(C12, _CORRELATION * sp.sqrt(C11) * sp.sqrt(C22)))
    return sp.lambdify(
        (C11, _CORRELATION, C22), expr, modules=[{"asin": _safe_arcsin, "sqrt": _safe_sqrt}, "numpy"]
    )


def _product_integrand(f: str, g: str) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    first, second = activation(f), activation(g)
    return lambda a, b: first(a) * second(b)


def _check_positive_variances(c11: np.ndarray, c22: np.ndarray) -> None:
    for values, name in ((c11, "c11"), (c22, "c22")):
        if np.any(values <= 0):
            raise ValueError(f"{name} must be > 0: correlation kernels need positive variances c11 > 0 and c22 > 0")


def correlation_kernel(
    f: str, g: str, c11: object, c12: object, c22: object, n_nodes: int = DEFAULT_NODES_2D
) -> np.ndarray:
    r"""Numerical :math:`K_{f,g}(c_{11}, c_{12}, c_{22}) = \mathbb{E}[f(a)\,g(b)]`, vectorised.

    Evaluates the closed form of :func:`correlation_kernel_sympy` (lambdified once and cached)
    where one exists, and two-dimensional Gauss-Hermite quadrature with ``2 * n_nodes`` nodes per
    axis otherwise (pairs with the sigmoid; see :func:`correlation_kernel_with_error` for the error
    estimate).

    Parameters
    ----------
    f, g
        Activation names.
    c11, c12, c22
        Covariance entries, scalars or broadcastable arrays, with ``c11 > 0``, ``c22 > 0`` and
        ``c12**2 <= c11 * c22``.
    n_nodes
        Base number of quadrature nodes per axis (quadrature path only).

    Returns
    -------
    numpy.ndarray
        Shaped like the broadcast covariance entries.

    Raises
    ------
    ValueError
        For an unknown activation name or an invalid covariance.
    """
    return correlation_kernel_with_error(f, g, c11, c12, c22, n_nodes)[0]


def correlation_kernel_with_error(
    f: str, g: str, c11: object, c12: object, c22: object, n_nodes: int = DEFAULT_NODES_2D
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`correlation_kernel` together with an absolute error estimate.

    For closed forms the error estimate is zero (only floating-point rounding remains). For
    quadrature it is :math:`|Q_{2n} - Q_n|` (:func:`lorabook.toolkit.gaussian.gaussian_expectation_2d_with_error`),
    a conservative estimate for the smooth sigmoid.

    Returns
    -------
    value, error_estimate : numpy.ndarray
    """
    closed_form = has_closed_form(f, g)
    c11, c12, c22 = check_covariance_2d(c11, c12, c22)
    _check_positive_variances(c11, c22)
    n_nodes = integer(n_nodes, "n_nodes")
    if not closed_form:
        check_memory(max(c11.size, 1) * 3 * (2 * n_nodes) ** 2, "n_nodes", "the quadrature grid of every covariance")
    if closed_form:
        correlation = np.clip(c12 / (np.sqrt(c11) * np.sqrt(c22)), -1.0, 1.0)
        value = np.asarray(_lambdified_kernel(f, g)(c11, correlation, c22), dtype=float)
        value = np.broadcast_to(value, c11.shape).copy()
        if not np.all(np.isfinite(value)):
            raise FloatingPointError(f"non-finite kernel value for ({f}, {g})")
        return value, np.zeros_like(value)
    integrand = _product_integrand(f, g)
    coarse = gaussian_expectation_2d(integrand, c11, c12, c22, n_nodes)
    fine = gaussian_expectation_2d(integrand, c11, c12, c22, 2 * n_nodes)
    return fine, np.abs(fine - coarse)
