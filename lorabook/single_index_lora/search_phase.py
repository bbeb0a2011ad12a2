r"""The search phase of rank-one LoRA: eigen-directions, truncated Hermite series, escape-time fits.

At the pre-trained fixed point :math:`(u, m) = (0, 0)` the overlap flow of the LoRA single-index
model linearises to

.. math:: \frac{d}{dt}\begin{pmatrix} u \\ m \end{pmatrix}
          = \begin{pmatrix} B & A \\ A & 0 \end{pmatrix}\begin{pmatrix} u \\ m \end{pmatrix},
          \qquad A = -(2\mu F_q + F_\rho), \quad B = -2F_q,

with escape rate :math:`\lambda_+ = (B + \sqrt{B^2 + 4A^2})/2` and search time
:math:`\tau = 1/\lambda_+` (exact values: :func:`lorabook.single_index_lora.lora.linearization`,
:func:`lorabook.single_index_lora.lora.search_time`). This module adds what Chapter 5 of the book needs around them:

* :func:`unstable_direction`: the unit eigenvector of the unstable mode, i.e. the combination
  :math:`p = e_u u + e_m m` that grows like :math:`e^{\lambda_+ t}`;
* :func:`hermite_series_linearization`, :func:`hermite_series_search_time`: :math:`(A, B)` and
  :math:`\tau` from a Hermite (Mehler) series of :math:`F(q, \rho)` truncated at degree
  :math:`N`, the kind of evaluation a closed form replaces, to measure its truncation error;
* :func:`discrete_search_time`: the search time of the mean SGD map at a finite learning rate;
* :func:`escape_time_slope`: the least-squares slope of escape times against :math:`\log d`, with
  its standard error, the quantity that measures :math:`\tau/2` in simulations;
* :func:`search_time_divergence_sympy`: the constant :math:`C` of :math:`\tau \sim C (1 - \mu)^{-2}`
  as :math:`\mu \to 1` for a matching teacher;
* :func:`output_gradient_moment`, :func:`measure_search_time`: a cheap SGD measurement of
  :math:`\tau` from the growth of the mean unstable combination, with common random numbers
  (Chapter 6 of the book).

All functions are pure; time is :math:`t = \eta \times` steps throughout.
"""

from __future__ import annotations

from functools import cache, lru_cache

import numpy as np
import sympy as sp

from lorabook.single_index_lora import sgd
from lorabook.single_index_lora.lora import (
    MU,
    check_pretraining_strength,
    escape_rate,
    gradient_factor_of_covariances,
    linearization,
    linearization_from_risk_derivatives,
    linearization_sympy,
    search_time,
)
from lorabook.toolkit.activations import activation as activation_function
from lorabook.toolkit.activations import activation_derivative, resolve_teacher
from lorabook.toolkit.validation import boolean, check_memory, generator, integer, real, real_array

_QUADRATURE_NODES = 400
"""Gauss-Legendre nodes on each half line of the truncated real line (see :func:`_half_line_rule`)."""


def unstable_direction(coefficient_a: float, coefficient_b: float) -> tuple[float, float]:
    r"""Unit eigenvector :math:`(e_u, e_m)` of :math:`\begin{pmatrix} B & A \\ A & 0 \end{pmatrix}` for
    :math:`\lambda_+`.

    From :math:`A e_u = \lambda_+ e_m`, the eigenvector is proportional to :math:`(\lambda_+, A)`;
    it is normalised with :math:`e_u \ge 0`. The matrix is symmetric, so
    :math:`p = e_u u + e_m m` obeys :math:`\dot p = \lambda_+ p` exactly in the linearised flow,
    whatever the stable component.

    Parameters
    ----------
    coefficient_a, coefficient_b
        :math:`A` and :math:`B` (real numbers, not both zero).

    Returns
    -------
    (e_u, e_m) : tuple of float

    Raises
    ------
    TypeError
        If a coefficient is not a real number.
    ValueError
        If a coefficient is not finite, or :math:`A = 0` with :math:`B \le 0` (no unstable mode).
    """
    a = real(coefficient_a, "coefficient_a")
    b = real(coefficient_b, "coefficient_b")
    rate = float(escape_rate(a, b))
    if rate <= 0:
        raise ValueError(f"no unstable mode: lambda_+ = {rate} for A = {a}, B = {b} (need A != 0 or B > 0)")
    if a == 0.0:
        return 1.0, 0.0  # B > 0: u alone grows
    norm = np.hypot(rate, a)
    return rate / norm, a / norm


@lru_cache(maxsize=8)
def _half_line_rule(n_nodes: int, half_width: float) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights of E[f(z)], z ~ N(0, 1), by Gauss-Legendre on [-L, 0] and [0, L].

    Splitting at 0 keeps the rule exponentially convergent for activations smooth on each half line
    (ReLU has its kink at 0); the Gaussian mass beyond L = half_width is below exp(-L^2/2).
    """
    x, w = np.polynomial.legendre.leggauss(n_nodes)
    half = 0.5 * half_width * (x + 1.0)
    nodes = np.concatenate([-half[::-1], half])
    weights = np.concatenate([w[::-1], w]) * 0.5 * half_width
    weights = weights * np.exp(-0.5 * nodes**2) / np.sqrt(2.0 * np.pi)
    return nodes, weights


def _normalised_hermite(n_max: int, z: np.ndarray) -> np.ndarray:
    """Rows He_k(z)/sqrt(k!), k = 0..n_max, by the normalised three-term recurrence (no overflow)."""
    table = np.empty((n_max + 1, z.size))
    table[0] = 1.0
    if n_max >= 1:
        table[1] = z
    for k in range(1, n_max):
        table[k + 1] = (z * table[k] - np.sqrt(k) * table[k - 1]) / np.sqrt(k + 1)
    return table


def _check_terms(n_terms: object, lowest_order: object) -> tuple[int, int]:
    # N = 0 keeps only the mean term k = 0, which does not depend on rho (F_rho = 0): no overlap
    # enters the series, so the truncation degree must be at least 1.
    n_terms = integer(n_terms, "n_terms", minimum=1)
    check_memory(n_terms * 2 * _QUADRATURE_NODES, "n_terms", "the table of Hermite polynomials at the nodes")
    lowest_order = integer(lowest_order, "lowest_order", minimum=None)
    if lowest_order not in (0, 1):
        raise ValueError("lowest_order must be 0 (full series) or 1 (series without the k = 0 mean term), got "
                         f"{lowest_order}")
    return n_terms, lowest_order


def hermite_series_linearization(
    activation: str,
    mu: float | np.ndarray,
    n_terms: int,
    teacher: str | None = None,
    lowest_order: int = 0,
) -> tuple[float | np.ndarray, float | np.ndarray]:
    r""":math:`(A, B)` from the Hermite (Mehler) series of :math:`F(q, \rho)` truncated at degree :math:`N`.

    Write :math:`\lambda = \sqrt q\, x` with :math:`x \sim \mathcal N(0, 1)` and expand both
    :math:`z \mapsto s(\sqrt q z)` and the teacher in Hermite polynomials,
    :math:`a_k(q) = \mathbb E[s(\sqrt q z)\mathrm{He}_k(z)]/k!`,
    :math:`c_k = \mathbb E[s_\star(z)\mathrm{He}_k(z)]/k!`. Since
    :math:`(\lambda/\sqrt q, \lambda_\star)` are standard normals with correlation
    :math:`r = \rho/\sqrt q`, Mehler's formula gives

    .. math:: F(q, \rho) = \tfrac12\mathbb E[s(\sqrt q z)^2]
              - \sum_{k=k_0}^{N} k!\, a_k(q)\, c_k\, \Big(\frac{\rho}{\sqrt q}\Big)^k
              + \tfrac12\mathbb E[s_\star(z)^2].

    Differentiating term by term at :math:`q = \mu^2`, :math:`\rho = \mu` (where :math:`r = 1`),
    with :math:`a_k'(q) = \mathbb E[z\, s'(\mu z)\mathrm{He}_k(z)]/(2\mu\, k!)`,

    .. math:: F_q = \frac{1}{2\mu}\mathbb E[z\, s(\mu z) s'(\mu z)]
              - \sum_{k=k_0}^{N} k!\, c_k \Big(a_k'(\mu^2) - \frac{k}{2\mu^2} a_k(\mu^2)\Big),
              \qquad
              F_\rho = -\sum_{k=k_0}^{N} k!\, c_k\, \frac{k}{\mu}\, a_k(\mu^2),

    and :math:`A = -(2\mu F_q + F_\rho)`, :math:`B = -2F_q`. As :math:`N \to \infty` with
    :math:`k_0 = 0` this converges to :func:`lorabook.single_index_lora.lora.linearization` (at :math:`r = 1`, the edge
    of Mehler's series, slowly for non-smooth activations such as ReLU); for a Hermite polynomial
    :math:`\mathrm{He}_j` student and teacher it is exact for every :math:`N \ge j`. The factors
    :math:`1/\mu` and :math:`k/\mu^2` amplify the truncation error at small :math:`\mu`.

    The one-dimensional expectations use Gauss-Legendre quadrature (400 nodes) on each half of
    :math:`[-L, L]`, :math:`L = 2\sqrt{N} + 10`, split at 0 (exact to rounding for activations
    smooth on each half line, including ReLU); Hermite polynomials are evaluated normalised,
    :math:`\mathrm{He}_k/\sqrt{k!}`.

    Parameters
    ----------
    activation
        Student activation name (:data:`lorabook.toolkit.activations.ACTIVATION_NAMES`).
    mu
        Pre-training strength(s) in ``(0, 1]``.
    n_terms
        Truncation degree :math:`N \ge 1` (at :math:`N = 0` the series would not depend on
        :math:`\rho` at all).
    teacher
        Teacher activation name; ``None`` for the same as the student.
    lowest_order
        :math:`k_0`: ``0`` for the series above; ``1`` drops the :math:`k = 0` term (the product of
        the two activations' means), a variant used to test how the published ReLU curve could
        arise.

    Returns
    -------
    (A, B)
        Floats for scalar ``mu``, arrays of ``mu``'s shape otherwise.

    Raises
    ------
    ValueError, TypeError
        For an unknown activation name, ``mu`` outside ``(0, 1]``, a non-positive or non-integer
        ``n_terms`` or ``lowest_order`` not in ``(0, 1)``.
    """
    teacher_name = resolve_teacher(activation, teacher)
    n_terms, lowest_order = _check_terms(n_terms, lowest_order)
    values = check_pretraining_strength(mu)
    nodes, weights = _half_line_rule(_QUADRATURE_NODES, 2.0 * np.sqrt(n_terms) + 10.0)
    basis = _normalised_hermite(n_terms, nodes)  # He_k(z_i)/sqrt(k!)
    student, slope = activation_function(activation), activation_derivative(activation)
    # Normalised coefficients sqrt(k!) c_k, so that k! c_k a_k = (sqrt(k!) c_k)(sqrt(k!) a_k).
    target = basis @ (weights * activation_function(teacher_name)(nodes))
    orders = np.arange(n_terms + 1)
    kept = orders >= lowest_order
    coefficient_a = np.empty(values.shape)
    coefficient_b = np.empty(values.shape)
    for index, value in np.ndenumerate(values):
        scaled, scaled_slope = student(value * nodes), slope(value * nodes)
        a_k = basis @ (weights * scaled)  # sqrt(k!) a_k(mu^2)
        a_k_prime = basis @ (weights * nodes * scaled_slope) / (2.0 * value)  # sqrt(k!) a_k'(mu^2)
        self_term = np.sum(weights * nodes * scaled * scaled_slope) / (2.0 * value)
        risk_q = self_term - np.sum((target * (a_k_prime - orders / (2.0 * value**2) * a_k))[kept])
        risk_rho = -np.sum((target * orders * a_k)[kept]) / value
        coefficient_a[index], coefficient_b[index] = linearization_from_risk_derivatives(value, risk_q, risk_rho)
    if values.ndim == 0:
        return float(coefficient_a), float(coefficient_b)
    return coefficient_a, coefficient_b


def hermite_series_search_time(
    activation: str,
    mu: float | np.ndarray,
    n_terms: int,
    teacher: str | None = None,
    lowest_order: int = 0,
) -> float | np.ndarray:
    r""":math:`\tau_N(\mu) = 1/\lambda_+` with :math:`(A, B)` from :func:`hermite_series_linearization`.

    :math:`\tau_N = \infty` where the truncated :math:`\lambda_+` vanishes. Arguments and errors as
    for :func:`hermite_series_linearization`.
    """
    coefficient_a, coefficient_b = hermite_series_linearization(activation, mu, n_terms, teacher, lowest_order)
    rate = np.asarray(escape_rate(coefficient_a, coefficient_b), dtype=float)
    with np.errstate(divide="ignore"):
        time = np.where(rate > 0, 1.0 / np.where(rate > 0, rate, 1.0), np.inf)
    return float(time) if time.ndim == 0 else time


def discrete_search_time(search_time: float | np.ndarray, learning_rate: float) -> float | np.ndarray:
    r"""Search time of the mean SGD map at learning rate :math:`\eta`: :math:`\tau_\eta = \eta/\log(1 +
    \eta/\tau)`.

    In the search phase the mean of one SGD step on :math:`(u, m)` is the linear map
    :math:`I + \eta J` (:math:`J` the linearised flow), whose unstable eigenvalue is
    :math:`1 + \eta\lambda_+`. Per unit time :math:`t = \eta \times` steps the unstable combination
    therefore grows at the rate :math:`\log(1 + \eta\lambda_+)/\eta = \lambda_+ - \eta\lambda_+^2/2 +
    O(\eta^2)`,
    so :math:`\tau_\eta = \tau\,(1 + \eta/(2\tau) + O(\eta^2))`.

    Parameters
    ----------
    search_time
        :math:`\tau > 0` (may be ``inf``).
    learning_rate
        :math:`\eta > 0`.

    Raises
    ------
    ValueError
        For a non-positive ``search_time`` or a non-positive or non-finite ``learning_rate``.
    """
    tau = real_array(search_time, "search_time", nonempty=False, minimum=0.0, strict_minimum=True,
                     allow_infinite=True)
    learning_rate = real(learning_rate, "learning_rate", minimum=0.0, strict_minimum=True)
    with np.errstate(divide="ignore"):
        value = learning_rate / np.log1p(learning_rate / tau)
    return float(value) if value.ndim == 0 else value


def escape_time_slope(dimensions: object, escape_times: object) -> tuple[float, float, float]:
    r"""Least-squares fit :math:`t_{\rm exit} = a \log d + b` over individual runs, with the slope's standard error.

    .. math:: \hat a = \frac{\sum_i (x_i - \bar x)(t_i - \bar t)}{\sum_i (x_i - \bar x)^2},
              \qquad \mathrm{se}(\hat a) = \sqrt{\frac{\sum_i r_i^2/(n - 2)}{\sum_i (x_i - \bar x)^2}},
              \qquad x_i = \log d_i,

    with :math:`r_i` the residuals and :math:`n` the number of runs (the classical ordinary least
    squares error for independent runs with a common spread). In the search phase
    :math:`t_{\rm exit} \approx (\tau/2)\log d + \text{const}`, so :math:`\hat a` estimates :math:`\tau/2`.

    Parameters
    ----------
    dimensions
        :math:`d` of each run (one entry per run), or one :math:`d` per row of ``escape_times``.
    escape_times
        Escape times, shape ``(n_runs,)`` matching ``dimensions``, or ``(n_dimensions, n_seeds)``.

    Returns
    -------
    (slope, intercept, slope_standard_error)

    Raises
    ------
    ValueError
        If the shapes do not match, a time is not finite (censored runs must be handled first),
        a dimension is not positive, or fewer than two distinct dimensions or three runs are given.
    """
    times = real_array(escape_times, "escape_times", ndim=(1, 2), allow_infinite=True)
    dims = real_array(dimensions, "dimensions", ndim=1, allow_infinite=True)
    if times.ndim == 2 and dims.ndim == 1 and dims.size == times.shape[0]:
        dims = np.repeat(dims, times.shape[1])
        times = times.ravel()
    if times.ndim != 1 or dims.shape != times.shape:
        raise ValueError(f"escape_times (shape {np.shape(escape_times)}) must have one entry per run in dimensions "
                         f"(shape {np.shape(dimensions)}), or one row per dimension")
    if not np.all(np.isfinite(times)):
        raise ValueError("escape_times must be finite; censored (non-escaped) runs must be removed or handled first")
    if np.any(~(dims > 0)):
        raise ValueError("dimensions must be positive")
    if np.unique(dims).size < 2 or times.size < 3:
        raise ValueError("need at least two distinct dimensions and three runs")
    x = np.log(dims)
    centred = x - x.mean()
    spread = np.sum(centred**2)
    slope = float(np.sum(centred * (times - times.mean())) / spread)
    intercept = float(times.mean() - slope * x.mean())
    residuals = times - (slope * x + intercept)
    standard_error = float(np.sqrt(np.sum(residuals**2) / (times.size - 2) / spread))
    return slope, intercept, standard_error


@cache
def search_time_divergence_sympy(activation: str, teacher: str | None = None) -> sp.Expr:
    r"""Exact constant :math:`C = |B(1)|/A'(1)^2` of :math:`\tau(\mu) \sim C\,(1 - \mu)^{-2}` as :math:`\mu \to
    1`.

    For a matching teacher :math:`A(1) = 0` and :math:`B(1) = -\mathbb E[s'(z)^2] < 0`. With
    :math:`A \approx A'(1)(\mu - 1)`, :math:`\lambda_+ = 2A^2/(\sqrt{B^2 + 4A^2} - B)
    \approx A^2/|B|`, hence :math:`\tau \approx |B(1)|/(A'(1)^2 (1 - \mu)^2)`. The constant is
    computed from :func:`lorabook.single_index_lora.lora.linearization_sympy`, after checking :math:`A(1) = 0`
    and :math:`B(1) < 0`.

    Parameters
    ----------
    activation, teacher
        Activation names with a closed-form linearisation (not the sigmoid); ``teacher=None``
        means the same as the student.

    Returns
    -------
    sympy.Expr

    Raises
    ------
    ValueError
        If :math:`A(1) \ne 0` or :math:`B(1) \ge 0` (no divergence of this form), or
        :math:`A'(1) = 0` (a faster divergence).
    NotImplementedError
        For pairs without a closed form (see :func:`lorabook.single_index_lora.lora.linearization_sympy`).
    """
    coefficient_a, coefficient_b = linearization_sympy(activation, teacher)
    a_at_one = sp.simplify(coefficient_a.subs(MU, 1))
    b_at_one = sp.simplify(coefficient_b.subs(MU, 1))
    slope_at_one = sp.simplify(sp.diff(coefficient_a, MU).subs(MU, 1))
    if a_at_one != 0 or not bool(b_at_one < 0):
        raise ValueError(f"tau(mu) ~ C (1 - mu)^-2 needs A(1) = 0 and B(1) < 0; got A(1) = {a_at_one}, B(1) = "
                         f"{b_at_one}")
    if slope_at_one == 0:
        raise ValueError("A'(1) = 0: tau diverges faster than (1 - mu)^-2")
    return sp.simplify(-b_at_one / slope_at_one**2)


def output_gradient_moment(
    activation: str, mu: float, teacher: str | None = None, *, antithetic: bool = False
) -> float:
    r"""Second moment of the output gradient at the pre-trained point, :math:`\E[h^2]`.

    At :math:`(u, m) = (0, 0)` the student's preactivation is :math:`\mu\lambda_\star` with
    :math:`\lambda_\star = z \sim N(0, 1)`, and the per-sample gradient on :math:`u` is proportional to

    .. math:: h = \big(s(\mu z) - s_\star(z)\big)\, s'(\mu z), \qquad
              \E[h^2] = \int \frac{e^{-z^2/2}}{\sqrt{2\pi}}\, h(z)^2\, dz,

    the variance per sample of the noise that SGD adds to :math:`u` in the search phase. It is the
    factor :math:`\mathbb E[G^2]/u^2` of :func:`lorabook.single_index_lora.lora.gradient_second_moment` at
    :math:`q = \mu^2`, :math:`\rho = \mu` (:math:`\sigma = 0`), evaluated by the same code: exact for
    polynomials and for erf with erf or polynomial teachers, quadrature otherwise.

    With **antithetic batches** (:func:`lorabook.single_index_lora.sgd.simulate_reduced` with ``antithetic=True``) a
    pair :math:`(x, -x)` contributes :math:`h(z) z_2 + h(-z)(-z_2) = 2 z_2\, h_{\rm odd}(z)`, with
    :math:`z_2 = v\cdot x` independent of :math:`z` at :math:`m = 0` and
    :math:`h_{\rm odd}(z) = (h(z) - h(-z))/2`; a batch of :math:`B` samples holds :math:`B/2` pairs, so
    the variance of the batch mean is :math:`2\E[h_{\rm odd}^2]/B`. The returned moment is then

    .. math:: 2\,\E[h_{\rm odd}^2] = \tfrac12\,\E\big[(h(z) - h(-z))^2\big],

    which is :math:`2\E[h^2]` for an odd :math:`h` (odd student and teacher: the pairs double the
    noise) and drops the label for an odd student with an even teacher
    (:math:`h_{\rm odd} = s(\mu z)s'(\mu z)`). It is computed by Gauss-Legendre quadrature on
    :math:`[-12, 0]` and :math:`[0, 12]` (400 nodes each; accurate to rounding for polynomial pairs,
    exponentially convergent for the others, which are smooth on each half line).

    Parameters
    ----------
    activation
        Student activation :math:`s` (a name of :data:`lorabook.toolkit.activations.ACTIVATION_NAMES`).
    mu
        Pre-training strength :math:`\mu \in (0, 1]` (a scalar).
    teacher
        Teacher :math:`s_\star` (an activation or composite target such as ``"He3^2"``);
        ``None`` means the student's own activation.
    antithetic
        If true, the moment that sets the noise of antithetic batches (above).

    Raises
    ------
    ValueError
        For an unknown activation or teacher, or :math:`\mu` outside :math:`(0, 1]`.
    TypeError
        If ``antithetic`` is not a bool.
    """
    teacher_name = resolve_teacher(activation, teacher)
    value = _scalar_strength(mu)
    boolean(antithetic, "antithetic")
    if antithetic:
        student, first, target = (activation_function(activation), activation_derivative(activation),
                                  activation_function(teacher_name))
        nodes, weights = _half_line_rule(_QUADRATURE_NODES, 12.0)  # Gaussian mass beyond 12: < 1e-32
        h_plus = (student(value * nodes) - target(nodes)) * first(value * nodes)
        h_minus = (student(-value * nodes) - target(-nodes)) * first(-value * nodes)
        return float(0.5 * weights @ (h_plus - h_minus) ** 2)
    return float(gradient_factor_of_covariances(activation, value, 0.0, teacher_name))


def _scalar_strength(mu: object) -> float:
    values = check_pretraining_strength(mu)
    if values.ndim != 0:
        raise ValueError(f"mu must be a scalar in (0, 1], got an array of shape {values.shape}")
    return float(values)


def measure_search_time(
    activation: str,
    mu: float,
    *,
    n_seeds: int,
    seed: int,
    teacher: str | None = None,
    noise_factor: float = 2500.0,
    amplitude: float = 0.01,
    growth: float = 0.5,
    dimension: int = 10_000,
    antithetic: bool = False,
) -> tuple[float, float, float]:
    r"""Measure the search time :math:`\tau` from the SGD growth of the unstable combination.

    Near the pre-trained point the mean SGD step on :math:`(u, m)` is the map :math:`I + \eta J`,
    so the unstable combination :math:`p = e_u u + e_m m` (:func:`unstable_direction`) started at
    :math:`p_0 e_+` has :math:`\E[p_n] = p_0 (1 + \eta\lambda_+)^n`. The estimator is

    .. math:: \hat\tau = \frac{n\eta}{\log\big(\overline{D_n}/p_0\big)}
              \;\to\; \tau_\eta = \frac{\eta}{\log(1 + \eta/\tau)},
              \qquad D_n = p_n - p_n^{(0)},

    with **common random numbers**: each seed is run twice with the same samples (reduced
    simulator :func:`lorabook.single_index_lora.sgd.simulate_reduced`, trained scale), once from
    :math:`(u_0, m_0) = p_0 e_+` and once from :math:`(0, 0)`. The run from the origin has
    :math:`\E[p_n^{(0)}] = 0` (the dynamics is invariant under :math:`(u, m) \to (-u, -m)`), so
    :math:`\overline{D_n}` is unbiased for :math:`\E[p_n]` to first order in :math:`p_0`, while the
    gradient noise, the same in both runs to first order, cancels.

    Settings: the largest learning rate with :math:`\eta\max(|\lambda_-|, \lambda_+) \le 0.5` and at
    least 20 steps, a run of :math:`n\eta = ` ``growth`` :math:`\times\tau` (:math:`\tau` the exact
    :func:`lorabook.single_index_lora.lora.search_time`), and the batch size that sets
    :math:`\eta/B = 1/(\text{noise\_factor}\;\E[h^2]\,\tau)` (:func:`output_gradient_moment`), which keeps
    the shift of the rate caused by the noise on :math:`u` (through the cubic terms of the flow)
    small. Cost: about :math:`2\,\text{n\_seeds}\times\text{growth}\times\text{noise\_factor}\,
    \E[h^2]\,\tau^2` samples.

    With ``antithetic=True`` both runs use antithetic batches (pairs :math:`(x, -x)`, an even
    :math:`B`), and :math:`\E[h^2]` above becomes the moment of the pairs,
    ``output_gradient_moment(..., antithetic=True)``. The mean step, hence :math:`\lambda_+`, is the
    same; for an odd student with an even teacher the labels cancel in every pair, which removes
    their noise and makes the heavy squared-label targets measurable.

    Parameters
    ----------
    activation
        Student activation :math:`s`.
    mu
        Pre-training strength :math:`\mu \in (0, 1]` (a scalar) with :math:`\lambda_+ > 0`.
    n_seeds
        Number of independent seeds (at least 2, for the standard error).
    seed
        Seed of :func:`numpy.random.default_rng`; both runs of a seed use the same stream.
    teacher
        Teacher :math:`s_\star` (activation or composite target); ``None``: the student's activation.
    noise_factor
        :math:`1/(\eta\,\E[h^2]\,\tau/B)`, positive.
    amplitude
        :math:`p_0 > 0`; the cubic terms of the flow change the rate by a relative :math:`O(p^2)`.
    growth
        :math:`n\eta/\tau > 0`.
    dimension
        :math:`d \ge 3` of the reduced simulator.
    antithetic
        Whether the batches are antithetic pairs (see :func:`lorabook.single_index_lora.sgd.simulate_reduced`).

    Returns
    -------
    (measured, standard_error, tau_eta) : tuple of float
        :math:`\hat\tau`, its standard error (that of :math:`\overline{D_n}` over the seeds,
        propagated through the logarithm) and :math:`\tau_\eta` of the learning rate used
        (:func:`discrete_search_time`), the value :math:`\hat\tau` estimates.
        If the mean difference does not grow (:math:`\overline{D_n} \le p_0`, far too few seeds or a
        wrong setting), ``measured`` is negative, infinite or NaN: check it before use.

    Raises
    ------
    ValueError
        For an unknown activation or teacher, :math:`\mu` outside :math:`(0, 1]` or without an
        unstable mode, ``n_seeds < 2``, or a non-positive ``noise_factor``, ``amplitude`` or ``growth``.
    TypeError
        If ``antithetic`` is not a bool.
    """
    resolve_teacher(activation, teacher)
    value = _scalar_strength(mu)
    boolean(antithetic, "antithetic")
    n_seeds = integer(n_seeds, "n_seeds", minimum=2)  # at least 2, for a standard error
    check_memory(8 * n_seeds, "n_seeds", "the two runs' states of every seed")
    generator(seed, "seed")
    for label, number in (("noise_factor", noise_factor), ("amplitude", amplitude), ("growth", growth)):
        real(number, label, minimum=0.0, strict_minimum=True)
    integer(dimension, "dimension", minimum=3)
    coefficient_a, coefficient_b = linearization(activation, value, teacher)
    e_u, e_m = unstable_direction(coefficient_a, coefficient_b)
    tau = float(search_time(activation, value, teacher))
    fastest = max(abs(float(coefficient_b) - 1 / tau), 1 / tau)  # |lambda_-| = |B - lambda_+|, lambda_+
    learning_rate = min(0.5 / fastest, growth * tau / 20)  # at least 20 steps, so tau_eta - tau < 1.3% tau
    n_steps = max(20, round(growth * tau / learning_rate))
    # eta/B = 1/(noise_factor E[h^2] tau): keeps the rate shift caused by the noise on u small.
    target_batch = learning_rate * noise_factor * output_gradient_moment(activation, value, teacher,
                                                                         antithetic=antithetic) * tau
    batch = max(2, 2 * round(target_batch / 2)) if antithetic else max(1, round(target_batch))
    combination = []
    for start in (amplitude, 0.0):  # the same seed: the same samples in both runs
        run = sgd.simulate_reduced(activation, teacher=teacher, dimension=dimension, learning_rate=learning_rate,
                                   batch_size=batch, n_steps=n_steps, n_seeds=n_seeds, seed=seed,
                                   pretraining_strength=value, initial_scale=start * e_u, train_scale=True,
                                   initial_overlap=start * e_m, n_records=2, antithetic=antithetic)
        combination.append(e_u * run.scale[:, -1] + e_m * run.overlap[:, -1])
    difference = combination[0] - combination[1]
    ratio = difference.mean() / amplitude
    ratio_se = difference.std(ddof=1) / np.sqrt(n_seeds) / amplitude
    duration = n_steps * learning_rate
    measured = duration / np.log(ratio)
    measured_se = measured * ratio_se / ratio / np.log(ratio)
    return float(measured), float(measured_se), float(discrete_search_time(tau, learning_rate))
