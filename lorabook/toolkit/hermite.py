r"""Hermite coefficients and information exponents of the named activations.

Every activation with finite Gaussian variance has a Hermite expansion

.. math:: s(z) = \sum_{k \ge 0} c_k\, \mathrm{He}_k(z), \qquad
    c_k = \frac{\mathbb{E}[s(z)\,\mathrm{He}_k(z)]}{k!}, \qquad z \sim \mathcal N(0, 1),

and its **information exponent** is the smallest :math:`k \ge 1` with :math:`c_k \neq 0`
(Ben Arous, Gheissari and Jagannath, 2021). Gaussian integration by parts,
:math:`\mathbb{E}[s(z)\,\mathrm{He}_k(z)] = \mathbb{E}[s^{(k)}(z)]`, gives exact coefficients
for linear, Hermite, erf and ReLU activations (:func:`hermite_coefficients_sympy`); the sigmoid has
none in closed form and is handled by quadrature with an error estimate
(:func:`hermite_coefficients_quadrature`).
"""

from __future__ import annotations

from functools import cache

import numpy as np
import sympy as sp

from lorabook.toolkit.activations import activation, activation_sympy, check_target, is_polynomial
from lorabook.toolkit.gaussian import (
    DEFAULT_NODES_1D,
    gauss_hermite_expectation,
    gaussian_expectation_adaptive,
    gaussian_weighted_expectation_sympy,
    half_line_expectation_sympy,
    hermite,
    hermite_expansion_sympy,
    hermite_sympy,
)
from lorabook.toolkit.validation import UnsupportedChoiceError, check_memory, choice, integer, real_array

QUADRATURE_METHODS: tuple[str, ...] = ("gauss-hermite", "adaptive")
"""Valid ``method`` arguments of :func:`hermite_coefficients_quadrature`."""

_Z = sp.Symbol("z", real=True)

_MAX_INFORMATION_EXPONENT_SEARCH = 20


_EXACT_NAMES = "polynomials ('linear', 'He1'..'He10', their sums and squares), 'erf', 'relu', 'relu^2'"
"""The names with closed-form Hermite coefficients, for messages."""


def _check_order(k_max: object) -> int:
    return integer(k_max, "k_max", minimum=0)


def has_exact_hermite_coefficients(name: str) -> bool:
    """Whether :func:`hermite_coefficients_sympy` has closed forms for this activation or target.

    True for polynomials (including composite polynomial targets), erf, ReLU and its square;
    False for the sigmoid and the other non-polynomial composite targets such as ``"erf^2"``.
    """
    name = check_target(name)
    return _has_exact_coefficients(name)


def _has_exact_coefficients(name: str) -> bool:
    return is_polynomial(name) or name in ("erf", "relu", "relu^2")


@cache
def _erf_derivative_polynomial(k: int) -> sp.Expr:
    """The polynomial p_k with erf^(k)(z) = p_k(z) exp(-z^2), k >= 1.

    p_1 is read off sympy's derivative of erf; then the product rule
    d/dz [p_k(z) exp(-z^2)] = (p_k'(z) - 2 z p_k(z)) exp(-z^2) gives p_{k+1}.
    """
    if k == 1:
        first = sp.simplify(sp.diff(sp.erf(_Z), _Z) * sp.exp(_Z**2))
        if first.has(_Z):
            raise AssertionError(first)
        return first
    previous = _erf_derivative_polynomial(k - 1)
    return sp.expand(sp.diff(previous, _Z) - 2 * _Z * previous)


@cache
def _exact_coefficient(name: str, k: int) -> sp.Expr:
    """c_k = E[s He_k] / k! in closed form (name already validated, not sigmoid)."""
    if name == "erf":
        if k == 0:
            return sp.Integer(0)  # E[erf(z)] = 0: erf is odd and the Gaussian law is even.
        # Integration by parts k times: E[erf(z) He_k(z)] = E[erf^(k)(z)], and
        # erf^(k)(z) = p_k(z) exp(-z^2) with p_k a polynomial.
        polynomial = _erf_derivative_polynomial(k)
        return sp.nsimplify(gaussian_weighted_expectation_sympy(polynomial, _Z, 1, 1) / sp.factorial(k))
    if name == "relu":
        # relu(z) = z Theta(z): a half-line moment of the polynomial z He_k(z).
        return half_line_expectation_sympy(_Z * hermite_sympy(k, _Z), _Z, 1) / sp.factorial(k)
    if name == "relu^2":
        return half_line_expectation_sympy(_Z**2 * hermite_sympy(k, _Z), _Z, 1) / sp.factorial(k)
    raise AssertionError(name)  # polynomials are expanded in hermite_coefficients_sympy


def hermite_coefficients_sympy(name: str, k_max: int) -> list[sp.Expr]:
    r"""Exact Hermite coefficients :math:`c_0, \dots, c_{k_{\max}}` of an activation.

    .. math:: c_k = \frac{\mathbb{E}[s(z)\,\mathrm{He}_k(z)]}{k!} = \frac{\mathbb{E}[s^{(k)}(z)]}{k!}.

    * polynomials (``"linear"`` and ``"He1"`` to ``"He10"``): exact expansion in the Hermite basis;
    * ``"erf"``: :math:`s^{(k)}(z) = p_k(z)\,e^{-z^2}`, whose Gaussian expectation is a narrowed
      polynomial moment (:func:`lorabook.toolkit.gaussian.gaussian_weighted_expectation_sympy`);
    * ``"relu"``: :math:`\mathbb{E}[z\,\mathrm{He}_k(z)\,\Theta(z)]` by half-line moments
      (:func:`lorabook.toolkit.gaussian.half_line_expectation_sympy`).

    Parameters
    ----------
    name
        Activation name (see :data:`lorabook.toolkit.activations.ACTIVATION_NAMES`).
    k_max
        Largest degree returned.

    Returns
    -------
    list of sympy.Expr
        ``[c_0, ..., c_k_max]``.

    Raises
    ------
    lorabook.toolkit.validation.UnsupportedChoiceError
        (a :class:`ValueError`, also a :class:`NotImplementedError`) for ``"sigmoid"`` and the
        other names without a closed form (use :func:`hermite_coefficients`).
    ValueError, TypeError
        For an unknown activation name or a bad ``k_max``.
    """
    name = check_target(name)
    k_max = _check_order(k_max)
    if not _has_exact_coefficients(name):
        raise UnsupportedChoiceError(
            f"name={name!r} has no closed-form Hermite coefficients; supported names: {_EXACT_NAMES}; "
            "use hermite_coefficients (quadrature) or hermite_coefficients_quadrature (with error estimates)"
        )
    if is_polynomial(name):
        expansion = hermite_expansion_sympy(activation_sympy(name, _Z), _Z)
        expansion = expansion + [sp.Integer(0)] * max(0, k_max + 1 - len(expansion))
        return expansion[: k_max + 1]
    return [_exact_coefficient(name, k) for k in range(k_max + 1)]


def hermite_coefficients_quadrature(
    name: str, k_max: int, method: str = "gauss-hermite", n_nodes: int = DEFAULT_NODES_1D
) -> tuple[np.ndarray, np.ndarray]:
    """Hermite coefficients by numerical quadrature, with an error estimate for each.

    Parameters
    ----------
    name
        Activation name.
    k_max
        Largest degree.
    method
        ``"gauss-hermite"``: :math:`Q_{2n}` with error :math:`|Q_{2n} - Q_n|` (``n = n_nodes``),
        fast and geometrically convergent for smooth activations (erf, sigmoid, polynomials);
        ``"adaptive"``: :func:`scipy.integrate.quad` on each half line (robust to the ReLU kink),
        error = quad's own estimate.
    n_nodes
        Base number of Gauss-Hermite nodes (``"gauss-hermite"`` only).

    Returns
    -------
    coefficients, errors : numpy.ndarray
        Shape ``(k_max + 1,)`` each; ``errors`` are absolute error estimates of ``coefficients``.

    Raises
    ------
    ValueError
        For an unknown activation or method (the message lists the valid choices).
    """
    name = check_target(name)
    k_max = _check_order(k_max)
    choice(method, "method", QUADRATURE_METHODS)
    n_nodes = integer(n_nodes, "n_nodes")
    check_memory((k_max + 1) * 2 * n_nodes, "n_nodes", "the quadrature table of every degree")
    check_memory((k_max + 1) * 2 * n_nodes, "k_max", "the quadrature table of every degree")
    function = activation(name)
    factorials = np.array([float(sp.factorial(k)) for k in range(k_max + 1)])
    if method == "gauss-hermite":
        degrees = np.arange(k_max + 1)

        def integrand(z: np.ndarray) -> np.ndarray:
            # z has shape (n,); the result (k_max + 1, n) holds s(z) He_k(z) for every k.
            return function(z)[None, :] * np.stack([hermite(int(k), z) for k in degrees])

        coarse = gauss_hermite_expectation(integrand, 1.0, n_nodes)
        fine = gauss_hermite_expectation(integrand, 1.0, 2 * n_nodes)
        return fine / factorials, np.abs(fine - coarse) / factorials
    values = np.empty(k_max + 1)
    errors = np.empty(k_max + 1)
    for k in range(k_max + 1):
        value, error = gaussian_expectation_adaptive(
            lambda z, k=k: float(function(np.asarray(z)) * hermite(k, z)), 1.0, breakpoints=(0.0,)
        )
        values[k] = value / factorials[k]
        errors[k] = error / factorials[k]
    return values, errors


def hermite_coefficients(name: str, k_max: int) -> np.ndarray:
    r"""Hermite coefficients :math:`c_0, \dots, c_{k_{\max}}` as floats.

    Exact values (:func:`hermite_coefficients_sympy`, evaluated) where they exist; for the sigmoid,
    Gauss-Hermite quadrature (:func:`hermite_coefficients_quadrature`), whose error estimate is
    checked to be below ``1e-12`` and whose odd-symmetry zeros (:math:`c_k = 0` for even
    :math:`k \ge 2`, since :math:`s(z) - 1/2` is odd) are set exactly.

    Returns
    -------
    numpy.ndarray
        Shape ``(k_max + 1,)``.
    """
    name = check_target(name)
    k_max = _check_order(k_max)
    if _has_exact_coefficients(name):
        return np.array([float(c) for c in hermite_coefficients_sympy(name, k_max)])
    values, errors = hermite_coefficients_quadrature(name, k_max, "gauss-hermite", DEFAULT_NODES_1D)
    if np.any(errors > 1e-12):
        raise RuntimeError(f"quadrature of the {name} Hermite coefficients did not converge: {errors.max():.2e}")
    if name == "sigmoid":
        # s(z) - 1/2 is odd: its even coefficients beyond c_0 vanish exactly.
        even = np.arange(k_max + 1) % 2 == 0
        even[0] = False
        values[even] = 0.0
    return values


def information_exponent(name: str) -> int:
    r"""Smallest :math:`k \ge 1` with :math:`c_k \neq 0` (the information exponent).

    Decided exactly (sympy) where closed forms exist. For the sigmoid,
    :math:`c_1 = \mathbb{E}[s'(z)] > 0` because :math:`s' > 0`, and quadrature confirms it with
    :math:`|c_1|` far above its error estimate.

    Raises
    ------
    ValueError, TypeError
        For an unknown activation name.
    """
    name = check_target(name)
    if _has_exact_coefficients(name):
        coefficients = hermite_coefficients_sympy(name, _MAX_INFORMATION_EXPONENT_SEARCH)
        for k in range(1, len(coefficients)):
            if sp.simplify(coefficients[k]) != 0:
                return k
    else:
        values, errors = hermite_coefficients_quadrature(name, _MAX_INFORMATION_EXPONENT_SEARCH)
        for k in range(1, len(values)):
            if abs(values[k]) > 1e3 * errors[k] + 1e-14:
                return k
    raise ValueError(f"no nonzero Hermite coefficient of degree 1..{_MAX_INFORMATION_EXPONENT_SEARCH} for {name!r}")


def hermite_kernel_series(name_f: str, name_g: str, correlation: object, k_max: int) -> np.ndarray:
    r"""Truncated Hermite series of :math:`\mathbb{E}[f(a)\,g(b)]` for unit variances.

    For :math:`a, b` standard normals with correlation :math:`\rho`,
    :math:`\mathbb{E}[\mathrm{He}_j(a)\mathrm{He}_k(b)] = \delta_{jk}\, k!\, \rho^k`, hence

    .. math:: \mathbb{E}[f(a)\,g(b)] = \sum_{k \ge 0} k!\, c_k^{f} c_k^{g}\, \rho^k
        \approx \sum_{k=0}^{k_{\max}} k!\, c_k^{f} c_k^{g}\, \rho^k.

    Parameters
    ----------
    name_f, name_g
        Activation names.
    correlation
        :math:`\rho \in [-1, 1]`, scalar or array.
    k_max
        Truncation degree.

    Returns
    -------
    numpy.ndarray
        Shaped like ``correlation``.
    """
    name_f = check_target(name_f, parameter="name_f")
    name_g = check_target(name_g, parameter="name_g")
    rho = real_array(correlation, "correlation", nonempty=False, minimum=-1, maximum=1)
    k_max = _check_order(k_max)
    weights = np.array([float(sp.factorial(k)) for k in range(k_max + 1)])
    terms = weights * hermite_coefficients(name_f, k_max) * hermite_coefficients(name_g, k_max)
    return np.polynomial.polynomial.polyval(rho, terms)
