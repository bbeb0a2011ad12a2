r"""Gaussian expectations of two-layer ("committee") networks: the two-, three- and four-point integrals.

The population risk of a committee :math:`\hat y = g\sum_k s(\lambda_k)` and the drift and noise of
its overlap ODEs (Saad & Solla 1995; Goldt et al. 2019) are sums of expectations over a few
jointly Gaussian preactivations. With :math:`C` the covariance of the variables listed,

.. math::
    I_2 = \mathbb E[s(a)\,s(b)], \qquad
    I_3 = \mathbb E[s'(a)\, b\, s(c)], \qquad
    I_4 = \mathbb E[s'(a)\, s'(b)\, s(c)\, s(d)].

Conventions of lorabook: ``"erf"`` is :math:`\operatorname{erf}(z)`, *not* Saad and Solla's
:math:`\operatorname{erf}(z/\sqrt2)`. With :math:`g(u) = \operatorname{erf}(u/\sqrt2)`,
:math:`s(z) = g(\sqrt2 z)` and :math:`s'(z) = \sqrt2\, g'(\sqrt2 z)`, so every erf integral here
is Saad and Solla's at the covariance :math:`2C`, times :math:`\sqrt2` per derivative and
:math:`1/\sqrt2` per bare linear variable (:math:`I_3^{\rm here}(C) = I_3^{\rm SS}(2C)`,
:math:`I_4^{\rm here}(C) = 2 I_4^{\rm SS}(2C)`). The tests check both against Monte Carlo and
the rescaled literature formulas.

How each is obtained (all vectorised over the leading axes of ``covariance``):

* :math:`I_2`: :func:`lorabook.toolkit.kernels.correlation_kernel` (closed forms derived there);
  a zero variance gives :math:`s(0)\,\mathbb E[s] = 0` for the three activations here.
* :math:`I_3`, Stein's lemma on the bare variable :math:`b`:

  .. math:: I_3 = C_{ab}\,\mathbb E[s''(a)\,s(c)] + C_{bc}\,\mathbb E[s'(a)\,s'(c)].

  For erf, the Gaussian weight :math:`s'(a) = \tfrac{2}{\sqrt\pi}e^{-a^2}` *tilts* the law: for
  :math:`x \sim \mathcal N(0, C)` and a block :math:`x_1` of it,

  .. math:: \mathbb E[e^{-x_1^\top x_1} f(x)] = \det(I + 2C_{11})^{-1/2}\,\mathbb E_{\tilde C}[f],
      \qquad \tilde C = C - 2\,C_{\cdot 1}(I + 2C_{11})^{-1}C_{1\cdot}

  (completing the square; valid for singular :math:`C`). Hence

  .. math:: I_3^{\rm erf} = \frac{4}{\pi}\frac{\tilde C_{bc}}{\sqrt{(1 + 2C_{aa})(1 + 2\tilde C_{cc})}},
      \qquad \tilde C_{bc} = C_{bc} - \frac{2C_{ab}C_{ac}}{1 + 2C_{aa}}.

  For ReLU (:math:`s' = \Theta`, :math:`s'' = \delta`),

  .. math:: I_3^{\rm relu} = C_{ab}\frac{\sqrt{C_{aa}C_{cc} - C_{ac}^2}}{2\pi C_{aa}}
      + C_{bc}\Big(\frac14 + \frac{\arcsin\rho_{ac}}{2\pi}\Big);

  for the linear activation :math:`I_3 = C_{bc}`.
* :math:`I_4` for erf: the tilt on the block :math:`(a, b)`, then the erf-erf kernel,

  .. math:: I_4^{\rm erf} = \frac{4}{\pi}\frac{1}{\sqrt{\det(I + 2C_{ab,ab})}}\;
      \frac{2}{\pi}\arcsin\frac{2\tilde C_{cd}}{\sqrt{(1 + 2\tilde C_{cc})(1 + 2\tilde C_{dd})}};

  for the linear activation :math:`I_4 = C_{cd}`.
* :math:`I_4` for ReLU, :math:`\mathbb E[c\,d\,\mathbf 1\{a, b, c, d > 0\}]`, has no closed form.
  In correlation units (:math:`I_4(C) = \sqrt{C_{cc}C_{dd}}\,I_4(R)`), Stein's lemma on :math:`c`
  reduces it to the orthant probability :math:`P_4 = P(a, b, c, d > 0)` and closed forms,

  .. math:: I_4 = R_{cd}\,P_4 + \sum_{j \in \{a, b, c\}} \frac{R_{cj}}{\sqrt{2\pi}}\,
      \mathbb E\big[d\,\textstyle\prod_{k \ne j}\Theta(x_k)\,\big|\,x_j = 0\big],

  the last expectations again by Stein's lemma (conditional centred trivariate laws, bivariate
  orthants :math:`\tfrac14 + \arcsin\rho/(2\pi)`). :math:`P_4` is Plackett's (1954) one-dimensional
  integral along :math:`R(t) = I + t(R - I)` (Price's theorem, :math:`\partial P/\partial R_{ij}` is
  the density of :math:`(x_i, x_j)` at 0 times the conditional orthant of the other two),

  .. math:: P_4(R) = \frac1{16} + \int_0^1 \sum_{i<j} \frac{R_{ij}}{2\pi\sqrt{1 - t^2R_{ij}^2}}
      \Big(\frac14 + \frac{\arcsin\rho_{kl\cdot ij}(t)}{2\pi}\Big)\,dt,

  computed with :math:`t = 1 - s^2` (which removes the :math:`(1 - t)^{-1/2}` endpoint behaviour of
  perfectly correlated pairs) by Gauss-Legendre rules on panels graded geometrically towards
  :math:`s = 0`. Singular :math:`R` (a preactivation repeated, a student row equal to a teacher row)
  is handled by evaluating at :math:`R_\varepsilon = (1 - \varepsilon)R + \varepsilon I`, which is
  positive definite, for :math:`\varepsilon, 4\varepsilon, 16\varepsilon`, and extrapolating to
  :math:`\varepsilon = 0` in :math:`h = \sqrt\varepsilon` (the value is :math:`I_0 + c_1 h + c_2h^2 + O(h^3)`):
  :math:`I \approx (8I_\varepsilon - 6I_{4\varepsilon} + I_{16\varepsilon})/3`. The error estimate of
  :func:`four_point_with_error` is the change under a refined rule (twice the nodes per panel)
  plus the change from the one-stage extrapolation :math:`2I_\varepsilon - I_{4\varepsilon}`: a
  conservative bound, checked in the tests against Monte Carlo and against a finer rule.
"""

from __future__ import annotations

from functools import cache

import numpy as np

from lorabook.toolkit.activations import check_activation
from lorabook.toolkit.kernels import correlation_kernel
from lorabook.toolkit.validation import UnsupportedChoiceError, check_memory, integer, real_array

__all__ = [
    "COMMITTEE_ACTIVATIONS",
    "check_committee_activation",
    "check_covariance",
    "four_point",
    "four_point_with_error",
    "orthant_probability_4",
    "three_point",
    "two_point",
]

COMMITTEE_ACTIVATIONS: tuple[str, ...] = ("erf", "relu", "linear")
"""The activations with committee integrals here."""

DEFAULT_PANEL_NODES = 8
"""Gauss-Legendre nodes per panel of the ReLU four-point rule (the error estimate doubles them)."""

_PSD_TOLERANCE = 1e-10
_REGULARISATION = 1e-8
_N_PANELS = 12  # panels [4^-k-1, 4^-k] in s, k = 0..10, and [0, 4^-11]


def check_committee_activation(activation: object) -> str:
    r"""Validate an activation for the committee integrals: one of :data:`COMMITTEE_ACTIVATIONS`; return it.

    Raises
    ------
    TypeError, ValueError
        For a non-string or unknown name; an
        :class:`~lorabook.toolkit.validation.UnsupportedChoiceError` (a :class:`ValueError`) for a
        valid activation without committee integrals (the message lists those that have them).
    """
    name = check_activation(activation, parameter="activation")
    if name not in COMMITTEE_ACTIVATIONS:
        raise UnsupportedChoiceError(f"activation={str(name)!r}: the committee integrals are implemented for "
                                     f"{', '.join(COMMITTEE_ACTIVATIONS)}")
    return name


def check_covariance(covariance: object, size: int, *, name: str = "covariance") -> np.ndarray:
    r"""Validate an array of symmetric positive semi-definite ``size x size`` covariances; return it as float.

    .. math:: C = C^\top, \qquad \lambda_{\min}(C) \ge -10^{-10}\max_i C_{ii}.

    Parameters
    ----------
    covariance
        Array of shape ``(..., size, size)``: leading axes are batch axes.
    size
        The number of Gaussian variables.
    name
        The caller's parameter name, for the messages.

    Raises
    ------
    TypeError
        If ``covariance`` is not made of real numbers.
    ValueError
        For the wrong trailing shape, non-finite entries, an asymmetric or indefinite matrix.
    """
    size = integer(size, "size")
    values = real_array(covariance, name)
    if values.ndim < 2 or values.shape[-2:] != (size, size):
        raise ValueError(f"{name} must have shape (..., {size}, {size}) (a symmetric positive semi-definite "
                         f"covariance of {size} variables), got shape {values.shape}")
    scale = np.max(np.abs(np.diagonal(values, axis1=-2, axis2=-1)), axis=-1, keepdims=True)[..., None]
    scale = np.maximum(scale, 1e-300)
    if np.any(np.abs(values - np.swapaxes(values, -1, -2)) > _PSD_TOLERANCE * scale):
        raise ValueError(f"{name} must be symmetric (a covariance)")
    values = 0.5 * (values + np.swapaxes(values, -1, -2))
    if np.any(np.linalg.eigvalsh(values) < -_PSD_TOLERANCE * scale[..., 0]):
        raise ValueError(f"{name} must be positive semi-definite (a covariance): it has a negative eigenvalue")
    return values


def two_point(activation: str, covariance: object) -> np.ndarray:
    r""":math:`I_2 = \mathbb E[s(a)\, s(b)]` for :math:`(a, b) \sim \mathcal N(0, C)`, vectorised.

    .. math:: I_2(C) = K_{s,s}(C_{aa}, C_{ab}, C_{bb})

    with :math:`K` the closed-form kernel :func:`lorabook.toolkit.kernels.correlation_kernel`; a zero
    variance gives 0 (:math:`s(0) = 0` for erf, ReLU and linear).

    Parameters
    ----------
    activation
        ``"erf"``, ``"relu"`` or ``"linear"``.
    covariance
        Shape ``(..., 2, 2)``, symmetric positive semi-definite.

    Returns
    -------
    numpy.ndarray
        Shape ``covariance.shape[:-2]``.
    """
    name = check_committee_activation(activation)
    c = check_covariance(covariance, 2)
    c11, c12, c22 = c[..., 0, 0], c[..., 0, 1], c[..., 1, 1]
    live = (c11 > 0) & (c22 > 0)
    result = np.zeros(c11.shape)
    if np.any(live):
        bound = np.sqrt(c11[live] * c22[live])
        result[live] = correlation_kernel(name, name, c11[live], np.clip(c12[live], -bound, bound), c22[live])
    return result


def _safe_arcsin(x: np.ndarray) -> np.ndarray:
    return np.arcsin(np.clip(x, -1.0, 1.0))


def _orthant_2(correlation: np.ndarray) -> np.ndarray:
    r""":math:`P(x_1 > 0, x_2 > 0) = \tfrac14 + \arcsin\rho/(2\pi)` for a centred pair."""
    return 0.25 + _safe_arcsin(correlation) / (2.0 * np.pi)


def three_point(activation: str, covariance: object) -> np.ndarray:
    r""":math:`I_3 = \mathbb E[s'(a)\, b\, s(c)]` for :math:`(a, b, c) \sim \mathcal N(0, C)`, in closed form.

    .. math:: I_3 = C_{ab}\,\mathbb E[s''(a)\,s(c)] + C_{bc}\,\mathbb E[s'(a)\,s'(c)]

    (Stein's lemma on :math:`b`), evaluated as in the module docstring:
    :math:`\tfrac{4}{\pi}\tilde C_{bc}/\sqrt{(1 + 2C_{aa})(1 + 2\tilde C_{cc})}` for erf,
    :math:`C_{ab}\sqrt{C_{aa}C_{cc} - C_{ac}^2}/(2\pi C_{aa}) + C_{bc}(\tfrac14 + \arcsin\rho_{ac}/(2\pi))`
    for ReLU (0 if :math:`C_{aa} = 0` or :math:`C_{cc} = 0`), :math:`C_{bc}` for linear.

    Parameters
    ----------
    activation
        ``"erf"``, ``"relu"`` or ``"linear"``.
    covariance
        Shape ``(..., 3, 3)``, the covariance of :math:`(a, b, c)`.

    Returns
    -------
    numpy.ndarray
        Shape ``covariance.shape[:-2]``.
    """
    name = check_committee_activation(activation)
    c = check_covariance(covariance, 3)
    caa, cab, cac = c[..., 0, 0], c[..., 0, 1], c[..., 0, 2]
    cbc, ccc = c[..., 1, 2], c[..., 2, 2]
    if name == "linear":
        return cbc.copy()
    if name == "erf":
        tilt = 1.0 + 2.0 * caa
        tilted_bc = cbc - 2.0 * cab * cac / tilt
        tilted_cc = ccc - 2.0 * cac**2 / tilt
        return 4.0 / np.pi * tilted_bc / np.sqrt(tilt * (1.0 + 2.0 * np.maximum(tilted_cc, 0.0)))
    live = (caa > 0) & (ccc > 0)
    safe_aa, safe_cc = np.where(live, caa, 1.0), np.where(live, ccc, 1.0)
    residual = np.sqrt(np.maximum(safe_aa * safe_cc - cac**2, 0.0))
    value = cab * residual / (2.0 * np.pi * safe_aa) + cbc * _orthant_2(cac / np.sqrt(safe_aa * safe_cc))
    return np.where(live, value, 0.0)


def four_point(activation: str, covariance: object, n_nodes: int = DEFAULT_PANEL_NODES) -> np.ndarray:
    r""":math:`I_4 = \mathbb E[s'(a)\, s'(b)\, s(c)\, s(d)]` for :math:`(a, b, c, d) \sim \mathcal N(0, C)`.

    .. math:: I_4^{\rm erf} = \frac{8}{\pi^2}\frac{1}{\sqrt{\det(I + 2C_{ab,ab})}}
        \arcsin\frac{2\tilde C_{cd}}{\sqrt{(1 + 2\tilde C_{cc})(1 + 2\tilde C_{dd})}},
        \qquad I_4^{\rm linear} = C_{cd},

    and for ReLU the Stein-Plackett quadrature of the module docstring (see
    :func:`four_point_with_error` for its error estimate).

    Parameters
    ----------
    activation
        ``"erf"``, ``"relu"`` or ``"linear"``.
    covariance
        Shape ``(..., 4, 4)``, the covariance of :math:`(a, b, c, d)`.
    n_nodes
        Gauss-Legendre nodes per panel of the ReLU rule (ignored for the closed forms).

    Returns
    -------
    numpy.ndarray
        Shape ``covariance.shape[:-2]``.
    """
    return four_point_with_error(activation, covariance, n_nodes)[0]


def four_point_with_error(activation: str, covariance: object, n_nodes: int = DEFAULT_PANEL_NODES
                          ) -> tuple[np.ndarray, np.ndarray]:
    r""":func:`four_point` and an absolute error estimate (zero for the closed forms).

    For ReLU the value uses ``2 * n_nodes`` nodes per panel; the estimate is
    :math:`|Q_{2n} - Q_n|` plus the size of the last extrapolation step in
    :math:`\sqrt\varepsilon` (module docstring):

    .. math:: \hat e = |Q_{2n} - Q_n| + \big|\tfrac13(2I_\varepsilon - 3I_{4\varepsilon} + I_{16\varepsilon})\big|.

    Returns
    -------
    value, error_estimate : numpy.ndarray
        Both of shape ``covariance.shape[:-2]``.
    """
    name = check_committee_activation(activation)
    c = check_covariance(covariance, 4)
    n_nodes = integer(n_nodes, "n_nodes", minimum=2)
    if name == "linear":
        value = c[..., 2, 3].copy()
        return value, np.zeros_like(value)
    if name == "erf":
        value = _erf_four_point(c)
        return value, np.zeros_like(value)
    batch = int(np.prod(c.shape[:-2], dtype=np.int64))
    check_memory(60 * max(batch, 1) * _N_PANELS * 2 * n_nodes, "n_nodes", "the quadrature nodes of every covariance")
    return _relu_four_point(c, n_nodes)


def _erf_four_point(c: np.ndarray) -> np.ndarray:
    block = c[..., :2, :2]
    tilt = np.eye(2) + 2.0 * block
    cross = c[..., :2, 2:]  # Cov((a, b), (c, d))
    tilted = c[..., 2:, 2:] - 2.0 * np.swapaxes(cross, -1, -2) @ np.linalg.solve(tilt, cross)
    prefactor = 4.0 / np.pi / np.sqrt(np.linalg.det(tilt))
    denominator = np.sqrt((1.0 + 2.0 * np.maximum(tilted[..., 0, 0], 0.0)) * (1.0 + 2.0 * np.maximum(tilted[..., 1, 1],
                                                                                                      0.0)))
    return prefactor * 2.0 / np.pi * _safe_arcsin(2.0 * tilted[..., 0, 1] / denominator)


@cache
def _graded_rule(n_nodes: int) -> tuple[np.ndarray, np.ndarray]:
    """Gauss-Legendre nodes and weights on [0, 1], on panels graded geometrically (ratio 4) towards 0."""
    edges = np.concatenate([[0.0], 4.0 ** -np.arange(_N_PANELS - 1, -1, -1, dtype=float)])
    x, w = np.polynomial.legendre.leggauss(n_nodes)
    low, high = edges[:-1, None], edges[1:, None]
    nodes = (low + (high - low) * (x + 1.0) / 2.0).ravel()
    weights = ((high - low) * w / 2.0).ravel()
    return nodes, weights


_PAIRS = ((0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3))


def _conditional_orthant(r: np.ndarray, i: int, j: int) -> np.ndarray:
    """P(x_k > 0, x_m > 0 | x_i = x_j = 0) for correlation arrays r (..., 4, 4), {k, m} the other pair."""
    k, m = (index for index in range(4) if index not in (i, j))
    rii = r[..., i, j]
    det = 1.0 - rii**2
    # Cov((k, m) | (i, j)) = R_km,km - R_km,ij R_ij^-1 R_ij,km with R_ij^-1 = [[1, -r], [-r, 1]] / det.
    def quad(p: int, q: int) -> np.ndarray:
        rp_i, rp_j, rq_i, rq_j = r[..., p, i], r[..., p, j], r[..., q, i], r[..., q, j]
        return r[..., p, q] - (rp_i * rq_i + rp_j * rq_j - rii * (rp_i * rq_j + rp_j * rq_i)) / det
    skk, smm, skm = quad(k, k), quad(m, m), quad(k, m)
    return _orthant_2(skm / np.sqrt(np.maximum(skk * smm, 1e-300)))


def orthant_probability_4(correlation: object, n_nodes: int = DEFAULT_PANEL_NODES) -> np.ndarray:
    r"""The orthant probability :math:`P(x_1, \dots, x_4 > 0)` of a positive-definite correlation matrix (Plackett).

    .. math:: P_4(R) = \frac1{16} + \int_0^1 2s \sum_{i<j} \frac{R_{ij}}{2\pi\sqrt{1 - t^2R_{ij}^2}}
        \Big(\frac14 + \frac{\arcsin\rho_{kl\cdot ij}(t)}{2\pi}\Big)\,ds, \qquad t = 1 - s^2,

    with :math:`\rho_{kl\cdot ij}(t)` the partial correlation of the other pair given :math:`(x_i, x_j)`
    under :math:`R(t) = I + t(R - I)`, by Gauss-Legendre on graded panels (module docstring).

    Parameters
    ----------
    correlation
        Shape ``(..., 4, 4)``: symmetric positive semi-definite with unit diagonal.
    n_nodes
        Nodes per panel.

    Returns
    -------
    numpy.ndarray
        Shape ``correlation.shape[:-2]``.
    """
    r = check_covariance(correlation, 4, name="correlation")
    if np.any(np.abs(np.diagonal(r, axis1=-2, axis2=-1) - 1.0) > 1e-10):
        raise ValueError("correlation must have a unit diagonal (a correlation matrix)")
    n_nodes = integer(n_nodes, "n_nodes", minimum=2)
    check_memory(60 * max(r[..., 0, 0].size, 1) * _N_PANELS * n_nodes, "n_nodes", "the quadrature nodes")
    return _orthant_4(r, n_nodes)


def _orthant_4(r: np.ndarray, n_nodes: int) -> np.ndarray:
    s, w = _graded_rule(n_nodes)
    t = 1.0 - s**2
    off = r - np.eye(4)
    path = np.eye(4) + t[:, None, None] * off[..., None, :, :]  # (..., nodes, 4, 4)
    total = np.zeros(path.shape[:-2])
    for i, j in _PAIRS:
        rho = path[..., i, j]
        density = 1.0 / (2.0 * np.pi * np.sqrt(np.maximum(1.0 - rho**2, 1e-300)))
        total += r[..., i, j][..., None] * density * _conditional_orthant(path, i, j)
    return 1.0 / 16.0 + total @ (2.0 * s * w)


def _trivariate_moment(cov: np.ndarray) -> np.ndarray:
    r""":math:`\mathbb E[y_3\,\Theta(y_1)\Theta(y_2)\Theta(y_3)]` for centred positive-definite ``cov`` (..., 3, 3)."""
    total = np.zeros(cov.shape[:-2])
    for k in range(3):
        p, q = (m for m in range(3) if m != k)
        skk = cov[..., k, k]
        spp = cov[..., p, p] - cov[..., p, k] ** 2 / skk
        sqq = cov[..., q, q] - cov[..., q, k] ** 2 / skk
        spq = cov[..., p, q] - cov[..., p, k] * cov[..., q, k] / skk
        orthant = _orthant_2(spq / np.sqrt(np.maximum(spp * sqq, 1e-300)))
        total += cov[..., 2, k] / np.sqrt(2.0 * np.pi * skk) * orthant
    return total


def _relu_four_point_correlation(r: np.ndarray, n_nodes: int) -> np.ndarray:
    """I_4 for ReLU at positive-definite correlation matrices r (..., 4, 4)."""
    value = r[..., 2, 3] * _orthant_4(r, n_nodes)
    for j in range(3):
        others = [m for m in range(4) if m != j]  # d (index 3) stays last
        sub = r[..., others, :][..., :, others]
        link = r[..., others, j]
        conditional = sub - link[..., :, None] * link[..., None, :]
        value = value + r[..., 2, j] / np.sqrt(2.0 * np.pi) * _trivariate_moment(conditional)
    return value


def _relu_four_point(c: np.ndarray, n_nodes: int) -> tuple[np.ndarray, np.ndarray]:
    variances = np.diagonal(c, axis1=-2, axis2=-1)
    live = np.all(variances > 0, axis=-1)
    value = np.zeros(c.shape[:-2])
    error = np.zeros(c.shape[:-2])
    if not np.any(live):
        return value, error
    cl = c[live]
    std = np.sqrt(np.diagonal(cl, axis1=-2, axis2=-1))
    r = cl / (std[:, :, None] * std[:, None, :])
    r = 0.5 * (r + np.swapaxes(r, -1, -2))
    eye = np.eye(4)

    def at(eps: float, nodes: int) -> np.ndarray:
        return _relu_four_point_correlation((1.0 - eps) * r + eps * eye, nodes)

    fine = [at(factor * _REGULARISATION, 2 * n_nodes) for factor in (1.0, 4.0, 16.0)]
    coarse = at(_REGULARISATION, n_nodes)
    extrapolated = (8.0 * fine[0] - 6.0 * fine[1] + fine[2]) / 3.0
    scale = std[:, 2] * std[:, 3]
    value[live] = scale * extrapolated
    error[live] = scale * (np.abs(fine[0] - coarse) + np.abs(2.0 * fine[0] - 3.0 * fine[1] + fine[2]) / 3.0)
    return value, error
