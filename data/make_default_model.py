"""Train the default C2S model that sctranscoder ships, and evaluate it against a logistic regression.

    python data/make_default_model.py            # about 15 minutes on 2 CPU cores

Trains a small GPT-NeoX (parallel residual, like the C2S-Pythia models) with a
byte-level BPE tokenizer learned on the sentences, on C2S cell-type prediction
prompts of pbmc68k_reduced (``bulk_labels``), with a fixed seed. Writes the model
to ``data/c2s_pbmc_default/`` and, beside it, ``evaluation.json``: held-out
accuracy, a logistic regression on the same cells' expression (same split, and
5-fold), and the per-type confusion matrix.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pandas as pd

import sctranscoder as sct

OUT = Path(__file__).parent / "c2s_pbmc_default"
SETTINGS = dict(
    n_genes=200,
    config={"hidden_size": 128, "layers": 3, "heads": 4, "max_positions": 1024, "dropout": 0.2},
    vocab_size=1200,
    epochs=6,
    batch_size=16,
    learning_rate=1e-3,
    weight_decay=0.1,
    augment=1,
    augment_dropout=0.15,
    generation_task=False,
    test_size=0.2,
    seed=0,
)


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


def main():
    import argparse

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=OUT, help="model folder to write (default: the shipped one)")
    parser.add_argument("--settings", type=json.loads, default={},
                        help="JSON object overriding SETTINGS, for trying recipes (keep the shipped one's in SETTINGS)")
    args = parser.parse_args()
    out, settings = args.out, {**SETTINGS, **args.settings}

    adata = sct.datasets.pbmc68k_reduced()
    start = time.perf_counter()
    work = out.with_name(out.name + ".training")
    model = sct.models.train_c2s(adata, "bulk_labels", work, **settings)
    minutes = (time.perf_counter() - start) / 60

    held = adata.obs_names.isin(model.metadata["held_out_cells"])
    test = adata[held].copy()
    sct.tl.predict_cell_types(test, model, progress=False)
    truth = test.obs.bulk_labels.astype(str)
    predicted = test.obs.c2s_prediction.astype(str)
    accuracy = float((truth == predicted).mean())
    lr_split, lr_cv = logistic_regression(adata, held)
    confusion = pd.crosstab(truth, predicted, rownames=["true"], colnames=["predicted"])

    shutil.rmtree(work / "checkpoints", ignore_errors=True)
    if out.exists():
        shutil.rmtree(out)
    work.rename(out)
    evaluation = {
        "held_out_cells": int(held.sum()),
        "c2s_accuracy": accuracy,
        "logistic_regression_same_split": lr_split,
        "logistic_regression_5_fold": lr_cv,
        "training_minutes": round(minutes, 1),
        "settings": settings,
        "confusion": {t: {p: int(v) for p, v in row.items() if v} for t, row in confusion.iterrows()},
    }
    (out / "evaluation.json").write_text(json.dumps(evaluation, indent=1))
    size = sum(f.stat().st_size for f in out.iterdir()) / 2**20
    print(f"held-out accuracy {accuracy:.3f} | logistic regression {lr_split:.3f} (same split), "
          f"{lr_cv:.3f} (5-fold) | {minutes:.1f} min | {size:.1f} MiB")
    print(confusion.to_string())


if __name__ == "__main__":
    main()
