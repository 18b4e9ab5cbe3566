"""Supernodes: a circuit's features grouped, automatically, by the gene set their input genes are enriched in.

circuit-tracer leaves grouping features into supernodes to its users, by hand.
Here each feature of a merged circuit gets a gene list (the input genes whose
direct edges into it are positive, strongest first); every list is tested for
enrichment (hypergeometric, BH over the sets tested); a feature joins the
supernode of its best set when that passes ``max_fdr``. Features whose genes
pass no set stay on their own.
"""

from __future__ import annotations

import pandas as pd


def feature_input_genes(graph, n_top: int = 15) -> dict:
    """``{feature node: [genes]}``: the genes with the strongest positive direct edges into each feature."""
    lists = {}
    for node, data in graph.nodes(data=True):
        if data["kind"] != "feature":
            continue
        weights = [(graph.nodes[s]["label"], d["weight"]) for s, _, d in graph.in_edges(node, data=True)
                   if graph.nodes[s]["kind"] == "input" and graph.nodes[s].get("section", "gene") == "gene"
                   and d["weight"] > 0]
        lists[node] = [g for g, _ in sorted(weights, key=lambda x: -x[1])[:n_top]]
    return lists


def circuit_supernodes(circuit, gene_sets="immune_markers", *, background=None, n_top: int = 15,
                       max_fdr: float = 0.05, min_genes: int = 3, min_overlap: int = 2,
                       min_set_size: int = 3) -> pd.DataFrame:
    """Group a circuit's features by the gene set their input genes are enriched in.

    Parameters
    ----------
    circuit
        A :class:`CellTypeCircuit` (or a merged circuit graph).
    gene_sets
        Libraries to test (as :func:`sctranscoder.genesets.enrich` takes them).
    background
        The genes that could have been inputs; default: every gene input of the circuit's graph.
    n_top, min_genes
        Each feature's list: its ``n_top`` strongest positive input genes; features with fewer than
        ``min_genes`` are not tested.
    min_overlap
        A set counts only when it shares at least this many genes with the list (one shared gene is
        no grouping).

    Returns
    -------
    One row per tested feature: ``node``, ``layer``, ``feature``, ``genes``, ``supernode`` (its best
    set's term when it passes ``max_fdr``, else empty), ``Gene_set``, ``Overlap`` and ``Adjusted P-value``.
    ``attrs["supernodes"]``: ``{term: [feature nodes]}``.
    """
    from .. import genesets

    graph = circuit if hasattr(circuit, "nodes") else circuit.graph  # a bare graph keeps its attributes in .graph
    lists = {node: genes for node, genes in feature_input_genes(graph, n_top).items() if len(genes) >= min_genes}
    if background is None:
        background = sorted({d["label"] for _, d in graph.nodes(data=True)
                             if d["kind"] == "input" and d.get("section", "gene") == "gene"})
    columns = ["node", "layer", "feature", "genes", "supernode", "Gene_set", "Overlap", "Adjusted P-value"]
    if not lists:
        frame = pd.DataFrame(columns=columns)
        frame.attrs["supernodes"] = {}
        return frame
    table = genesets.enrich(lists, gene_sets, background, min_set_size=min_set_size, min_overlap=min_overlap)
    rows = []
    for node, genes in lists.items():
        hits = table[table.List.astype(str) == str(node)].sort_values("P-value")
        best = hits.iloc[0] if len(hits) else None
        passed = best is not None and best["Adjusted P-value"] <= max_fdr
        rows.append({"node": node, "layer": graph.nodes[node]["layer"], "feature": graph.nodes[node]["feature"],
                     "genes": genes, "supernode": best.Term if passed else "",
                     "Gene_set": best.Gene_set if passed else "", "Overlap": best.Overlap if passed else "",
                     "Adjusted P-value": float(best["Adjusted P-value"]) if best is not None else float("nan")})
    frame = pd.DataFrame(rows, columns=columns)
    groups: dict = {}
    for node, term in zip(frame.node, frame.supernode):
        if term:
            groups.setdefault(term, []).append(node)
    frame.attrs["supernodes"] = groups
    return frame


def supernode_ids(groups: dict, export: dict) -> list:
    """circuit-tracer's ``qParams.supernodes`` (``[[name, node id, ...], ...]``) for one exported graph:
    every position of a grouped feature that the export holds."""
    by_feature: dict = {}
    for node in export["nodes"]:
        if node["feature_type"] == "cross layer transcoder":
            layer, index, _ = node["node_id"].split("_")
            by_feature.setdefault(f"feature:{layer}:{index}", []).append(node["node_id"])
    out = []
    for name, nodes in groups.items():
        ids = [i for node in nodes for i in by_feature.get(node, [])]
        if ids:
            out.append([name, *ids])
    return out
