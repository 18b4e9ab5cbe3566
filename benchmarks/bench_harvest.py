"""Harvest throughput: sct.harvest (hooks, every layer, written to disk) vs a bare forward pass.

    python benchmarks/bench_harvest.py [--cells 128] [--chunk-size 16] [--repeats 3]

Both sides run the same model on the same pre-tokenized batches (C2S prompts of
pbmc68k cells, with answers), under torch.no_grad() on CPU. The bare side is
``model(input_ids, attention_mask)``, and, stricter, the transformer body alone
(no LM head). The harvest side captures every layer's MLP input and output,
gathers the real tokens, and writes float16 safetensors shards to a temporary
folder. Timings alternate the sides in one process, best of --repeats; each
side's peak memory is the VmHWM of a fresh process that runs it once. Models: the bundled
default model, and a wider GPT-NeoX (d_model 512, 4 layers, random weights).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import tempfile
import time

from _memory import peak_rss_mib  # benchmarks/ is on the path when a script runs

import sctranscoder as sct


def _setup(model_name, cells):
    import torch
    from transformers import AutoModelForCausalLM, GPTNeoXConfig

    c2s = sct.models.default()
    model = c2s.model
    if model_name == "wide":
        torch.manual_seed(0)
        config = GPTNeoXConfig(hidden_size=512, num_hidden_layers=4, num_attention_heads=8, intermediate_size=2048,
                               vocab_size=len(c2s.tokenizer), max_position_embeddings=1024,
                               use_parallel_residual=True)
        model = AutoModelForCausalLM.from_config(config)
    model.eval()
    adata = sct.datasets.pbmc68k_reduced()[:cells].copy()
    docs = sct.tl.encode_cells(adata, c2s, label_key="bulk_labels", progress=False).documents(0, cells)
    return model, docs


def _timed(side, model, docs, cells, batch_size, chunk_size):
    import torch

    from sctranscoder.harvest import Documents, harvest
    from sctranscoder.harvest import pad_ids as _pad

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        if side == "harvest":
            def encode(a, b):
                return Documents(docs.input_ids[a:b], docs.token_gene[a:b], docs.span_ids[a:b], docs.special[a:b])

            harvest(model, encode, cells, f"{tmp}/store", chunk_size=chunk_size, batch_size=batch_size,
                    dtype="float16", drop_special=False, progress=False)
        else:
            body = model.get_decoder() if side == "body" else model
            with torch.no_grad():
                for b in range(0, cells, batch_size):
                    ids, mask = _pad(docs.input_ids[b : b + batch_size], "cpu")
                    body(input_ids=ids, attention_mask=mask, use_cache=False)
        return time.perf_counter() - start


def _peak_child(side, model_name, cells, batch_size, chunk_size, queue):
    model, docs = _setup(model_name, cells)
    _timed(side, model, docs, cells, batch_size, chunk_size)
    queue.put(peak_rss_mib())


def peak_rss(side, model_name, cells, batch_size, chunk_size) -> float:
    """Peak RSS of a fresh process that sets up and runs one side once."""
    context = mp.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_peak_child, args=(side, model_name, cells, batch_size, chunk_size, queue))
    process.start()
    peak = queue.get()
    process.join()
    return peak


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cells", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--chunk-size", type=int, default=16,
                        help="cells per shard; the last shard's write cannot overlap a forward pass")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--models", nargs="+", default=["default", "wide"], choices=["default", "wide"])
    args = parser.parse_args()
    sides = ("forward", "body", "harvest")
    for model_name in args.models:
        model, docs = _setup(model_name, args.cells)
        tokens = sum(len(ids) for ids in docs.input_ids)
        best = dict.fromkeys(sides, float("inf"))
        for _ in range(args.repeats):  # interleaved, so drifts of the machine hit every side alike
            for side in sides:
                best[side] = min(best[side], _timed(side, model, docs, args.cells, args.batch_size, args.chunk_size))
        print(f"{model_name} model, {args.cells} cells, {tokens:,} tokens, batch {args.batch_size}, "
              f"shards of {args.chunk_size} cells, best of {args.repeats}:")
        for side in sides:
            peak = peak_rss(side, model_name, args.cells, args.batch_size, args.chunk_size)
            print(f"  {side:8s} {tokens / best[side]:10,.0f} tok/s  ({best[side]:.2f} s; peak RSS of a fresh "
                  f"process running it: {peak:,.0f} MiB)")
        for reference in ("forward", "body"):
            print(f"  harvest / bare {reference}: {best[reference] / best['harvest']:.2f}x throughput")


if __name__ == "__main__":
    main()
