"""Live transcoder training of every layer: one shared forward pass (sct.tc.train_live) vs one pass per layer,
against one bare forward pass over the same tokens.

    python benchmarks/bench_live.py [--docs 32] [--repeats 3] [--batch-size 2048] [--device cpu] [--bf16]

The model is GPT-NeoX shaped like Pythia-70m (6 layers, d_model 512, 8 heads, d_mlp 2048, vocabulary 50,304,
rotary 25%, parallel residual), random weights, built from its config (nothing is downloaded); documents are
random token ids of C2S prompt length (a 200-gene prompt is about 700 tokens). Every side sees the same tokens:
training is one epoch (``n_tokens`` = the documents' tokens, rounded down to whole batches), TopK k=32,
d_hidden 4096. Sides, each run once in a fresh process (its time and peak RSS):

- ``forward``: ``model(input_ids, attention_mask)`` over the documents, ``--docs-per-pass`` at a time, no grad;
- ``body``: the same without the LM head (the transformer body alone);
- ``per_layer``: for each layer, a live stream of that layer (``sct.harvest.stream``) and its trainer: the
  model runs once per layer (``train_transcoders(live=True)`` before the one-pass trainer);
- ``one_pass``: ``sct.tc.train_live``: one forward pass feeds all six trainers;
- ``one_pass_bf16`` (``--bf16``): the same under bf16 autocast (float32 master weights).

Timings are noisy on a shared machine, so the forward, body and one-pass sides run ``--repeats`` rounds (in a
rotated order) and each ratio is the median of the rounds' own ratios; per_layer runs once. Besides wall time
each side's CPU time (all its threads, ``time.process_time``) is compared: on a CPU shared with other jobs it
counts the work done rather than the waiting (on a GPU only the wall time means anything). It prints each side's
time over the bare forward's, the one-pass side's time split (forward and buffers vs
transcoder steps), and each layer's FVU on held-out documents for every trained side. ``--device cuda`` runs
the same on a GPU (timings synchronize the device).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import tempfile
import time
from pathlib import Path

import numpy as np
from _memory import peak_rss_mib  # benchmarks/ is on the path when a script runs

SIDES = ("forward", "body", "per_layer", "one_pass")


def build_model(device):
    import torch
    from transformers import AutoModelForCausalLM, GPTNeoXConfig

    torch.manual_seed(0)
    config = GPTNeoXConfig(hidden_size=512, num_hidden_layers=6, num_attention_heads=8, intermediate_size=2048,
                           vocab_size=50_304, max_position_embeddings=2048, rotary_pct=0.25,
                           use_parallel_residual=True)
    return AutoModelForCausalLM.from_config(config).to(device).eval()


def documents(n, length, seed=0):
    import numpy as np

    from sctranscoder.harvest import Documents

    rng = np.random.default_rng(seed)
    ids = [rng.integers(0, 50_304, size=int(length * rng.uniform(0.9, 1.1))) for _ in range(n)]
    return ids, lambda a, b: Documents(ids[a:b])


def transcoder_config(args, tokens):
    from sctranscoder.tc import TranscoderConfig

    return TranscoderConfig(d_in=512, d_out=512, d_hidden=args.d_hidden, k=32, batch_size=args.batch_size,
                            n_tokens=(tokens // args.batch_size) * args.batch_size, warmup_steps=2)


def _sync(device):
    import torch

    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def run_side(side, args, out_dir) -> dict:
    import torch

    from sctranscoder import harvest, tc
    from sctranscoder.harvest import pad_ids as _pad

    torch.manual_seed(0)
    model = build_model(args.device)
    ids, encode = documents(args.docs, args.doc_tokens)
    tokens = sum(len(i) for i in ids)
    cfg = transcoder_config(args, tokens)
    live = {"buffer_rows": args.buffer_rows, "documents_per_pass": args.docs_per_pass}
    split = {}
    with torch.no_grad():  # warm-up: the libraries' lazy imports and first-call setup are not what is timed
        model(input_ids=torch.ones((1, 8), dtype=torch.long, device=args.device))
    import safetensors.torch  # noqa: F401  (saving transcoders, on the training sides)
    _sync(args.device)
    start, cpu_start = time.perf_counter(), time.process_time()
    if side in ("forward", "body"):
        runner = model.get_decoder() if side == "body" else model
        with torch.no_grad():
            for b in range(0, len(ids), args.docs_per_pass):
                batch, mask = _pad(ids[b : b + args.docs_per_pass], args.device)
                runner(input_ids=batch, attention_mask=mask, use_cache=False)
    elif side == "per_layer":
        for layer in range(6):
            source = harvest.stream(model, encode, len(ids), layer, batch_size=cfg.batch_size, seed=cfg.seed,
                                    max_batches=cfg.n_tokens // cfg.batch_size, **live)
            tc.train(source, layer, cfg, out_dir=Path(out_dir) / f"layer{layer}", device=args.device,
                     progress=False, checkpoint_every=10**9)
    else:
        stepping = [0.0]
        original = tc.TranscoderTrainer.step

        def timed_step(self, x, y):  # time in transcoder steps; the rest is the forward pass and the buffers
            _sync(args.device)
            began = time.perf_counter()
            out = original(self, x, y)
            _sync(args.device)
            stepping[0] += time.perf_counter() - began
            return out

        tc.TranscoderTrainer.step = timed_step
        tc.train_live(model, encode, len(ids), None, cfg, out_dir=out_dir, device=args.device,
                      precision="bfloat16" if side.endswith("bf16") else "float32", progress=False,
                      checkpoint_every=10**9, **live)
        split = {"steps_s": stepping[0]}
    _sync(args.device)
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    return {"seconds": elapsed, "cpu_seconds": cpu, "tokens": tokens, "peak_rss_mib": peak_rss_mib(), **split}


def _child(side, args, out_dir, queue):
    queue.put(run_side(side, args, out_dir))


def in_fresh_process(side, args, out_dir) -> dict:
    context = mp.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_child, args=(side, args, out_dir, queue))
    process.start()
    result = queue.get()
    process.join()
    return result


def held_out_fvu(args, folders) -> dict:
    """Each side's per-layer FVU on documents no side trained on."""
    from sctranscoder import harvest, tc

    model = build_model(args.device)
    ids, encode = documents(args.eval_docs, args.doc_tokens, seed=1)
    store = harvest.MemoryStore(list(range(6)), {layer: 512 for layer in range(6)}, {layer: 512 for layer in range(6)},
                                dtype="float32")
    harvest.harvest(model, encode, len(ids), store, dtype="float32", progress=False)
    return {side: [tc.evaluate(tc.load(Path(folder) / f"layer{layer}", device=args.device),
                               store.batches(layer, 4096, shuffle=False))["fvu"] for layer in range(6)]
            for side, folder in folders.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=32)
    parser.add_argument("--doc-tokens", type=int, default=700)
    parser.add_argument("--docs-per-pass", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=2048)
    parser.add_argument("--buffer-rows", type=int, default=4096,
                        help="shuffle buffer rows per layer; small, so the stream forwards about one epoch")
    parser.add_argument("--d-hidden", type=int, default=4096)
    parser.add_argument("--eval-docs", type=int, default=4)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--bf16", action="store_true", help="also run the one-pass side under bf16 autocast")
    parser.add_argument("--sides", nargs="+", default=None, choices=[*SIDES, "one_pass_bf16"],
                        help="run only these sides (forward is always run: the ratios are to it)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="rounds of the forward, body and one-pass sides (each round in a rotated order; "
                             "per_layer runs in the first only); ratios are medians of each round's own ratios")
    args = parser.parse_args()
    sides = [*SIDES, "one_pass_bf16"] if args.bf16 else list(SIDES)
    if args.sides:
        sides = [s for s in sides if s in args.sides or s == "forward"] + [s for s in args.sides if s not in sides]
    rounds, folders = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            this = [s for s in sides if r == 0 or s != "per_layer"]
            this = this[r % len(this):] + this[: r % len(this)]  # no side always first (or last) on a drifting load
            rounds.append({})
            for side in this:
                folder = f"{tmp}/{side}{r}"
                folders.setdefault(side, folder)
                rounds[-1][side] = in_fresh_process(side, args, folder)
                print(f"  round {r + 1}: {side} done in {rounds[-1][side]['seconds']:.1f} s", flush=True)
        fvu = held_out_fvu(args, {s: f for s, f in folders.items() if s not in ("forward", "body")})
    tokens = rounds[0]["forward"]["tokens"]

    def median_of(side, value):
        return float(np.median([value(r) for r in rounds if side in r]))

    def over(side, base, key="seconds"):  # this round's side over its base (rounds without the side use round 1's)
        return median_of(base, lambda r: r.get(side, rounds[0][side])[key] / r[base][key])

    print(f"\nPythia-70m-shaped GPT-NeoX (random weights), {args.docs} documents, {tokens:,} tokens, device "
          f"{args.device}; TopK k=32, d_hidden {args.d_hidden}, batch {args.batch_size}, one epoch; "
          f"{args.repeats} rounds, medians")
    print(f"{'side':15s} {'seconds':>9s} {'x bare fwd':>11s} {'x body':>8s} {'tok/s':>9s} {'CPU s':>8s} "
          f"{'CPU x fwd':>10s} {'peak RSS MiB':>13s}")
    for side in sides:
        seconds = median_of(side, lambda r: r[side]["seconds"])
        body = over(side, "body") if "body" in sides else float("nan")
        print(f"{side:15s} {seconds:9.1f} {over(side, 'forward'):11.2f} {body:8.2f} {tokens / seconds:9,.0f} "
              f"{median_of(side, lambda r: r[side]['cpu_seconds']):8.1f} {over(side, 'forward', 'cpu_seconds'):10.2f} "
              f"{median_of(side, lambda r: r[side]['peak_rss_mib']):13,.0f}")
    for side in [s for s in sides if s.startswith("one_pass")]:
        steps = median_of(side, lambda r: r[side]["steps_s"])
        total = median_of(side, lambda r: r[side]["seconds"])
        print(f"{side}: transcoder steps {steps:.1f} s, forward pass and buffers {total - steps:.1f} s")
    print("\nspread over rounds (one pass over bare forward): " + ", ".join(
        f"{r['one_pass']['seconds'] / r['forward']['seconds']:.2f}" for r in rounds if "one_pass" in r))
    print("\nheld-out FVU per layer:")
    for side, values in fvu.items():
        print(f"  {side:15s} " + " ".join(f"{v:.4f}" for v in values))
    if "one_pass" in sides and "per_layer" in sides:
        print(f"\none pass / per layer: {rounds[0]['one_pass']['seconds'] / rounds[0]['per_layer']['seconds']:.2f}x "
              "the time (round 1)")


if __name__ == "__main__":
    main()
