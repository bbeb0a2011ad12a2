r"""Non-aligned pre-training: rank-one LoRA on :math:`w_0 = \mu w_\star + \nu \xi`.

Model (the variant of Nwemadji, Loureiro and Barbier, 2026, with :math:`\nu = 1 - \mu`): the
pre-trained weight has a component :math:`\nu\,\xi` along a unit vector :math:`\xi` orthogonal
to the target direction :math:`w_\star` (a random unit vector has overlap :math:`O(d^{-1/2})`
with :math:`w_\star`; we take it exactly orthogonal). LoRA trains :math:`w = w_0 + u v`,
:math:`\lVert v\rVert = 1`, by the same one-pass spherical SGD as :mod:`lorabook.single_index_lora.sgd`. Three
summary statistics now matter,

.. math:: m = v\cdot w_\star, \qquad p = v\cdot\xi, \qquad u,

through :math:`q = \lVert w\rVert^2 = \mu^2 + \nu^2 + u^2 + 2u(\mu m + \nu p)` and
:math:`\rho = w\cdot w_\star = \mu + u m`, so the risk is still :math:`F(q, \rho)`
(:func:`overlaps_sympy`). The gradient of :math:`F` in :math:`w` is
:math:`2F_q w + F_\rho w_\star`; projecting the gradient on :math:`v` onto the sphere's tangent
space gives the drift of :func:`drift_sympy`, and the renormalisation of :math:`v` adds
:math:`-(\delta/2)\,m\,\mathbb E[G^2]` to :math:`\dot m` and :math:`-(\delta/2)\,p\,\mathbb E[G^2]`
to :math:`\dot p` (as in :func:`lorabook.single_index_lora.lora.overlap_ode_rhs`).

:func:`simulate` runs the SGD, either in :math:`d` dimensions (``"full"``) or exactly in law with
:math:`O(B)` work per step (``"reduced"``: the in-span coordinates of each sample along
:math:`w_\star, \xi` and the unit vector of :math:`v` orthogonal to both, plus a
:math:`\chi^2_{d-3}` variable for the rest, as in :mod:`lorabook.single_index_lora.sgd`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import sympy as sp

from lorabook.single_index_lora.lora import (
    check_noise_strength,
    gradient_factor_of_covariances,
    risk_derivatives_of_covariances,
    risk_of_covariances,
)
from lorabook.single_index_lora.sgd import SIMULATORS, SGDSettings, check_model, resolve_settings
from lorabook.toolkit.activations import activation as activation_function
from lorabook.toolkit.activations import activation_derivative, resolve_teacher

# F_Q and F_RHO are re-exported: code written against earlier versions reads non_aligned.F_Q.
from lorabook.toolkit.overlap_equations import F_Q as F_Q
from lorabook.toolkit.overlap_equations import F_RHO as F_RHO
from lorabook.toolkit.overlap_equations import OverlapModel, TrainedVector, overlap_equations
from lorabook.toolkit.validation import check_memory, choice, integer, real, real_array

U, M, P = sp.symbols("u m p", real=True)
r"""Symbols for the LoRA scale :math:`u` and the overlaps :math:`m = v\cdot w_\star`, :math:`p = v\cdot\xi`."""
MU, NU = sp.symbols("mu nu", nonnegative=True)
r"""Symbols for the aligned and the orthogonal pre-trained components :math:`\mu`, :math:`\nu`."""
MODEL = OverlapModel(
    name="non-aligned rank-one LoRA", parameters=(MU, NU), fixed_vectors=("w_star", "xi"),
    student=((MU, "w_star"), (NU, "xi"), (U, "v")), trained_scalars=(U,),
    trained_vectors=(TrainedVector("v", unit=True),), overlaps=((M, "v", "w_star"), (P, "v", "xi")),
    statistics=(U, M, P), start=(sp.Integer(0),) * 3,
    residual_norm=sp.sqrt((NU + U * P) ** 2 + U**2 * (1 - M**2 - P**2)),
)
r"""The model as an :class:`~lorabook.toolkit.overlap_equations.OverlapModel`: :math:`w = \mu w_\star + \nu\xi + uv`
with statistics :math:`(u, m, p)`; its :func:`~lorabook.toolkit.overlap_equations.overlap_equations` are
what :func:`overlap_ode_rhs` evaluates."""


def overlaps_sympy() -> tuple[sp.Expr, sp.Expr]:
    r""":math:`(q, \rho)` of :math:`w = \mu w_\star + \nu\xi + uv`, derived from :data:`MODEL`.

    .. math:: q = \mu^2 + \nu^2 + u^2 + 2u(\mu m + \nu p), \qquad \rho = \mu + u m.
    """
    return overlap_equations(MODEL).covariances


def drift_sympy() -> tuple[sp.Expr, sp.Expr, sp.Expr]:
    r"""Gradient-flow drift :math:`(\dot u, \dot m, \dot p)` in terms of
    :data:`~lorabook.toolkit.overlap_equations.F_Q`,
    :data:`~lorabook.toolkit.overlap_equations.F_RHO`.

    With :math:`g = \nabla_w R = 2F_q w + F_\rho w_\star`, :math:`\nabla_v R = u g`,
    :math:`\partial_u R = v\cdot g`, and :math:`\dot v = -(I - vv^\top)\nabla_v R`:

    .. math:: \dot u = -v\cdot g, \quad \dot m = -u\,(w_\star\cdot g - m\, v\cdot g), \quad
              \dot p = -u\,(\xi\cdot g - p\, v\cdot g).

    The drift of :func:`lorabook.toolkit.overlap_equations.overlap_equations` for :data:`MODEL`.
    """
    return overlap_equations(MODEL).drift


def _check_state(mu, nu, u, m, p) -> tuple[np.ndarray, ...]:
    mu = real_array(mu, "mu", nonempty=False, minimum=0.0, maximum=1.0)
    nu = real_array(nu, "nu", nonempty=False, minimum=0.0)
    u = real_array(u, "u", nonempty=False)
    m = real_array(m, "m", nonempty=False, minimum=-1.0, maximum=1.0)
    p = real_array(p, "p", nonempty=False, minimum=-1.0, maximum=1.0)
    try:
        mu, nu, u, m, p = np.broadcast_arrays(mu, nu, u, m, p)
    except ValueError:
        raise ValueError(f"mu, nu, u, m, p must broadcast to one shape, got shapes {mu.shape}, {nu.shape}, "
                         f"{u.shape}, {m.shape}, {p.shape}") from None
    if np.any(m * m + p * p > 1 + 1e-12):
        raise ValueError("the overlaps of the unit vector v must satisfy m^2 + p^2 <= 1")
    return mu, nu, u, m, p


def population_risk(activation: str, mu, nu, u, m, p, teacher: str | None = None) -> float | np.ndarray:
    r"""Population risk :math:`R = F(q, \rho)` of the non-aligned model (see :func:`overlaps_sympy`).

    Parameters
    ----------
    activation, teacher
        Student and teacher names (:func:`lorabook.toolkit.activations.check_target`); ``teacher=None``
        is the student.
    mu, nu
        The aligned and orthogonal pre-trained components, :math:`0 \le \mu \le 1`, :math:`\nu \ge 0`.
    u, m, p
        LoRA scale and the overlaps of :math:`v` with :math:`w_\star` and :math:`\xi`
        (:math:`m^2 + p^2 \le 1`).
    """
    teacher = resolve_teacher(activation, teacher)
    mu, nu, u, m, p = _check_state(mu, nu, u, m, p)
    # sigma^2 = q - rho^2 from MODEL.residual_norm, a sum of squares (full precision near q = rho^2).
    q, rho, sigma = overlap_equations(MODEL).covariance_function(u, m, p, mu, nu)
    return risk_of_covariances(activation, rho, sigma, teacher)


def overlap_ode_rhs(
    activation: str, mu, nu, u, m, p, teacher: str | None = None, noise_strength: float = 0.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r"""Right-hand side :math:`(\dot u, \dot m, \dot p)` of the overlap ODE (time = learning rate x steps).

    The drift of :func:`drift_sympy` (lambdified) with :math:`(F_q, F_\rho)` from
    :mod:`lorabook.single_index_lora.lora` at :math:`(q, \rho)`, plus the renormalisation terms
    :math:`-(\delta/2)\,m\,\mathbb E[G^2]` and :math:`-(\delta/2)\,p\,\mathbb E[G^2]`, with
    :math:`\delta` = ``noise_strength`` :math:`= \eta d/B` and
    :math:`G = u(s(\lambda) - s_\star(\lambda_\star))s'(\lambda)`.

    Raises
    ------
    ValueError, TypeError
        For invalid names, states, or a negative ``noise_strength``.
    """
    teacher = resolve_teacher(activation, teacher)
    noise = check_noise_strength(noise_strength)
    mu, nu, u, m, p = _check_state(mu, nu, u, m, p)
    equations = overlap_equations(MODEL)
    q, rho, sigma = equations.covariance_function(u, m, p, mu, nu)
    risk_q, risk_rho = risk_derivatives_of_covariances(activation, rho, sigma, teacher)
    du_dt, dm_dt, dp_dt = (np.broadcast_to(np.asarray(value, dtype=float), q.shape).copy()
                           for value in equations.drift_function(u, m, p, mu, nu, risk_q, risk_rho))
    if np.any(noise > 0):
        factor = noise * gradient_factor_of_covariances(activation, rho, sigma, teacher)
        correction = equations.correction_function(u, m, p, mu, nu)
        du_dt, dm_dt, dp_dt = (value + factor * extra
                               for value, extra in zip((du_dt, dm_dt, dp_dt), correction, strict=True))
    if q.ndim == 0:
        return float(du_dt), float(dm_dt), float(dp_dt)
    return du_dt, dm_dt, dp_dt


@dataclass(frozen=True)
class NonAlignedResult:
    """Trajectories of :math:`(m, p, u)` per seed (leading axis) at the recorded ``steps``."""

    steps: np.ndarray
    time: np.ndarray
    overlap: np.ndarray
    offset_overlap: np.ndarray
    scale: np.ndarray
    dimension: int
    batch_size: int
    learning_rate: float
    simulator: str


def _initial_state(rng: np.random.Generator, dimension: int, n_seeds: int) -> tuple[np.ndarray, np.ndarray]:
    """(m0, p0) of v0 uniform on the sphere: two coordinates of a normalised Gaussian vector."""
    pair = rng.standard_normal((2, n_seeds))
    rest = rng.chisquare(dimension - 2, size=n_seeds)
    norm = np.sqrt(pair[0] ** 2 + pair[1] ** 2 + rest)
    return pair[0] / norm, pair[1] / norm


def simulate(
    simulator: str,
    activation: str,
    settings: SGDSettings | None = None,
    *,
    pretraining_strength: float,
    offset_strength: float,
    teacher: str | None = None,
    initial_scale: float = 0.0,
    initial_overlaps: tuple[float, float] | None = None,
    **sgd_settings: object,
) -> NonAlignedResult:
    r"""One-pass spherical SGD of rank-one LoRA on :math:`w_0 = \mu w_\star + \nu\xi` (:math:`u` trained).

    Parameters
    ----------
    simulator
        ``"full"`` (explicit :math:`d`-dimensional vectors) or ``"reduced"`` (exact in law, cost
        independent of :math:`d`).
    activation, teacher
        Student and teacher names; ``teacher=None`` is the student.
    settings
        The :class:`lorabook.single_index_lora.sgd.SGDSettings` of the runs (:math:`d \ge 4`, no
        antithetic batches), or ``None`` and its fields as keywords.
    pretraining_strength, offset_strength
        :math:`\mu \in [0, 1]` and :math:`\nu \ge 0` (the paper's variant has :math:`\nu = 1 - \mu`).
    initial_scale
        :math:`u_0`.
    initial_overlaps
        ``None``: :math:`v_0` uniform on the sphere; or a pair :math:`(m_0, p_0)` with
        :math:`m_0^2 + p_0^2 \le 1` used for every seed (the rest of :math:`v_0` uniform).
    """
    choice(simulator, "simulator", SIMULATORS)
    settings = resolve_settings(settings, sgd_settings)
    # A fourth direction (xi) beyond the three of the aligned model.
    integer(settings.dimension, "dimension", minimum=4)
    if settings.antithetic:
        raise ValueError("the non-aligned simulators draw independent samples: settings.antithetic must be False")
    teacher = check_model(activation, teacher, pretraining_strength, initial_scale, settings.n_seeds)
    dimension, learning_rate, batch_size = settings.dimension, settings.learning_rate, settings.batch_size
    n_steps, n_seeds = settings.n_steps, settings.n_seeds
    real(offset_strength, "offset_strength", minimum=0.0)
    real(initial_scale, "initial_scale")
    if initial_overlaps is not None:
        pair = real_array(initial_overlaps, "initial_overlaps", ndim=1, minimum=-1.0, maximum=1.0)
        if pair.size != 2:
            raise ValueError(f"initial_overlaps must be a pair (m0, p0), got {pair.size} numbers")
        if not pair[0] * pair[0] + pair[1] * pair[1] <= 1:
            raise ValueError(f"initial_overlaps (m0, p0) must satisfy m0^2 + p0^2 <= 1, got {initial_overlaps!r}")
    settings.check_batch_memory(3)
    if simulator == "full":
        check_memory((2 * int(batch_size) + 4) * int(n_seeds) * int(dimension), "dimension",
                     "a step's samples and the directions of every seed")
    rng = settings.rng()
    m, p = _initial_state(rng, dimension, n_seeds)
    if initial_overlaps is not None:
        m0, p0 = (float(value) for value in initial_overlaps)
        m, p = np.full(n_seeds, m0), np.full(n_seeds, p0)
    u = np.full(n_seeds, float(initial_scale))
    steps = settings.record_steps()
    records = np.empty((3, n_seeds, steps.size))
    functions = (activation_function(activation), activation_derivative(activation), activation_function(teacher))
    run = _run_full if simulator == "full" else _run_reduced
    run(rng, functions, m, p, u, dimension, float(learning_rate), batch_size, n_steps, float(pretraining_strength),
        float(offset_strength), steps, records)
    return NonAlignedResult(steps=steps, time=learning_rate * steps.astype(float), overlap=records[0],
                            offset_overlap=records[1], scale=records[2], dimension=int(dimension),
                            batch_size=int(batch_size), learning_rate=float(learning_rate), simulator=simulator)


def _record(steps, records, index, step, m, p, u) -> int:
    if index < steps.size and step == steps[index]:
        records[:, :, index] = (m, p, u)
        return index + 1
    return index


def _run_reduced(rng, functions, m, p, u, d, eta, batch, n_steps, mu, nu, steps, records) -> None:
    s, s_prime, s_star = functions
    n_seeds = m.size
    index = _record(steps, records, 0, 0, m, p, u)
    step_size = eta / batch
    for step in range(1, n_steps + 1):
        # Coordinates of each sample along w_*, xi and e (the unit vector of v orthogonal to both).
        z = rng.standard_normal((3, n_seeds, batch))
        chi_square = rng.chisquare(d - 3, size=n_seeds)
        rest = np.sqrt(np.maximum(1.0 - m * m - p * p, 0.0))
        along_v = m[:, None] * z[0] + p[:, None] * z[1] + rest[:, None] * z[2]
        lam = mu * z[0] + nu * z[1] + u[:, None] * along_v
        h = (s(lam) - s_star(z[0])) * s_prime(lam)
        g = u[:, None] * h
        new = [m - step_size * np.sum(g * z[0], axis=1), p - step_size * np.sum(g * z[1], axis=1),
               rest - step_size * np.sum(g * z[2], axis=1)]
        norm = np.sqrt(new[0] ** 2 + new[1] ** 2 + new[2] ** 2 + step_size**2 * np.sum(g * g, axis=1) * chi_square)
        m, p = new[0] / norm, new[1] / norm
        u = u - step_size * np.sum(h * along_v, axis=1)
        index = _record(steps, records, index, step, m, p, u)


def _run_full(rng, functions, m, p, u, d, eta, batch, n_steps, mu, nu, steps, records) -> None:
    s, s_prime, s_star = functions
    n_seeds = m.size
    # An orthonormal pair (w_*, xi), and v0 with the drawn overlaps (m0, p0) and a uniform rest.
    basis, _ = np.linalg.qr(rng.standard_normal((d, 2)))
    w_star, xi = basis[:, 0], basis[:, 1]
    e = rng.standard_normal((n_seeds, d))
    e -= np.outer(e @ w_star, w_star) + np.outer(e @ xi, xi)
    e /= np.linalg.norm(e, axis=1, keepdims=True)
    rest = np.sqrt(np.maximum(1.0 - m * m - p * p, 0.0))
    v = m[:, None] * w_star + p[:, None] * xi + rest[:, None] * e
    w0 = mu * w_star + nu * xi
    index = _record(steps, records, 0, 0, v @ w_star, v @ xi, u)
    step_size = eta / batch
    for step in range(1, n_steps + 1):
        x = rng.standard_normal((n_seeds, batch, d))
        along_v = np.einsum("sbd,sd->sb", x, v)
        lam_star = x @ w_star
        lam = x @ w0 + u[:, None] * along_v
        h = (s(lam) - s_star(lam_star)) * s_prime(lam)
        v = v - step_size * np.einsum("sb,sbd->sd", u[:, None] * h, x)
        v /= np.linalg.norm(v, axis=1, keepdims=True)
        u = u - step_size * np.sum(h * along_v, axis=1)
        index = _record(steps, records, index, step, v @ w_star, v @ xi, u)
