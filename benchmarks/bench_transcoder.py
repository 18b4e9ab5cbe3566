"""Transcoder training throughput vs SAELens's standard SAE trainer step, and TopK sparse vs dense decoding.

    pip install -e ".[bench-tc]"        # sae-lens, for this benchmark only
    python benchmarks/bench_transcoder.py [--steps 5] [--repeats 3]

Training: the same shapes and architecture on both sides (ReLU features with a
decoder-norm weighted L1 penalty, d_in 512, d_hidden 8192, batch 4096, float32,
CPU), on the same pre-generated batches. SAELens: a StandardTrainingSAE driven
exactly as SAETrainer._train_step drives it (training_forward_pass, firing
statistics, backward, gradient clipping, Adam step, scheduler step). Ours:
``sct.tc.train`` over the same batches (its whole loop: dead-feature counters,
learning-rate schedule, running metrics). Tokens per second, best of
--repeats, sides interleaved.

Decoding: a TopK transcoder's decode from (indices, values) against the dense
decode of the same activations at k=32, d_hidden=16384, d_out 512, 4096 rows,
forward and forward+backward.
"""

from __future__ import annotations

import argparse
import resource
import time

import torch

from sctranscoder import tc

D_IN, D_HIDDEN, BATCH = 512, 8192, 4096


def saelens_steps(batches):
    from sae_lens import StandardTrainingSAE, StandardTrainingSAEConfig
    from sae_lens.saes.sae import TrainStepInput

    torch.manual_seed(0)
    sae = StandardTrainingSAE(StandardTrainingSAEConfig(d_in=D_IN, d_sae=D_HIDDEN, l1_coefficient=5.0))
    optimizer = torch.optim.Adam(sae.parameters(), lr=2e-4)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    since_fired = torch.zeros(D_HIDDEN)
    start = time.perf_counter()
    for step, x in enumerate(batches):
        sae.train()
        out = sae.training_forward_pass(TrainStepInput(sae_in=x, coefficients={"l1": 5.0},
                                                       dead_neuron_mask=since_fired > 1000,
                                                       n_training_steps=step, is_logging_step=False))
        with torch.no_grad():
            did_fire = out.feature_acts.bool().float().sum(-2).bool()
            since_fired += 1
            since_fired[did_fire] = 0
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(sae.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad()
        scheduler.step()
    return time.perf_counter() - start


def our_steps(batches):
    cfg = tc.TranscoderConfig(d_in=D_IN, d_out=D_IN, d_hidden=D_HIDDEN, activation="relu", revival="none",
                              batch_size=BATCH, n_tokens=BATCH * len(batches), warmup_steps=1, learning_rate=2e-4)
    start = time.perf_counter()
    tc.train(((x, x) for x in batches), 0, cfg, progress=False)
    return time.perf_counter() - start


def decode_timings(repeats: int, k: int = 32, d_hidden: int = 16_384, rows: int = 4096):
    cfg = tc.TranscoderConfig(d_in=D_IN, d_out=D_IN, d_hidden=d_hidden, k=k, activation="topk")
    transcoder = tc.Transcoder(cfg)
    x = torch.randn(rows, D_IN)
    with torch.no_grad():
        indices, values = transcoder.encode_sparse(x)
        dense = torch.zeros(rows, d_hidden).scatter_(-1, indices, values)
    results = {}
    for backward in (False, True):
        best = {"dense": float("inf"), "sparse": float("inf")}
        for _ in range(repeats):
            for side in best:
                v = (dense if side == "dense" else values).clone().requires_grad_(backward)
                start = time.perf_counter()
                with torch.set_grad_enabled(backward):
                    out = transcoder.decode(v) if side == "dense" else transcoder.decode_sparse(indices, v)
                    if backward:
                        out.sum().backward()
                best[side] = min(best[side], time.perf_counter() - start)
                transcoder.zero_grad()
        results["forward+backward" if backward else "forward"] = best
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    generator = torch.Generator().manual_seed(0)
    batches = [torch.randn(BATCH, D_IN, generator=generator) for _ in range(args.steps)]
    saelens_steps(batches[:1]), our_steps(batches[:1])  # warm up both
    best = {"SAELens": float("inf"), "sctranscoder": float("inf")}
    for _ in range(args.repeats):
        best["SAELens"] = min(best["SAELens"], saelens_steps(batches))
        best["sctranscoder"] = min(best["sctranscoder"], our_steps(batches))
    tokens = BATCH * args.steps
    print(f"training, ReLU + L1, d_in {D_IN}, d_hidden {D_HIDDEN}, batch {BATCH}, {args.steps} steps, "
          f"{torch.get_num_threads()} threads, best of {args.repeats}:")
    for side, seconds in best.items():
        print(f"  {side:13s} {tokens / seconds:9,.0f} tokens/s ({seconds / args.steps:.3f} s/step)")
    print(f"  sctranscoder / SAELens: {best['SAELens'] / best['sctranscoder']:.2f}x throughput")
    for phase, timing in decode_timings(args.repeats).items():
        print(f"TopK decode k=32, d_hidden 16384, 4096 rows, {phase}: dense {timing['dense'] * 1e3:.1f} ms, "
              f"sparse {timing['sparse'] * 1e3:.1f} ms, {timing['dense'] / timing['sparse']:.1f}x")
    print(f"peak RSS of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MiB")


if __name__ == "__main__":
    main()
