"""Feature-level circuits: a feature at every position where it fires is one node, and features that only read
their token are folded into that token's input node.

Per traced prompt, a folded feature instance (``feature:L:F@p``) joins the input node of the group at position
``p`` (its gene, or the template): its outgoing edges leave from that input node, its incoming edges (from the
token it reads) vanish, and the input node lists it under ``folded``. The per-prompt graphs are then merged
(:func:`merge`); each merged feature node keeps the positions it fired at (``positions``: ``"cell:p,p;..."``) and
how many instances a prompt has on average (``n_positions``).
"""

from __future__ import annotations

from ._graphs import merge


def fold_features(graph, folded, groups, sections):
    """A copy of one prompt's circuit graph with the feature instances of ``folded`` (``(layer, feature)``
    pairs) folded into the input node of the group at their position (``groups`` / ``sections``: per
    position of the traced sequence, as :func:`sctranscoder.circuits.input_groups` gives them)."""
    folded = {(int(layer), int(feature)) for layer, feature in folded}
    out = graph.copy()
    for node, data in list(graph.nodes(data=True)):
        if data.get("kind") != "feature" or (int(data["layer"]), int(data["feature"])) not in folded:
            continue
        position = int(data["position"])
        group = groups[position] if position < len(groups) and groups[position] is not None else str(position)
        name = f"input:{group}"
        if name not in out:
            section = sections[position] if position < len(sections) else "template"
            out.add_node(name, kind="input", layer=-1, position=position, label=str(group), positions=str(position),
                         grouped=True, section=str(section), influence=0.0, attribution=0.0)
        target = out.nodes[name]
        for key in ("influence", "attribution"):
            target[key] = target.get(key, 0.0) + data.get(key, 0.0)
        target["folded"] = ",".join(filter(None, [target.get("folded", ""), data["label"]]))
        for _, after, weight in out.out_edges(node, data="weight"):
            if out.has_edge(name, after):
                out.edges[name, after]["weight"] += weight
            else:
                out.add_edge(name, after, weight=weight)
        out.remove_node(node)
    return out


def feature_circuit(graphs, folded=(), groups=None, sections=None, cells=None):
    """The feature-level circuit over several prompts: each graph folded (:func:`fold_features`; ``groups`` /
    ``sections`` per graph), then merged, with each feature node's positions kept underneath."""
    if folded:
        graphs = [fold_features(g, folded, gr, se) for g, gr, se in zip(graphs, groups, sections)]
    merged = merge(graphs)
    cells = cells if cells is not None else [str(i) for i in range(len(graphs))]
    where: dict = {}
    for cell, graph in zip(cells, graphs):
        for _, data in graph.nodes(data=True):
            if data.get("kind") == "feature":
                key = f"feature:{data['layer']}:{data['feature']}"
                where.setdefault(key, {}).setdefault(cell, []).append(int(data["position"]))
    for key, per_cell in where.items():
        merged.nodes[key]["positions"] = ";".join(f"{c}:{','.join(map(str, sorted(p)))}"
                                                  for c, p in per_cell.items())
        merged.nodes[key]["n_positions"] = sum(len(p) for p in per_cell.values()) / len(graphs)
    for graph in graphs:  # merge keeps no list of what each input absorbed
        for node, data in graph.nodes(data=True):
            if data.get("folded"):
                known = set(filter(None, merged.nodes[f"input:{data['label']}"].get("folded", "").split(",")))
                known |= set(data["folded"].split(","))
                merged.nodes[f"input:{data['label']}"]["folded"] = ",".join(sorted(known))
    merged.graph["folded"] = ",".join(f"L{layer}/F{feature}" for layer, feature in sorted(folded))
    return merged
