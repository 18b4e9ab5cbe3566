"""What switching a set of features off does to the call: predicted by the attribution graph, measured by
intervention.

Predicted: in the linearized model of the attribution graph, switching a set ``S`` of feature nodes off removes
what they contribute to the target along every path that does not run through another member of ``S`` (those are
held at zero too, so they pass nothing on). With ``g`` the target's sensitivity to each node's activation computed
with the members of ``S`` cut out, the drop is ``sum over s in S of g_s * a_s``: the node-set version of
:meth:`AttributionGraph.signed_attribution`.

Measured: in the replacement model (MLPs replaced by transcoders, their errors held), the features are set to 0 at
their positions and the label's log-odds over all candidates is read again (constrained patching as circuit-tracer
runs it: attention frozen at the clean patterns, later features recomputed); ``freeze_attention=False`` lets the
attention patterns move too.
"""

from __future__ import annotations

import torch

from ._candidates import log_odds
from ._intervene import Intervention, ReplacementModel


def _node_mask(graph, triples) -> torch.Tensor:
    wanted = {(int(layer), int(position), int(feature)) for layer, feature, position in triples}
    rows = graph.features.tolist()
    mask = torch.zeros(graph.n_nodes, dtype=torch.bool)
    mask[: graph.n_features] = torch.tensor([tuple(r) in wanted for r in rows], dtype=torch.bool)
    return mask


def predicted_drop(graph, triples) -> float:
    """The attribution graph's prediction of how much its target falls when the feature nodes ``triples``
    (``(layer, feature, position)``; those without a node are ignored) are switched off together."""
    members = _node_mask(graph, triples)
    if not bool(members.any()):
        return 0.0
    values = graph.node_values()
    safe = torch.where(values.abs() > 1e-12, values, torch.ones_like(values))
    scaled = graph.adjacency / safe[:, None]
    scaled[values.abs() <= 1e-12] = 0
    current = torch.zeros(graph.n_nodes)
    current[-1] = graph.value
    drop = 0.0
    for _ in range(graph.n_nodes):
        drop += float(current[members].sum())
        current = torch.where(members, torch.zeros_like(current), current)  # members are held at zero
        current = current @ scaled
        if not bool(current.any()):
            return drop
    raise RuntimeError("The attribution graph has a cycle.")


def _label_log_odds(log_probs, index: int) -> float:
    return float(log_odds(float(log_probs[index])))


def measured_drops(lm, transcoders: dict, prompt, answer_ids, index: int, sets: dict, *,
                   freeze_attention: bool = True, replacement: ReplacementModel | None = None) -> dict:
    """``{name: drop}``: the fall of candidate ``index``'s log-odds over ``answer_ids`` when each set's features
    (``(layer, feature, position)``) are set to 0 in the replacement model (one pass per set). ``replacement``:
    that prompt's :class:`ReplacementModel` already built (with attention frozen, it serves both settings)."""
    if replacement is None:
        replacement = ReplacementModel(lm, transcoders, prompt, answer_ids=answer_ids,
                                       freeze_attention=freeze_attention)
    elif freeze_attention and not replacement.freeze_attention:
        raise ValueError("Frozen-attention drops need a ReplacementModel built with freeze_attention=True.")
    free = not freeze_attention
    clean = _label_log_odds(replacement.run(free_attention=free)[1], index)
    drops = {}
    for name, triples in sets.items():
        changes = [Intervention.off(layer, feature, position) for layer, feature, position in triples]
        drops[name] = (clean - _label_log_odds(replacement.run(changes, free_attention=free)[1], index)
                       if changes else 0.0)
    return drops


def steered_calls(lm, transcoders: dict, prompt, answer_ids, changes, *, freeze_attention: bool = False):
    """Candidate log-probabilities (normalized over ``answer_ids``) before and after setting features to values:
    ``changes`` are ``(layer, feature, position, value)``."""
    before, after = steered_call_sets(lm, transcoders, prompt, answer_ids, {"after": changes},
                                      freeze_attention=freeze_attention)
    return before, after["after"]


def steered_call_sets(lm, transcoders: dict, prompt, answer_ids, sets: dict, *, freeze_attention: bool = False):
    """As :func:`steered_calls`, for several sets of changes on one prompt (one clean pass, one per set):
    ``(before, {name: after})``."""
    model = ReplacementModel(lm, transcoders, prompt, answer_ids=answer_ids, freeze_attention=freeze_attention)
    before = model.run()[1]
    after = {}
    for name, changes in sets.items():
        interventions = [Intervention(int(layer), int(feature), int(position), value=float(value))
                         for layer, feature, position, value in changes]
        after[name] = model.run(interventions)[1]
    return before, after
