"""Tests of lorabook.single_index_lora.sgd: the full and the exact reduced simulators agree in law, match the ODE,
are reproducible and validate their inputs."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from lorabook.single_index_lora import sgd
from lorabook.single_index_lora.single_index import overlap_ode_rhs
from lorabook.toolkit.ode import integrate_overlap_ode

# Two-sample Kolmogorov-Smirnov tests at significance level 1e-3 with fixed seeds: under the null
# (same law) a failure has probability 1e-3 per test; a wrong reduced update (e.g. a missing
# out-of-plane term, which changes m by O(delta) after these steps) is rejected with p << 1e-6.
SIGNIFICANCE = 1e-3


@pytest.mark.parametrize(
    "settings",
    [
        dict(activation="He2", dimension=100, learning_rate=0.01, batch_size=10, n_steps=100,
             initial_overlap=0.2),
        dict(activation="erf", teacher="erf", dimension=60, learning_rate=0.02, batch_size=3, n_steps=150,
             pretraining_strength=0.5, initial_scale=0.2, train_scale=True, initial_overlap=0.3),
        dict(activation="erf", teacher="erf^2", dimension=60, learning_rate=0.02, batch_size=3, n_steps=150,
             pretraining_strength=0.5, initial_scale=0.2, train_scale=True, initial_overlap=0.3),
    ],
    ids=["from-scratch-He2", "lora-erf-mu0.5", "lora-erf-squared-teacher"],
)
def test_full_and_reduced_agree_in_distribution(settings: dict) -> None:
    common = dict(n_seeds=400, n_records=2, spacing="linear", **settings)
    full = sgd.simulate_full(seed=1, **common)
    reduced = sgd.simulate_reduced(seed=2, **common)
    for name in ("overlap", "scale") if settings.get("train_scale") else ("overlap",):
        a, b = getattr(full, name)[:, -1], getattr(reduced, name)[:, -1]
        assert stats.ks_2samp(a, b).pvalue > SIGNIFICANCE, name
    # The test has power: the mean of m moved from m_0 by many standard errors.
    final = full.overlap[:, -1]
    assert abs(np.mean(final) - full.overlap[0, 0]) > 10 * np.std(final) / np.sqrt(final.size)


def test_reduced_mean_matches_corrected_ode_and_not_drift_only() -> None:
    # Linear model, delta = 1: ODE dm/dt = (1 - m^2) - delta m (1 - m) from m0 = 0.
    d, batch, delta, n_seeds = 20_000, 20, 1.0, 64
    eta = delta * batch / d
    result = sgd.simulate_reduced("linear", dimension=d, learning_rate=eta, batch_size=batch,
                                  n_steps=round(2.0 / eta), n_seeds=n_seeds, seed=5, initial_overlap=0.0,
                                  n_records=11, spacing="linear")
    mean = result.overlap.mean(axis=0)[1:]
    stderr = result.overlap.std(axis=0, ddof=1)[1:] / np.sqrt(n_seeds)
    for correction, should_agree in ((True, True), (False, False)):
        ode = integrate_overlap_ode(overlap_ode_rhs("linear", delta, include_correction=correction), 0.0, 2.0,
                                    n_times=11, spacing="linear")
        deviation = np.abs(mean - ode.state[1:, 0]) / stderr
        # 5 standard errors at each of 10 times; the O(eta) discretisation bias is ~1e-3 of a stderr.
        assert np.all(deviation < 5) == should_agree, deviation


def test_same_seed_same_output_and_generator_accepted() -> None:
    settings = dict(dimension=50, learning_rate=0.05, batch_size=2, n_steps=30, n_seeds=3)
    for simulate in (sgd.simulate_full, sgd.simulate_reduced):
        first = simulate("He3", seed=7, **settings)
        second = simulate("He3", seed=7, **settings)
        assert np.array_equal(first.overlap, second.overlap) and np.array_equal(first.steps, second.steps)
        third = simulate("He3", seed=np.random.default_rng(7), **settings)
        assert np.array_equal(first.overlap, third.overlap)
    # Both simulators draw m_0 first from the same stream: same seed, same initial overlaps.
    full = sgd.simulate_full("He3", seed=9, **settings)
    reduced = sgd.simulate_reduced("He3", seed=9, **settings)
    assert np.allclose(full.overlap[:, 0], reduced.overlap[:, 0], rtol=0, atol=1e-14)  # v0 . w_* rounding


def test_initial_overlap_law_and_options() -> None:
    rng = np.random.default_rng(0)
    d = 50
    m0 = sgd.initial_overlaps(rng, d, 4000)
    # Exact law: sqrt(d) m0 has variance d / d = 1 exactly (E[m0^2] = 1/d); 5 standard errors.
    second_moment = np.mean(d * m0**2)
    assert abs(second_moment - 1) < 5 * np.std(d * m0**2) / np.sqrt(m0.size)
    assert np.all(sgd.initial_overlaps(rng, d, 100, "positive") >= 0)
    assert np.array_equal(sgd.initial_overlaps(rng, d, 3, 0.25), np.full(3, 0.25))


def test_escape_tracking_and_early_stop() -> None:
    result = sgd.simulate_reduced("linear", dimension=1000, learning_rate=0.01, batch_size=10, n_steps=10_000,
                                  n_seeds=4, seed=3, initial_overlap=0.0, escape_threshold=0.5,
                                  stop_when_escaped=True, n_records=50)
    assert np.all(np.isfinite(result.escape_step))
    assert result.steps[-1] == result.escape_step.max() < 10_000
    assert np.all(result.escape_samples == 10 * result.escape_step)
    # The recorded-grid helper never reports an escape before the step-resolved one.
    assert np.all(sgd.escape_time(result, 0.5) >= result.escape_time)
    assert np.all(np.abs(result.overlap) <= 1)


@pytest.mark.parametrize(
    "changes, error, message",
    [
        (dict(dimension=2), ValueError, "dimension"),
        (dict(dimension=3.5), TypeError, "dimension"),
        (dict(learning_rate=0.0), ValueError, "learning_rate"),
        (dict(batch_size=0), ValueError, "batch_size"),
        (dict(pretraining_strength=1.5), ValueError, "pretraining_strength"),
        (dict(teacher="tanh"), ValueError, "valid names"),
        (dict(seed="one"), TypeError, "seed"),
        (dict(initial_overlap=2.0), ValueError, "initial_overlap"),
        (dict(escape_threshold=1.5), ValueError, "escape_threshold"),
    ],
)
def test_validation(changes: dict, error: type, message: str) -> None:
    settings = dict(dimension=10, learning_rate=0.1, batch_size=1, n_steps=2, n_seeds=2, seed=0)
    settings.update(changes)
    for simulate in (sgd.simulate_full, sgd.simulate_reduced):
        with pytest.raises(error, match=message):
            simulate("He2", **settings)
    with pytest.raises(ValueError, match="valid simulators"):
        sgd.simulate_sgd("exact", "He2", **dict(settings, dimension=10))


def test_reduced_single_sample_path_is_bit_identical_to_the_batched_formulas():
    # B = 1 runs without the batch axis (no reshapes, no one-term sums); it must reproduce, bit for bit, the
    # batched update applied to the same random draws (one chunk: the draws below are the
    # simulator's, in its order: m0, then the normals, then the chi-square variables).
    from lorabook.toolkit.activations import activation, activation_derivative

    d, eta, mu, n_steps, n_seeds = 500, 0.01, 0.5, 40, 6
    result = sgd.simulate_reduced("erf", dimension=d, learning_rate=eta, batch_size=1, n_steps=n_steps,
                                  n_seeds=n_seeds, seed=11, pretraining_strength=mu, initial_scale=0.1,
                                  train_scale=True, n_records=n_steps + 1, spacing="linear")
    rng = np.random.default_rng(11)
    m = sgd.initial_overlaps(rng, d, n_seeds)
    u = np.full(n_seeds, 0.1)
    z = rng.standard_normal((n_steps, 2, n_seeds, 1))
    chi_square = rng.chisquare(d - 2, size=(n_steps, n_seeds))
    s, s_prime = activation("erf"), activation_derivative("erf")
    for c in range(n_steps):
        z1, z2 = z[c, 0], z[c, 1]
        r = np.sqrt(np.maximum(1.0 - m * m, 0.0))
        along_v = m[:, None] * z1 + r[:, None] * z2
        lam = mu * z1 + u[:, None] * along_v
        h = (s(lam) - s(z1)) * s_prime(lam)
        g = u[:, None] * h
        in_plane_1 = m - eta * np.sum(g * z1, axis=1)
        in_plane_2 = r - eta * np.sum(g * z2, axis=1)
        out_of_plane = eta**2 * np.sum(g * g, axis=1) * chi_square[c]
        m = np.clip(in_plane_1 / np.sqrt(in_plane_1**2 + in_plane_2**2 + out_of_plane), -1.0, 1.0)
        u = u - eta * np.sum(h * along_v, axis=1)
        assert np.array_equal(result.overlap[:, c + 1], m) and np.array_equal(result.scale[:, c + 1], u)


@pytest.mark.parametrize(
    "settings",
    [
        dict(activation="He3", teacher="He3^2", dimension=60, learning_rate=0.01, batch_size=4, n_steps=100,
             pretraining_strength=0.4, initial_scale=0.2, train_scale=True, initial_overlap=0.3),
        dict(activation="erf", dimension=60, learning_rate=0.02, batch_size=6, n_steps=150,
             pretraining_strength=0.5, initial_scale=0.2, train_scale=True, initial_overlap=0.3),
    ],
    ids=["He3-squared-teacher", "erf"],
)
def test_antithetic_full_and_reduced_agree_in_distribution(settings: dict) -> None:
    # The reduced simulator's out-of-plane term for mirrored pairs, sum (G_a - G_b)^2 chi^2_{d-2},
    # is checked against the d-dimensional SGD on explicit pairs (x, -x).
    common = dict(n_seeds=400, n_records=2, spacing="linear", antithetic=True, **settings)
    full = sgd.simulate_full(seed=3, **common)
    reduced = sgd.simulate_reduced(seed=4, **common)
    assert full.antithetic and reduced.antithetic
    for name in ("overlap", "scale"):
        a, b = getattr(full, name)[:, -1], getattr(reduced, name)[:, -1]
        assert stats.ks_2samp(a, b).pvalue > SIGNIFICANCE, name
    # Power: with the plain out-of-plane term sum G^2 instead (the pairs' G_a + G_b cross terms
    # wrongly dropped) m would differ; here we check the law moved away from m_0 by many s.e.
    final = full.overlap[:, -1]
    assert abs(np.mean(final) - full.overlap[0, 0]) > 10 * np.std(final) / np.sqrt(final.size)


def test_antithetic_pairs_cancel_an_even_teacher_for_an_odd_student() -> None:
    # (s - y) s' x + (-s - y) s' (-x) = 2 s s' x: with mirrored pairs an even label drops out of
    # every step, so two different even teachers give the same trajectories from the same seed;
    # with independent samples they do not.
    settings = dict(dimension=200, learning_rate=0.01, batch_size=8, n_steps=200, n_seeds=5, seed=12,
                    pretraining_strength=0.3, initial_scale=0.1, train_scale=True, initial_overlap=0.2)
    for simulate in (sgd.simulate_full, sgd.simulate_reduced):
        squared = simulate("He3", teacher="He3^2", antithetic=True, **settings)
        other = simulate("He3", teacher="He2", antithetic=True, **settings)
        assert np.allclose(squared.overlap, other.overlap, rtol=0, atol=1e-12)
        assert np.allclose(squared.scale, other.scale, rtol=0, atol=1e-12)
        # Independent samples: different already after the first step (the plain He3^2 runs would
        # blow up later at this learning rate, so they stop early).
        plain_squared = simulate("He3", teacher="He3^2", **dict(settings, n_steps=5))
        plain_other = simulate("He3", teacher="He2", **dict(settings, n_steps=5))
        assert np.abs(plain_squared.scale[:, 1] - plain_other.scale[:, 1]).max() > 1e-3


def test_antithetic_reduced_mean_matches_the_ode_with_doubled_noise_for_odd_gradients() -> None:
    # Mirrored pairs keep the gradient unbiased, so the drift is unchanged; the noise is not. For
    # the linear model from scratch G(-x) = -G(x), so each pair contributes (G_a - G_b)^2 = 4 G_a^2 to the
    # out-of-plane term: 2 B E[G^2] per batch instead of B E[G^2], i.e. the corrected ODE at 2 delta.
    d, batch, delta, n_seeds = 20_000, 20, 0.5, 64
    eta = delta * batch / d
    result = sgd.simulate_reduced("linear", dimension=d, learning_rate=eta, batch_size=batch,
                                  n_steps=round(2.0 / eta), n_seeds=n_seeds, seed=6, initial_overlap=0.0,
                                  n_records=11, spacing="linear", antithetic=True)
    mean = result.overlap.mean(axis=0)[1:]
    stderr = result.overlap.std(axis=0, ddof=1)[1:] / np.sqrt(n_seeds)
    for effective_delta, should_agree in ((2 * delta, True), (delta, False)):
        ode = integrate_overlap_ode(overlap_ode_rhs("linear", effective_delta, include_correction=True), 0.0, 2.0,
                                    n_times=11, spacing="linear")
        deviation = np.abs(mean - ode.state[1:, 0]) / stderr
        assert np.all(deviation < 5) == should_agree, deviation


@pytest.mark.parametrize("value, error", [(1, TypeError), ("yes", TypeError)])
def test_antithetic_validation(value: object, error: type) -> None:
    settings = dict(dimension=10, learning_rate=0.1, n_steps=2, n_seeds=2, seed=0)
    for simulate in (sgd.simulate_full, sgd.simulate_reduced):
        with pytest.raises(error, match="antithetic"):
            simulate("He2", batch_size=2, antithetic=value, **settings)
        with pytest.raises(ValueError, match="even"):
            simulate("He2", batch_size=3, antithetic=True, **settings)
