"""The toolkit every model of the book is built from.

Modules:

* :mod:`lorabook.toolkit.gaussian`: Gaussian integrals (Hermite polynomials, exact moments,
  quadrature, Monte Carlo);
* :mod:`lorabook.toolkit.activations`: the named activations and targets the book uses;
* :mod:`lorabook.toolkit.hermite`: Hermite coefficients and information exponents;
* :mod:`lorabook.toolkit.kernels`: closed-form Gaussian kernels of activation pairs and the
  squared-error risk of two correlated Gaussian pre-activations;
* :mod:`lorabook.toolkit.committee_integrals`: the two-, three- and four-point Gaussian
  integrals of two-layer (committee) networks, closed forms and ReLU quadrature;
* :mod:`lorabook.toolkit.overlap_equations`: a model described once (its vectors, trained
  scalars and unit vectors, overlaps), its overlap ODE derived with sympy and lambdified;
* :mod:`lorabook.toolkit.ode`: integration of overlap ODEs with escape events;
* :mod:`lorabook.toolkit.validation`: the input checks at the public boundary of every function.
"""

from lorabook.toolkit import (
    activations,
    committee_integrals,
    gaussian,
    hermite,
    kernels,
    ode,
    overlap_equations,
    validation,
)

__all__ = [
    "activations",
    "committee_integrals",
    "gaussian",
    "hermite",
    "kernels",
    "ode",
    "overlap_equations",
    "validation",
]
