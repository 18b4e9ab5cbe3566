"""Do the library's transcoder defaults hold? The README's example, and the same defaults on a second model.

    python benchmarks/transcoder_defaults.py                      # the README example on the default model
    python benchmarks/transcoder_defaults.py --data simulated     # a small C2S model trained on simulated cells

``pbmc``: exactly the README's call, ``sct.tl.train_transcoders(adata, model,
out_dir=..., label_key="bulk_labels", activation="topk", k=32, d_hidden=2048)``
with ``adata = sct.datasets.pbmc68k_reduced()`` and ``model = sct.models.default()``;
learning rate, batch size and training length are the automatic ones.

``simulated``: ``sct.datasets.simulated(n_cells=600)``, a C2S model trained on it
from scratch (``sct.models.train_c2s``, 100 genes, hidden 96, 2 layers, 4 heads),
then its transcoders with every transcoder setting at its default.

Both evaluate on the cells the C2S model held out (from the model's metadata):
per-layer FVU, L0 and dead fraction, and the cell-type accuracy kept with every
layer replaced. Goal: FVU <= 0.05 on every layer, >= 98% accuracy kept.
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from pathlib import Path

import pandas as pd

import sctranscoder as sct


def pbmc(out: Path):
    adata = sct.datasets.pbmc68k_reduced()
    model = sct.models.default()
    transcoders = sct.tl.train_transcoders(adata, model, out_dir=out / "tc", label_key="bulk_labels",
                                           activation="topk", k=32, d_hidden=2048)
    return adata, model, transcoders, "bulk_labels"


def simulated(out: Path, epochs: int):
    adata = sct.datasets.simulated(n_cells=600)
    model = sct.models.train_c2s(adata, "cell_type", out / "c2s", n_genes=100, epochs=epochs,
                                 config={"hidden_size": 96, "layers": 2, "heads": 4})
    transcoders = sct.tl.train_transcoders(adata, model, out_dir=out / "tc", label_key="cell_type")
    return adata, model, transcoders, "cell_type"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", choices=["pbmc", "simulated"], default="pbmc")
    parser.add_argument("--out", type=Path, default=None, help="keep the models and transcoders here (resumes)")
    parser.add_argument("--epochs", type=int, default=None,
                        help="C2S training epochs (simulated; default: train_c2s' own rule)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")

    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp)
        start = time.perf_counter()
        adata, model, transcoders, label_key = pbmc(out) if args.data == "pbmc" else simulated(out, args.epochs)
        trained = time.perf_counter() - start
        table = sct.tl.evaluate_transcoders(adata, model, transcoders, label_key=label_key)
    columns = ["fvu", "l0", "dead_fraction", "recovered_mean", "accuracy", "accuracy_clean", "accuracy_kept"]
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(table[columns].round(4))
    cfg = next(iter(transcoders.values())).cfg
    print(f"\n{args.data}: {cfg.activation} k={cfg.k}, d_hidden {cfg.d_hidden}; automatic: learning_rate "
          f"{cfg.learning_rate:.3g}, batch_size {cfg.batch_size}, {cfg.n_steps} steps ({cfg.n_tokens:,} tokens) "
          f"per layer; models, harvest and training {trained / 60:.1f} min")
    layers = table.drop(index="all")
    print(f"goal: FVU <= 0.05 on every layer: {'met' if (layers.fvu <= 0.05).all() else 'NOT met'}; accuracy kept "
          f">= 98%: {'met' if table.loc['all', 'accuracy_kept'] >= 0.98 else 'NOT met'} "
          f"({table.loc['all', 'accuracy_kept']:.1%})")
    settings = {k: getattr(cfg, k) for k in ("learning_rate", "batch_size", "n_tokens", "d_hidden", "k")}
    print(json.dumps({"data": args.data, "settings": settings, "minutes": trained / 60,
                      "table": table[columns].round(5).to_dict(orient="index")}))


if __name__ == "__main__":
    main()
