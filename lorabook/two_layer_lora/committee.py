r"""Rank-r LoRA on a pre-trained two-layer committee: the model, its overlaps and its population risk.

Model (Chapter 8). Inputs :math:`x \sim \mathcal N(0, I_d)` (:math:`d` is the parameter
``dimension``); a committee teacher with :math:`K` (the parameter ``n_neurons``) orthonormal rows
:math:`T \in \mathbb R^{K\times d}` (:math:`TT^\top = I_K`, the parameter ``teacher_weights`` where
one is passed) and a fixed readout,

.. math:: y = g\sum_{j=1}^K s(t_j\cdot x), \qquad g = \begin{cases} 1/\sqrt K & \text{zero-mean } s
    \text{ (erf, linear)}\\ 1/K & \text{otherwise (ReLU)}\end{cases}

(:func:`readout_scale`, the authors' convention); a pre-trained student :math:`W_0 = DT` with
:math:`D = \operatorname{diag}(\mu, \mu, 1, \dots, 1)` (:func:`pretrained_coefficients`: the first
``n_weakened`` teacher directions are weakened to the pre-training strength :math:`\mu`, the
parameter ``pretraining_strength``), fine-tuned by rank-:math:`r` LoRA,

.. math:: W = W_0 + UV, \qquad U \in \mathbb R^{K\times r}, \quad V \in \mathbb R^{r\times d},

with the student :math:`\hat y = g\sum_k s(w_k\cdot x)` and the LoRA rank :math:`r` the parameter
``rank``. The update the student needs, :math:`T - DT = (I - D)T`, has rank ``n_weakened``: rank
:math:`r <` ``n_weakened`` cannot reach the teacher.

Summary statistics. The LoRA statistics are :math:`U`, :math:`M = VT^\top` (:math:`r\times K`) and
:math:`Q_V = VV^\top` (:math:`r\times r`); the committee overlaps are :math:`R = WT^\top` and
:math:`Q = WW^\top`. With :math:`TT^\top = I` (derived with sympy in :func:`lora_overlaps_sympy`,
evaluated by :func:`lora_overlaps`),

.. math:: R = D + UM, \qquad Q = D^2 + DM^\top U^\top + UMD + UQ_VU^\top.

Population risk. The preactivations :math:`(\lambda, \lambda^*) = (Wx, Tx)` are jointly Gaussian
with covariance :math:`\begin{pmatrix} Q & R\\ R^\top & T_{\rm ov}\end{pmatrix}`, so
(:func:`committee_risk`)

.. math:: \varepsilon = \frac{g^2}{2}\Big[\sum_{k,l} I_2(Q_{kk}, Q_{kl}, Q_{ll})
    - 2\sum_{k,j} I_2(Q_{kk}, R_{kj}, T_{jj}) + \sum_{j,m} I_2(T_{jj}, T_{jm}, T_{mm})\Big],

with :math:`I_2` the two-point integral of :mod:`lorabook.toolkit.committee_integrals`.

SGD noise. :func:`committee_gradient_covariance` gives :math:`G_{kl} = \mathbb E[h_kh_l]`,
:math:`h_k = g(\hat y - y)s'(\lambda_k)`, the matrix that multiplies :math:`\eta d/B` in the overlap
ODE: a signed sum of four-point integrals, in closed form for erf and linear, by a fixed 99-node
quadrature for ReLU that is accurate and continuous at the singular pre-trained start.

The rank plateau. :func:`best_rank_r_risk` minimises the population risk over all rank-:math:`r`
updates :math:`UV` (method in its docstring). For the linear activation the committee output
depends on :math:`W` only through :math:`\mathbf 1^\top W`, so the risk is
:math:`\tfrac{g^2}{2}\lVert\mathbf 1^\top(W - T)\rVert^2` and the Eckart-Young truncation of the
needed update :math:`\mathbf 1^\top(I - D)T` (a rank-one row) at any rank :math:`r \ge 1` is exact:
the linear committee has no rank plateau; the non-linear ones do.
"""

from __future__ import annotations

import itertools
from functools import cache
from typing import NamedTuple

import numpy as np
import sympy as sp

from lorabook.toolkit.committee_integrals import (
    check_committee_activation,
    check_covariance,
    four_point,
    three_point,
    two_point,
)
from lorabook.toolkit.validation import check_memory, generator, integer, real, real_array

__all__ = [
    "RELU_NOISE_TOLERANCE",
    "LoRAOverlapsSympy",
    "best_rank_r_risk",
    "check_lora_shapes",
    "check_overlaps",
    "check_rank",
    "check_teacher",
    "committee_gradient_covariance",
    "committee_risk",
    "committee_risk_gradient",
    "lora_overlaps",
    "lora_overlaps_sympy",
    "orthonormal_teacher",
    "pretrained_coefficients",
    "readout_scale",
]

ZERO_MEAN = ("erf", "linear")
"""Activations with :math:`\\mathbb E[s(z)] = 0` for centred Gaussian :math:`z`: readout :math:`1/\\sqrt K`."""


def readout_scale(activation: str, n_neurons: int) -> float:
    r"""The readout :math:`g` of the committee: :math:`1/\sqrt K` for zero-mean activations, :math:`1/K` otherwise.

    .. math:: g = K^{-1/2}\ (\text{erf, linear}), \qquad g = K^{-1}\ (\text{ReLU}).

    Parameters
    ----------
    activation
        ``"erf"``, ``"relu"`` or ``"linear"``.
    n_neurons
        The number :math:`K` of hidden units.

    Raises
    ------
    TypeError, ValueError
        For an activation other than erf, ReLU or linear, or ``n_neurons < 1``.
    """
    name = check_committee_activation(activation)
    K = integer(n_neurons, "n_neurons")
    return 1.0 / np.sqrt(K) if name in ZERO_MEAN else 1.0 / K


def orthonormal_teacher(n_neurons: int, dimension: int, seed: int | np.random.Generator) -> np.ndarray:
    r"""A uniformly random teacher with :math:`K` orthonormal rows in :math:`\mathbb R^d`.

    .. math:: T = (Q_{\cdot, 1:K})^\top, \qquad G = QR_{\rm qr},\ G \in \mathbb R^{d\times K} \text{ standard normal},

    with the signs of the QR factor fixed so that :math:`T` is Haar distributed; :math:`TT^\top = I_K`.

    Parameters
    ----------
    n_neurons
        The number :math:`K` of teacher rows (hidden units).
    dimension
        The input dimension :math:`d \ge K`.
    seed
        Seed or generator of the draw.

    Raises
    ------
    TypeError, ValueError
        For ``n_neurons < 1``, ``dimension < n_neurons``, a size beyond memory or an invalid seed.
    """
    K = integer(n_neurons, "n_neurons")
    d = integer(dimension, "dimension")
    if d < K:
        raise ValueError(f"dimension must be >= n_neurons = {K} (n_neurons orthonormal rows in R^dimension), "
                         f"got dimension = {d}")
    check_memory(2 * K * d, "dimension", "the teacher rows")
    rng = generator(seed, "seed")
    q, r = np.linalg.qr(rng.standard_normal((d, K)))
    return (q * np.sign(np.diagonal(r))).T.copy()


def pretrained_coefficients(n_neurons: int, pretraining_strength: float, n_weakened: int = 2) -> np.ndarray:
    r"""The coefficients :math:`D` of the pre-trained student :math:`W_0 = DT`.

    .. math:: D = \operatorname{diag}(\underbrace{\mu, \dots, \mu}_{n_{\rm weak}}, 1, \dots, 1)
        \in \mathbb R^{K\times K}.

    Parameters
    ----------
    n_neurons
        The number :math:`K` of hidden units.
    pretraining_strength
        The pre-training strength :math:`\mu \in [0, 1]` of the weakened directions.
    n_weakened
        How many leading teacher directions are weakened (:math:`n_{\rm weak}`),
        ``0 <= n_weakened <= n_neurons``.

    Raises
    ------
    TypeError, ValueError
        For ``n_neurons < 1``, ``pretraining_strength`` outside ``[0, 1]`` or ``n_weakened`` outside
        ``0..n_neurons``.
    """
    K = integer(n_neurons, "n_neurons")
    mu = real(pretraining_strength, "pretraining_strength", minimum=0.0, maximum=1.0)
    n_weakened = integer(n_weakened, "n_weakened", minimum=0, maximum=K)
    check_memory(K * K, "n_neurons", "the matrix D")
    diagonal = np.ones(K)
    diagonal[:n_weakened] = mu
    return np.diag(diagonal)


class LoRAOverlapsSympy(NamedTuple):
    r"""The committee overlaps in the LoRA statistics, derived by :func:`lora_overlaps_sympy`."""

    R_block: sp.MatrixExpr
    r""":math:`R = D + UM` in matrix symbols."""
    Q_block: sp.MatrixExpr
    r""":math:`Q = D^2 + DM^\top U^\top + UMD + UQ_VU^\top` in matrix symbols."""
    R: sp.Matrix
    """The same with explicit entries (``delta_k``, ``u_kp``, ``m_pk``, ``q_pq``)."""
    Q: sp.Matrix
    """The same with explicit entries."""
    D: sp.Matrix
    r"""Explicit :math:`D = \operatorname{diag}(\delta_1, \dots, \delta_K)`."""
    U: sp.Matrix
    """Explicit :math:`U` (``u_kp``)."""
    M: sp.Matrix
    """Explicit :math:`M` (``m_pk``)."""
    Q_V: sp.Matrix
    """Explicit symmetric :math:`Q_V` (``q_pq``)."""


def _contract(term: sp.MatrixExpr, rules: dict[tuple[sp.Basic, sp.Basic], sp.MatrixExpr]) -> sp.MatrixExpr:
    """Replace adjacent factor pairs of a matrix product by the summary statistics they stand for."""
    coefficient, factors = (term.as_coeff_matrices() if isinstance(term, sp.MatMul) else (sp.Integer(1), [term]))
    factors = list(factors)
    changed = True
    while changed:
        changed = False
        for position in range(len(factors) - 1):
            pair = (factors[position], factors[position + 1])
            if pair in rules:
                factors[position: position + 2] = [rules[pair]]
                changed = True
                break
    factors = [factor for factor in factors if not isinstance(factor, sp.Identity)] or [factors[0]]
    return coefficient * sp.MatMul(*factors).doit() if len(factors) > 1 else coefficient * factors[0]


def lora_overlaps_sympy(n_neurons: int, rank: int) -> LoRAOverlapsSympy:
    r"""Derive :math:`R = WT^\top` and :math:`Q = WW^\top` of :math:`W = DT + UV` in the LoRA statistics.

    The products are expanded in matrix symbols, then every adjacent pair that is a summary
    statistic is contracted: :math:`TT^\top = I` (orthonormal teacher), :math:`VT^\top = M`,
    :math:`TV^\top = M^\top`, :math:`VV^\top = Q_V`, and :math:`D^\top = D` (diagonal):

    .. math:: R = D + UM, \qquad Q = D^2 + DM^\top U^\top + UMD + UQ_VU^\top.

    The block results are then evaluated with explicit symbolic entries.

    Parameters
    ----------
    n_neurons
        The number :math:`K` of hidden units.
    rank
        The LoRA rank :math:`r`, ``1 <= rank <= n_neurons``.

    Raises
    ------
    TypeError, ValueError
        For ``n_neurons < 1``, ``rank`` outside ``1..n_neurons``, or more symbolic entries than
        memory holds.
    """
    K, r = check_rank(n_neurons, rank)
    check_memory(64 * K * (K + 2 * r) + 64 * r * r, "n_neurons", "the symbolic entries of the overlaps")
    d = sp.Symbol("d", integer=True, positive=True)
    D, U = sp.MatrixSymbol("D", K, K), sp.MatrixSymbol("U", K, r)
    V, T = sp.MatrixSymbol("V", r, d), sp.MatrixSymbol("T", K, d)
    M, Q_V = sp.MatrixSymbol("M", r, K), sp.MatrixSymbol("Q_V", r, r)
    rules = {(T, T.T): sp.Identity(K), (V, T.T): M, (T, V.T): M.T, (V, V.T): Q_V}
    W = D * T + U * V

    def derive(product: sp.MatrixExpr) -> sp.MatrixExpr:
        expanded = sp.expand(product).subs(D.T, D)
        terms = expanded.args if isinstance(expanded, sp.MatAdd) else (expanded,)
        result = sp.MatAdd(*(_contract(term, rules) for term in terms)).doit()
        if result.has(T) or result.has(V):
            raise AssertionError(f"the overlaps did not reduce to the LoRA statistics: {result}")
        return result

    R_block, Q_block = derive(W * T.T), derive(W * W.T)
    delta = sp.Matrix.diag(*sp.symbols(f"delta_1:{K + 1}", real=True))
    u = sp.Matrix(K, r, lambda k, p: sp.Symbol(f"u_{k + 1}{p + 1}", real=True))
    m = sp.Matrix(r, K, lambda p, k: sp.Symbol(f"m_{p + 1}{k + 1}", real=True))
    q = sp.Matrix(r, r, lambda p, s: sp.Symbol(f"q_{min(p, s) + 1}{max(p, s) + 1}", real=True))
    values = {D: delta, U: u, M: m, Q_V: q}

    def explicit(block: sp.MatrixExpr) -> sp.Matrix:
        return sp.expand(block.subs(values).doit().as_explicit())

    return LoRAOverlapsSympy(R_block, Q_block, explicit(R_block), explicit(Q_block), delta, u, m, q)


def check_rank(n_neurons: object, rank: object) -> tuple[int, int]:
    r"""Validate a number of neurons :math:`K \ge 1` and a LoRA rank :math:`1 \le r \le K`; return them as ints.

    Parameters
    ----------
    n_neurons
        The number :math:`K` of hidden units.
    rank
        The LoRA rank :math:`r`.

    Raises
    ------
    TypeError, ValueError
        For non-integers, ``n_neurons < 1``, ``rank < 1`` or ``rank > n_neurons`` (the message names
        the parameter).
    """
    K = integer(n_neurons, "n_neurons")
    r = integer(rank, "rank", minimum=1)
    if r > K:
        raise ValueError(f"rank must be an integer in 1..n_neurons = {K} (the LoRA rank of an n_neurons x "
                         f"dimension update), got {r}")
    return K, r


def check_teacher(teacher_weights: object, n_neurons: int, dimension: int, *, name: str = "teacher_weights"
                  ) -> np.ndarray:
    r"""Validate teacher weights :math:`T` with :math:`K` orthonormal rows in :math:`\mathbb R^d`; return them.

    .. math:: T \in \mathbb R^{K\times d}, \qquad \max_{jm}|(TT^\top - I)_{jm}| \le 10^{-8}.

    Parameters
    ----------
    teacher_weights
        The teacher's weight matrix :math:`T` (its activation is the student's).
    n_neurons
        The number :math:`K` of rows (hidden units).
    dimension
        The input dimension :math:`d`.
    name
        The caller's parameter name, for the messages.

    Raises
    ------
    TypeError, ValueError
        For the wrong shape, non-finite entries or rows that are not orthonormal.
    """
    K = integer(n_neurons, "n_neurons")
    d = integer(dimension, "dimension")
    teacher_weights = real_array(teacher_weights, name, ndim=2)
    if teacher_weights.shape != (K, d):
        raise ValueError(f"{name} must have shape (n_neurons, dimension) = ({K}, {d}), got shape "
                         f"{teacher_weights.shape}")
    deviation = float(np.max(np.abs(teacher_weights @ teacher_weights.T - np.eye(K))))
    if deviation > 1e-8:
        raise ValueError(f"{name} must have orthonormal rows (T T^T = I), but T T^T - I has an entry of size "
                         f"{deviation:.3g}")
    return teacher_weights


def check_lora_shapes(U: object, M: object, Q_V: object, D: object) -> tuple[np.ndarray, ...]:
    r"""Validate LoRA statistics :math:`U` (..., K, r), :math:`M` (..., r, K), :math:`Q_V` (..., r, r) and :math:`D`.

    .. math:: U \in \mathbb R^{K\times r},\quad M = VT^\top \in \mathbb R^{r\times K},\quad
        Q_V = VV^\top \succeq 0,\quad D \in \mathbb R^{K\times K}.

    Returns
    -------
    tuple of numpy.ndarray
        ``U, M, Q_V, D`` as float arrays.

    Raises
    ------
    TypeError, ValueError
        For non-numeric or non-finite entries, inconsistent shapes (the message names the
        parameter), or an indefinite ``Q_V``.
    """
    U = real_array(U, "U")
    if U.ndim < 2 or U.shape[-1] > U.shape[-2]:
        raise ValueError(f"U must have shape (..., K, r) with 1 <= r <= K (K neurons, LoRA rank r), got shape "
                         f"{U.shape}")
    K, r = U.shape[-2:]
    M = real_array(M, "M")
    if M.ndim < 2 or M.shape[-2:] != (r, K):
        raise ValueError(f"M must have shape (..., r, K) = (..., {r}, {K}) to match U, got shape {M.shape}")
    Q_V = check_covariance(Q_V, r, name="Q_V")
    D = real_array(D, "D")
    if D.shape != (K, K):
        raise ValueError(f"D must have shape (K, K) = ({K}, {K}) to match U, got shape {D.shape}")
    return U, M, Q_V, D


def lora_overlaps(U: np.ndarray, M: np.ndarray, Q_V: np.ndarray, D: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    r"""The committee overlaps :math:`(R, Q)` of LoRA statistics, vectorised over leading axes.

    .. math:: R = D + UM, \qquad Q = D^2 + DM^\top U^\top + UMD + UQ_VU^\top

    (the expressions of :func:`lora_overlaps_sympy`, for an orthonormal teacher and :math:`W_0 = DT`).

    Returns
    -------
    R, Q : numpy.ndarray
        Shapes ``(..., K, K)``.

    Raises
    ------
    TypeError, ValueError
        As :func:`check_lora_shapes`.
    """
    U, M, Q_V, D = check_lora_shapes(U, M, Q_V, D)
    um = U @ M
    R = D + um
    cross = um @ D.T
    Q = D @ D.T + cross + np.swapaxes(cross, -1, -2) + U @ Q_V @ np.swapaxes(U, -1, -2)
    return R, Q


def check_overlaps(Q: object, R: object, T_overlap: object) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r"""Validate committee overlaps :math:`Q` (..., K, K), :math:`R` (..., K, M), :math:`T_{\rm ov}` (..., M, M).

    Returns them broadcast to common leading axes.

    Raises
    ------
    TypeError, ValueError
        For non-numeric or non-finite entries, inconsistent shapes, or a joint matrix
        :math:`\begin{pmatrix} Q & R\\ R^\top & T_{\rm ov}\end{pmatrix}` that is not positive semi-definite.
    """
    return _check_overlaps(Q, R, T_overlap)


def _check_overlaps(Q: object, R: object, T_overlap: object) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    Q = real_array(Q, "Q")
    if Q.ndim < 2 or Q.shape[-1] != Q.shape[-2]:
        raise ValueError(f"Q must have shape (..., K, K), got shape {Q.shape}")
    K = Q.shape[-1]
    Q = check_covariance(Q, K, name="Q")
    R = real_array(R, "R")
    if R.ndim < 2 or R.shape[-2] != K:
        raise ValueError(f"R must have shape (..., K, M) with K = {K} as in Q, got shape {R.shape}")
    n_teacher = R.shape[-1]
    T_overlap = check_covariance(T_overlap, n_teacher, name="T_overlap")
    try:
        batch = np.broadcast_shapes(Q.shape[:-2], R.shape[:-2], T_overlap.shape[:-2])
    except ValueError:
        raise ValueError(f"the leading axes of Q {Q.shape}, R {R.shape} and T_overlap {T_overlap.shape} must "
                         "broadcast together") from None
    Q = np.broadcast_to(Q, (*batch, K, K))
    R = np.broadcast_to(R, (*batch, K, n_teacher))
    T_overlap = np.broadcast_to(T_overlap, (*batch, n_teacher, n_teacher))
    joint = np.concatenate([np.concatenate([Q, R], axis=-1),
                            np.concatenate([np.swapaxes(R, -1, -2), T_overlap], axis=-1)], axis=-2)
    check_covariance(joint, K + n_teacher, name="R (the joint overlap matrix [[Q, R], [R^T, T_overlap]])")
    return Q, R, T_overlap


def _pair_covariances(first: np.ndarray, cross: np.ndarray, second: np.ndarray) -> np.ndarray:
    """2x2 covariances [[first_kk, cross_kj], [cross_kj, second_jj]] of shape (..., K, M, 2, 2)."""
    a = np.diagonal(first, axis1=-2, axis2=-1)[..., :, None]
    b = np.diagonal(second, axis1=-2, axis2=-1)[..., None, :]
    a, cross, b = np.broadcast_arrays(a, cross, b)
    return np.stack([np.stack([a, cross], axis=-1), np.stack([cross, b], axis=-1)], axis=-2)


def committee_risk(activation: str, Q: object, R: object, T_overlap: object, readout: float) -> np.ndarray:
    r"""Population risk of a committee student against a committee teacher, from the overlaps.

    .. math:: \varepsilon = \mathbb E\Big[\tfrac12\Big(g\sum_k s(\lambda_k) - g\sum_j s(\lambda^*_j)\Big)^2\Big]
        = \frac{g^2}{2}\Big[\sum_{k,l} I_2^{kl}(Q) - 2\sum_{k,j} I_2^{kj}(Q, R, T_{\rm ov})
        + \sum_{j,m} I_2^{jm}(T_{\rm ov})\Big].

    Parameters
    ----------
    activation
        ``"erf"``, ``"relu"`` or ``"linear"`` (student and teacher).
    Q, R, T_overlap
        :math:`WW^\top` (..., K, K), :math:`WT^\top` (..., K, M), :math:`TT^\top` (..., M, M); leading
        axes broadcast. Together they must form a positive semi-definite Gram matrix.
    readout
        :math:`g > 0` (see :func:`readout_scale`).

    Returns
    -------
    numpy.ndarray
        Shape: the broadcast leading axes.
    """
    name = check_committee_activation(activation)
    readout = real(readout, "readout", minimum=0.0, strict_minimum=True)
    Q, R, T_overlap = _check_overlaps(Q, R, T_overlap)
    total = (two_point(name, _pair_covariances(Q, Q, Q)).sum(axis=(-1, -2))
             - 2.0 * two_point(name, _pair_covariances(Q, R, T_overlap)).sum(axis=(-1, -2))
             + two_point(name, _pair_covariances(T_overlap, T_overlap, T_overlap)).sum(axis=(-1, -2)))
    return 0.5 * readout**2 * total


def committee_risk_gradient(activation: str, W: object, T: object, readout: float) -> np.ndarray:
    r"""Gradient of the population risk with respect to the student weights, from the three-point integrals.

    .. math:: \frac{\partial\varepsilon}{\partial w_k} = g^2\,\mathbb E\Big[s'(\lambda_k)\,x\Big(\sum_l s(\lambda_l)
        - \sum_j s(\lambda^*_j)\Big)\Big], \qquad
        \Big(\frac{\partial\varepsilon}{\partial W}\Big)_{ki} = g^2\Big[\sum_l I_3(\lambda_k, x_i, \lambda_l)
        - \sum_j I_3(\lambda_k, x_i, \lambda^*_j)\Big],

    with :math:`x_i = e_i\cdot x`, :math:`\operatorname{Cov}(\lambda_k, x_i) = W_{ki}`,
    :math:`\operatorname{Cov}(x_i, \lambda^*_j) = T_{ji}`.

    Parameters
    ----------
    activation
        ``"erf"``, ``"relu"`` or ``"linear"``.
    W, T
        Student (K, n) and teacher (M, n) weights in the same coordinates (``n`` small: the
        span of both suffices).
    readout
        :math:`g > 0`.

    Returns
    -------
    numpy.ndarray
        Shape ``(K, n)``.
    """
    name = check_committee_activation(activation)
    readout = real(readout, "readout", minimum=0.0, strict_minimum=True)
    W = real_array(W, "W", ndim=2)
    T = real_array(T, "T", ndim=2)
    if T.shape[1] != W.shape[1]:
        raise ValueError(f"T must have as many columns as W ({W.shape[1]}), got shape {T.shape}")
    K, n = W.shape
    check_memory(9 * K * n * (K + T.shape[0]), "W", "the three-point covariances")
    Z = np.vstack([W, T])
    gram = Z @ Z.T
    var_k = np.diagonal(gram)[:K][:, None, None]
    cov = np.empty((K, n, Z.shape[0], 3, 3))
    cov[..., 0, 0] = var_k
    cov[..., 0, 1] = cov[..., 1, 0] = W[:, :, None]
    cov[..., 0, 2] = cov[..., 2, 0] = gram[:K, None, :]
    cov[..., 1, 1] = 1.0
    cov[..., 1, 2] = cov[..., 2, 1] = Z.T[None, :, :]
    cov[..., 2, 2] = np.diagonal(gram)[None, None, :]
    values = three_point(name, cov)
    return readout**2 * (values[..., :K].sum(axis=-1) - values[..., K:].sum(axis=-1))


_RELU_PANEL_NODES = (6, 5, 5, 5, 6, 7, 8, 8, 9, 9, 9, 10, 12)
r"""Gauss-Legendre nodes on the panels :math:`[0, 4^{-12}], [4^{-12}, 4^{-11}], \dots, [4^{-1}, 1]` in :math:`s`
of the ReLU rule of :func:`committee_gradient_covariance` (99 nodes)."""

RELU_NOISE_TOLERANCE = 1e-11
r"""Stated bound on the quadrature error of one ReLU term of :func:`committee_gradient_covariance`, in
units of :math:`\sqrt{C_{aa}C_{bb}}` (measured: at most :math:`3.5\times10^{-12}`)."""

_PAIRS = ((0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3))
_COMPLEMENTS = ((2, 3), (1, 3), (1, 2), (0, 3), (0, 2), (0, 1))
_PAIR_INDEX = {**{pair: n for n, pair in enumerate(_PAIRS)}, **{(j, i): n for n, (i, j) in enumerate(_PAIRS)}}


@cache
def _relu_noise_rule() -> tuple[np.ndarray, np.ndarray]:
    """Nodes tau = s^2 and weights of dt = 2 s ds of the graded Gauss-Legendre rule in s on [0, 1]."""
    edges = np.concatenate([[0.0], 4.0 ** -np.arange(len(_RELU_PANEL_NODES) - 1, -1, -1, dtype=float)])
    nodes, weights = [], []
    for low, high, count in zip(edges[:-1], edges[1:], _RELU_PANEL_NODES, strict=True):
        x, w = np.polynomial.legendre.leggauss(count)
        nodes.append(low + (high - low) * (x + 1.0) / 2.0)
        weights.append((high - low) * w / 2.0)
    s, w = np.concatenate(nodes), np.concatenate(weights)
    return s**2, 2.0 * s * w


def _schur(c: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Cov(x_k, x_m | x_i, x_j) for correlation matrices c (L, 4, 4) and index (L, n, 4) of (i, j, k, m): (L, n).

    Computed in the basis x_i +- x_j of the pair, so that it stays accurate for a (nearly) repeated
    or opposite pair (c_ij = +-1): the small variance divides a difference of correlations.
    """
    rows = np.arange(c.shape[0])[:, None]
    i, j, k, m = np.moveaxis(index, -1, 0)
    cij = c[rows, i, j]
    plus, minus = 1.0 + cij, 1.0 - cij
    cki, ckj, cmi, cmj = c[rows, k, i], c[rows, k, j], c[rows, m, i], c[rows, m, j]
    even = (cki + ckj) * (cmi + cmj) / (2.0 * np.where(plus > 0, plus, 1.0))
    odd = (cki - ckj) * (cmi - cmj) / (2.0 * np.where(minus > 0, minus, 1.0))
    return c[rows, k, m] - even - odd


_TRIPLES = np.array([[(i, j, k), (i, k, j), (j, k, i)] for i, j, k in ((0, 1, 2), (0, 1, 3), (0, 2, 3), (1, 2, 3))])
"""The four 3-subsets of a 4-tuple, each as its three (pair, rest) splits: (4, 3, 3)."""


def _relu_orthant_moment_4(c: np.ndarray) -> np.ndarray:
    r""":math:`\mathbb E[\Theta(x_0)\Theta(x_1)\,x_2^+x_3^+]` at correlation matrices ``c`` (L, 4, 4), maybe singular.

    Price's theorem along :math:`R(t) = (1 - t)I + tR`, the orthant term integrated by parts; every
    conditional quantity is a ratio of minors of :math:`R(t)`, polynomials in :math:`\tau = 1 - t`
    whose coefficients are minors of :math:`R` (docstring of :func:`committee_gradient_covariance`).
    """
    tau, weight = _relu_noise_rule()
    c = np.clip(c, -1.0, 1.0)
    L = c.shape[0]
    rows = np.arange(L)
    first, second = np.array(_PAIRS).T
    one, other = np.array(_COMPLEMENTS).T
    cp = c[:, first, second]  # (L, 6)
    one_minus = (1.0 - cp) * (1.0 + cp)  # det R_P
    ckm = c[:, one, other]
    # Every Schur complement in one call: Cov(k, m | P) for the six pairs (cross minors), the
    # conditional covariance of the complement of the most correlated pair (det R), and the
    # variance of the rest of each triple given its most correlated pair (3 x 3 principal minors).
    best = np.argmax(np.abs(cp), axis=1)
    bi, bj, bk, bm = first[best], second[best], one[best], other[best]
    strength = np.abs(c[:, _TRIPLES[..., 0], _TRIPLES[..., 1]])  # (L, 4, 3)
    split = _TRIPLES[np.arange(4), np.argmax(strength, axis=2)]  # (L, 4, 3): pivot pair, rest
    index = np.concatenate([
        np.broadcast_to(np.stack([first, second, one, other], axis=1), (L, 6, 4)),
        np.stack([np.stack([bi, bj, bk, bk], 1), np.stack([bi, bj, bm, bm], 1), np.stack([bi, bj, bk, bm], 1)], 1),
        np.concatenate([split, split[..., 2:]], axis=2),
    ], axis=1)
    schur = _schur(c, index)
    # Cross minors X_P = det R[{i, j, k}, {i, j, m}] = det R_P Cov(k, m | P); first-order coefficients
    # Y_P = (c_km - c_kj c_jm) + (c_km - c_ki c_im).
    X = one_minus * schur[:, :6]
    Y = 2.0 * ckm - c[:, one, second] * c[:, second, other] - c[:, one, first] * c[:, first, other]
    # det R(t) = sum_k tau^(4-k) u^k e_k, u = 1 - tau, e_k the sums of the k x k principal minors of R.
    e2 = one_minus.sum(axis=1)
    pivot = c[rows[:, None], split[..., 0], split[..., 1]]
    e3 = np.maximum((1.0 - pivot) * (1.0 + pivot) * schur[:, 9:], 0.0).sum(axis=1)
    e4 = np.maximum(one_minus[rows, best] * (schur[:, 6] * schur[:, 7] - schur[:, 8] ** 2), 0.0)
    # Coefficient W_P(tau) = w0 + w1 tau + w2 tau^2 of density_P * orthant_P in the integrand.
    W = np.zeros((L, 6, 3))
    W[:, :, 1] = c[:, 2, 3][:, None] * cp  # the orthant term, by parts: c_23 (1 - t) dP_4/dt
    for i in (0, 1):
        for j in (2, 3):
            partner = 5 - j  # the other ReLU variable
            cij = c[:, i, j]
            for k in range(4):
                if k == i:
                    continue
                n = _PAIR_INDEX[(i, k)]
                if k == partner:  # 1 - r_{i, partner}(t)^2
                    ci = c[:, i, partner]
                    W[:, n, 0] += cij * (1.0 - ci) * (1.0 + ci)
                    W[:, n, 1] += cij * 2.0 * ci**2
                    W[:, n, 2] -= cij * ci**2
                else:  # r_{partner, k} - r_{partner, i} r_{ik} = u (D + tau e)
                    e = c[:, partner, i] * c[:, i, k]
                    D = c[:, partner, k] - e
                    W[:, n, 0] += cij * D
                    W[:, n, 1] += cij * (e - D)
                    W[:, n, 2] -= cij * e
    # At the nodes (L, 6 pairs, nodes): det R_P(t), the cross minor, det R(t).
    t = tau[None, None, :]
    cp2 = (cp**2)[:, :, None]
    det2 = one_minus[:, :, None] + t * cp2 * (2.0 - t)
    n1, n2 = Y - 3.0 * X, 3.0 * X - 2.0 * Y + ckm
    n3 = Y - X - ckm
    cross = X[:, :, None] + t * (n1[:, :, None] + t * (n2[:, :, None] + t * n3[:, :, None]))
    t1 = tau[None, :]
    u1 = 1.0 - t1
    root4 = np.sqrt(u1 * (u1 * (u1 * (u1 * e4[:, None] + t1 * e3[:, None]) + t1**2 * e2[:, None]) + 4.0 * t1**3)
                    + t1**4)[:, None, :]
    root2 = np.sqrt(det2)
    angle = np.arctan(cross / (root2 * root4))  # arcsin of the partial correlation of the complement
    coefficient = W[:, :, 0:1] + t * (W[:, :, 1:2] + t * W[:, :, 2:3])
    # density_P * orthant_P = (pi/2 + angle) / (4 pi^2 sqrt(det2)).
    integrand = (coefficient * (0.5 * np.pi + angle) / root2).sum(axis=1) / (4.0 * np.pi**2)
    # Pair (0, 1): E[x_2^+ x_3^+ | x_0 = x_1 = 0] = (sqrt(det S) + S_23 (pi/2 + arcsin rho)) / (2 pi).
    d01 = det2[:, 0]
    kernel = (root4[:, 0] / root2[:, 0] + cross[:, 0] / d01 * (0.5 * np.pi + angle[:, 0])) / (2.0 * np.pi)
    integrand += c[:, 0, 1][:, None] * kernel / (2.0 * np.pi * root2[:, 0])
    return 1.0 / (8.0 * np.pi) + c[:, 2, 3] / 16.0 + integrand @ weight


_NOISE_KINDS = ("square", "B1", "B2", "T1", "T2", "F4")


@cache
def _noise_terms(n_students: int, n_teachers: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    r"""The distinct ReLU terms of :math:`G_{kl}` and their coefficients, by kind.

    With :math:`E = \{k, l\}\setminus\{a, b\}` (the :math:`\Theta` factors left once
    :math:`\Theta(u_a)u_a^+ = u_a^+`): ``square`` :math:`E[u_a^{+2}]`, ``B2`` :math:`E[u_a^{+2}\Theta_q]`,
    ``T2`` :math:`E[u_a^{+2}\Theta_q\Theta_r]`, ``B1`` :math:`E[u_a^+u_b^+]`, ``T1``
    :math:`E[u_a^+u_b^+\Theta_r]`, ``F4`` :math:`E[\Theta_p\Theta_q u_a^+u_b^+]`. Each kind maps to its
    unit indices (n_terms, arity) and the coefficients (n_terms, K*K) of the terms in :math:`G/g^4`.
    """
    K, n = n_students, n_students + n_teachers
    sign = np.where(np.arange(n) < K, 1.0, -1.0)
    found: dict[str, dict[tuple[int, ...], np.ndarray]] = {kind: {} for kind in _NOISE_KINDS}
    for k, m, a, b in itertools.product(range(K), range(K), range(n), range(n)):
        left = tuple(sorted({k, m} - {a, b}))
        if a == b:
            kind, key = ("square", "B2", "T2")[len(left)], (a, *left)
        else:
            kind, key = ("B1", "T1", "F4")[len(left)], (*left, *sorted((a, b)))
        coefficients = found[kind].setdefault(key, np.zeros(K * K))
        coefficients[k * K + m] += sign[a] * sign[b]
    return {kind: (np.array(list(terms), dtype=int).reshape(len(terms), -1), np.array(list(terms.values())))
            for kind, terms in found.items() if terms}


def _orthant_3(c12: np.ndarray, c13: np.ndarray, c23: np.ndarray) -> np.ndarray:
    r""":math:`P(x_1, x_2, x_3 > 0) = \tfrac18 + (\arcsin c_{12} + \arcsin c_{13} + \arcsin c_{23})/(4\pi)`."""
    return 0.125 + (np.arcsin(c12) + np.arcsin(c13) + np.arcsin(c23)) / (4.0 * np.pi)


def _root_one_minus(x: np.ndarray) -> np.ndarray:
    return np.sqrt((1.0 - x) * (1.0 + x))


def _relu_noise_value(kind: str, index: np.ndarray, corr: np.ndarray) -> np.ndarray:
    """The ReLU terms of one kind in correlation units: corr (B, n, n), index (n_terms, arity) -> (B, n_terms)."""
    def r(p: int, q: int) -> np.ndarray:
        return corr[:, index[:, p], index[:, q]]

    if kind == "square":
        return np.full((corr.shape[0], index.shape[0]), 0.5)
    if kind == "B1":  # E[x_a^+ x_b^+]
        rho = r(0, 1)
        return (_root_one_minus(rho) + rho * (0.5 * np.pi + np.arcsin(rho))) / (2.0 * np.pi)
    if kind == "B2":  # E[x_a^+2 Theta_q]
        rho = r(0, 1)
        return 0.25 + (np.arcsin(rho) + rho * _root_one_minus(rho)) / (2.0 * np.pi)
    if kind == "T1":  # E[x_a^+ x_b^+ Theta_r], index (r, a, b)
        c_ra, c_rb, c_ab = r(0, 1), r(0, 2), r(1, 2)
        return c_ab * _orthant_3(c_ra, c_rb, c_ab) + (_root_one_minus(c_ab) + c_rb * _root_one_minus(c_ra)
                                                     + c_ra * _root_one_minus(c_rb)) / (4.0 * np.pi)
    if kind == "T2":  # E[x_a^+2 Theta_q Theta_r], index (a, q, r)
        c_aq, c_ar, c_qr = r(0, 1), r(0, 2), r(1, 2)
        # [2 c_aq c_ar - c_qr (c_aq^2 + c_ar^2)] / sqrt(1 - c_qr^2), written without 0/0 at c_qr = +-1:
        # the difference (c_aq -+ c_ar)^2 <= 2 (1 -+ c_qr) is bounded by positive semi-definiteness.
        sign = np.where(c_qr >= 0.0, 1.0, -1.0)
        near = np.abs(c_qr)
        ratio = np.sqrt((1.0 - near) / (1.0 + near))
        difference = (c_aq - sign * c_ar) ** 2
        with np.errstate(divide="ignore", invalid="ignore"):
            bounded = np.minimum(difference / _root_one_minus(near), 2.0 * ratio)
        bounded = np.where(near < 1.0, bounded, 0.0)
        mixed = 2.0 * c_aq * c_ar * ratio - c_qr * bounded
        return _orthant_3(c_aq, c_ar, c_qr) + (c_aq * _root_one_minus(c_aq) + c_ar * _root_one_minus(c_ar)
                                               + mixed) / (4.0 * np.pi)
    flat = corr[:, index[:, :, None], index[:, None, :]].reshape(-1, 4, 4)  # F4, index (p, q, a, b)
    return _relu_orthant_moment_4(flat).reshape(corr.shape[0], index.shape[0])


def _relu_gradient_covariance(joint: np.ndarray, K: int) -> np.ndarray:
    """G / g^4 for ReLU from the joint covariances (B, n, n): (B, K * K)."""
    B, n = joint.shape[0], joint.shape[-1]
    variance = np.diagonal(joint, axis1=-2, axis2=-1)
    std = np.sqrt(np.maximum(variance, 0.0))
    alive = std > 0
    safe = np.where(alive, std, 1.0)
    corr = np.clip(joint / (safe[:, :, None] * safe[:, None, :]), -1.0, 1.0)
    corr[:, np.arange(n), np.arange(n)] = 1.0
    total = np.zeros((B, K * K))
    for kind, (index, coefficients) in _noise_terms(K, n - K).items():
        value = _relu_noise_value(kind, index, corr)
        if kind in ("square", "B2", "T2"):  # relu(u_a)^2, Theta on the rest
            scale, thetas = variance[:, index[:, 0]], index[:, 1:]
        else:  # relu(u_a) relu(u_b), Theta on the leading indices
            scale, thetas = std[:, index[:, -2]] * std[:, index[:, -1]], index[:, :-2]
        live = np.all(alive[:, thetas], axis=-1) if thetas.shape[1] else True
        total += np.where(live, scale * value, 0.0) @ coefficients
    return total


@cache
def _closed_form_terms(n_students: int, n_units: int) -> tuple[np.ndarray, np.ndarray]:
    """Tuples (k, l, a, b), k <= l, a <= b, and their coefficients (n_tuples, K*K) in G / g^4."""
    K = n_students
    sign = np.where(np.arange(n_units) < K, 1.0, -1.0)
    index = np.array([(k, m, a, b) for k in range(K) for m in range(k, K)
                      for a in range(n_units) for b in range(a, n_units)])
    coefficients = np.zeros((len(index), K * K))
    for row, (k, m, a, b) in enumerate(index):
        coefficients[row, k * K + m] = coefficients[row, m * K + k] = sign[a] * sign[b] * (1.0 if a == b else 2.0)
    return index, coefficients


def _closed_form_gradient_covariance(name: str, joint: np.ndarray, K: int) -> np.ndarray:
    """G / g^4 for erf and linear from the joint covariances (B, n, n), by four_point: (B, K * K)."""
    index, coefficients = _closed_form_terms(K, joint.shape[-1])
    return four_point(name, joint[:, index[:, :, None], index[:, None, :]]) @ coefficients


def committee_gradient_covariance(activation: str, Q: object, R: object, T_overlap: object, readout: float
                                  ) -> np.ndarray:
    r"""The covariance :math:`G_{kl} = \mathbb E[h_kh_l]` of the per-sample gradient coefficients (the SGD noise).

    With :math:`\lambda = Wx`, :math:`\lambda^* = Tx` and the loss :math:`\tfrac12(\hat y - y)^2`,
    :math:`h_k = \partial_{\lambda_k}\tfrac12(\hat y - y)^2 = g(\hat y - y)\,s'(\lambda_k)`; :math:`G` is
    the matrix that multiplies :math:`\delta = \eta d/B` in the committee overlap ODE. Writing
    :math:`u = (\lambda, \lambda^*)` (:math:`K + M` units, signs :math:`\sigma_a = +1` for students,
    :math:`-1` for teachers), :math:`\hat y - y = g\sum_a\sigma_a s(u_a)` and

    .. math:: G_{kl} = g^4\,\mathbb E\Big[s'(\lambda_k)\,s'(\lambda_l)\Big(\sum_a \sigma_a s(u_a)\Big)^2\Big]
        = g^4\sum_{a, b}\sigma_a\sigma_b\, I_4(\lambda_k, \lambda_l, u_a, u_b),

    with :math:`I_4` the four-point integral of :mod:`lorabook.toolkit.committee_integrals` at the
    covariance of :math:`(\lambda_k, \lambda_l, u_a, u_b)`, taken from the joint overlap matrix
    :math:`C = \begin{pmatrix} Q & R\\ R^\top & T_{\rm ov}\end{pmatrix}` (repeated indices give singular
    covariances, which the formulas accept).

    * erf and linear: exact, :func:`~lorabook.toolkit.committee_integrals.four_point` in closed form
      (for the linear activation every entry is :math:`g^4\,\mathbf 1^\top(Q - R - R^\top + T_{\rm ov})\mathbf 1`).
    * ReLU (:math:`s' = \Theta`, :math:`s(z) = z\Theta(z)`): each term is a truncated second moment. In
      correlation units (:math:`\rho = C_{ab}/\sqrt{C_{aa}C_{bb}}`, values times :math:`\sqrt{C_{aa}C_{bb}}`,
      and 0 when a :math:`\Theta` variable has zero variance), with
      :math:`P_3 = \tfrac18 + \sum_{i<j}\arcsin\rho_{ij}/(4\pi)`, the terms with a repeated index are
      closed forms (Stein's lemma twice, the singular ratios combined so that each is continuous,
      also at :math:`\rho = \pm1`):

      .. math::
          \mathbb E[x_a^{+2}] = \tfrac12, \quad
          \mathbb E[x_a^+x_b^+] = \frac{\sqrt{1 - \rho^2} + \rho(\tfrac\pi2 + \arcsin\rho)}{2\pi}, \quad
          \mathbb E[x_a^{+2}\Theta_q] = \frac14 + \frac{\arcsin\rho + \rho\sqrt{1 - \rho^2}}{2\pi},

      .. math::
          \mathbb E[x_a^+x_b^+\Theta_r] = \rho_{ab}P_3 + \frac{\sqrt{1 - \rho_{ab}^2}
          + \rho_{br}\sqrt{1 - \rho_{ar}^2} + \rho_{ar}\sqrt{1 - \rho_{br}^2}}{4\pi},

      .. math::
          \mathbb E[x_a^{+2}\Theta_q\Theta_r] = P_3 + \frac{1}{4\pi}\Big[\rho_{aq}\sqrt{1 - \rho_{aq}^2}
          + \rho_{ar}\sqrt{1 - \rho_{ar}^2} + \frac{2\rho_{aq}\rho_{ar} - \rho_{qr}(\rho_{aq}^2
          + \rho_{ar}^2)}{\sqrt{1 - \rho_{qr}^2}}\Big]

      (the last fraction evaluated as :math:`2\rho_{aq}\rho_{ar}\sqrt{(1 - \rho_{qr})/(1 + \rho_{qr})}
      - \rho_{qr}(\rho_{aq} - \rho_{ar})^2/\sqrt{1 - \rho_{qr}^2}` for :math:`\rho_{qr} \ge 0`, and with
      the signs flipped for :math:`\rho_{qr} < 0`, the square bounded by :math:`2(1 - |\rho_{qr}|)`).
      Four distinct units, :math:`F(R) = \mathbb E[\Theta_0\Theta_1 x_2^+x_3^+]` at the correlation
      matrix :math:`R`, have no closed form. Price's theorem along :math:`R(t) = (1 - t)I + tR`
      (positive definite for :math:`t < 1` even when :math:`R` is singular),
      :math:`\partial F/\partial R_{ij} = \mathbb E[\partial_i\partial_j f]`, gives densities at 0 of
      the pairs times closed forms, and the orthant probability :math:`P_4(t)` on the pair
      :math:`(2, 3)`, itself Plackett's integral :math:`P_4(t) = \tfrac1{16} + \int_0^t P_4'`;
      integrating that term by parts leaves one integral,

      .. math:: F(R) = \frac1{8\pi} + \frac{R_{23}}{16} + \int_0^1\Big[R_{01}\,\varphi_{01}\,
          \mathbb E[x_2^+x_3^+ \mid x_0 = x_1 = 0]
          + \sum_{i\in\{0,1\}}\sum_{j\in\{2,3\}} R_{ij}\sum_{k\ne i}\operatorname{Cov}_t(x_{\bar j}, x_k
          \mid x_i)\,\varphi_{ik}\,P_2^{ik} + (1 - t)R_{23}\sum_{i<j}R_{ij}\,\varphi_{ij}\,P_2^{ij}\Big]dt,

      where :math:`\bar j` is the other ReLU variable, :math:`\varphi_{ij} = 1/(2\pi\sqrt{\det R_{ij}(t)})`
      the density of the pair at 0 and :math:`P_2^{ij} = \tfrac14 + \arcsin\rho_{km\cdot ij}(t)/(2\pi)`
      the orthant of the complementary pair given it. Every conditional quantity is a ratio of
      minors of :math:`R(t) = \tau I + (1 - \tau)R`, a polynomial in :math:`\tau = 1 - t` whose
      coefficients are minors of :math:`R`: with :math:`N_{km} = \det R(t)_{\{i,j,k\},\{i,j,m\}}` the cross
      minor, :math:`\arcsin\rho_{km\cdot ij} = \arctan\big(N_{km}/\sqrt{\det R_{ij}(t)\det R(t)}\big)`, and
      the conditional determinant is :math:`\det R(t)/\det R_{ij}(t)`. The small minors of :math:`R`
      are computed as a pair determinant :math:`1 - \rho^2 = (1 - \rho)(1 + \rho)` times a Schur complement in the
      :math:`x_i \pm x_j` basis of the most correlated pair, so repeated units (a student row equal
      to a teacher row, :math:`W = DT`) lose no accuracy. The integral is taken in :math:`s`,
      :math:`t = 1 - s^2` (the density of a repeated pair behaves as :math:`(1 - t)^{-1/2}`), by a
      fixed Gauss-Legendre rule of 99 nodes on 13 panels :math:`[4^{-k-1}, 4^{-k}]` graded towards
      :math:`s = 0` (a nearly repeated pair at :math:`1 - \rho = \delta` makes the integrand vary on
      the scale :math:`s \sim \sqrt\delta`), the same nodes for every covariance: :math:`G` is a smooth
      function of the overlaps wherever they are not singular and continuous where they are, as an
      adaptive ODE solver needs. All terms are evaluated in one vectorised call.

    Accuracy (ReLU): each term has a quadrature error below :data:`RELU_NOISE_TOLERANCE`
    :math:`= 10^{-11}` in units of :math:`\sqrt{C_{aa}C_{bb}}`. Measured against a 576-node rule (and,
    for the worst cases, 40-digit mpmath quadrature): at most :math:`1.2\times10^{-12}` over families
    approaching :math:`W = DT`, repeated or opposite rows, three nearly equal rows and rows in the
    span of others (:math:`1 - \rho` from 1 down to :math:`10^{-16}`), at most :math:`3.5\times10^{-12}`
    over 3000 random singular and nearly singular correlation matrices (the worst: rank one). Hence

    .. math:: |\Delta G_{kl}| \le 10^{-11}\, g^4\Big(\sum_a \sqrt{C_{aa}}\Big)^2,

    e.g. :math:`6\times10^{-8}\max|G|` at the pre-trained start (:math:`\mu = 0.9`, :math:`K = M = 4`);
    the measured error of :math:`G` there is :math:`6\times10^{-14}\max|G|`, and at most
    :math:`3\times10^{-9}\max|G|` for students down to :math:`10^{-4}` from the teacher, where
    :math:`G \to 0` is a cancelling sum and only the absolute bound holds. Near singular overlaps
    the function itself varies as :math:`\sqrt{1 - \rho}`: rounding the overlaps by :math:`\epsilon`
    moves it by up to :math:`\sim\sqrt\epsilon \approx 10^{-8}` of its scale, whatever the method.
    Cost (ReLU, :math:`K = M = 4`): 90 four-unit terms at 99 nodes, about 2 ms a call
    (``benchmarks/bench_committee_noise.py``).

    Parameters
    ----------
    activation
        ``"erf"``, ``"relu"`` or ``"linear"`` (student and teacher).
    Q, R, T_overlap
        :math:`WW^\top` (..., K, K), :math:`WT^\top` (..., K, M), :math:`TT^\top` (..., M, M); leading
        axes broadcast. Together they must form a positive semi-definite Gram matrix.
    readout
        :math:`g > 0` (see :func:`readout_scale`).

    Returns
    -------
    numpy.ndarray
        Shape ``(..., K, K)``, symmetric positive semi-definite.

    Raises
    ------
    TypeError, ValueError
        For an unknown activation, a readout that is not positive, overlaps of the wrong shape,
        non-finite, asymmetric or not jointly positive semi-definite (as :func:`committee_risk`).
    """
    name = check_committee_activation(activation)
    readout = real(readout, "readout", minimum=0.0, strict_minimum=True)
    Q, R, T_overlap = _check_overlaps(Q, R, T_overlap)
    batch, K, M = Q.shape[:-2], Q.shape[-1], R.shape[-1]
    n = K + M
    size = int(np.prod(batch, dtype=np.int64))
    n_four = K * (K - 1) // 2 * (n - 2) * (n - 3) // 2
    check_memory(16 * size * max(n_four * 6 * sum(_RELU_PANEL_NODES), K * K * n * n), "Q",
                 "the quadrature nodes of the gradient covariance")
    joint = np.concatenate([np.concatenate([Q, R], axis=-1),
                            np.concatenate([np.swapaxes(R, -1, -2), T_overlap], axis=-1)], axis=-2)
    joint = joint.reshape(size, n, n)
    if name == "relu":
        total = _relu_gradient_covariance(joint, K)
    else:
        total = _closed_form_gradient_covariance(name, joint, K)
    G = readout**4 * total.reshape(*batch, K, K)
    return 0.5 * (G + np.swapaxes(G, -1, -2))


def best_rank_r_risk(activation: str, pretraining_strength: float, n_neurons: int, rank: int, n_weakened: int = 2,
                     n_starts: int = 4, seed: int | np.random.Generator = 0) -> float:
    r"""The lowest population risk of rank-:math:`r` LoRA on the pre-trained committee (the rank plateau).

    .. math:: \varepsilon_r^\star = \min_{U \in \mathbb R^{K\times r},\, V \in \mathbb R^{r\times d}}
        \varepsilon\big(Q(W), R(W)\big), \qquad W = DT + UV.

    Method: the risk depends on :math:`W` only through its components on the span of the teacher
    rows and of the rows of :math:`V`, at most :math:`K + r` dimensions, so :math:`T = [I_K, 0]` and
    :math:`V \in \mathbb R^{r\times(K + r)}` lose nothing (and :math:`V` is not normalised: its
    scale is absorbed by :math:`U`). :func:`committee_risk` is minimised by L-BFGS with the exact
    gradient :func:`committee_risk_gradient` (chain rule :math:`\partial_U = G V^\top`,
    :math:`\partial_V = U^\top G`), from the rank-:math:`r` truncated SVD of the needed update
    :math:`(I - D)T` and from ``n_starts`` random starts; the lowest value is returned. A local
    minimiser: an upper bound on the minimum that the tests check against the linear case (exact
    value 0) and against :math:`r \ge` ``n_weakened`` (exact value 0).

    Parameters
    ----------
    activation
        ``"erf"``, ``"relu"`` or ``"linear"``.
    pretraining_strength, n_neurons, n_weakened
        The pre-trained model (:func:`pretrained_coefficients`): :math:`\mu`, :math:`K` and the number
        of weakened directions.
    rank
        The LoRA rank :math:`r`, ``1 <= rank <= n_neurons``.
    n_starts
        Random starts besides the SVD start.
    seed
        Seed of the random starts.

    Returns
    -------
    float
    """
    from scipy import optimize

    name = check_committee_activation(activation)
    K, r = check_rank(n_neurons, rank)
    D = pretrained_coefficients(K, pretraining_strength, n_weakened)
    n_starts = integer(n_starts, "n_starts", minimum=0)
    rng = generator(seed, "seed")
    g = readout_scale(name, K)
    n = K + r
    T = np.eye(K, n)
    identity = np.eye(K)

    def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
        U = theta[: K * r].reshape(K, r)
        V = theta[K * r:].reshape(r, n)
        W = D @ T + U @ V
        risk = float(committee_risk(name, W @ W.T, W @ T.T, identity, g))
        G = committee_risk_gradient(name, W, T, g)
        return risk, np.concatenate([(G @ V.T).ravel(), (U.T @ G).ravel()])

    needed = (identity - D) @ T
    left, singular, right = np.linalg.svd(needed)
    svd_start = np.concatenate([(left[:, :r] * singular[:r]).ravel(), right[:r].ravel()])
    random_starts = (0.5 * rng.standard_normal(K * r + r * n) for _ in range(n_starts))  # drawn one at a time
    best = np.inf
    for start in itertools.chain([svd_start], random_starts):
        result = optimize.minimize(objective, start, jac=True, method="L-BFGS-B",
                                   options={"maxiter": 500, "gtol": 1e-10, "ftol": 1e-14})
        best = min(best, float(result.fun))
    return best
