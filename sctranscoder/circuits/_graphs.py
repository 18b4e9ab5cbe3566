"""Circuit graphs: merged over inputs, and written to GraphML and JSON."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import networkx as nx

from .._atomic import atomic_path

_KEYS = {"feature": ("layer", "feature"), "head": ("layer", "head"), "error": ("layer",)}


def position_free(node: str, data: dict) -> str:
    """The node's name with its position (and, for heads, its reader) dropped."""
    kind = data["kind"]
    if kind in _KEYS:
        return ":".join([kind, *(str(data[k]) for k in _KEYS[kind])])
    if kind == "input":
        return f"input:{data['label']}"
    return node


def merge(graphs: list) -> nx.DiGraph:
    """One graph over several inputs: nodes matched without their positions (a feature is the same
    feature wherever it fires), attributions and edge weights averaged over all the graphs (zero
    where absent), ``count`` = in how many graphs the node or edge appears."""
    if not graphs:
        raise ValueError("No graphs to merge.")
    n = len(graphs)
    nodes: dict = {}
    sums = defaultdict(lambda: defaultdict(float))
    counts: dict = defaultdict(set)
    edges = defaultdict(float)
    edge_counts: dict = defaultdict(set)
    for g_index, graph in enumerate(graphs):
        names = {node: position_free(node, data) for node, data in graph.nodes(data=True)}
        for node, data in graph.nodes(data=True):
            name = names[node]
            nodes.setdefault(name, {k: data[k] for k in ("kind", "layer", "label", "feature", "head", "grouped", "section") if k in data})
            for key in ("attribution", "influence"):
                sums[name][key] += data.get(key, 0.0)
            counts[name].add(g_index)
        for source, target, data in graph.edges(data=True):
            key = (names[source], names[target])
            if key[0] != key[1]:
                edges[key] += data["weight"]
                edge_counts[key].add(g_index)
    merged = nx.DiGraph(n_graphs=n, target=graphs[0].graph.get("target", ""),
                        value=sum(g.graph.get("value", 0.0) for g in graphs) / n)
    for share in ("share_input", "share_error", "share_bias", "share_unexpanded"):
        merged.graph[share] = sum(g.graph.get(share, 0.0) for g in graphs) / n
    for name, data in nodes.items():
        merged.add_node(name, **data, attribution=sums[name]["attribution"] / n,
                        influence=sums[name]["influence"] / n, count=len(counts[name]))
    for (source, target), weight in edges.items():
        merged.add_edge(source, target, weight=weight / n, count=len(edge_counts[(source, target)]))
    return merged


def _scalar_attributes(graph) -> nx.DiGraph:
    """A copy whose attributes GraphML can hold (no None, numbers as float/int, the rest as text)."""
    clean = nx.DiGraph()
    def fix(attrs):
        out = {}
        for key, value in attrs.items():
            if value is None:
                continue
            if isinstance(value, (bool, int, float, str)):
                out[key] = value
            elif hasattr(value, "item"):
                out[key] = value.item()
            else:
                out[key] = str(value)
        return out
    clean.graph.update(fix(graph.graph))
    clean.add_nodes_from((n, fix(d)) for n, d in graph.nodes(data=True))
    clean.add_edges_from((a, b, fix(d)) for a, b, d in graph.edges(data=True))
    return clean


def write_graphml(graph, path) -> Path:
    """Write a circuit as GraphML (Gephi, Cytoscape, yEd), atomically."""
    path = Path(path)
    with atomic_path(path) as tmp:
        nx.write_graphml(_scalar_attributes(graph), tmp)
    return path


def to_json(graph) -> dict:
    """A circuit as node-link JSON data (``nodes``, ``edges`` and the graph's attributes)."""
    return nx.node_link_data(_scalar_attributes(graph), edges="edges")


def write_json(graph, path) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(to_json(graph), indent=1))
    return path


def read_json(path) -> nx.DiGraph:
    return nx.node_link_graph(json.loads(Path(path).read_text()), edges="edges")
