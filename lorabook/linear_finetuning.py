"""Linear fine-tuning: full fine-tuning (FFT) versus LoRA in multivariate linear regression.

The setting of Part III of the book (Zindari, Mulayoff and Stich, 2026). A pre-trained linear
map ``A0`` (``dy x dx``) is fine-tuned on a downstream task whose truth is ``A* = A0 + D*``,
with a task shift ``D*`` of rank ``k``. The data are ``n`` samples stored **in rows**:

.. math:: X \\in \\mathbb{R}^{n\\times d_x},\\ x_i \\sim \\mathcal N(0, I_{d_x}),\\qquad
    Y = X A^{\\star\\top} + E,\\ E_{ij} \\sim \\mathcal N(0, \\sigma^2).

The training loss of a weight matrix ``A`` is the empirical mean squared error
:math:`L(A) = \\frac1n \\|Y - X A^\\top\\|_F^2` and, for isotropic inputs, the excess risk is
:math:`\\mathbb{E}_x\\|(\\hat A - A^\\star)x\\|^2 = \\|\\hat A - A^\\star\\|_F^2`.

Contents:

* data: :func:`pretrained_weights`, :func:`gaussian_task_shift`, :func:`task_shift_spectrum`,
  :func:`spectral_task_shift`, :func:`regression_data`, :func:`finetuning_problem`;
* estimators in closed form: :func:`fft_estimator` (pseudo-inverse) and :func:`lora_estimator`
  (reduced-rank regression on the residual);
* reference solvers: :func:`fft_gradient_descent`, :func:`lora_gradient_descent` (on the factors,
  from ``B = 0``) and :func:`lora_alternating_least_squares`;
* theory: :func:`fft_excess_risk` (inverse-Wishart moments), built from the sympy expressions of
  :func:`fft_excess_risk_expressions`;
* Monte Carlo: :func:`excess_risk_monte_carlo`, vectorised over seeds.

Estimators, losses and risks accept stacks of problems: leading axes of ``X``, ``Y`` and ``A0``
are batch axes (this is how the Monte Carlo is vectorised over seeds).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Callable, NamedTuple

import numpy as np
import sympy as sp

__all__ = [
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
]

#: Valid ``kind`` arguments of :func:`task_shift_spectrum`.
SPECTRUM_KINDS = ("constant", "exponential", "power")


# ----------------------------------------------------------------------------- validation
def _generator(seed: int | np.random.Generator) -> np.random.Generator:
    """Return a numpy Generator from an integer seed or a Generator (used as is)."""
    if isinstance(seed, np.random.Generator):
        return seed
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be an int or a numpy.random.Generator, got {type(seed).__name__}")
    return np.random.default_rng(int(seed))


def _positive_int(value: object, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value}")
    return int(value)


def _nonnegative_float(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    value = float(value)
    if not np.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value}")
    return value


def _matrix(value: object, name: str) -> np.ndarray:
    """Check that ``value`` is a real array with at least two axes and return it as float."""
    if not isinstance(value, np.ndarray):
        raise TypeError(f"{name} must be a numpy array, got {type(value).__name__}")
    if value.ndim < 2:
        raise ValueError(f"{name} must have at least 2 axes (a matrix or a stack of matrices), got shape {value.shape}")
    if not np.issubdtype(value.dtype, np.number) or np.iscomplexobj(value):
        raise TypeError(f"{name} must be a real numeric array, got dtype {value.dtype}")
    value = value.astype(float, copy=False)
    if not np.all(np.isfinite(value)):
        raise ValueError(f"{name} contains NaN or infinite entries")
    return value


def _check_regression(X: object, Y: object, A0: object) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validate data ``X`` (..., n, dx), ``Y`` (..., n, dy) and weights ``A0`` (..., dy, dx)."""
    X = _matrix(X, "X")
    Y = _matrix(Y, "Y")
    A0 = _matrix(A0, "A0")
    n, dx = X.shape[-2:]
    if Y.shape[-2] != n:
        raise ValueError(f"X has shape {X.shape} (samples in rows: (n, dx)) but Y has shape {Y.shape}; "
                         f"expected Y of shape (n, dy) = ({n}, dy)")
    dy = Y.shape[-1]
    if A0.shape[-2:] != (dy, dx):
        raise ValueError(f"A0 must have shape (dy, dx) = ({dy}, {dx}) to match X {X.shape} and Y {Y.shape}, "
                         f"got {A0.shape}")
    try:
        np.broadcast_shapes(X.shape[:-2], Y.shape[:-2], A0.shape[:-2])
    except ValueError:
        raise ValueError(f"batch axes of X {X.shape[:-2]}, Y {Y.shape[:-2]} and A0 {A0.shape[:-2]} "
                         "do not broadcast") from None
    return X, Y, A0


def _check_rank(rank: object, dx: int, dy: int) -> int:
    if isinstance(rank, bool) or not isinstance(rank, (int, np.integer)):
        raise TypeError(f"rank must be an integer, got {type(rank).__name__}")
    if not 1 <= rank <= min(dx, dy):
        raise ValueError(f"rank must be in 1..min(dx, dy) = 1..{min(dx, dy)}, got {rank}")
    return int(rank)


# ----------------------------------------------------------------------------- data
def pretrained_weights(output_dimension: int, input_dimension: int, seed: int | np.random.Generator) -> np.ndarray:
    """Draw pre-trained weights :math:`A_0 \\in \\mathbb{R}^{d_y\\times d_x}`, :math:`(A_0)_{ij}\\sim\\mathcal N(0,1)` i.i.d."""
    dy = _positive_int(output_dimension, "output_dimension")
    dx = _positive_int(input_dimension, "input_dimension")
    return _generator(seed).standard_normal((dy, dx))


def gaussian_task_shift(output_dimension: int, input_dimension: int, true_rank: int,
                        seed: int | np.random.Generator) -> np.ndarray:
    """Draw a rank-``k`` task shift with Gaussian factors.

    .. math:: D^\\star = \\frac{U V}{\\sqrt k},\\qquad U\\in\\mathbb{R}^{d_y\\times k},\\
        V\\in\\mathbb{R}^{k\\times d_x},\\ U_{ij}, V_{ij}\\sim\\mathcal N(0,1),

    so every entry of :math:`D^\\star` has variance one and :math:`\\mathbb{E}\\|D^\\star\\|_F^2 = d_x d_y`
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
    dy = _positive_int(output_dimension, "output_dimension")
    dx = _positive_int(input_dimension, "input_dimension")
    k = _positive_int(true_rank, "true_rank")
    if k > min(dx, dy):
        raise ValueError(f"true_rank must be in 1..min(dx, dy) = 1..{min(dx, dy)}, got {k}")
    rng = _generator(seed)
    U = rng.standard_normal((dy, k))
    V = rng.standard_normal((k, dx))
    return U @ V / np.sqrt(k)


def task_shift_spectrum(kind: str, true_rank: int, scale: float = 1.0, decay_rate: float = 0.0) -> np.ndarray:
    """Singular values :math:`s_0, \\dots, s_{k-1}` of a task shift with a controlled spectrum.

    .. math:: \\text{constant: } s_i = c,\\qquad \\text{exponential: } s_i = c\\,e^{-a i},\\qquad
        \\text{power: } s_i = \\frac{c}{(i+1)^a},\\qquad i = 0, \\dots, k-1.

    Parameters
    ----------
    kind
        One of ``"constant"``, ``"exponential"``, ``"power"``.
    true_rank
        :math:`k`, the number of singular values.
    scale
        :math:`c > 0`.
    decay_rate
        :math:`a \\ge 0` (ignored for ``"constant"``).
    """
    if kind not in SPECTRUM_KINDS:
        raise ValueError(f"unknown spectrum kind {kind!r}; valid kinds: {', '.join(SPECTRUM_KINDS)}")
    k = _positive_int(true_rank, "true_rank")
    c = _nonnegative_float(scale, "scale")
    if c == 0:
        raise ValueError("scale must be > 0")
    a = _nonnegative_float(decay_rate, "decay_rate")
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
    """Draw a task shift with prescribed singular values and Haar singular vectors.

    .. math:: D^\\star = U\\,\\mathrm{diag}(s)\\,V^\\top,\\qquad U^\\top U = V^\\top V = I_k,

    with :math:`U \\in \\mathbb{R}^{d_y\\times k}` and :math:`V\\in\\mathbb{R}^{d_x\\times k}`
    uniformly (Haar) distributed, so :math:`\\|D^\\star\\|_F^2 = \\sum_i s_i^2`.

    Parameters
    ----------
    output_dimension, input_dimension
        :math:`d_y` and :math:`d_x`.
    singular_values
        :math:`s`, ``k <= min(dx, dy)`` non-negative numbers (e.g. from :func:`task_shift_spectrum`).
    seed
        Integer seed or numpy Generator.
    """
    dy = _positive_int(output_dimension, "output_dimension")
    dx = _positive_int(input_dimension, "input_dimension")
    s = np.asarray(singular_values, dtype=float)
    if s.ndim != 1 or s.size == 0:
        raise ValueError(f"singular_values must be a non-empty 1-d sequence, got shape {s.shape}")
    if s.size > min(dx, dy):
        raise ValueError(f"at most min(dx, dy) = {min(dx, dy)} singular values, got {s.size}")
    if not np.all(np.isfinite(s)) or np.any(s < 0):
        raise ValueError("singular_values must be finite and non-negative")
    rng = _generator(seed)
    U = _haar_orthonormal(rng, dy, s.size)
    V = _haar_orthonormal(rng, dx, s.size)
    return (U * s) @ V.T


def regression_data(true_weights: np.ndarray, num_samples: int, noise_std: float,
                    seed: int | np.random.Generator, num_seeds: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Draw a training set of the multivariate linear model, samples in rows.

    .. math:: X_{i\\cdot} = x_i^\\top,\\ x_i\\sim\\mathcal N(0, I_{d_x});\\qquad
        Y = X A^{\\star\\top} + E,\\ E_{ij}\\sim\\mathcal N(0, \\sigma^2).

    Parameters
    ----------
    true_weights
        :math:`A^\\star = A_0 + D^\\star`, shape ``(dy, dx)``.
    num_samples
        :math:`n`.
    noise_std
        :math:`\\sigma \\ge 0`.
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
    A_star = _matrix(true_weights, "true_weights")
    if A_star.ndim != 2:
        raise ValueError(f"true_weights must be a (dy, dx) matrix, got shape {A_star.shape}")
    n = _positive_int(num_samples, "num_samples")
    sigma = _nonnegative_float(noise_std, "noise_std")
    batch = () if num_seeds is None else (_positive_int(num_seeds, "num_seeds"),)
    dy, dx = A_star.shape
    rng = _generator(seed)
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
        """:math:`A^\\star = A_0 + D^\\star`."""
        return self.pretrained + self.task_shift


def finetuning_problem(input_dimension: int, output_dimension: int, num_samples: int, true_rank: int,
                       noise_std: float, seed: int | np.random.Generator) -> FinetuningProblem:
    """Draw ``A0`` (:func:`pretrained_weights`), a Gaussian rank-``k`` shift
    (:func:`gaussian_task_shift`) and data (:func:`regression_data`) from one generator."""
    rng = _generator(seed)
    A0 = pretrained_weights(output_dimension, input_dimension, rng)
    D = gaussian_task_shift(output_dimension, input_dimension, true_rank, rng)
    X, Y = regression_data(A0 + D, num_samples, noise_std, rng)
    return FinetuningProblem(X, Y, A0, D)


# ----------------------------------------------------------------------------- losses
def training_loss(X: np.ndarray, Y: np.ndarray, weights: np.ndarray) -> np.ndarray | float:
    """Empirical mean squared error :math:`L(A) = \\frac1n\\|Y - X A^\\top\\|_F^2` (per problem in a stack).

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
    X, Y, A = _check_regression(X, Y, weights)
    residual = Y - X @ np.swapaxes(A, -1, -2)
    loss = np.sum(residual**2, axis=(-2, -1)) / X.shape[-2]
    return float(loss) if loss.ndim == 0 else loss


def excess_risk(estimate: np.ndarray, true_weights: np.ndarray) -> np.ndarray | float:
    """Excess risk for isotropic inputs, :math:`\\mathbb{E}_x\\|(\\hat A - A^\\star)x\\|^2 = \\|\\hat A - A^\\star\\|_F^2`.

    Parameters
    ----------
    estimate
        :math:`\\hat A`, shape ``(..., dy, dx)``.
    true_weights
        :math:`A^\\star`, shape ``(..., dy, dx)`` (broadcast against ``estimate``).

    Returns
    -------
    float or numpy.ndarray
        :math:`\\|\\hat A - A^\\star\\|_F^2` (an array over the batch axes for stacks).
    """
    estimate = _matrix(estimate, "estimate")
    true_weights = _matrix(true_weights, "true_weights")
    if estimate.shape[-2:] != true_weights.shape[-2:]:
        raise ValueError(f"estimate {estimate.shape} and true_weights {true_weights.shape} must both be (dy, dx)")
    risk = np.sum((estimate - true_weights) ** 2, axis=(-2, -1))
    return float(risk) if risk.ndim == 0 else risk


# ----------------------------------------------------------------------------- estimators
def _whitened_residual(X: np.ndarray, Y: np.ndarray, A0: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Thin SVD of ``X`` and the residual in its left singular basis.

    With :math:`X = U_X \\Sigma V_X^\\top` (thin, numerically zero singular values dropped by a
    mask) and the residual :math:`R = Y - X A_0^\\top`, returns ``V_X``, ``1/Sigma`` (0 where
    ``Sigma`` is numerically zero) and :math:`Z = U_X^\\top R` (rows for dropped directions
    zeroed). Then :math:`X^+ R = V_X \\Sigma^{-1} Z` and the whitened least-squares shift is
    :math:`S^{1/2} X^+ R = V_X Z / \\sqrt n`.
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
    """Full fine-tuning: the least-squares solution closest to ``A0``.

    .. math:: \\hat A_{\\rm FFT} = A_0 + \\big(X^+ (Y - X A_0^\\top)\\big)^\\top,

    the minimiser of :math:`L(A) = \\frac1n\\|Y - XA^\\top\\|_F^2` with the smallest
    :math:`\\|A - A_0\\|_F`. For ``n >= dx`` (full column rank) it is the unique least-squares
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
        :math:`\\hat A_{\\rm FFT}`, shape ``(..., dy, dx)``.
    """
    X, Y, A0 = _check_regression(X, Y, A0)
    V_X, inverse, Z = _whitened_residual(X, Y, A0)
    shift_transposed = V_X @ (inverse[..., :, None] * Z)  # X^+ R, shape (..., dx, dy)
    return A0 + np.swapaxes(shift_transposed, -1, -2)


def lora_estimator(X: np.ndarray, Y: np.ndarray, A0: np.ndarray, rank: int) -> np.ndarray:
    """LoRA: the global minimiser of the training loss over :math:`A_0 + BA`, in closed form.

    Reduced-rank regression on the residual :math:`R = Y - XA_0^\\top`: with
    :math:`S = X^\\top X/n` and the least-squares shift :math:`\\hat D = (X^+R)^\\top`,

    .. math:: T = \\hat D\\, S^{1/2},\\qquad
        \\hat A_{\\rm LoRA} = A_0 + [T]_r\\,(S^{1/2})^+,

    where :math:`[T]_r` is the best rank-``r`` approximation of ``T`` (truncated SVD,
    Eckart-Young). It is computed through the thin SVD :math:`X = U_X\\Sigma V_X^\\top`, which
    gives the same matrix without forming :math:`S^{1/2}`:
    :math:`\\hat A_{\\rm LoRA} - A_0 = \\big(V_X\\Sigma^{-1}[U_X^\\top R]_r\\big)^\\top`.

    Which minimiser: when ``n < dx`` (or ``X`` is rank deficient) the minimisers differ by
    components outside the row space of ``X``, which the loss does not see. The one returned
    has its rows in the row space of ``X``; it is the minimiser with the smallest
    :math:`\\|A - A_0\\|_F`. (When the ``r``-th and ``(r+1)``-th singular values of ``T`` tie,
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
        :math:`\\hat A_{\\rm LoRA}`, shape ``(..., dy, dx)``.
    """
    X, Y, A0 = _check_regression(X, Y, A0)
    r = _check_rank(rank, X.shape[-1], Y.shape[-1])
    (shift,) = _lora_shifts(*_whitened_residual(X, Y, A0), [r])
    return A0 + shift


def _lora_shifts(V_X: np.ndarray, inverse: np.ndarray, Z: np.ndarray, ranks: Sequence[int]) -> list[np.ndarray]:
    """LoRA shifts :math:`(V_X\\Sigma^{-1}[Z]_r)^\\top` for several ranks from one SVD of ``Z``."""
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
    """Full-batch gradient descent on all weights, :math:`A \\leftarrow A + \\frac{2\\eta}{n}(Y - XA^\\top)^\\top X`.

    The gradient of :math:`L(A) = \\frac1n\\|Y - XA^\\top\\|_F^2` has its rows in the row space of
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
        :math:`\\eta`; default :math:`0.5/\\lambda_{\\max}(S)` (stable below :math:`1/\\lambda_{\\max}(S)`).

    Returns
    -------
    weights, losses
        Final weights ``(dy, dx)`` and the training loss before each step and at the end (``steps + 1``).
    """
    X, Y, A = _check_regression(X, Y, initial_weights)
    if X.ndim != 2 or A.ndim != 2:
        raise ValueError("fft_gradient_descent takes a single problem (2-d X, Y, initial_weights)")
    steps = _positive_int(steps, "steps", minimum=0)
    n = X.shape[0]
    eta = 0.5 / _largest_covariance_eigenvalue(X) if learning_rate is None else _nonnegative_float(learning_rate, "learning_rate")
    losses = np.empty(steps + 1)
    for t in range(steps + 1):
        residual = Y - X @ A.T
        losses[t] = np.sum(residual**2) / n
        if t < steps:
            A = A + (2 * eta / n) * residual.T @ X
    if not np.all(np.isfinite(A)):
        raise FloatingPointError("gradient descent diverged; lower the learning rate")
    return A, losses


def lora_gradient_descent(X: np.ndarray, Y: np.ndarray, A0: np.ndarray, rank: int, steps: int,
                          seed: int | np.random.Generator, learning_rate: float | None = None,
                          initial_scale: float = 1e-2) -> tuple[np.ndarray, np.ndarray]:
    """Full-batch gradient descent on the LoRA factors from the LoRA initialisation.

    Minimises :math:`L(B, A) = \\frac1n\\|R - X A^\\top B^\\top\\|_F^2` with
    :math:`R = Y - XA_0^\\top`, :math:`B \\in\\mathbb{R}^{d_y\\times r}`,
    :math:`A\\in\\mathbb{R}^{r\\times d_x}`, started at :math:`B = 0` and
    :math:`A_{ij}\\sim\\mathcal N(0, \\text{initial\\_scale}^2/d_x)`:

    .. math:: G = \\tfrac2n (R - XA^\\top B^\\top)^\\top X,\\qquad
        B \\leftarrow B + \\eta\\, G A^\\top,\\qquad A \\leftarrow A + \\eta\\, B^\\top G.

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
        :math:`\\eta`; default :math:`0.2 / (\\lambda_{\\max}(S)\\,\\max(1, \\|\\hat D_{\\rm FFT}\\|_2))`, below the
        stability limit near a balanced solution (where :math:`\\|B\\|_2^2 \\approx \\|A\\|_2^2 \\approx \\|BA\\|_2`).
    initial_scale
        Scale of the initial ``A`` (small: LoRA's start is close to ``A0``).

    Returns
    -------
    weights, losses
        :math:`A_0 + BA` at the end, shape ``(dy, dx)``, and the training loss before each step
        and at the end (``steps + 1`` values).
    """
    X, Y, A0 = _check_regression(X, Y, A0)
    if X.ndim != 2 or A0.ndim != 2:
        raise ValueError("lora_gradient_descent takes a single problem (2-d X, Y, A0)")
    n, dx = X.shape
    dy = Y.shape[1]
    r = _check_rank(rank, dx, dy)
    steps = _positive_int(steps, "steps", minimum=0)
    scale = _nonnegative_float(initial_scale, "initial_scale")
    if learning_rate is None:
        shift_norm = np.linalg.norm(fft_estimator(X, Y, A0) - A0, ord=2)
        eta = 0.2 / (_largest_covariance_eigenvalue(X) * max(1.0, shift_norm))
    else:
        eta = _nonnegative_float(learning_rate, "learning_rate")
    rng = _generator(seed)
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


def lora_alternating_least_squares(X: np.ndarray, Y: np.ndarray, A0: np.ndarray, rank: int, iterations: int,
                                   seed: int | np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Alternating least squares on the LoRA factors.

    From a Gaussian ``A`` (``r x dx``), alternately minimise
    :math:`\\|R - XA^\\top B^\\top\\|_F^2` exactly over one factor (minimum-norm solutions):

    .. math:: B^\\top \\leftarrow (XA^\\top)^+ R,\\qquad A^\\top \\leftarrow X^+ R\\,(B^\\top)^+.

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
    X, Y, A0 = _check_regression(X, Y, A0)
    if X.ndim != 2 or A0.ndim != 2:
        raise ValueError("lora_alternating_least_squares takes a single problem (2-d X, Y, A0)")
    n, dx = X.shape
    r = _check_rank(rank, dx, Y.shape[1])
    iterations = _positive_int(iterations, "iterations")
    rng = _generator(seed)
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
    """:math:`\\mathbb{E}[1/q]` for :math:`q\\sim\\chi^2_m`, by integrating the density with sympy.

    .. math:: \\mathbb{E}\\Big[\\frac1q\\Big] = \\int_0^\\infty \\frac1q\\,
        \\frac{q^{m/2-1}e^{-q/2}}{2^{m/2}\\Gamma(m/2)}\\,dq = \\frac{1}{m-2}\\qquad (m > 2).

    The integral is done for :math:`m = \\nu + 2` with a positive symbol :math:`\\nu` (where it
    converges), then ``m`` is substituted back.
    """
    q = sp.Symbol("q", positive=True)
    nu = sp.Symbol("nu", positive=True)
    m = nu + 2
    density = q ** (m / 2 - 1) * sp.exp(-q / 2) / (2 ** (m / 2) * sp.gamma(m / 2))
    mean = sp.simplify(sp.gammasimp(sp.integrate(density / q, (q, 0, sp.oo))))
    return sp.simplify(mean.subs(nu, sp.sympify(degrees_of_freedom) - 2))


def fft_excess_risk_symbols() -> dict[str, sp.Symbol]:
    """The sympy symbols of :func:`fft_excess_risk_expressions`: ``d_x, d_y, n, sigma, Delta``
    (:math:`\\Delta = \\|D^\\star\\|_F^2`, the shift energy)."""
    return {
        "input_dimension": sp.Symbol("d_x", positive=True),
        "output_dimension": sp.Symbol("d_y", positive=True),
        "num_samples": sp.Symbol("n", positive=True),
        "noise_std": sp.Symbol("sigma", nonnegative=True),
        "shift_energy": sp.Symbol("Delta", nonnegative=True),
    }


@lru_cache(maxsize=None)
def fft_excess_risk_expressions() -> dict[str, sp.Expr]:
    """Expected excess risk of FFT as sympy expressions, in both regimes.

    With :math:`X = U_X\\Sigma V_X^\\top` and noise :math:`E`, :math:`\\hat D - D^\\star = -D^\\star(I - P)
    + E^\\top (X^+)^\\top` where :math:`P = X^+X` projects on the row space of ``X``. Averaging
    over ``E`` then ``X``:

    * overdetermined (:math:`n \\ge d_x + 2`): :math:`P = I` and
      :math:`\\mathbb{E}\\|E^\\top (X^+)^\\top\\|_F^2 = \\sigma^2 d_y\\,\\mathbb{E}\\,\\mathrm{tr}(X^\\top X)^{-1}`;
      each diagonal entry of the inverse Wishart matrix is :math:`1/\\chi^2_{n-d_x+1}`, hence
      :math:`\\sigma^2 d_x d_y / (n - d_x - 1)`;
    * underdetermined (:math:`n \\le d_x - 2`): :math:`\\mathbb{E}P = (n/d_x) I` (rotation
      invariance, :math:`\\mathrm{tr}P = n`) and the noise term is
      :math:`\\sigma^2 d_y\\,\\mathbb{E}\\,\\mathrm{tr}(XX^\\top)^{-1}` with diagonal entries
      :math:`1/\\chi^2_{d_x-n+1}`, hence
      :math:`(1 - n/d_x)\\Delta + \\sigma^2 d_y n / (d_x - n - 1)`.

    Returns
    -------
    dict
        ``{"overdetermined": expr, "underdetermined": expr}`` in the symbols of
        :func:`fft_excess_risk_symbols`.
    """
    s = fft_excess_risk_symbols()
    dx, dy, n, sigma, delta = (s[key] for key in ("input_dimension", "output_dimension", "num_samples",
                                                  "noise_std", "shift_energy"))
    overdetermined = sigma**2 * dy * dx * inverse_chi_square_mean_sympy(n - dx + 1)
    underdetermined = (1 - n / dx) * delta + sigma**2 * dy * n * inverse_chi_square_mean_sympy(dx - n + 1)
    return {"overdetermined": sp.simplify(overdetermined), "underdetermined": sp.collect(sp.expand(underdetermined), delta)}


@lru_cache(maxsize=None)
def _fft_excess_risk_functions() -> dict[str, Callable[..., float]]:
    s = fft_excess_risk_symbols()
    arguments = [s[key] for key in ("input_dimension", "output_dimension", "num_samples", "noise_std", "shift_energy")]
    return {regime: sp.lambdify(arguments, expr, "math") for regime, expr in fft_excess_risk_expressions().items()}


def fft_excess_risk(input_dimension: int, output_dimension: int, num_samples: int, noise_std: float,
                    shift_energy: float) -> float:
    """Expected excess risk of full fine-tuning, :math:`\\mathbb{E}\\|\\hat A_{\\rm FFT} - A^\\star\\|_F^2`.

    For isotropic Gaussian inputs and a fixed task shift with energy :math:`\\Delta = \\|D^\\star\\|_F^2`:

    .. math:: \\mathbb{E}\\|\\hat A_{\\rm FFT} - A^\\star\\|_F^2 =
        \\begin{cases}
        \\dfrac{\\sigma^2 d_x d_y}{n - d_x - 1}, & n \\ge d_x + 2 \\text{ (overdetermined)},\\\\[2ex]
        \\Big(1 - \\dfrac{n}{d_x}\\Big)\\Delta + \\dfrac{\\sigma^2 d_y n}{d_x - n - 1}, & n \\le d_x - 2
        \\text{ (underdetermined)}.
        \\end{cases}

    The expectation is infinite for :math:`d_x - 1 \\le n \\le d_x + 1` when :math:`\\sigma > 0`
    (the interpolation peak of double descent). When :math:`\\sigma = 0` there is no noise term
    and the risk is :math:`\\max(0, 1 - n/d_x)\\,\\Delta` for every ``n``. Evaluates the sympy
    expressions of :func:`fft_excess_risk_expressions`. ``shift_energy`` does not enter the
    overdetermined case (FFT is unbiased there) but is validated in all cases.

    Parameters
    ----------
    input_dimension, output_dimension
        :math:`d_x, d_y`.
    num_samples
        :math:`n`.
    noise_std
        :math:`\\sigma \\ge 0`.
    shift_energy
        :math:`\\Delta = \\|D^\\star\\|_F^2 \\ge 0` (for a random shift independent of the data, its mean).

    Raises
    ------
    ValueError
        If :math:`d_x - 1 \\le n \\le d_x + 1` and :math:`\\sigma > 0` (infinite expectation), or an
        argument is out of range.
    """
    dx = _positive_int(input_dimension, "input_dimension")
    dy = _positive_int(output_dimension, "output_dimension")
    n = _positive_int(num_samples, "num_samples")
    sigma = _nonnegative_float(noise_std, "noise_std")
    delta = _nonnegative_float(shift_energy, "shift_energy")
    if sigma == 0.0:
        return max(0.0, 1.0 - n / dx) * delta
    functions = _fft_excess_risk_functions()
    if n >= dx + 2:
        return float(functions["overdetermined"](dx, dy, n, sigma, delta))
    if n <= dx - 2:
        return float(functions["underdetermined"](dx, dy, n, sigma, delta))
    raise ValueError(f"the expected FFT excess risk is infinite for dx - 1 <= n <= dx + 1 with noise "
                     f"(here dx = {dx}, n = {n}); use n <= {dx - 2} or n >= {dx + 2}")


# ----------------------------------------------------------------------------- Monte Carlo
def excess_risk_monte_carlo(pretrained: np.ndarray, task_shift: np.ndarray, num_samples: int, noise_std: float,
                            ranks: Sequence[int], num_seeds: int, seed: int | np.random.Generator,
                            chunk_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Excess risks of FFT and LoRA over independent data sets, for a fixed ``A0`` and ``D*``.

    Draws ``num_seeds`` training sets (:func:`regression_data`) in chunks with a leading seed
    axis and evaluates :func:`fft_estimator` and :func:`lora_estimator` on the whole stack.

    Parameters
    ----------
    pretrained, task_shift
        :math:`A_0` and :math:`D^\\star`, shape ``(dy, dx)``.
    num_samples
        :math:`n`.
    noise_std
        :math:`\\sigma`.
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
        :math:`\\|\\hat A - A^\\star\\|_F^2`.
    """
    A0 = _matrix(pretrained, "pretrained")
    D = _matrix(task_shift, "task_shift")
    if A0.ndim != 2 or A0.shape != D.shape:
        raise ValueError(f"pretrained and task_shift must both be (dy, dx) matrices, got {A0.shape} and {D.shape}")
    dy, dx = A0.shape
    ranks = [_check_rank(r, dx, dy) for r in ranks]
    num_seeds = _positive_int(num_seeds, "num_seeds")
    chunk_size = _positive_int(chunk_size, "chunk_size")
    rng = _generator(seed)
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
