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

The rank plateau. :func:`best_rank_r_risk` minimises the population risk over all rank-:math:`r`
updates :math:`UV` (method in its docstring). For the linear activation the committee output
depends on :math:`W` only through :math:`\mathbf 1^\top W`, so the risk is
:math:`\tfrac{g^2}{2}\lVert\mathbf 1^\top(W - T)\rVert^2` and the Eckart-Young truncation of the
needed update :math:`\mathbf 1^\top(I - D)T` (a rank-one row) at any rank :math:`r \ge 1` is exact:
the linear committee has no rank plateau; the non-linear ones do.
"""

from __future__ import annotations

import itertools
from typing import NamedTuple

import numpy as np
import sympy as sp

from lorabook.toolkit.committee_integrals import check_committee_activation, check_covariance, three_point, two_point
from lorabook.toolkit.validation import check_memory, generator, integer, real, real_array

__all__ = [
    "LoRAOverlapsSympy",
    "best_rank_r_risk",
    "check_lora_shapes",
    "check_rank",
    "check_teacher",
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
