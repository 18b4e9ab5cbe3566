"""Why random directions look more enriched than trained transcoder features on the planted-program atlas.

    python benchmarks/controls_anatomy.py --model OUT/seed0/model --transcoders OUT/seed0/transcoders
    python benchmarks/controls_anatomy.py --n-cells 1000          # trains a model and transcoders first (slow)

``sct.tl.feature_controls`` counts the share of alive features whose top-25 genes are enriched for a gene set
beyond spelling. On ``sct.datasets.planted(2000, seed=0)`` the trained transcoders beat the untrained model
13x but lose to random encoder directions that fire as often (layer 2: 5.7% against 17.3%). This script
reads the same held-out cells as ``benchmarks/planted_programs.py`` (400 of them, genes ranked by contrast,
FDR < 0.01, 1,000-list spelling null) and takes that count apart, one table per hypothesis:

1. **Token identity.** Each feature's adjusted R^2 of its activation on the token id
   (``sct.circuits.token_identity_r2`` over every position of ``--identity-cells`` prompts), for the trained
   features and for the random directions; the share enriched per bin of R^2. A gene-identity feature
   (R^2 near 1) fires on one gene's token in every cell: its top-25 list is that gene and noise.
2. **Embedding geometry.** Each gene's mean MLP input at the layer (over its occurrences in the cells): the
   within-program against between-program cosine similarity (centred), and the share of plain random
   directions whose top-25 genes by projection on those means are enriched for a program (hypergeometric,
   BH FDR < 0.01 over lists x programs, no spelling null); the same on the re-initialised model, and with
   the gene-to-program labels shuffled, as floors. Per encoder row (trained, random): the share of its
   projections' variance over the gene means that the genes' planted program explains.
3. **The lists themselves.** The share enriched by list length (a feature's genes with a positive score, at
   most 25) with the share of the lists' genes that are program genes against the background's; genes per
   list, firing rates, the per-feature pairing (a random direction replaces the trained feature with its
   firing rate), how many different programs the enriched lists name and how alike they are (mean Jaccard
   of two enriched lists naming the same program).

``--eval-cells 150 --identity-cells 60 --n-null 200 --layers 2 0`` takes about 15 minutes per layer on 2 shared
CPU cores (docs/benchmarks/controls_anatomy.md). Intermediate arrays are cached under ``--cache`` (delete it
after changing the model, transcoders or settings).
"""

from __future__ import annotations

import argparse
import pickle
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

SIDES = ("trained", "random_directions")
MAX_FDR = 0.01
N_TOP = 25
R2_BINS = (-np.inf, -1e8, 0.5, 0.9, np.inf)
R2_LABELS = ("no R2 (constant on these prompts)", "R2 < 0.5 (context)", "0.5 <= R2 < 0.9", "R2 >= 0.9 (identity)")


def cached(path: Path, compute):
    """``compute()``'s result, pickled at ``path`` (read back when it is there)."""
    if path.exists():
        return pickle.loads(path.read_bytes())
    value = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(value))
    return value


def eval_cells(atlas, model, n_cells: int, seed: int):
    """The held-out cells ``planted_programs.py`` reads features on (same selection, same seed)."""
    import sctranscoder as sct

    held = sct.tl.held_out_mask(atlas, model)
    test = np.flatnonzero(held)
    test = np.sort(np.random.default_rng(seed).choice(test, min(n_cells, test.size), replace=False))
    return atlas[test].copy()


def side_transcoders(cells, model, transcoders, seed: int) -> dict:
    """``{side: {layer: Transcoder}}``: the trained ones and random directions as ``feature_controls`` makes
    them (seed + layer, calibrated on these cells' gene-token MLP inputs)."""
    import torch

    import sctranscoder as sct

    layers = sorted(transcoders)
    store = sct.tl.harvest(cells.copy(), model, layers, None, dtype="float32", only_genes=True, progress=False)
    random = {}
    for layer in layers:
        inputs, _ = store.read(layer)
        random[layer] = sct.tc.random_directions(transcoders[layer], torch.as_tensor(inputs).float(),
                                                 seed=seed + layer)
    return {"trained": dict(transcoders), "random_directions": random}


def enrichment(cells, model, transcoder, layer: int, programs: dict, seed: int, n_null: int) -> dict:
    """One layer and side through ``feature_controls``' pipeline: alive features, their gene lists, firing
    share, and the features enriched for a planted program beyond spelling (with that program)."""
    import sctranscoder as sct

    key = "_anatomy"
    sct.tl.feature_activity(cells, model, {layer: transcoder}, layer, key_added=key, progress=False)
    cells.uns[key]["gene_score"] = "contrast"
    alive = sct.tl.alive_features(cells, key=key)
    lists = sct.tl.feature_genes(cells, alive, key=key, n_top=N_TOP).genes
    table = sct.tl.enrich_beyond_spelling(cells, {"planted": programs}, model=model, key=key, features=alive,
                                          n_top=N_TOP, max_fdr=MAX_FDR, n_null=n_null, seed=seed)
    passing = table[table["Beyond spelling"]].sort_values("P-value")
    best = passing.groupby("List", observed=True).Term.first()
    fired = (np.asarray(cells.obsm[key]) > 0).mean(0)
    return {"alive": alive, "lists": {int(f): list(g) for f, g in lists.items()},
            "enriched": {int(f): str(t) for f, t in best.items()}, "cells_fired": fired,
            "occurrences": np.asarray(cells.uns[key]["gene_occurrences"]), "genes": list(cells.uns[key]["genes"])}


def identity_r2(cells, model, sides: dict, n_cells: int, chunk: int = 512) -> dict:
    """``{(side, layer): (d_hidden,) adjusted R^2 on the token id}`` over every position of ``n_cells``
    prompts (the first of ``cells``)."""
    import sctranscoder as sct
    from sctranscoder.prompt import resolve_cells

    prompts = resolve_cells(cells, model, None, rows=np.arange(min(n_cells, cells.n_obs)), progress=False).prompt_ids()
    out = {}
    for side, transcoders in sides.items():
        for layer, transcoder in transcoders.items():
            d_hidden = int(transcoder.cfg.d_hidden)
            parts = []
            for start in range(0, d_hidden, chunk):
                pairs = [(layer, f) for f in range(start, min(start + chunk, d_hidden))]
                values, tokens = sct.circuits.feature_activations(model.model, {layer: transcoder}, prompts, pairs)
                parts.append(sct.circuits.token_identity_r2(values, tokens))
            out[(side, layer)] = np.concatenate(parts)
    return out


def gene_means(cells, model, layers) -> dict:
    """``{layer: (genes, (n_genes, d) mean MLP input over the gene's tokens in these cells, occurrences))}``."""
    import sctranscoder as sct

    store = sct.tl.harvest(cells.copy(), model, list(layers), None, dtype="float32", only_genes=True,
                           progress=False)
    meta = store.metadata()
    genes = [str(g).upper() for g in store.info["genes"]]
    ids = meta["gene_id"].astype(np.int64)
    out = {}
    for layer in layers:
        inputs, _ = store.read(layer)
        inputs = np.asarray(inputs, np.float64)
        sums = np.zeros((len(genes), inputs.shape[1]))
        np.add.at(sums, ids, inputs)
        counts = np.bincount(ids, minlength=len(genes)).astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[layer] = (genes, sums / counts[:, None], counts)
    return out


def random_projection_enrichment(genes, means, programs: dict, n_directions: int, seed: int) -> float:
    """Share of ``n_directions`` Gaussian directions whose top-25 genes by projection on the gene means are
    enriched for a program (hypergeometric, BH over lists x programs, FDR < 0.01)."""
    from scipy.stats import false_discovery_control, hypergeom

    rng = np.random.default_rng(seed)
    directions = rng.standard_normal((n_directions, means.shape[1]))
    top = np.argsort(-(means @ directions.T), axis=0)[:N_TOP].T  # (n_directions, 25)
    universe = set(genes)
    program_sets = [set(gs) for gs in programs.values()]
    members = np.array([[g in gs for g in genes] for gs in program_sets])  # (programs, genes)
    hits = np.zeros((n_directions, len(genes)), bool)
    np.put_along_axis(hits, top, True, axis=1)
    overlap = hits.astype(np.int64) @ members.T.astype(np.int64)  # (n_directions, programs)
    sizes = np.array([len(gs & universe) for gs in program_sets])
    p = hypergeom.sf(overlap - 1, len(genes), sizes[None, :], N_TOP)
    return float((false_discovery_control(p.ravel()).reshape(p.shape) < MAX_FDR).any(1).mean())


def cosine_by_program(genes, means, programs: dict) -> tuple[float, float]:
    """Mean cosine similarity of centred gene means: pairs within a program, pairs across programs."""
    centred = means - means.mean(0)
    unit = centred / np.linalg.norm(centred, axis=1, keepdims=True)
    index = {g: i for i, g in enumerate(genes)}
    members = {name: [index[g] for g in gs if g in index] for name, gs in programs.items()}
    within, between = [], []
    names = list(members)
    for a, name in enumerate(names):
        block = unit[members[name]]
        sim = block @ block.T
        within.append(sim[np.triu_indices(len(block), 1)].mean())
        for other in names[a + 1:]:
            between.append((block @ unit[members[other]].T).mean())
    return float(np.mean(within)), float(np.mean(between))


def direction_program_r2(genes, means, programs: dict, directions: np.ndarray) -> np.ndarray:
    """Per direction: the share of the variance of its projections on the (centred) gene means that the genes'
    planted program explains (genes in no program form one more group)."""
    label = np.zeros(len(genes), np.int64)
    for i, members in enumerate(programs.values(), start=1):
        hit = np.array([g in set(members) for g in genes]) & (label == 0)
        label[hit] = i
    projected = (means - means.mean(0)) @ directions.T
    group = np.zeros((label.max() + 1, projected.shape[1]))
    np.add.at(group, label, projected)
    group /= np.bincount(label)[:, None]
    total = ((projected - projected.mean(0)) ** 2).sum(0)
    return 1 - ((projected - group[label]) ** 2).sum(0) / total


def table_directions(sides: dict, means: dict, programs: dict, results: dict, layers,
                     min_occurrences: int = 3) -> pd.DataFrame:
    rows = []
    for layer in layers:
        genes, m, counts = means[layer]
        keep = counts >= min_occurrences
        genes, m = [g for g, k in zip(genes, keep) if k], m[keep]
        for side in SIDES:
            res = results[(side, layer)]
            directions = sides[side][layer].W_enc.detach().double().cpu().numpy()[res["alive"]]
            r2 = direction_program_r2(genes, m, programs, directions)
            enriched = np.isin(res["alive"], list(res["enriched"]))
            rows.append({"layer": layer, "side": side, "median program R2": float(np.median(r2)),
                         "enriched: median": float(np.median(r2[enriched])) if enriched.any() else np.nan,
                         "not enriched: median": float(np.median(r2[~enriched])),
                         "share enriched, R2 >= 0.5": enriched[r2 >= 0.5].mean() if (r2 >= 0.5).any() else np.nan,
                         "features R2 >= 0.5": int((r2 >= 0.5).sum())})
    return pd.DataFrame(rows)


def table_identity(results: dict, r2: dict, layers) -> pd.DataFrame:
    rows = []
    for layer in layers:
        for side in SIDES:
            res = results[(side, layer)]
            alive = res["alive"]
            values = r2[(side, layer)][alive]
            enriched = np.isin(alive, list(res["enriched"]))
            bins = pd.cut(np.nan_to_num(values, nan=-1e9), R2_BINS, labels=R2_LABELS, right=False)
            for label in R2_LABELS:
                inside = np.asarray(bins == label)
                rows.append({"layer": layer, "side": side, "bin": label, "features": int(inside.sum()),
                             "enriched": int(enriched[inside].sum()),
                             "share": enriched[inside].mean() if inside.any() else np.nan})
    return pd.DataFrame(rows)


def table_identity_pooled(frame: pd.DataFrame) -> pd.DataFrame:
    from scipy.stats import fisher_exact

    pooled = frame.groupby(["bin", "side"], observed=True)[["features", "enriched"]].sum().reset_index()
    rows = []
    for label in R2_LABELS:
        t = pooled[(pooled.bin == label) & (pooled.side == "trained")].iloc[0]
        r = pooled[(pooled.bin == label) & (pooled.side == "random_directions")].iloc[0]
        p = fisher_exact([[t.enriched, t.features - t.enriched], [r.enriched, r.features - r.enriched]],
                         alternative="greater").pvalue if t.features and r.features else np.nan
        rows.append({"bin": label, "trained": f"{t.enriched}/{t.features} ({t.enriched / max(t.features, 1):.1%})",
                     "random directions": f"{r.enriched}/{r.features} ({r.enriched / max(r.features, 1):.1%})",
                     "p (trained > random)": p})
    return pd.DataFrame(rows)


def table_geometry(means: dict, untrained_means: dict, programs: dict, layers,
                   n_directions: int, seed: int, min_occurrences: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for layer in layers:
        row = {"layer": layer}
        for name, source in (("trained model", means), ("untrained model", untrained_means)):
            genes, m, counts = source[layer]
            keep = counts >= min_occurrences
            genes, m = [g for g, k in zip(genes, keep) if k], m[keep]
            within, between = cosine_by_program(genes, m, programs)
            row[f"{name}: cos within"] = within
            row[f"{name}: cos between"] = between
            row[f"{name}: random projections enriched"] = random_projection_enrichment(genes, m, programs,
                                                                                        n_directions, seed + layer)
            if name == "trained model":
                shuffled = rng.permutation(genes)
                row["trained model, programs shuffled"] = random_projection_enrichment(
                    list(shuffled), m, programs, n_directions, seed + layer)
        rows.append(row)
    return pd.DataFrame(rows)


def _mean_jaccard(lists: list) -> float:
    sets = [set(g) for g in lists]
    pairs = [len(a & b) / len(a | b) for i, a in enumerate(sets) for b in sets[i + 1:] if a | b]
    return float(np.mean(pairs)) if pairs else np.nan


def table_lists(results: dict, layers) -> pd.DataFrame:
    rows = []
    for layer in layers:
        trained, random = results[("trained", layer)], results[("random_directions", layer)]
        both = set(trained["enriched"]) & set(random["enriched"])
        for side, res in (("trained", trained), ("random_directions", random)):
            sizes = np.array([len(res["lists"][f]) for f in res["alive"]])
            fired = res["cells_fired"][res["alive"]]
            enriched = res["enriched"]
            by_program = pd.Series(enriched).value_counts()
            jaccard = [_mean_jaccard([res["lists"][f] for f, t in enriched.items() if t == program])
                       for program in by_program.index]
            rows.append({"layer": layer, "side": side, "alive": len(res["alive"]),
                         "median genes/list": float(np.median(sizes)) if sizes.size else np.nan,
                         "lists < 25 genes": float((sizes < N_TOP).mean()) if sizes.size else np.nan,
                         "median cells fired": float(np.median(fired)) if fired.size else np.nan,
                         "fires in > 50% cells": float((fired > 0.5).mean()) if fired.size else np.nan,
                         "enriched": len(enriched), "share enriched": len(enriched) / max(len(res["alive"]), 1),
                         "programs named": int(by_program.size),
                         "top program's share": float(by_program.iloc[0] / len(enriched)) if len(enriched) else np.nan,
                         "Jaccard within program": float(np.nanmean(jaccard)) if jaccard else np.nan,
                         "enriched on both sides (same index)": len(both)})
    return pd.DataFrame(rows)


SIZE_BINS = (-1, 0, 2, 9, 24, 25)
SIZE_LABELS = ("no gene", "1-2 genes", "3-9 genes", "10-24 genes", "25 genes (full)")


def table_list_sizes(results: dict, programs: dict, layers, min_occurrences: int = 3) -> pd.DataFrame:
    """Per side and list length: features, share enriched, and the share of the lists' genes that are in some
    planted program (beside that share among all genes the lists can draw from)."""
    planted = set().union(*map(set, programs.values()))
    rows = []
    for layer in layers:
        for side in SIDES:
            res = results[(side, layer)]
            usable = [g for g, c in zip(res["genes"], res["occurrences"]) if c >= min_occurrences]
            background = np.mean([g in planted for g in usable])
            alive = res["alive"]
            sizes = np.array([len(res["lists"][f]) for f in alive])
            enriched = np.isin(alive, list(res["enriched"]))
            bins = pd.cut(sizes, SIZE_BINS, labels=SIZE_LABELS)
            for label in SIZE_LABELS:
                inside = np.asarray(bins == label)
                genes = [g for f in alive[inside] for g in res["lists"][f]]
                rows.append({"layer": layer, "side": side, "list length": label, "features": int(inside.sum()),
                             "enriched": int(enriched[inside].sum()),
                             "share": enriched[inside].mean() if inside.any() else np.nan,
                             "program genes in lists": np.mean([g in planted for g in genes]) if genes else np.nan,
                             "program genes in background": background})
    return pd.DataFrame(rows)


def train_small(n_cells: int, seed: int, out: Path):
    """A model and transcoders with library defaults, as ``planted_programs.py`` trains them."""
    import sctranscoder as sct

    atlas = sct.datasets.planted(n_cells=n_cells, seed=seed)
    model = sct.models.train_c2s(atlas, "cell_type", out / "model", progress=False)
    held = sct.tl.held_out_mask(atlas, model)
    store = sct.tl.harvest(atlas[~held].copy(), model, None, None, label_key="cell_type", progress=False)
    sct.tl.train_transcoders(atlas, model, None, out / "transcoders", store=store, held_out=held,
                             label_key="cell_type", progress=False)
    return out / "model", out / "transcoders"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, help="the C2S model trained on the atlas (default: train one)")
    parser.add_argument("--transcoders", type=Path, help="its transcoders, layer*/ folders (default: train them)")
    parser.add_argument("--n-cells", type=int, default=2000, help="cells of the planted atlas")
    parser.add_argument("--seed", type=int, default=0, help="atlas seed; also the controls' seed")
    parser.add_argument("--eval-cells", type=int, default=400, help="held-out cells the features are read on")
    parser.add_argument("--identity-cells", type=int, default=150, help="prompts for token identity R^2")
    parser.add_argument("--n-null", type=int, default=1000, help="spelling-null lists (as feature_controls)")
    parser.add_argument("--n-directions", type=int, default=2000, help="random projections per layer (table 2)")
    parser.add_argument("--layers", type=int, nargs="+", help="layers to take apart (default: every layer)")
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "controls_anatomy")
    args = parser.parse_args()

    import sctranscoder as sct

    pd.set_option("display.width", 200)
    pd.set_option("display.max_columns", 30)
    if args.model is None or args.transcoders is None:
        args.model, args.transcoders = train_small(args.n_cells, args.seed, args.cache / "trained")
    atlas = sct.datasets.planted(n_cells=args.n_cells, seed=args.seed)
    programs = {name: list(genes) for name, genes in atlas.uns["programs"].items()}
    model = sct.models.load(args.model, progress=False)
    transcoders = sct.tc.load_layers(args.transcoders)
    layers = sorted(transcoders) if args.layers is None else args.layers
    transcoders = {layer: transcoders[layer] for layer in layers}
    cells = eval_cells(atlas, model, args.eval_cells, args.seed)
    cache = args.cache
    untrained_model = []  # built once, on first need

    def untrained():
        if not untrained_model:
            untrained_model.append(sct.models.reinitialized(model, seed=args.seed))
        return untrained_model[0]

    # one cache file per layer and step, so layers can be added run by run
    sides, r2, means, untrained_means = {side: {} for side in SIDES}, {}, {}, {}
    for layer in layers:
        one = cached(cache / f"sides_layers{layer}.pkl",
                     lambda la=layer: side_transcoders(cells, model, {la: transcoders[la]}, args.seed))
        for side in SIDES:
            sides[side][layer] = one[side][layer]
        r2.update(cached(cache / f"identity_r2_{args.identity_cells}_layers{layer}.pkl",
                         lambda o=one: identity_r2(cells, model, o, args.identity_cells)))
        means.update(cached(cache / f"gene_means_trained_layers{layer}.pkl",
                            lambda la=layer: gene_means(cells, model, [la])))
        untrained_means.update(cached(cache / f"gene_means_untrained_layers{layer}.pkl",
                                      lambda la=layer: gene_means(cells, untrained(), [la])))
    geometry = table_geometry(means, untrained_means, programs, layers, args.n_directions, args.seed)
    print("\n2. Embedding geometry: centred cosine of per-gene mean MLP inputs (within / between programs), and the "
          f"share of {args.n_directions} random directions whose top-{N_TOP} genes by projection are enriched "
          f"for a program (hypergeometric, BH FDR < {MAX_FDR}, no spelling null)")
    print(geometry.T.to_string(float_format=lambda v: f"{v:.3f}"))

    results = {}
    for layer in layers:
        for side in SIDES:
            results[(side, layer)] = cached(
                cache / f"enrichment_{side}_layer{layer}.pkl",
                lambda s=side, la=layer: enrichment(cells, model, sides[s][la], la, programs, args.seed, args.n_null))
            res = results[(side, layer)]
            print(f"layer {layer} {side}: {len(res['enriched'])}/{len(res['alive'])} enriched", flush=True)

    identity = table_identity(results, r2, layers)
    print(f"\n1. Token identity (adjusted R^2 on the token id, {args.identity_cells} prompts): features and share "
          f"enriched for a planted program beyond spelling (FDR < {MAX_FDR}), per layer")
    print(identity.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print("\n   all layers pooled (one-sided Fisher's exact p that trained beats random directions in the bin)")
    print(table_identity_pooled(identity).to_string(index=False, float_format=lambda v: f"{v:.2g}"))

    directions = table_directions(sides, means, programs, results, layers)
    print("\n2b. Encoder directions (trained rows, random rows): share of their projections' variance over the gene "
          "means that the genes' planted program explains")
    print(directions.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    sizes = table_list_sizes(results, programs, layers)
    print("\n3a. By list length (a feature's genes with a positive score, at most 25): share enriched, and the share "
          "of the lists' genes that belong to a planted program against the background's")
    print(sizes.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    lists = table_lists(results, layers)
    print("\n3b. The lists: genes per list, firing, and how many different programs the enriched lists name")
    print(lists.to_string(index=False, float_format=lambda v: f"{v:.3f}"))


if __name__ == "__main__":
    main()
