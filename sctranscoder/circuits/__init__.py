"""Circuits: which transcoder features, heads and input tokens carry a model's output (model-agnostic core).

The model is linearized around one input (attention patterns and norm scales
frozen, MLPs replaced by transcoder features plus error terms), so attributions
are exact; :func:`trace` searches the resulting graph from a target back to the
inputs, :func:`faithfulness` checks it against ablations in the real model.
"""

from ._faithfulness import ablation_effects, faithfulness, keep_only
from ._graphs import merge, position_free, read_json, to_json, write_graphml, write_json
from ._intervene import Intervention, InterventionResult, ReplacementModel, feature_means, intervene
from ._invariant import de_embedding, read_directions, top_groups, virtual_weights, write_directions
from ._linear import Attribution, LinearizedModel
from ._masking import attention_mask_gradients
from ._targets import Target
from ._trace import prune, trace

__all__ = [
    "Attribution",
    "Intervention",
    "InterventionResult",
    "ReplacementModel",
    "LinearizedModel",
    "Target",
    "ablation_effects",
    "attention_mask_gradients",
    "de_embedding",
    "faithfulness",
    "feature_means",
    "intervene",
    "keep_only",
    "merge",
    "position_free",
    "prune",
    "read_directions",
    "read_json",
    "to_json",
    "top_groups",
    "trace",
    "virtual_weights",
    "write_directions",
    "write_graphml",
    "write_json",
]
