r"""Named activation functions: numerical forms, derivatives and symbolic (sympy) forms.

The book uses a small fixed set of activations, always referred to by name:

* ``"linear"``: :math:`s(z) = z`;
* ``"erf"``: the standard error function :math:`s(z) = \operatorname{erf}(z)` (not
  :math:`\operatorname{erf}(z/\sqrt2)`);
* ``"relu"``: :math:`s(z) = \max(z, 0)`;
* ``"sigmoid"``: :math:`s(z) = 1/(1 + e^{-z})`;
* ``"He1"`` ... ``"He10"``: the (unnormalised) probabilists' Hermite polynomials
  :math:`\mathrm{He}_k`, with :math:`\mathbb{E}[\mathrm{He}_j(z)\mathrm{He}_k(z)] = k!\,\delta_{jk}`
  for :math:`z \sim \mathcal{N}(0, 1)`.

Teachers (targets) may also be *composite* names, built from the names above:

* ``"<name>^2"``: the square of an activation, e.g. ``"erf^2"``, ``"relu^2"``, ``"He3^2"``
  (the label change :math:`s_\star = s^2`, i.e. training on :math:`y^2`);
* a linear combination of Hermite polynomials, terms joined by ``+`` or ``-``, each ``"He<k>"``
  or ``"<c>*He<k>"`` with a decimal coefficient ``c``, e.g. ``"He3+He5"``, ``"He2+0.5*He4"``,
  ``"2*He1-He3"`` (two-term Hermite targets :math:`a_1\mathrm{He}_k + a_2\mathrm{He}_{k+k'}`).
  Coefficients are read exactly (``"0.5"`` is the rational 1/2).

:data:`ACTIVATION_NAMES` lists the names valid for a *student*; :func:`check_target` accepts
those and the composite teacher names, and every function below that evaluates an activation
(:func:`activation`, its derivatives, :func:`activation_sympy`, :func:`is_polynomial`) accepts
both. Every public function validates the name and raises :class:`ValueError` listing the valid
names (or :class:`TypeError` when the name is not a string).

A name is resolved once: :func:`resolve_activation` (and the checks built on it) turns it into an
:class:`Activation`, a :class:`str` that carries its parsed form and its numeric functions, built
once per name. The public functions of lorabook resolve their activation arguments at the
boundary and pass the :class:`Activation` down, where every check returns it unchanged.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from fractions import Fraction
from functools import cache, cached_property

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


def check_activation(name: object, *, parameter: str = "name") -> str:
    """Validate an activation name and return it.

    Parameters
    ----------
    name
        Candidate activation name.
    parameter
        The name of the caller's parameter that holds ``name`` (e.g. ``"activation"``), for the
        error messages.

    Returns
    -------
    Activation
        The name as an :class:`Activation` (a :class:`str`), known to be valid.

    Raises
    ------
    TypeError
        If ``name`` is not a string.
    ValueError
        If ``name`` is not one of :data:`ACTIVATION_NAMES`; the message names ``parameter`` and
        lists the valid names.
    """
    if isinstance(name, Activation) and name.is_student:
        return name
    if not isinstance(name, str):
        raise TypeError(
            f"{parameter} must be a string naming an activation, got {type(name).__name__}; "
            f"valid names: {', '.join(ACTIVATION_NAMES)}"
        )
    if name not in ACTIVATION_NAMES:
        raise ValueError(
            f"{parameter}={name!r} is not an activation; valid names: {', '.join(ACTIVATION_NAMES)}"
        )
    return _resolved(name)


SQUARE_SUFFIX = "^2"
r"""Suffix of a squared-teacher name: ``"erf^2"`` is :math:`s_\star(z) = \operatorname{erf}(z)^2`."""

_HERMITE_TERM = re.compile(r"\s*([+-]?)\s*(?:(\d+(?:\.\d*)?|\.\d+)\s*\*\s*)?He(\d+)\s*")
_TARGET_HELP = (
    "'<name>^2' (a squared activation, e.g. 'erf^2') or a sum of Hermite terms such as "
    f"'He3+He5' or 'He2+0.5*He4' (degrees 1..{MAX_HERMITE_DEGREE})"
)



class Activation(str):
    r"""An activation or target name, validated and parsed once.

    It is a :class:`str`: it compares, hashes and prints as its name, so it goes wherever a name
    goes (dictionary keys, caches, results, messages). It also carries the parsed form, so that
    nothing below the public boundary parses or validates the name again: the checks
    (:func:`check_target`, :func:`check_activation`) return an :class:`Activation` unchanged,
    and the numeric forms are built once per name and shared.

    Made only by :func:`resolve_activation` (one object per name).

    Attributes
    ----------
    base
        For a squared target ``"<name>^2"``, the :class:`Activation` of ``<name>``; else ``None``.
    hermite_terms
        For a Hermite combination such as ``"He3+He5"``, ``{degree: coefficient}`` (exact
        fractions); else ``None``.
    degree
        :math:`k` for the plain Hermite activation ``"He<k>"``; else ``None``.
    is_student
        Whether the name is one of :data:`ACTIVATION_NAMES` (valid for a student).
    """

    base: Activation | None
    hermite_terms: dict[int, Fraction] | None
    degree: int | None

    def __reduce__(self) -> tuple[Callable[..., Activation], tuple[str]]:
        # Pickles as its name (the cached numeric forms are lambdas).
        return resolve_activation, (str(self),)

    @property
    def is_student(self) -> bool:
        return str(self) in ACTIVATION_NAMES

    @property
    def is_polynomial(self) -> bool:
        """Whether it is a polynomial (linear, Hermite, their squares and sums)."""
        if self.base is not None:
            return self.base.is_polynomial
        return self == "linear" or self.degree is not None or self.hermite_terms is not None

    @cached_property
    def function(self) -> ArrayFunction:
        """The activation :math:`s`, vectorised (see :func:`activation`)."""
        return _make_function(self)

    @cached_property
    def derivative(self) -> ArrayFunction:
        """:math:`s'`, vectorised (see :func:`activation_derivative`)."""
        return _make_derivative(self)

    @cached_property
    def second_derivative(self) -> ArrayFunction:
        """:math:`s''`, vectorised (see :func:`activation_second_derivative`)."""
        return _make_second_derivative(self)


def resolve_activation(name: object, *, parameter: str = "name") -> Activation:
    """The :class:`Activation` of a valid activation or target name (see :func:`check_target`).

    An :class:`Activation` is returned as it is; a string is validated and parsed once and the
    same object is returned for the same name.

    Raises
    ------
    TypeError, ValueError
        As :func:`check_target`, naming ``parameter``.
    """
    if isinstance(name, Activation):
        return name
    if not isinstance(name, str):
        raise TypeError(f"{parameter} must be a string naming an activation or target, got {type(name).__name__}; "
                        f"valid names: {', '.join(ACTIVATION_NAMES)}, or composite targets {_TARGET_HELP}")
    try:
        return _resolved(name)
    except _UnknownName:
        raise ValueError(f"{parameter}={name!r} is not an activation or target; valid names: "
                         f"{', '.join(ACTIVATION_NAMES)}, or composite targets {_TARGET_HELP}") from None
    except ValueError as error:  # a Hermite combination with a bad degree or cancelling terms
        raise ValueError(f"{parameter}={name!r}: {error}") from None


class _UnknownName(Exception):
    """Raised by :func:`_resolved` for a string that is no activation or target name."""


@cache
def _resolved(name: str) -> Activation:
    base = _squared_base(name)
    terms = None if base is not None else _hermite_combination(name)
    if name not in ACTIVATION_NAMES and base is None and terms is None:
        raise _UnknownName(name)
    resolved = str.__new__(Activation, name)
    resolved.base = None if base is None else _resolved(base)
    resolved.hermite_terms = terms
    resolved.degree = int(name[2:]) if name in HERMITE_NAMES else None
    return resolved


def hermite_combination(name: str) -> dict[int, Fraction] | None:
    r"""Parse a Hermite-combination target name into ``{degree: coefficient}``.

    ``"He2+0.5*He4"`` gives ``{2: Fraction(1), 4: Fraction(1, 2)}``; repeated degrees add up
    (``"He3+He3"`` is :math:`2\mathrm{He}_3`). Returns ``None`` for the other valid names
    (activations such as ``"erf"`` or a single plain ``"He<k>"``, squared targets).

    Raises
    ------
    TypeError
        If ``name`` is not a string.
    ValueError
        If ``name`` is not a valid activation or target name (see :func:`check_target`), e.g. a
        degree lies outside ``1..MAX_HERMITE_DEGREE`` or every coefficient cancels.
    """
    return check_target(name).hermite_terms


def _hermite_combination(name: str) -> dict[int, Fraction] | None:
    """:func:`hermite_combination` without the validation: ``None`` for any other string."""
    if not isinstance(name, str) or name in ACTIVATION_NAMES:
        return None
    position, terms = 0, {}
    while position < len(name):
        match = _HERMITE_TERM.match(name, position)
        if match is None or match.end() == position or (position > 0 and not match.group(1)):
            return None
        sign, coefficient, degree = match.group(1), match.group(2), int(match.group(3))
        if not 1 <= degree <= MAX_HERMITE_DEGREE:
            raise ValueError(f"Hermite degree {degree} in {name!r} outside 1..{MAX_HERMITE_DEGREE}; valid names: "
                             f"{', '.join(ACTIVATION_NAMES)}, or composite targets {_TARGET_HELP}")
        value = Fraction(coefficient) if coefficient else Fraction(1)
        terms[degree] = terms.get(degree, Fraction(0)) + (-value if sign == "-" else value)
        position = match.end()
    terms = {degree: value for degree, value in sorted(terms.items()) if value != 0}
    if not terms:
        raise ValueError(f"target {name!r}: every Hermite coefficient cancels; valid names: "
                         f"{', '.join(ACTIVATION_NAMES)}, or composite targets {_TARGET_HELP}")
    return terms


def squared_base(name: str) -> str | None:
    """Return ``"erf"`` for the squared-teacher name ``"erf^2"``, ``None`` for the other valid names.

    Raises
    ------
    TypeError, ValueError
        If ``name`` is not a valid activation or target name (see :func:`check_target`).
    """
    base = check_target(name).base
    return None if base is None else str(base)


def _squared_base(name: str) -> str | None:
    """:func:`squared_base` without the validation: ``None`` for any other string."""
    if isinstance(name, str) and name.endswith(SQUARE_SUFFIX) and name[: -len(SQUARE_SUFFIX)] in ACTIVATION_NAMES:
        return name[: -len(SQUARE_SUFFIX)]
    return None


def check_target(name: object, *, parameter: str = "name") -> str:
    """Validate a teacher (target) name: an activation name or a composite name; return it.

    Composite names are a squared activation ``"<name>^2"`` or a Hermite combination such as
    ``"He3+He5"`` (see the module docstring).

    Parameters
    ----------
    name
        Candidate name.
    parameter
        The name of the caller's parameter that holds ``name`` (e.g. ``"teacher"``), for the
        error messages.

    Raises
    ------
    TypeError
        If ``name`` is not a string.
    ValueError
        If ``name`` is neither; the message names ``parameter``, describes the valid forms and
        lists the activations.
    """
    return resolve_activation(name, parameter=parameter)


def resolve_teacher(activation: object, teacher: object = None) -> str:
    """Validate a student and a teacher name and return the teacher's (``None``: the student's).

    Students and teachers may both be composite names (e.g. the two-term target ``"He3+He5"``
    as its own student).

    Raises
    ------
    TypeError, ValueError
        If either name is not a valid activation or target name (see :func:`check_target`); the
        message names the parameter, ``activation`` or ``teacher``.
    """
    activation = check_target(activation, parameter="activation")
    return activation if teacher is None else check_target(teacher, parameter="teacher")


def is_composite(name: str) -> bool:
    """Whether ``name`` is a composite target (squared activation or Hermite combination)."""
    return not check_target(name).is_student


def _hermite_combination_coefficients(terms: dict[int, Fraction], shift: int = 0) -> np.ndarray:
    """He-basis coefficient vector of sum_k c_k He_k, differentiated ``shift`` times (He_k' = k He_(k-1))."""
    coefficients = np.zeros(max(terms) + 1)
    for degree, value in terms.items():
        coefficients[degree] = float(value)
    return hermite_e.hermeder(coefficients, shift) if shift else coefficients


def hermite_degree(name: str) -> int | None:
    """Return ``k`` for the Hermite activation ``"Hek"``, ``None`` for the other activations.

    Raises
    ------
    ValueError, TypeError
        For an invalid name (see :func:`check_activation`).
    """
    return check_activation(name).degree


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
    return check_target(name).function


def _make_function(name: Activation) -> ArrayFunction:
    base = name.base
    if base is not None:
        function = activation(base)
        return lambda z: function(z) ** 2
    terms = name.hermite_terms
    if terms is not None:
        coefficients = _hermite_combination_coefficients(terms)
        return lambda z: hermite_e.hermeval(z, coefficients)
    if name == "linear":
        return lambda z: np.asarray(z, dtype=float) * 1.0
    if name == "erf":
        return lambda z: special.erf(z)
    if name == "relu":
        return lambda z: np.maximum(z, 0.0)
    if name == "sigmoid":
        return lambda z: special.expit(z)
    coefficients = _hermite_basis_coefficients(name.degree)
    return lambda z: hermite_e.hermeval(z, coefficients)


def activation_derivative(name: str) -> ArrayFunction:
    r"""Return the derivative ``s'`` as a vectorised numpy function.

    For ReLU the derivative is the Heaviside step :math:`\Theta(z)` with :math:`\Theta(0) = 0`
    (a null set under any Gaussian law, so the convention never changes an expectation).
    For Hermite polynomials :math:`\mathrm{He}_k' = k\,\mathrm{He}_{k-1}`.
    """
    return check_target(name).derivative


def _make_derivative(name: Activation) -> ArrayFunction:
    base = name.base
    if base is not None:
        function, derivative = activation(base), activation_derivative(base)
        return lambda z: 2.0 * function(z) * derivative(z)
    terms = name.hermite_terms
    if terms is not None:
        coefficients = _hermite_combination_coefficients(terms, shift=1)
        return lambda z: hermite_e.hermeval(z, coefficients)
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
    k = name.degree
    coefficients = k * _hermite_basis_coefficients(k - 1)
    return lambda z: hermite_e.hermeval(z, coefficients)


def activation_second_derivative(name: str) -> ArrayFunction:
    r"""Return the second derivative ``s''`` as a vectorised numpy function.

    For ReLU the second derivative is a Dirac delta at 0, which has no pointwise value: a
    :class:`ValueError` is raised and callers must treat that term analytically. For the sigmoid
    :math:`s'' = s'(1 - 2s)` (evaluated stably for large ``|z|``); for Hermite polynomials
    :math:`\mathrm{He}_k'' = k(k-1)\mathrm{He}_{k-2}`.
    """
    return check_target(name).second_derivative


def _make_second_derivative(name: Activation) -> ArrayFunction:
    base = name.base
    if base == "relu":
        # (relu^2)'' = 2 Theta: the delta of relu'' multiplies relu(0) = 0.
        return lambda z: 2.0 * (np.asarray(z) > 0).astype(float)
    if base is not None:
        function, first, second = activation(base), activation_derivative(base), activation_second_derivative(base)
        return lambda z: 2.0 * (first(z) ** 2 + function(z) * second(z))
    terms = name.hermite_terms
    if terms is not None:
        coefficients = _hermite_combination_coefficients(terms, shift=2)
        return lambda z: hermite_e.hermeval(z, coefficients)
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
    k = name.degree
    if k < 2:
        return lambda z: np.zeros_like(np.asarray(z, dtype=float))
    coefficients = k * (k - 1) * _hermite_basis_coefficients(k - 2)
    return lambda z: hermite_e.hermeval(z, coefficients)


def activation_sympy(name: str, z: sp.Symbol | None = None) -> sp.Expr:
    r"""Return the activation as a sympy expression in the symbol ``z``.

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
        expanded polynomial :math:`\mathrm{He}_k(z)`; for composite targets the square (expanded
        for polynomials) or the expanded Hermite combination.
    """
    name = check_target(name)
    if z is None:
        z = sp.Symbol("z", real=True)
    base = name.base
    if base is not None:
        expr = activation_sympy(base, z) ** 2
        if base == "relu":
            return sp.Piecewise((z**2, z > 0), (0, True))
        return sp.expand(expr) if base.is_polynomial else expr
    terms = name.hermite_terms
    if terms is not None:
        return sp.expand(sum(sp.Rational(value.numerator, value.denominator) * sp.hermite_prob(degree, z)
                             for degree, value in terms.items()))
    if name == "linear":
        return z
    if name == "erf":
        return sp.erf(z)
    if name == "relu":
        return sp.Piecewise((z, z > 0), (0, True))
    if name == "sigmoid":
        return 1 / (1 + sp.exp(-z))
    return sp.expand(sp.hermite_prob(name.degree, z))


def is_polynomial(name: str) -> bool:
    """Whether the activation or target is a polynomial (linear, Hermite, their squares and sums)."""
    return check_target(name).is_polynomial
