"""What the default C2S model's transcoder features mean in gene sets: the science numbers of the gene-set issue.

    OMP_NUM_THREADS=1 python benchmarks/feature_enrichment.py --out feature_enrichment_out/ [--quality]

1. Trains TopK transcoders (k=32, 2,048 features) on every layer of the bundled default model over its
   training cells (the recipe of benchmarks/transcoder_quality.py; resumes from --out), or reuses them.
2. Per layer, runs the model over all 700 cells of pbmc68k_reduced and computes each feature's activity
   per cell and per gene (sct.tl.feature_activity), and each alive feature's top 25 genes.
3. Enriches every alive feature's genes in all bundled libraries (Hallmark, Reactome, WikiPathways,
   GO BP, immune markers) against the genes the model sees, and reports the fraction of alive features
   with at least one set at FDR < 0.05; as a control, the same for random gene lists of the same sizes
   drawn from the same background. Two FDR conventions: gseapy's (BH over the sets a list touches,
   every set tested) and the stricter one sct.tl.enrich_features uses (BH over every set with at least
   3 visible genes); the control shows which one holds its 5%.
4. Stand-in for the circuit check: for each of the five largest bulk_labels types, the top genes of its
   three most specific features (by AUROC of per-cell activity) are tested for that type's marker set.
Writes results.json and an example report (report.html) for the last layer into --out.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

import sctranscoder as sct

# each bulk_labels type's own marker set in the bundled immune_markers library, fixed before looking
OWN_MARKERS = {"Dendritic": "CD1C+ dendritic cell", "CD14+ Monocyte": "CD14+ Monocyte", "CD19+ B": "B cell",
               "CD4+/CD25 T Reg": "T regulatory cell", "CD8+ Cytotoxic T": "CD8 TEM",
               "CD8+/CD45RA+ Naive Cytotoxic": "CD8 Naive T cell", "CD56+ NK": "Natural killer cell",
               "CD4+/CD45RO+ Memory": "CD4 TCM", "CD34+": "Hematopoietic stem cell",
               "CD4+/CD45RA+/CD25- Naive T": "CD4 Naive T cell"}
N_TOP, MIN_OCCURRENCES, MAX_FDR = 25, 3, 0.05
CONVENTIONS = {"gseapy": {"min_set_size": 1, "fdr_over": "overlapping"},
               "strict": {"min_set_size": 3, "fdr_over": "tested"}}


def enriched_fractions(lists: dict, background: list, n_alive: int, settings: dict, seed: int = 0) -> dict:
    """Fraction of alive features with a set at FDR < MAX_FDR (by library too), and of random lists (same sizes,
    same background)."""
    table = sct.genesets.enrich(lists, "all", background, max_fdr=MAX_FDR * (1 - 1e-12), **settings)
    rng = np.random.default_rng(seed)
    random_lists = {name: list(rng.choice(background, len(genes), replace=False)) for name, genes in lists.items()}
    control = sct.genesets.enrich(random_lists, "all", background, max_fdr=MAX_FDR * (1 - 1e-12), genes=False,
                                  **settings)
    # a feature that reads a shared name fragment (HLA-, RPL, RPS) lists a gene family: how many enriched
    # features owe their best set to genes that all share their first three letters
    best = table.sort_values("P-value").groupby("List", observed=True).Genes.first().str.split(";")
    family = best.apply(lambda genes: len(genes) >= 2 and len({g[:3] for g in genes}) == 1)
    return {"enriched_fraction": table.List.nunique() / n_alive,
            "name_family_fraction_of_enriched": float(family.mean()) if len(family) else 0.0,
            "by_library": {lib: table[table.Gene_set == lib].List.nunique() / n_alive
                           for lib in sct.genesets.libraries().index},
            "random_lists_enriched_fraction": control.List.nunique() / len(random_lists),
            "random_by_library": {lib: control[control.Gene_set == lib].List.nunique() / len(random_lists)
                                  for lib in sct.genesets.libraries().index},
            "most_frequent_terms": {str(t): int(n) for t, n in table.groupby("Term", observed=True).List.nunique()
                                    .sort_values(ascending=False).head(10).items()}}


def marker_stand_in(adata, key: str, background: list, n_types: int = 5, n_features: int = 3) -> list[dict]:
    spec = sct.tl.feature_specificity(adata, "bulk_labels", key=key, features=sct.tl.alive_features(adata, key=key))
    genes = sct.tl.feature_genes(adata, key=key, n_top=N_TOP, min_occurrences=MIN_OCCURRENCES)
    markers = sct.genesets.load("immune_markers")
    visible = set(background)
    rows = []
    for label in adata.obs.bulk_labels.value_counts().index[:n_types]:
        best = spec[spec.label == label].nlargest(n_features, "auroc")
        ranked = list(dict.fromkeys(g for f in best.feature for g in genes.genes.get(f, [])))
        # one pre-stated hypothesis per type (its own set): the nominal p answers it; the FDR is over all 40 sets
        table = sct.genesets.enrich({label: ranked}, "immune_markers", background, fdr_over="tested")
        own = OWN_MARKERS[label]
        hit = table[table.Term.astype(str) == own]
        top = table.sort_values("P-value").head(3)
        rows.append({
            "cell_type": label, "features": [int(f) for f in best.feature],
            "feature_auroc": [round(float(a), 3) for a in best.auroc], "n_genes": len(ranked),
            "own_marker_set": own, "own_markers_visible": [g for g in markers[own] if g in visible],
            "own_overlap": str(hit.Overlap.iloc[0]) if len(hit) else f"0/{sum(g in visible for g in markers[own])}",
            "own_p": float(hit["P-value"].iloc[0]) if len(hit) else 1.0,
            "own_fdr": float(hit["Adjusted P-value"].iloc[0]) if len(hit) else 1.0,
            "own_genes": str(hit.Genes.iloc[0]) if len(hit) else "",
            "own_rank": int(np.flatnonzero(table.sort_values("P-value").Term.astype(str) == own)[0] + 1)
            if len(hit) else None,
            "best_sets": [f"{t} ({o}, FDR {q:.2g})" for t, o, q in zip(top.Term.astype(str), top.Overlap.astype(str),
                                                                        top["Adjusted P-value"])],
        })
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("feature_enrichment_out"))
    parser.add_argument("--steps", type=int, default=1500, help="transcoder steps of 1,024 tokens per layer")
    parser.add_argument("--quality", action="store_true", help="also evaluate the transcoders (a few minutes)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    model = sct.models.default()
    adata = sct.datasets.pbmc68k_reduced()
    transcoders = sct.tl.train_transcoders(
        adata, model, out_dir=args.out / "transcoders", label_key="bulk_labels", activation="topk", k=32,
        d_hidden=2048, batch_size=1024, n_tokens=1024 * args.steps, learning_rate=1e-3, warmup_steps=50,
        dead_window=200_000, progress=False)
    print(f"transcoders ready after {(time.perf_counter() - start) / 60:.1f} min")
    quality = None
    if args.quality:
        quality = sct.tl.evaluate_transcoders(adata, model, transcoders, label_key="bulk_labels", progress=False)
        print(quality[["fvu", "l0", "dead_fraction", "accuracy_kept"]].round(4))
    results = {"settings": {"n_top": N_TOP, "min_occurrences": MIN_OCCURRENCES, "max_fdr": MAX_FDR,
                            "libraries": {n: int(r.n_sets) for n, r in sct.genesets.libraries().iterrows()},
                            "steps": args.steps}, "layers": {}}
    for layer in sorted(transcoders):
        key = f"features_layer{layer}"
        sct.tl.feature_activity(adata, model, transcoders, layer, key_added=key, progress=False)
        alive = sct.tl.alive_features(adata, key=key)
        background = sct.tl.feature_background(adata, key=key, min_occurrences=MIN_OCCURRENCES)
        lists = {str(f): g for f, g in sct.tl.feature_genes(adata, key=key, n_top=N_TOP,
                                                              min_occurrences=MIN_OCCURRENCES).genes.items() if g}
        layer_result = {"features": int(transcoders[layer].cfg.d_hidden), "alive": int(len(alive)),
                        "with_genes": len(lists), "background_genes": len(background)}
        print(f"\nlayer {layer}: {len(alive)} of {layer_result['features']} features alive, {len(lists)} with genes, "
              f"background {len(background)} genes")
        for name, settings in CONVENTIONS.items():
            fractions = enriched_fractions(lists, background, len(alive), settings)
            layer_result[name] = fractions
            print(f"  {name} FDR ({settings}): {fractions['enriched_fraction']:.1%} of alive features enriched "
                  f"(FDR < {MAX_FDR}) in >= 1 bundled library; random lists of the same sizes: "
                  f"{fractions['random_lists_enriched_fraction']:.1%}; best set of a name family (genes sharing "
                  f"their first 3 letters) in {fractions['name_family_fraction_of_enriched']:.1%} of enriched; "
                  "by library: "
                  + ", ".join(f"{k} {v:.1%} (random {fractions['random_by_library'][k]:.1%})"
                              for k, v in fractions["by_library"].items()))
            print("    most frequent terms: " + "; ".join(f"{t} ({n})" for t, n in
                                                           list(fractions["most_frequent_terms"].items())[:5]))
        layer_result["marker_stand_in"] = marker_stand_in(adata, key, background)
        results["layers"][str(layer)] = layer_result
        for row in layer_result["marker_stand_in"]:
            print(f"  {row['cell_type']}: own set {row['own_marker_set']!r} overlap {row['own_overlap']}, "
                  f"p {row['own_p']:.2g}, FDR {row['own_fdr']:.2g}, rank {row['own_rank']} "
                  f"(features {row['features']}, AUROC {row['feature_auroc']}); best: "
                  f"{row['best_sets'][0] if row['best_sets'] else 'no overlap with any marker set'}")
    (args.out / "results.json").write_text(json.dumps(results, indent=1, default=float))
    last = max(transcoders)
    content = sct.report.from_adata(
        adata, "bulk_labels", key=f"features_layer{last}", quality=quality,
        enrichment=sct.tl.enrich_features(adata, "all", key=f"features_layer{last}", n_top=N_TOP,
                                          min_occurrences=MIN_OCCURRENCES),
        model=str(model.name_or_path), parameters={"transcoder steps (x 1,024 tokens)": args.steps},
        n_genes=N_TOP)
    content.tables["Fraction of alive features with a gene set at FDR < 0.05, and of random lists"] = pd.DataFrame(
        [{"layer": k, "alive": v["alive"], "FDR": name, "features enriched": v[name]["enriched_fraction"],
          "random lists enriched": v[name]["random_lists_enriched_fraction"]}
         for k, v in results["layers"].items() for name in CONVENTIONS])
    sct.report.write_html(args.out / "report.html", content)
    print(f"\nwrote {args.out / 'results.json'} and {args.out / 'report.html'}; "
          f"{(time.perf_counter() - start) / 60:.1f} min in all")


if __name__ == "__main__":
    main()
