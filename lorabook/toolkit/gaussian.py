r"""Gaussian integrals: Hermite polynomials and exact Gaussian moments.

Everything in the book reduces to expectations over a few jointly Gaussian variables (the
preactivations). This module holds the pure mathematics of those expectations, independent of
any particular activation:

* probabilists' Hermite polynomials :math:`\mathrm{He}_k`, numerically and symbolically;
* exact expectations of polynomials of centred jointly Gaussian variables with a symbolic
  covariance (Gaussian integration by parts, i.e. Isserlis/Wick);
* exact one-dimensional building blocks of the closed-form kernels: half-line moments
  (:func:`half_line_expectation_sympy`, for ReLU), Gaussian-weighted moments
  (:func:`gaussian_weighted_expectation_sympy`, for erf), Hermite expansions of polynomials;
* numerical expectations with error estimates: Gauss-Hermite quadrature in one and two
  dimensions (:func:`gauss_hermite_expectation`, :func:`gaussian_expectation_2d` and their
  ``*_with_error`` variants), adaptive quadrature (:func:`gaussian_expectation_adaptive`) and
  Monte Carlo with standard errors (:func:`monte_carlo_expectation_2d`).
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Callable, Sequence
from functools import cache, lru_cache

import numpy as np
import sympy as sp
from numpy.polynomial import hermite_e

from lorabook.toolkit.validation import check_memory, function, generator, integer, real, real_array


def hermite(k: int, z: np.ndarray | float) -> np.ndarray:
    r"""Evaluate the probabilists' Hermite polynomial :math:`\mathrm{He}_k(z)`.

    .. math:: \mathrm{He}_k(z) = (-1)^k e^{z^2/2} \frac{d^k}{dz^k} e^{-z^2/2},
        \qquad \mathbb{E}_{z\sim\mathcal N(0,1)}[\mathrm{He}_j(z)\mathrm{He}_k(z)] = k!\,\delta_{jk}.

    Parameters
    ----------
    k
        Degree, a non-negative integer.
    z
        Points at which to evaluate.
    """
    k = integer(k, "k", minimum=0)
    real_array(z, "z", nonempty=False)
    coefficients = np.zeros(k + 1)
    coefficients[-1] = 1.0
    return hermite_e.hermeval(z, coefficients)


def hermite_sympy(k: int, z: sp.Symbol) -> sp.Expr:
    r"""Return :math:`\mathrm{He}_k(z)` as an expanded sympy polynomial in ``z``."""
    k = integer(k, "k", minimum=0)
    return sp.expand(sp.hermite_prob(k, z))


def _symbol(value: object, name: str) -> sp.Symbol:
    """``value`` if it is a sympy Symbol (a Gaussian variable); TypeError naming ``name`` otherwise."""
    if not isinstance(value, sp.Symbol):
        raise TypeError(f"{name} must be a sympy Symbol (a Gaussian variable), got {type(value).__name__} {value!r}")
    return value


def _symbols(values: object, name: str) -> tuple[sp.Symbol, ...]:
    """``values`` as a non-empty tuple of sympy Symbols; TypeError or ValueError naming ``name``."""
    if isinstance(values, (str, sp.Basic)) or not hasattr(values, "__iter__"):
        raise TypeError(f"{name} must be a sequence of sympy Symbols (the Gaussian variables), got "
                        f"{type(values).__name__} {values!r}")
    symbols = tuple(values)
    if not symbols:
        raise ValueError(f"{name} must hold at least one Gaussian variable")
    for value in symbols:
        _symbol(value, name)
    return symbols


def _covariance_matrix(covariance: object, n: int) -> sp.Matrix:
    """Coerce a covariance given as a matrix, nested sequence or 2x2 triple (c11, c12, c22)."""
    if n == 2 and isinstance(covariance, (tuple, list)) and len(covariance) == 3:
        c11, c12, c22 = covariance
        matrix = sp.Matrix([[c11, c12], [c12, c22]])
    elif n == 1 and not isinstance(covariance, (tuple, list, sp.MatrixBase, np.ndarray)):
        matrix = sp.Matrix([[covariance]])
    else:
        matrix = sp.Matrix(covariance)
    if matrix.shape != (n, n):
        raise ValueError(
            f"covariance must be {n}x{n} for {n} variables (or a triple (c11, c12, c22) for two "
            f"variables), got shape {matrix.shape}"
        )
    if matrix != matrix.T:
        raise ValueError("covariance must be symmetric")
    return matrix


def _as_polynomial(expr: sp.Expr, variables: Sequence[sp.Symbol], label: object) -> sp.Poly:
    """``expr`` as a polynomial in ``variables``; ValueError naming ``label`` if it is not one."""
    try:
        return sp.Poly(sp.expand(expr), *variables)
    except sp.PolynomialError as error:
        raise ValueError(f"expression is not a polynomial in {label}: {error}") from error


def gaussian_expectation_sympy(
    expr: sp.Expr, variables: Sequence[sp.Symbol], covariance: object
) -> sp.Expr:
    r"""Exact expectation of a polynomial of centred jointly Gaussian variables.

    Uses Gaussian integration by parts (Stein's lemma) recursively on monomials,

    .. math:: \mathbb{E}[x_i\, f(x)] = \sum_j C_{ij}\, \mathbb{E}[\partial_j f(x)],

    which is Isserlis' (Wick's) theorem. The covariance entries may be symbols, so the result is a
    polynomial in them, e.g. :math:`\mathbb{E}[a^2 b^2] = C_{aa} C_{bb} + 2 C_{ab}^2`.

    Parameters
    ----------
    expr
        A polynomial in ``variables`` (coefficients may contain other symbols).
    variables
        The Gaussian variables, e.g. ``(a, b)``.
    covariance
        Their covariance: an ``n x n`` matrix (sympy or nested lists), a single variance for one
        variable, or the triple ``(c11, c12, c22)`` for two variables.

    Returns
    -------
    sympy.Expr
        The expectation, expanded.

    Raises
    ------
    ValueError
        If ``expr`` is not a polynomial in ``variables`` or the covariance has the wrong shape.
    """
    variables = _symbols(variables, "variables")
    matrix = _covariance_matrix(covariance, len(variables))
    polynomial = _as_polynomial(expr, variables, variables)
    entries = tuple(tuple(matrix[i, j] for j in range(len(variables))) for i in range(len(variables)))
    total = sp.Integer(0)
    for exponents, coefficient in polynomial.terms():
        total += coefficient * _monomial_moment(exponents, entries)
    return sp.expand(total)


@cache
def _monomial_moment(exponents: tuple[int, ...], covariance: tuple[tuple[sp.Expr, ...], ...]) -> sp.Expr:
    """E[prod_i x_i^{e_i}] for a centred Gaussian vector, by E[x_i f] = sum_j C_ij E[d_j f]."""
    if sum(exponents) == 0:
        return sp.Integer(1)
    if sum(exponents) % 2 == 1:
        return sp.Integer(0)
    i = next(index for index, power in enumerate(exponents) if power > 0)
    # Peel one factor x_i off and differentiate the remaining monomial f = x^e / x_i.
    remaining = list(exponents)
    remaining[i] -= 1
    total = sp.Integer(0)
    for j, power in enumerate(remaining):
        if power == 0 or covariance[i][j] == 0:
            continue
        derivative = list(remaining)
        derivative[j] -= 1
        total += covariance[i][j] * power * _monomial_moment(tuple(derivative), covariance)
    return sp.expand(total)


# ---------------------------------------------------------------------------------------------
# Exact one-dimensional building blocks used by the closed-form kernels (lorabook.toolkit.kernels)
# ---------------------------------------------------------------------------------------------


def half_line_expectation_sympy(expr: sp.Expr, variable: sp.Symbol, variance: object = 1) -> sp.Expr:
    r"""Exact :math:`\mathbb{E}[p(z)\,\Theta(z)]` for a polynomial ``p`` and :math:`z \sim \mathcal N(0, v)`.

    Each monomial is integrated over the half line,

    .. math:: \mathbb{E}[z^n \Theta(z)] = \int_0^\infty z^n \frac{e^{-z^2/2v}}{\sqrt{2\pi v}}\,dz
        = \frac{(2v)^{n/2}\,\Gamma\!\big(\tfrac{n+1}{2}\big)}{2\sqrt{\pi}},

    (substitute :math:`t = z^2/2v`). This is what the ReLU kernels are made of, since
    :math:`\mathrm{relu}(z) = z\,\Theta(z)`.

    Parameters
    ----------
    expr
        A polynomial in ``variable`` (coefficients may be symbols).
    variable
        The Gaussian variable ``z``.
    variance
        Its variance ``v`` (a positive number or a sympy expression assumed positive).

    Raises
    ------
    ValueError
        If ``expr`` is not a polynomial in ``variable``.
    """
    _symbol(variable, "variable")
    polynomial = _as_polynomial(expr, (variable,), variable)
    variance = sp.sympify(variance)
    total = sp.Integer(0)
    for (power,), coefficient in polynomial.terms():
        total += coefficient * _half_line_monomial(power) * variance ** sp.Rational(power, 2)
    return sp.expand(total)


@cache
def _half_line_monomial(power: int) -> sp.Expr:
    """E[z^n Theta(z)] for z ~ N(0, 1)."""
    return sp.nsimplify(2 ** sp.Rational(power, 2) * sp.gamma(sp.Rational(power + 1, 2)) / (2 * sp.sqrt(sp.pi)))


def gaussian_weighted_expectation_sympy(
    expr: sp.Expr, variable: sp.Symbol, decay: object, variance: object = 1
) -> sp.Expr:
    r"""Exact :math:`\mathbb{E}[p(z)\,e^{-\gamma z^2}]` for a polynomial ``p`` and :math:`z \sim \mathcal N(0, v)`.

    The Gaussian factor only narrows the law of ``z``: completing the square,

    .. math:: \mathbb{E}_{z \sim \mathcal N(0, v)}[p(z)\,e^{-\gamma z^2}]
        = \frac{1}{\sqrt{1 + 2\gamma v}}\;
          \mathbb{E}_{y \sim \mathcal N(0,\, v/(1 + 2\gamma v))}[p(y)],

    and the right-hand side is a polynomial moment (:func:`gaussian_expectation_sympy`).
    Derivatives of :math:`\operatorname{erf}` are of the form :math:`p(z) e^{-z^2}`, so this is
    what the erf kernels are made of.

    Parameters
    ----------
    expr
        A polynomial in ``variable``.
    variable
        The Gaussian variable ``z``.
    decay
        The rate :math:`\gamma \ge 0` of the Gaussian factor.
    variance
        The variance ``v`` of ``z``.
    """
    _symbol(variable, "variable")
    decay = sp.sympify(decay)
    variance = sp.sympify(variance)
    factor = 1 + 2 * decay * variance
    return gaussian_expectation_sympy(expr, (variable,), variance / factor) / sp.sqrt(factor)


def hermite_expansion_sympy(expr: sp.Expr, variable: sp.Symbol) -> list[sp.Expr]:
    """Coefficients ``a_j`` of a polynomial in the Hermite basis, ``p = sum_j a_j He_j``.

    Exact, by peeling off the leading term: if ``p`` has degree ``n`` and leading coefficient
    ``a``, then ``p - a He_n`` has degree below ``n`` (``He_n`` is monic).

    Raises
    ------
    ValueError
        If ``expr`` is not a polynomial in ``variable``.
    """
    _symbol(variable, "variable")
    polynomial = _as_polynomial(expr, (variable,), variable)
    degree = polynomial.degree()
    if degree < 0:  # the zero polynomial
        return [sp.Integer(0)]
    coefficients = [sp.Integer(0)] * (degree + 1)
    remainder = polynomial
    while not remainder.is_zero:
        n = remainder.degree()
        leading = remainder.LC()
        coefficients[n] = sp.simplify(leading)
        remainder = remainder - sp.Poly(leading * hermite_sympy(n, variable), variable)
    return coefficients


# ---------------------------------------------------------------------------------------------
# Numerical Gaussian expectations: Gauss-Hermite quadrature and Monte Carlo
# ---------------------------------------------------------------------------------------------

DEFAULT_NODES_1D = 100
"""Default number of Gauss-Hermite nodes for one-dimensional expectations."""

DEFAULT_NODES_2D = 60
"""Default number of Gauss-Hermite nodes per axis for two-dimensional expectations."""

_PSD_TOLERANCE = 1e-12
"""Relative slack allowed in ``c12^2 <= c11 c22`` (rounding at the boundary of the PSD cone)."""


@lru_cache(maxsize=64)
def _gauss_hermite_rule(n_nodes: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights for E over N(0, 1) (probabilists' rule, weights normalised to 1)."""
    nodes, weights = hermite_e.hermegauss(n_nodes)
    weights = weights / np.sqrt(2.0 * np.pi)
    nodes.setflags(write=False)
    weights.setflags(write=False)
    return nodes, weights


def _check_nodes(n_nodes: object, factor: int = 1) -> int:
    """``n_nodes`` as an int >= 1, refused if ``factor * n_nodes`` nodes' rule would not fit in memory."""
    n_nodes = integer(n_nodes, "n_nodes")
    # numpy's hermegauss finds the nodes as the eigenvalues of an n x n companion matrix.
    check_memory((factor * n_nodes) ** 2, "n_nodes", "the companion matrix of the Gauss-Hermite rule")
    return n_nodes


def _check_variance(variance: object) -> np.ndarray:
    return real_array(variance, "variance", nonempty=False, minimum=0)


def check_covariance_2d(c11: object, c12: object, c22: object, *,
                        names: tuple[str, str, str] = ("c11", "c12", "c22")
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validate (arrays of) 2x2 covariances ``[[c11, c12], [c12, c22]]`` and broadcast them.

    A covariance must be positive semi-definite: ``c11 >= 0``, ``c22 >= 0`` and
    ``c12**2 <= c11 * c22`` (up to a relative rounding slack of ``1e-12``, after which ``c12`` is
    clipped onto the boundary).

    Parameters
    ----------
    c11, c12, c22
        The entries: real numbers or broadcastable arrays of them.
    names
        The caller's names of the three parameters, for the error messages.

    Returns
    -------
    tuple of numpy.ndarray
        ``c11, c12, c22`` as float arrays of one broadcast shape.

    Raises
    ------
    TypeError
        If an entry is not made of real numbers.
    ValueError
        If an entry is not finite, the shapes do not broadcast, or a covariance is not PSD (the
        message names the offending entry).
    """
    entries = [real_array(c, name, nonempty=False) for c, name in zip((c11, c12, c22), names, strict=True)]
    try:
        c11, c12, c22 = np.broadcast_arrays(*entries)
    except ValueError as error:
        raise ValueError(f"covariance entries {', '.join(names)} must broadcast together: {error}") from error
    for entry, name in ((c11, names[0]), (c22, names[2])):
        if np.any(entry < 0):
            raise ValueError(f"{name} must be >= 0 (a variance): the covariance is not positive semi-definite")
    bound = np.sqrt(c11 * c22)
    if np.any(np.abs(c12) > bound * (1 + _PSD_TOLERANCE) + 1e-300):
        raise ValueError(
            f"{names[1]} must satisfy {names[1]}**2 <= {names[0]} * {names[2]}: the covariance is not positive "
            "semi-definite (|correlation| <= 1)"
        )
    return c11.copy(), np.clip(c12, -bound, bound), c22.copy()


def gauss_hermite_expectation(
    f: Callable[[np.ndarray], np.ndarray], variance: object = 1.0, n_nodes: int = DEFAULT_NODES_1D
) -> np.ndarray:
    r""":math:`\mathbb{E}[f(z)]` for :math:`z \sim \mathcal N(0, v)` by Gauss-Hermite quadrature.

    .. math:: \mathbb{E}[f(z)] \approx \sum_{i=1}^{n} w_i\, f(\sqrt{v}\, x_i),

    with :math:`(x_i, w_i)` the probabilists' Gauss-Hermite rule (exact for polynomials of degree
    up to :math:`2n - 1`). Converges geometrically for functions analytic in a strip around the
    real axis (erf, sigmoid); only algebraically for kinks (ReLU).

    Parameters
    ----------
    f
        Vectorised function of one array argument.
    variance
        Variance ``v >= 0``, a scalar or an array (the result then has its shape).
    n_nodes
        Number of quadrature nodes.

    Returns
    -------
    numpy.ndarray
        The expectation(s), shaped like ``variance``.
    """
    function(f, "f")
    variance = _check_variance(variance)
    n_nodes = _check_nodes(n_nodes)
    check_memory(max(variance.size, 1) * n_nodes, "n_nodes", "the quadrature points of every variance")
    nodes, weights = _gauss_hermite_rule(n_nodes)
    points = np.sqrt(variance)[..., None] * nodes
    return np.asarray(f(points), dtype=float) @ weights


def gauss_hermite_expectation_with_error(
    f: Callable[[np.ndarray], np.ndarray], variance: object = 1.0, n_nodes: int = DEFAULT_NODES_1D
) -> tuple[np.ndarray, np.ndarray]:
    r"""Gauss-Hermite :math:`\mathbb{E}[f(z)]` with ``2 n_nodes`` nodes and an error estimate.

    The estimate is :math:`|Q_{2n} - Q_n|`, the change from doubling the number of nodes, which is
    essentially the error of :math:`Q_n`. For geometrically convergent quadrature (``f`` analytic
    in a strip, e.g. erf or sigmoid), :math:`|Q_m - Q| \approx C r^m` with :math:`r < 1`, so the
    error of the returned :math:`Q_{2n}` is smaller than the estimate by a further factor
    :math:`r^n`: the estimate is conservative. For kinks (ReLU) convergence is algebraic and the
    estimate is only indicative; use :func:`gaussian_expectation_adaptive` there.

    Returns
    -------
    value, error_estimate : numpy.ndarray
        :math:`Q_{2n}` and :math:`|Q_{2n} - Q_n|`.
    """
    function(f, "f")
    values = _check_variance(variance)
    n_nodes = _check_nodes(n_nodes, factor=2)
    check_memory(max(values.size, 1) * 2 * n_nodes, "n_nodes", "the quadrature points of every variance")
    coarse = gauss_hermite_expectation(f, variance, n_nodes)
    fine = gauss_hermite_expectation(f, variance, 2 * n_nodes)
    return fine, np.abs(fine - coarse)


def gaussian_expectation_2d(
    f: Callable[[np.ndarray, np.ndarray], np.ndarray],
    c11: object,
    c12: object,
    c22: object,
    n_nodes: int = DEFAULT_NODES_2D,
) -> np.ndarray:
    r""":math:`\mathbb{E}[f(a, b)]` for :math:`(a, b) \sim \mathcal N(0, C)` by tensor Gauss-Hermite.

    With the Cholesky factor of :math:`C = \begin{pmatrix} c_{11} & c_{12} \\ c_{12} & c_{22}\end{pmatrix}`,

    .. math:: a = \sqrt{c_{11}}\, x, \qquad
        b = \frac{c_{12}}{\sqrt{c_{11}}}\, x + \sqrt{c_{22} - c_{12}^2/c_{11}}\; y,
        \qquad \mathbb{E}[f(a, b)] \approx \sum_{i,j} w_i w_j\, f(a_{ij}, b_{ij}),

    with :math:`x, y` independent standard normals and :math:`(x_i, w_i)` the probabilists'
    Gauss-Hermite rule. ``c11 = 0`` (then ``a = 0``) and singular covariances are allowed.

    Parameters
    ----------
    f
        Vectorised function of two broadcastable arrays.
    c11, c12, c22
        Covariance entries, scalars or broadcastable arrays (the result has their broadcast shape;
        memory grows as that size times ``n_nodes**2``).
    n_nodes
        Nodes per axis.

    Raises
    ------
    ValueError
        If the covariance is not positive semi-definite (see :func:`check_covariance_2d`).
    """
    function(f, "f")
    c11, c12, c22 = check_covariance_2d(c11, c12, c22)
    n_nodes = _check_nodes(n_nodes)
    check_memory(max(c11.size, 1) * 3 * n_nodes**2, "n_nodes", "the quadrature grid of every covariance")
    nodes, weights = _gauss_hermite_rule(n_nodes)
    scale_a = np.sqrt(c11)
    positive = c11 > 0
    loading = np.divide(c12, scale_a, out=np.zeros_like(c12), where=positive)
    residual = np.sqrt(np.maximum(c22 - loading**2, 0.0))
    x = nodes[:, None]
    y = nodes[None, :]
    a = scale_a[..., None, None] * x
    b = loading[..., None, None] * x + residual[..., None, None] * y
    values = np.asarray(f(a, b), dtype=float)
    values = np.broadcast_to(values, np.broadcast_shapes(a.shape, b.shape))
    return np.einsum("...ij,i,j->...", values, weights, weights)


def gaussian_expectation_2d_with_error(
    f: Callable[[np.ndarray, np.ndarray], np.ndarray],
    c11: object,
    c12: object,
    c22: object,
    n_nodes: int = DEFAULT_NODES_2D,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`gaussian_expectation_2d` with ``2 n_nodes`` nodes per axis and an error estimate.

    Returns
    -------
    value, error_estimate : numpy.ndarray
        :math:`Q_{2n}` and :math:`|Q_{2n} - Q_n|` (see :func:`gauss_hermite_expectation_with_error`
        for when this estimate is trustworthy: smooth integrands).
    """
    function(f, "f")
    size = check_covariance_2d(c11, c12, c22)[0].size
    n_nodes = _check_nodes(n_nodes, factor=2)
    check_memory(max(size, 1) * 3 * (2 * n_nodes) ** 2, "n_nodes", "the quadrature grid of every covariance")
    coarse = gaussian_expectation_2d(f, c11, c12, c22, n_nodes)
    fine = gaussian_expectation_2d(f, c11, c12, c22, 2 * n_nodes)
    return fine, np.abs(fine - coarse)


def gaussian_expectation_adaptive(
    f: Callable[[float], float], variance: float = 1.0, breakpoints: Sequence[float] = (0.0,)
) -> tuple[float, float]:
    r""":math:`\mathbb{E}[f(z)]`, :math:`z \sim \mathcal N(0, v)`, by adaptive quadrature with its error bound.

    The integral :math:`\int f(\sqrt{v}\,x)\,\varphi(x)\,dx` is split at ``breakpoints`` (in
    units of the standard deviation; put kinks there, e.g. ``0`` for ReLU) and each piece is
    integrated by :func:`scipy.integrate.quad`, whose absolute error estimates are summed.

    Parameters
    ----------
    f
        Scalar function.
    variance
        Variance ``v > 0``.
    breakpoints
        Points (of the standardised variable) where ``f`` is not smooth.

    Returns
    -------
    value, error_estimate : float
    """
    from scipy import integrate

    function(f, "f")
    variance = real(variance, "variance", minimum=0)
    real_array(breakpoints, "breakpoints", ndim=1, nonempty=False)
    scale = np.sqrt(variance)
    edges = [-np.inf, *sorted(float(point) for point in breakpoints), np.inf]

    def integrand(x: float) -> float:
        return f(scale * x) * np.exp(-0.5 * x * x) / np.sqrt(2.0 * np.pi)

    value = 0.0
    error = 0.0
    for low, high in itertools.pairwise(edges):
        with warnings.catch_warnings():
            # quad warns when rounding stops it short of 1e-12: its estimate is then at rounding level.
            warnings.simplefilter("ignore", integrate.IntegrationWarning)
            piece, piece_error = integrate.quad(integrand, low, high, epsabs=1e-12, epsrel=1e-10, limit=200)
        value += piece
        error += piece_error
    return value, error


def monte_carlo_expectation_2d(
    f: Callable[[np.ndarray, np.ndarray], np.ndarray],
    c11: object,
    c12: object,
    c22: object,
    n_samples: int,
    seed: int | np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    r"""Monte Carlo estimate of :math:`\mathbb{E}[f(a, b)]`, :math:`(a, b) \sim \mathcal N(0, C)`, with its standard
    error.

    Draws ``n_samples`` pairs of independent standard normals ``(x, y)`` once and maps them
    through the Cholesky factor of every covariance (common random numbers across an array of
    covariances, so curves against ``c12`` are smooth), then returns the sample mean and
    :math:`\hat\sigma/\sqrt{n}`.

    Parameters
    ----------
    f
        Vectorised function of two arrays.
    c11, c12, c22
        Covariance entries (scalars or broadcastable arrays).
    n_samples
        Number of samples (at least 2).
    seed
        Seed or generator (same seed, same result).

    Returns
    -------
    mean, standard_error : numpy.ndarray
        Shaped like the broadcast covariance entries.
    """
    function(f, "f")
    n_samples = integer(n_samples, "n_samples", minimum=2)
    c11, c12, c22 = check_covariance_2d(c11, c12, c22)
    check_memory((2 + 3 * max(c11.size, 1)) * n_samples, "n_samples", "the samples of every covariance")
    rng = generator(seed, "seed")
    x, y = rng.standard_normal((2, n_samples))
    scale_a = np.sqrt(c11)
    loading = np.divide(c12, scale_a, out=np.zeros_like(c12), where=c11 > 0)
    residual = np.sqrt(np.maximum(c22 - loading**2, 0.0))
    a = scale_a[..., None] * x
    b = loading[..., None] * x + residual[..., None] * y
    values = np.asarray(f(a, b), dtype=float)
    return values.mean(axis=-1), values.std(axis=-1, ddof=1) / np.sqrt(n_samples)
