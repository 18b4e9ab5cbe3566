"""Attribution graphs as circuit-tracer's graph JSON, which its frontend opens.

The schema (``metadata``, ``qParams``, ``nodes``, ``links``), the node types
(``cross layer transcoder``, ``mlp reconstruction error``, ``embedding``,
``logit``) and the node ids follow circuit-tracer's frontend data model
(``circuit_tracer/frontend/graph_models.py``): features ``{layer}_{index}_{pos}``,
errors ``0_{layer}_{pos}``, tokens ``E_{token id}_{pos}``, the output
``{n_layers + 1}_{id}_{pos}``. A node's ``influence`` is the cumulative influence
share at which pruning would reach it, as circuit-tracer writes it.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from .._atomic import atomic_path
from ._attribution_graph import AttributionGraph


def _cantor(x: int, y: int) -> int:
    return (x + y) * (x + y + 1) // 2 + y


def to_circuit_tracer(graph: AttributionGraph, *, slug: str = "sctranscoder-graph", scan: str = "sctranscoder",
                      node_threshold: float = 0.8, edge_threshold: float = 0.98, probability: float | None = None,
                      output_token: int | None = None, clerps: dict | None = None) -> dict:
    """The pruned graph as circuit-tracer graph JSON (a dict; :func:`write_circuit_tracer` writes it).

    ``probability``: the target's probability (shown on the output node); ``output_token``: the token
    id the output node is named by (default: one past the vocabulary, circuit-tracer's mark for a
    target that is not one token); ``clerps``: ``{(layer, index): text}`` labels for features.
    """
    pruned = graph.prune(node_threshold, edge_threshold)
    influence = pruned.influence
    ordered, order = torch.sort(influence, descending=True)
    cumulative = torch.zeros_like(influence)
    cumulative[order] = torch.cumsum(ordered, 0) / ordered.sum().clamp(min=1e-30)
    kinds = graph.masks()
    labels = graph.labels if graph.labels is not None else [str(t) for t in graph.input_ids]
    last = graph.n_tokens - 1
    token_id = output_token if output_token is not None else max(graph.input_ids) + 1
    p = float(probability) if probability is not None else 0.0
    nodes, ids = [], {}
    for i in torch.nonzero(pruned.nodes).flatten().tolist():
        score = float(cumulative[i])
        if kinds["feature"][i]:
            layer, position, index = graph.features[i].tolist()
            node = {"node_id": f"{layer}_{index}_{position}", "feature": _cantor(layer, index), "layer": str(layer),
                    "ctx_idx": position, "feature_type": "cross layer transcoder", "jsNodeId": f"{layer}_{index}-0",
                    "clerp": (clerps or {}).get((layer, index), ""), "influence": score,
                    "activation": float(graph.activations[i])}
        elif kinds["error"][i]:
            layer, position = divmod(i - graph.n_features, graph.n_tokens)
            node = {"node_id": f"0_{layer}_{position}", "feature": -1, "layer": str(layer), "ctx_idx": position,
                    "feature_type": "mlp reconstruction error", "jsNodeId": f"{layer}_{position}-0", "clerp": "",
                    "influence": score}
        elif kinds["token"][i]:
            position = i - graph.token_index(0)
            vocab = graph.input_ids[position]
            node = {"node_id": f"E_{vocab}_{position}", "feature": position, "layer": "E", "ctx_idx": position,
                    "feature_type": "embedding", "jsNodeId": f"E_{vocab}-{position}", "clerp": "", "influence": score}
        else:
            layer = str(graph.n_layers + 1)
            node = {"node_id": f"{layer}_{token_id}_{last}", "feature": token_id, "layer": layer, "ctx_idx": last,
                    "feature_type": "logit", "token_prob": p, "is_target_logit": True,
                    "jsNodeId": f"L_{token_id}-{last}", "clerp": f'Output "{graph.target}" (p={p:.3f})'}
        node.setdefault("token_prob", 0.0)
        node.setdefault("is_target_logit", False)
        node.update(run_idx=0, reverse_ctx_idx=0)
        nodes.append(node)
        ids[i] = node["node_id"]
    targets, sources = torch.nonzero(pruned.edges, as_tuple=True)
    weights = graph.adjacency[targets, sources].tolist()
    links = [{"source": ids[s], "target": ids[t], "weight": w}
             for t, s, w in zip(targets.tolist(), sources.tolist(), weights) if s in ids and t in ids]
    used = {link["source"] for link in links} | {link["target"] for link in links}
    nodes = [n for n in nodes if n["node_id"] in used or n["feature_type"] in ("embedding", "logit")]
    metadata = {"slug": slug, "scan": scan, "transcoder_list": [], "prompt_tokens": [str(t) for t in labels],
                "prompt": "".join(str(t) for t in labels), "node_threshold": node_threshold, "schema_version": 1,
                "info": {"target": graph.target, "value": graph.value, **graph.scores(node_threshold, edge_threshold)}}
    q_params = {"pinnedIds": [], "supernodes": [], "linkType": "both", "clickedId": "", "sg_pos": ""}
    return {"metadata": metadata, "qParams": q_params, "nodes": nodes, "links": links}


def write_circuit_tracer(graph: AttributionGraph, path, **options) -> Path:
    """Write :func:`to_circuit_tracer`'s JSON atomically (open it with circuit-tracer's local server)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(to_circuit_tracer(graph, **options)))
    return path
