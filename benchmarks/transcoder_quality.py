"""Quality of transcoders on the bundled default C2S model: the bar of the transcoder issue.

    python benchmarks/transcoder_quality.py [--out transcoders_default/] [--activation topk] [--k 32]

Harvests the MLP activations of every layer over the model's training cells of
pbmc68k_reduced (prompts with answers), trains one transcoder per layer, and
evaluates them on the cells the C2S model held out (never seen by the model nor
by the transcoders): FVU, L0, dead and dense fractions on those cells' tokens,
answer-token cross-entropy recovered when the MLPs are replaced (one layer, or
all at once; relative to zero- and mean-ablation), and the cell-type accuracy
kept. Bar: FVU <= 0.10 at mean L0 <= 32 on held-out tokens for every layer, and
>= 95% of the clean held-out accuracy kept with all layers replaced.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import pandas as pd

import sctranscoder as sct


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=None, help="keep the store and transcoders here")
    parser.add_argument("--activation", default="topk", choices=["relu", "topk", "batchtopk", "jumprelu"])
    parser.add_argument("--k", type=int, default=32)
    parser.add_argument("--d-hidden", type=int, default=2048)
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--batch-size", type=int, default=1024)
    args = parser.parse_args()

    model = sct.models.default()
    adata = sct.datasets.pbmc68k_reduced()
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp)
        start = time.perf_counter()
        transcoders = sct.tl.train_transcoders(
            adata, model, out_dir=out, label_key="bulk_labels", activation=args.activation, k=args.k,
            d_hidden=args.d_hidden, batch_size=args.batch_size, n_tokens=args.batch_size * args.steps,
            learning_rate=1e-3, warmup_steps=50, dead_window=200_000)
        trained = time.perf_counter() - start
        table = sct.tl.evaluate_transcoders(adata, model, transcoders, label_key="bulk_labels")
    columns = ["fvu", "l0", "dead_fraction", "dense_fraction", "recovered_zero", "recovered_mean", "accuracy",
               "accuracy_clean", "accuracy_kept"]
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(table[columns].round(4))
    layers = table.drop(index="all")
    fvu_ok = bool((layers.fvu <= 0.10).all() and (layers.l0 <= 32).all())
    accuracy_ok = bool(table.loc["all", "accuracy_kept"] >= 0.95)
    print(f"\n{args.activation} k={args.k}, {args.d_hidden} features, {args.steps} steps of {args.batch_size} tokens "
          f"per layer; harvest + training {trained / 60:.1f} min")
    print(f"bar: FVU <= 0.10 at L0 <= 32 on every layer: {'met' if fvu_ok else 'NOT met'}; "
          f"accuracy kept with all layers replaced >= 95%: {'met' if accuracy_ok else 'NOT met'} "
          f"({table.loc['all', 'accuracy_kept']:.1%})")
    print(json.dumps({"table": table[columns].round(5).to_dict(orient="index"), "minutes": trained / 60}))


if __name__ == "__main__":
    main()
