"""Peak memory and time of one cell's circuit at real shape, bf16 weights against float32, each in its own process.

    python benchmarks/bench_circuit_memory.py [--models gemma-2-2b] [--dtypes bfloat16 float32]
        [--methods trace attribute] [--budget 16] [--batch-size 8]

Random weights from the published configs (``bench_scale.build``; nothing is downloaded), one pbmc68k cell's
200-gene C2S prompt tokenized by bench_scale's byte-level BPE (about 540 tokens), and untrained TopK transcoders
(k=32, ``--d-hidden`` features) on every layer: the memory depends on the shapes and on how many features fire,
not on what they mean. Two ways to trace, as the package uses them:

- ``trace``: :func:`sctranscoder.circuits.trace` with ``--max-nodes`` nodes expanded (one backward pass each);
- ``attribute``: :func:`sctranscoder.circuits.attribute`, the complete attribution graph that
  ``sct.tl.cell_type_circuit`` builds, with a node budget of ``--budget`` features and ``--batch-size`` rows
  per backward pass. Its two large buffers are the rows (budget x every active feature, error and token,
  float32) and the batched gradients (batch x layers x tokens x hidden, in the weights' dtype); the script
  prints both sizes beside the measured peak.

The model is built in the dtype measured and traced as it is (no float32 copy); attributions accumulate in
float32 either way. Each configuration runs in a fresh process, so its peak RSS (VmHWM) is its own.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))


def one_run(model_name: str, dtype: str, method: str, ids: list, args: dict) -> dict:
    import torch
    from _memory import peak_rss_mib
    from bench_scale import build

    from sctranscoder import circuits
    from sctranscoder.tc import Transcoder, TranscoderConfig

    torch.set_num_threads(args["threads"])
    start = time.perf_counter()
    model = build(model_name, args["vocab"], getattr(torch, dtype), "cpu")
    width, n_layers = int(model.config.hidden_size), int(model.config.num_hidden_layers)
    transcoders = {layer: Transcoder(TranscoderConfig(d_in=width, d_out=width, d_hidden=args["d_hidden"], k=32,
                                                      seed=layer)).eval() for layer in range(n_layers)}
    row = {"model": model_name, "weights": dtype, "method": method, "tokens": len(ids) - 1,
           "built MiB": round(peak_rss_mib()), "build s": round(time.perf_counter() - start, 1)}
    prompt, answer = torch.as_tensor(ids[:-1]), int(ids[-1])
    target = circuits.Target.logit(answer, label="answer")
    start = time.perf_counter()
    if method == "trace":
        graph = circuits.trace(model, transcoders, prompt, target, max_nodes=args["max_nodes"], prune=False)
        row["nodes"] = graph.number_of_nodes()
    else:
        graph = circuits.attribute(model, transcoders, prompt, target, max_feature_nodes=args["budget"],
                                   batch_size=args["batch_size"], progress=False)
        n_columns = graph.n_active + (n_layers + 1) * row["tokens"]
        row["active features"] = graph.n_active
        row["rows MiB"] = round(args["budget"] * n_columns * 4 / 2**20)
        row["gradients MiB"] = round(args["batch_size"] * n_layers * row["tokens"] * width
                                     * torch.finfo(getattr(torch, dtype)).bits / 8 / 2**20)
    row["trace s"] = round(time.perf_counter() - start, 1)
    row["peak MiB"] = round(peak_rss_mib())
    return row


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["gemma-2-2b"], choices=["pythia-410m", "gemma-2-2b"])
    parser.add_argument("--dtypes", nargs="+", default=["bfloat16", "float32"], choices=["bfloat16", "float32"])
    parser.add_argument("--methods", nargs="+", default=["trace", "attribute"], choices=["trace", "attribute"])
    parser.add_argument("--vocab", type=int, default=50_000, help="BPE vocabulary trained for the prompt")
    parser.add_argument("--d-hidden", type=int, default=1024, help="transcoder width")
    parser.add_argument("--max-nodes", type=int, default=3, help="trace: nodes expanded")
    parser.add_argument("--budget", type=int, default=16, help="attribute: feature rows (max_feature_nodes)")
    parser.add_argument("--batch-size", type=int, default=8, help="attribute: rows per backward pass")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--one", type=Path, help=argparse.SUPPRESS)  # a single run, in a child process
    args = parser.parse_args()
    if args.one is not None:
        spec = json.loads(args.one.read_text())
        print(json.dumps(one_run(**spec)))
        return

    from bench_scale import prompts, tokenizer_for_prompts

    tokenizer = tokenizer_for_prompts(args.vocab)
    ids = tokenizer(prompts(1)[0], add_special_tokens=False)["input_ids"]
    settings = {k: getattr(args, k) for k in ("vocab", "d_hidden", "max_nodes", "budget", "batch_size", "threads")}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for model_name in args.models:
            for method in args.methods:
                for dtype in args.dtypes:
                    spec = Path(tmp) / "spec.json"
                    spec.write_text(json.dumps({"model_name": model_name, "dtype": dtype, "method": method,
                                                "ids": ids, "args": settings}))
                    child = subprocess.run([sys.executable, __file__, "--one", str(spec)], capture_output=True,
                                           text=True)  # a fresh process: the peak is this configuration's own
                    if child.returncode:
                        print(child.stderr[-3000:], file=sys.stderr)
                        raise SystemExit(f"{model_name} {method} {dtype} failed")
                    rows.append(json.loads(child.stdout.strip().splitlines()[-1]))
                    print(json.dumps(rows[-1]), flush=True)
    columns = ["model", "weights", "method", "tokens", "built MiB", "trace s", "peak MiB", "active features",
               "rows MiB", "gradients MiB"]
    print("| " + " | ".join(columns) + " |\n|" + "---|" * len(columns))
    for row in rows:
        print("| " + " | ".join(str(row.get(c, "-")) for c in columns) + " |")


if __name__ == "__main__":
    main()
