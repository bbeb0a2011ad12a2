"""Part III: full fine-tuning versus LoRA in linear regression.

Modules:

* :mod:`lorabook.linear_regression.linear_finetuning`: the estimators (full fine-tuning,
  reduced-rank regression on the residual), their excess risks and the theory of Chapters 9-11;
* :mod:`lorabook.linear_regression.factor_dynamics`: the LoRA factors trained by gradient flow
  and descent: the reduced factor flow and its search phase.
"""

from lorabook.linear_regression import factor_dynamics, linear_finetuning

__all__ = ["factor_dynamics", "linear_finetuning"]
