r"""One-pass spherical SGD for single-index models: a full simulator and an exact reduced one.

Model. Inputs :math:`x \sim \mathcal N(0, I_d)`, fresh at every step; labels
:math:`y = s_\star(w_\star\cdot x)` with :math:`\lVert w_\star\rVert = 1`; student weight

.. math:: w = \mu\, w_\star + u\, v, \qquad \lVert v\rVert = 1,

with pre-training strength :math:`\mu \in [0, 1]` (frozen), scale :math:`u` (trained or frozen) and
direction :math:`v` (trained by spherical SGD). Learning from scratch is :math:`\mu = 0`,
:math:`u = 1` frozen; rank-one LoRA on a pre-trained weight :math:`\mu w_\star` is
:math:`\mu > 0` with :math:`u` trained. With :math:`\lambda = w\cdot x`,
:math:`\lambda_\star = w_\star\cdot x` and the per-sample loss :math:`\tfrac12(s(\lambda) - y)^2`,
one step on a batch of :math:`B` samples is

.. math::
    h_i = (s(\lambda_i) - y_i)\, s'(\lambda_i), \qquad G_i = u\, h_i,

    v \leftarrow \frac{v - \eta g}{\lVert v - \eta g\rVert}, \quad
    g = \frac1B \sum_i G_i x_i, \qquad
    u \leftarrow u - \frac{\eta}{B} \sum_i h_i\, (v\cdot x_i) \ \text{(if trained)},

both gradients evaluated at the current :math:`(u, v)`. The summary statistics are the overlap
:math:`m = v\cdot w_\star` and the scale :math:`u`; time is :math:`t = \eta \times \text{steps}`.

Two simulators share one interface and one result type, :class:`SGDResult`:

* :func:`simulate_full`: the :math:`d`-dimensional SGD itself, vectorised over seeds (a leading
  seed axis), Gaussian samples drawn in chunks; cost :math:`O(S B d)` per step for :math:`S` seeds.
* :func:`simulate_reduced`: exact in distribution with :math:`O(S B)` work per step, independent
  of :math:`d`. With :math:`e` the unit vector of :math:`v` orthogonal to :math:`w_\star`,
  :math:`v = m w_\star + \sqrt{1 - m^2}\, e`, each sample enters through
  :math:`z_{1} = w_\star\cdot x` and :math:`z_{2} = e\cdot x` (independent standard normals) and its
  component :math:`x^\perp` orthogonal to both. Given the :math:`z`'s, the :math:`G_i` are fixed and
  :math:`\sum_i G_i x_i^\perp` is Gaussian in :math:`d - 2` dimensions with squared norm
  :math:`(\sum_i G_i^2)\,\chi^2_{d-2}`, independent of the in-plane parts. Hence

  .. math:: m' = \frac{m - \eta a_1}{\sqrt{(m - \eta a_1)^2 + (\sqrt{1-m^2} - \eta a_2)^2
            + \eta^2 B^{-2} (\sum_i G_i^2)\, \chi^2_{d-2}}}, \qquad
            a_j = \frac1B\sum_i G_i z_{j,i},

  and, because the next samples are fresh and isotropic, :math:`(m, u)` is a Markov chain with
  exactly the law of the full SGD's :math:`(m, u)`.

Both draw the initial overlap first from the same generator, so the same ``seed`` gives the same
:math:`m_0` in both simulators.

**Antithetic batches** (``antithetic=True``, even :math:`B`): a batch is :math:`B/2` fresh samples and
their mirror images :math:`-x`. The batch gradient is still an unbiased estimate of the population
gradient, so the drift of the overlap ODEs is unchanged; what changes is the noise, and with it
the :math:`O(\delta)` correction (doubled when :math:`G` is odd in :math:`x`, as a pair then gives
:math:`(G_a - G_b)^2 = 4G_a^2`). Under :math:`x \to -x` both preactivations change sign, so a pair keeps only the part
of
:math:`h\,x` that is even in :math:`x`, i.e. the part of :math:`h` that is odd in
:math:`(\lambda, \lambda_\star)`. For an odd student and an even teacher (a squared label) the label
drops out of every pair, :math:`(s - y)s'x + (-s - y)s'\cdot(-x) = 2ss'x`: the heavy label noise
cancels sample by sample, the per-sample form of the parity argument of Chapter 7. In the reduced
simulator the mirrored samples share :math:`x^\perp` up to sign, so the out-of-plane term becomes
:math:`\eta^2 B^{-2}\sum_{\rm pairs}(G_a - G_b)^2\,\chi^2_{d-2}`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, fields

import numpy as np

from lorabook.toolkit.activations import activation as activation_function
from lorabook.toolkit.activations import activation_derivative, check_target
from lorabook.toolkit.validation import boolean, check_memory, choice, generator, integer, real, real_array

SIMULATORS: tuple[str, ...] = ("full", "reduced")
"""Valid ``simulator`` names for :func:`simulate_sgd`."""

SPACINGS: tuple[str, ...] = ("log", "linear")
"""Valid ``spacing`` names of :func:`record_steps`."""

_CHUNK_FLOATS = 2**21
"""Gaussian numbers drawn per chunk (16 MB of float64): large enough to amortise the calls."""


@dataclass(frozen=True)
class SGDResult:
    r"""Trajectories of the summary statistics of one-pass spherical SGD.

    Attributes
    ----------
    steps
        Recorded step numbers, shape ``(n_records,)``, starting at 0.
    time
        :math:`t = \eta \times` ``steps``.
    overlap
        :math:`m = v\cdot w_\star` per seed at the recorded steps, shape ``(n_seeds, n_records)``.
    scale
        :math:`u` per seed, same shape.
    escape_step
        Per seed, the first step at which the escape criterion held (``numpy.inf`` if never, or
        if no ``escape_threshold`` was given), shape ``(n_seeds,)``.
    dimension, batch_size, learning_rate, pretraining_strength, activation, teacher, simulator, antithetic
        The run's settings.
    """

    steps: np.ndarray
    time: np.ndarray
    overlap: np.ndarray
    scale: np.ndarray
    escape_step: np.ndarray
    dimension: int
    batch_size: int
    learning_rate: float
    pretraining_strength: float
    activation: str
    teacher: str
    simulator: str
    antithetic: bool = False

    @property
    def noise_strength(self) -> float:
        r""":math:`\delta = \eta d / B`."""
        return self.learning_rate * self.dimension / self.batch_size

    @property
    def escape_time(self) -> np.ndarray:
        r"""Per-seed escape time :math:`\eta \times` ``escape_step`` (``inf`` if never)."""
        return self.learning_rate * self.escape_step

    @property
    def escape_samples(self) -> np.ndarray:
        r"""Per-seed number of samples used until escape, :math:`B \times` ``escape_step``."""
        return self.batch_size * self.escape_step


@dataclass(frozen=True)
class SGDSettings:
    r"""The settings of a batch of one-pass SGD runs, validated once, shared by every simulator.

    Every simulator of the book (:func:`simulate_full`, :func:`simulate_reduced`,
    :func:`lorabook.single_index_lora.full_finetuning.simulate_full_finetuning`,
    :func:`lorabook.single_index_lora.non_aligned.simulate`) takes one of these as ``settings``,
    or the same fields as keywords (which build one). What a simulator adds is its model: the
    activations, the pre-training, the initial state.

    Attributes
    ----------
    dimension
        Input dimension :math:`d \ge 3` (the plane of :math:`w_\star` and the student direction,
        plus the rest).
    learning_rate
        :math:`\eta > 0`; time is :math:`t = \eta \times` steps.
    batch_size
        :math:`B \ge 1` fresh samples per step (even with ``antithetic``).
    n_steps, n_seeds
        Number of steps, and of independent runs (the leading axis of every result array).
    seed
        An int or a :class:`numpy.random.Generator`; with an int the same settings give the same
        result, run after run.
    n_records, spacing
        The recording grid, :meth:`record_steps`: ``n_records >= 2`` steps, ``"log"`` or
        ``"linear"`` spaced.
    antithetic
        Each batch is :math:`B/2` fresh samples and their mirror images :math:`-x` (see
        :mod:`lorabook.single_index_lora.sgd`).

    Raises
    ------
    TypeError, ValueError
        For any invalid field, naming it; sizes whose records would not fit in memory are refused
        here, before anything is allocated.
    """

    dimension: int
    learning_rate: float
    batch_size: int
    n_steps: int
    n_seeds: int
    seed: int | np.random.Generator
    n_records: int = 200
    spacing: str = "log"
    antithetic: bool = False

    def __post_init__(self) -> None:
        normalised = {
            "dimension": integer(self.dimension, "dimension", minimum=3),
            "learning_rate": real(self.learning_rate, "learning_rate", minimum=0.0, strict_minimum=True),
            "batch_size": integer(self.batch_size, "batch_size"),
            "n_steps": integer(self.n_steps, "n_steps", minimum=0),
            "n_seeds": integer(self.n_seeds, "n_seeds"),
            "n_records": integer(self.n_records, "n_records", minimum=2),
            "spacing": choice(self.spacing, "spacing", SPACINGS),
            "antithetic": boolean(self.antithetic, "antithetic"),
        }
        for name, value in normalised.items():
            object.__setattr__(self, name, value)
        if not isinstance(self.seed, np.random.Generator):
            generator(self.seed, "seed")  # validates; the int itself is kept, for a fresh stream per run
        if self.antithetic and self.batch_size % 2:
            raise ValueError("antithetic batches pair each sample with its mirror image: batch_size must be even, "
                             f"got {self.batch_size}")
        check_memory(3 * self.n_records, "n_records", "the recording grid")
        check_memory(self.n_seeds, "n_seeds", "one state per seed")
        check_memory(4 * self.n_seeds * min(self.n_records, self.n_steps + 1), "n_seeds",
                     "the recorded states of every seed")
        self.check_batch_memory(2)

    @property
    def noise_strength(self) -> float:
        r""":math:`\delta = \eta d / B`, the strength of the SGD noise in the overlap ODEs."""
        return self.learning_rate * self.dimension / self.batch_size

    def rng(self) -> np.random.Generator:
        """The run's random generator: a fresh one from an int ``seed``, else ``seed`` itself."""
        return generator(self.seed, "seed")

    def record_steps(self) -> np.ndarray:
        """The recorded steps, :func:`record_steps` of ``n_steps``, ``n_records``, ``spacing``."""
        return record_steps(self.n_steps, self.n_records, self.spacing)

    def input_batches(self, rng: np.random.Generator) -> Iterator[Iterator[np.ndarray]]:
        """The Gaussian inputs of a full simulator, step by step, drawn from ``rng``.

        For each of the ``n_steps`` steps, an iterator over blocks of that step's batch, each of
        shape ``(n_seeds, samples, dimension)`` (antithetic: half drawn, then their mirror
        images). Samples are drawn in chunks of whole steps when a step is small (at most
        about 2 million numbers at once), else in blocks of samples; consume each step's blocks
        before asking for the next step.
        """
        return _input_batches(rng, self.n_steps, self.n_seeds, self.batch_size, self.dimension, self.antithetic)

    def check_batch_memory(self, numbers_per_sample: int) -> None:
        """Refuse a batch whose Gaussian numbers for every seed would not fit in memory.

        ``numbers_per_sample`` is what one step draws per seed and sample (2 for the reduced
        simulators of the aligned model, 3 for the non-aligned one).
        """
        numbers_per_sample = integer(numbers_per_sample, "numbers_per_sample")
        check_memory(2 * numbers_per_sample * self.n_seeds * self.batch_size, "batch_size",
                     "one step's samples of every seed")


SETTINGS_FIELDS: tuple[str, ...] = tuple(field.name for field in fields(SGDSettings))
"""The fields of :class:`SGDSettings`, which every simulator also accepts as keywords."""


def resolve_settings(settings: SGDSettings | None, keywords: dict[str, object], **defaults: object) -> SGDSettings:
    """The :class:`SGDSettings` of a simulator call: ``settings``, or one built from ``keywords``.

    Parameters
    ----------
    settings
        An :class:`SGDSettings`, or ``None`` to build one from ``keywords``.
    keywords
        The simulator's remaining keyword arguments: fields of :class:`SGDSettings`.
    defaults
        Field defaults of this simulator that differ from those of :class:`SGDSettings` (for
        example ``spacing="linear"``).

    Raises
    ------
    TypeError
        If ``settings`` is not an :class:`SGDSettings`, if both ``settings`` and keywords are
        given, or for a keyword that is not a field (the message lists the fields).
    """
    unknown = sorted(set(keywords) - set(SETTINGS_FIELDS))
    if unknown:
        raise TypeError(f"unexpected keyword argument(s) {', '.join(unknown)}: the keywords of the SGD settings "
                        f"are {', '.join(SETTINGS_FIELDS)}")
    if settings is None:
        return SGDSettings(**{**defaults, **keywords})
    if not isinstance(settings, SGDSettings):
        raise TypeError(f"settings must be an SGDSettings or None, got {type(settings).__name__}")
    if keywords:
        raise TypeError(f"give either settings or the keywords {', '.join(sorted(keywords))}, not both")
    return settings


def _check_initial_overlap(initial_overlap: object, n_seeds: int) -> None:
    """None, ``"positive"``, or numbers in [-1, 1] that broadcast to one per seed."""
    if initial_overlap is None or (isinstance(initial_overlap, str) and initial_overlap == "positive"):
        return
    if isinstance(initial_overlap, str):
        raise ValueError(f"initial_overlap must be None, 'positive', a number or an array; got {initial_overlap!r}")
    values = real_array(initial_overlap, "initial_overlap", minimum=-1.0, maximum=1.0)
    try:
        np.broadcast_shapes(values.shape, (n_seeds,))
    except ValueError:
        raise ValueError(f"initial_overlap must be one number or n_seeds = {n_seeds} numbers, got shape "
                         f"{values.shape}") from None


def record_steps(n_steps: int, n_records: int = 200, spacing: str = "log") -> np.ndarray:
    """Steps at which the state is recorded: 0, then up to ``n_records - 1`` distinct steps to ``n_steps``.

    ``spacing="log"`` spaces them geometrically from step 1 (for long search phases),
    ``"linear"`` evenly from 0 (``n_records`` steps when ``n_records - 1`` divides ``n_steps``).

    Raises
    ------
    TypeError, ValueError
        For a negative or non-integer ``n_steps``, ``n_records < 2`` (or too many to fit in
        memory) or an unknown ``spacing``.
    """
    n_steps = integer(n_steps, "n_steps", minimum=0)
    n_records = integer(n_records, "n_records", minimum=2)
    check_memory(3 * n_records, "n_records", "the recording grid")
    choice(spacing, "spacing", SPACINGS)
    if n_steps == 0:
        return np.zeros(1, dtype=np.int64)
    if spacing == "log":
        grid = np.geomspace(1, n_steps, n_records - 1)
    else:
        grid = np.linspace(0, n_steps, n_records)
    return np.unique(np.concatenate([[0], np.rint(grid).astype(np.int64), [n_steps]]))


def initial_overlaps(
    rng: np.random.Generator, dimension: int, n_seeds: int, initial_overlap: object = None
) -> np.ndarray:
    r"""Initial overlaps :math:`m_0 = v_0\cdot w_\star`, one per seed.

    Parameters
    ----------
    initial_overlap
        ``None``: :math:`v_0` uniform on the sphere, i.e. the exact law
        :math:`m_0 = 2\beta - 1`, :math:`\beta \sim \mathrm{Beta}(\tfrac{d-1}2, \tfrac{d-1}2)`
        (density :math:`\propto (1 - m^2)^{(d-3)/2}`, so :math:`m_0 \approx \mathcal N(0, 1/d)`);
        ``"positive"``: the same law conditioned on :math:`m_0 > 0` (i.e. :math:`|m_0|`);
        a number or an array of ``n_seeds`` numbers in :math:`[-1, 1]`: those values.

    Raises
    ------
    TypeError, ValueError
        If ``rng`` is not a :class:`numpy.random.Generator`, ``dimension < 2``, ``n_seeds < 1``
        (or too many to fit in memory) or ``initial_overlap`` is not one of the forms above.
    """
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__} {rng!r}")
    integer(dimension, "dimension", minimum=2)
    n_seeds = integer(n_seeds, "n_seeds")
    check_memory(n_seeds, "n_seeds", "one overlap per seed")
    _check_initial_overlap(initial_overlap, n_seeds)
    if initial_overlap is None or (isinstance(initial_overlap, str) and initial_overlap == "positive"):
        half = (dimension - 1) / 2
        values = 2.0 * rng.beta(half, half, size=n_seeds) - 1.0
        return np.abs(values) if initial_overlap == "positive" else values
    if isinstance(initial_overlap, str):
        raise ValueError(f"initial_overlap must be None, 'positive', a number or an array; got {initial_overlap!r}")
    return np.broadcast_to(np.asarray(initial_overlap, dtype=float), (n_seeds,)).copy()


class _Recorder:
    """Stores the state at the recorded steps and tracks the first escape step of each seed."""

    def __init__(self, steps: np.ndarray, n_seeds: int, threshold: float | None, on_magnitude: bool):
        self.steps = steps
        self.overlap = np.empty((n_seeds, steps.size))
        self.scale = np.empty((n_seeds, steps.size))
        self.next = 0
        self.threshold = threshold
        self.on_magnitude = on_magnitude
        self.escape_step = np.full(n_seeds, np.inf)

    def observe(self, step: int, m: np.ndarray, u: np.ndarray) -> bool:
        """Record if due; return True when every seed has escaped."""
        if self.next < self.steps.size and step == self.steps[self.next]:
            self.overlap[:, self.next] = m
            self.scale[:, self.next] = u
            self.next += 1
        if self.threshold is None:
            return False
        value = np.abs(m) if self.on_magnitude else m
        newly = (value >= self.threshold) & ~np.isfinite(self.escape_step)
        self.escape_step[newly] = step
        return bool(np.all(np.isfinite(self.escape_step)))

    def finish(self, step: int, m: np.ndarray, u: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Cut the records at ``step`` (an early stop) and make sure the last state is recorded."""
        kept = self.next
        steps, overlap, scale = self.steps[:kept], self.overlap[:, :kept], self.scale[:, :kept]
        if kept == 0 or steps[-1] != step:
            steps = np.append(steps, step)
            overlap = np.column_stack([overlap, m])
            scale = np.column_stack([scale, u])
        return steps, overlap, scale


def simulate_full(
    activation: str,
    settings: SGDSettings | None = None,
    *,
    teacher: str | None = None,
    pretraining_strength: float = 0.0,
    initial_scale: float | np.ndarray = 1.0,
    train_scale: bool = False,
    initial_overlap: object = None,
    escape_threshold: float | None = None,
    escape_on_magnitude: bool = True,
    stop_when_escaped: bool = False,
    **sgd_settings: object,
) -> SGDResult:
    r"""Full :math:`d`-dimensional one-pass spherical SGD, vectorised over seeds.

    Implements the step of the module docstring on explicit Gaussian samples
    :math:`x \in \mathbb R^d`, with a uniformly random teacher direction :math:`w_\star`.

    Parameters
    ----------
    activation, teacher
        Student and teacher activation names (:data:`lorabook.toolkit.activations.ACTIVATION_NAMES`); the
        teacher defaults to the student.
    settings
        The :class:`SGDSettings` of the runs (dimension, learning rate, batch size, steps, seeds,
        seed, recording grid, antithetic batches); or ``None`` and the same fields as keywords
        (``dimension=...``, ``learning_rate=...``, ...), see :func:`resolve_settings`.
    pretraining_strength
        :math:`\mu \in [0, 1]` (0: from scratch).
    initial_scale, train_scale
        :math:`u_0` (one number, or one per seed), and whether :math:`u` is trained (with the same learning rate) or
        frozen.
    initial_overlap
        See :func:`initial_overlaps` (default: :math:`v_0` uniform on the sphere).
    escape_threshold, escape_on_magnitude, stop_when_escaped
        If a threshold is given, the first step with :math:`|m|` (or :math:`m`) at or above it is
        stored per seed in :attr:`SGDResult.escape_step`; with ``stop_when_escaped`` the run ends
        once every seed has escaped.

    Returns
    -------
    SGDResult
    """
    settings = resolve_settings(settings, sgd_settings)
    check_memory(3 * settings.n_seeds * settings.dimension, "dimension", "the directions of every seed")
    return _simulate("full", activation, teacher, settings, pretraining_strength, initial_scale, train_scale,
                     initial_overlap, escape_threshold, escape_on_magnitude, stop_when_escaped)


def simulate_reduced(
    activation: str,
    settings: SGDSettings | None = None,
    *,
    teacher: str | None = None,
    pretraining_strength: float = 0.0,
    initial_scale: float | np.ndarray = 1.0,
    train_scale: bool = False,
    initial_overlap: object = None,
    escape_threshold: float | None = None,
    escape_on_magnitude: bool = True,
    stop_when_escaped: bool = False,
    **sgd_settings: object,
) -> SGDResult:
    r"""Exact reduced simulator of :func:`simulate_full`: same law of :math:`(m, u)`, O(B) per step.

    Per step and seed it draws :math:`2B` standard normals :math:`(z_{1,i}, z_{2,i})` and one
    :math:`\chi^2_{d-2}` variable (with ``antithetic``, :math:`B` normals and their mirror images)
    and applies the update of the module docstring. Parameters and result are those of
    :func:`simulate_full`; the cost does not depend on ``dimension``.
    """
    settings = resolve_settings(settings, sgd_settings)
    return _simulate("reduced", activation, teacher, settings, pretraining_strength, initial_scale, train_scale,
                     initial_overlap, escape_threshold, escape_on_magnitude, stop_when_escaped)


def simulate_sgd(simulator: str, activation: str, settings: SGDSettings | None = None, **keywords: object
                 ) -> SGDResult:
    """Dispatch to :func:`simulate_full` (``"full"``) or :func:`simulate_reduced` (``"reduced"``).

    Raises
    ------
    TypeError, ValueError
        For an unknown ``simulator`` (the message lists the valid ones) or invalid settings
        (those of :func:`simulate_full`).
    """
    choice(simulator, "simulator", SIMULATORS)
    function = simulate_full if simulator == "full" else simulate_reduced
    return function(activation, settings, **keywords)


def check_model(activation: str, teacher: str | None, pretraining_strength: float,
                initial_scale: float | np.ndarray, n_seeds: int) -> str:
    r"""Validate the model of a LoRA single-index simulation and return the teacher's name.

    Shared by the simulators of this subpackage: the student activation, the teacher (default:
    the student), :math:`\mu \in [0, 1]` and the initial scale :math:`u_0` (one number, or one
    per seed). Every message names the parameter as the simulators spell it.
    """
    n_seeds = integer(n_seeds, "n_seeds")
    activation = check_target(activation, parameter="activation")
    teacher = activation if teacher is None else check_target(teacher, parameter="teacher")
    real(pretraining_strength, "pretraining_strength", minimum=0.0, maximum=1.0)
    scale = real_array(initial_scale, "initial_scale")
    if scale.shape not in ((), (n_seeds,)):
        raise ValueError(f"initial_scale must be a finite number or an array of n_seeds = {n_seeds} numbers, "
                         f"got shape {scale.shape}")
    return teacher


def _simulate(simulator, activation, teacher, settings, pretraining_strength, initial_scale, train_scale,
              initial_overlap, escape_threshold, escape_on_magnitude, stop_when_escaped) -> SGDResult:
    n_seeds, eta = settings.n_seeds, settings.learning_rate
    teacher = check_model(activation, teacher, pretraining_strength, initial_scale, n_seeds)
    boolean(train_scale, "train_scale")
    boolean(escape_on_magnitude, "escape_on_magnitude")
    boolean(stop_when_escaped, "stop_when_escaped")
    if escape_threshold is not None:
        real(escape_threshold, "escape_threshold", minimum=0.0, strict_minimum=True, maximum=1.0)
    if stop_when_escaped and escape_threshold is None:
        raise ValueError("stop_when_escaped needs an escape_threshold")
    _check_initial_overlap(initial_overlap, n_seeds)
    rng = settings.rng()
    m0 = initial_overlaps(rng, settings.dimension, n_seeds, initial_overlap)
    recorder = _Recorder(settings.record_steps(), n_seeds,
                         None if escape_threshold is None else float(escape_threshold), escape_on_magnitude)
    functions = (activation_function(activation), activation_derivative(activation), activation_function(teacher))
    run = _run_full if simulator == "full" else _run_reduced
    # A scalar u0 is shared by every seed; an array gives each seed its own (e.g. a staged run).
    u0 = np.broadcast_to(np.asarray(initial_scale, dtype=float), (n_seeds,)).copy()
    step, m, u = run(rng, functions, m0, u0, settings.dimension, eta, settings.batch_size, settings.n_steps,
                     float(pretraining_strength), bool(train_scale), recorder, stop_when_escaped,
                     settings.antithetic)
    steps, overlap, scale = recorder.finish(step, m, u)
    return SGDResult(
        steps=steps, time=eta * steps.astype(float), overlap=overlap, scale=scale,
        escape_step=recorder.escape_step, dimension=settings.dimension, batch_size=settings.batch_size,
        learning_rate=eta, pretraining_strength=float(pretraining_strength),
        activation=activation, teacher=teacher, simulator=simulator, antithetic=settings.antithetic,
    )


def _mirrored(x: np.ndarray) -> np.ndarray:
    """Samples followed by their mirror images along the sample axis (-2): an antithetic batch."""
    return np.concatenate([x, -x], axis=-2)


def _input_batches(rng, n_steps, n_seeds, batch, d, antithetic) -> Iterator[Iterator[np.ndarray]]:
    """See :meth:`SGDSettings.input_batches`."""
    # An antithetic batch draws half of its samples and mirrors them, block by block (even blocks).
    fresh = 2 if antithetic else 1
    per_step = n_seeds * batch * d
    steps_per_chunk = max(1, _CHUNK_FLOATS // per_step)
    block = batch if per_step <= _CHUNK_FLOATS else max(fresh, _CHUNK_FLOATS // (n_seeds * d) // fresh * fresh)
    complete = _mirrored if antithetic else (lambda x: x)
    step = 0
    while step < n_steps:
        chunk = min(steps_per_chunk, n_steps - step)
        if block == batch:
            drawn = rng.standard_normal((chunk, n_seeds, batch // fresh, d))
            for c in range(chunk):
                yield iter((complete(drawn[c]),))
        else:
            for _ in range(chunk):
                yield (complete(rng.standard_normal((n_seeds, min(block, batch - start) // fresh, d)))
                       for start in range(0, batch, block))
        step += chunk


def _run_full(rng, functions, m0, u0, d, eta, batch, n_steps, mu, train_scale, recorder, stop, antithetic):
    s, s_prime, s_star = functions
    n_seeds = m0.size
    w_star = rng.standard_normal(d)
    w_star /= np.linalg.norm(w_star)
    # v0 = m0 w_* + sqrt(1 - m0^2) e with e uniform on the unit sphere orthogonal to w_*.
    e = rng.standard_normal((n_seeds, d))
    e -= np.outer(e @ w_star, w_star)
    e /= np.linalg.norm(e, axis=1, keepdims=True)
    v = m0[:, None] * w_star + np.sqrt(1.0 - m0**2)[:, None] * e
    u = np.full(n_seeds, u0)
    m = v @ w_star
    if recorder.observe(0, m, u) and stop:
        return 0, m, u
    for step, blocks in enumerate(_input_batches(rng, n_steps, n_seeds, batch, d, antithetic)):
        grad_v = np.zeros((n_seeds, d))
        grad_u = np.zeros(n_seeds)
        for x in blocks:
            along_v = (x @ v[:, :, None])[..., 0]  # v . x_i, shape (seeds, samples)
            lam_star = x @ w_star
            lam = mu * lam_star + u[:, None] * along_v
            h = (s(lam) - s_star(lam_star)) * s_prime(lam)
            grad_v += (((u[:, None] * h)[:, None, :]) @ x)[:, 0, :]
            grad_u += np.sum(h * along_v, axis=1)
        v = v - (eta / batch) * grad_v
        v /= np.linalg.norm(v, axis=1, keepdims=True)
        if train_scale:
            u = u - (eta / batch) * grad_u
        m = np.clip(v @ w_star, -1.0, 1.0)
        if recorder.observe(step + 1, m, u) and stop:
            return step + 1, m, u
    return n_steps, m, u


def _run_reduced(rng, functions, m0, u0, d, eta, batch, n_steps, mu, train_scale, recorder, stop, antithetic):
    s, s_prime, s_star = functions
    n_seeds = m0.size
    m = m0.copy()
    u = np.full(n_seeds, u0)
    if recorder.observe(0, m, u) and stop:
        return 0, m, u
    steps_per_chunk = max(1, _CHUNK_FLOATS // (2 * n_seeds * batch))
    step_size = eta / batch
    step_size_squared = step_size**2
    # The per-step cost is numpy call overhead on small arrays. With one sample per step the
    # batch axis is dropped, which saves the reshapes and the one-term sums (1.6x faster at
    # B = 1); the arithmetic, hence every result, is the same in both layouts.
    single = batch == 1
    batch_sum = (lambda x: x) if single else (lambda x: np.sum(x, axis=1))
    step = 0
    while step < n_steps:
        chunk = min(steps_per_chunk, n_steps - step)
        z = rng.standard_normal((chunk, 2, n_seeds, batch // 2 if antithetic else batch))
        if antithetic:  # (z1, z2) -> (-z1, -z2): the mirror image -x (x_perp flips too, below)
            z = np.concatenate([z, -z], axis=-1)
        chi_square = rng.chisquare(d - 2, size=(chunk, n_seeds))
        labels = s_star(z[:, 0])  # the teacher's output does not depend on the state
        if single:
            z, labels = z[..., 0], labels[..., 0]
        for c in range(chunk):
            z1, z2 = z[c, 0], z[c, 1]
            r = np.sqrt(np.maximum(1.0 - m * m, 0.0))
            per_seed_m, per_seed_r, per_seed_u = (m, r, u) if single else (m[:, None], r[:, None], u[:, None])
            along_v = per_seed_m * z1 + per_seed_r * z2
            lam = mu * z1 + per_seed_u * along_v
            h = (s(lam) - labels[c]) * s_prime(lam)
            g = per_seed_u * h
            in_plane_1 = m - step_size * batch_sum(g * z1)
            in_plane_2 = r - step_size * batch_sum(g * z2)
            if antithetic:  # sum_i G_i x_perp_i over pairs (x_perp, -x_perp) is sum (G_a - G_b) x_perp_a
                pair_difference = g[:, : batch // 2] - g[:, batch // 2:]
                out_of_plane = step_size_squared * np.sum(pair_difference**2, axis=1) * chi_square[c]
            else:
                out_of_plane = step_size_squared * batch_sum(g * g) * chi_square[c]
            m = np.clip(in_plane_1 / np.sqrt(in_plane_1**2 + in_plane_2**2 + out_of_plane), -1.0, 1.0)
            if train_scale:
                u = u - step_size * batch_sum(h * along_v)
            step += 1
            if recorder.observe(step, m, u) and stop:
                return step, m, u
    return step, m, u


def escape_time(result: SGDResult, threshold: float, on_magnitude: bool = True) -> np.ndarray:
    """First recorded time at which :math:`|m|` (or :math:`m`) reaches ``threshold``, per seed.

    Resolution is that of the recording grid (use ``escape_threshold`` in the simulators for
    step resolution). Seeds that never reach it get ``numpy.inf``.

    Parameters
    ----------
    result
        A simulation result with ``overlap`` (seeds x records) and ``time`` (records), e.g. an
        :class:`SGDResult`.
    threshold
        In ``(0, 1]``.
    on_magnitude
        Whether :math:`|m|` (the default) or :math:`m` is compared with ``threshold``.

    Raises
    ------
    TypeError, ValueError
        For a ``result`` without those arrays, a ``threshold`` outside ``(0, 1]`` or a
        non-bool ``on_magnitude``.
    """
    if not (hasattr(result, "overlap") and hasattr(result, "time")):
        raise TypeError(f"result must be a simulation result with overlap and time arrays (an SGDResult), got "
                        f"{type(result).__name__}")
    real(threshold, "threshold", minimum=0.0, strict_minimum=True, maximum=1.0)
    boolean(on_magnitude, "on_magnitude")
    value = np.abs(result.overlap) if on_magnitude else result.overlap
    reached = value >= threshold
    first = np.argmax(reached, axis=1)
    return np.where(reached.any(axis=1), result.time[first], np.inf)
