"""Circuits: which transcoder features, heads and input tokens carry a model's output (model-agnostic core).

The model is linearized around one input (attention patterns and norm scales
frozen, MLPs replaced by transcoder features plus error terms), so attributions
are exact. :func:`attribute` builds the complete attribution graph over all
active features as circuit-tracer does (pruned by cumulative influence, scored
by replacement and completeness); :func:`trace` is the older greedy best-first
search from a target back to the inputs; :func:`faithfulness` checks a graph
against ablations in the real model.
"""

from ._answer_target import Readout, answer_logprob
from ._attribution_graph import AttributionGraph, attribute, to_networkx, token_attributions
from ._candidates import answer_contrast, candidate_log_probabilities, log_odds, shared_prefix_length
from ._circuit_tracer_json import to_circuit_tracer, write_circuit_tracer
from ._faithfulness import ablation_effects, faithfulness, keep_only
from ._feature_circuit import feature_circuit, fold_features
from ._graphs import merge, position_free, read_json, to_json, write_graphml, write_json
from ._grow import FeatureShare, Grown, grow_circuit
from ._intervene import Intervention, InterventionResult, ReplacementModel, feature_means, intervene
from ._invariant import de_embedding, read_directions, top_groups, virtual_weights, write_directions
from ._linear import Attribution, LinearizedModel
from ._masking import attention_mask_gradients
from ._modules import GROUPINGS, cluster_profiles, coactivation_profiles, edge_profiles, group_features
from ._per_cell import (
    SECTIONS,
    CircuitConfig,
    TracedCall,
    gene_table,
    greedy_gene_attributions,
    input_groups,
    pooled_gene_attributions,
    section_attributions,
    trace_call,
)
from ._set_effects import measured_drops, predicted_drop, steered_call_sets, steered_calls
from ._targets import Target
from ._token_identity import feature_activations, token_identity_r2
from ._trace import prune, trace
from ._validation import (
    ABLATIONS,
    feature_shares,
    graph_features,
    group_mask_gradients,
    input_features,
    spearman,
)

__all__ = [
    "GROUPINGS",
    "cluster_profiles",
    "coactivation_profiles",
    "edge_profiles",
    "feature_activations",
    "feature_circuit",
    "fold_features",
    "group_features",
    "measured_drops",
    "predicted_drop",
    "steered_call_sets",
    "steered_calls",
    "token_identity_r2",
    "ABLATIONS",
    "feature_shares",
    "graph_features",
    "group_mask_gradients",
    "input_features",
    "spearman",
    "SECTIONS",
    "CircuitConfig",
    "TracedCall",
    "answer_contrast",
    "candidate_log_probabilities",
    "gene_table",
    "greedy_gene_attributions",
    "input_groups",
    "log_odds",
    "pooled_gene_attributions",
    "section_attributions",
    "shared_prefix_length",
    "trace_call",
    "Attribution",
    "FeatureShare",
    "Grown",
    "grow_circuit",
    "Intervention",
    "InterventionResult",
    "ReplacementModel",
    "AttributionGraph",
    "Readout",
    "answer_logprob",
    "attribute",
    "to_circuit_tracer",
    "to_networkx",
    "token_attributions",
    "write_circuit_tracer",
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
