"""Tests of lorabook.single_index_lora.curriculum: staged SGD and staged ODE integration."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from lorabook.single_index_lora import curriculum, sgd
from lorabook.single_index_lora.lora import overlap_ode_rhs
from lorabook.toolkit.ode import integrate_overlap_ode

SETTINGS = dict(dimension=200, learning_rate=0.05, batch_size=4, n_seeds=300, pretraining_strength=0.5,
                n_records=5, spacing="linear")


def test_two_stages_with_one_teacher_are_one_run_in_law() -> None:
    staged = curriculum.simulate_curriculum("reduced", "erf", [("erf", 60), ("erf", 60)], seed=1,
                                            initial_scale=0.1, initial_overlap=0.2, **SETTINGS)
    single = sgd.simulate_reduced("erf", teacher="erf", n_steps=120, seed=2, initial_scale=0.1, initial_overlap=0.2,
                                  train_scale=True, **SETTINGS)
    assert staged.steps[-1] == 120 and list(staged.boundaries) == [60, 120]
    assert staged.overlap.shape == (300, staged.steps.size)
    # the second stage starts where the first ended, seed by seed
    np.testing.assert_array_equal(staged.stages[1].overlap[:, 0], staged.stages[0].overlap[:, -1])
    np.testing.assert_array_equal(staged.stages[1].scale[:, 0], staged.stages[0].scale[:, -1])
    for name in ("overlap", "scale"):  # KS at level 1e-3, as in tests/test_sgd.py
        assert stats.ks_2samp(getattr(staged, name)[:, -1], getattr(single, name)[:, -1]).pvalue > 1e-3, name


def test_stages_change_the_teacher() -> None:
    staged = curriculum.simulate_curriculum("reduced", "erf", [("erf^2", 40), ("erf", 40)], seed=3,
                                            initial_scale=0.1, initial_overlap=0.2, **SETTINGS)
    assert [stage.teacher for stage in staged.stages] == ["erf^2", "erf"]
    same = curriculum.simulate_curriculum("reduced", "erf", [("erf^2", 40), ("erf", 40)], seed=3,
                                          initial_scale=0.1, initial_overlap=0.2, **SETTINGS)
    np.testing.assert_array_equal(staged.overlap, same.overlap)  # same seed, same output


def test_staged_ode_is_continuous_and_matches_one_integration() -> None:
    times, states = curriculum.integrate_curriculum_ode("erf", 0.5, [("erf", 3.0), ("erf", 4.0)], 0.05, 0.1,
                                                        noise_strength=0.5)

    def rhs(t, y):
        return np.array(overlap_ode_rhs("erf", 0.5, y[0], y[1], noise_strength=0.5))

    single = integrate_overlap_ode(rhs, [0.05, 0.1], 7.0, bounded_components=(1,))
    assert times[-1] == pytest.approx(7.0) and np.all(np.diff(times) > 0)
    np.testing.assert_allclose(states[-1], single.state[-1], atol=1e-7)


def test_validation() -> None:
    with pytest.raises(TypeError, match="stages"):
        curriculum.integrate_curriculum_ode("erf", 0.5, "erf", 0.1, 0.1)
    with pytest.raises(ValueError, match="valid names"):
        curriculum.integrate_curriculum_ode("erf", 0.5, [("tanh", 1.0)], 0.1, 0.1)
    with pytest.raises(ValueError, match="positive"):
        curriculum.integrate_curriculum_ode("erf", 0.5, [("erf", -1.0)], 0.1, 0.1)
    with pytest.raises(TypeError, match="per stage"):
        curriculum.simulate_curriculum("reduced", "erf", [("erf", 5)], seed=0, teacher="erf", **SETTINGS)


def test_per_seed_initial_scale_in_the_simulators() -> None:
    scales = np.linspace(-0.5, 0.5, 4)
    result = sgd.simulate_reduced("erf", dimension=50, learning_rate=0.01, batch_size=2, n_steps=0, n_seeds=4,
                                  seed=0, pretraining_strength=0.5, initial_scale=scales, train_scale=True)
    np.testing.assert_array_equal(result.scale[:, 0], scales)
    with pytest.raises(ValueError, match="n_seeds"):
        sgd.simulate_reduced("erf", dimension=50, learning_rate=0.01, batch_size=2, n_steps=1, n_seeds=3,
                             seed=0, pretraining_strength=0.5, initial_scale=scales)


def test_a_stage_can_change_the_learning_rate_and_time_adds_up() -> None:
    staged = curriculum.simulate_curriculum("reduced", "erf", [("erf^2", 40, 0.01), ("erf", 40)], seed=4,
                                            initial_scale=0.1, initial_overlap=0.2, **SETTINGS)
    assert staged.stages[0].learning_rate == 0.01 and staged.stages[1].learning_rate == SETTINGS["learning_rate"]
    assert staged.time[-1] == pytest.approx(40 * 0.01 + 40 * SETTINGS["learning_rate"])
    assert np.all(np.diff(staged.time) > 0)
    with pytest.raises(ValueError, match="learning_rate"):
        curriculum.simulate_curriculum("reduced", "erf", [("erf", 5, -1.0)], seed=0, **SETTINGS)


def test_a_diverged_stage_is_reported_clearly() -> None:
    with pytest.raises(FloatingPointError, match="diverged"):
        with np.errstate(all="ignore"):
            curriculum.simulate_curriculum("reduced", "He3", [("He3^2", 200, 5.0), ("He3", 5)], seed=0,
                                           initial_scale=0.5, initial_overlap=0.5, **SETTINGS)
