"""Unit tests of lorabook.toolkit.validation: the input checks at the public boundary of lorabook."""

from __future__ import annotations

import math

import numpy as np
import pytest
import sympy as sp

from lorabook.toolkit import validation as v


# ----------------------------------------------------------------------------- integer
@pytest.mark.parametrize("value", [3, np.int64(3), np.int32(3), np.uint8(3), sp.Integer(3)])
def test_integer_passes_integers_through_as_int(value: object) -> None:
    result = v.integer(value, "n_steps")
    assert result == 3 and type(result) is int


@pytest.mark.parametrize("value", [True, np.bool_(True), 2.0, 2.5, np.float64(2.0), "3", None, [3], np.array(3)])
def test_integer_refuses_non_integers_with_a_type_error_naming_the_parameter(value: object) -> None:
    with pytest.raises(TypeError, match=r"^n_steps must be an integer"):
        v.integer(value, "n_steps")


def test_integer_bounds() -> None:
    assert v.integer(0, "k", minimum=0) == 0
    assert v.integer(-5, "offset", minimum=None) == -5
    assert v.integer(10, "rank", minimum=1, maximum=10) == 10
    with pytest.raises(ValueError, match=r"^dimension must be an integer >= 3, got 2$"):
        v.integer(2, "dimension", minimum=3)
    with pytest.raises(ValueError, match=r"^batch_size must be an integer >= 1, got 0$"):
        v.integer(0, "batch_size")
    with pytest.raises(ValueError, match=r"^rank must be an integer in 1\.\.4, got 5$"):
        v.integer(5, "rank", minimum=1, maximum=4)
    with pytest.raises(ValueError, match=r"^count must be an integer <= 4, got 5$"):
        v.integer(5, "count", minimum=None, maximum=4)


# ----------------------------------------------------------------------------- real
@pytest.mark.parametrize("value", [0.5, 1, np.float64(0.5), np.float32(0.5), np.int64(1), np.array(0.5),
                                   sp.Rational(1, 2), sp.Float(0.5)])
def test_real_passes_numbers_through_as_float(value: object) -> None:
    result = v.real(value, "learning_rate")
    assert type(result) is float and result == float(value)


def test_real_is_exact() -> None:
    value = 0.1 + 0.2
    assert v.real(value, "x") == value
    assert v.real(np.float64(value), "x") == value


@pytest.mark.parametrize("value", [True, np.bool_(False), "0.5", None, 1j, [0.5], np.array([0.5]), object()])
def test_real_refuses_non_numbers_with_a_type_error(value: object) -> None:
    with pytest.raises(TypeError, match=r"^learning_rate must be a real number"):
        v.real(value, "learning_rate")


def test_real_refuses_nan_and_infinities() -> None:
    with pytest.raises(ValueError, match=r"^learning_rate must be a finite number > 0, got nan$"):
        v.real(math.nan, "learning_rate", minimum=0, strict_minimum=True)
    for value in (math.inf, -math.inf, np.inf):
        with pytest.raises(ValueError, match=r"^final_time must be a finite number"):
            v.real(value, "final_time")
    assert v.real(math.inf, "search_time", allow_infinite=True) == math.inf
    with pytest.raises(ValueError, match=r"^search_time must be a number > 0, got nan$"):
        v.real(math.nan, "search_time", minimum=0, strict_minimum=True, allow_infinite=True)
    with pytest.raises(ValueError, match="search_time"):
        v.real(-math.inf, "search_time", minimum=0, allow_infinite=True)


def test_real_bounds() -> None:
    assert v.real(0.0, "noise_std", minimum=0) == 0.0
    assert v.real(1.0, "mu", minimum=0, strict_minimum=True, maximum=1) == 1.0
    with pytest.raises(ValueError, match=r"^noise_std must be a finite number >= 0, got -1\.0$"):
        v.real(-1.0, "noise_std", minimum=0)
    with pytest.raises(ValueError, match=r"^mu must be a finite number in \(0, 1\], got 0\.0$"):
        v.real(0.0, "mu", minimum=0, strict_minimum=True, maximum=1)
    with pytest.raises(ValueError, match=r"^mu must be a finite number in \(0, 1\], got 1\.5$"):
        v.real(1.5, "mu", minimum=0, strict_minimum=True, maximum=1)
    with pytest.raises(ValueError, match=r"^fraction must be a finite number in \[0, 1\), got 1\.0$"):
        v.real(1.0, "fraction", minimum=0, maximum=1, strict_maximum=True)
    with pytest.raises(ValueError, match=r"^x must be a finite number <= 2\.5, got 3\.0$"):
        v.real(3.0, "x", maximum=2.5)


# ----------------------------------------------------------------------------- real_array
def test_real_array_passes_numbers_and_arrays_through_as_float_arrays() -> None:
    array = np.linspace(0.0, 1.0, 5)
    assert v.real_array(array, "times") is array  # no copy for a float array
    for value, expected in (
        ([1, 2, 3], np.array([1.0, 2.0, 3.0])),
        (0.5, np.array(0.5)),
        (np.arange(4).reshape(2, 2), np.arange(4.0).reshape(2, 2)),
        ((1, 2.5), np.array([1.0, 2.5])),
    ):
        result = v.real_array(value, "state")
        assert result.dtype == np.float64
        np.testing.assert_array_equal(result, expected)
        assert result.shape == np.shape(expected)
    assert v.real_array(np.zeros(0), "breakpoints", nonempty=False).shape == (0,)
    assert v.real_array([np.inf, 1.0], "search_time", allow_infinite=True)[0] == np.inf


@pytest.mark.parametrize(
    "value",
    [
        "abc",
        "3",
        b"1",
        True,
        None,
        [True, False],
        np.array([True]),
        ["1", "2"],
        np.array([1j]),
        object(),
        [[1.0], [1.0, 2.0]],
    ],
)
def test_real_array_refuses_non_numbers_with_a_type_error(value: object) -> None:
    with pytest.raises(TypeError, match=r"^switch_times must be a real number or an array of real numbers"):
        v.real_array(value, "switch_times")


def test_real_array_refuses_nan_infinities_and_empty_arrays() -> None:
    with pytest.raises(ValueError, match=r"^loss must be finite"):
        v.real_array([1.0, np.nan], "loss")
    with pytest.raises(ValueError, match=r"^loss must be finite"):
        v.real_array([1.0, np.inf], "loss")
    with pytest.raises(ValueError, match=r"^search_time must not be NaN"):
        v.real_array([np.nan], "search_time", allow_infinite=True)
    with pytest.raises(ValueError, match=r"^time must not be empty, got shape \(0,\)$"):
        v.real_array([], "time")
    with pytest.raises(ValueError, match=r"^mu must be finite and lie in \(0, 1\]"):
        v.real_array(np.nan, "mu", minimum=0, strict_minimum=True, maximum=1)


def test_real_array_shapes_and_bounds() -> None:
    assert v.real_array([1.0, 2.0], "times", ndim=1).shape == (2,)
    assert v.real_array(1.0, "initial_state", ndim=(0, 1)).shape == ()
    with pytest.raises(ValueError, match=r"^times must have 1 dimension, got shape \(1, 2\)$"):
        v.real_array([[1.0, 2.0]], "times", ndim=1)
    with pytest.raises(ValueError, match=r"^initial_state must have 0 or 1 dimensions"):
        v.real_array([[1.0]], "initial_state", ndim=(0, 1))
    assert v.real_array(np.zeros((4, 3)), "state", length=3).shape == (4, 3)
    with pytest.raises(ValueError, match=r"^state must have a last axis of length 3, got shape \(4, 2\)$"):
        v.real_array(np.zeros((4, 2)), "state", length=3)
    with pytest.raises(ValueError, match=r"^m must lie in \[-1, 1\], got \[0\.5, 1\.5\]$"):
        v.real_array([0.5, 1.5], "m", minimum=-1, maximum=1)
    with pytest.raises(ValueError, match=r"^noise_strength must be >= 0"):
        v.real_array([-1.0], "noise_strength", minimum=0)
    with pytest.raises(ValueError, match=r"^mu must lie in \(0, 1\]"):
        v.real_array([0.0, 0.5], "mu", minimum=0, strict_minimum=True, maximum=1)
    with pytest.raises(ValueError, match=r"^fraction must lie in \(0, 1\)"):
        v.real_array(1.0, "fraction", minimum=0, strict_minimum=True, maximum=1, strict_maximum=True)


# ----------------------------------------------------------------------------- choice, boolean, function
def test_choice() -> None:
    assert v.choice("log", "spacing", ("log", "linear")) == "log"
    with pytest.raises(ValueError, match=r"^spacing='cubic' is not a valid spacing; valid spacings: log, linear$"):
        v.choice("cubic", "spacing", ("log", "linear"))
    with pytest.raises(TypeError, match=r"^method must be a string, one of LSODA, Radau; got int 3$"):
        v.choice(3, "method", ["LSODA", "Radau"])


def test_boolean() -> None:
    assert v.boolean(True, "antithetic") is True
    assert v.boolean(np.bool_(False), "antithetic") is False
    for value in (1, 0, "yes", None, 1.0):
        with pytest.raises(TypeError, match=r"^antithetic must be True or False"):
            v.boolean(value, "antithetic")


def test_function() -> None:
    assert v.function(np.cos, "f") is np.cos
    rhs = lambda t, y: -y  # noqa: E731
    assert v.function(rhs, "rhs") is rhs
    for value in (3, "cos", None, [np.cos]):
        with pytest.raises(TypeError, match=r"^rhs must be a function \(callable\)"):
            v.function(value, "rhs")


# ----------------------------------------------------------------------------- generator
def test_generator_from_a_seed_gives_the_default_stream() -> None:
    for seed in (0, 7, np.int64(7)):
        rng = v.generator(seed, "seed")
        assert isinstance(rng, np.random.Generator)
        np.testing.assert_array_equal(rng.standard_normal(5), np.random.default_rng(int(seed)).standard_normal(5))


def test_generator_passes_a_generator_through() -> None:
    rng = np.random.default_rng(3)
    assert v.generator(rng, "seed") is rng


def test_generator_refuses_bad_seeds() -> None:
    with pytest.raises(ValueError, match=r"^seed must be a non-negative int"):
        v.generator(-1, "seed")
    for value in (2.5, "3", True, None, np.random.RandomState(0)):
        with pytest.raises(TypeError, match=r"^seed must be a non-negative int or a numpy.random.Generator"):
            v.generator(value, "seed")


# ----------------------------------------------------------------------------- check_memory
def test_check_memory_refuses_a_huge_size_and_accepts_a_small_one() -> None:
    assert v.check_memory(1000, "n_seeds", "one state per seed") == 1000
    assert v.check_memory(0, "n_seeds", "one state per seed") == 0
    with pytest.raises(ValueError, match=r"^n_records is too large: the recording grid would need .* GiB"):
        v.check_memory(10**15, "n_records", "the recording grid")


def test_check_memory_limit_is_half_the_physical_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(v, "_physical_memory", lambda: 16 * 2**30)
    v.check_memory(2**30, "n", "an array")  # 8 GiB: exactly half
    with pytest.raises(ValueError, match="^n is too large"):
        v.check_memory(2**30 + 1, "n", "an array")
    monkeypatch.setattr(v, "_physical_memory", lambda: None)  # unknown: nothing is checked
    assert v.check_memory(10**18, "n", "an array") == 10**18


def test_physical_memory_is_known_here() -> None:
    total = v._physical_memory()
    assert total is None or total > 2**26


# ----------------------------------------------------------------------------- UnsupportedChoiceError
def test_unsupported_choice_is_a_value_error_and_a_not_implemented_error() -> None:
    error = v.UnsupportedChoiceError("name='sigmoid' has no closed form")
    assert isinstance(error, ValueError) and isinstance(error, NotImplementedError)
    from lorabook.toolkit import hermite

    with pytest.raises(ValueError, match=r"^name='sigmoid' has no closed-form Hermite coefficients; supported names"):
        hermite.hermite_coefficients_sympy("sigmoid", 3)


def test_matrix_passes_real_arrays_with_two_axes_through_as_float() -> None:
    out = v.matrix(np.arange(6).reshape(2, 3), "A")
    assert out.dtype == np.float64 and out.shape == (2, 3)
    assert v.matrix(np.ones((4, 2, 3)), "A").shape == (4, 2, 3)  # a stack of matrices


@pytest.mark.parametrize("value, error, words", [
    ([[1.0, 2.0]], TypeError, "numpy array"),
    (np.ones(3), ValueError, "at least 2 axes"),
    (np.ones((2, 2), dtype=complex), TypeError, "real numeric"),
    (np.ones((0, 2)), ValueError, "empty"),
    (np.array([[1.0, np.nan]]), ValueError, "NaN"),
    (np.array([[1.0, np.inf]]), ValueError, "NaN or infinite"),
])
def test_matrix_refuses_what_is_not_a_finite_real_matrix(value: object, error: type, words: str) -> None:
    with pytest.raises(error, match=words) as caught:
        v.matrix(value, "weights")
    assert "weights" in str(caught.value)
