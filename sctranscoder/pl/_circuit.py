"""Draw a circuit layer by layer: input genes at the bottom, features by layer, the output at the top."""

from __future__ import annotations

from collections import defaultdict

import matplotlib.pyplot as plt
from matplotlib.lines import Line2D

from ._utils import finish

_COLOURS = {"input": "#4c72b0", "feature": "#dd8452", "head": "#55a868", "error": "#8c8c8c", "bias": "#bbbbbb",
            "output": "#c44e52"}
_OTHER_INPUT = "#9aa5b1"  # template and answer-prefix inputs: pooled, drawn apart from genes
_UP, _DOWN = "#2b6cb0", "#c53030"


def _row(data, n_layers: int) -> float:
    kind = data["kind"]
    if kind in ("input", "bias"):
        return 0
    if kind == "output":
        return 2 * n_layers + 1
    return 2 * data["layer"] + (1 if kind == "head" else 2)


def is_gene_input(data) -> bool:
    """Whether a circuit node's data is a gene input (not the template, the answer prefix or a single token)."""
    return data.get("section", "gene" if data.get("grouped") else "") == "gene"


def shown_nodes(graph, max_inputs: int, max_per_layer: int, show_errors: bool) -> list:
    """The nodes drawn: the output, the strongest genes, every pooled non-gene input, and the strongest
    features (and heads, errors) of each layer, by influence."""
    groups = defaultdict(list)
    for node, data in graph.nodes(data=True):
        kind = data["kind"]
        if not show_errors and kind in ("error", "bias"):
            continue
        if kind == "input":
            groups["genes" if is_gene_input(data) else "other inputs"].append(node)
        elif kind == "output":
            groups["output"].append(node)
        else:
            groups[(kind, data.get("layer"))].append(node)
    shown = []
    for key, nodes in groups.items():
        if key == "genes":  # as the gene table ranks them: most for the call first, then the most against
            attribution = {n: graph.nodes[n].get("attribution", 0.0) for n in nodes}
            ranked = sorted(nodes, key=lambda n: -attribution[n])
            n_for = min(sum(1 for n in nodes if attribution[n] > 0), max_inputs - max_inputs // 3)
            against = [n for n in reversed(ranked) if attribution[n] < 0][: max_inputs - n_for]
            shown += ranked[:n_for] + against
            continue
        nodes.sort(key=lambda n: -graph.nodes[n].get("influence", 0.0))
        shown += nodes[: max_per_layer if isinstance(key, tuple) else len(nodes)]
    return shown


def layered_layout(graph, n_layers: int):
    """``{node: (x, y)}``: inputs at the bottom, features by layer, the output on top; genes first in a row."""
    rows = defaultdict(list)
    for node, data in graph.nodes(data=True):
        rows[_row(data, n_layers)].append(node)
    positions = {}
    for row, nodes in rows.items():
        if row == 0:  # genes by signed attribution (strongest for the call at the left), pooled inputs last
            nodes.sort(key=lambda n: (not is_gene_input(graph.nodes[n]), graph.nodes[n]["kind"] == "bias",
                                      -graph.nodes[n].get("attribution", 0.0)))
        else:
            nodes.sort(key=lambda n: -abs(graph.nodes[n].get("attribution", 0.0)))
        for i, node in enumerate(nodes):
            positions[node] = ((i + 0.5) / len(nodes), row)
    return positions


def caption(graph, *, n_inputs: int | None = None, n_features: int | None = None) -> str:
    """A sentence or three saying what a circuit figure shows (also used by the report)."""
    g = graph.graph
    cells = f" over {g['n_graphs']} cells" if "n_graphs" in g else ""
    text = (f"What drives the model's output '{g.get('target', '')}'{cells}: input genes at the bottom, transcoder "
            "features layer by layer above them, the output at the top. Node size: influence on the output. "
            f"Edges: direct effects, blue where they raise their target, red where they lower it, thicker for "
            f"larger weights.")
    if n_inputs is not None:
        text += (f" Shown: {n_inputs} genes, ranked left to right as the gene table ranks them (signed contribution "
                 f"to the output over all paths: the strongest for it first, then the strongest against it), and "
                 f"the {n_features} most influential features;")
        text += " prompt-template and answer-prefix tokens are pooled into one grey node each."
    if "replacement" in g:
        text += (f" circuit-tracer's replacement score {g['replacement']:.2f} and completeness "
                 f"{g['completeness']:.2f} (pruned graph: {g.get('replacement_pruned', float('nan')):.2f} / "
                 f"{g.get('completeness_pruned', float('nan')):.2f}).")
    return text


def circuit(graph, *, ax=None, show_errors: bool = True, max_inputs: int = 12, max_per_layer: int = 8,
            max_labels: int = 60, title: str | None = None, show_caption: bool = True, show: bool | None = None,
            save=None):
    """Plot a circuit from :func:`sctranscoder.tl.cell_type_circuit` or :func:`sctranscoder.circuits.trace`.

    Rows from bottom to top: input genes (the template's and the fed answer's tokens each pooled into one
    grey node), then for each layer its attention heads (greedy graphs) and its transcoder features, then
    the output. Node size follows influence; edges are blue where the source raises its target and red
    where it lowers it, thicker for larger weights (the legend says so). Only the ``max_inputs``
    strongest genes and ``max_per_layer`` strongest features (heads, errors) of each layer are drawn.
    """
    n_layers = int(graph.graph.get("n_layers", 1 + max((d.get("layer", 0) for _, d in graph.nodes(data=True)),
                                                       default=0)))
    shown = shown_nodes(graph, max_inputs, max_per_layer, show_errors)
    sub = graph.subgraph(shown)
    xy = layered_layout(sub, n_layers)
    if ax is None:
        width = max(7.0, 0.75 * sum(1 for n in shown if sub.nodes[n]["kind"] == "input") + 2.5)
        _, ax = plt.subplots(figsize=(width, 1.3 * (n_layers + 2) + 1.2))
    heaviest = max((abs(d["weight"]) for *_, d in sub.edges(data=True)), default=1.0) or 1.0
    for source, target, data in sub.edges(data=True):
        (x0, y0), (x1, y1) = xy[source], xy[target]
        ax.add_line(Line2D([x0, x1], [y0, y1], color=_UP if data["weight"] >= 0 else _DOWN, alpha=0.55,
                           linewidth=0.4 + 3.6 * abs(data["weight"]) / heaviest, zorder=1))
    influence = max((d.get("influence", 0.0) for _, d in sub.nodes(data=True)), default=1.0) or 1.0
    for node, data in sub.nodes(data=True):
        x, y = xy[node]
        colour = _COLOURS.get(data["kind"], "black")
        if data["kind"] == "input" and not is_gene_input(data):
            colour = _OTHER_INPUT
        ax.scatter([x], [y], s=40 + 320 * data.get("influence", 0.0) / influence, color=colour, zorder=2,
                   edgecolors="white")
    labelled = sorted(sub.nodes, key=lambda n: -sub.nodes[n].get("influence", 0.0))[:max_labels]
    inputs = sorted((n for n in labelled if sub.nodes[n]["kind"] == "input"), key=lambda n: xy[n][0])
    for i, node in enumerate(inputs):  # horizontal labels, staggered so neighbours do not collide
        x, y = xy[node]
        label = str(sub.nodes[node]["label"]).strip() or "(space)"
        ax.text(x, y - 0.35 - 0.45 * (i % 2), label, ha="center", va="top", fontsize=9,
                style="normal" if is_gene_input(sub.nodes[node]) else "italic")
    for node in labelled:
        data = sub.nodes[node]
        if data["kind"] in ("input", "bias"):
            continue
        x, y = xy[node]
        ax.text(x, y + 0.25, data["label"], ha="center", va="bottom", fontsize=8)
    ax.set_yticks([0] + [2 * layer + 1.5 for layer in range(n_layers)] + [2 * n_layers + 1])
    ax.set_yticklabels(["inputs"] + [f"layer {layer}" for layer in range(n_layers)] + ["output"], fontsize=9)
    ax.set_xticks([])
    ax.set_xlim(0, 1)
    ax.set_ylim(-1.6, 2 * n_layers + 1.8)
    for side in ("top", "right", "bottom"):
        ax.spines[side].set_visible(False)
    kinds = {d["kind"] for _, d in sub.nodes(data=True)}
    handles = [Line2D([], [], marker="o", linestyle="", color=c, label="gene" if k == "input" else k)
               for k, c in _COLOURS.items() if k in kinds]
    if any(d["kind"] == "input" and not is_gene_input(d) for _, d in sub.nodes(data=True)):
        handles.append(Line2D([], [], marker="o", linestyle="", color=_OTHER_INPUT, label="template / answer prefix"))
    handles += [Line2D([], [], color=_UP, linewidth=2, label="edge raises its target"),
                Line2D([], [], color=_DOWN, linewidth=2, label="edge lowers its target"),
                Line2D([], [], color="#555555", linewidth=0.6, label="weak edge"),
                Line2D([], [], color="#555555", linewidth=4.0, label=f"strongest edge ({heaviest:.2g})")]
    ax.legend(handles=handles, loc="upper left", fontsize=8, frameon=False, bbox_to_anchor=(1.0, 1.0))
    ax.set_title(title if title is not None else str(graph.graph.get("target", "")), fontsize=11)
    if show_caption:
        n_inputs = sum(1 for n in shown if sub.nodes[n]["kind"] == "input" and is_gene_input(sub.nodes[n]))
        n_features = sum(1 for n in shown if sub.nodes[n]["kind"] == "feature")
        ax.figure.text(0.02, -0.02, caption(graph, n_inputs=n_inputs, n_features=n_features), fontsize=8,
                       ha="left", va="top", wrap=True)
    return finish(ax, show, save)
