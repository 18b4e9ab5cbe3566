"""What the default C2S model's transcoder features mean in gene sets: the science numbers of the gene-set issue.

    OMP_NUM_THREADS=1 python benchmarks/feature_enrichment.py --out feature_enrichment_out/ [--quality]
        [--transcoders /tmp/default_tc] [--cache DIR]

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
5. Beyond spelling (issue 16): per layer, the fraction of alive features whose best sets pass both the
   strict FDR and the spelling-matched null (random lists with the feature list's gene-name family structure;
   sct.tl.enrich_beyond_spelling), with two controls run through the same test: random gene lists of the same
   sizes, and random features (the same transcoder with its encoder directions redrawn at random, same norms,
   run over the same cells). Spelling scores (family share, token-identity correlation) summarised.
6. The curve against background size: the same measure with the gene background cut to random subsets
   (genes left out of the sentences' counts), to show what a 765-gene background limits.
Writes results.json and an example report (report.html) for the last layer into --out. --transcoders reuses
trained transcoders (sct.tc.load_layers); --cache keeps each layer's feature activity between runs.
"""

from __future__ import annotations

import argparse
import copy
import json
import pickle
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


def activity(adata, model, transcoders, layer, key, cache, name):
    """Feature activity of one layer into adata (obsm/uns[key]); cached as this benchmark's own pickle."""
    path = cache / f"{name}.pkl" if cache else None
    if path is not None and path.exists():
        result = pickle.loads(path.read_bytes())
    else:
        result = sct.tl.feature_activity(adata, model, transcoders, layer, progress=False, inplace=False)
        if path is not None:
            path.write_bytes(pickle.dumps(result))
    adata.obsm[key] = result["cells"]
    adata.uns[key] = result["uns"]


def random_transcoders(transcoders, seed: int = 0) -> dict:
    """The trained transcoders with every encoder direction redrawn at random (row norms and biases kept)."""
    torch.manual_seed(seed)
    out = {}
    for layer in sorted(transcoders):
        rnd = copy.deepcopy(transcoders[layer])
        with torch.no_grad():
            drawn = torch.randn_like(rnd.W_enc)
            rnd.W_enc.copy_(drawn / drawn.norm(dim=-1, keepdim=True) * transcoders[layer].W_enc.norm(dim=-1,
                                                                                                  keepdim=True))
        out[layer] = rnd
    return out


def beyond_spelling(adata, key, model, families, background=None, seed: int = 0) -> dict:
    """Fractions of alive features enriched (strict FDR) and enriched beyond spelling, and the random-list control."""
    alive = sct.tl.alive_features(adata, key=key)
    if background is None:
        background = sct.tl.feature_background(adata, key=key, min_occurrences=MIN_OCCURRENCES)
    table = sct.tl.enrich_beyond_spelling(adata, "all", key=key, n_top=N_TOP, min_occurrences=MIN_OCCURRENCES,
                                          background=background, families=families, seed=seed)
    lists = {str(f): g for f, g in sct.tl.feature_genes(adata, key=key, n_top=N_TOP,
                                                          min_occurrences=MIN_OCCURRENCES).genes.items() if g}
    rng = np.random.default_rng(seed)
    random_lists = {n: list(rng.choice(background, len(g), replace=False)) for n, g in lists.items()}
    control = sct.genesets.enrich_matched(random_lists, "all", background, families, seed=seed + 1)
    strict = table[table["Adjusted P-value"] <= MAX_FDR]
    best = strict.sort_values("P-value").groupby("List", observed=True).Genes.first().str.split(";")
    family = best.apply(lambda g: len(g) >= 2 and sct.genesets.largest_family(g, families)[1] == len(g))
    heads = table[table["Beyond spelling"]].sort_values("P-value").groupby("List", observed=True).Term.first()
    return {"alive": int(len(alive)), "background_genes": len(background),
            "enriched_strict_fdr": strict.List.nunique() / len(alive),
            "best_set_one_family_of_enriched": float(family.mean()) if len(family) else 0.0,
            "enriched_beyond_spelling": sct.tl.beyond_spelling_fraction(table, len(alive)),
            "random_lists_strict_fdr": control[control["Adjusted P-value"] <= MAX_FDR].List.nunique()
            / len(random_lists),
            "random_lists_beyond_spelling": sct.tl.beyond_spelling_fraction(control, len(random_lists)),
            "most_frequent_beyond_spelling": {str(t): int(n) for t, n in heads.value_counts().head(8).items()}}


def background_curve(adata, key, model, sizes, seed: int = 0) -> list[dict]:
    """The beyond-spelling fraction with the background cut to random subsets of its genes."""
    full = sct.tl.feature_background(adata, key=key, min_occurrences=MIN_OCCURRENCES)
    rng = np.random.default_rng(seed)
    rows = []
    for size in sizes:
        keep = set(rng.choice(full, min(size, len(full)), replace=False))
        cut = adata.copy()
        uns = dict(cut.uns[key])
        uns["gene_occurrences"] = np.where([g in keep for g in uns["genes"]], uns["gene_occurrences"], 0)
        cut.uns[key] = uns
        background = [g for g in full if g in keep]
        families = sct.tl.gene_families(model=model, genes=background)
        result = beyond_spelling(cut, key, model, families, background, seed)
        rows.append({"background_genes": len(background), **{k: v for k, v in result.items()
                                                               if k != "most_frequent_beyond_spelling"}})
        print(f"    background {len(background)}: strict {result['enriched_strict_fdr']:.1%}, beyond spelling "
              f"{result['enriched_beyond_spelling']:.1%} (random lists {result['random_lists_beyond_spelling']:.1%})",
              flush=True)
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("feature_enrichment_out"))
    parser.add_argument("--steps", type=int, default=1500, help="transcoder steps of 1,024 tokens per layer")
    parser.add_argument("--quality", action="store_true", help="also evaluate the transcoders (a few minutes)")
    parser.add_argument("--transcoders", type=Path, default=None, help="reuse trained transcoders from this folder")
    parser.add_argument("--cache", type=Path, default=None, help="keep feature activity here between runs")
    parser.add_argument("--curve", type=int, nargs="*", default=[150, 300, 450, 600, 765],
                        help="background sizes for the curve (layer with the most features beyond spelling)")
    args = parser.parse_args()
    if args.cache:
        args.cache.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    model = sct.models.default()
    adata = sct.datasets.pbmc68k_reduced()
    if args.transcoders is not None:
        transcoders = sct.tc.load_layers(args.transcoders)
    else:
        transcoders = sct.tl.train_transcoders(
            adata, model, out_dir=args.out / "transcoders", label_key="bulk_labels", activation="topk", k=32,
            d_hidden=2048, batch_size=1024, n_tokens=1024 * args.steps, learning_rate=1e-3, warmup_steps=50,
            dead_window=200_000, progress=False)
    random = random_transcoders(transcoders)
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
        activity(adata, model, transcoders, layer, key, args.cache, f"layer{layer}")
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
        families = sct.tl.gene_families(model=model, genes=background)
        clock = time.perf_counter()
        layer_result["beyond_spelling"] = beyond_spelling(adata, key, model, families)
        scores = sct.tl.spelling_scores(adata, model, transcoders, key=key, n_top=N_TOP,
                                        min_occurrences=MIN_OCCURRENCES, families=families)
        layer_result["spelling_scores"] = {
            "median_family_share": float(scores.family_share.median()),
            "median_token_identity_r": float(scores.token_identity_r.median()),
            "fraction_spelling_score_over_0.5": float((scores.spelling_score > 0.5).mean())}
        random_key = f"random_layer{layer}"
        activity(adata, model, random, layer, random_key, args.cache, random_key)
        layer_result["random_features"] = beyond_spelling(adata, random_key, model, families)
        b, r = layer_result["beyond_spelling"], layer_result["random_features"]
        print(f"  beyond spelling: {b['enriched_beyond_spelling']:.1%} of alive features (strict FDR alone "
              f"{b['enriched_strict_fdr']:.1%}; best set one name family in {b['best_set_one_family_of_enriched']:.1%}"
              f" of those); controls: random lists {b['random_lists_beyond_spelling']:.1%}, random features "
              f"{r['enriched_beyond_spelling']:.1%} (strict FDR alone {r['enriched_strict_fdr']:.1%}); "
              f"spelling scores {layer_result['spelling_scores']}; {time.perf_counter() - clock:.0f} s", flush=True)
        print("    most frequent sets beyond spelling: " + "; ".join(
            f"{t} ({n})" for t, n in b["most_frequent_beyond_spelling"].items()), flush=True)
        results["layers"][str(layer)] = layer_result
        for row in layer_result["marker_stand_in"]:
            print(f"  {row['cell_type']}: own set {row['own_marker_set']!r} overlap {row['own_overlap']}, "
                  f"p {row['own_p']:.2g}, FDR {row['own_fdr']:.2g}, rank {row['own_rank']} "
                  f"(features {row['features']}, AUROC {row['feature_auroc']}); best: "
                  f"{row['best_sets'][0] if row['best_sets'] else 'no overlap with any marker set'}")
    best_layer = max(results["layers"], key=lambda k: results["layers"][k]["beyond_spelling"]
                     ["enriched_beyond_spelling"])
    print(f"\nbackground-size curve, layer {best_layer}:")
    results["background_curve"] = {"layer": int(best_layer), "points": background_curve(
        adata, f"features_layer{best_layer}", model, args.curve)}
    (args.out / "results.json").write_text(json.dumps(results, indent=1, default=float))
    last = max(transcoders)
    content = sct.report.from_adata(
        adata, "bulk_labels", key=f"features_layer{last}", quality=quality,
        enrichment=sct.tl.enrich_beyond_spelling(adata, "all", key=f"features_layer{last}", model=model,
                                                 n_top=N_TOP, min_occurrences=MIN_OCCURRENCES),
        model=str(model.name_or_path), parameters={"transcoder steps (x 1,024 tokens)": args.steps},
        n_genes=N_TOP, c2s_model=model, transcoders=transcoders, marker_sets=OWN_MARKERS)
    content.tables["Fraction of alive features enriched beyond spelling, with its controls"] = pd.DataFrame(
        [{"layer": k, "alive": v["alive"], "strict FDR": v["beyond_spelling"]["enriched_strict_fdr"],
          "beyond spelling": v["beyond_spelling"]["enriched_beyond_spelling"],
          "random lists": v["beyond_spelling"]["random_lists_beyond_spelling"],
          "random features": v["random_features"]["enriched_beyond_spelling"]}
         for k, v in results["layers"].items()])
    sct.report.write_html(args.out / "report.html", content)
    print(f"\nwrote {args.out / 'results.json'} and {args.out / 'report.html'}; "
          f"{(time.perf_counter() - start) / 60:.1f} min in all")


if __name__ == "__main__":
    main()
