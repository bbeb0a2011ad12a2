r"""Chapter 8: rank-r LoRA on pre-trained two-layer (committee) networks with K neurons.

Modules:

* :mod:`lorabook.two_layer_lora.committee`: the committee teacher, the pre-trained student
  :math:`W_0 = DT`, the LoRA statistics :math:`(U, M, Q_V)` and the overlaps they give, the
  population risk and the best rank-r update (the rank plateau);
* :mod:`lorabook.two_layer_lora.committee_sgd`: one-pass SGD of LoRA on the committee, the full
  d-dimensional simulator vectorised over seeds.
"""

from lorabook.two_layer_lora import committee, committee_sgd

__all__ = ["committee", "committee_sgd"]
