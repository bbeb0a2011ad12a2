"""The committee LoRA SGD simulator: its gradient against finite differences, reproducibility, the
recorded statistics against the final factors, and the recorded risk against Monte Carlo of the
actual networks."""

from __future__ import annotations

import numpy as np
import pytest

from lorabook.single_index_lora.sgd import SGDSettings
from lorabook.toolkit.activations import activation
from lorabook.two_layer_lora import committee as cm
from lorabook.two_layer_lora import committee_sgd as cs

SMALL = dict(dimension=12, learning_rate=0.3, batch_size=50, n_steps=40, n_seeds=3, n_records=6)


@pytest.mark.parametrize("name", ("erf", "relu", "linear"))
def test_gradients_match_finite_differences(name: str) -> None:
    rng = np.random.default_rng(0)
    K, r, d = 3, 2, 6
    teacher = cm.orthonormal_teacher(K, d, seed=1)
    U, V = 0.5 * rng.standard_normal((K, r)), rng.standard_normal((r, d))
    D = cm.pretrained_coefficients(K, 0.6)
    x = rng.standard_normal((20, d))
    g = cm.readout_scale(name, K)
    loss, grad_u, grad_v = cs.lora_loss_gradients(name, U, V, D, teacher, x, g)
    y = g * activation(name)(x @ teacher.T).sum(axis=1)

    def direct(u: np.ndarray, v: np.ndarray) -> float:
        return float(np.mean(0.5 * (g * activation(name)(x @ (D @ teacher + u @ v).T).sum(axis=1) - y) ** 2))

    assert loss == pytest.approx(direct(U, V), rel=1e-12)
    step = 1e-6
    for parameter, gradient, which in ((U, grad_u, 0), (V, grad_v, 1)):
        numeric = np.zeros_like(parameter)
        for index in np.ndindex(parameter.shape):
            shift = np.zeros_like(parameter)
            shift[index] = step
            plus = (U + shift, V) if which == 0 else (U, V + shift)
            minus = (U - shift, V) if which == 0 else (U, V - shift)
            numeric[index] = (direct(*plus) - direct(*minus)) / (2 * step)
        # ReLU kinks are a null set: no sample sits within 1e-6 of one here, so the loss is smooth.
        np.testing.assert_allclose(gradient, numeric, atol=1e-7)


def test_same_seed_same_result_and_different_seeds_differ() -> None:
    model = dict(n_neurons=3, rank=1, pretraining_strength=0.5, initial_scale=0.01)
    first = cs.simulate_committee_lora("erf", seed=4, **model, **SMALL)
    again = cs.simulate_committee_lora("erf", seed=4, **model, **SMALL)
    other = cs.simulate_committee_lora("erf", seed=5, **model, **SMALL)
    for field in ("U", "M", "Q_V", "risk", "final_V", "teacher_weights"):
        np.testing.assert_array_equal(getattr(first, field), getattr(again, field))
    assert not np.allclose(first.M, other.M)
    assert not np.allclose(first.M[0], first.M[1])  # seeds of one run are independent


def test_records_are_the_statistics_of_the_factors() -> None:
    result = cs.simulate_committee_lora("relu", seed=0, n_neurons=3, rank=2, pretraining_strength=0.7, **SMALL)
    assert result.steps[0] == 0 and result.steps[-1] == SMALL["n_steps"]
    assert result.U.shape == (3, result.steps.size, 3, 2) and result.risk.shape == (3, result.steps.size)
    np.testing.assert_array_equal(result.U[:, 0], 0.0)  # the practitioners' start U = 0
    np.testing.assert_allclose(result.M[:, -1], result.final_V @ result.teacher_weights.T, atol=1e-14)
    np.testing.assert_allclose(result.Q_V[:, -1], result.final_V @ np.swapaxes(result.final_V, 1, 2), atol=1e-14)
    np.testing.assert_allclose(np.diagonal(result.Q_V, axis1=-2, axis2=-1), 1.0, atol=1e-12)  # unit rows
    assert result.time[-1] == pytest.approx(SMALL["learning_rate"] * SMALL["n_steps"])
    assert not np.allclose(result.U[:, -1], 0.0)  # U has moved


@pytest.mark.parametrize("name", ("erf", "relu"))
def test_recorded_risk_matches_monte_carlo_of_the_networks(name: str) -> None:
    result = cs.simulate_committee_lora(name, seed=1, n_neurons=3, rank=1, pretraining_strength=0.4, initial_scale=0.2,
                                        **SMALL)
    teacher, D, g = result.teacher_weights, result.coefficients, result.readout
    x = np.random.default_rng(9).standard_normal((300_000, SMALL["dimension"]))
    s = activation(name)
    y = g * s(x @ teacher.T).sum(axis=1)
    for seed in range(SMALL["n_seeds"]):
        W = D @ teacher + result.U[seed, -1] @ result.final_V[seed]
        samples = 0.5 * (g * s(x @ W.T).sum(axis=1) - y) ** 2
        error = samples.std(ddof=1) / np.sqrt(samples.size)
        assert abs(result.risk[seed, -1] - samples.mean()) < 5 * error


def test_settings_object_and_antithetic_batches() -> None:
    settings = SGDSettings(seed=2, antithetic=True, **SMALL)
    result = cs.simulate_committee_lora("linear", settings, n_neurons=2, rank=1, pretraining_strength=0.5)
    assert result.noise_strength == pytest.approx(SMALL["learning_rate"] * SMALL["dimension"] / SMALL["batch_size"])
    assert np.all(np.isfinite(result.risk))


@pytest.mark.slow
def test_rank_two_lora_learns_the_relu_committee() -> None:
    # The needed update has rank two: r = 2 lowers the risk well below its pre-trained value.
    result = cs.simulate_committee_lora("relu", dimension=40, learning_rate=0.7, batch_size=1000, n_steps=600,
                                        n_seeds=2, seed=3, n_neurons=4, rank=2, pretraining_strength=0.5,
                                        initial_scale=0.01, n_records=5)
    assert np.all(result.risk[:, -1] < 0.5 * result.risk[:, 0])


def test_validation() -> None:
    with pytest.raises(ValueError, match="rank must be an integer in 1..n_neurons"):
        cs.simulate_committee_lora("erf", seed=0, n_neurons=2, rank=3, **SMALL)
    with pytest.raises(ValueError, match="n_neurons must be <= dimension"):
        cs.simulate_committee_lora("erf", seed=0, n_neurons=20, rank=1, **SMALL)
    with pytest.raises(ValueError, match="pretraining_strength must be"):
        cs.simulate_committee_lora("erf", seed=0, n_neurons=3, rank=1, pretraining_strength=-0.1, **SMALL)
    with pytest.raises(ValueError, match="teacher_weights must have orthonormal rows"):
        cs.simulate_committee_lora("erf", seed=0, n_neurons=2, rank=1, teacher_weights=np.ones((2, 12)), **SMALL)
    with pytest.raises(ValueError, match="T must have orthonormal rows"):
        cs.lora_loss_gradients("erf", np.zeros((2, 1)), np.ones((1, 5)), np.eye(2), np.ones((2, 5)), np.ones((3, 5)),
                               0.5)
    with pytest.raises(TypeError, match="unexpected keyword"):
        cs.simulate_committee_lora("erf", seed=0, n_neurons=2, rank=1, no_such_setting=1, **SMALL)
    with pytest.raises(ValueError, match="activation='He3'"):
        cs.simulate_committee_lora("He3", seed=0, **SMALL)
