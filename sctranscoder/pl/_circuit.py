"""Draw a circuit layer by layer: input genes (or tokens) at the bottom, the output at the top."""

from __future__ import annotations

from collections import defaultdict

import matplotlib.pyplot as plt
from matplotlib.lines import Line2D

from ._utils import finish

_COLOURS = {"input": "#4c72b0", "feature": "#dd8452", "head": "#55a868", "error": "#8c8c8c", "bias": "#bbbbbb",
            "output": "#c44e52"}


def _row(data, n_layers: int) -> float:
    kind = data["kind"]
    if kind == "input":
        return 0
    if kind == "output":
        return 2 * n_layers + 1
    if kind == "bias":
        return 0
    return 2 * data["layer"] + (1 if kind == "head" else 2)


def _layout(graph, n_layers: int, by_position: bool):
    rows = defaultdict(list)
    for node, data in graph.nodes(data=True):
        rows[_row(data, n_layers)].append(node)
    positions = {}
    for row, nodes in rows.items():
        if by_position:  # the bias goes last in its row
            nodes.sort(key=lambda n: (graph.nodes[n]["kind"] == "bias", graph.nodes[n].get("position", 0), n))
        else:
            nodes.sort(key=lambda n: -abs(graph.nodes[n].get("attribution", 0.0)))
        width = max(len(nodes) - 1, 1)
        for i, node in enumerate(nodes):
            positions[node] = (i / width if len(nodes) > 1 else 0.5, row)
    return positions


def circuit(graph, *, ax=None, show_errors: bool = True, max_labels: int = 40, title: str | None = None,
            show: bool | None = None, save=None):
    """Plot a circuit from :func:`sctranscoder.circuits.trace` or :func:`sctranscoder.tl.cell_type_circuit`.

    Rows from bottom to top: input genes (or tokens), then for each layer its
    attention heads and its transcoder features, then the output. Node size
    follows influence; edges are blue where they push the target up, red where
    they push it down, and thicker for larger attributions.
    """
    nodes = [n for n, d in graph.nodes(data=True) if show_errors or d["kind"] not in ("error", "bias")]
    graph = graph.subgraph(nodes)
    n_layers = int(graph.graph.get("n_layers", 1 + max((d.get("layer", 0) for _, d in graph.nodes(data=True)),
                                                       default=0)))
    by_position = "n_graphs" not in graph.graph
    xy = _layout(graph, n_layers, by_position)
    if ax is None:
        _, ax = plt.subplots(figsize=(max(6.0, 0.25 * len(nodes)), 1.1 * (2 * n_layers + 2)))
    heaviest = max((abs(d["weight"]) for *_, d in graph.edges(data=True)), default=1.0) or 1.0
    for source, target, data in graph.edges(data=True):
        (x0, y0), (x1, y1) = xy[source], xy[target]
        reader = graph.nodes[target]
        # the sign of what this edge does to the output: its weight times the reader's share per unit of value
        effect = data["weight"] * reader.get("attribution", 1.0) * (reader.get("value") or 1.0)
        colour = "#2b6cb0" if effect >= 0 else "#c53030"
        ax.add_line(Line2D([x0, x1], [y0, y1], color=colour, alpha=0.55,
                           linewidth=0.4 + 3.0 * abs(data["weight"]) / heaviest, zorder=1))
    influence = max((d.get("influence", 0.0) for _, d in graph.nodes(data=True)), default=1.0) or 1.0
    for node, data in graph.nodes(data=True):
        x, y = xy[node]
        size = 30 + 250 * data.get("influence", 0.0) / influence
        ax.scatter([x], [y], s=size, color=_COLOURS.get(data["kind"], "black"), zorder=2, edgecolors="white")
    labelled = sorted(graph.nodes, key=lambda n: -graph.nodes[n].get("influence", 0.0))[:max_labels]
    for node in labelled:
        data = graph.nodes[node]
        x, y = xy[node]
        if data["kind"] == "input":
            ax.text(x, y - 0.35, data["label"], rotation=90, ha="center", va="top", fontsize=7)
        elif data["kind"] != "bias":
            ax.text(x, y + 0.22, data["label"], ha="center", va="bottom", fontsize=6)
    ax.set_yticks([0] + [2 * layer + 1.5 for layer in range(n_layers)] + [2 * n_layers + 1])
    ax.set_yticklabels(["inputs"] + [f"layer {layer}" for layer in range(n_layers)] + ["output"])
    ax.set_xticks([])
    ax.set_xlim(-0.05, 1.05)
    ax.set_ylim(-2.5, 2 * n_layers + 1.8)
    for side in ("top", "right", "bottom"):
        ax.spines[side].set_visible(False)
    handles = [Line2D([], [], marker="o", linestyle="", color=c, label=k) for k, c in _COLOURS.items()
               if any(d["kind"] == k for _, d in graph.nodes(data=True))]
    ax.legend(handles=handles, loc="upper left", fontsize=7, frameon=False, bbox_to_anchor=(1.0, 1.0))
    ax.set_title(title if title is not None else str(graph.graph.get("target", "")), fontsize=9)
    return finish(ax, show, save)
