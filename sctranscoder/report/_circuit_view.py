"""An interactive circuit in the HTML report: plain SVG drawn by our own script, offline, no library.

:func:`circuit_view` turns a cell-type circuit into plain data (nodes placed as
:func:`sctranscoder.pl.circuit` places them, so the view and the figure agree,
edges, and what each node's panel says: a gene's contribution and the features
it feeds; a feature's input genes, the traced cells it appears in, its supernode
and any enriched sets the report already has). :func:`circuit_view_html` embeds
that data as JSON next to an empty SVG; ``VIEW_JS`` draws every view when the
page loads, and shows a node's panel on hover, click or keyboard focus.
"""

from __future__ import annotations

import html
import json

from ..pl._circuit import is_gene_input, layered_layout, shown_nodes
from ..tl._supernodes import feature_input_genes

_KIND_COLOURS = {"gene": "#4c72b0", "other": "#9aa5b1", "feature": "#dd8452", "head": "#55a868", "error": "#8c8c8c",
                 "bias": "#bbbbbb", "output": "#c44e52"}


def _position_free(name: str) -> str:
    return name.split("@")[0] if name.startswith(("feature:", "error:", "head:")) else name


def _cells_of(circuit) -> dict:
    """``{merged node: [cells whose graph holds it]}``."""
    cells: dict = {}
    for graph, cell in zip(getattr(circuit, "graphs", []), getattr(circuit, "cells", [])):
        for node in {_position_free(n) for n in graph.nodes}:
            cells.setdefault(node, []).append(str(cell))
    return cells


def _node_details(graph, node, data, cells, inputs, supernode, feature_info, n_graphs) -> dict:
    kind = data["kind"]
    lines, genes, sets = [], [], []
    seen = cells.get(node, [])
    if kind == "input":
        if is_gene_input(data):
            lines.append(f"Contribution to the output (over all paths, mean over cells): {data.get('attribution', 0):+.3g}")
        else:
            lines.append("Pooled tokens of the " + ("prompt template" if data.get("section") == "template"
                                                    else "answer fed to the model") + f": {data.get('attribution', 0):+.3g}")
        fed = sorted(graph.out_edges(node, data=True), key=lambda e: -abs(e[2]["weight"]))[:6]
        if fed:
            lines.append("Feeds: " + ", ".join(f"{graph.nodes[t]['label']} ({d['weight']:+.2g})" for _, t, d in fed))
    elif kind == "feature":
        lines.append(f"Layer {data['layer']}, feature {data['feature']}; contribution to the output "
                     f"{data.get('attribution', 0):+.3g}")
        genes = list(inputs.get(node, []))[:10]
        info = (feature_info or {}).get((data["layer"], data["feature"]), {})
        genes = genes or list(info.get("genes", []))[:10]
        sets = ([f"supernode: {supernode[node]}"] if node in supernode else []) + list(info.get("sets", []))[:5]
    elif kind == "error":
        lines.append(f"What layer {data['layer']}'s transcoder does not explain (its error), summed over positions.")
    elif kind == "output":
        lines.append(f"The output traced: {graph.graph.get('target', '')}")
        for key in ("replacement", "completeness", "replacement_pruned", "completeness_pruned"):
            if key in graph.graph:
                lines.append(f"{key.replace('_', ' ')}: {graph.graph[key]:.2f}")
    if n_graphs:
        lines.append(f"In {len(seen)} of {n_graphs} traced cells" + (f": {', '.join(seen[:6])}" if seen else ""))
    return {"title": str(data.get("label", node)), "lines": lines, "genes": genes, "sets": sets}


def circuit_view(circuit, *, supernodes=None, feature_info: dict | None = None, max_inputs: int = 12,
                 max_per_layer: int = 8) -> dict:
    """Data for :func:`circuit_view_html` from a :class:`sctranscoder.tl.CellTypeCircuit` (or a circuit graph).

    ``supernodes``: :func:`sctranscoder.tl.circuit_supernodes`' table or its ``{term: [nodes]}``;
    ``feature_info``: ``{(layer, feature): {"genes": [...], "sets": [...]}}`` the report already has
    (e.g. the harvested layer's feature genes and enriched sets).
    """
    graph = circuit if hasattr(circuit, "nodes") else circuit.graph  # a bare graph keeps its attributes in .graph
    groups = getattr(supernodes, "attrs", {}).get("supernodes", supernodes) or {}
    supernode = {node: term for term, nodes in groups.items() for node in nodes}
    n_layers = int(graph.graph.get("n_layers", 1))
    sub = graph.subgraph(shown_nodes(graph, max_inputs, max_per_layer, True))
    xy = layered_layout(sub, n_layers)
    inputs = feature_input_genes(graph)
    cells = _cells_of(circuit)
    n_graphs = len(getattr(circuit, "graphs", []))
    influence = max((d.get("influence", 0.0) for _, d in sub.nodes(data=True)), default=1.0) or 1.0
    ids = {node: f"n{i}" for i, node in enumerate(sub.nodes)}
    nodes = []
    for node, data in sub.nodes(data=True):
        kind = data["kind"]
        colour = _KIND_COLOURS["gene" if is_gene_input(data) else "other"] if kind == "input" else _KIND_COLOURS.get(kind)
        x, row = xy[node]
        nodes.append({"id": ids[node], "label": str(data.get("label", node)).strip() or "(space)", "kind": kind,
                      "x": x, "y": 1 - row / (2 * n_layers + 1), "r": 4 + 10 * data.get("influence", 0.0) / influence,
                      "colour": colour, "supernode": supernode.get(node, ""),
                      "details": _node_details(graph, node, data, cells, inputs, supernode, feature_info, n_graphs)})
    heaviest = max((abs(d["weight"]) for *_, d in sub.edges(data=True)), default=1.0) or 1.0
    edges = [{"s": ids[a], "t": ids[b], "w": d["weight"], "width": 0.4 + 4 * abs(d["weight"]) / heaviest}
             for a, b, d in sub.edges(data=True)]
    return {"title": str(graph.graph.get("target", "")), "nodes": nodes, "edges": edges, "heaviest": heaviest,
            "n_layers": n_layers, "message": getattr(circuit, "message", "")}


def circuit_view_html(view: dict) -> str:
    """The view's HTML: the data as JSON, an SVG the script fills, the legend and the node panel."""
    payload = json.dumps(view).replace("</", "<\\/")  # nothing in the data can close the script element
    legend = "".join(f'<span class="cv-key"><svg width="12" height="12"><circle cx="6" cy="6" r="5" fill="{c}"/>'
                     f"</svg>{html.escape(k)}</span>"
                     for k, c in (("gene", _KIND_COLOURS["gene"]), ("template / answer prefix", _KIND_COLOURS["other"]),
                                  ("feature", _KIND_COLOURS["feature"]), ("error", _KIND_COLOURS["error"]),
                                  ("output", _KIND_COLOURS["output"])))
    legend += ('<span class="cv-key"><svg width="28" height="12"><line x1="0" y1="6" x2="28" y2="6" stroke="#2b6cb0" '
               'stroke-width="3"/></svg>edge raises its target</span><span class="cv-key"><svg width="28" height="12">'
               '<line x1="0" y1="6" x2="28" y2="6" stroke="#c53030" stroke-width="3"/></svg>edge lowers its target'
               f'</span><span class="cv-key">edge width: weight (thickest {view["heaviest"]:.2g})</span>')
    message = f'<p class="cv-message">{html.escape(view["message"])}</p>' if view.get("message") else ""
    return (f'<div class="circuit-view"><script type="application/json" class="cv-data">{payload}</script>'
            f'<p class="muted">Interactive circuit: hover over or click a node (or tab to it) to see its genes, '
            f'cells and gene sets.</p>{message}<div class="cv-body"><svg class="cv-svg" role="img" '
            f'aria-label="{html.escape(view["title"])}"></svg><div class="cv-panel" aria-live="polite">'
            f'<p class="muted">Select a node.</p></div></div><div class="cv-legend">{legend}</div></div>')


VIEW_CSS = """
.circuit-view { margin: 1em 0; }
.cv-body { display: flex; gap: 1em; align-items: flex-start; flex-wrap: wrap; }
.cv-svg { flex: 1 1 560px; max-width: 100%; height: auto; border: 1px solid #ddd; background: #fff; }
.cv-svg circle { cursor: pointer; stroke: #fff; stroke-width: 1; }
.cv-svg circle.cv-selected { stroke: #111; stroke-width: 2.5; }
.cv-svg text { font: 11px sans-serif; fill: #222; pointer-events: none; }
.cv-svg line.cv-dim { opacity: 0.08; }
.cv-panel { flex: 0 1 300px; font-size: 0.9em; border-left: 3px solid #dd8452; padding-left: 0.8em; min-height: 6em; }
.cv-panel h4 { margin: 0 0 0.3em 0; }
.cv-legend { font-size: 0.85em; margin-top: 0.4em; }
.cv-key { margin-right: 1.2em; white-space: nowrap; }
.cv-key svg { vertical-align: middle; margin-right: 0.3em; }
.cv-message { font-weight: bold; }
"""

VIEW_JS = """
(function () {
  var NS = "http://www.w3.org/2000/svg";
  function el(name, attrs) {
    var node = document.createElementNS(NS, name);
    for (var k in attrs) node.setAttribute(k, attrs[k]);
    return node;
  }
  function text(tag, content, cls) {
    var node = document.createElement(tag);
    node.textContent = content;
    if (cls) node.className = cls;
    return node;
  }
  function show(panel, node) {
    panel.innerHTML = "";
    var d = node.details;
    panel.appendChild(text("h4", d.title));
    d.lines.forEach(function (line) { panel.appendChild(text("p", line)); });
    if (d.genes.length) panel.appendChild(text("p", "Top input genes: " + d.genes.join(", ")));
    if (d.sets.length) panel.appendChild(text("p", "Enriched sets: " + d.sets.join("; ")));
    if (node.kind === "feature" && !d.sets.length) panel.appendChild(text("p", "Enriched sets: none passed."));
  }
  function draw(view) {
    var data = JSON.parse(view.querySelector(".cv-data").textContent);
    var svg = view.querySelector(".cv-svg"), panel = view.querySelector(".cv-panel");
    var W = 900, H = 130 * (data.n_layers + 1) + 90, pad = 40;
    svg.setAttribute("viewBox", "0 0 " + W + " " + H);
    var at = {};
    data.nodes.forEach(function (n) { at[n.id] = [pad + n.x * (W - 2 * pad), pad + n.y * (H - 2 * pad - 30)]; });
    var lines = data.edges.map(function (e) {
      var a = at[e.s], b = at[e.t];
      var line = el("line", {x1: a[0], y1: a[1], x2: b[0], y2: b[1], stroke: e.w >= 0 ? "#2b6cb0" : "#c53030",
                             "stroke-width": e.width, "stroke-opacity": 0.5});
      line.dataset.s = e.s; line.dataset.t = e.t;
      svg.appendChild(line);
      return line;
    });
    var inputIndex = 0;
    data.nodes.forEach(function (n) {
      var p = at[n.id];
      var circle = el("circle", {cx: p[0], cy: p[1], r: n.r, fill: n.colour, tabindex: 0, "data-id": n.id});
      var title = el("title", {}); title.textContent = n.label; circle.appendChild(title);
      svg.appendChild(circle);
      var below = n.kind === "input";
      var dy = below ? n.r + 14 + 13 * (inputIndex++ % 2) : -n.r - 5;
      var label = el("text", {x: p[0], y: p[1] + dy, "text-anchor": "middle"});
      label.textContent = n.label;
      svg.appendChild(label);
      function select() {
        svg.querySelectorAll("circle.cv-selected").forEach(function (c) { c.classList.remove("cv-selected"); });
        circle.classList.add("cv-selected");
        lines.forEach(function (l) { l.classList.toggle("cv-dim", l.dataset.s !== n.id && l.dataset.t !== n.id); });
        show(panel, n);
      }
      circle.addEventListener("click", select);
      circle.addEventListener("mouseenter", select);
      circle.addEventListener("focus", select);
    });
    view.dataset.drawn = String(data.nodes.length);
  }
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll(".circuit-view").forEach(draw);
  });
})();
"""
