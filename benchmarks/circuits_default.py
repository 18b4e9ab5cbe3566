"""Circuits of the bundled default C2S model for the largest pbmc68k cell types, with faithfulness checks.

For each of the five largest ``bulk_labels`` types, traces the model's call on a
sample of that type's held-out cells (cells the model never trained on), merges
the per-cell graphs, and prints the top input genes, how much of the target the
graph traces to input genes versus transcoder errors, and two faithfulness
checks against ablations in the replacement model (see
``sctranscoder.circuits.faithfulness``).

Transcoders come from ``--transcoders`` (a folder of ``layer{L}/``, e.g. made by
``benchmarks/transcoder_quality.py --out``), or are trained here first.

    python benchmarks/circuits_default.py --transcoders /tmp/tc --n-cells 8
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

import sctranscoder as sct

# each cell type's own set in the bundled immune marker library
OWN_MARKERS = {"Dendritic": "CD1C+ dendritic cell", "CD14+ Monocyte": "CD14+ Monocyte", "CD19+ B": "B cell",
               "CD4+/CD25 T Reg": "T regulatory cell", "CD8+ Cytotoxic T": "CD8 TEM"}


def own_marker_enrichment(gene_lists: dict, background) -> dict:
    """For each cell type: its own marker set's overlap, p-value and rank among all marker sets (by p-value)."""
    table = sct.genesets.enrich(gene_lists, "immune_markers", background, min_set_size=1)
    results = {}
    for cell_type, genes in gene_lists.items():
        rows = table[table.List == cell_type].sort_values("P-value").reset_index(drop=True)
        own = OWN_MARKERS.get(cell_type)
        hit = rows.index[rows.Term == own]
        if own is None or hit.empty:
            results[cell_type] = {"set": own, "overlap": "0", "p": 1.0, "rank": None}
        else:
            row = rows.loc[hit[0]]
            results[cell_type] = {"set": own, "overlap": row.Overlap, "p": float(row["P-value"]),
                                  "fdr": float(row["Adjusted P-value"]), "rank": int(hit[0]) + 1,
                                  "genes": row.Genes}
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--transcoders", type=Path, default=None, help="folder of layer{L}/ transcoders")
    parser.add_argument("--n-types", type=int, default=5)
    parser.add_argument("--n-cells", type=int, default=8)
    parser.add_argument("--max-nodes", type=int, default=60)
    parser.add_argument("--top-genes", type=int, default=15)
    parser.add_argument("--out", type=Path, default=None, help="write graphs (GraphML) and a JSON summary here")
    args = parser.parse_args()

    model = sct.models.default()
    adata = sct.datasets.pbmc68k_reduced()
    label_key = model.metadata["label_key"]
    if args.transcoders is not None:
        transcoders = sct.tc.load_layers(args.transcoders)
    else:
        transcoders = sct.tl.train_transcoders(adata, model, label_key=label_key, k=32, d_hidden=2048,
                                               batch_size=1024, n_tokens=1024 * 600, learning_rate=1e-3,
                                               warmup_steps=50)
    held_out = adata[adata.obs_names.isin(model.metadata["held_out_cells"])].copy()
    types = adata.obs[label_key].value_counts().index[: args.n_types]
    summary = {}
    for cell_type in types:
        start = time.perf_counter()
        # the older greedy trace on the token contrast (benchmarks/circuits_complete.py sets it beside the new one)
        result = sct.tl.cell_type_circuit(held_out, model, transcoders, cell_type, n_cells=args.n_cells,
                                          method="greedy", target="contrast", max_nodes=args.max_nodes,
                                          check_faithfulness=True, progress=False)
        seconds = time.perf_counter() - start
        checks = result.faithfulness
        graph = result.graph
        genes = result.genes.head(args.top_genes)
        summary[cell_type] = {
            "target": result.target, "cells": len(result.cells), "seconds": seconds,
            "share_input": graph.graph["share_input"], "share_error": graph.graph["share_error"],
            "share_unexpanded": graph.graph["share_unexpanded"],
            "correlation_mean": float(np.nanmean(checks.correlation)),
            "spearman_mean": float(np.nanmean(checks.spearman)),
            "circuit_fraction_median": float(np.nanmedian(checks.circuit_fraction)),
            "top_genes": result.input_genes(args.top_genes)[cell_type],
            "features": sum(1 for _, d in graph.nodes(data=True) if d["kind"] == "feature"),
        }
        s = summary[cell_type]
        print(f"\n{cell_type}: target {result.target['prefix']!r} + {result.target['token']!r} vs "
              f"{result.target['rivals']}, {s['cells']} cells, {seconds:.0f} s")
        print(f"  graph: {s['features']} features; target traced to inputs {s['share_input']:.1%}, errors "
              f"{s['share_error']:.1%}, unexpanded {s['share_unexpanded']:.1%}")
        print(f"  faithfulness: ablation vs attribution Pearson {s['correlation_mean']:.3f}, Spearman "
              f"{s['spearman_mean']:.3f} (mean over cells); circuit features alone give "
              f"{s['circuit_fraction_median']:.1%} of the features' effect (median)")
        print("  top input genes: " + ", ".join(f"{g} ({a:+.2f})" for g, a in zip(genes.gene, genes.attribution)))
        if args.out is not None:
            args.out.mkdir(parents=True, exist_ok=True)
            safe = "".join(c if c.isalnum() else "_" for c in cell_type)
            sct.circuits.write_graphml(graph, args.out / f"circuit_{safe}.graphml")
    background = sct.tl.visible_genes(held_out, model)
    markers = own_marker_enrichment({t: s["top_genes"] for t, s in summary.items()}, background)
    for cell_type, result in markers.items():
        summary[cell_type]["own_markers"] = result
        print(f"{cell_type}: own marker set {result['set']!r}: overlap {result['overlap']}, p {result['p']:.2g}, "
              f"rank {result['rank']}")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
