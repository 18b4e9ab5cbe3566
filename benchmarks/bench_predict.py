"""Cell-type prediction: sctranscoder (batched) vs cell2sentence 1.2.0 (one prompt at a time).

    pip install -e ".[bench]"
    python benchmarks/bench_predict.py

Both run the bundled default model on the same cells (the model's held-out
PBMCs, repeated to --cells) with the same number of genes per sentence, on CPU.
cell2sentence is timed through its own predict_cell_types_of_data (which
generates one prompt at a time); ours in both modes: batched candidate scoring,
and batched greedy generation. Prints the speed-ups and our accuracy.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import tempfile
import time

import anndata as ad
import numpy as np

import sctranscoder as sct


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cells", type=int, default=140)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()

    from cell2sentence import CSData, CSModel
    from cell2sentence.tasks import predict_cell_types_of_data

    model = sct.models.default()
    n_genes = model.metadata["n_genes"]
    pbmc = sct.datasets.pbmc68k_reduced()
    held = pbmc[pbmc.obs_names.isin(model.metadata["held_out_cells"])]
    cells = held[np.resize(np.arange(held.n_obs), args.cells)].copy()
    cells.obs_names_make_unique()
    answer_tokens = max(len(model.tokenizer(f"{c}.")["input_ids"]) for c in model.labels) + 1

    with tempfile.TemporaryDirectory() as tmp:
        # cell2sentence's prompt formatter reads these two columns for every cell
        obs = cells.obs[["bulk_labels"]].rename(columns={"bulk_labels": "cell_type"})
        obs["organism"] = model.metadata["organism"]
        c2s_input = ad.AnnData(cells.raw.X.copy(), obs=obs, var=cells.raw.var[[]].copy())
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            arrow, vocab = CSData.adata_to_arrow(c2s_input, label_col_names=["cell_type", "organism"])
            csdata = CSData.csdata_from_arrow(arrow, vocab, save_dir=tmp, save_name="cells")
            csmodel = CSModel(str(sct.models._default.default_model_path()), save_dir=tmp, save_name="model")
            start = time.perf_counter()
            c2s_answers = predict_cell_types_of_data(csdata, csmodel, n_genes=n_genes, max_num_tokens=answer_tokens)
            c2s_seconds = time.perf_counter() - start

    timings = {}
    for mode in ("score", "generate"):
        run = cells.copy()
        sct.pp.cell_sentences(run, n_genes=n_genes, progress=False)
        start = time.perf_counter()
        sct.tl.predict_cell_types(run, model, mode=mode, batch_size=args.batch_size, progress=False)
        timings[mode] = (time.perf_counter() - start,
                         float((run.obs.c2s_prediction.astype(str) == run.obs.bulk_labels.astype(str)).mean()))

    print(f"{args.cells} cells, {n_genes} genes per sentence, default model ({model.architecture}), CPU")
    print(f"cell2sentence 1.2.0 predict_cell_types_of_data: {c2s_seconds:.2f} s "
          f"({len(c2s_answers)} answers, one prompt at a time)")
    for mode, (seconds, accuracy) in timings.items():
        print(f"sctranscoder mode={mode!r:11s} batch {args.batch_size}: {seconds:.2f} s, "
              f"{c2s_seconds / seconds:.1f}x faster, accuracy {accuracy:.3f}")


if __name__ == "__main__":
    main()
