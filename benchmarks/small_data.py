"""C2S models trained from scratch on small data sets: the old defaults of train_c2s against the new ones.

    python benchmarks/small_data.py                  # both data sets, 200 cells, old and new defaults
    python benchmarks/small_data.py --only new --datasets simulated

Each data set is trained on twice from scratch on the same split: with the defaults
train_c2s had before (100 genes, 10 epochs, no validation split; 100 optimizer
steps on 160 cells) and with today's (``train_c2s(adata, label_key, out_dir)``).
Accuracy is on the held-out cells (20% of each type, candidate scoring), beside
the logistic regression train_c2s fits on the same split (both from
``sctranscoder.json``'s ``held_out_evaluation``). Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

import sctranscoder as sct

OLD_DEFAULTS = dict(n_genes=100, epochs=10, validation_size=0.0)  # train_c2s's defaults before the small-data recipe


def simulated(n_cells: int, seed: int):
    """The simulation, type-balanced by construction (6 types)."""
    return sct.datasets.simulated(n_cells=n_cells, seed=seed), "cell_type"


def pbmc(n_cells: int, seed: int):
    """A stratified subsample of pbmc68k_reduced (bulk_labels: 10 types, the rarest with 8 cells of 700)."""
    from sklearn.model_selection import train_test_split

    adata = sct.datasets.pbmc68k_reduced()
    keep, _ = train_test_split(np.arange(adata.n_obs), train_size=n_cells, stratify=adata.obs.bulk_labels,
                               random_state=seed)
    return adata[np.sort(keep)].copy(), "bulk_labels"


DATASETS = {"simulated": simulated, "pbmc68k_reduced": pbmc}


def run(name: str, n_cells: int, recipe: str, out: Path, seed: int) -> dict:
    import warnings

    adata, key = DATASETS[name](n_cells, seed)
    options = OLD_DEFAULTS if recipe == "old" else {}
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the below-the-regression warning: the table says it
        model = sct.models.train_c2s(adata, key, out, progress=False, **options)
    minutes = (time.perf_counter() - start) / 60
    meta = model.metadata
    evaluation = meta["held_out_evaluation"]
    return {"data set": name, "cells": adata.n_obs, "recipe": recipe, "held out": evaluation["n_cells"],
            "C2S": evaluation["c2s_accuracy"], "regression": evaluation["logistic_regression_accuracy"],
            "epochs": meta["epochs"], "steps": meta["steps"], "chosen epoch": meta.get("selected_epoch"),
            "minutes": round(minutes, 1)}


def table(rows: list[dict]) -> str:
    lines = ["| data set | cells | old defaults | new defaults | logistic regression | training time old / new |",
             "|---|---|---|---|---|---|"]
    for name in dict.fromkeys(r["data set"] for r in rows):
        by = {r["recipe"]: r for r in rows if r["data set"] == name}
        any_row = next(iter(by.values()))

        def accuracy(r):
            return f"{r['C2S']:.3f} ({r['steps']} steps)" if r else "-"

        times = " / ".join(f"{by[k]['minutes']} min" if k in by else "-" for k in ("old", "new"))
        lines.append(f"| {name} | {any_row['cells']} ({any_row['held out']} held out) | {accuracy(by.get('old'))} | "
                     f"{accuracy(by.get('new'))} | {any_row['regression']:.3f} | {times} |")
    return "\n".join(lines)


def main():
    import torch

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument("--n-cells", type=int, default=200)
    parser.add_argument("--only", choices=["old", "new"], help="run one recipe only")
    parser.add_argument("--seed", type=int, default=0, help="seed of the data (simulation, subsample)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.datasets:
            for recipe in [args.only] if args.only else ["old", "new"]:
                rows.append(run(name, args.n_cells, recipe, Path(tmp) / f"{name}-{recipe}", args.seed))
                print(json.dumps(rows[-1]), flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    print(table(rows))


if __name__ == "__main__":
    main()
