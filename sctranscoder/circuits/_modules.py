"""A circuit's features grouped into a few modules (supernodes), automatically, by one of two kinds of evidence.

- ``"edges"``: features with similar signed edge profiles in the feature-level circuit (what feeds them and what
  they feed, weights over every other node) belong together: they take part in the same paths. Anthropic's
  authors tried clustering the adjacency matrix and found it not good enough alone; here it is compared, not
  assumed.
- ``"coactivation"``: features whose activation rises and falls together over cells (mean activation per
  prompt, over the traced cells and a sample of other cells) belong together: they answer to the same program.

Both cluster unit-length profiles by average-linkage agglomeration (Euclidean on unit vectors, i.e. cosine)
cut at ``max_groups`` clusters. The third grouping, by shared gene programs (each feature's best gene set), needs
gene sets and lives with the AnnData side (:func:`sctranscoder.tl.circuit_supernodes`).
"""

from __future__ import annotations

import numpy as np

GROUPINGS = ("edges", "coactivation")


def cluster_profiles(profiles, max_groups: int = 8) -> np.ndarray:
    """Cluster labels ``0..k-1`` (``k <= max_groups``) of the rows of ``profiles`` (cosine, average linkage)."""
    from scipy.cluster.hierarchy import fcluster, linkage

    profiles = np.asarray(profiles, dtype=np.float64)
    n = profiles.shape[0]
    if max_groups < 1:
        raise ValueError(f"max_groups={max_groups} must be at least 1.")
    if n <= max_groups:
        return np.arange(n)
    norms = np.linalg.norm(profiles, axis=1, keepdims=True)
    unit = np.divide(profiles, norms, out=np.zeros_like(profiles), where=norms > 0)
    labels = fcluster(linkage(unit, method="average", metric="euclidean"), t=max_groups, criterion="maxclust")
    _, labels = np.unique(labels, return_inverse=True)
    return labels


def edge_profiles(graph, nodes) -> np.ndarray:
    """Per feature node of a (merged) circuit graph: its signed in-edge and out-edge weights over every node."""
    index = {node: i for i, node in enumerate(graph.nodes)}
    n = len(index)
    profiles = np.zeros((len(nodes), 2 * n))
    for row, node in enumerate(nodes):
        for source, _, weight in graph.in_edges(node, data="weight"):
            profiles[row, index[source]] = weight
        for _, target, weight in graph.out_edges(node, data="weight"):
            profiles[row, n + index[target]] = weight
    return profiles


def coactivation_profiles(values, prompt_lengths) -> np.ndarray:
    """``(n_features, n_prompts)``: each feature's mean activation per prompt, centred over prompts
    (``values``: ``(n_positions, n_features)`` activations, prompts concatenated)."""
    values = np.asarray(values, dtype=np.float64)
    bounds = np.concatenate([[0], np.cumsum(prompt_lengths)]).astype(int)
    means = np.stack([values[a:b].mean(0) for a, b in zip(bounds[:-1], bounds[1:])], 1)
    return means - means.mean(1, keepdims=True)


def group_features(grouping: str, *, graph=None, nodes=None, values=None, prompt_lengths=None,
                   max_groups: int = 8) -> np.ndarray:
    """Module labels of ``nodes`` by ``grouping`` (``"edges"``: needs ``graph``; ``"coactivation"``: ``values``
    (columns in the order of ``nodes``) and ``prompt_lengths``)."""
    if grouping == "edges":
        return cluster_profiles(edge_profiles(graph, nodes), max_groups)
    if grouping == "coactivation":
        return cluster_profiles(coactivation_profiles(values, prompt_lengths), max_groups)
    raise ValueError(f"grouping={grouping!r} must be one of {GROUPINGS} (or 'gene_sets' on the AnnData side).")
