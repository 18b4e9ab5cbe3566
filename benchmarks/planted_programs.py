"""The whole pipeline on an atlas whose gene programs are known: does it find them, beside its controls?

    python benchmarks/planted_programs.py                          # 3,000 cells, seeds 0 1 2, every control
    python benchmarks/planted_programs.py --n-cells 1000 --seeds 0 --no-untrained

Per seed, with library defaults throughout:

1. ``sct.datasets.planted(n_cells, seed)``: 5 types, each defined by 1-2 type programs, and 3 state programs
   (interferon, G2M, hypoxia) in 30% of the cells of every type; every program 25 genes of a Hallmark set.
2. ``train_c2s`` (the default recipe): held-out accuracy beside the logistic regression it reports.
3. Transcoders on every layer (a harvest of the training cells), then, on the held-out cells:
   ``feature_controls`` against the planted programs: the share of alive features enriched for a program
   (trained, random directions firing as often, transcoders on the re-initialised model) and Fisher's p.
4. Program recovery: a planted program is recovered when it is the best set (FDR < 0.01) of at least one alive
   feature of some layer.
5. A circuit for every type (``cell_type_circuit``, genes ranked by measured knockout), enriched for the planted
   programs beside expression-matched random lists: its own type program at FDR < 0.01, no other type's
   program at FDR < 0.01, no state program at FDR < 0.05.

Prints one table per seed and a summary against the goals; ``--json`` writes every figure.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

RECOVERY_FDR = 0.01
STATE_FDR = 0.05
GENE_SCORES = ("contrast", "activity")
KNOCKOUT_CELLS = 20  # per type: the interval over cells, and the null's min_cells, need more than the traced cells


def program_recovery(cells, model, transcoders, programs: dict, gene_score: str) -> dict:
    """``{program: [(layer, feature), ...]}``: the alive features whose best planted program (FDR < 0.01) it is."""
    import sctranscoder as sct

    found = {name: [] for name in programs}
    for layer in sorted(transcoders):
        key = f"_planted_layer{layer}"
        sct.tl.feature_activity(cells, model, transcoders, layer, key_added=key, progress=False)
        cells.uns[key]["gene_score"] = gene_score
        alive = sct.tl.alive_features(cells, key=key)
        table = sct.tl.enrich_features(cells, {"planted": programs}, key=key, features=alive)
        table = table[table["Adjusted P-value"] < RECOVERY_FDR]
        for feature, rows in table.sort_values("P-value").groupby("List", observed=True):
            found[str(rows.Term.iloc[0])].append((layer, int(feature)))
    return found


def best_feature_overlap(cells, model, transcoders, programs: dict, *, n_top: int = 25, seed: int = 0) -> pd.DataFrame:
    """Per program and side: the most genes of the program among one feature's top ``n_top`` genes, over every
    alive feature of every layer; the trained dictionary beside random directions firing as often.

    A rate of enriched features counts how many directions touch a program; this asks whether the dictionary
    holds one feature that *is* the program, which is what a transcoder is trained to find."""
    import torch

    import sctranscoder as sct

    store = sct.tl.harvest(cells, model, sorted(transcoders), None, dtype="float32", only_genes=True, progress=False)
    best = {(side, name): 0 for side in ("trained", "random_directions") for name in programs}
    sets = {name: set(genes) for name, genes in programs.items()}
    for layer in sorted(transcoders):
        inputs, _ = store.read(layer)
        sides = {"trained": transcoders[layer],
                 "random_directions": sct.tc.random_directions(transcoders[layer], torch.as_tensor(inputs).float(),
                                                               seed=seed + layer)}
        for side, transcoder in sides.items():
            key = f"_overlap_{side}"
            sct.tl.feature_activity(cells, model, {layer: transcoder}, layer, key_added=key, progress=False)
            lists = sct.tl.feature_genes(cells, key=key, n_top=n_top).genes
            for genes in lists:
                for name, members in sets.items():
                    best[(side, name)] = max(best[(side, name)], len(members.intersection(genes)))
    frame = pd.Series(best).unstack(0)
    frame.index.name = "program"
    return frame


def measured_genes(result, n_top: int = 25) -> list[str]:
    """A circuit's genes by measured knockout: those that pass the rank-matched null where that is reported,
    else the circuit's input genes."""
    validation = getattr(result, "validation", None) or {}
    table = validation.get("genes_by_knockout") if isinstance(validation, dict) else None
    if isinstance(table, pd.DataFrame) and len(table):
        passing = next((c for c in ("passes_null", "passes", "measured") if c in table), None)
        if passing is not None:
            table = table[table[passing].astype(bool)]
        column = "gene" if "gene" in table else table.columns[0]
        return [str(g) for g in table[column].head(n_top)]
    return list(result.input_genes(n_top)[result.cell_type]) if hasattr(result, "cell_type") else []


def circuit_checks(cells, model, transcoders, atlas, n_cells: int, cell_types=None) -> pd.DataFrame:
    """One row per type: its circuit's measured genes enriched for the planted programs, beside the controls."""
    import sctranscoder as sct

    programs, kinds = atlas.uns["programs"], atlas.uns["program_kind"]
    own = {t: list(p) for t, p in atlas.uns["type_programs"].items()}
    rows = []
    for cell_type in sorted(own) if cell_types is None else cell_types:
        result = sct.tl.cell_type_circuit(cells, model, transcoders, cell_type, label_key="cell_type",
                                          n_cells=n_cells, progress=False)
        sct.tl.validate_circuit(cells, model, transcoders, result,
                                knockouts=sct.tl.Knockouts(rank="sentence", cells=KNOCKOUT_CELLS),
                                progress=False)
        genes = measured_genes(result)
        table = sct.tl.enrich_circuit({cell_type: genes}, {"planted": programs}, adata=cells, model=model,
                                      label_key="cell_type", n_top=None) if genes else pd.DataFrame()
        q = dict(zip(table.Term, table["Adjusted P-value"])) if len(table) else {}
        matched = dict(zip(table.Term, table["Expression-matched P-value"])) if len(table) else {}
        others = [p for p, k in kinds.items() if k == "type" and p not in own[cell_type]]
        states = [p for p, k in kinds.items() if k == "state"]
        rows.append({"cell type": cell_type, "measured genes": len(genes),
                     "own program FDR": min((q.get(p, 1.0) for p in own[cell_type]), default=1.0),
                     "own program expression-matched p": min((matched.get(p, 1.0) for p in own[cell_type]),
                                                              default=1.0),
                     "other type programs at FDR < 0.01": sum(q.get(p, 1.0) < RECOVERY_FDR for p in others),
                     "state programs at FDR < 0.05": sum(q.get(p, 1.0) < STATE_FDR for p in states)})
    return pd.DataFrame(rows)


class Stages:
    """Prints each stage's minutes as it ends (a long run shows where it is); returns them."""

    def __init__(self, seed: int):
        self.seed, self.last = seed, time.perf_counter()

    def __call__(self, name: str) -> float:
        now = time.perf_counter()
        minutes, self.last = (now - self.last) / 60, now
        print(f"seed {self.seed}: {name} {minutes:.1f} min", flush=True)
        return minutes


def run_seed(n_cells: int, seed: int, out: Path, *, untrained: bool = True, eval_cells: int = 400,
             circuit_cells: int = 3, cell_types=None, train_config=None, config=None, transcoder_settings=None,
             gene_scores=GENE_SCORES, n_null: int = 1000) -> dict:
    """The pipeline on one planted atlas; every figure of the table (controls and recovery per gene score)."""
    import sctranscoder as sct

    start = time.perf_counter()
    stage = Stages(seed)
    atlas = sct.datasets.planted(n_cells=n_cells, seed=seed)
    programs = {name: list(genes) for name, genes in atlas.uns["programs"].items()}
    if (out / "model" / "config.json").exists():  # a finished model kept by --out (e.g. trained on a GPU)
        model = sct.models.load(out / "model")
    else:
        model = sct.models.train_c2s(atlas, "cell_type", out / "model", train_config=train_config, config=config,
                                     progress=False)
    evaluation = model.metadata["held_out_evaluation"]
    trained_minutes = stage("model")
    held = sct.tl.held_out_mask(atlas, model)
    store = sct.tl.harvest(atlas[~held].copy(), model, None, None, label_key="cell_type", progress=False)
    transcoders = sct.tl.train_transcoders(atlas, model, None, out / "transcoders", store=store, held_out=held,
                                           label_key="cell_type", progress=False,
                                           **(transcoder_settings or {}))
    stage("transcoders")
    rng = np.random.default_rng(seed)
    test = np.flatnonzero(held)
    test = np.sort(rng.choice(test, min(eval_cells, test.size), replace=False))
    cells = atlas[test].copy()
    controls = {score: sct.tl.feature_controls(cells, model, transcoders, {"planted": programs},
                                               untrained=untrained, max_fdr=RECOVERY_FDR, seed=seed, n_null=n_null,
                                               gene_score=score, progress=False) for score in gene_scores}
    stage("controls")
    recovered = {score: program_recovery(cells, model, transcoders, programs, score) for score in gene_scores}
    overlap = best_feature_overlap(cells, model, transcoders, programs, seed=seed)
    stage("recovery")
    circuits = circuit_checks(cells, model, transcoders, atlas, circuit_cells, cell_types)
    stage("circuits")
    return {"seed": seed, "cells": n_cells, "held-out accuracy": evaluation["c2s_accuracy"],
            "regression": evaluation["logistic_regression_accuracy"], "model minutes": trained_minutes,
            "controls": controls, "recovered": {s: {p: len(f) for p, f in r.items()} for s, r in recovered.items()},
            "program kind": atlas.uns["program_kind"], "circuits": circuits, "best overlap": overlap,
            "minutes": (time.perf_counter() - start) / 60}


def pooled_controls(controls: pd.DataFrame) -> dict:
    """Trained against each control over every layer: enriched shares of the testable features (``n_listable``,
    as ``feature_controls`` counts them) and Fisher's one-sided p."""
    from scipy.stats import fisher_exact

    sums = controls.groupby("side")[["n_listable", "n_enriched"]].sum()
    trained = sums.loc["trained"]
    out = {"trained": {"share": trained.n_enriched / trained.n_listable if trained.n_listable else float("nan")}}
    for side in sums.index.drop("trained"):
        n, e = sums.loc[side]
        if not n:  # a control that was not run, or none of its features testable
            continue
        out[side] = {"share": e / n,
                     "p": float(fisher_exact([[trained.n_enriched, trained.n_listable - trained.n_enriched],
                                              [e, n - e]], alternative="greater").pvalue)}
        out[side]["ratio"] = out["trained"]["share"] / out[side]["share"] if e else float("inf")
    return out


def summary_lines(result: dict) -> list[str]:
    kinds = result["program kind"]
    circuits = result["circuits"]
    lines = [f"seed {result['seed']}, {result['cells']:,} cells, {result['minutes']:.1f} min "
             f"(model {result['model minutes']:.1f} min)",
             f"  model: held-out accuracy {result['held-out accuracy']:.3f}, regression {result['regression']:.3f} "
             f"(gap {100 * (result['regression'] - result['held-out accuracy']):.1f} points; goal <= 5)"]
    for score, controls in result["controls"].items():
        recovered = [p for p, n in result["recovered"][score].items() if n]
        lines.append(f"  genes ranked by {score}: programs recovered (best set of an alive feature, FDR < "
                     f"{RECOVERY_FDR}): {len(recovered)} of {len(kinds)} ({sum(kinds[p] == 'type' for p in recovered)}"
                     f" type, {sum(kinds[p] == 'state' for p in recovered)} state; goal >= 90%)")
        for side, figures in pooled_controls(controls).items():
            extra = f", ratio {figures['ratio']:.1f}x, p = {figures['p']:.2g}" if "p" in figures else ""
            lines.append(f"    features enriched for a planted program, {side}: {figures['share']:.1%}{extra}")
    overlap = result["best overlap"]
    lines.append(f"  best single feature per program (program genes among its top 25, of 25): trained median "
                 f"{overlap.trained.median():.0f} (min {overlap.trained.min()}), random directions median "
                 f"{overlap.random_directions.median():.0f} (max {overlap.random_directions.max()}); trained ahead "
                 f"for {int((overlap.trained > overlap.random_directions).sum())} of {len(overlap)} programs")
    lines.append("  circuits (measured knockout genes):")
    lines += ["    " + line for line in circuits.to_string(index=False).splitlines()]
    return lines


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-cells", type=int, default=3000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--no-untrained", action="store_true", help="skip the untrained-model control")
    parser.add_argument("--eval-cells", type=int, default=400, help="held-out cells the features are read on")
    parser.add_argument("--out", type=Path, default=None, help="keep models and transcoders here")
    parser.add_argument("--json", type=Path, help="write every figure here")
    parser.add_argument("--gene-scores", nargs="+", default=list(GENE_SCORES), choices=GENE_SCORES,
                        help="feature-to-gene rankings to compare (feature_activity's gene_score)")
    args = parser.parse_args()
    results = []
    for seed in args.seeds:
        with tempfile.TemporaryDirectory() as scratch:
            out = (args.out / f"seed{seed}") if args.out else Path(scratch)
            result = run_seed(args.n_cells, seed, out, untrained=not args.no_untrained, eval_cells=args.eval_cells,
                              gene_scores=args.gene_scores)
        print("\n".join(summary_lines(result)), flush=True)
        for score, controls in result["controls"].items():
            print(f"genes ranked by {score}:\n{controls.to_string(index=False)}", flush=True)
        results.append(result)
    if args.json:
        args.json.write_text(json.dumps([{**r, "controls": {s: c.to_dict("records") for s, c in r["controls"].items()},
                                          "circuits": r["circuits"].to_dict("records"),
                                          "best overlap": r["best overlap"].to_dict("index")} for r in results],
                                        indent=1, default=float))


if __name__ == "__main__":
    main()
