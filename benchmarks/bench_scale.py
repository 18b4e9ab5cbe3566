"""C2S models at real shape: harvest, live all-layer training and one cell's circuit trace, against the bare
forward pass, on GPT-NeoX with Pythia-410m's config and Gemma-2 with Gemma-2-2B's config.

    python benchmarks/bench_scale.py [--models pythia-410m gemma-2-2b] [--cells 4 2] [--device cpu|cuda]

Random weights, built from the published configs (nothing is downloaded): the shapes and vocabularies are what
the costs depend on. Prompts are real C2S prompts of 200 genes (pbmc68k cells, cell2sentence's template, with
the answer), tokenized by a byte-level BPE trained here on English text (the Python standard library's
sources) plus gene names, so a gene name takes several tokens as in Pythia's tokenizer. Per model, in one
process, in this order:

- ``forward``: the bare ``model(input_ids, attention_mask)`` over the cells, no grad;
- ``harvest``: ``sct.harvest.harvest`` of every layer into a float16 store on disk;
- ``live``: ``sct.tc.train_live`` of every layer from one forward pass per batch of cells (TopK k=32,
  ``--d-hidden`` features, one epoch: the cells' tokens rounded down to whole batches);
- ``trace``: ``sct.circuits.trace`` of one cell's answer logit through the transcoders just trained
  (``--max-nodes`` nodes expanded), on float32 weights (bf16 traces: ``bench_circuit_memory.py``).

It prints tokens/s and the ratio to the bare forward, and the process's peak RSS after each stage (VmHWM:
cumulative, so a stage's figure includes the model and what came before). On CUDA it also prints each
stage's peak GPU memory. Weights are in ``--dtype`` (bfloat16 by default, as C2S-Scale checkpoints are
published); transcoders train in float32 with bf16 autocast where the device supports it.
"""

from __future__ import annotations

import argparse
import sysconfig
import tempfile
import time
from pathlib import Path

from _memory import peak_rss_mib  # benchmarks/ is on the path when a script runs

import sctranscoder as sct


def build(name: str, vocab: int, dtype, device):
    """A model with the published config of ``name``, random weights."""
    import torch
    from transformers import AutoModelForCausalLM, Gemma2Config, GPTNeoXConfig

    torch.manual_seed(0)
    if name == "pythia-410m":
        config = GPTNeoXConfig(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
                               intermediate_size=4096, rotary_pct=0.25, vocab_size=50_304,
                               max_position_embeddings=2048, use_parallel_residual=True)
    else:
        config = Gemma2Config(hidden_size=2304, num_hidden_layers=26, intermediate_size=9216, num_attention_heads=8,
                              num_key_value_heads=4, head_dim=256, vocab_size=256_000, max_position_embeddings=8192,
                              sliding_window=4096, attn_logit_softcapping=50.0, final_logit_softcapping=30.0,
                              query_pre_attn_scalar=256)
        config._attn_implementation = "eager"  # soft-capping needs eager attention, as Gemma-2 recommends
    assert vocab <= config.vocab_size
    return AutoModelForCausalLM.from_config(config, dtype=dtype).to(device).eval()


def english_text(limit: int = 9_000_000) -> list[str]:
    """English prose and code from the standard library's sources (always present, no download)."""
    texts, size = [], 0
    for path in sorted(Path(sysconfig.get_paths()["stdlib"]).rglob("*.py")):
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        texts.append(text)
        size += len(text)
        if size >= limit:
            break
    return texts


def prompts(n_cells: int, n_genes: int = 200):
    adata = sct.datasets.pbmc68k_reduced()[:n_cells].copy()
    sct.pp.cell_sentences(adata, n_genes=n_genes, progress=False)
    table = sct.pp.prompts(adata, label_key="bulk_labels")
    return [p + " " + r for p, r in zip(table.prompt, table.response)]


def tokenizer_for_prompts(vocab_size: int):
    genes = list(sct.datasets.pbmc68k_reduced().raw.var_names)
    texts = english_text() + [" ".join(genes[i : i + 50]) for i in range(0, len(genes), 50)]
    return sct.models.train_tokenizer(texts, kind="byte_bpe", vocab_size=vocab_size)


def _sync(device):
    import torch

    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def _gpu_peak(device, reset=False):
    import torch

    if not str(device).startswith("cuda"):
        return float("nan")
    if reset:
        torch.cuda.reset_peak_memory_stats()
        return 0.0
    return torch.cuda.max_memory_allocated() / 2**20


def run_model(name, ids, args, dtype) -> list[dict]:
    import torch

    from sctranscoder import circuits, harvest, tc
    from sctranscoder.harvest import pad_ids as _pad

    rows = []
    model = build(name, args.vocab, dtype, args.device)
    width = int(model.config.hidden_size)
    tokens = sum(len(i) for i in ids)

    def encode(a, b):
        return harvest.Documents(ids[a:b])

    def stage(label, run):
        _gpu_peak(args.device, reset=True)
        _sync(args.device)
        start = time.perf_counter()
        result = run()
        _sync(args.device)
        rows.append({"model": name, "stage": label, "seconds": time.perf_counter() - start,
                     "peak_rss_mib": peak_rss_mib(), "gpu_peak_mib": _gpu_peak(args.device)})
        print(f"  {name} {label}: {rows[-1]['seconds']:.1f} s", flush=True)
        return result

    with torch.no_grad():  # warm-up: lazy imports and first-call setup are not timed
        model(input_ids=torch.ones((1, 8), dtype=torch.long, device=args.device))
    rows.append({"model": name, "stage": "model built", "seconds": float("nan"), "peak_rss_mib": peak_rss_mib(),
                 "gpu_peak_mib": _gpu_peak(args.device)})

    def forward():
        with torch.no_grad():
            for b in range(0, len(ids), args.batch_cells):
                batch, mask = _pad(ids[b : b + args.batch_cells], args.device)
                model(input_ids=batch, attention_mask=mask, use_cache=False)

    stage("forward", forward)
    with tempfile.TemporaryDirectory() as tmp:
        stage("harvest", lambda: harvest.harvest(model, encode, len(ids), f"{tmp}/store", batch_size=args.batch_cells,
                                                 chunk_size=args.batch_cells, dtype="float16", progress=False))
    cfg = tc.TranscoderConfig(d_in=width, d_out=width, d_hidden=args.d_hidden, k=32, batch_size=args.batch_size,
                              n_tokens=max(1, tokens // args.batch_size) * args.batch_size, warmup_steps=1)
    transcoders = stage("live", lambda: tc.train_live(model, encode, len(ids), None, cfg,
                                                      buffer_rows=2 * args.batch_size,
                                                      documents_per_pass=args.batch_cells, progress=False))
    # traced on float32 weights, as the recorded figures were: bf16 traces are measured in bench_circuit_memory
    # (bf16 is 25x slower than float32 on a CPU without native bf16 products)
    model.float()
    target = circuits.Target.logit(int(ids[0][-1]), position=-2, label="answer")
    graph = stage("trace (fp32)", lambda: circuits.trace(model, transcoders, torch.as_tensor(ids[0][:-1]), target,
                                                         max_nodes=args.max_nodes, prune=False))
    rows[-1]["nodes"] = (f"{graph.number_of_nodes():,} nodes, {circuits.prune(graph).number_of_nodes()} after "
                         "pruning")
    for row in rows:
        row["tokens"] = tokens if row["stage"] in ("forward", "harvest", "live") else len(ids[0])
    return rows


def main():
    import torch

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["pythia-410m", "gemma-2-2b"],
                        choices=["pythia-410m", "gemma-2-2b"])
    parser.add_argument("--cells", nargs="+", type=int, default=[4, 2], help="cells per model, in --models order")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32"])
    parser.add_argument("--vocab", type=int, default=50_000, help="BPE vocabulary trained for the prompts")
    parser.add_argument("--batch-cells", type=int, default=2, help="cells per forward pass")
    parser.add_argument("--batch-size", type=int, default=512, help="transcoder batch (tokens per step)")
    parser.add_argument("--d-hidden", type=int, default=1024, help="transcoder width (small on CPU: memory)")
    parser.add_argument("--max-nodes", type=int, default=3, help="circuit nodes expanded (one backward each)")
    args = parser.parse_args()
    dtype = getattr(torch, args.dtype)
    started = time.perf_counter()
    tokenizer = tokenizer_for_prompts(args.vocab)
    texts = prompts(max(args.cells))
    all_ids = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    print(f"tokenizer: byte-level BPE, {len(tokenizer):,} tokens; 200-gene prompts: "
          f"{sum(map(len, all_ids)) / len(all_ids):,.0f} tokens a cell ({time.perf_counter() - started:.0f} s)")
    rows = []
    for name, n_cells in zip(args.models, args.cells):
        rows += run_model(name, all_ids[:n_cells], args, dtype)
        import gc

        gc.collect()
    print(f"\ndevice {args.device}, weights {args.dtype}, transcoders d_hidden {args.d_hidden} k=32, "
          f"batch {args.batch_size} tokens; total {time.perf_counter() - started:.0f} s")
    print(f"{'model':12s} {'stage':12s} {'tokens':>7s} {'seconds':>8s} {'tok/s':>8s} {'x fwd time':>10s} "
          f"{'peak RSS MiB':>12s} {'GPU MiB':>8s}")
    for row in rows:
        forward = next(r for r in rows if r["model"] == row["model"] and r["stage"] == "forward")
        ratio = row["seconds"] / forward["seconds"] if row["stage"] in ("harvest", "live") else float("nan")
        tps = row["tokens"] / row["seconds"] if row["seconds"] == row["seconds"] else float("nan")
        extra = f"  ({row['nodes']})" if "nodes" in row else ""
        print(f"{row['model']:12s} {row['stage']:12s} {row['tokens']:7,d} {row['seconds']:8.1f} {tps:8,.0f} "
              f"{ratio:10.2f} {row['peak_rss_mib']:12,.0f} {row['gpu_peak_mib']:8,.0f}{extra}")


if __name__ == "__main__":
    main()
