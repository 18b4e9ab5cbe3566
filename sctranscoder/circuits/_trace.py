"""Trace a target back through transcoder features and attention heads to the input tokens.

Best-first search on the linearized model: start at the target, split it over
all sources with one backward pass, and keep expanding the unexpanded feature or
head with the largest influence on the target so far. An edge ``s -> n`` carries
``s``'s attribution to ``n`` (its direct effect, with later features and heads
held). Influence is the share of the target's absolute attribution that flows
through a node (edge weights normalized by each node's total absolute
attribution, summed over paths). The graph is then pruned to the nodes that carry
a given share of the influence, and optionally to its strongest paths.
"""

from __future__ import annotations

import heapq
from collections import defaultdict

import networkx as nx
import torch

from .._deprecations import renamed_keywords
from ._linear import LinearizedModel
from ._targets import Target

OUTPUT = "output"
BIAS = "bias"


def _order(graph, node) -> float:
    """Topological key: inputs, then (head, MLP) of each layer in turn, then the output."""
    data = graph.nodes[node]
    kind = data["kind"]
    if kind == "input":
        return -1
    if kind == "output":
        return float("inf")
    if kind == "bias":
        return -0.5
    return 2 * data["layer"] + (0 if kind == "head" else 1)


class _Search:
    def __init__(self, linear: LinearizedModel, threshold: float, groups, labels):
        self.linear = linear
        self.threshold = threshold
        self.groups = groups
        self.labels = labels
        self.graph = nx.DiGraph()
        self.estimate: dict = defaultdict(float)
        self.directions: dict = {}
        self.heap: list = []
        self.expanded: set = set()

    # -- node bookkeeping --------------------------------------------------------------------
    def _input(self, key, positions: list[int]) -> str:
        grouped = self.groups is not None and self.groups[positions[0]] is not None
        node = f"input:{key}"
        if node not in self.graph:
            label = key if grouped else (self.labels[positions[0]] if self.labels is not None else str(key))
            self.graph.add_node(node, kind="input", layer=-1, position=positions[0], label=str(label),
                                positions=",".join(map(str, positions)), grouped=grouped)
        else:
            data = self.graph.nodes[node]
            known = [int(p) for p in data["positions"].split(",")]
            data["positions"] = ",".join(map(str, sorted(set(known) | set(positions))))
        return node

    def _feature(self, layer: int, position: int, index: int) -> str:
        node = f"feature:{layer}:{index}@{position}"
        if node not in self.graph:
            activation = float(self.linear.activations[layer][position, index])
            self.graph.add_node(node, kind="feature", layer=layer, position=position, feature=index,
                                activation=activation, label=f"L{layer}/F{index}")
        return node

    def _head(self, layer: int, position: int, head: int, reader: str) -> str:
        # one node per head and the node it writes to: a head can carry paths of opposite sign to different
        # readers, and expanding it along each reader's gradient keeps those paths apart
        node = f"head:{layer}:{head}@{position}>{reader}"
        if node not in self.graph:
            self.graph.add_node(node, kind="head", layer=layer, position=position, head=head, label=f"L{layer}/H{head}",
                                reader=reader)
        return node

    def _error(self, layer: int, position: int) -> str:
        node = f"error:{layer}@{position}"
        if node not in self.graph:
            self.graph.add_node(node, kind="error", layer=layer, position=position, label=f"L{layer} error")
        return node

    # -- expansion -----------------------------------------------------------------------------
    def expand(self, node: str, scalar: torch.Tensor, influence: float) -> None:
        attribution = self.linear.attribute(scalar)
        total = attribution.total_abs()
        self.expanded.add(node)
        data = self.graph.nodes[node]
        data.update(value=attribution.value, total_abs=total, expanded=True)
        if total <= 0:
            return
        cut = self.threshold * total
        edges: dict = defaultdict(float)

        by_input, positions = defaultdict(float), defaultdict(list)
        embeddings = attribution.embeddings
        for position in torch.nonzero(embeddings).flatten().tolist():
            group = self.groups[position] if self.groups is not None else None
            key = position if group is None else group
            by_input[key] += float(embeddings[position])
            positions[key].append(position)
        for key, weight in by_input.items():
            if abs(weight) >= cut:
                edges[self._input(key, positions[key])] += weight
        for layer, values in attribution.features.items():
            for position, index in torch.nonzero(values.abs() >= cut).tolist():
                edges[self._feature(layer, position, index)] += float(values[position, index])
        for layer, values in attribution.errors.items():
            for position in torch.nonzero(values.abs() >= cut).flatten().tolist():
                edges[self._error(layer, position)] += float(values[position])
        for layer, values in attribution.heads.items():
            for position, head in torch.nonzero(values.abs() >= cut).tolist():
                source = self._head(layer, position, head, node)
                edges[source] += float(values[position, head])
                self.directions[source] = attribution.head_gradients[layer][position, head].clone()
        if abs(attribution.bias) >= cut:
            if BIAS not in self.graph:
                self.graph.add_node(BIAS, kind="bias", layer=-1, position=-1, label="bias")
            edges[BIAS] += attribution.bias

        for source, weight in edges.items():
            if abs(weight) < cut:
                continue
            self.graph.add_edge(source, node, weight=weight)
            kind = self.graph.nodes[source]["kind"]
            if kind in ("feature", "head") and source not in self.expanded:
                self.estimate[source] += influence * abs(weight) / total
                heapq.heappush(self.heap, (-self.estimate[source], source))

    def next_node(self, min_influence: float):
        while self.heap:
            negative, node = heapq.heappop(self.heap)
            if node in self.expanded or -negative < self.estimate[node] - 1e-12:
                continue  # already expanded, or a stale entry
            if -negative < min_influence:
                return None
            return node
        return None

    def scalar_of(self, node: str) -> torch.Tensor:
        data = self.graph.nodes[node]
        if data["kind"] == "feature":
            return self.linear.feature_value(data["layer"], data["position"], data["feature"])
        return self.linear.head_value(data["layer"], data["position"], data["head"], self.directions[node])


def _propagate(graph) -> None:
    """Set each node's ``influence`` (share of the target's absolute attribution through it) and
    ``attribution`` (signed share of the target's value) over the recorded edges."""
    order = sorted(graph.nodes, key=lambda n: _order(graph, n), reverse=True)
    influence = defaultdict(float, {OUTPUT: 1.0})
    signed = defaultdict(float, {OUTPUT: graph.nodes[OUTPUT]["value"]})
    for node in order:
        data = graph.nodes[node]
        total, value = data.get("total_abs", 0.0), data.get("value", 0.0)
        for source, _, edge in graph.in_edges(node, data=True):
            if total > 0:
                influence[source] += influence[node] * abs(edge["weight"]) / total
            if abs(value) > 1e-12:
                signed[source] += edge["weight"] * signed[node] / value
    for node in graph.nodes:
        graph.nodes[node]["influence"] = influence[node]
        graph.nodes[node]["attribution"] = signed[node]


def _strongest_paths(graph, n_paths: int) -> list[tuple]:
    """The ``n_paths`` source-to-output paths with the largest product of normalized edge weights."""
    order = sorted(graph.nodes, key=lambda n: _order(graph, n))
    best: dict = {}
    for node in order:
        incoming = list(graph.in_edges(node, data=True))
        if not incoming:
            best[node] = [(1.0, (node,))]
            continue
        total = graph.nodes[node].get("total_abs", 0.0) or 1.0
        candidates = [(score * abs(edge["weight"]) / total, path + (node,))
                      for source, _, edge in incoming for score, path in best.get(source, [])]
        best[node] = heapq.nlargest(n_paths, candidates, key=lambda c: c[0])
    return [path for _, path in best.get(OUTPUT, [])]


def prune(graph, node_threshold: float = 0.02, n_paths: int | None = None):
    """The part of a traced graph that matters: nodes with at least ``node_threshold`` influence
    (optionally only those on the ``n_paths`` strongest paths), and only nodes that reach the output."""
    kept = [n for n, d in graph.nodes(data=True) if n == OUTPUT or d["influence"] >= node_threshold]
    pruned = graph.subgraph(kept).copy()
    if n_paths is not None:
        paths = _strongest_paths(pruned, n_paths)
        nodes = {n for path in paths for n in path}
        edges = {(a, b) for path in paths for a, b in zip(path, path[1:])}
        pruned = pruned.edge_subgraph(edges).copy() if edges else pruned.subgraph([OUTPUT]).copy()
        pruned.add_nodes_from((n, graph.nodes[n]) for n in nodes | {OUTPUT})
    reaching = nx.ancestors(pruned, OUTPUT) | {OUTPUT}
    return pruned.subgraph(reaching).copy()


_pruned = prune  # trace's own `prune` flag hides the function


@renamed_keywords(model="lm")
def trace(lm, transcoders: dict, input_ids, target: Target, *, max_nodes: int = 100, threshold: float = 0.01,
          node_threshold: float = 0.02, n_paths: int | None = None, groups=None, labels=None,
          min_influence: float = 1e-4, prune: bool = True) -> nx.DiGraph:
    """The circuit behind ``target`` on one input, as a ``networkx.DiGraph``.

    Parameters
    ----------
    lm, transcoders
        A causal LM and ``{layer: Transcoder}`` (layers without one count their MLP as error).
    input_ids
        One tokenized input.
    target
        A :class:`Target`: a logit, a logit difference, or a feature.
    max_nodes
        How many features and heads to expand (one backward pass each).
    threshold
        Edges carrying less than this fraction of their node's total absolute attribution are not recorded.
    node_threshold
        Pruning: keep the nodes (of every kind, errors and bias included) through which at least this
        share of the target's absolute attribution flows.
    n_paths
        When given, keep only the union of the ``n_paths`` strongest paths to the output.
    groups
        Per position, a group name (e.g. the gene a token belongs to) or None: tokens of a group share
        one input node, their attributions summed.
    labels
        Per position, a display label (the token's text) for ungrouped input nodes.

    Returns
    -------
    A graph with node attributes ``kind`` (input, feature, head, error, bias,
    output), ``layer``, ``position``, ``label``, ``influence`` and ``attribution``
    (the node's signed share of the target's value), and edge attribute ``weight``
    (the source's attribution to the destination). ``graph.graph`` holds the
    target and how much of it the inputs, the errors and the bias account for.
    """
    linear = LinearizedModel(lm, transcoders, input_ids)
    n_tokens = linear.n_tokens
    for name, per_position in (("groups", groups), ("labels", labels)):
        if per_position is not None and len(per_position) != n_tokens:
            raise ValueError(f"{name} has {len(per_position)} entries; the input has {n_tokens} tokens.")
    search = _Search(linear, threshold, groups, labels)
    search.graph.add_node(OUTPUT, kind="output", layer=linear.n_layers, position=target.position % n_tokens,
                          label=target.label)
    search.expand(OUTPUT, target.scalar(linear), 1.0)
    while len(search.expanded) <= max_nodes:
        node = search.next_node(min_influence)
        if node is None:
            break
        search.expand(node, search.scalar_of(node), search.estimate[node])
    graph = search.graph
    for node, data in graph.nodes(data=True):
        data.setdefault("expanded", False)
    _propagate(graph)
    leaves = [n for n in graph.nodes if graph.in_degree(n) == 0]
    leaf_influence = sum(graph.nodes[n]["influence"] for n in leaves) or 1.0
    share = defaultdict(float)
    for node in leaves:
        kind = graph.nodes[node]["kind"]
        share["input" if kind == "input" else "error" if kind == "error" else "bias" if kind == "bias"
              else "unexpanded"] += graph.nodes[node]["influence"] / leaf_influence
    graph.graph.update(target=target.label, value=graph.nodes[OUTPUT]["value"], n_tokens=n_tokens,
                       n_layers=linear.n_layers, expanded=len(search.expanded) - 1,
                       **{f"share_{k}": share[k] for k in ("input", "error", "bias", "unexpanded")})
    if prune:
        graph = _pruned(graph, node_threshold, n_paths)
    return graph
