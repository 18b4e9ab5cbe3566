"""Influence, pruning and graph scores on an attribution graph's adjacency matrix.

The formulas are circuit-tracer's (Ameisen et al. 2025, "Circuit Tracing"):
rows are targets, columns sources; ``|A|`` is normalised to unit row sums; a
node's influence on the output is ``w (B + B^2 + ...)`` for the row-normalised
matrix ``B`` and the output weights ``w``. Pruning keeps the fewest nodes that
carry ``node_threshold`` of the cumulative influence, then the edges that carry
``edge_threshold`` of the edge influence, and drops nodes left without edges.

- replacement score: token influence / (token + error influence);
- completeness score: the influence-weighted share of each node's (normalised)
  inputs that does not come from error nodes.
"""

from __future__ import annotations

from typing import NamedTuple

import torch


def normalize_rows(matrix: torch.Tensor) -> torch.Tensor:
    absolute = matrix.abs()
    return absolute / absolute.sum(dim=1, keepdim=True).clamp(min=1e-10)


def influence(normalized: torch.Tensor, weights: torch.Tensor, max_iter: int = 1000) -> torch.Tensor:
    """``weights @ (B + B^2 + ...)``; the graph is acyclic, so the series ends after its depth."""
    current = weights @ normalized
    total = current.clone()
    for _ in range(max_iter):
        current = current @ normalized
        if not bool(current.any()):
            return total
        total += current
    raise RuntimeError(f"Influence did not converge in {max_iter} steps: the graph has a cycle.")


def threshold_for(scores: torch.Tensor, share: float) -> torch.Tensor:
    """The score at which the sorted scores' cumulative sum first reaches ``share`` of their total."""
    ordered = torch.sort(scores.flatten(), descending=True).values
    cumulative = torch.cumsum(ordered, 0) / ordered.sum().clamp(min=1e-30)
    index = min(int(torch.searchsorted(cumulative, torch.tensor(share, dtype=cumulative.dtype))), len(ordered) - 1)
    return ordered[index]


class Pruned(NamedTuple):
    nodes: torch.Tensor
    """Boolean mask of kept nodes."""
    edges: torch.Tensor
    """Boolean ``(n, n)`` mask of kept edges (rows: targets)."""
    influence: torch.Tensor
    """Each node's influence on the output, before pruning."""


def prune_masks(adjacency: torch.Tensor, weights: torch.Tensor, n_features: int, always: torch.Tensor,
                node_threshold: float = 0.8, edge_threshold: float = 0.98, include: torch.Tensor | None = None
                ) -> Pruned:
    """circuit-tracer's pruning. ``always``: nodes never pruned (tokens and outputs); the first
    ``n_features`` nodes are features (which must keep an incoming edge); every node that is not
    ``always`` must keep an outgoing edge. ``include``: nodes kept whatever their influence and edges
    (a circuit chosen by another rule, e.g. grown until it carries the call), edges pruned as usual."""
    for name, value in (("node_threshold", node_threshold), ("edge_threshold", edge_threshold)):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{name}={value} must lie between 0 and 1.")
    node_influence = influence(normalize_rows(adjacency), weights)
    nodes = node_influence >= threshold_for(node_influence, node_threshold)
    nodes |= always
    if include is not None:
        nodes |= include
        always = always | include
    kept = adjacency.clone()
    kept[~nodes] = 0
    kept[:, ~nodes] = 0
    normalized = normalize_rows(kept)
    edge_scores = normalized * (influence(normalized, weights) + weights)[:, None]
    edges = edge_scores >= threshold_for(edge_scores, edge_threshold)
    edges &= edge_scores > 0
    prunable = ~always
    while True:  # drop nodes without edges until nothing changes (at most depth + 1 rounds)
        before = nodes.clone()
        edges[~nodes] = False
        edges[:, ~nodes] = False
        nodes[prunable] &= edges[:, prunable].any(0)
        nodes[:n_features] &= edges[:n_features].any(1) | always[:n_features]
        if torch.equal(before, nodes):
            return Pruned(nodes, edges, node_influence)


def graph_scores(adjacency: torch.Tensor, weights: torch.Tensor, tokens: torch.Tensor, errors: torch.Tensor):
    """``(replacement, completeness)`` of a graph: boolean masks say which nodes are tokens and errors."""
    normalized = normalize_rows(adjacency)
    node_influence = influence(normalized, weights)
    token_influence = node_influence[tokens].sum()
    error_influence = node_influence[errors].sum()
    replacement = token_influence / (token_influence + error_influence).clamp(min=1e-30)
    non_error = 1 - normalized[:, errors].sum(dim=1)
    output_influence = node_influence + weights
    completeness = (non_error * output_influence).sum() / output_influence.sum()
    return float(replacement), float(completeness)
