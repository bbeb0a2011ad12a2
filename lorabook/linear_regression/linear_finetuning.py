r"""Linear fine-tuning: full fine-tuning (FFT) versus LoRA in multivariate linear regression.

The setting of Part III of the book (Zindari, Mulayoff and Stich, 2026). A pre-trained linear
map ``A0`` (``dy x dx``) is fine-tuned on a downstream task whose truth is ``A* = A0 + D*``,
with a task shift ``D*`` of rank ``k``. The data are ``n`` samples stored **in rows**:

.. math:: X \in \mathbb{R}^{n\times d_x},\ x_i \sim \mathcal N(0, I_{d_x}),\qquad
    Y = X A^{\star\top} + E,\ E_{ij} \sim \mathcal N(0, \sigma^2).

The training loss of a weight matrix ``A`` is the empirical mean squared error
:math:`L(A) = \frac1n \|Y - X A^\top\|_F^2` and, for isotropic inputs, the excess risk is
:math:`\mathbb{E}_x\|(\hat A - A^\star)x\|^2 = \|\hat A - A^\star\|_F^2`.

Contents:

* data: :func:`pretrained_weights`, :func:`gaussian_task_shift`, :func:`task_shift_spectrum`,
  :func:`spectral_task_shift`, :func:`regression_data`, :func:`finetuning_problem`;
* estimators in closed form: :func:`fft_estimator` (pseudo-inverse) and :func:`lora_estimator`
  (reduced-rank regression on the residual);
* reference solvers: :func:`fft_gradient_descent`, :func:`lora_gradient_descent` (on the factors,
  from ``B = 0``) and :func:`lora_alternating_least_squares`;
* theory: :func:`fft_excess_risk` (inverse-Wishart moments), built from the sympy expressions of
  :func:`fft_excess_risk_expressions`;
* Monte Carlo: :func:`excess_risk_monte_carlo`, vectorised over seeds;
* LoRA's excess risk from spiked random-matrix theory: the reduction to truncated-SVD denoising
  (:func:`whitened_shift`, :func:`input_covariance_sqrt`), the spiked-model limits
  (:func:`spiked_noise_scale`, :func:`detection_threshold`, :func:`spiked_singular_value`,
  :func:`spiked_overlaps`, :func:`noise_top_squared_singular_values`), the un-whitening
  (:func:`unwhitening_factors`), the prediction (:func:`lora_excess_risk_prediction`,
  :func:`lora_excess_risk_curve`) and the predicted best rank (:func:`optimal_rank`).

Estimators, losses and risks accept stacks of problems: leading axes of ``X``, ``Y`` and ``A0``
are batch axes (this is how the Monte Carlo is vectorised over seeds).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import cache
from typing import NamedTuple

import numpy as np
import sympy as sp

from lorabook.toolkit.validation import boolean, check_memory, choice, generator, integer, matrix, real, real_array

__all__ = [
    "check_regression",
    "SPECTRUM_KINDS",
    "FinetuningProblem",
    "excess_risk",
    "excess_risk_monte_carlo",
    "fft_estimator",
    "fft_excess_risk",
    "fft_excess_risk_expressions",
    "fft_excess_risk_symbols",
    "fft_gradient_descent",
    "finetuning_problem",
    "gaussian_task_shift",
    "inverse_chi_square_mean_sympy",
    "lora_alternating_least_squares",
    "lora_estimator",
    "lora_gradient_descent",
    "pretrained_weights",
    "regression_data",
    "spectral_task_shift",
    "task_shift_spectrum",
    "training_loss",
    "LoraRiskPrediction",
    "detection_threshold",
    "input_covariance_sqrt",
    "lora_excess_risk_curve",
    "lora_excess_risk_prediction",
    "noise_top_squared_singular_values",
    "optimal_rank",
    "estimated_optimal_rank",
    "spike_strength_from_singular_value",
    "spiked_noise_scale",
    "spiked_overlaps",
    "spiked_singular_value",
    "unwhitening_factors",
    "whitened_shift",
]

#: Valid ``kind`` arguments of :func:`task_shift_spectrum`.
SPECTRUM_KINDS = ("constant", "exponential", "power")


# ----------------------------------------------------------------------------- validation
def _check_size(what: str, factor: int = 1, **sizes: int) -> None:
    """Refuse arrays of ``factor * prod(sizes)`` float64 numbers that would not fit in memory.

    The message names the largest of the sizes (the parameter that makes the array too large).
    """
    total = factor
    for size in sizes.values():
        total *= int(size)
    check_memory(total, max(sizes, key=lambda key: sizes[key]), what)


def check_regression(X: object, Y: object, A0: object, names: tuple[str, str, str] = ("X", "Y", "A0"),
                      single: str | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validate data ``X`` (..., n, dx), ``Y`` (..., n, dy) and weights ``A0`` (..., dy, dx).

    The check at the public boundary of every estimator of Part III: each argument is a finite
    real array (:func:`lorabook.toolkit.validation.matrix`), the sample counts of ``X`` and
    ``Y`` agree, ``A0`` maps the inputs to the outputs, and the batch axes broadcast.

    Parameters
    ----------
    X, Y, A0
        Inputs, outputs and weights, each a matrix or a stack of matrices.
    names
        The caller's names of the three parameters (the messages use them).
    single
        The caller's name when it takes a single problem (then all three must be 2-d).

    Returns
    -------
    X, Y, A0
        As float arrays.

    Raises
    ------
    TypeError, ValueError
        Naming the parameter and the expected shape.
    """
    x_name, y_name, w_name = names
    X = matrix(X, x_name)
    Y = matrix(Y, y_name)
    A0 = matrix(A0, w_name)
    if single is not None:
        for array, name in ((X, x_name), (Y, y_name), (A0, w_name)):
            if array.ndim != 2:
                raise ValueError(f"{name} must be a 2-d matrix: {single} takes a single problem (2-d {x_name}, "
                                 f"{y_name}, {w_name}), got shape {array.shape}")
    n, dx = X.shape[-2:]
    if Y.shape[-2] != n:
        raise ValueError(f"{x_name} has shape {X.shape} (samples in rows: (n, dx)) but {y_name} has shape {Y.shape}; "
                         f"expected {y_name} of shape (n, dy) = ({n}, dy)")
    dy = Y.shape[-1]
    if A0.shape[-2:] != (dy, dx):
        raise ValueError(f"{w_name} must have shape (dy, dx) = ({dy}, {dx}) to match {x_name} {X.shape} and "
                         f"{y_name} {Y.shape}, got {A0.shape}")
    try:
        np.broadcast_shapes(X.shape[:-2], Y.shape[:-2], A0.shape[:-2])
    except ValueError:
        raise ValueError(f"batch axes of {x_name} {X.shape[:-2]}, {y_name} {Y.shape[:-2]} and {w_name} "
                         f"{A0.shape[:-2]} do not broadcast") from None
    return X, Y, A0


def _check_rank(rank: object, dx: int, dy: int, name: str = "rank") -> int:
    rank = integer(rank, name, minimum=None)
    if not 1 <= rank <= min(dx, dy):
        raise ValueError(f"{name} must be in 1..min(dx, dy) = 1..{min(dx, dy)}, got {rank}")
    return rank


def _check_ranks(ranks: object, dx: int, dy: int, allow_empty: bool) -> list[int]:
    """A sequence of LoRA ranks (each in 1..min(dx, dy)) as a list of ints."""
    if isinstance(ranks, (str, bytes)) or not hasattr(ranks, "__iter__"):
        raise TypeError(f"ranks must be a sequence of integers, got {type(ranks).__name__} {ranks!r}")
    checked = [_check_rank(rank, dx, dy, f"ranks[{index}]") for index, rank in enumerate(ranks)]
    if not checked and not allow_empty:
        raise ValueError("ranks must hold at least one rank, got none")
    return checked


# ----------------------------------------------------------------------------- data
def pretrained_weights(output_dimension: int, input_dimension: int, seed: int | np.random.Generator) -> np.ndarray:
    r"""Draw pre-trained weights :math:`A_0 \in \mathbb{R}^{d_y\times d_x}`, :math:`(A_0)_{ij}\sim\mathcal N(0,1)`
    i.i.d."""
    dy = integer(output_dimension, "output_dimension")
    dx = integer(input_dimension, "input_dimension")
    _check_size("the pre-trained weights", output_dimension=dy, input_dimension=dx)
    return generator(seed, "seed").standard_normal((dy, dx))


def gaussian_task_shift(output_dimension: int, input_dimension: int, true_rank: int,
                        seed: int | np.random.Generator) -> np.ndarray:
    r"""Draw a rank-``k`` task shift with Gaussian factors.

    .. math:: D^\star = \frac{U V}{\sqrt k},\qquad U\in\mathbb{R}^{d_y\times k},\
        V\in\mathbb{R}^{k\times d_x},\ U_{ij}, V_{ij}\sim\mathcal N(0,1),

    so every entry of :math:`D^\star` has variance one and :math:`\mathbb{E}\|D^\star\|_F^2 = d_x d_y`
    whatever ``k``.

    Parameters
    ----------
    output_dimension, input_dimension
        :math:`d_y` and :math:`d_x`.
    true_rank
        :math:`k`, in ``1..min(dx, dy)``.
    seed
        Integer seed or numpy Generator.
    """
    dy = integer(output_dimension, "output_dimension")
    dx = integer(input_dimension, "input_dimension")
    k = integer(true_rank, "true_rank")
    if k > min(dx, dy):
        raise ValueError(f"true_rank must be in 1..min(dx, dy) = 1..{min(dx, dy)}, got {k}")
    _check_size("the task shift", factor=2, output_dimension=dy, input_dimension=dx)
    rng = generator(seed, "seed")
    U = rng.standard_normal((dy, k))
    V = rng.standard_normal((k, dx))
    return U @ V / np.sqrt(k)


def task_shift_spectrum(kind: str, true_rank: int, scale: float = 1.0, decay_rate: float = 0.0) -> np.ndarray:
    r"""Singular values :math:`s_0, \dots, s_{k-1}` of a task shift with a controlled spectrum.

    .. math:: \text{constant: } s_i = c,\qquad \text{exponential: } s_i = c\,e^{-a i},\qquad
        \text{power: } s_i = \frac{c}{(i+1)^a},\qquad i = 0, \dots, k-1.

    Parameters
    ----------
    kind
        One of ``"constant"``, ``"exponential"``, ``"power"``.
    true_rank
        :math:`k`, the number of singular values.
    scale
        :math:`c > 0`.
    decay_rate
        :math:`a \ge 0` (ignored for ``"constant"``).
    """
    choice(kind, "kind", SPECTRUM_KINDS)
    k = integer(true_rank, "true_rank")
    check_memory(2 * k, "true_rank", "the singular values")
    c = real(scale, "scale", minimum=0.0, strict_minimum=True)
    a = real(decay_rate, "decay_rate", minimum=0.0)
    i = np.arange(k, dtype=float)
    if kind == "constant":
        return np.full(k, c)
    if kind == "exponential":
        return c * np.exp(-a * i)
    return c / (i + 1.0) ** a


def _haar_orthonormal(rng: np.random.Generator, rows: int, columns: int) -> np.ndarray:
    """A Haar-distributed ``rows x columns`` matrix with orthonormal columns (QR with sign fix)."""
    Q, R = np.linalg.qr(rng.standard_normal((rows, columns)))
    # Multiplying by sign(diag R) makes the distribution exactly Haar (QR alone is not unique).
    return Q * np.where(np.diag(R) < 0, -1.0, 1.0)


def spectral_task_shift(output_dimension: int, input_dimension: int, singular_values: Sequence[float] | np.ndarray,
                        seed: int | np.random.Generator) -> np.ndarray:
    r"""Draw a task shift with prescribed singular values and Haar singular vectors.

    .. math:: D^\star = U\,\mathrm{diag}(s)\,V^\top,\qquad U^\top U = V^\top V = I_k,

    with :math:`U \in \mathbb{R}^{d_y\times k}` and :math:`V\in\mathbb{R}^{d_x\times k}`
    uniformly (Haar) distributed, so :math:`\|D^\star\|_F^2 = \sum_i s_i^2`.

    Parameters
    ----------
    output_dimension, input_dimension
        :math:`d_y` and :math:`d_x`.
    singular_values
        :math:`s`, ``k <= min(dx, dy)`` non-negative numbers (e.g. from :func:`task_shift_spectrum`).
    seed
        Integer seed or numpy Generator.
    """
    dy = integer(output_dimension, "output_dimension")
    dx = integer(input_dimension, "input_dimension")
    s = real_array(singular_values, "singular_values", ndim=1)
    if s.size > min(dx, dy):
        raise ValueError(f"singular_values: at most min(dx, dy) = {min(dx, dy)} singular values, got {s.size}")
    if np.any(s < 0):
        raise ValueError("singular_values must be finite and non-negative")
    _check_size("the task shift", factor=2, output_dimension=dy, input_dimension=dx)
    rng = generator(seed, "seed")
    U = _haar_orthonormal(rng, dy, s.size)
    V = _haar_orthonormal(rng, dx, s.size)
    return (U * s) @ V.T


def regression_data(true_weights: np.ndarray, num_samples: int, noise_std: float,
                    seed: int | np.random.Generator, num_seeds: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    r"""Draw a training set of the multivariate linear model, samples in rows.

    .. math:: X_{i\cdot} = x_i^\top,\ x_i\sim\mathcal N(0, I_{d_x});\qquad
        Y = X A^{\star\top} + E,\ E_{ij}\sim\mathcal N(0, \sigma^2).

    Parameters
    ----------
    true_weights
        :math:`A^\star = A_0 + D^\star`, shape ``(dy, dx)``.
    num_samples
        :math:`n`.
    noise_std
        :math:`\sigma \ge 0`.
    seed
        Integer seed or numpy Generator.
    num_seeds
        If given, draw that many independent data sets at once: ``X`` has shape
        ``(num_seeds, n, dx)`` and ``Y`` ``(num_seeds, n, dy)``.

    Returns
    -------
    X, Y
        Arrays of shapes ``(n, dx)`` and ``(n, dy)`` (with a leading seed axis if ``num_seeds``).
    """
    A_star = matrix(true_weights, "true_weights")
    if A_star.ndim != 2:
        raise ValueError(f"true_weights must be a (dy, dx) matrix, got shape {A_star.shape}")
    n = integer(num_samples, "num_samples")
    sigma = real(noise_std, "noise_std", minimum=0.0)
    batch = () if num_seeds is None else (integer(num_seeds, "num_seeds"),)
    dy, dx = A_star.shape
    _check_size("the data", factor=3 * (dx + dy), num_samples=n, **({"num_seeds": batch[0]} if batch else {}))
    rng = generator(seed, "seed")
    X = rng.standard_normal(batch + (n, dx))
    Y = X @ A_star.T + sigma * rng.standard_normal(batch + (n, dy))
    return X, Y


class FinetuningProblem(NamedTuple):
    """One draw of the fine-tuning problem: data, pre-trained weights and task shift."""

    X: np.ndarray  #: inputs, shape (n, dx)
    Y: np.ndarray  #: targets, shape (n, dy)
    pretrained: np.ndarray  #: A0, shape (dy, dx)
    task_shift: np.ndarray  #: D*, shape (dy, dx)

    @property
    def true_weights(self) -> np.ndarray:
        r""":math:`A^\star = A_0 + D^\star`."""
        return self.pretrained + self.task_shift


def finetuning_problem(input_dimension: int, output_dimension: int, num_samples: int, true_rank: int,
                       noise_std: float, seed: int | np.random.Generator) -> FinetuningProblem:
    """Draw ``A0`` (:func:`pretrained_weights`), a Gaussian rank-``k`` shift
    (:func:`gaussian_task_shift`) and data (:func:`regression_data`) from one generator.

    Raises
    ------
    TypeError, ValueError
        For a non-positive or non-integer dimension or sample count, ``true_rank`` outside
        ``1..min(dx, dy)``, a negative ``noise_std``, a bad ``seed``, or sizes whose arrays would
        not fit in memory.
    """
    dx = integer(input_dimension, "input_dimension")
    dy = integer(output_dimension, "output_dimension")
    n = integer(num_samples, "num_samples")
    k = integer(true_rank, "true_rank")
    if k > min(dx, dy):
        raise ValueError(f"true_rank must be in 1..min(dx, dy) = 1..{min(dx, dy)}, got {k}")
    real(noise_std, "noise_std", minimum=0.0)
    _check_size("the weights", factor=4, output_dimension=dy, input_dimension=dx)
    _check_size("the data", factor=3, num_samples=n, input_dimension=dx + dy)
    rng = generator(seed, "seed")
    A0 = pretrained_weights(output_dimension, input_dimension, rng)
    D = gaussian_task_shift(output_dimension, input_dimension, true_rank, rng)
    X, Y = regression_data(A0 + D, num_samples, noise_std, rng)
    return FinetuningProblem(X, Y, A0, D)


# ----------------------------------------------------------------------------- losses
def training_loss(X: np.ndarray, Y: np.ndarray, weights: np.ndarray) -> np.ndarray | float:
    r"""Empirical mean squared error :math:`L(A) = \frac1n\|Y - X A^\top\|_F^2` (per problem in a stack).

    Parameters
    ----------
    X, Y
        Data, shapes ``(..., n, dx)`` and ``(..., n, dy)``.
    weights
        :math:`A`, shape ``(..., dy, dx)``.

    Returns
    -------
    float or numpy.ndarray
        The loss (an array over the batch axes for stacks).
    """
    X, Y, A = check_regression(X, Y, weights, ("X", "Y", "weights"))
    residual = Y - X @ np.swapaxes(A, -1, -2)
    loss = np.sum(residual**2, axis=(-2, -1)) / X.shape[-2]
    return float(loss) if loss.ndim == 0 else loss


def excess_risk(estimate: np.ndarray, true_weights: np.ndarray) -> np.ndarray | float:
    r"""Excess risk for isotropic inputs, :math:`\mathbb{E}_x\|(\hat A - A^\star)x\|^2 = \|\hat A -
    A^\star\|_F^2`.

    Parameters
    ----------
    estimate
        :math:`\hat A`, shape ``(..., dy, dx)``.
    true_weights
        :math:`A^\star`, shape ``(..., dy, dx)`` (broadcast against ``estimate``).

    Returns
    -------
    float or numpy.ndarray
        :math:`\|\hat A - A^\star\|_F^2` (an array over the batch axes for stacks).
    """
    estimate = matrix(estimate, "estimate")
    true_weights = matrix(true_weights, "true_weights")
    if estimate.shape[-2:] != true_weights.shape[-2:]:
        raise ValueError(f"estimate {estimate.shape} and true_weights {true_weights.shape} must both be (dy, dx)")
    risk = np.sum((estimate - true_weights) ** 2, axis=(-2, -1))
    return float(risk) if risk.ndim == 0 else risk


# ----------------------------------------------------------------------------- estimators
def _whitened_residual(X: np.ndarray, Y: np.ndarray, A0: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r"""Thin SVD of ``X`` and the residual in its left singular basis.

    With :math:`X = U_X \Sigma V_X^\top` (thin, numerically zero singular values dropped by a
    mask) and the residual :math:`R = Y - X A_0^\top`, returns ``V_X``, ``1/Sigma`` (0 where
    ``Sigma`` is numerically zero) and :math:`Z = U_X^\top R` (rows for dropped directions
    zeroed). Then :math:`X^+ R = V_X \Sigma^{-1} Z` and the whitened least-squares shift is
    :math:`S^{1/2} X^+ R = V_X Z / \sqrt n`.
    """
    R = Y - X @ np.swapaxes(A0, -1, -2)
    U_X, singular, Vt_X = np.linalg.svd(X, full_matrices=False)
    # Same cut-off as numpy.linalg.pinv's default: singular values below max(n, dx) * eps * s_max are zero.
    cutoff = max(X.shape[-2:]) * np.finfo(float).eps * singular[..., :1]
    keep = singular > cutoff
    inverse = np.where(keep, 1.0 / np.where(keep, singular, 1.0), 0.0)
    Z = (np.swapaxes(U_X, -1, -2) @ R) * keep[..., :, None]
    return np.swapaxes(Vt_X, -1, -2), inverse, Z


def fft_estimator(X: np.ndarray, Y: np.ndarray, A0: np.ndarray) -> np.ndarray:
    r"""Full fine-tuning: the least-squares solution closest to ``A0``.

    .. math:: \hat A_{\rm FFT} = A_0 + \big(X^+ (Y - X A_0^\top)\big)^\top,

    the minimiser of :math:`L(A) = \frac1n\|Y - XA^\top\|_F^2` with the smallest
    :math:`\|A - A_0\|_F`. For ``n >= dx`` (full column rank) it is the unique least-squares
    solution; for ``n < dx`` it interpolates the data and is the limit of gradient descent on
    ``L`` started at ``A0`` (see :func:`fft_gradient_descent`).

    Parameters
    ----------
    X
        Inputs, shape ``(..., n, dx)`` (samples in rows).
    Y
        Targets, shape ``(..., n, dy)``.
    A0
        Pre-trained weights, shape ``(..., dy, dx)``.

    Returns
    -------
    numpy.ndarray
        :math:`\hat A_{\rm FFT}`, shape ``(..., dy, dx)``.
    """
    X, Y, A0 = check_regression(X, Y, A0)
    V_X, inverse, Z = _whitened_residual(X, Y, A0)
    shift_transposed = V_X @ (inverse[..., :, None] * Z)  # X^+ R, shape (..., dx, dy)
    return A0 + np.swapaxes(shift_transposed, -1, -2)


def lora_estimator(X: np.ndarray, Y: np.ndarray, A0: np.ndarray, rank: int) -> np.ndarray:
    r"""LoRA: the global minimiser of the training loss over :math:`A_0 + BA`, in closed form.

    Reduced-rank regression on the residual :math:`R = Y - XA_0^\top`: with
    :math:`S = X^\top X/n` and the least-squares shift :math:`\hat D = (X^+R)^\top`,

    .. math:: T = \hat D\, S^{1/2},\qquad
        \hat A_{\rm LoRA} = A_0 + [T]_r\,(S^{1/2})^+,

    where :math:`[T]_r` is the best rank-``r`` approximation of ``T`` (truncated SVD,
    Eckart-Young). It is computed through the thin SVD :math:`X = U_X\Sigma V_X^\top`, which
    gives the same matrix without forming :math:`S^{1/2}`:
    :math:`\hat A_{\rm LoRA} - A_0 = \big(V_X\Sigma^{-1}[U_X^\top R]_r\big)^\top`.

    Which minimiser: when ``n < dx`` (or ``X`` is rank deficient) the minimisers differ by
    components outside the row space of ``X``, which the loss does not see. The one returned
    has its rows in the row space of ``X``; it is the minimiser with the smallest
    :math:`\|A - A_0\|_F`. (When the ``r``-th and ``(r+1)``-th singular values of ``T`` tie,
    the minimiser is not unique; this happens with probability zero for Gaussian data.)

    Parameters
    ----------
    X
        Inputs, shape ``(..., n, dx)`` (samples in rows).
    Y
        Targets, shape ``(..., n, dy)``.
    A0
        Pre-trained weights, shape ``(..., dy, dx)``.
    rank
        LoRA rank :math:`r`, in ``1..min(dx, dy)``.

    Returns
    -------
    numpy.ndarray
        :math:`\hat A_{\rm LoRA}`, shape ``(..., dy, dx)``.
    """
    X, Y, A0 = check_regression(X, Y, A0)
    r = _check_rank(rank, X.shape[-1], Y.shape[-1])
    (shift,) = _lora_shifts(*_whitened_residual(X, Y, A0), [r])
    return A0 + shift


def _lora_shifts(V_X: np.ndarray, inverse: np.ndarray, Z: np.ndarray, ranks: Sequence[int]) -> list[np.ndarray]:
    r"""LoRA shifts :math:`(V_X\Sigma^{-1}[Z]_r)^\top` for several ranks from one SVD of ``Z``."""
    U_Z, s_Z, Vt_Z = np.linalg.svd(Z, full_matrices=False)
    left = V_X @ (inverse[..., :, None] * U_Z)  # un-whitened left singular vectors, (..., dx, m)
    shifts = []
    for r in ranks:
        # Eckart-Young truncation [Z]_r = U_Z[:, :r] diag(s_Z[:r]) Vt_Z[:r], then un-whitening.
        shift_transposed = (left[..., :, :r] * s_Z[..., None, :r]) @ Vt_Z[..., :r, :]
        shifts.append(np.swapaxes(shift_transposed, -1, -2))
    return shifts


# ----------------------------------------------------------------------------- reference solvers
def _largest_covariance_eigenvalue(X: np.ndarray) -> float:
    return float(np.linalg.norm(X, ord=2) ** 2 / X.shape[0])


def fft_gradient_descent(X: np.ndarray, Y: np.ndarray, initial_weights: np.ndarray, steps: int,
                         learning_rate: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    r"""Full-batch gradient descent on all weights, :math:`A \leftarrow A + \frac{2\eta}{n}(Y - XA^\top)^\top X`.

    The gradient of :math:`L(A) = \frac1n\|Y - XA^\top\|_F^2` has its rows in the row space of
    ``X``, so the iterates keep the component of ``initial_weights`` outside that space: started
    at ``A0`` they converge to :func:`fft_estimator`.

    Parameters
    ----------
    X, Y
        Data, shapes ``(n, dx)`` and ``(n, dy)``.
    initial_weights
        Starting point, shape ``(dy, dx)``.
    steps
        Number of steps.
    learning_rate
        :math:`\eta`; default :math:`0.5/\lambda_{\max}(S)` (stable below :math:`1/\lambda_{\max}(S)`).

    Returns
    -------
    weights, losses
        Final weights ``(dy, dx)`` and the training loss before each step and at the end (``steps + 1``).
    """
    X, Y, A = check_regression(X, Y, initial_weights, ("X", "Y", "initial_weights"), single="fft_gradient_descent")
    steps = integer(steps, "steps", minimum=0)
    check_memory(2 * steps, "steps", "the recorded losses")
    if learning_rate is not None:
        real(learning_rate, "learning_rate", minimum=0.0)
    n = X.shape[0]
    if learning_rate is None:
        eta = 0.5 / _largest_covariance_eigenvalue(X)
    else:
        eta = real(learning_rate, "learning_rate", minimum=0.0)
    losses = np.empty(steps + 1)
    for t in range(steps + 1):
        residual = Y - X @ A.T
        losses[t] = np.sum(residual**2) / n
        if t < steps:
            A = A + (2 * eta / n) * residual.T @ X
    if not np.all(np.isfinite(A)):
        raise FloatingPointError("gradient descent diverged; lower the learning rate")
    return A, losses


def lora_gradient_descent(
    X: np.ndarray,
    Y: np.ndarray,
    A0: np.ndarray,
    rank: int,
    steps: int,
    seed: int | np.random.Generator,
    learning_rate: float | None = None,
    initial_scale: float = 1e-2,
) -> tuple[np.ndarray, np.ndarray]:
    r"""Full-batch gradient descent on the LoRA factors from the LoRA initialisation.

    Minimises :math:`L(B, A) = \frac1n\|R - X A^\top B^\top\|_F^2` with
    :math:`R = Y - XA_0^\top`, :math:`B \in\mathbb{R}^{d_y\times r}`,
    :math:`A\in\mathbb{R}^{r\times d_x}`, started at :math:`B = 0` and
    :math:`A_{ij}\sim\mathcal N(0, \text{initial\_scale}^2/d_x)`:

    .. math:: G = \tfrac2n (R - XA^\top B^\top)^\top X,\qquad
        B \leftarrow B + \eta\, G A^\top,\qquad A \leftarrow A + \eta\, B^\top G.

    Parameters
    ----------
    X, Y, A0
        Data ``(n, dx)``, ``(n, dy)`` and pre-trained weights ``(dy, dx)``.
    rank
        :math:`r`, in ``1..min(dx, dy)``.
    steps
        Number of steps.
    seed
        Seed of the initialisation of ``A``.
    learning_rate
        :math:`\eta`; default :math:`0.2 / (\lambda_{\max}(S)\,\max(1, \|\hat D_{\rm FFT}\|_2))`, below the
        stability limit near a balanced solution (where :math:`\|B\|_2^2 \approx \|A\|_2^2 \approx \|BA\|_2`).
    initial_scale
        Scale of the initial ``A`` (small: LoRA's start is close to ``A0``).

    Returns
    -------
    weights, losses
        :math:`A_0 + BA` at the end, shape ``(dy, dx)``, and the training loss before each step
        and at the end (``steps + 1`` values).
    """
    X, Y, A0 = check_regression(X, Y, A0, single="lora_gradient_descent")
    n, dx = X.shape
    dy = Y.shape[1]
    r = _check_rank(rank, dx, dy)
    steps = integer(steps, "steps", minimum=0)
    check_memory(2 * steps, "steps", "the recorded losses")
    scale = real(initial_scale, "initial_scale", minimum=0.0)
    if learning_rate is not None:
        real(learning_rate, "learning_rate", minimum=0.0)
    generator(seed, "seed")
    if learning_rate is None:
        shift_norm = np.linalg.norm(fft_estimator(X, Y, A0) - A0, ord=2)
        eta = 0.2 / (_largest_covariance_eigenvalue(X) * max(1.0, shift_norm))
    else:
        eta = real(learning_rate, "learning_rate", minimum=0.0)
    rng = generator(seed, "seed")
    B = np.zeros((dy, r))
    A = scale * rng.standard_normal((r, dx)) / np.sqrt(dx)
    R = Y - X @ A0.T
    losses = np.empty(steps + 1)
    for t in range(steps + 1):
        residual = R - (X @ A.T) @ B.T
        losses[t] = np.sum(residual**2) / n
        if t < steps:
            G = (2.0 / n) * residual.T @ X  # minus the gradient with respect to the product BA
            B, A = B + eta * G @ A.T, A + eta * B.T @ G
    weights = A0 + B @ A
    if not np.all(np.isfinite(weights)):
        raise FloatingPointError("gradient descent on the LoRA factors diverged; lower the learning rate")
    return weights, losses


def lora_alternating_least_squares(
    X: np.ndarray, Y: np.ndarray, A0: np.ndarray, rank: int, iterations: int, seed: int | np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    r"""Alternating least squares on the LoRA factors.

    From a Gaussian ``A`` (``r x dx``), alternately minimise
    :math:`\|R - XA^\top B^\top\|_F^2` exactly over one factor (minimum-norm solutions):

    .. math:: B^\top \leftarrow (XA^\top)^+ R,\qquad A^\top \leftarrow X^+ R\,(B^\top)^+.

    Each half-step cannot increase the loss.

    Parameters
    ----------
    X, Y, A0
        Data ``(n, dx)``, ``(n, dy)`` and pre-trained weights ``(dy, dx)``.
    rank
        :math:`r`, in ``1..min(dx, dy)``.
    iterations
        Number of (B, A) sweeps.
    seed
        Seed of the initial ``A``.

    Returns
    -------
    weights, losses
        :math:`A_0 + BA` and the training loss after each sweep (``iterations`` values).
    """
    X, Y, A0 = check_regression(X, Y, A0, single="lora_alternating_least_squares")
    n, dx = X.shape
    r = _check_rank(rank, dx, Y.shape[1])
    iterations = integer(iterations, "iterations")
    check_memory(2 * iterations, "iterations", "the recorded losses")
    rng = generator(seed, "seed")
    A = rng.standard_normal((r, dx))
    R = Y - X @ A0.T
    X_pinv_R = np.linalg.pinv(X) @ R
    losses = np.empty(iterations)
    for t in range(iterations):
        Bt = np.linalg.pinv(X @ A.T) @ R
        A = (X_pinv_R @ np.linalg.pinv(Bt)).T
        losses[t] = np.sum((R - X @ A.T @ Bt) ** 2) / n
    return A0 + Bt.T @ A, losses


# ----------------------------------------------------------------------------- theory
def inverse_chi_square_mean_sympy(degrees_of_freedom: sp.Expr) -> sp.Expr:
    r""":math:`\mathbb{E}[1/q]` for :math:`q\sim\chi^2_m`, by integrating the density with sympy.

    .. math:: \mathbb{E}\Big[\frac1q\Big] = \int_0^\infty \frac1q\,
        \frac{q^{m/2-1}e^{-q/2}}{2^{m/2}\Gamma(m/2)}\,dq = \frac{1}{m-2}\qquad (m > 2).

    The integral is done for :math:`m = \nu + 2` with a positive symbol :math:`\nu` (where it
    converges), then ``m`` is substituted back.
    """
    q = sp.Symbol("q", positive=True)
    nu = sp.Symbol("nu", positive=True)
    m = nu + 2
    density = q ** (m / 2 - 1) * sp.exp(-q / 2) / (2 ** (m / 2) * sp.gamma(m / 2))
    mean = sp.simplify(sp.gammasimp(sp.integrate(density / q, (q, 0, sp.oo))))
    return sp.simplify(mean.subs(nu, sp.sympify(degrees_of_freedom) - 2))


def fft_excess_risk_symbols() -> dict[str, sp.Symbol]:
    r"""The sympy symbols of :func:`fft_excess_risk_expressions`: ``d_x, d_y, n, sigma, Delta``
    (:math:`\Delta = \|D^\star\|_F^2`, the shift energy)."""
    return {
        "input_dimension": sp.Symbol("d_x", positive=True),
        "output_dimension": sp.Symbol("d_y", positive=True),
        "num_samples": sp.Symbol("n", positive=True),
        "noise_std": sp.Symbol("sigma", nonnegative=True),
        "shift_energy": sp.Symbol("Delta", nonnegative=True),
    }


@cache
def fft_excess_risk_expressions() -> dict[str, sp.Expr]:
    r"""Expected excess risk of FFT as sympy expressions, in both regimes.

    With :math:`X = U_X\Sigma V_X^\top` and noise :math:`E`, :math:`\hat D - D^\star = -D^\star(I - P)
    + E^\top (X^+)^\top` where :math:`P = X^+X` projects on the row space of ``X``. Averaging
    over ``E`` then ``X``:

    * overdetermined (:math:`n \ge d_x + 2`): :math:`P = I` and
      :math:`\mathbb{E}\|E^\top (X^+)^\top\|_F^2 = \sigma^2 d_y\,\mathbb{E}\,\mathrm{tr}(X^\top X)^{-1}`;
      each diagonal entry of the inverse Wishart matrix is :math:`1/\chi^2_{n-d_x+1}`, hence
      :math:`\sigma^2 d_x d_y / (n - d_x - 1)`;
    * underdetermined (:math:`n \le d_x - 2`): :math:`\mathbb{E}P = (n/d_x) I` (rotation
      invariance, :math:`\mathrm{tr}P = n`) and the noise term is
      :math:`\sigma^2 d_y\,\mathbb{E}\,\mathrm{tr}(XX^\top)^{-1}` with diagonal entries
      :math:`1/\chi^2_{d_x-n+1}`, hence
      :math:`(1 - n/d_x)\Delta + \sigma^2 d_y n / (d_x - n - 1)`.

    Returns
    -------
    dict
        ``{"overdetermined": expr, "underdetermined": expr}`` in the symbols of
        :func:`fft_excess_risk_symbols`.
    """
    s = fft_excess_risk_symbols()
    dx, dy, n, sigma, delta = (
        s[key] for key in ("input_dimension", "output_dimension", "num_samples", "noise_std", "shift_energy")
    )
    overdetermined = sigma**2 * dy * dx * inverse_chi_square_mean_sympy(n - dx + 1)
    underdetermined = (1 - n / dx) * delta + sigma**2 * dy * n * inverse_chi_square_mean_sympy(dx - n + 1)
    return {
        "overdetermined": sp.simplify(overdetermined),
        "underdetermined": sp.collect(sp.expand(underdetermined), delta),
    }


@cache
def _fft_excess_risk_functions() -> dict[str, Callable[..., float]]:
    s = fft_excess_risk_symbols()
    arguments = [s[key] for key in ("input_dimension", "output_dimension", "num_samples", "noise_std", "shift_energy")]
    return {regime: sp.lambdify(arguments, expr, "math") for regime, expr in fft_excess_risk_expressions().items()}


def fft_excess_risk(
    input_dimension: int, output_dimension: int, num_samples: int, noise_std: float, shift_energy: float
) -> float:
    r"""Expected excess risk of full fine-tuning, :math:`\mathbb{E}\|\hat A_{\rm FFT} - A^\star\|_F^2`.

    For isotropic Gaussian inputs and a fixed task shift with energy :math:`\Delta = \|D^\star\|_F^2`:

    .. math:: \mathbb{E}\|\hat A_{\rm FFT} - A^\star\|_F^2 =
        \begin{cases}
        \dfrac{\sigma^2 d_x d_y}{n - d_x - 1}, & n \ge d_x + 2 \text{ (overdetermined)},\\[2ex]
        \Big(1 - \dfrac{n}{d_x}\Big)\Delta + \dfrac{\sigma^2 d_y n}{d_x - n - 1}, & n \le d_x - 2
        \text{ (underdetermined)}.
        \end{cases}

    The expectation is infinite for :math:`d_x - 1 \le n \le d_x + 1` when :math:`\sigma > 0`
    (the interpolation peak of double descent). When :math:`\sigma = 0` there is no noise term
    and the risk is :math:`\max(0, 1 - n/d_x)\,\Delta` for every ``n``. Evaluates the sympy
    expressions of :func:`fft_excess_risk_expressions`. ``shift_energy`` does not enter the
    overdetermined case (FFT is unbiased there) but is validated in all cases.

    Parameters
    ----------
    input_dimension, output_dimension
        :math:`d_x, d_y`.
    num_samples
        :math:`n`.
    noise_std
        :math:`\sigma \ge 0`.
    shift_energy
        :math:`\Delta = \|D^\star\|_F^2 \ge 0` (for a random shift independent of the data, its mean).

    Raises
    ------
    ValueError
        If :math:`d_x - 1 \le n \le d_x + 1` and :math:`\sigma > 0` (infinite expectation), or an
        argument is out of range.
    """
    dx = integer(input_dimension, "input_dimension")
    dy = integer(output_dimension, "output_dimension")
    n = integer(num_samples, "num_samples")
    sigma = real(noise_std, "noise_std", minimum=0.0)
    delta = real(shift_energy, "shift_energy", minimum=0.0)
    if sigma == 0.0:
        return max(0.0, 1.0 - n / dx) * delta
    functions = _fft_excess_risk_functions()
    if n >= dx + 2:
        return float(functions["overdetermined"](dx, dy, n, sigma, delta))
    if n <= dx - 2:
        return float(functions["underdetermined"](dx, dy, n, sigma, delta))
    raise ValueError(
        f"the expected FFT excess risk is infinite for dx - 1 <= n <= dx + 1 with noise "
        f"(here dx = {dx}, n = {n}); use n <= {dx - 2} or n >= {dx + 2}"
    )


# ----------------------------------------------------------------------------- Monte Carlo
def excess_risk_monte_carlo(
    pretrained: np.ndarray,
    task_shift: np.ndarray,
    num_samples: int,
    noise_std: float,
    ranks: Sequence[int],
    num_seeds: int,
    seed: int | np.random.Generator,
    chunk_size: int = 64,
) -> tuple[np.ndarray, np.ndarray]:
    r"""Excess risks of FFT and LoRA over independent data sets, for a fixed ``A0`` and ``D*``.

    Draws ``num_seeds`` training sets (:func:`regression_data`) in chunks with a leading seed
    axis and evaluates :func:`fft_estimator` and :func:`lora_estimator` on the whole stack.

    Parameters
    ----------
    pretrained, task_shift
        :math:`A_0` and :math:`D^\star`, shape ``(dy, dx)``.
    num_samples
        :math:`n`.
    noise_std
        :math:`\sigma`.
    ranks
        LoRA ranks to evaluate (possibly empty).
    num_seeds
        Number of independent data sets.
    seed
        Integer seed or numpy Generator.
    chunk_size
        Data sets drawn and solved at once (bounds memory).

    Returns
    -------
    fft_risks, lora_risks
        Arrays of shapes ``(num_seeds,)`` and ``(len(ranks), num_seeds)`` of
        :math:`\|\hat A - A^\star\|_F^2`.
    """
    A0 = matrix(pretrained, "pretrained")
    D = matrix(task_shift, "task_shift")
    if A0.ndim != 2:
        raise ValueError(f"pretrained must be a (dy, dx) matrix, got shape {A0.shape}")
    if D.shape != A0.shape:
        raise ValueError(f"task_shift must be a (dy, dx) matrix of the shape of pretrained {A0.shape}, got {D.shape}")
    dy, dx = A0.shape
    n = integer(num_samples, "num_samples")
    real(noise_std, "noise_std", minimum=0.0)
    ranks = _check_ranks(ranks, dx, dy, allow_empty=True)
    num_seeds = integer(num_seeds, "num_seeds")
    chunk_size = integer(chunk_size, "chunk_size")
    check_memory((len(ranks) + 1) * num_seeds, "num_seeds", "the excess risks of every data set")
    _check_size(
        "a chunk of data sets and their decompositions",
        factor=6 * (dx + dy),
        num_samples=n,
        chunk_size=min(chunk_size, num_seeds),
    )
    rng = generator(seed, "seed")
    A_star = A0 + D
    fft_risks = np.empty(num_seeds)
    lora_risks = np.empty((len(ranks), num_seeds))
    for start in range(0, num_seeds, chunk_size):
        stop = min(start + chunk_size, num_seeds)
        X, Y = regression_data(A_star, num_samples, noise_std, rng, num_seeds=stop - start)
        # One SVD of X and one of the whitened residual serve FFT and every rank (same maths as
        # fft_estimator and lora_estimator, which the tests compare with these risks).
        V_X, inverse, Z = _whitened_residual(X, Y, A0)
        fft_shift = np.swapaxes(V_X @ (inverse[..., :, None] * Z), -1, -2)
        fft_risks[start:stop] = np.sum((fft_shift - D) ** 2, axis=(-2, -1))
        for j, shift in enumerate(_lora_shifts(V_X, inverse, Z, ranks)):
            lora_risks[j, start:stop] = np.sum((shift - D) ** 2, axis=(-2, -1))
    return fft_risks, lora_risks


# ----------------------------------------------------------------------------- LoRA's excess risk
def input_covariance_sqrt(X: np.ndarray) -> np.ndarray:
    r"""Symmetric square root :math:`S^{1/2}` of the empirical input covariance :math:`S = X^\top X / n`.

    Computed from the thin SVD :math:`X = U_X \Sigma V_X^\top` as
    :math:`S^{1/2} = V_X (\Sigma/\sqrt n) V_X^\top` (so it is exactly zero off the row space of ``X``).

    Parameters
    ----------
    X
        Inputs, shape ``(..., n, dx)``.

    Returns
    -------
    numpy.ndarray
        :math:`S^{1/2}`, shape ``(..., dx, dx)``.
    """
    X = matrix(X, "X")
    _, singular, Vt = np.linalg.svd(X, full_matrices=False)
    V = np.swapaxes(Vt, -1, -2)
    return (V * (singular[..., None, :] / np.sqrt(X.shape[-2]))) @ Vt


def whitened_shift(X: np.ndarray, Y: np.ndarray, A0: np.ndarray) -> np.ndarray:
    r"""The whitened least-squares shift :math:`T = \hat D\,S^{1/2}` that LoRA truncates.

    With :math:`\hat D = (X^+(Y - XA_0^\top))^\top` (the FFT shift) and the thin SVD
    :math:`X = U_X\Sigma V_X^\top`, :math:`T = (V_X U_X^\top R)^\top/\sqrt n` with
    :math:`R = Y - XA_0^\top` (rows for numerically zero singular values dropped). In the
    overdetermined regime,

    .. math:: T = D^\star S^{1/2} + \frac{G}{\sqrt n},\qquad G = (V_X U_X^\top E)^\top,

    and :math:`G` has i.i.d. :math:`\mathcal N(0, \sigma^2)` entries, independent of :math:`X`;
    :func:`lora_estimator` equals :math:`A_0 + [T]_r S^{-1/2}`.

    Parameters
    ----------
    X, Y, A0
        Data ``(..., n, dx)``, ``(..., n, dy)`` and pre-trained weights ``(..., dy, dx)``.

    Returns
    -------
    numpy.ndarray
        :math:`T`, shape ``(..., dy, dx)``.
    """
    X, Y, A0 = check_regression(X, Y, A0)
    V_X, _, Z = _whitened_residual(X, Y, A0)
    return np.swapaxes(V_X @ Z, -1, -2) / np.sqrt(X.shape[-2])


def spiked_noise_scale(input_dimension: int, output_dimension: int, num_samples: int, noise_std: float) -> float:
    r"""Noise scale :math:`\tau = \sigma\sqrt{\max(d_x, d_y)/n}` of the whitened shift.

    The noise :math:`G/\sqrt n` of :func:`whitened_shift` has entries of variance
    :math:`\sigma^2/n`; divided by :math:`\tau` they have variance :math:`1/\max(d_x, d_y)`, the
    normalisation of the spiked model (:func:`spiked_singular_value`).
    """
    dx = integer(input_dimension, "input_dimension")
    dy = integer(output_dimension, "output_dimension")
    n = integer(num_samples, "num_samples")
    sigma = real(noise_std, "noise_std", minimum=0.0)
    return sigma * np.sqrt(max(dx, dy) / n)


def _aspect_ratio(value: object) -> float:
    c = real(value, "aspect_ratio")
    if not 0 < c <= 1:
        raise ValueError(f"aspect_ratio must be in (0, 1] (short side / long side), got {c}")
    return c


def _spikes(theta: object, name: str = "theta") -> np.ndarray:
    return real_array(theta, name, nonempty=False, minimum=0.0)


def detection_threshold(aspect_ratio: float) -> float:
    r"""Detectability threshold :math:`\theta_c = c^{1/4}` of a spike in rectangular Gaussian noise.

    For :math:`M = \sum_i \theta_i a_i b_i^\top + N`, :math:`N` of size ``p x q`` (``p <= q``)
    with i.i.d. :math:`\mathcal N(0, 1/q)` entries and :math:`c = p/q`, a spike separates from
    the noise bulk (in the limit ``p, q -> infinity`` at fixed ``c``) iff :math:`\theta > c^{1/4}`
    (Benaych-Georges and Nadakuditi, 2012).
    """
    return _aspect_ratio(aspect_ratio) ** 0.25


def spiked_singular_value(theta: float | np.ndarray, aspect_ratio: float) -> np.ndarray | float:
    r"""Limiting singular value of :math:`M` attached to a spike of strength :math:`\theta`.

    .. math:: \lambda(\theta) = \begin{cases} \dfrac{\sqrt{(1+\theta^2)(c+\theta^2)}}{\theta},
        & \theta > c^{1/4},\\ 1 + \sqrt c \ \text{(the bulk edge)}, & \theta \le c^{1/4}, \end{cases}

    in the normalisation of :func:`detection_threshold` (Benaych-Georges and Nadakuditi, 2012).
    """
    c = _aspect_ratio(aspect_ratio)
    theta = _spikes(theta)
    above = theta > c**0.25
    safe = np.where(above, theta, 1.0)
    value = np.where(above, np.sqrt((1 + safe**2) * (c + safe**2)) / safe, 1 + np.sqrt(c))
    return float(value) if value.ndim == 0 else value


def spiked_overlaps(theta: float | np.ndarray, aspect_ratio: float) -> tuple[np.ndarray | float, np.ndarray | float]:
    r"""Limiting squared overlaps of the singular vectors attached to a spike with the spike's own.

    .. math:: \langle a, \hat a\rangle^2 = 1 - \frac{c(1+\theta^2)}{\theta^2(\theta^2 + c)}
        \ \text{(short side)},\qquad
        \langle b, \hat b\rangle^2 = 1 - \frac{c+\theta^2}{\theta^2(\theta^2 + 1)}
        \ \text{(long side)},

    for :math:`\theta > c^{1/4}`, and 0 below (Benaych-Georges and Nadakuditi, 2012).

    Returns
    -------
    short_side, long_side
        The two squared overlaps (arrays shaped like ``theta``, or floats).
    """
    c = _aspect_ratio(aspect_ratio)
    theta = _spikes(theta)
    above = theta > c**0.25
    t2 = np.where(above, theta, 1.0) ** 2
    short = np.where(above, 1 - c * (1 + t2) / (t2 * (t2 + c)), 0.0)
    long = np.where(above, 1 - (c + t2) / (t2 * (t2 + 1)), 0.0)
    if short.ndim == 0:
        return float(short), float(long)
    return short, long


def noise_top_squared_singular_values(aspect_ratio: float, short_dimension: int, count: int) -> np.ndarray:
    r"""Finite-size locations of the ``count`` largest squared singular values of pure noise.

    For :math:`N` of size ``p x q`` with i.i.d. :math:`\mathcal N(0, 1/q)` entries the
    eigenvalues of :math:`NN^\top` follow the Marchenko-Pastur law with ratio :math:`c = p/q`,

    .. math:: \rho(x) = \frac{\sqrt{(x_+ - x)(x - x_-)}}{2\pi c x},\qquad x_\pm = (1\pm\sqrt c)^2 .

    The ``j``-th largest is placed at its classical location :math:`\gamma_j`,
    :math:`\int_{\gamma_j}^{x_+}\rho = (j - 1/2)/p`; the top ones sit below the edge
    :math:`x_+` by about :math:`p^{-2/3}` (the limit value :math:`x_+` overestimates them).

    Parameters
    ----------
    aspect_ratio
        :math:`c = p/q \in (0, 1]`.
    short_dimension
        :math:`p`.
    count
        How many values, ``0..p``.
    """
    c = _aspect_ratio(aspect_ratio)
    p = integer(short_dimension, "short_dimension")
    count = integer(count, "count", minimum=0)
    if count > p:
        raise ValueError(f"count must be in 0..short_dimension = 0..{p}, got {count}")
    lower, upper = (1 - np.sqrt(c)) ** 2, (1 + np.sqrt(c)) ** 2
    # x = x_- + (x_+ - x_-)(1 - cos phi)/2 removes the square-root singularities at both edges.
    phi = np.linspace(0.0, np.pi, 20001)
    x = lower + (upper - lower) * (1 - np.cos(phi)) / 2
    jacobian = (upper - lower) * np.sin(phi) / 2
    root = np.sqrt(np.maximum((upper - x) * (x - lower), 0.0))
    density = np.where(x > 0, root * jacobian / np.where(x > 0, x, 1.0), 0.0) / (2 * np.pi * c)
    if lower == 0.0:
        # c = 1: rho ~ 1/sqrt(x) at 0, but rho dx/dphi is smooth there (limit 2/pi); take its neighbour.
        density[0] = density[1]
    increments = (density[1:] + density[:-1]) / 2 * np.diff(phi)
    tail = np.concatenate([np.cumsum(increments[::-1])[::-1], [0.0]])
    tail /= tail[0]
    targets = (np.arange(1, count + 1) - 0.5) / p
    return np.interp(targets, tail[::-1], x[::-1])


def unwhitening_factors(input_dimension: int, num_samples: int, true_rank: int) -> tuple[float, float]:
    r"""How the un-whitening :math:`S^{-1/2}` inflates errors, in the overdetermined regime.

    Write the error of the whitened estimate as :math:`W = W P_B + W(I - P_B)` where
    :math:`P_B` projects on the row space :math:`B` of the whitened signal :math:`D^\star S^{1/2}`
    (dimension ``k``). The first part becomes :math:`W P_B S^{-1/2}`, whose rows lie in the row
    space of :math:`D^\star`; the prediction keeps its size (factor 1), which is exact for the
    bias (a dropped spike :math:`-s\,u v^\top S^{1/2}` becomes :math:`-s\,u v^\top`) but
    neglects the inflation of its noise-driven part, on average
    :math:`\mathbb{E}\operatorname{tr}(P_B S^{-1})/k = n/(n-k-1)` (a few percent of that part when
    :math:`d_x/n \le 1/2`). Given :math:`S`, the second part is invariant under rotations of
    :math:`B^\perp`, so

    .. math:: \mathbb{E}\|W(I-P_B)S^{-1/2}\|_F^2 = \kappa\,\mathbb{E}\|W(I-P_B)\|_F^2,\qquad
        \kappa = \frac{1}{d_x - k}\Big(\frac{n d_x}{n - d_x - 1} - \frac{n k}{n - k - 1}\Big),

    using :math:`\mathbb{E}\operatorname{tr} S^{-1} = n d_x/(n - d_x - 1)` and
    :math:`\mathbb{E}\operatorname{tr}(P_B S^{-1}) = \mathbb{E}\operatorname{tr}(V^\top S V)^{-1}
    = n k/(n - k - 1)` (inverse-Wishart means). (Treating :math:`\|W(I-P_B)\|_F` as independent of
    :math:`S` is the other approximation.) At ``k = 0``, :math:`\kappa = n/(n - d_x - 1)`.

    Returns
    -------
    signal_factor, complement_factor
        ``(1.0, kappa)``.
    """
    dx = integer(input_dimension, "input_dimension")
    n = integer(num_samples, "num_samples")
    k = integer(true_rank, "true_rank", minimum=0)
    if n < dx + 2:
        raise ValueError(f"the un-whitening factor needs the overdetermined regime n >= dx + 2 (dx = {dx}, n = {n})")
    if k >= dx:
        return 1.0, float(n / (n - dx - 1))  # no complement left; value unused
    kappa = (n * dx / (n - dx - 1) - n * k / (n - k - 1)) / (dx - k)
    return 1.0, float(kappa)


class LoraRiskPrediction(NamedTuple):
    r"""Predicted expected excess risk of LoRA and its three parts (all in units of :math:`\|\cdot\|_F^2`)."""

    excess_risk: float  #: the sum of the three parts
    missed_signal: float  #: sum of s_i^2 over spikes not kept or not detectable (bias)
    kept_signal_error: float  #: error on the kept detectable spikes (after un-whitening)
    kept_noise: float


def _check_spectrum(singular_values: object) -> np.ndarray:
    s = real_array(singular_values, "singular_values", ndim=1)
    if np.any(s < 0):
        raise ValueError("singular_values must be finite and non-negative")
    return np.sort(s)[::-1]


def lora_excess_risk_prediction(
    singular_values: Sequence[float] | np.ndarray,
    input_dimension: int,
    output_dimension: int,
    num_samples: int,
    noise_std: float,
    rank: int,
    include_unwhitening: bool = True,
) -> LoraRiskPrediction:
    r"""Spiked random-matrix prediction of LoRA's expected excess risk (overdetermined regime).

    LoRA truncates :math:`T = D^\star S^{1/2} + G/\sqrt n` (:func:`whitened_shift`) to rank ``r``
    and un-whitens. In units of :math:`\tau` (:func:`spiked_noise_scale`) the task shift's
    singular values become spikes :math:`\theta_i = s_i/\tau`, with :math:`c = \min(d_x,d_y)/\max(d_x,d_y)`.
    Let :math:`\ell` be the number of detectable spikes (:math:`\theta_i > c^{1/4}`), and for each
    of them :math:`\lambda_i` (:func:`spiked_singular_value`) and the squared overlaps
    :math:`\alpha_i^2` (output side) and :math:`\beta_i^2` (input side) from
    :func:`spiked_overlaps`. With :math:`p = \min(d_x, d_y)`, :math:`q = \max(d_x, d_y)`,
    :math:`\kappa` from :func:`unwhitening_factors` and :math:`\mu_j(c', p')` from
    :func:`noise_top_squared_singular_values` (the components left after the :math:`\ell` detected
    spikes behave like noise projected off the spikes' subspaces, a :math:`(p-\ell)\times(q-\ell)`
    Gaussian matrix with entry variance :math:`1/q`),

    .. math:: \mathcal E_r \approx \sum_{i \notin K} s_i^2
        + \tau^2 \sum_{i\in K} \big[\theta_i^2 + \lambda_i^2\beta_i^2 - 2\theta_i\lambda_i\alpha_i\beta_i
        + \kappa\,\lambda_i^2 (1 - \beta_i^2)\big]
        + \kappa\,\tau^2\,\frac{q - \ell}{q} \sum_{j=1}^{r - |K|} \mu_j\Big(\frac{p-\ell}{q-\ell}, p -
        \ell\Big) ,

    where :math:`K` is the set of the :math:`\min(r, \ell)` largest (detectable) spikes. The first
    sum is the bias (spikes dropped or drowned in noise), the second the error on the recovered
    spikes (the part along the true input directions is not inflated by the un-whitening, the
    rest is, by :math:`\kappa`), the third the noise components that fill the remaining rank.

    Parameters
    ----------
    singular_values
        :math:`s_1, \dots, s_k` of :math:`D^\star` (any order; zeros allowed).
    input_dimension, output_dimension
        :math:`d_x, d_y`.
    num_samples
        :math:`n \ge d_x + 2`.
    noise_std
        :math:`\sigma > 0`.
    rank
        LoRA rank :math:`r` in ``1..min(dx, dy)``.
    include_unwhitening
        If False, set :math:`\kappa = 1`: the prediction of the whitened error
        :math:`\|[T]_r - D^\star S^{1/2}\|_F^2` (to measure what the un-whitening adds).

    Returns
    -------
    LoraRiskPrediction
        ``(excess_risk, missed_signal, kept_signal_error, kept_noise)``.
    """
    return _lora_predictions(
        singular_values, input_dimension, output_dimension, num_samples, noise_std, [rank], include_unwhitening
    )[0]


def _lora_predictions(
    singular_values: object,
    input_dimension: int,
    output_dimension: int,
    num_samples: int,
    noise_std: float,
    ranks: Sequence[int],
    include_unwhitening: bool = True,
) -> list[LoraRiskPrediction]:
    boolean(include_unwhitening, "include_unwhitening")
    s = _check_spectrum(singular_values)
    dx = integer(input_dimension, "input_dimension")
    dy = integer(output_dimension, "output_dimension")
    n = integer(num_samples, "num_samples")
    sigma = real(noise_std, "noise_std", minimum=0.0)
    if sigma == 0:
        raise ValueError("noise_std must be > 0 (without noise LoRA at rank >= k is exact)")
    if n < dx + 2:
        raise ValueError(
            f"the prediction covers the overdetermined regime n >= dx + 2 (dx = {dx}, n = {n}); "
            "below it LoRA shares FFT's unseen-direction bias"
        )
    if s.size > min(dx, dy):
        raise ValueError(f"at most min(dx, dy) = {min(dx, dy)} singular values, got {s.size}")
    ranks = [_check_rank(r, dx, dy) for r in ranks]
    if not ranks:
        raise ValueError("ranks must hold at least one rank, got none")
    p, q = min(dx, dy), max(dx, dy)
    c = p / q
    tau = spiked_noise_scale(dx, dy, n, sigma)
    theta = s / tau
    detectable = theta > c**0.25
    m = int(np.sum(detectable))  # s is sorted, so the detectable spikes come first
    lam = spiked_singular_value(theta[:m], c) if m else np.zeros(0)
    short, long = spiked_overlaps(theta[:m], c) if m else (np.zeros(0), np.zeros(0))
    # Output side (length dy) and input side (length dx): the short side is the smaller dimension.
    alpha2, beta2 = (short, long) if dy <= dx else (long, short)
    true_rank = int(np.sum(s > 0))
    _, kappa = unwhitening_factors(dx, n, true_rank) if include_unwhitening else (1.0, 1.0)
    spike_cost = tau**2 * (
        theta[:m] ** 2 + lam**2 * beta2 - 2 * theta[:m] * lam * np.sqrt(alpha2 * beta2) + kappa * lam**2 * (1 - beta2)
    )
    # The components left after the m detected spikes behave like the noise projected off the
    # spikes' left and right subspaces: a (p - m) x (q - m) Gaussian matrix with entry variance 1/q.
    # (At finite size this matters: the pure-noise top values would overestimate them by ~10%.)
    max_noise = max(max(ranks) - min(max(ranks), m), 0)
    noise = (
        (q - m) / q * noise_top_squared_singular_values((p - m) / (q - m), p - m, max_noise)
        if max_noise
        else np.zeros(0)
    )
    total_energy = float(np.sum(s**2))
    predictions = []
    for r in ranks:
        kept = min(r, m)
        missed = total_energy - float(np.sum(s[:kept] ** 2))
        signal_error = float(np.sum(spike_cost[:kept]))
        kept_noise = float(kappa * tau**2 * np.sum(noise[: r - kept]))
        predictions.append(LoraRiskPrediction(missed + signal_error + kept_noise, missed, signal_error, kept_noise))
    return predictions


def lora_excess_risk_curve(
    singular_values: Sequence[float] | np.ndarray,
    input_dimension: int,
    output_dimension: int,
    num_samples: int,
    noise_std: float,
    ranks: Sequence[int],
    include_unwhitening: bool = True,
) -> np.ndarray:
    """:func:`lora_excess_risk_prediction` at several ranks at once; returns the predicted risks (array).

    Raises
    ------
    TypeError, ValueError
        As :func:`lora_excess_risk_prediction`, and for ``ranks`` that is not a non-empty sequence
        of ranks in ``1..min(dx, dy)``.
    """
    dx = integer(input_dimension, "input_dimension")
    dy = integer(output_dimension, "output_dimension")
    _check_spectrum(singular_values)
    checked = _check_ranks(ranks, dx, dy, allow_empty=False)
    return np.array(
        [
            p.excess_risk
            for p in _lora_predictions(
                singular_values, input_dimension, output_dimension, num_samples, noise_std, checked, include_unwhitening
            )
        ]
    )


def optimal_rank(
    singular_values: Sequence[float] | np.ndarray,
    input_dimension: int,
    output_dimension: int,
    num_samples: int,
    noise_std: float,
    max_rank: int | None = None,
) -> int:
    r"""The LoRA rank that minimises the predicted excess risk, :math:`\arg\min_r \mathcal E_r`.

    Uses :func:`lora_excess_risk_prediction`: a spike is worth a rank when it is detectable and
    its predicted error is below its energy :math:`s_i^2` (the cost of dropping it); components
    without a detectable spike only add noise, so the minimiser is at most the number of
    detectable spikes.

    Parameters
    ----------
    singular_values, input_dimension, output_dimension, num_samples, noise_std
        As in :func:`lora_excess_risk_prediction`.
    max_rank
        Largest rank considered (default ``min(dx, dy)``).

    Returns
    -------
    int
        The predicted best rank, in ``1..max_rank``.
    """
    dx = integer(input_dimension, "input_dimension")
    dy = integer(output_dimension, "output_dimension")
    top = min(dx, dy) if max_rank is None else _check_rank(max_rank, dx, dy, "max_rank")
    risks = lora_excess_risk_curve(singular_values, dx, dy, num_samples, noise_std, range(1, top + 1))
    return int(np.argmin(risks)) + 1


def spike_strength_from_singular_value(singular_value: float | np.ndarray, aspect_ratio: float) -> np.ndarray | float:
    r"""Invert :func:`spiked_singular_value`: the spike strength whose outlier sits at ``singular_value``.

    Solving :math:`\lambda^2 = (1+\theta^2)(c+\theta^2)/\theta^2` for :math:`\theta^2 > \sqrt c`,

    .. math:: \theta^2 = \tfrac12\Big(\lambda^2 - 1 - c + \sqrt{(\lambda^2 - 1 - c)^2 - 4c}\Big)
        \qquad (\lambda > 1 + \sqrt c),

    and 0 for values at or below the bulk edge :math:`1 + \sqrt c` (no detectable spike).
    """
    c = _aspect_ratio(aspect_ratio)
    lam = _spikes(singular_value, "singular_value")
    above = lam > 1 + np.sqrt(c)
    b = np.where(above, lam**2 - 1 - c, 2 * np.sqrt(c))
    theta2 = (b + np.sqrt(np.maximum(b**2 - 4 * c, 0.0))) / 2
    theta = np.where(above, np.sqrt(theta2), 0.0)
    return float(theta) if theta.ndim == 0 else theta


def estimated_optimal_rank(
    X: np.ndarray, Y: np.ndarray, A0: np.ndarray, noise_std: float | None = None, max_rank: int | None = None
) -> int:
    r"""A data-driven LoRA rank: :func:`optimal_rank` with the task shift's spectrum estimated from ``T``.

    The singular values :math:`\hat\lambda_j` of the whitened shift :math:`T` (:func:`whitened_shift`),
    in units of :math:`\tau` (:func:`spiked_noise_scale`), that exceed the bulk edge
    :math:`1 + \sqrt c` are mapped back to spike strengths (:func:`spike_strength_from_singular_value`),
    :math:`\hat s_j = \tau\hat\theta_j`, and the rank minimising the predicted risk for
    :math:`\hat s` is returned (1 if no value exceeds the edge). When ``noise_std`` is not given it
    is estimated from the least-squares residual, :math:`\hat\sigma^2 =
    \|Y - X\hat A_{\rm FFT}^\top\|_F^2 / ((n - d_x) d_y)` (unbiased).

    Parameters
    ----------
    X, Y, A0
        One overdetermined problem: ``(n, dx)``, ``(n, dy)``, ``(dy, dx)`` with ``n >= dx + 2``.
    noise_std
        :math:`\sigma` if known.
    max_rank
        Largest rank considered (default ``min(dx, dy)``).

    Returns
    -------
    int
        The estimated best rank.
    """
    X, Y, A0 = check_regression(X, Y, A0, single="estimated_optimal_rank")
    n, dx = X.shape
    dy = Y.shape[1]
    if n < dx + 2:
        raise ValueError(f"estimated_optimal_rank needs the overdetermined regime n >= dx + 2 (dx = {dx}, n = {n})")
    if noise_std is not None:
        real(noise_std, "noise_std", minimum=0.0)
    if max_rank is not None:
        _check_rank(max_rank, dx, dy, "max_rank")
    if noise_std is None:
        residual = Y - X @ fft_estimator(X, Y, A0).T
        sigma = float(np.sqrt(np.sum(residual**2) / ((n - dx) * dy)))
    else:
        sigma = real(noise_std, "noise_std", minimum=0.0)
    c = min(dx, dy) / max(dx, dy)
    tau = spiked_noise_scale(dx, dy, n, sigma)
    observed = np.linalg.svd(whitened_shift(X, Y, A0), compute_uv=False) / tau
    strengths = spike_strength_from_singular_value(observed, c)
    strengths = strengths[strengths > 0]
    if strengths.size == 0:
        return 1
    return optimal_rank(tau * strengths, dx, dy, n, sigma, max_rank=max_rank)
