"""Part II: the single-index model, learned from scratch and fine-tuned with LoRA.

Modules:

* :mod:`lorabook.single_index_lora.single_index`: the single-index model learned from scratch
  on the sphere (Chapter 2);
* :mod:`lorabook.single_index_lora.lora`: the LoRA single-index model: its description for the
  overlap pipeline, the risk layer of the covariances, the linearisation and search time;
* :mod:`lorabook.single_index_lora.sgd`: one-pass SGD simulators, full d-dimensional and exact
  reduced;
* :mod:`lorabook.single_index_lora.lora_dynamics`: LoRA overlap ODE trajectories and the
  stability threshold of the finite learning rate;
* :mod:`lorabook.single_index_lora.search_phase`: the search phase: its escape rate, Hermite
  series and the simulated escape times;
* :mod:`lorabook.single_index_lora.task_difficulty`: how the target's non-linearity sets the
  search phase;
* :mod:`lorabook.single_index_lora.non_aligned`: pre-training off the target direction;
* :mod:`lorabook.single_index_lora.remedies`: remedies for the slow search phase;
* :mod:`lorabook.single_index_lora.curriculum`: staged fine-tuning;
* :mod:`lorabook.single_index_lora.full_finetuning`: full fine-tuning of the same model, for
  comparison.
"""

from lorabook.single_index_lora import (
    curriculum,
    full_finetuning,
    lora,
    lora_dynamics,
    non_aligned,
    remedies,
    search_phase,
    sgd,
    single_index,
    task_difficulty,
)

__all__ = [
    "curriculum",
    "full_finetuning",
    "lora",
    "lora_dynamics",
    "non_aligned",
    "remedies",
    "search_phase",
    "sgd",
    "single_index",
    "task_difficulty",
]
