r"""One-pass SGD of rank-r LoRA on a pre-trained committee: the full d-dimensional simulator.

Model: that of :mod:`lorabook.two_layer_lora.committee`, :math:`W = DT + UV`, teacher
:math:`y = g\sum_j s(t_j\cdot x)`. Per-sample loss, with :math:`\lambda = Wx`,

.. math:: \ell = \tfrac12\big(g\textstyle\sum_k s(\lambda_k) - y\big)^2 .

Gradient. With the error :math:`e = g\sum_k s(\lambda_k) - y` and
:math:`h_k = \partial\ell/\partial\lambda_k = g\,e\,s'(\lambda_k)`, :math:`\partial\ell/\partial W = h x^\top`
(a :math:`K\times d` outer product). Since :math:`\lambda = DTx + U(Vx)`, the chain rule gives

.. math:: \frac{\partial\ell}{\partial U} = \frac{\partial\ell}{\partial W}V^\top = h\,(Vx)^\top, \qquad
    \frac{\partial\ell}{\partial V} = U^\top\frac{\partial\ell}{\partial W} = (U^\top h)\,x^\top,

(:func:`lora_loss_gradients`; tested against finite differences). One step on a batch of
:math:`B` fresh samples :math:`x_i \sim \mathcal N(0, I_d)` is plain SGD on both factors at the
current point, then each row of :math:`V` is put back on the unit sphere:

.. math:: U \leftarrow U - \frac{\eta}{B}\sum_i h_i (Vx_i)^\top, \qquad
    \tilde V = V - \frac{\eta}{B}\sum_i (U^\top h_i) x_i^\top, \qquad
    v_p \leftarrow \tilde v_p / \lVert\tilde v_p\rVert \quad (p = 1, \dots, r).

**Normalisation of V: per row.** The authors' code
(``code_for_two_layer_network/experiment.py`` in the repository
``GibbsNwemadji/When-pre-training-hurts-LoRA-fine-tuning-a-dynamical-analysis-via-single-index-models``,
the training loop after ``optimizer.step()``) divides :math:`V` by its row norms
(``V.norm(dim=1, keepdim=True)``) after every step of plain SGD on :math:`(U, V)`; only their
"train :math:`V` alone" baseline uses the whole-matrix (Frobenius) norm. Their :math:`U` starts at
:math:`d^{-2}` in every entry (``initial_scale``); the default here is the practitioners'
:math:`U = 0`. Time is :math:`t = \eta\times` steps and :math:`\delta = \eta d / B`.

Recorded statistics (at :meth:`lorabook.single_index_lora.sgd.SGDSettings.record_steps`):
:math:`U`, :math:`M = VT^\top`, :math:`Q_V = VV^\top` (unit diagonal) and the population risk from
them (:func:`lorabook.two_layer_lora.committee.lora_overlaps` and
:func:`lorabook.two_layer_lora.committee.committee_risk`). Vectorised over seeds (a leading seed
axis): one teacher per run, an independent :math:`V_0` per seed; Gaussian samples are drawn in
chunks of whole steps, or in blocks of samples when a step is large.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lorabook.single_index_lora.sgd import SGDSettings, resolve_settings
from lorabook.toolkit.activations import activation as activation_function
from lorabook.toolkit.activations import activation_derivative
from lorabook.toolkit.committee_integrals import check_committee_activation
from lorabook.toolkit.validation import check_memory, real, real_array
from lorabook.two_layer_lora.committee import (
    check_rank,
    check_teacher,
    committee_risk,
    lora_overlaps,
    orthonormal_teacher,
    pretrained_coefficients,
    readout_scale,
)

__all__ = ["CommitteeSGDResult", "lora_loss_gradients", "simulate_committee_lora"]

@dataclass(frozen=True)
class CommitteeSGDResult:
    r"""Trajectories of the LoRA statistics of one-pass SGD on the committee (seed axis first).

    Attributes
    ----------
    steps, time
        Recorded steps ``(n_records,)`` from 0, and :math:`t = \eta\times` steps.
    U
        Shape ``(n_seeds, n_records, K, r)``.
    M
        :math:`VT^\top`, shape ``(n_seeds, n_records, r, K)``.
    Q_V
        :math:`VV^\top`, shape ``(n_seeds, n_records, r, r)``.
    risk
        Population risk from the recorded statistics, shape ``(n_seeds, n_records)``.
    final_V
        :math:`V` after the last step, ``(n_seeds, r, d)``.
    teacher_weights, coefficients
        :math:`T` ``(K, d)`` and :math:`D` ``(K, K)``.
    dimension, batch_size, learning_rate, activation, n_neurons, rank, pretraining_strength, n_weakened, readout
        The run's settings (:math:`d, B, \eta, s, K, r, \mu`, the number of weakened directions, :math:`g`).
    """

    steps: np.ndarray
    time: np.ndarray
    U: np.ndarray
    M: np.ndarray
    Q_V: np.ndarray
    risk: np.ndarray
    final_V: np.ndarray
    teacher_weights: np.ndarray
    coefficients: np.ndarray
    dimension: int
    batch_size: int
    learning_rate: float
    activation: str
    n_neurons: int
    rank: int
    pretraining_strength: float
    n_weakened: int
    readout: float

    @property
    def noise_strength(self) -> float:
        r""":math:`\delta = \eta d / B`."""
        return self.learning_rate * self.dimension / self.batch_size


def _accumulate(functions, g: float, U: np.ndarray, V: np.ndarray, teacher: np.ndarray, D: np.ndarray,
                x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r"""Sums over a block of samples of :math:`\ell`, :math:`h(Vx)^\top` and :math:`(U^\top h)x^\top`, per seed.

    ``U`` (S, K, r), ``V`` (S, r, d), ``x`` (S, b, d); returns shapes (S,), (S, K, r), (S, r, d).
    """
    s, s_prime = functions
    K = teacher.shape[0]
    stacked = np.concatenate([np.broadcast_to(teacher, (V.shape[0], *teacher.shape)), V], axis=1)
    projections = x @ np.swapaxes(stacked, -1, -2)  # (S, b, K + r): T x and V x in one pass over x
    along_t, along_v = projections[..., :K], projections[..., K:]
    lam = along_t @ D.T + along_v @ np.swapaxes(U, -1, -2)
    error = g * (s(lam).sum(axis=-1) - s(along_t).sum(axis=-1))  # (S, b)
    h = (g * error)[..., None] * s_prime(lam)  # (S, b, K)
    grad_u = np.swapaxes(h, -1, -2) @ along_v
    grad_v = np.swapaxes(h @ U, -1, -2) @ x
    return 0.5 * np.sum(error**2, axis=-1), grad_u, grad_v


def lora_loss_gradients(activation: str, U: object, V: object, D: object, T: object, x: object,
                        readout: float) -> tuple[float, np.ndarray, np.ndarray]:
    r"""Batch-mean loss of the LoRA committee and its gradients with respect to :math:`U` and :math:`V`.

    .. math:: L = \frac1B\sum_i \tfrac12\big(g\textstyle\sum_k s(w_k\cdot x_i) - y_i\big)^2, \quad
        \frac{\partial L}{\partial U} = \frac1B\sum_i h_i (Vx_i)^\top, \quad
        \frac{\partial L}{\partial V} = \frac1B\sum_i (U^\top h_i) x_i^\top,

    with :math:`W = DT + UV`, :math:`y_i = g\sum_j s(t_j\cdot x_i)` and
    :math:`h_{ik} = g\,e_i\,s'(w_k\cdot x_i)` (module docstring).

    Parameters
    ----------
    activation
        ``"erf"``, ``"relu"`` or ``"linear"``.
    U, V, D, T
        :math:`U` (K, r), :math:`V` (r, d), :math:`D` (K, K), and the teacher weights :math:`T` (K, d)
        with orthonormal rows.
    x
        Inputs, shape (B, d).
    readout
        :math:`g > 0`.

    Returns
    -------
    loss, grad_U, grad_V
    """
    name = check_committee_activation(activation)
    readout = real(readout, "readout", minimum=0.0, strict_minimum=True)
    U = real_array(U, "U", ndim=2)
    K, r = U.shape
    if r > K:
        raise ValueError(f"U must have shape (K, r) with r <= K (K neurons, LoRA rank r), got shape {U.shape}")
    V = real_array(V, "V", ndim=2)
    if V.shape[0] != r:
        raise ValueError(f"V must have shape (r, d) with r = {r} as in U, got shape {V.shape}")
    d = V.shape[1]
    D = real_array(D, "D", ndim=2)
    if D.shape != (K, K):
        raise ValueError(f"D must have shape (K, K) = ({K}, {K}), got shape {D.shape}")
    teacher = check_teacher(T, K, d, name="T")
    x = real_array(x, "x", ndim=2)
    if x.shape[1] != d:
        raise ValueError(f"x must have shape (B, d) with d = {d} as in V, got shape {x.shape}")
    functions = (activation_function(name), activation_derivative(name))
    loss, grad_u, grad_v = _accumulate(functions, readout, U[None], V[None], teacher, D, x[None])
    batch = x.shape[0]
    return float(loss[0]) / batch, grad_u[0] / batch, grad_v[0] / batch


def simulate_committee_lora(
    activation: str,
    settings: SGDSettings | None = None,
    *,
    n_neurons: int = 4,
    rank: int = 1,
    pretraining_strength: float = 0.9,
    n_weakened: int = 2,
    initial_scale: float = 0.0,
    teacher_weights: np.ndarray | None = None,
    **sgd_settings: object,
) -> CommitteeSGDResult:
    r"""Full :math:`d`-dimensional one-pass SGD of rank-:math:`r` LoRA on the committee, vectorised over seeds.

    Implements the step of the module docstring: plain SGD on :math:`(U, V)` at the current
    point, then per-row renormalisation of :math:`V`,

    .. math:: U \leftarrow U - \eta\,\partial_U L_B, \qquad
        V \leftarrow \operatorname{normalise\ rows}(V - \eta\,\partial_V L_B).

    Parameters
    ----------
    activation
        ``"erf"``, ``"relu"`` or ``"linear"`` (student and teacher).
    settings
        :class:`lorabook.single_index_lora.sgd.SGDSettings` (dimension, learning rate, batch size,
        steps, seeds, seed, recording grid, antithetic batches), or ``None`` and its fields as keywords.
    n_neurons
        The number :math:`K` of hidden units, ``n_neurons <= dimension``.
    rank
        The LoRA rank :math:`r`, ``1 <= rank <= n_neurons``.
    pretraining_strength, n_weakened
        The pre-trained student :math:`W_0 = DT`: the strength :math:`\mu` of the ``n_weakened``
        weakened directions (:func:`lorabook.two_layer_lora.committee.pretrained_coefficients`).
    initial_scale
        Every entry of :math:`U_0` (0: the practitioners' start; the authors use :math:`d^{-2}`).
    teacher_weights
        Optional teacher weights :math:`T` (n_neurons, dimension) with orthonormal rows; by default a
        Haar-random one drawn first from the run's generator. (The teacher's activation is the
        student's; unlike :func:`lorabook.single_index_lora.sgd.simulate_full`, whose ``teacher`` is
        an activation name.)

    Returns
    -------
    CommitteeSGDResult
    """
    settings = resolve_settings(settings, sgd_settings)
    name = check_committee_activation(activation)
    K, r = check_rank(n_neurons, rank)
    d, n_seeds, batch = settings.dimension, settings.n_seeds, settings.batch_size
    if K > d:
        raise ValueError(f"n_neurons must be <= dimension = {d} (n_neurons orthonormal teacher rows), got "
                         f"n_neurons = {K}")
    D = pretrained_coefficients(K, pretraining_strength, n_weakened)
    initial_scale = real(initial_scale, "initial_scale")
    check_memory(4 * n_seeds * r * d + 2 * K * d, "dimension", "the LoRA factors of every seed")
    n_records = min(settings.n_records, settings.n_steps + 1) + 1
    check_memory(n_seeds * n_records * (2 * K * r + r * r + 1) + 2 * n_seeds * n_records * K * K * 4, "n_records",
                 "the recorded statistics of every seed")
    rng = settings.rng()
    teacher = orthonormal_teacher(K, d, rng) if teacher_weights is None else check_teacher(teacher_weights, K, d)
    V = rng.standard_normal((n_seeds, r, d))
    V /= np.linalg.norm(V, axis=-1, keepdims=True)
    U = np.full((n_seeds, K, r), initial_scale)
    g = readout_scale(name, K)
    functions = (activation_function(name), activation_derivative(name))
    record = settings.record_steps()
    recorded_u = np.empty((n_seeds, record.size, K, r))
    recorded_m = np.empty((n_seeds, record.size, r, K))
    recorded_q = np.empty((n_seeds, record.size, r, r))
    eta = settings.learning_rate
    next_record = 0

    def observe(step: int) -> None:
        nonlocal next_record
        if next_record < record.size and step == record[next_record]:
            recorded_u[:, next_record] = U
            recorded_m[:, next_record] = V @ teacher.T
            recorded_q[:, next_record] = V @ np.swapaxes(V, -1, -2)
            next_record += 1

    observe(0)
    for step, blocks in enumerate(settings.input_batches(rng), start=1):
        grad_u = np.zeros_like(U)
        grad_v = np.zeros_like(V)
        for x in blocks:
            _, block_u, block_v = _accumulate(functions, g, U, V, teacher, D, x)
            grad_u += block_u
            grad_v += block_v
        U = U - (eta / batch) * grad_u
        V = V - (eta / batch) * grad_v
        V /= np.linalg.norm(V, axis=-1, keepdims=True)
        observe(step)
    R, Q = lora_overlaps(recorded_u, recorded_m, recorded_q, D)
    risk = committee_risk(name, Q, R, np.eye(K), g)
    return CommitteeSGDResult(
        steps=record, time=eta * record.astype(float), U=recorded_u, M=recorded_m, Q_V=recorded_q, risk=risk,
        final_V=V, teacher_weights=teacher, coefficients=D, dimension=d, batch_size=batch, learning_rate=eta,
        activation=str(name), n_neurons=K, rank=r, pretraining_strength=float(pretraining_strength),
        n_weakened=int(n_weakened), readout=g,
    )
