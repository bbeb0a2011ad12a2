"""Tests of lorabook.single_index_lora.task_difficulty: trap constants and the bias part of B."""

import math

import numpy as np
import pytest
import sympy as sp

from lorabook.single_index_lora import lora
from lorabook.single_index_lora.task_difficulty import (
    Q,
    bias_linearization_sympy,
    output_mean_sympy,
    trap_constants_sympy,
)
from lorabook.toolkit.activations import activation


@pytest.mark.parametrize("name", ["He3", "He5", "He1+He3"])
def test_trap_constant_matches_the_search_time(name):
    traps = trap_constants_sympy(name)
    assert len(traps) == 1
    root, constant = traps[0]
    mu_c, c_trap = float(root.evalf(30)), float(constant.evalf(30))
    assert c_trap > 0
    for side in (-1, 1):
        errors = [abs(gap**2 * lora.search_time(name, mu_c + side * gap) / c_trap - 1) for gap in (1e-4, 1e-5)]
        # The relative correction is O(mu - mu_c): ten times closer, about ten times smaller, and small.
        assert errors[1] < 0.2 * errors[0] + 1e-9 and errors[1] < 1e-3, (name, side, errors)


def test_roots_with_positive_b_are_not_traps():
    # He2+He4: A vanishes at 1/sqrt(14) but B = 80/7 > 0 there.
    assert lora.trap_strengths("He2+He4").size == 1
    assert trap_constants_sympy("He2+He4") == []
    # He4+He6: one harmless root, one trap.
    assert lora.trap_strengths("He4+He6").size == 2
    assert len(trap_constants_sympy("He4+He6")) == 1
    # Even Hermite targets below degree 10 have no root of A at all; He10 has two traps.
    assert trap_constants_sympy("He4") == []
    assert len(trap_constants_sympy("He10")) == 2


@pytest.mark.parametrize("k", range(1, 9))
def test_output_mean_hermite_closed_form(k):
    expected = sp.factorial2(k - 1) * (Q - 1) ** (k // 2) if k % 2 == 0 else 0
    assert sp.expand(output_mean_sympy(f"He{k}") - expected) == 0


def test_output_mean_monte_carlo():
    rng = np.random.default_rng(5)
    z = rng.standard_normal(400_000)
    for name in ("He2", "He4", "He2+0.5*He4"):
        for mu in (0.3, 0.7):
            values = activation(name)(mu * z)
            exact = float(output_mean_sympy(name).subs(Q, mu**2))
            # 5 standard errors of the Monte Carlo mean.
            assert abs(values.mean() - exact) < 5 * values.std() / math.sqrt(z.size), (name, mu)


def test_bias_part_of_b():
    mu = lora.MU
    assert sp.expand(bias_linearization_sympy("He2") - (2 - 2 * mu**2)) == 0
    # Odd targets have no bias.
    assert bias_linearization_sympy("He3") == 0
    # For even Hermite targets the bias part is positive and the rest of B is never positive.
    grid = np.linspace(0.01, 0.99, 99)
    for k in (2, 4, 6):
        bias = sp.lambdify(mu, bias_linearization_sympy(f"He{k}"))(grid)
        rest = sp.lambdify(mu, lora.linearization_sympy(f"He{k}")[1] - bias_linearization_sympy(f"He{k}"))(grid)
        assert np.all(bias > 0) and np.all(rest <= 1e-12), k


def test_bias_with_a_different_teacher_mean():
    # Teacher He2 + He4 has mean 0 too (Hermite polynomials of degree >= 1 are centred), so the
    # bias part for student He2 is the same as with teacher He2.
    assert sp.expand(bias_linearization_sympy("He2", "He2+He4") - bias_linearization_sympy("He2")) == 0
    # A squared teacher has a nonzero mean: E[He2(z)^2] = 2, which shifts the bias part.
    mu = lora.MU
    assert sp.expand(bias_linearization_sympy("He2", "He2^2") - (-2 * (mu**2 - 1 - 2))) == 0


@pytest.mark.parametrize("bad", ["erf", "relu", "sigmoid"])
def test_non_polynomial_names_are_rejected(bad):
    with pytest.raises(ValueError, match="polynomial"):
        output_mean_sympy(bad)
    with pytest.raises(ValueError, match="polynomial"):
        trap_constants_sympy(bad)
    with pytest.raises(ValueError, match="polynomial"):
        bias_linearization_sympy("He2", bad)


def test_bad_types_and_names():
    with pytest.raises(TypeError):
        output_mean_sympy(3)
    with pytest.raises(ValueError, match="valid names"):
        trap_constants_sympy("He11")
