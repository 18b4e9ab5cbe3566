"""Cell-type prediction: sctranscoder (batched) vs cell2sentence 1.2.0 (one prompt at a time).

    pip install -e ".[bench]"
    python benchmarks/bench_predict.py

Both run the bundled default model on the same cells (the model's held-out
PBMCs, repeated to --cells) with the same number of genes per sentence, on the
same device: a GPU when there is one (cell2sentence picks it by itself), else CPU.
cell2sentence is timed through its own predict_cell_types_of_data (which
generates one prompt at a time, in float32: it has no dtype option), and for comparison
through its own batched generation (left-padded, not used by its predict function); ours in both
modes (batched candidate scoring, batched greedy generation), with the model in
float32 and in bfloat16. Each side runs in a fresh process, best of --repeats
calls; its peak memory is that process's peak resident set (VmHWM), and how far the
prediction raised it over the set-up (model and data loaded). Prints the
speed-ups, peak memory, accuracy, and how often bfloat16 agrees with float32.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import multiprocessing
import tempfile
import time

import numpy as np
from _memory import peak_rss_mib  # benchmarks/ is on the path when a script runs

from sctranscoder.models import parse_answer


def bench_cells(n_cells: int):
    import sctranscoder as sct

    model = sct.models.default()
    pbmc = sct.datasets.pbmc68k_reduced()
    held = pbmc[pbmc.obs_names.isin(model.metadata["held_out_cells"])]
    cells = held[np.resize(np.arange(held.n_obs), n_cells)].copy()
    cells.obs_names_make_unique()
    return model, cells


def cell2sentence_side(n_cells: int, repeats: int, batch_size: int = 0):
    """cell2sentence's predict_cell_types_of_data (batch_size 0), or its own batched generation
    (``CSModel.generate_from_prompt_batched``, left-padded) on the prompts its formatter writes."""
    import anndata as ad
    from cell2sentence import CSData, CSModel
    from cell2sentence.prompt_formatter import C2SPromptFormatter
    from cell2sentence.tasks import predict_cell_types_of_data
    from datasets import load_from_disk
    from transformers import AutoModelForCausalLM

    import sctranscoder as sct

    model, cells = bench_cells(n_cells)
    n_genes = model.metadata["n_genes"]
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
            seconds, setup_peak = [], peak_rss_mib()
            for _ in range(repeats):
                start = time.perf_counter()
                if batch_size:
                    lm = AutoModelForCausalLM.from_pretrained(csmodel.save_path)
                    formatter = C2SPromptFormatter(task="cell_type_prediction", top_k_genes=n_genes)
                    prompts = formatter.format_hf_ds(load_from_disk(csdata.data_path))["model_input"]
                    answers = [a for i in range(0, len(prompts), batch_size) for a in csmodel.generate_from_prompt_batched(
                        lm, prompts[i : i + batch_size], max_num_tokens=answer_tokens)]
                else:
                    answers = predict_cell_types_of_data(csdata, csmodel, n_genes=n_genes,
                                                         max_num_tokens=answer_tokens)
                seconds.append(time.perf_counter() - start)
    return min(seconds), [parse_answer(str(a)) for a in answers], setup_peak


def sctranscoder_side(n_cells: int, repeats: int, mode: str, dtype: str, batch_size: int):
    import torch

    import sctranscoder as sct

    _, cells = bench_cells(n_cells)
    device = "cuda" if torch.cuda.is_available() else "cpu"  # cell2sentence's rule
    model = sct.models.default(dtype=getattr(torch, dtype), device=device)
    sct.tl.prompt_settings(cells, model, progress=False)  # the model's sentences, built before the clock starts
    seconds, setup_peak = [], peak_rss_mib()
    for _ in range(repeats):
        start = time.perf_counter()
        sct.tl.predict_cell_types(cells, model, mode=mode, batch_size=batch_size, progress=False)
        seconds.append(time.perf_counter() - start)
    return min(seconds), list(cells.obs.c2s_prediction.astype(str)), setup_peak


def _device_name() -> str:
    import torch

    return torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU"


def _child(side, args, queue):
    queue.put((side(*args), peak_rss_mib()))


def in_fresh_process(side, *args):
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_child, args=(side, args, queue))
    process.start()
    (seconds, answers, setup_peak), peak = queue.get()
    process.join()
    return seconds, np.asarray(answers), f"peak RSS {peak:,.0f} MiB (+{peak - setup_peak:,.0f} over its set-up)"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cells", type=int, default=140)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    model, cells = bench_cells(args.cells)
    truth = cells.obs.bulk_labels.astype(str).to_numpy()
    c2s_seconds, c2s_answers, c2s_peak = in_fresh_process(cell2sentence_side, args.cells, args.repeats)
    print(f"{args.cells} cells, {model.metadata['n_genes']} genes per sentence, default model "
          f"({model.architecture}), {_device_name()}, best of {args.repeats}")
    print(f"cell2sentence 1.2.0 predict_cell_types_of_data, float32: {c2s_seconds:.2f} s, {c2s_peak}, "
          f"accuracy {(c2s_answers == truth).mean():.3f} (one prompt at a time: the reference)")
    seconds, answers, peak = in_fresh_process(cell2sentence_side, args.cells, args.repeats, args.batch_size)
    print(f"cell2sentence 1.2.0 generate_from_prompt_batched, batch {args.batch_size}: {seconds:.2f} s "
          f"({c2s_seconds / seconds:.1f}x the reference), {peak}, accuracy {(answers == truth).mean():.3f}")
    float32 = {}
    for dtype in ("float32", "bfloat16"):
        for mode in ("score", "generate"):
            seconds, answers, peak = in_fresh_process(sctranscoder_side, args.cells, args.repeats, mode, dtype,
                                                      args.batch_size)
            float32.setdefault(mode, answers)
            agreement = "" if dtype == "float32" else f", same answer as float32 {(answers == float32[mode]).mean():.3f}"
            print(f"sctranscoder mode={mode!r:11s} {dtype:8s} batch {args.batch_size}: {seconds:.2f} s, "
                  f"{c2s_seconds / seconds:.1f}x faster, {peak}, "
                  f"accuracy {(answers == truth).mean():.3f}{agreement}")


if __name__ == "__main__":
    main()
