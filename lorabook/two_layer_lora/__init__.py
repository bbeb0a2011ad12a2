r"""Chapter 8: rank-r LoRA on pre-trained two-layer (committee) networks with K neurons.

Modules:

* :mod:`lorabook.two_layer_lora.committee`: the committee teacher, the pre-trained student
  :math:`W_0 = DT`, the LoRA statistics :math:`(U, M, Q_V)` and the overlaps they give, the
  population risk and the best rank-r update (the rank plateau);
* :mod:`lorabook.two_layer_lora.committee_sgd`: one-pass SGD of LoRA on the committee, the full
  d-dimensional simulator vectorised over seeds;
* :mod:`lorabook.two_layer_lora.committee_ode`: the overlap ODE of :math:`(U, M, Q_V)`, derived by
  the pipeline of :mod:`lorabook.toolkit.overlap_equations` from one description of the model,
  its linearisation at the start (the search phase) and its integration.
"""

from lorabook.two_layer_lora import committee, committee_ode, committee_sgd

__all__ = ["committee", "committee_ode", "committee_sgd"]
