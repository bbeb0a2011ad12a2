"""Tests of lorabook.single_index_lora.non_aligned: the three-overlap ODE and the two simulators of the model
w = mu w_* + nu xi + u v."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from lorabook.single_index_lora import lora, non_aligned
from lorabook.toolkit.ode import integrate_overlap_ode


@pytest.mark.parametrize("name", ["linear", "erf", "relu", "sigmoid", "He3"])
def test_aligned_limit_is_the_lora_ode(name: str) -> None:
    # nu = 0 and p = 0: the model is the aligned one of lorabook.single_index_lora.lora.
    for mu, u, m in ((0.5, 0.3, 0.4), (0.2, -0.7, -0.9), (0.9, 0.05, 0.0)):
        du, dm, dp = non_aligned.overlap_ode_rhs(name, mu, 0.0, u, m, 0.0, noise_strength=0.4)
        expected_du, expected_dm = lora.overlap_ode_rhs(name, mu, u, m, noise_strength=0.4)
        assert du == pytest.approx(expected_du, rel=1e-10, abs=1e-13)
        assert dm == pytest.approx(expected_dm, rel=1e-10, abs=1e-13)
        assert dp == 0.0


@pytest.mark.parametrize("name", ["linear", "erf", "relu"])
def test_scale_drift_is_minus_the_risk_gradient(name: str) -> None:
    step = 1e-6
    for mu, nu, u, m, p in ((0.4, 0.6, 0.3, 0.2, -0.1), (0.7, 0.3, -0.5, 0.5, 0.4)):
        du, _, _ = non_aligned.overlap_ode_rhs(name, mu, nu, u, m, p)
        gradient = (non_aligned.population_risk(name, mu, nu, u + step, m, p)
                    - non_aligned.population_risk(name, mu, nu, u - step, m, p)) / (2 * step)
        assert du == pytest.approx(-gradient, abs=1e-8)


@pytest.mark.parametrize("name", ["linear", "erf", "relu", "He3"])
def test_the_target_is_a_fixed_point_with_zero_risk(name: str) -> None:
    # w = w_*: the update u v = (1 - mu) w_* - nu xi, so m = 1/sqrt(2) when nu = 1 - mu.
    for mu, nu in ((0.4, 0.6), (0.1, 0.9), (0.5, 0.2)):
        u = np.hypot(1 - mu, nu)
        m, p = (1 - mu) / u, -nu / u
        assert abs(non_aligned.population_risk(name, mu, nu, u, m, p)) < 1e-12
        rates = non_aligned.overlap_ode_rhs(name, mu, nu, u, m, p, noise_strength=0.4)
        assert np.all(np.abs(rates) < 1e-9), rates
    assert (1 - 0.4) / np.hypot(0.6, 0.6) == pytest.approx(2**-0.5)


def test_full_and_reduced_simulators_agree_in_distribution() -> None:
    # Two-sample KS tests at level 1e-3 (as in tests/test_sgd.py).
    common = dict(dimension=40, learning_rate=0.03, batch_size=3, n_steps=120, n_seeds=400,
                  pretraining_strength=0.4, offset_strength=0.6, initial_scale=0.2,
                  initial_overlaps=(0.3, 0.1), n_records=2, spacing="linear")
    full = non_aligned.simulate("full", "erf", seed=1, **common)
    reduced = non_aligned.simulate("reduced", "erf", seed=2, **common)
    for name in ("overlap", "offset_overlap", "scale"):
        a, b = getattr(full, name)[:, -1], getattr(reduced, name)[:, -1]
        assert stats.ks_2samp(a, b).pvalue > 1e-3, name
        # power: each statistic moved away from its start by many standard errors
        assert abs(a.mean() - getattr(full, name)[0, 0]) > 10 * a.std() / np.sqrt(a.size), name


def test_reduced_mean_follows_the_corrected_ode() -> None:
    d, batch, eta, n_seeds = 4000, 20, 0.02, 64
    delta = eta * d / batch
    result = non_aligned.simulate("reduced", "erf", dimension=d, learning_rate=eta, batch_size=batch, n_steps=300,
                                  n_seeds=n_seeds, seed=3, pretraining_strength=0.4, offset_strength=0.6,
                                  initial_scale=0.3, initial_overlaps=(0.3, 0.0), n_records=7, spacing="linear")

    for correction, should_agree in ((True, True), (False, False)):
        noise = delta if correction else 0.0

        def rhs(t, y, noise=noise):
            return np.array(non_aligned.overlap_ode_rhs("erf", 0.4, 0.6, y[0], y[1], y[2], noise_strength=noise))

        ode = integrate_overlap_ode(rhs, [0.3, 0.3, 0.0], result.time[-1], n_times=7, spacing="linear",
                                    bounded_components=(1, 2))
        agree = True
        for index, name in ((0, "scale"), (1, "overlap"), (2, "offset_overlap")):
            values = getattr(result, name)[:, 1:]
            mean, stderr = values.mean(axis=0), values.std(axis=0, ddof=1) / np.sqrt(n_seeds)
            # 5 standard errors at each of 6 times (the O(eta) discretisation bias is far smaller)
            agree &= bool(np.all(np.abs(mean - ode.state[1:, index]) < 5 * stderr))
        assert agree == should_agree, correction


def test_validation() -> None:
    with pytest.raises(ValueError, match="valid simulators"):
        non_aligned.simulate("exact", "erf", dimension=10, learning_rate=0.1, batch_size=1, n_steps=1, n_seeds=1,
                             seed=0, pretraining_strength=0.5, offset_strength=0.5)
    with pytest.raises(ValueError, match="valid names"):
        non_aligned.population_risk("tanh", 0.5, 0.5, 0.1, 0.1, 0.1)
    with pytest.raises(ValueError, match="m\\^2 \\+ p\\^2"):
        non_aligned.overlap_ode_rhs("erf", 0.5, 0.5, 0.1, 0.9, 0.9)
    with pytest.raises(ValueError, match="noise_strength"):
        non_aligned.overlap_ode_rhs("erf", 0.5, 0.5, 0.1, 0.1, 0.1, noise_strength=-1.0)
