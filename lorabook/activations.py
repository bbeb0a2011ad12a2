"""Named activation functions: numerical forms, derivatives and symbolic (sympy) forms.

The book uses a small fixed set of activations, always referred to by name:

* ``"linear"``: :math:`s(z) = z`;
* ``"erf"``: the standard error function :math:`s(z) = \\operatorname{erf}(z)` (not
  :math:`\\operatorname{erf}(z/\\sqrt2)`);
* ``"relu"``: :math:`s(z) = \\max(z, 0)`;
* ``"sigmoid"``: :math:`s(z) = 1/(1 + e^{-z})`;
* ``"He1"`` ... ``"He10"``: the (unnormalised) probabilists' Hermite polynomials
  :math:`\\mathrm{He}_k`, with :math:`\\mathbb{E}[\\mathrm{He}_j(z)\\mathrm{He}_k(z)] = k!\\,\\delta_{jk}`
  for :math:`z \\sim \\mathcal{N}(0, 1)`.

Every public function validates the name and raises :class:`ValueError` listing the valid
names (or :class:`TypeError` when the name is not a string).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import sympy as sp
from numpy.polynomial import hermite_e
from scipy import special

MAX_HERMITE_DEGREE = 10
"""Largest Hermite degree available as a named activation (``"He10"``)."""

HERMITE_NAMES: tuple[str, ...] = tuple(f"He{k}" for k in range(1, MAX_HERMITE_DEGREE + 1))
ACTIVATION_NAMES: tuple[str, ...] = ("linear", "erf", "relu", "sigmoid", *HERMITE_NAMES)
"""Every valid activation name, in the order the book lists them."""

ArrayFunction = Callable[[np.ndarray], np.ndarray]


def check_activation(name: object) -> str:
    """Validate an activation name and return it.

    Parameters
    ----------
    name
        Candidate activation name.

    Returns
    -------
    str
        The same name, known to be valid.

    Raises
    ------
    TypeError
        If ``name`` is not a string.
    ValueError
        If ``name`` is not one of :data:`ACTIVATION_NAMES`; the message lists the valid names.
    """
    if not isinstance(name, str):
        raise TypeError(
            f"activation name must be a string, got {type(name).__name__}; "
            f"valid names: {', '.join(ACTIVATION_NAMES)}"
        )
    if name not in ACTIVATION_NAMES:
        raise ValueError(
            f"unknown activation {name!r}; valid names: {', '.join(ACTIVATION_NAMES)}"
        )
    return name


def hermite_degree(name: str) -> int | None:
    """Return ``k`` for the Hermite activation ``"Hek"``, ``None`` for the other activations.

    Raises
    ------
    ValueError, TypeError
        For an invalid name (see :func:`check_activation`).
    """
    check_activation(name)
    return int(name[2:]) if name in HERMITE_NAMES else None


def _hermite_basis_coefficients(k: int) -> np.ndarray:
    """Coefficients of He_k in the He basis (a one-hot vector), for numpy's hermite_e."""
    coefficients = np.zeros(k + 1)
    coefficients[k] = 1.0
    return coefficients


def activation(name: str) -> ArrayFunction:
    """Return the activation ``s`` as a vectorised numpy function.

    Parameters
    ----------
    name
        One of :data:`ACTIVATION_NAMES`.

    Returns
    -------
    callable
        ``s(z)`` evaluated elementwise on an array ``z``.
    """
    check_activation(name)
    if name == "linear":
        return lambda z: np.asarray(z, dtype=float) * 1.0
    if name == "erf":
        return lambda z: special.erf(z)
    if name == "relu":
        return lambda z: np.maximum(z, 0.0)
    if name == "sigmoid":
        return lambda z: special.expit(z)
    coefficients = _hermite_basis_coefficients(hermite_degree(name))
    return lambda z: hermite_e.hermeval(z, coefficients)


def activation_derivative(name: str) -> ArrayFunction:
    """Return the derivative ``s'`` as a vectorised numpy function.

    For ReLU the derivative is the Heaviside step :math:`\\Theta(z)` with :math:`\\Theta(0) = 0`
    (a null set under any Gaussian law, so the convention never changes an expectation).
    For Hermite polynomials :math:`\\mathrm{He}_k' = k\\,\\mathrm{He}_{k-1}`.
    """
    check_activation(name)
    if name == "linear":
        return lambda z: np.ones_like(np.asarray(z, dtype=float))
    if name == "erf":
        return lambda z: (2.0 / np.sqrt(np.pi)) * np.exp(-np.square(z))
    if name == "relu":
        return lambda z: (np.asarray(z) > 0).astype(float)
    if name == "sigmoid":

        def sigmoid_derivative(z: np.ndarray) -> np.ndarray:
            value = special.expit(z)
            return value * (1.0 - value)

        return sigmoid_derivative
    k = hermite_degree(name)
    coefficients = k * _hermite_basis_coefficients(k - 1)
    return lambda z: hermite_e.hermeval(z, coefficients)


def activation_second_derivative(name: str) -> ArrayFunction:
    """Return the second derivative ``s''`` as a vectorised numpy function.

    For ReLU the second derivative is a Dirac delta at 0, which has no pointwise value: a
    :class:`ValueError` is raised and callers must treat that term analytically. For the sigmoid
    :math:`s'' = s'(1 - 2s)` (evaluated stably for large ``|z|``); for Hermite polynomials
    :math:`\\mathrm{He}_k'' = k(k-1)\\mathrm{He}_{k-2}`.
    """
    check_activation(name)
    if name == "relu":
        raise ValueError("the second derivative of relu is a Dirac delta; treat it analytically")
    if name == "linear":
        return lambda z: np.zeros_like(np.asarray(z, dtype=float))
    if name == "erf":
        return lambda z: (-4.0 / np.sqrt(np.pi)) * np.asarray(z) * np.exp(-np.square(z))
    if name == "sigmoid":

        def sigmoid_second_derivative(z: np.ndarray) -> np.ndarray:
            value = special.expit(z)
            return value * (1.0 - value) * (1.0 - 2.0 * value)

        return sigmoid_second_derivative
    k = hermite_degree(name)
    if k < 2:
        return lambda z: np.zeros_like(np.asarray(z, dtype=float))
    coefficients = k * (k - 1) * _hermite_basis_coefficients(k - 2)
    return lambda z: hermite_e.hermeval(z, coefficients)


def activation_sympy(name: str, z: sp.Symbol | None = None) -> sp.Expr:
    """Return the activation as a sympy expression in the symbol ``z``.

    Parameters
    ----------
    name
        One of :data:`ACTIVATION_NAMES`.
    z
        The argument symbol; a real symbol ``z`` is created when omitted.

    Returns
    -------
    sympy.Expr
        ``z``, ``erf(z)``, ``Max(z, 0)`` (written as a ``Piecewise``), ``1/(1+exp(-z))`` or the
        expanded polynomial :math:`\\mathrm{He}_k(z)`.
    """
    check_activation(name)
    if z is None:
        z = sp.Symbol("z", real=True)
    if name == "linear":
        return z
    if name == "erf":
        return sp.erf(z)
    if name == "relu":
        return sp.Piecewise((z, z > 0), (0, True))
    if name == "sigmoid":
        return 1 / (1 + sp.exp(-z))
    return sp.expand(sp.hermite_prob(hermite_degree(name), z))


def is_polynomial(name: str) -> bool:
    """Whether the activation is a polynomial (linear or a Hermite polynomial)."""
    check_activation(name)
    return name == "linear" or name in HERMITE_NAMES
