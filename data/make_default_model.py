"""Train the default C2S model that sctranscoder ships, and evaluate it against a logistic regression.

    python data/make_default_model.py                  # about 15 minutes on 2 idle CPU cores
    python data/make_default_model.py --evaluate-only  # re-evaluate the shipped model

Trains a small GPT-NeoX (parallel residual, like the C2S-Pythia models) with a
byte-level BPE tokenizer learned on the sentences, on C2S cell-type prediction
prompts of pbmc68k_reduced (``bulk_labels``), with a fixed seed; the epoch kept is
the one with the best accuracy on a validation split of the training cells. Writes the model
to ``sctranscoder/data/c2s_pbmc_default/`` (package data) and, beside it, ``evaluation.json``: held-out
accuracy, a logistic regression on the same cells' expression (same split, and
5-fold), and the per-type confusion matrix.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd

import sctranscoder as sct
from sctranscoder._atomic import atomic_path

# package data, so that every install carries it (pyproject.toml lists it)
OUT = Path(__file__).resolve().parents[1] / "sctranscoder" / "data" / "c2s_pbmc_default"
SETTINGS = dict(
    n_genes=200,
    config={"hidden_size": 128, "layers": 3, "heads": 4, "max_positions": 1024, "dropout": 0.2},
    vocab_size=1200,
    epochs=9,
    lr_scheduler="cosine",
    batch_size=16,
    learning_rate=1e-3,
    weight_decay=0.1,
    augment=1,
    augment_dropout=0.15,
    generation_task=False,
    test_size=0.2,
    validation_size=0.15,  # of the training cells: the epoch is chosen on them, never on the held-out cells
    patience=3,  # stop when 3 epochs in a row do not beat the best validation accuracy
    tokenizer="byte_bpe",  # gene names in several tokens, as the real C2S models read them
    seed=0,
)
PROMPT_FIELDS = ("n_genes", "organism", "tie_break", "tie_key", "layer", "use_raw")


def train_options(settings: dict) -> dict:
    """``SETTINGS`` as train_c2s's arguments: prompt settings (the tie-break seeded by the training seed, ties
    keyed on cell names), a TrainConfig, and the architecture."""
    settings = dict(settings)
    architecture = settings.pop("config", None)
    prompt = {k: settings.pop(k) for k in PROMPT_FIELDS if k in settings}
    return {"settings": sct.pp.PromptSettings(seed=settings.get("seed", 0), **prompt),
            "train_config": sct.models.TrainConfig(**settings), "config": architecture}


def logistic_regression(adata, held):
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score

    x = adata.raw.X.toarray()
    y = adata.obs.bulk_labels.astype(str).to_numpy()
    clf = LogisticRegression(max_iter=2000)
    split_accuracy = clf.fit(x[~held], y[~held]).score(x[held], y[held])
    folds = StratifiedKFold(n_splits=5, shuffle=True, random_state=0)
    cv = cross_val_score(LogisticRegression(max_iter=2000), x, y, cv=folds)
    return float(split_accuracy), float(cv.mean())


def evaluate(model, adata, settings, minutes):
    """Held-out accuracy, the logistic regressions, the per-type confusion: the evaluation.json dict."""
    held = adata.obs_names.isin(model.metadata["held_out_cells"])
    test = adata[held].copy()  # the held-out cells on their own: their sentences made without the other cells
    sct.tl.predict_cell_types(test, model, progress=False)
    truth = test.obs.bulk_labels.astype(str)
    predicted = test.obs.c2s_prediction.astype(str)
    whole = adata.copy()  # and ranked inside the whole data set: name-keyed ties give them the same sentences
    sct.tl.predict_cell_types(whole, model, progress=False)
    in_whole = whole.obs.c2s_prediction.astype(str)[held]
    lr_split, lr_cv = logistic_regression(adata, held)
    draws = tie_break_draws(model, adata[held], truth)
    confusion = pd.crosstab(truth, predicted, rownames=["true"], colnames=["predicted"])
    return {
        "held_out_cells": int(held.sum()),
        "c2s_accuracy": float((truth == predicted).mean()),
        "c2s_accuracy_ranked_with_all_cells": float((truth == in_whole).mean()),
        "tie_key": sct.pp.PromptSettings.of_model(model).tie_key,
        # the model's own tie-break seed is one draw of the order of equally expressed genes; others vary it
        "c2s_accuracy_tie_break_draws": draws,
        "c2s_accuracy_tie_break_mean": float(np.mean(list(draws.values()))),
        "logistic_regression_same_split": lr_split,
        "logistic_regression_5_fold": lr_cv,
        "training_minutes": minutes,
        "selected_epoch": model.metadata.get("selected_epoch"),
        "validation_history": model.metadata.get("validation_history"),
        "settings": settings,
        "confusion": {t: {p: int(v) for p, v in row.items() if v} for t, row in confusion.iterrows()},
    }


def tie_break_draws(model, cells, truth, seeds=range(1, 9)) -> dict:
    """Held-out accuracy with the ties of each cell's sentence broken by other seeds than the model's."""
    accuracies = {}
    for seed in seeds:
        test = cells.copy()
        settings = sct.pp.PromptSettings.of_model(model).updated(seed=seed)
        settings.ensure_sentences(test, progress=False)
        encoded = sct.tl.encode_cells(test, model, settings=settings, progress=False)
        sct.tl.predict_cell_types(test, model, encoded=encoded, progress=False)
        accuracies[str(seed)] = float((test.obs.c2s_prediction.astype(str) == truth).mean())
    return accuracies


def report(out: Path, evaluation: dict) -> None:
    size = sum(f.stat().st_size for f in out.iterdir() if f.is_file()) / 2**20
    print(f"held-out accuracy {evaluation['c2s_accuracy']:.3f} alone, "
          f"{evaluation['c2s_accuracy_ranked_with_all_cells']:.3f} ranked with all cells (other tie-break draws: mean "
          f"{evaluation['c2s_accuracy_tie_break_mean']:.3f}, "
          f"{min(evaluation['c2s_accuracy_tie_break_draws'].values()):.3f}-"
          f"{max(evaluation['c2s_accuracy_tie_break_draws'].values()):.3f}) | logistic regression "
          f"{evaluation['logistic_regression_same_split']:.3f} (same split), "
          f"{evaluation['logistic_regression_5_fold']:.3f} (5-fold) | {evaluation['training_minutes']} min | "
          f"{size:.1f} MiB")
    for epoch in evaluation.get("validation_history") or []:
        print(f"epoch {epoch['epoch']}: validation accuracy {epoch['accuracy']:.3f}, answer NLL {epoch['answer_nll']:.3f}"
              + (" (kept)" if epoch["epoch"] == evaluation["selected_epoch"] else ""))
    print(pd.DataFrame(evaluation["confusion"]).T.fillna(0).astype(int).sort_index().sort_index(axis=1).to_string())


def main():
    import argparse

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=OUT, help="model folder to write (default: the shipped one)")
    parser.add_argument("--settings", type=json.loads, default={},
                        help="JSON object overriding SETTINGS, for trying recipes (keep the shipped one's in SETTINGS)")
    parser.add_argument("--evaluate-only", action="store_true",
                        help="re-evaluate the model already in --out (its recorded settings and training time kept)")
    args = parser.parse_args()
    out, settings = args.out, {**SETTINGS, **args.settings}
    adata = sct.datasets.pbmc68k_reduced()

    if args.evaluate_only:
        recorded = json.loads((out / "evaluation.json").read_text())
        evaluation = evaluate(sct.models.load(out), adata, recorded["settings"], recorded["training_minutes"])
    else:
        start = time.perf_counter()
        work = out.with_name(out.name + ".training")
        model = sct.models.train_c2s(adata, "bulk_labels", work, **train_options(settings))
        minutes = round((time.perf_counter() - start) / 60, 1)
        evaluation = evaluate(model, adata, settings, minutes)
        shutil.rmtree(work / "checkpoints", ignore_errors=True)
        if out.exists():
            shutil.rmtree(out)
        work.rename(out)
    with atomic_path(out / "evaluation.json") as tmp:
        tmp.write_text(json.dumps(evaluation, indent=1))
    report(out, evaluation)


if __name__ == "__main__":
    main()
