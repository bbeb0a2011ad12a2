"""lorabook: exactly solvable models of LoRA fine-tuning.

The package behind the lorabook Jupyter Book. Modules are named after concepts:

* :mod:`lorabook.gaussian`: Gaussian integrals (Hermite polynomials, exact moments, kernels);
* :mod:`lorabook.activations`: the named activations the book uses;
* :mod:`lorabook.plotting`: the book's single figure style.
"""

from lorabook.activations import ACTIVATION_NAMES, activation, activation_derivative, check_activation

__all__ = ["ACTIVATION_NAMES", "activation", "activation_derivative", "check_activation"]

__version__ = "0.1.0"
