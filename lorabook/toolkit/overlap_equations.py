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

Committees (:class:`CommitteeModel`, :func:`committee_equations`). A student with :math:`K` rows
:math:`w_k` and a teacher with rows :math:`t_j` see the input through
:math:`\lambda_k = w_k\cdot x` and :math:`\lambda^\star_j = t_j\cdot x`, so the risk is
:math:`F(Q, R)` with :math:`Q_{kl} = w_k\cdot w_l`, :math:`R_{kj} = w_k\cdot t_j`. The same
rules hold row by row: the gradient in :math:`w_k` is
:math:`g_k = \sum_l (\partial_{Q_{kl}}F + \partial_{Q_{lk}}F)\,w_l + \sum_j \partial_{R_{kj}}F\,t_j`,
a trained vector :math:`a` with coefficient :math:`\gamma_{ka}` in :math:`w_k` moves by
:math:`-\sum_k\gamma_{ka}g_k` (projected if unit), and with
:math:`h_k = \partial\ell/\partial\lambda_k` the per-sample gradient on :math:`a` is
:math:`\sum_k\gamma_{ka}h_k\,x`, so the correction, now the coefficient of :math:`\delta` alone, is

.. math:: \dot c \mathrel{+}= \delta\Big(\sum_{kl}\gamma_{ka}\gamma_{lb}G_{kl}
          - \tfrac12\big(G_{aa}[a\ \text{unit}] + G_{bb}[b\ \text{unit}]\big)\,c\Big),
          \qquad G_{kl} = \mathbb E[h_kh_l],\ G_{aa} = \sum_{kl}\gamma_{ka}\gamma_{la}G_{kl}.

A single-index model is the committee :math:`K = M = 1` with :math:`\partial_Q F = F_q`,
:math:`\partial_R F = F_\rho` and :math:`G = K`: :func:`overlap_equations` runs the same
derivation (one private function) and factors the result.

:func:`overlap_equations` also turns these expressions into numpy functions (``lambdify``):
the ODE solver, the search-phase analysis and the remedies call the same expressions the book
prints.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import NamedTuple

import numpy as np
import sympy as sp

from lorabook.toolkit.validation import check_memory, integer

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


@dataclass(frozen=True)
class CommitteeModel:
    r"""Symbolic description of a committee student :math:`w_1, \dots, w_K` against teacher rows :math:`t_j`.

    The same rules as :class:`OverlapModel` with :math:`K` student rows: the risk is a function
    :math:`F(Q, R)` of :math:`Q_{kl} = w_k\cdot w_l` and :math:`R_{kj} = w_k\cdot t_j` (module
    docstring, "Committees").

    Attributes
    ----------
    name
        A label for messages.
    parameters
        Symbols fixed during training (e.g. the pre-trained coefficients :math:`\delta_k`).
    fixed_vectors
        Names of fixed orthonormal vectors; the teacher rows are among them.
    teachers
        The teacher rows :math:`t_1, \dots, t_M`, in order.
    students
        One tuple of pairs (coefficient, vector name) per student row :math:`w_k`.
    trained_scalars, trained_vectors, overlaps, statistics, start
        As in :class:`OverlapModel`; ``start`` may be ``None`` (no linearisation).
    """

    name: str
    parameters: tuple[sp.Symbol, ...]
    fixed_vectors: tuple[str, ...]
    teachers: tuple[str, ...]
    students: tuple[tuple[tuple[sp.Expr, str], ...], ...]
    trained_scalars: tuple[sp.Symbol, ...]
    trained_vectors: tuple[TrainedVector, ...]
    overlaps: tuple[tuple[sp.Symbol, str, str], ...]
    statistics: tuple[sp.Symbol, ...]
    start: tuple[sp.Expr, ...] | None


class CommitteeSymbols(NamedTuple):
    r"""The symbols the committee drift and noise are written in (:func:`committee_symbols`)."""

    risk_q: sp.Matrix
    r""":math:`\partial F/\partial Q_{kl}` (``F_Q_kl``), :math:`K\times K`, one symbol per entry."""
    risk_r: sp.Matrix
    r""":math:`\partial F/\partial R_{kj}` (``F_R_kj``), :math:`K\times M`."""
    noise: sp.Matrix
    r""":math:`G_{kl} = \mathbb E[h_k h_l]` (``G_kl``), :math:`K\times K`, one symbol per entry."""


def committee_symbols(n_students: int, n_teachers: int) -> CommitteeSymbols:
    r"""The matrices of symbols for :math:`\partial F/\partial Q`, :math:`\partial F/\partial R` and :math:`G`.

    Every entry has its own symbol (``F_Q_12`` and ``F_Q_21`` differ); the numeric functions of
    :class:`CommitteeEquations` take the symmetric matrices.

    Raises
    ------
    TypeError, ValueError
        For sizes that are not positive integers, or too large for memory.
    """
    n_students = integer(n_students, "n_students", minimum=1)
    n_teachers = integer(n_teachers, "n_teachers", minimum=1)
    check_memory(2 * 64 * n_students * n_students, "n_students", "the symbols")
    check_memory(64 * n_students * n_teachers, "n_teachers", "the symbols")
    return _committee_symbols(n_students, n_teachers)


@cache
def _committee_symbols(n_students: int, n_teachers: int) -> CommitteeSymbols:
    def matrix(prefix: str, rows: int, columns: int) -> sp.Matrix:
        return sp.Matrix(rows, columns, lambda a, b: sp.Symbol(f"{prefix}_{a + 1}{b + 1}", real=True))

    return CommitteeSymbols(matrix("F_Q", n_students, n_students), matrix("F_R", n_students, n_teachers),
                            matrix("G", n_students, n_students))


@dataclass(frozen=True)
class CommitteeEquations:
    r"""The overlap ODE of one :class:`CommitteeModel`, as sympy expressions and numpy functions.

    Attributes
    ----------
    model
        The description the equations were derived from.
    symbols
        The :class:`CommitteeSymbols` the drift and correction are written in.
    student_overlaps, teacher_overlaps
        :math:`Q` (:math:`K\times K`) and :math:`R` (:math:`K\times M`) in the statistics and parameters.
    drift
        The drift of each statistic, linear in ``symbols.risk_q`` and ``symbols.risk_r``.
    correction
        The coefficient of :math:`\delta` in the equation of each statistic, linear in ``symbols.noise``.
    linearization
        The Jacobian of ``drift`` at ``model.start`` (``None`` if ``model.start`` is ``None``).
    drift_function
        ``drift_function(*statistics, *parameters, risk_q, risk_r)`` with ``risk_q`` (K, K) and
        ``risk_r`` (K, M) arrays: the numeric drift, a tuple over the statistics.
    correction_function
        ``correction_function(*statistics, *parameters, noise)`` with ``noise`` (K, K).
    overlap_function
        ``overlap_function(*statistics, *parameters)``: :math:`(Q, R)` as nested lists.
    linearization_function
        ``linearization_function(*parameters, risk_q, risk_r)``: the numeric Jacobian (or ``None``).
    """

    model: CommitteeModel
    symbols: CommitteeSymbols
    student_overlaps: sp.Matrix
    teacher_overlaps: sp.Matrix
    drift: tuple[sp.Expr, ...]
    correction: tuple[sp.Expr, ...]
    linearization: sp.Matrix | None
    drift_function: Callable[..., tuple]
    correction_function: Callable[..., tuple]
    overlap_function: Callable[..., list]
    linearization_function: Callable[..., list] | None


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


def _flow(model: OverlapModel | CommitteeModel, students: tuple[Vector, ...], teachers: tuple[Vector, ...],
          risk_q: sp.Matrix, risk_r: sp.Matrix, noise: sp.Matrix,
          inner: Callable[[Vector, Vector], sp.Expr]) -> tuple[list[sp.Expr], list[sp.Expr]]:
    """Drift and noise coefficient of every statistic of a committee (rules: module docstring).

    ``risk_q[k, n]`` stands for dF/dQ_kl, ``risk_r[k, j]`` for dF/dR_kj and ``noise[k, n]`` for
    E[h_k h_l]; the results are expanded polynomials in them.
    """
    trained = {vector.name: vector for vector in model.trained_vectors}
    n_students = len(students)
    # The gradient of F(Q, R) in w_k, Q_kl = w_k . w_l, R_kj = w_k . t_j.
    gradients = [_add(*((risk_q[k, n] + risk_q[n, k], students[n]) for n in range(n_students)),
                      *((risk_r[k, j], teachers[j]) for j in range(len(teachers))))
                 for k in range(n_students)]
    scale = {name: [student.get(name, sp.Integer(0)) for student in students] for name in trained}  # gamma_ka

    def noise_of(first: str, second: str) -> sp.Expr:  # sum_kl gamma_ka gamma_lb E[h_k h_l]
        return sum((scale[first][k] * scale[second][n] * noise[k, n]
                    for k in range(n_students) for n in range(n_students)), sp.Integer(0))

    velocity: dict[str, Vector] = {}
    renormalisation: dict[str, Vector] = {}
    for name, vector in trained.items():
        along = _add(*((-scale[name][k], gradients[k]) for k in range(n_students)))
        if vector.unit:
            own = {name: sp.Integer(1)}
            along = _add((1, along), (-inner(along, own), own))
            renormalisation[name] = {name: -noise_of(name, name) / 2}
        velocity[name] = along

    overlap_of = {symbol: (first, second) for symbol, first, second in model.overlaps}
    drift, correction = [], []
    for statistic in model.statistics:
        if statistic in model.trained_scalars:
            rate = sp.Integer(0)
            for student, gradient in zip(students, gradients, strict=True):
                tangent = {name: sp.diff(coefficient, statistic) for name, coefficient in student.items()}
                rate -= inner(gradient, tangent)
            drift.append(sp.expand(rate))
            correction.append(sp.Integer(0))
            continue
        if statistic not in overlap_of:
            raise ValueError(f"model {model.name!r}: statistic {statistic} is neither a trained scalar nor an overlap")
        first, second = overlap_of[statistic]
        vector_a, vector_b = {first: sp.Integer(1)}, {second: sp.Integer(1)}
        rate = sp.Integer(0)
        second_order = sp.Integer(0)
        for name, other in ((first, vector_b), (second, vector_a)):
            if name in trained:
                rate += inner(velocity[name], other)
                if name in renormalisation:
                    second_order += inner(renormalisation[name], other)
        if first in trained and second in trained:
            second_order += noise_of(first, second)
        drift.append(sp.expand(rate))
        correction.append(sp.expand(second_order))
    return drift, correction


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
    student: Vector = _add(*((coefficient, {name: sp.Integer(1)}) for coefficient, name in model.student))
    teacher: Vector = {model.teacher: sp.Integer(1)}

    def inner(first: Vector, second: Vector) -> sp.Expr:
        return _inner(first, second, table, model.name)

    q, rho = inner(student, student), inner(student, teacher)
    residual_gap = sp.expand(model.residual_norm**2 - (q - rho**2))
    if sp.simplify(residual_gap) != 0:
        raise ValueError(f"model {model.name!r}: residual_norm^2 - (q - rho^2) = {residual_gap}, not 0")

    # The single-index student is the committee of one student row and one teacher row.
    drift, correction = _flow(model, (student,), (teacher,), sp.Matrix([[F_Q]]), sp.Matrix([[F_RHO]]),
                              sp.Matrix([[1]]), inner)
    drift = [sp.factor(expr) for expr in drift]
    correction = [sp.factor(expr) for expr in correction]

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


def _linear_part(polynomials: list[sp.Expr], statistics: tuple[sp.Symbol, ...],
                 at_start: dict[sp.Symbol, sp.Expr]) -> sp.Matrix:
    """The Jacobian at ``at_start`` of polynomials in the statistics (their degree-one part there).

    Much faster than ``Matrix.jacobian(...).subs(...)`` for the committee's many-symbol polynomials.
    """
    shift = {symbol: symbol + value for symbol, value in at_start.items() if value != 0}
    rows = []
    for polynomial in polynomials:
        expr = sp.expand(polynomial.xreplace(shift)) if shift else polynomial
        poly = sp.Poly(expr, *statistics)
        rows.append([sp.expand(poly.coeff_monomial(symbol)) for symbol in statistics])
    return sp.Matrix(rows)


def committee_equations(model: CommitteeModel) -> CommitteeEquations:
    r"""Derive the overlap ODE of a committee ``model`` with sympy and compile it (cached per model).

    The rules of :func:`overlap_equations` with :math:`K` student rows (module docstring,
    "Committees"); for :math:`K = 1` they are the same computation.

    Raises
    ------
    TypeError
        If ``model`` is not a :class:`CommitteeModel`.
    ValueError
        If an inner product the derivation needs is missing, a statistic is neither a trained
        scalar nor an overlap, or :math:`Q` and :math:`R` are not stationary at ``start``.
    """
    if not isinstance(model, CommitteeModel):
        raise TypeError(f"model must be a CommitteeModel, got {type(model).__name__}")
    return _derive_committee(model)


@cache
def _derive_committee(model: CommitteeModel) -> CommitteeEquations:
    table = _inner_product_table(model)
    students = tuple(_add(*((coefficient, {name: sp.Integer(1)}) for coefficient, name in row))
                     for row in model.students)
    teachers = tuple({name: sp.Integer(1)} for name in model.teachers)

    def inner(first: Vector, second: Vector) -> sp.Expr:
        return _inner(first, second, table, model.name)

    Q = sp.Matrix(len(students), len(students), lambda k, n: inner(students[k], students[n]))
    R = sp.Matrix(len(students), len(teachers), lambda k, j: inner(students[k], teachers[j]))
    symbols = _committee_symbols(len(students), len(teachers))
    drift, correction = _flow(model, students, teachers, symbols.risk_q, symbols.risk_r, symbols.noise, inner)

    statistics, parameters = model.statistics, model.parameters
    jacobian = linearization_function = None
    risk_args = (symbols.risk_q.tolist(), symbols.risk_r.tolist())
    if model.start is not None:
        at_start = dict(zip(statistics, model.start, strict=True))
        slopes = _linear_part([*Q, *R], statistics, at_start)
        if slopes != sp.zeros(*slopes.shape):
            raise ValueError(f"model {model.name!r}: Q and R are not stationary at the start {at_start}")
        jacobian = _linear_part(drift, statistics, at_start)
        linearization_function = sp.lambdify((*parameters, *risk_args), jacobian.tolist(), modules="numpy")

    drift_function = sp.lambdify((*statistics, *parameters, *risk_args), tuple(drift), modules="numpy")
    correction_function = sp.lambdify((*statistics, *parameters, symbols.noise.tolist()), tuple(correction),
                                      modules="numpy")
    overlap_function = sp.lambdify((*statistics, *parameters), (Q.tolist(), R.tolist()), modules="numpy")
    return CommitteeEquations(
        model=model, symbols=symbols, student_overlaps=Q, teacher_overlaps=R, drift=tuple(drift),
        correction=tuple(correction), linearization=jacobian, drift_function=drift_function,
        correction_function=correction_function, overlap_function=overlap_function,
        linearization_function=linearization_function,
    )
