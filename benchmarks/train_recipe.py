"""train_c2s with the library's recipe, side by side with a logistic regression, across data sizes and prompts.

    python benchmarks/train_recipe.py                                  # every size, the recipe's genes per prompt
    python benchmarks/train_recipe.py --sizes 1000 2000 --genes 50 100 200
    python benchmarks/train_recipe.py --datasets pbmc68k --sizes 200 500 700
    python benchmarks/train_recipe.py --sizes 2000 --options '{"tokenizer": "byte_bpe"}'   # try a recipe change

Each run trains a C2S model from scratch in a fresh process (``train_c2s(adata, label_key, out_dir)`` with the
library's defaults, or ``n_genes`` / ``--options`` given) and reads ``sctranscoder.json``: held-out accuracy
(20% of each type, candidate scoring) beside the logistic regression train_c2s fits on the same split and
genes, the recipe it chose, wall time and the process's peak memory. It also prints ``sct.tl.plan``'s estimate
of the training time made before training, and its ratio to the measured time.

Data: simulated atlases (``sct.datasets.simulated``, 5 types in 2 lineages; a logistic regression separates them
at about 0.99) and stratified subsets of pbmc68k_reduced (700 cells, 10 types). Prints one JSON line per run
and a Markdown table at the end; ``--json`` also writes the rows.
"""

from __future__ import annotations

import argparse
import itertools
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SIMULATION = dict(n_types=5, n_genes=700, fold_change=4.0, markers_per_type=20, library_size=1500)


def load(dataset: str, n_cells: int, seed: int):
    import numpy as np

    import sctranscoder as sct

    if dataset == "simulated":
        return sct.datasets.simulated(n_cells=n_cells, seed=seed, **SIMULATION), "cell_type"
    from sklearn.model_selection import train_test_split

    adata = sct.datasets.pbmc68k_reduced()
    if n_cells >= adata.n_obs:
        return adata, "bulk_labels"
    keep, _ = train_test_split(np.arange(adata.n_obs), train_size=n_cells, stratify=adata.obs.bulk_labels,
                               random_state=seed)
    return adata[np.sort(keep)].copy(), "bulk_labels"


def one_run(dataset: str, n_cells: int, n_genes: int | None, options: dict, seed: int, threads: int) -> dict:
    """Train once in this process; the row to print."""
    import warnings

    import torch

    import sctranscoder as sct

    sys.path.insert(0, str(Path(__file__).parent))
    from _memory import peak_rss_mib

    torch.set_num_threads(threads)
    adata, key = load(dataset, n_cells, seed)
    options = dict(options)
    config = options.pop("config", None)  # the architecture; the rest are TrainConfig fields
    settings = sct.pp.PromptSettings(n_genes=n_genes) if n_genes is not None else None
    given = dict(settings=settings, train_config=sct.models.TrainConfig(**options), config=config)
    estimate = sct.tl.plan_training(adata, key, **given) if hasattr(sct.tl, "plan_training") else None
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # the below-the-regression warning: the table says it
            model = sct.models.train_c2s(adata, key, out, progress=False, **given)
        seconds = time.perf_counter() - start
    meta = model.metadata
    evaluation = meta["held_out_evaluation"]
    recipe = meta.get("recipe", {})
    row = {"data set": dataset, "cells": int(adata.n_obs), "genes per prompt": int(meta["n_genes"]),
           "tokenizer": recipe.get("tokenizer") or meta.get("tokenizer"), "held out": evaluation["n_cells"],
           "C2S": round(evaluation["c2s_accuracy"], 3),
           "regression": round(evaluation["logistic_regression_accuracy"], 3),
           "gap (points)": round(100 * (evaluation["logistic_regression_accuracy"] - evaluation["c2s_accuracy"]), 1),
           "epochs": meta["epochs"], "epochs run": meta.get("epochs_run", meta["epochs"]), "chosen epoch": meta.get("selected_epoch"), "steps": meta["steps"],
           "minutes": round(seconds / 60, 2), "peak MiB": round(peak_rss_mib())}
    if estimate is not None:
        row["plan minutes"] = round(estimate.total_seconds / 60, 2)
        row["plan / measured"] = round(estimate.total_seconds / seconds, 2)
        # early stopping runs fewer epochs than planned: the plan's figures scaled to the epochs that ran
        ran = meta.get("epochs_run", meta["epochs"]) / estimate.epochs
        s = estimate.seconds
        row["plan / measured, epochs run"] = round(
            (s["setup"] + (s["training"] + s["validation"]) * ran + s["held_out"]) / seconds, 2)
    return row


def table(rows: list[dict]) -> str:
    columns = ["data set", "cells", "genes per prompt", "tokenizer", "C2S", "regression", "gap (points)", "epochs",
               "epochs run", "chosen epoch", "minutes", "plan / measured", "plan / measured, epochs run", "peak MiB"]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(row.get(c, "-")) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def spread(rows: list[dict]) -> str:
    """Mean and standard deviation over seeds of the accuracy and the gap, per data set, size and prompt."""
    import pandas as pd

    frame = pd.DataFrame(rows)
    stats = frame.groupby(["data set", "cells", "genes per prompt"]).agg(
        seeds=("C2S", "size"), C2S=("C2S", "mean"), C2S_sd=("C2S", "std"), regression=("regression", "mean"),
        gap=("gap (points)", "mean"), gap_sd=("gap (points)", "std"), minutes=("minutes", "mean"))
    return stats.round(3).reset_index().to_string(index=False)


def plot(rows: list[dict], path: Path) -> None:
    """Accuracy (C2S beside the regression) and wall time against cells, one panel per data set, and one line
    per genes per prompt."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker
    import pandas as pd

    datasets = sorted({r["data set"] for r in rows})
    fig, axes = plt.subplots(2, len(datasets), figsize=(5 * len(datasets), 7), squeeze=False, sharex="col")
    for column, dataset in enumerate(datasets):
        mine = [r for r in rows if r["data set"] == dataset]
        accuracy, minutes = axes[0, column], axes[1, column]
        for genes in sorted({r["genes per prompt"] for r in mine}):
            line = pd.DataFrame([r for r in mine if r["genes per prompt"] == genes]).groupby("cells")
            mean, sd = line.mean(numeric_only=True), line.std(numeric_only=True).fillna(0)  # over seeds
            drawn = accuracy.errorbar(mean.index, mean["C2S"], yerr=sd["C2S"], fmt="o-", capsize=3,
                                      label=f"C2S, {genes} genes a prompt")
            accuracy.plot(mean.index, mean["regression"], "s--", color=drawn[0].get_color(), alpha=0.6,
                          label=f"regression, same {genes} genes")
            minutes.plot(mean.index, mean["minutes"], "o-", label=f"{genes} genes a prompt")
        accuracy.set(title=f"{dataset}: held-out accuracy", ylabel="held-out accuracy", ylim=(0, 1.02))
        minutes.set(title=f"{dataset}: wall time (2 CPU cores)", ylabel="minutes", xlabel="cells")
        minutes.set_ylim(bottom=0)
        for axis in (accuracy, minutes):
            axis.set_xscale("log")
            axis.set_xticks(sorted({r["cells"] for r in mine}))
            axis.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda x, _: f"{x:,.0f}"))
            axis.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
            axis.grid(alpha=0.3)
            axis.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def run_all(args) -> list[dict]:
    """Every data set x size x genes per prompt x seed, each trained in a fresh process (its peak memory is its
    own); the rows, printed as they come."""
    rows = []
    for dataset in args.datasets:
        sizes = sorted({min(s, 700) for s in args.sizes}) if dataset == "pbmc68k" else args.sizes
        for n_cells, genes, seed in itertools.product(sizes, args.genes, args.seeds):
            run = {"dataset": dataset, "n_cells": n_cells, "n_genes": None if genes == "recipe" else int(genes),
                   "options": {"seed": seed, **args.options}, "seed": seed, "threads": args.threads}
            child = subprocess.run([sys.executable, __file__, "--one", json.dumps(run)], capture_output=True, text=True)
            if child.returncode:
                print(child.stderr[-3000:], file=sys.stderr)
                raise SystemExit(f"run {run} failed")
            rows.append({**json.loads(child.stdout.strip().splitlines()[-1]), "seed": seed})
            print(json.dumps(rows[-1]), flush=True)
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=["simulated", "pbmc68k"], choices=["simulated", "pbmc68k"])
    parser.add_argument("--sizes", nargs="+", type=int, default=[200, 500, 1000, 2000, 5000, 20000])
    parser.add_argument("--genes", nargs="+", default=["recipe"],
                        help="genes per prompt: numbers, or 'recipe' for the library's choice")
    parser.add_argument("--options", type=json.loads, default={}, help="more train_c2s arguments, as JSON")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0],
                        help="seeds of the data (simulation, subsample) and of training (split, initialisation): "
                             "one run each; with several, the table adds their mean and spread")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    parser.add_argument("--plot", type=Path, help="draw the curves to this PNG")
    parser.add_argument("--rows", nargs="+", type=Path,
                        help="read rows written by earlier --json runs instead of running (then --plot draws them)")
    parser.add_argument("--one", type=json.loads, help=argparse.SUPPRESS)  # a single run, in a child process
    args = parser.parse_args()
    if args.one is not None:
        print(json.dumps(one_run(**args.one)))
        return
    rows = [row for path in args.rows for row in json.loads(path.read_text())] if args.rows else run_all(args)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    print(table(rows))
    if len({row.get("seed", 0) for row in rows}) > 1:
        print(spread(rows))
    if args.plot:
        plot(rows, args.plot)


if __name__ == "__main__":
    main()
