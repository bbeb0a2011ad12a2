r"""Staged training (a curriculum): fine-tune on one target, then continue on another.

The remedy of Nwemadji, Loureiro and Barbier (2026) for a trapped target such as
:math:`\mathrm{He}_3` at :math:`\mu \approx 0.32`: train first on the squared labels
:math:`y^2` (teacher ``"He3^2"``), then on :math:`y` (teacher ``"He3"``). Each stage starts from
the state where the previous one ended:

* :func:`simulate_curriculum` chains the SGD simulators of :mod:`lorabook.single_index_lora.sgd`. Because the
  inputs are fresh and isotropic, the state :math:`(m, u)` of each seed is a Markov chain, so
  handing it to the next stage (as ``initial_overlap`` and ``initial_scale``) continues the same
  process in law, for both simulators.
* :func:`integrate_curriculum_ode` chains :func:`lorabook.single_index_lora.lora_dynamics.integrate_lora_ode`, the
  overlap ODE of :func:`lorabook.single_index_lora.lora.overlap_ode_rhs`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from lorabook.single_index_lora.lora import check_noise_strength, check_pretraining_strength
from lorabook.single_index_lora.lora_dynamics import integrate_lora_ode
from lorabook.single_index_lora.sgd import SIMULATORS, SGDResult, simulate_sgd
from lorabook.toolkit.activations import check_target
from lorabook.toolkit.validation import check_memory, choice, generator, integer, real, real_array


@dataclass(frozen=True)
class CurriculumResult:
    """Per-stage results and their concatenation on one step axis.

    Attributes
    ----------
    stages
        One :class:`lorabook.single_index_lora.sgd.SGDResult` per stage (its steps counted from the stage's start).
    steps, time, overlap, scale
        The concatenated records, steps and time (learning rate x steps, summed over the stages)
        counted from the start of the curriculum (the first record of each later stage, equal to
        the last of the previous one, is dropped).
    boundaries
        The step at which each stage ends.
    """

    stages: tuple[SGDResult, ...]
    steps: np.ndarray
    time: np.ndarray
    overlap: np.ndarray
    scale: np.ndarray
    boundaries: np.ndarray


def _check_stages(stages: Sequence[tuple], what: str, allow_rate: bool = False) -> list[tuple]:
    """Validate [(teacher, length), ...] (or (teacher, length, learning_rate) when allowed)."""
    shape = f"(teacher, {what}" + (", [learning_rate]" if allow_rate else "") + ")"
    if isinstance(stages, (str, bytes)) or not isinstance(stages, Sequence) or len(stages) == 0:
        raise TypeError(f"stages must be a non-empty sequence of {shape} tuples, got {stages!r}")
    checked = []
    for index, stage in enumerate(stages):
        sizes = (2, 3) if allow_rate else (2,)
        if not isinstance(stage, (tuple, list)) or len(stage) not in sizes:
            raise TypeError(f"stages[{index}]: each stage must be a {shape} tuple, got {stage!r}")
        teacher, length, *rate = stage
        teacher = check_target(teacher, parameter=f"stages[{index}][0] (the teacher)")
        label = f"stages[{index}][1] (the {what})"
        length = integer(length, label, minimum=None) if what == "n_steps" else real(length, label)
        if length <= 0:
            raise ValueError(f"{label}: each stage's {what} must be positive, got {length!r}")
        if rate:
            label = f"stages[{index}][2] (the learning_rate)"
            if real(rate[0], label) <= 0:
                raise ValueError(f"{label}: each stage's learning_rate must be positive, got {rate[0]!r}")
        checked.append((teacher, stage[1], *rate))
    return checked


def simulate_curriculum(
    simulator: str,
    activation: str,
    stages: Sequence[tuple[str, int]],
    *,
    seed: int | np.random.Generator,
    initial_scale: float = 0.0,
    initial_overlap: object = None,
    **settings,
) -> CurriculumResult:
    """Run SGD through the stages ``[(teacher, n_steps), ...]`` in order, ``u`` trained throughout.

    Parameters
    ----------
    simulator
        ``"full"`` or ``"reduced"`` (:func:`lorabook.single_index_lora.sgd.simulate_sgd`).
    activation
        The student's activation.
    stages
        ``(teacher, n_steps)`` pairs, e.g. ``[("He3^2", 2000), ("He3", 8000)]``, or
        ``(teacher, n_steps, learning_rate)`` triples to change the learning rate between stages
        (the other stages use ``settings["learning_rate"]``).
    seed
        One seed (or generator) for the whole curriculum; the stages draw from it in turn.
    initial_scale, initial_overlap
        The state at the start of the first stage (as in :func:`lorabook.single_index_lora.sgd.simulate_full`).
    **settings
        The other keyword arguments of :func:`lorabook.single_index_lora.sgd.simulate_full` (``dimension``,
        ``learning_rate``, ``batch_size``, ``n_seeds``, ``pretraining_strength``, ``n_records``,
        ``spacing``), shared by every stage.
    """
    choice(simulator, "simulator", SIMULATORS)
    activation = check_target(activation, parameter="activation")
    checked = _check_stages(stages, "n_steps", allow_rate=True)
    for forbidden in ("teacher", "n_steps", "train_scale"):
        if forbidden in settings:
            raise TypeError(f"{forbidden!r} is set per stage (or always True) in simulate_curriculum")
    real_array(initial_scale, "initial_scale")
    rng = generator(seed, "seed")
    results = []
    scale, overlap = initial_scale, initial_overlap
    for index, (teacher, n_steps, *rate) in enumerate(checked):
        if index > 0 and not (np.all(np.isfinite(scale)) and np.all(np.isfinite(overlap))):
            raise FloatingPointError(f"stage {index} ({checked[index - 1][0]!r}) ended with non-finite states "
                                     "(SGD diverged); lower its learning rate")
        stage_settings = dict(settings, learning_rate=rate[0]) if rate else settings
        result = simulate_sgd(simulator, activation, teacher=teacher, n_steps=int(n_steps), seed=rng,
                              initial_scale=scale, initial_overlap=overlap, train_scale=True, **stage_settings)
        results.append(result)
        scale, overlap = result.scale[:, -1], result.overlap[:, -1]
    offsets = np.cumsum([0] + [int(stage[1]) for stage in checked])
    # Time accumulates stage by stage: t = sum of learning rate x steps.
    time_offsets = np.cumsum([0.0] + [r.time[-1] for r in results])
    steps = np.concatenate([results[0].steps] + [r.steps[1:] + offsets[i] for i, r in enumerate(results) if i > 0])
    time = np.concatenate([results[0].time] + [r.time[1:] + time_offsets[i] for i, r in enumerate(results) if i > 0])
    overlap = np.concatenate([results[0].overlap] + [r.overlap[:, 1:] for r in results[1:]], axis=1)
    scale = np.concatenate([results[0].scale] + [r.scale[:, 1:] for r in results[1:]], axis=1)
    return CurriculumResult(stages=tuple(results), steps=steps, time=time, overlap=overlap, scale=scale,
                            boundaries=offsets[1:])


def integrate_curriculum_ode(
    activation: str,
    pretraining_strength: float,
    stages: Sequence[tuple[str, float]],
    initial_scale: float,
    initial_overlap: float,
    noise_strength: float = 0.0,
    n_times: int = 200,
) -> tuple[np.ndarray, np.ndarray]:
    r"""Integrate the overlap ODE through the stages ``[(teacher, duration), ...]``.

    Each stage integrates :math:`(\dot u, \dot m)` of :func:`lorabook.single_index_lora.lora.overlap_ode_rhs`
    (with :func:`lorabook.single_index_lora.lora_dynamics.integrate_lora_ode`) with
    its teacher for ``duration`` units of time (learning rate x steps), starting where the
    previous stage ended; output times are log-spaced within each stage.

    Returns
    -------
    (times, states)
        ``times`` of shape ``(n,)`` from 0, and ``states`` of shape ``(n, 2)`` with columns
        :math:`(u, m)`.
    """
    activation = check_target(activation, parameter="activation")
    check_pretraining_strength(pretraining_strength, parameter="pretraining_strength")
    checked = _check_stages(stages, "duration")
    real(initial_scale, "initial_scale")
    real(initial_overlap, "initial_overlap", minimum=-1.0, maximum=1.0)
    check_noise_strength(noise_strength)
    n_times = integer(n_times, "n_times", minimum=2)
    check_memory(3 * n_times * len(checked), "n_times", "the trajectory of every stage")
    state = np.array([float(initial_scale), float(initial_overlap)])
    times, states, offset = [np.zeros(1)], [state[None, :]], 0.0
    for teacher, duration in checked:
        # rtol 1e-10: the tolerances of lorabook.toolkit.ode.integrate_overlap_ode's defaults.
        stage = integrate_lora_ode(activation, pretraining_strength, state[0], state[1], float(duration),
                                   teacher=teacher, noise_strength=noise_strength, n_times=n_times,
                                   method="LSODA", rtol=1e-10, atol=1e-12)
        path = np.column_stack([stage.scale[0], stage.overlap[0]])
        times.append(offset + stage.time[1:])
        states.append(path[1:])
        state = path[-1]
        offset += float(duration)
    return np.concatenate(times), np.concatenate(states)
