r"""Input checks used at the public boundary of every lorabook function.

Every public function of lorabook validates its arguments once, on entry, with the small
functions below, and passes each check the name of the parameter exactly as it is spelled in its
own signature. A bad value is therefore answered at once (before any large array is allocated)
with a :class:`TypeError` (wrong kind of value) or a :class:`ValueError` (right kind, wrong
value) whose message starts with that name, e.g.

.. code-block:: text

    learning_rate must be a finite number > 0, got nan

Each check takes the value and the parameter's name and returns the validated value, converted
to the type the caller computes with (``int``, ``float``, a float array, ...), so that a caller
writes ``n_steps = integer(n_steps, "n_steps", minimum=0)``. The conversions are exact: a valid
value gives the same numbers as before it was checked.

* :func:`integer`, :func:`real`, :func:`boolean`: scalars;
* :func:`real_array`: numbers or arrays of numbers, with optional bounds, shapes and sizes;
* :func:`choice`: one of a fixed set of names;
* :func:`function`, :func:`generator`: callables and random seeds;
* :func:`check_memory`: sizes whose arrays would not fit in the machine's memory;
* :class:`UnsupportedChoiceError`: a valid name that a particular function does not support.
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

__all__ = [
    "UnsupportedChoiceError",
    "boolean",
    "check_memory",
    "choice",
    "function",
    "generator",
    "integer",
    "matrix",
    "real",
    "real_array",
]


class UnsupportedChoiceError(ValueError, NotImplementedError):
    r"""A valid name that this particular function does not support.

    Raised, for example, when a closed form is asked for an activation that has none. It is a
    :class:`ValueError` (the argument is not one of the function's supported choices; the message
    names the parameter and lists those choices) and, for code written against earlier versions
    of lorabook, also a :class:`NotImplementedError`.
    """


def _show(value: object, limit: int = 80) -> str:
    """``repr(value)``, shortened to about ``limit`` characters (large arrays stay readable)."""
    if isinstance(value, np.ndarray) and value.size > 8:
        return f"an array of shape {value.shape}"
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _number(bound: float) -> str:
    """A bound as it reads in a message: ``0`` rather than ``0.0``, ``inf`` for infinity."""
    if isinstance(bound, float) and bound.is_integer():
        return str(int(bound))
    return str(bound)


def _range_text(minimum: float | None, maximum: float | None, strict_minimum: bool,
                strict_maximum: bool) -> str:
    """``"> 0"``, ``">= 0"``, ``"<= 1"`` or ``"in (0, 1]"``: the allowed range, for messages."""
    if minimum is not None and maximum is not None:
        return (f"in {'(' if strict_minimum else '['}{_number(minimum)}, "
                f"{_number(maximum)}{')' if strict_maximum else ']'}")
    if minimum is not None:
        return f"{'>' if strict_minimum else '>='} {_number(minimum)}"
    if maximum is not None:
        return f"{'<' if strict_maximum else '<='} {_number(maximum)}"
    return ""


def _is_real_scalar(value: object) -> bool:
    """Whether ``value`` is a real number: Python, numpy and sympy numbers and 0-d numeric arrays."""
    if isinstance(value, (bool, np.bool_)):
        return False
    if isinstance(value, numbers.Real):
        return True
    return isinstance(value, np.ndarray) and value.ndim == 0 and value.dtype.kind in "iuf"


def integer(value: object, name: str, *, minimum: int | None = 1, maximum: int | None = None) -> int:
    r"""Validate an integer (a size, a count, a degree) and return it as a Python ``int``.

    Parameters
    ----------
    value
        The candidate: a Python or numpy integer (``bool``, floats, strings and other objects are
        refused, even when they hold an integral value such as ``2.0``).
    name
        The parameter's name, as spelled in the caller's signature (it starts every message).
    minimum
        Smallest allowed value (default 1, a positive size); ``None`` for no lower bound.
    maximum
        Largest allowed value; ``None`` (the default) for no upper bound.

    Returns
    -------
    int
        ``int(value)``.

    Raises
    ------
    TypeError
        If ``value`` is not an integer (or is a bool).
    ValueError
        If ``value`` lies below ``minimum`` or above ``maximum``.
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Integral, np.integer)):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__} {_show(value)}")
    result = int(value)
    if (minimum is not None and result < minimum) or (maximum is not None and result > maximum):
        if minimum is not None and maximum is not None:
            allowed = f"in {minimum}..{maximum}"
        else:
            allowed = f">= {minimum}" if minimum is not None else f"<= {maximum}"
        raise ValueError(f"{name} must be an integer {allowed}, got {result}")
    return result


def real(value: object, name: str, *, minimum: float | None = None, maximum: float | None = None,
         strict_minimum: bool = False, strict_maximum: bool = False, allow_infinite: bool = False) -> float:
    r"""Validate a real number and return it as a Python ``float``.

    Parameters
    ----------
    value
        The candidate: a Python, numpy or sympy real number, or a 0-d numeric array (``bool``,
        strings, complex numbers and arrays with more than one element are refused).
    name
        The parameter's name, as spelled in the caller's signature.
    minimum, maximum
        Bounds of the allowed range (``None``: unbounded on that side).
    strict_minimum, strict_maximum
        Whether the bound itself is excluded (``minimum=0, strict_minimum=True`` is ``> 0``).
    allow_infinite
        Whether ``inf`` and ``-inf`` are allowed (they still have to lie in the range). NaN is
        never allowed.

    Returns
    -------
    float
        ``float(value)``.

    Raises
    ------
    TypeError
        If ``value`` is not a real number.
    ValueError
        If ``value`` is NaN, infinite (unless allowed) or outside the range.
    """
    if not _is_real_scalar(value):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} {_show(value)}")
    result = float(value)
    bad = math.isnan(result) or (math.isinf(result) and not allow_infinite)
    if minimum is not None:
        bad = bad or result < minimum or (strict_minimum and result == minimum)
    if maximum is not None:
        bad = bad or result > maximum or (strict_maximum and result == maximum)
    if bad:
        kind = "number" if allow_infinite else "finite number"
        allowed = _range_text(minimum, maximum, strict_minimum, strict_maximum)
        raise ValueError(f"{name} must be a {kind}{' ' + allowed if allowed else ''}, got {result!r}")
    return result


def real_array(value: object, name: str, *, ndim: int | Iterable[int] | None = None, nonempty: bool = True,
               minimum: float | None = None, maximum: float | None = None, strict_minimum: bool = False,
               strict_maximum: bool = False, allow_infinite: bool = False,
               length: int | None = None) -> np.ndarray:
    r"""Validate a real number or an array of real numbers and return it as a float array.

    Parameters
    ----------
    value
        The candidate: a number, a (nested) sequence of numbers or a numeric numpy array.
        Booleans, strings and complex numbers are refused.
    name
        The parameter's name, as spelled in the caller's signature.
    ndim
        The allowed number(s) of dimensions (``0`` for a scalar); ``None`` allows any.
    nonempty
        Whether an array without elements is refused (the default).
    minimum, maximum, strict_minimum, strict_maximum
        Bounds that every element must satisfy (as in :func:`real`).
    allow_infinite
        Whether infinite elements are allowed; NaN is never allowed.
    length
        If given, the required size of the last axis (e.g. ``3`` for a state ``(beta, alpha, p)``).

    Returns
    -------
    numpy.ndarray
        ``numpy.asarray(value, dtype=float)`` (no copy when ``value`` already is a float array).

    Raises
    ------
    TypeError
        If ``value`` is not made of real numbers.
    ValueError
        For the wrong number of dimensions or last-axis length, an empty array (when
        ``nonempty``), NaN or infinite elements (unless allowed), or elements out of range.
    """
    if isinstance(value, (str, bytes, bool, np.bool_)) or value is None:
        raise TypeError(f"{name} must be a real number or an array of real numbers, got "
                        f"{type(value).__name__} {_show(value)}")
    try:
        raw = np.asarray(value)
    except (TypeError, ValueError) as error:
        raise TypeError(f"{name} must be a real number or an array of real numbers, got {_show(value)}") from error
    if raw.dtype.kind in "bUSVcmM":
        raise TypeError(f"{name} must be a real number or an array of real numbers, got an array of dtype "
                        f"{raw.dtype} {_show(value)}")
    try:
        values = np.asarray(value, dtype=float)
    except (TypeError, ValueError) as error:
        raise TypeError(f"{name} must be a real number or an array of real numbers, got {_show(value)}") from error
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if values.ndim not in allowed:
            wanted = " or ".join(str(n) for n in allowed)
            raise ValueError(f"{name} must have {wanted} dimension{'' if allowed == (1,) else 's'}, "
                             f"got shape {values.shape}")
    if length is not None and (values.ndim == 0 or values.shape[-1] != length):
        raise ValueError(f"{name} must have a last axis of length {length}, got shape {values.shape}")
    if nonempty and values.size == 0:
        raise ValueError(f"{name} must not be empty, got shape {values.shape}")
    allowed_range = _range_text(minimum, maximum, strict_minimum, strict_maximum)
    in_range = f"{'lie' if allowed_range.startswith('in') else 'be'} {allowed_range}" if allowed_range else ""
    if np.any(np.isnan(values)) or (not allow_infinite and not np.all(np.isfinite(values))):
        finite = "not be NaN" if allow_infinite else "be finite"
        raise ValueError(f"{name} must {finite}{' and ' + in_range if in_range else ''}, got {_show(value)}")
    bad = False
    if minimum is not None:
        bad = bool(np.any(values < minimum) or (strict_minimum and np.any(values == minimum)))
    if maximum is not None:
        bad = bad or bool(np.any(values > maximum) or (strict_maximum and np.any(values == maximum)))
    if bad:
        raise ValueError(f"{name} must {in_range}, got {_show(value)}")
    return values


def choice(value: object, name: str, choices: Iterable[str]) -> str:
    r"""Validate a name that must be one of ``choices`` and return it.

    Parameters
    ----------
    value
        The candidate name.
    name
        The parameter's name, as spelled in the caller's signature.
    choices
        The valid names, in the order the message lists them.

    Returns
    -------
    str
        ``value``.

    Raises
    ------
    TypeError
        If ``value`` is not a string.
    ValueError
        If ``value`` is not one of ``choices``; the message lists them.
    """
    valid = tuple(choices)
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a string, one of {', '.join(valid)}; got {type(value).__name__} "
                        f"{_show(value)}")
    if value not in valid:
        raise ValueError(f"{name}={value!r} is not a valid {name}; valid {name}s: {', '.join(valid)}")
    return value


def boolean(value: object, name: str) -> bool:
    r"""Validate a flag and return it as a Python ``bool``.

    Parameters
    ----------
    value
        The candidate: ``True``, ``False`` or a numpy bool (integers and strings are refused).
    name
        The parameter's name, as spelled in the caller's signature.

    Returns
    -------
    bool
        ``bool(value)``.

    Raises
    ------
    TypeError
        If ``value`` is not a bool.
    """
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {type(value).__name__} {_show(value)}")
    return bool(value)


def function(value: object, name: str) -> Callable[..., Any]:
    r"""Validate a callable (an integrand, a right-hand side) and return it.

    Parameters
    ----------
    value
        The candidate.
    name
        The parameter's name, as spelled in the caller's signature.

    Returns
    -------
    callable
        ``value``.

    Raises
    ------
    TypeError
        If ``value`` is not callable.
    """
    if not callable(value):
        raise TypeError(f"{name} must be a function (callable), got {type(value).__name__} {_show(value)}")
    return value


def generator(value: object, name: str) -> np.random.Generator:
    r"""Validate a seed and return the random generator it stands for.

    Every random function of lorabook takes a non-negative integer seed or a
    :class:`numpy.random.Generator`; the same seed gives the same numbers.

    Parameters
    ----------
    value
        A non-negative Python or numpy integer (``numpy.random.default_rng(value)`` is returned)
        or a Generator (returned itself, so that its stream continues).
    name
        The parameter's name, as spelled in the caller's signature (usually ``seed``).

    Returns
    -------
    numpy.random.Generator

    Raises
    ------
    TypeError
        If ``value`` is neither an integer nor a Generator (bools and floats are refused).
    ValueError
        If ``value`` is a negative integer.
    """
    if isinstance(value, np.random.Generator):
        return value
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Integral, np.integer)):
        raise TypeError(f"{name} must be a non-negative int or a numpy.random.Generator, got "
                        f"{type(value).__name__} {_show(value)}")
    if value < 0:
        raise ValueError(f"{name} must be a non-negative int or a numpy.random.Generator, got {value}")
    return np.random.default_rng(int(value))


def matrix(value: object, name: str) -> np.ndarray:
    """Check that ``value`` is a non-empty finite real array with at least two axes; return it as float.

    A matrix, or a stack of matrices (leading batch axes), as the estimators of Part III take.

    Raises
    ------
    TypeError
        If ``value`` is not a numpy array of real numbers.
    ValueError
        If it has fewer than two axes, is empty, or holds NaN or infinite entries.
    """
    if not isinstance(value, np.ndarray):
        raise TypeError(f"{name} must be a numpy array, got {type(value).__name__}")
    if value.ndim < 2:
        raise ValueError(f"{name} must have at least 2 axes (a matrix or a stack of matrices), got shape {value.shape}")
    if not np.issubdtype(value.dtype, np.number) or np.iscomplexobj(value):
        raise TypeError(f"{name} must be a real numeric array, got dtype {value.dtype}")
    if value.size == 0:
        raise ValueError(f"{name} must not be empty, got shape {value.shape}")
    value = value.astype(float, copy=False)
    if not np.all(np.isfinite(value)):
        raise ValueError(f"{name} contains NaN or infinite entries")
    return value


def _physical_memory() -> int | None:
    r"""The machine's physical memory in bytes, ``SC_PAGE_SIZE * SC_PHYS_PAGES``.

    Returns
    -------
    int or None
        The number of bytes, or ``None`` where the operating system does not report it (then
        :func:`check_memory` checks nothing).
    """
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):
        return None


def check_memory(n_elements: int, name: str, what: str) -> int:
    r"""Refuse a size whose float64 arrays would need more than half the machine's memory.

    Called before anything is allocated, with the number of float64 elements that a parameter's
    value makes the function allocate, so that a huge size gives a clear error at once instead
    of a :class:`MemoryError` (or a machine that swaps) later.

    Parameters
    ----------
    n_elements
        Number of float64 elements (8 bytes each) that would be allocated.
    name
        The parameter whose value sets that number, as spelled in the caller's signature.
    what
        What would be allocated, for the message (e.g. ``"the recorded overlaps"``).

    Returns
    -------
    int
        ``n_elements``.

    Raises
    ------
    ValueError
        If ``8 * n_elements`` bytes exceed half of the machine's physical memory (``SC_PAGE_SIZE * SC_PHYS_PAGES``).
    """
    total = _physical_memory()
    needed = 8 * int(n_elements)
    if total is not None and needed > total // 2:
        raise ValueError(f"{name} is too large: {what} would need {needed / 2**30:.3g} GiB of memory "
                         f"({int(n_elements)} float64 numbers), more than half of this machine's "
                         f"{total / 2**30:.3g} GiB")
    return int(n_elements)
