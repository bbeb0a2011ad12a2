"""Gaussian integrals: Hermite polynomials and exact Gaussian moments.

Everything in the book reduces to expectations over a few jointly Gaussian variables (the
preactivations). This module holds the pure mathematics of those expectations, independent of
any particular activation:

* probabilists' Hermite polynomials :math:`\\mathrm{He}_k`, numerically and symbolically;
* exact expectations of polynomials of centred jointly Gaussian variables with a symbolic
  covariance (Gaussian integration by parts, i.e. Isserlis/Wick).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import sympy as sp
from numpy.polynomial import hermite_e


def hermite(k: int, z: np.ndarray | float) -> np.ndarray:
    """Evaluate the probabilists' Hermite polynomial :math:`\\mathrm{He}_k(z)`.

    .. math:: \\mathrm{He}_k(z) = (-1)^k e^{z^2/2} \\frac{d^k}{dz^k} e^{-z^2/2},
        \\qquad \\mathbb{E}_{z\\sim\\mathcal N(0,1)}[\\mathrm{He}_j(z)\\mathrm{He}_k(z)] = k!\\,\\delta_{jk}.

    Parameters
    ----------
    k
        Degree, a non-negative integer.
    z
        Points at which to evaluate.
    """
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise TypeError(f"Hermite degree must be an integer, got {type(k).__name__}")
    if k < 0:
        raise ValueError(f"Hermite degree must be non-negative, got {k}")
    coefficients = np.zeros(int(k) + 1)
    coefficients[-1] = 1.0
    return hermite_e.hermeval(z, coefficients)


def hermite_sympy(k: int, z: sp.Symbol) -> sp.Expr:
    """Return :math:`\\mathrm{He}_k(z)` as an expanded sympy polynomial in ``z``."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 0:
        raise ValueError(f"Hermite degree must be a non-negative integer, got {k!r}")
    return sp.expand(sp.hermite_prob(int(k), z))


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


def gaussian_expectation_sympy(
    expr: sp.Expr, variables: Sequence[sp.Symbol], covariance: object
) -> sp.Expr:
    """Exact expectation of a polynomial of centred jointly Gaussian variables.

    Uses Gaussian integration by parts (Stein's lemma) recursively on monomials,

    .. math:: \\mathbb{E}[x_i\\, f(x)] = \\sum_j C_{ij}\\, \\mathbb{E}[\\partial_j f(x)],

    which is Isserlis' (Wick's) theorem. The covariance entries may be symbols, so the result is a
    polynomial in them, e.g. :math:`\\mathbb{E}[a^2 b^2] = C_{aa} C_{bb} + 2 C_{ab}^2`.

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
    variables = tuple(variables)
    if not variables:
        raise ValueError("at least one Gaussian variable is required")
    matrix = _covariance_matrix(covariance, len(variables))
    try:
        polynomial = sp.Poly(sp.expand(expr), *variables)
    except sp.PolynomialError as error:
        raise ValueError(f"expression is not a polynomial in {variables}: {error}") from error
    entries = tuple(tuple(matrix[i, j] for j in range(len(variables))) for i in range(len(variables)))
    total = sp.Integer(0)
    for exponents, coefficient in polynomial.terms():
        total += coefficient * _monomial_moment(exponents, entries)
    return sp.expand(total)


@lru_cache(maxsize=None)
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
