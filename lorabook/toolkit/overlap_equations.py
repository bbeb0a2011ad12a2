r"""Overlap equations derived from one symbolic description of a model.

A single-index student sees its input through one preactivation :math:`\lambda = w\cdot x`, and
the teacher through :math:`\lambda_\star = w_\star\cdot x`. For Gaussian inputs the population
risk is then a function :math:`F(q, \rho)` of their covariances
:math:`q = w\cdot w` and :math:`\rho = w\cdot w_\star`, whatever the parametrisation of
:math:`w`. A model (:class:`OverlapModel`) says only how :math:`w` is built: from fixed
orthonormal vectors (:math:`w_\star`, and possibly others) with parameter coefficients, trained
scalars (LoRA scales :math:`u_k`) and trained vectors (the unit LoRA directions :math:`v_k`, or
a free weight), and which overlaps of these vectors are the model's summary statistics.

From that description :func:`overlap_equations` derives with sympy, once per model (cached):

* the covariances :math:`(q, \rho)` as functions of the statistics;
* the drift of one-pass SGD in the limit :math:`\eta \to 0`, in terms of the symbols
  :data:`F_Q`, :data:`F_RHO` for :math:`\partial_q F`, :math:`\partial_\rho F`. With
  :math:`g = \nabla_w F = 2F_q\, w + F_\rho\, w_\star`, a trained scalar :math:`u` moves by
  :math:`\dot u = -g\cdot\partial_u w`, a trained vector :math:`a` with coefficient
  :math:`\gamma_a` in :math:`w` by :math:`\dot a = -\gamma_a g` (projected on the tangent space
  of the sphere, :math:`-\gamma_a(g - (g\cdot a)\,a)`, if :math:`a` is kept at unit norm), and a
  statistic :math:`c = a\cdot b` by :math:`\dot c = \dot a\cdot b + a\cdot\dot b`;
* the finite-learning-rate, finite-batch correction, the coefficient of
  :math:`\delta\,K` with :math:`\delta = \eta d/B` (:data:`NOISE_STRENGTH`) and
  :math:`K = \mathbb E[((s(\lambda) - s_\star(\lambda_\star))\,s'(\lambda))^2]`
  (:data:`GRADIENT_FACTOR`). The per-sample gradient on :math:`a` is :math:`\gamma_a h\,x`,
  :math:`h = (s - y)s'`, so a step changes :math:`a\cdot b` at second order by
  :math:`\eta^2\gamma_a\gamma_b h^2\lVert x\rVert^2/B`, of mean :math:`\eta\,\delta\,\gamma_a\gamma_b K`,
  and renormalising a unit vector adds :math:`-\tfrac12\delta\gamma_a^2 K\, a` to
  :math:`\dot a` (which keeps :math:`a\cdot a = 1`). So

  .. math:: \dot c \mathrel{+}= \delta K\Big(\gamma_a\gamma_b
            - \tfrac12\big(\gamma_a^2[a\ \text{unit}] + \gamma_b^2[b\ \text{unit}]\big)\,c\Big)

  for trained :math:`a, b` (a fixed vector contributes no :math:`\gamma`);
* the Jacobian of the drift at the model's starting point (the linearisation of the search
  phase), after checking that the covariances are stationary there, so that no derivative of
  :math:`F_q, F_\rho` enters it.

:func:`overlap_equations` also turns these expressions into numpy functions (``lambdify``):
the ODE solver, the search-phase analysis and the remedies call the same expressions the book
prints.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

import numpy as np
import sympy as sp

F_Q, F_RHO = sp.symbols("F_q F_rho", real=True)
r"""Symbols for :math:`\partial_q F` and :math:`\partial_\rho F` at the current :math:`(q, \rho)`."""
GRADIENT_FACTOR = sp.Symbol("K", nonnegative=True)
r"""Symbol for :math:`K = \mathbb E[((s(\lambda) - s_\star(\lambda_\star))\,s'(\lambda))^2]`."""
NOISE_STRENGTH = sp.Symbol("delta", nonnegative=True)
r"""Symbol for :math:`\delta = \eta d / B`."""

Vector = dict[str, sp.Expr]
"""A linear combination of named vectors: name -> coefficient."""


@dataclass(frozen=True)
class TrainedVector:
    """A vector that SGD trains: ``unit=True`` if it is renormalised after every step."""

    name: str
    unit: bool


@dataclass(frozen=True)
class OverlapModel:
    r"""Symbolic description of a single-index student :math:`w` and its summary statistics.

    Attributes
    ----------
    name
        A label for messages.
    parameters
        Symbols fixed during training (e.g. the pre-training strength :math:`\mu`).
    fixed_vectors
        Names of fixed orthonormal vectors; ``teacher`` is one of them.
    student
        :math:`w` as pairs (coefficient, vector name); coefficients are expressions in the
        parameters and the trained scalars.
    trained_scalars
        Symbols of the trained scalar coefficients (LoRA scales).
    trained_vectors
        The trained vectors.
    overlaps
        Triples (symbol, vector, vector): the statistics that are inner products, and every inner
        product the derivation needs that is not fixed by orthonormality or unit norm.
    statistics
        The state of the ODE, in order: trained scalars and overlap symbols.
    start
        The values of ``statistics`` where fine-tuning starts (for the linearisation), or
        ``None`` for a model without a search phase (full fine-tuning, whose covariances move at
        first order from the start): no linearisation is derived.
    residual_norm
        An expression for :math:`\sqrt{q - \rho^2}` that is accurate near :math:`q = \rho^2`
        (a product or a sum of squares, never a difference); :func:`overlap_equations` checks
        that its square is :math:`q - \rho^2`.
    teacher
        The fixed vector :math:`w_\star`.
    """

    name: str
    parameters: tuple[sp.Symbol, ...]
    fixed_vectors: tuple[str, ...]
    student: tuple[tuple[sp.Expr, str], ...]
    trained_scalars: tuple[sp.Symbol, ...]
    trained_vectors: tuple[TrainedVector, ...]
    overlaps: tuple[tuple[sp.Symbol, str, str], ...]
    statistics: tuple[sp.Symbol, ...]
    start: tuple[sp.Expr, ...] | None
    residual_norm: sp.Expr
    teacher: str = "w_star"

    @property
    def rank(self) -> int:
        """The number of unit trained vectors (the LoRA rank)."""
        return sum(vector.unit for vector in self.trained_vectors)


@dataclass(frozen=True)
class OverlapEquations:
    r"""The overlap ODE of one :class:`OverlapModel`, as sympy expressions and numpy functions.

    Attributes
    ----------
    model
        The description the equations were derived from.
    covariances
        :math:`(q, \rho)` in the statistics and parameters.
    drift
        The drift of each statistic, in the statistics, parameters, :data:`F_Q` and :data:`F_RHO`.
    correction
        The coefficient of :math:`\delta K` in the equation of each statistic.
    linearization
        The Jacobian of ``drift`` at ``model.start``, in the parameters, :data:`F_Q`, :data:`F_RHO`
        (``None`` if ``model.start`` is ``None``).
    drift_function
        ``drift_function(*statistics, *parameters, F_q, F_rho)``: the numeric drift.
    correction_function
        ``correction_function(*statistics, *parameters)``: the numeric correction coefficients.
    linearization_function
        ``linearization_function(*parameters, F_q, F_rho)``: the numeric Jacobian, as nested lists
        (``None`` if ``model.start`` is ``None``).
    covariance_function
        ``covariance_function(*statistics, *parameters)``: :math:`(q, \rho, \sqrt{q - \rho^2})`,
        with :math:`q` evaluated as :math:`\rho^2 + (q - \rho^2)` from ``residual_norm`` (whose
        square roots treat a rounding-level negative argument as zero).
    """

    model: OverlapModel
    covariances: tuple[sp.Expr, sp.Expr]
    drift: tuple[sp.Expr, ...]
    correction: tuple[sp.Expr, ...]
    linearization: sp.Matrix | None
    drift_function: Callable[..., tuple]
    correction_function: Callable[..., tuple]
    linearization_function: Callable[..., list] | None
    covariance_function: Callable[..., tuple[np.ndarray, np.ndarray, np.ndarray]]

    def ode(self, noise_strength: sp.Expr = NOISE_STRENGTH) -> tuple[sp.Expr, ...]:
        r"""The full right-hand side :math:`\text{drift} + \delta K\,\text{correction}`."""
        return tuple(drift + noise_strength * GRADIENT_FACTOR * correction
                     for drift, correction in zip(self.drift, self.correction, strict=True))


def _nonnegative_sqrt(value):  # noqa: ANN001, ANN202
    return np.sqrt(np.maximum(value, 0.0))


def _add(*terms: tuple[sp.Expr, Vector]) -> Vector:
    """The linear combination sum of coefficient * vector."""
    total: Vector = {}
    for coefficient, vector in terms:
        for name, value in vector.items():
            total[name] = total.get(name, sp.Integer(0)) + coefficient * value
    return total


def _inner_product_table(model: OverlapModel) -> dict[frozenset, sp.Expr]:
    """Inner products of the named vectors: orthonormal fixed vectors, unit trained ones, overlaps."""
    table: dict[frozenset, sp.Expr] = {}
    for first in model.fixed_vectors:
        for second in model.fixed_vectors:
            table[frozenset((first, second))] = sp.Integer(int(first == second))
    for vector in model.trained_vectors:
        if vector.unit:
            table[frozenset((vector.name,))] = sp.Integer(1)
    for symbol, first, second in model.overlaps:
        table[frozenset((first, second))] = symbol
    return table


def _inner(first: Vector, second: Vector, table: dict[frozenset, sp.Expr], model_name: str) -> sp.Expr:
    total = sp.Integer(0)
    for name_a, coefficient_a in first.items():
        for name_b, coefficient_b in second.items():
            key = frozenset((name_a, name_b))
            if key not in table:
                raise ValueError(f"model {model_name!r}: the inner product of {name_a!r} and {name_b!r} is "
                                 "needed; add it to the model's overlaps")
            total += coefficient_a * coefficient_b * table[key]
    return sp.expand(total)


def overlap_equations(model: OverlapModel) -> OverlapEquations:
    r"""Derive the overlap ODE of ``model`` with sympy and compile it (cached per model).

    See the module docstring for the rules. The drift of each statistic is factored (so that
    factors such as :math:`1 - m^2`, which vanish on the boundary of the allowed region, are
    evaluated as products and vanish there exactly).

    Raises
    ------
    TypeError
        If ``model`` is not an :class:`OverlapModel`.
    ValueError
        If the description is incomplete (an inner product the derivation needs is not among the
        overlaps), its ``residual_norm`` does not square to :math:`q - \rho^2`, a statistic is
        neither a trained scalar nor an overlap, or the covariances are not stationary at
        ``start`` (the linearisation would then involve second derivatives of :math:`F`).
    """
    if not isinstance(model, OverlapModel):
        raise TypeError(f"model must be an OverlapModel, got {type(model).__name__}")
    return _derive(model)


@cache
def _derive(model: OverlapModel) -> OverlapEquations:
    table = _inner_product_table(model)
    trained = {vector.name: vector for vector in model.trained_vectors}
    student: Vector = _add(*((coefficient, {name: sp.Integer(1)}) for coefficient, name in model.student))
    teacher: Vector = {model.teacher: sp.Integer(1)}

    def inner(first: Vector, second: Vector) -> sp.Expr:
        return _inner(first, second, table, model.name)

    q, rho = inner(student, student), inner(student, teacher)
    residual_gap = sp.expand(model.residual_norm**2 - (q - rho**2))
    if sp.simplify(residual_gap) != 0:
        raise ValueError(f"model {model.name!r}: residual_norm^2 - (q - rho^2) = {residual_gap}, not 0")

    # The gradient of F(<w, w>, <w, w_*>) in w.
    gradient = _add((2 * F_Q, student), (F_RHO, teacher))
    scale = {name: student.get(name, sp.Integer(0)) for name in trained}  # gamma_a
    velocity: dict[str, Vector] = {}
    renormalisation: dict[str, Vector] = {}
    for name, vector in trained.items():
        along = _add((-scale[name], gradient))
        if vector.unit:
            own = {name: sp.Integer(1)}
            along = _add((1, along), (-inner(along, own), own))
            renormalisation[name] = {name: -scale[name] ** 2 / 2}
        velocity[name] = along

    overlap_of = {symbol: (first, second) for symbol, first, second in model.overlaps}
    drift, correction = [], []
    for statistic in model.statistics:
        if statistic in model.trained_scalars:
            tangent = {name: sp.diff(coefficient, statistic) for name, coefficient in student.items()}
            drift.append(-inner(gradient, tangent))
            correction.append(sp.Integer(0))
            continue
        if statistic not in overlap_of:
            raise ValueError(f"model {model.name!r}: statistic {statistic} is neither a trained scalar nor an overlap")
        first, second = overlap_of[statistic]
        vector_a, vector_b = {first: sp.Integer(1)}, {second: sp.Integer(1)}
        rate = sp.Integer(0)
        noise = sp.Integer(0)
        for name, other in ((first, vector_b), (second, vector_a)):
            if name in trained:
                rate += inner(velocity[name], other)
                if name in renormalisation:
                    noise += inner(renormalisation[name], other)
        if first in trained and second in trained:
            noise += scale[first] * scale[second]
        drift.append(sp.factor(sp.expand(rate)))
        correction.append(sp.factor(sp.expand(noise)))

    statistics, parameters = model.statistics, model.parameters
    jacobian = linearization_function = None
    if model.start is not None:
        at_start = dict(zip(statistics, model.start, strict=True))
        covariance_slopes = sp.Matrix([q, rho]).jacobian(sp.Matrix(statistics)).subs(at_start)
        if covariance_slopes != sp.zeros(2, len(statistics)):
            raise ValueError(f"model {model.name!r}: q and rho are not stationary at the start {at_start}")
        jacobian = sp.Matrix(drift).jacobian(sp.Matrix(statistics)).subs(at_start).applyfunc(sp.factor)
        linearization_function = sp.lambdify((*parameters, F_Q, F_RHO), jacobian.tolist(), modules="numpy")

    drift_function = sp.lambdify((*statistics, *parameters, F_Q, F_RHO), tuple(drift), modules="numpy")
    correction_function = sp.lambdify((*statistics, *parameters), tuple(correction), modules="numpy")
    # A rounding-level negative radicand (a state on the boundary q = rho^2) is a zero residual.
    rho_and_residual = sp.lambdify((*statistics, *parameters), (rho, model.residual_norm),
                                   modules=[{"sqrt": _nonnegative_sqrt}, "numpy"])

    def covariance_function(*values):
        rho_value, residual = (np.asarray(value, dtype=float) for value in rho_and_residual(*values))
        rho_value, residual = np.broadcast_arrays(rho_value, residual)
        return rho_value**2 + residual**2, rho_value, residual

    return OverlapEquations(
        model=model,
        covariances=(q, rho),
        drift=tuple(drift),
        correction=tuple(correction),
        linearization=jacobian,
        drift_function=drift_function,
        correction_function=correction_function,
        linearization_function=linearization_function,
        covariance_function=covariance_function,
    )
