r"""Task difficulty in rank-one LoRA: traps of the search time and the bias of even targets.

At the pre-trained point :math:`(u, m) = (0, 0)` the overlap flow linearises to
:math:`\begin{pmatrix} B & A \\ A & 0 \end{pmatrix}` (:func:`lorabook.single_index_lora.lora.linearization_sympy`),
with
search time :math:`\tau = 1/\lambda_+`, :math:`\lambda_+ = (B + \sqrt{B^2 + 4A^2})/2`. This module
gives, for polynomial (Hermite and Hermite-combination) students and teachers, two exact quantities
that Chapter 6 of the book uses:

* :func:`trap_constants_sympy`: the traps :math:`\mu_c` (roots of :math:`A` in :math:`(0, 1)` with
  :math:`B(\mu_c) < 0`) and the constant of the divergence
  :math:`\tau(\mu) \simeq C_{\rm trap}/(\mu - \mu_c)^2`, :math:`C_{\rm trap} = |B(\mu_c)|/A'(\mu_c)^2`;
* :func:`output_mean_sympy` and :func:`bias_linearization_sympy`: the mean of the student's output,
  :math:`c_0(q) = \mathbb E[s(\sqrt q\, z)]`, and the part of :math:`B` that comes from the mismatch
  of the output means, :math:`B^{\rm bias}(\mu) = -2\,(c_0(\mu^2) - c_0^\star)\,c_0'(\mu^2)`.

All functions are pure and return sympy expressions in :data:`lorabook.single_index_lora.lora.MU` (or in ``q``).
"""

from __future__ import annotations

from functools import cache

import sympy as sp

from lorabook.single_index_lora.lora import MU, linearization_sympy, trap_strengths_sympy
from lorabook.toolkit.activations import activation_sympy, check_target, is_polynomial
from lorabook.toolkit.gaussian import gaussian_expectation_sympy

Q = sp.Symbol("q", positive=True)
"""Symbol of the student's preactivation variance :math:`q`."""

_Z = sp.Symbol("z", real=True)


def _check_polynomial(name: object, role: str) -> str:
    name = check_target(name, parameter=role)
    if not is_polynomial(name):
        raise ValueError(f"{role}={name!r} is not a polynomial activation; valid choices: 'linear', 'He1'..'He10', "
                         f"Hermite combinations such as 'He1+He3', or their squares such as 'He3^2'")
    return name


@cache
def trap_constants_sympy(activation: str, teacher: str | None = None) -> list[tuple[sp.Expr, sp.Expr]]:
    r"""Traps :math:`\mu_c` of the search time and the constants of its divergence there.

    A root :math:`\mu_c \in (0, 1)` of :math:`A` with :math:`B(\mu_c) < 0` makes :math:`\lambda_+`
    vanish. With :math:`A \approx A'(\mu_c)(\mu - \mu_c)` and
    :math:`\lambda_+ = 2A^2/(\sqrt{B^2 + 4A^2} - B) = (A^2/|B|)(1 + O(A^2))`,

    .. math:: \tau(\mu) = \frac{C_{\rm trap}}{(\mu - \mu_c)^2}\big(1 + O(\mu - \mu_c)\big), \qquad
              C_{\rm trap} = \frac{|B(\mu_c)|}{A'(\mu_c)^2}.

    Roots of :math:`A` where :math:`B(\mu_c) > 0` are not traps (there :math:`\lambda_+ = B > 0`) and
    are left out.

    Parameters
    ----------
    activation, teacher
        Polynomial student and teacher names (``"He3"``, ``"He1+He3"``, ...); ``teacher=None`` means
        the teacher equals the student.

    Returns
    -------
    list of (mu_c, C_trap)
        Exact algebraic numbers (use ``.evalf(30)``), in increasing :math:`\mu_c`.

    Raises
    ------
    TypeError
        If a name is not a string.
    ValueError
        If a name is unknown or not a polynomial activation, or :math:`A'(\mu_c) = 0` at a trap
        (a faster divergence than :math:`(\mu - \mu_c)^{-2}`).
    """
    _check_polynomial(activation, "activation")
    teacher_name = activation if teacher is None else _check_polynomial(teacher, "teacher")
    coefficient_a, coefficient_b = linearization_sympy(activation, teacher_name)
    slope = sp.diff(coefficient_a, MU)
    result = []
    for root in trap_strengths_sympy(activation, teacher_name):
        b_at_root = coefficient_b.subs(MU, root)
        if not bool(b_at_root.evalf(50) < 0):
            continue
        slope_at_root = slope.subs(MU, root)
        if abs(slope_at_root.evalf(50)) < sp.Float(10) ** -40:
            raise ValueError(f"A'(mu_c) = 0 at mu_c = {root.evalf(15)} for {activation!r}: tau diverges faster than "
                             "(mu - mu_c)^-2")
        result.append((root, -b_at_root / slope_at_root**2))
    return result


@cache
def output_mean_sympy(activation: str) -> sp.Expr:
    r"""Mean output :math:`c_0(q) = \mathbb E[s(\sqrt q\, z)]`, :math:`z \sim \mathcal N(0, 1)`, as a polynomial in
    ``q``.

    For :math:`s = \mathrm{He}_k`, :math:`c_0(q) = (k - 1)!!\,(q - 1)^{k/2}` for even :math:`k` and 0
    for odd :math:`k`. At :math:`q = \mu^2` it is the "bias" of the pre-trained student
    :math:`s(\mu z)`: its :math:`k = 0` Hermite coefficient.

    Raises
    ------
    TypeError, ValueError
        For a non-string, unknown or non-polynomial name.
    """
    _check_polynomial(activation, "activation")
    return sp.factor(gaussian_expectation_sympy(sp.expand(activation_sympy(activation, sp.sqrt(Q) * _Z)), (_Z,), 1))


@cache
def bias_linearization_sympy(activation: str, teacher: str | None = None) -> sp.Expr:
    r"""The part of :math:`B(\mu)` due to the mismatch of output means.

    Split :math:`F(q, \rho) = \tfrac12(c_0(q) - c_0^\star)^2 + F^{\rm c}(q, \rho)`, with
    :math:`c_0^\star = \mathbb E[s_\star(z)]` and :math:`F^{\rm c}` the risk of the centred functions.
    Since :math:`B = -2F_q` at :math:`q = \mu^2`, the mean term contributes

    .. math:: B^{\rm bias}(\mu) = -2\,\big(c_0(\mu^2) - c_0^\star\big)\, c_0'(\mu^2).

    Parameters
    ----------
    activation, teacher
        Polynomial student and teacher names; ``teacher=None`` means the same as the student.

    Returns
    -------
    sympy.Expr
        A polynomial in :data:`lorabook.single_index_lora.lora.MU`, factored.

    Raises
    ------
    TypeError, ValueError
        For a non-string, unknown or non-polynomial name.
    """
    mean = output_mean_sympy(activation)
    teacher_name = activation if teacher is None else _check_polynomial(teacher, "teacher")
    teacher_mean = output_mean_sympy(teacher_name).subs(Q, 1)
    return sp.factor(sp.expand((-2 * (mean - teacher_mean) * sp.diff(mean, Q)).subs(Q, MU**2)))
