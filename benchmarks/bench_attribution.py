"""Complete attribution graphs: ours (``sctranscoder.circuits.attribute``) against circuit-tracer 0.5.0.

    python3.11 -m venv venv-ct && . venv-ct/bin/activate
    pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu
    pip install -e ".[bench-ct]"         # circuit-tracer 0.5.0 (it needs transformers<=4.57.3)
    python benchmarks/bench_attribution.py [--layers 4] [--d-model 64] [--tokens 16] [--repeats 3]

One tiny Llama (random weights, built locally from a ``LlamaConfig``; RMSNorm
gains random too, so the norms' gains are exercised), one ReLU transcoder per
layer (ours, ``sctranscoder.tc.Transcoder``; encoder biases set so each feature
fires on about 4% of tokens, decoders fitted by least squares so the errors are
not everything), one prompt of random token ids after a BOS token.

circuit-tracer runs its TransformerLens backend: the same weights, converted by
TransformerLens's own Llama converter, in a ``TransformerLensReplacementModel``
whose ``TranscoderSet`` holds ``SingleLayerTranscoder``s with our weights folded
in (``W_enc s_in``, ``b_enc - s_in W_enc b_in``, ``s_out W_dec``), reading at
``mlp.hook_in`` and writing at ``hook_mlp_out``. Its target is one logit (the
model's top next token) minus the mean logit; ours is that same direction as a
``Readout``. circuit-tracer zeroes position 0 (its features and error); the
aligned run switches that off (``zero_positions = slice(0, 0)``) so both graphs
have the same nodes, and a second run keeps its default and compares the nodes
both graphs have.

Each side runs in a fresh process (``--side``) so its peak resident memory is
its own, and writes its graph to an ``.npz``; the parent maps nodes by key
(features by layer, position and index; errors by layer and position; tokens by
position) and compares the adjacency matrices (rows: targets, columns: sources,
in both) and the nodes and edges kept by pruning at the same thresholds.
Times are the best of ``--repeats`` calls of each side's ``attribute`` on one
thread, complete graph (no node budget unless ``--max-feature-nodes``), the
same batch size.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _memory import peak_rss_mib  # noqa: E402

BOS = 0


def rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


# -- the shared setup: model, transcoders, prompt (both sides build it from the same seed) --------------------
def build(args):
    """The tiny Llama, our transcoders ``{layer: Transcoder}``, the prompt ids and the target token."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from sctranscoder.tc import Transcoder, TranscoderConfig

    torch.manual_seed(args.seed)
    config = LlamaConfig(vocab_size=args.vocab, hidden_size=args.d_model, intermediate_size=4 * args.d_model,
                         num_hidden_layers=args.layers, num_attention_heads=4, num_key_value_heads=4,
                         max_position_embeddings=64, rms_norm_eps=1e-5, tie_word_embeddings=False,
                         bos_token_id=BOS, eos_token_id=1, pad_token_id=2)
    config._attn_implementation = "eager"
    model = LlamaForCausalLM(config).eval()
    with torch.no_grad():  # random norm gains (initialized to ones), so a gain left out would show
        for name, parameter in model.named_parameters():
            if "norm" in name:
                parameter.copy_(1 + 0.2 * torch.randn_like(parameter))

    # MLP inputs and outputs on random sequences, to set the transcoders' scales and fit their decoders
    inputs, outputs = {}, {}
    def capture(layer):
        def hook(module, args, output):
            inputs.setdefault(layer, []).append(args[0].reshape(-1, args[0].shape[-1]))
            outputs.setdefault(layer, []).append(output.reshape(-1, output.shape[-1]))
        return hook

    hooks = [block.mlp.register_forward_hook(capture(i)) for i, block in enumerate(model.model.layers)]
    with torch.no_grad():
        sample = torch.randint(3, args.vocab, (64, args.tokens))
        sample[:, 0] = BOS
        model(sample)
    for hook in hooks:
        hook.remove()
    # position 0 (BOS) gives the same row in every sequence: left in, a 96% quantile could sit exactly on it, and
    # its features would sit exactly at zero, active or not by rounding
    later = (torch.arange(64 * args.tokens) % args.tokens) != 0
    transcoders = {}
    for layer in range(args.layers):
        x, y = torch.cat(inputs[layer])[later], torch.cat(outputs[layer])[later]
        tc = Transcoder(TranscoderConfig(d_in=args.d_model, d_out=args.d_model, d_hidden=args.d_hidden,
                                         activation="relu", seed=args.seed + layer)).eval()
        with torch.no_grad():
            tc.b_in.copy_(x.mean(0))
            tc.input_scale.copy_((x - tc.b_in).pow(2).mean().rsqrt())
            tc.b_dec.copy_(y.mean(0))
            tc.output_scale.copy_((y - tc.b_dec).pow(2).mean().sqrt())
            pre = tc.normalized_input(x) @ tc.W_enc.T
            tc.b_enc.copy_(-torch.quantile(pre, 0.96, dim=0))  # each feature fires on ~4% of tokens
            features = tc.encode(x)
            target = (y - tc.b_dec) / tc.output_scale
            gram = features.T @ features + 1e-3 * torch.eye(args.d_hidden)
            tc.W_dec.copy_(torch.linalg.solve(gram, features.T @ target))
        transcoders[layer] = tc
    generator = torch.Generator().manual_seed(args.seed + 1)
    prompt = torch.randint(3, args.vocab, (args.tokens,), generator=generator)
    prompt[0] = BOS
    with torch.no_grad():
        token = int(model(prompt[None]).logits[0, -1].argmax())
    return model, transcoders, prompt, token


def demeaned_direction(model, token: int) -> torch.Tensor:
    """circuit-tracer's logit target: the token's unembedding minus the mean unembedding (logit - mean logit)."""
    unembedding = model.lm_head.weight.detach().float()
    return unembedding[token] - unembedding.mean(0)


def timed(call, repeats: int):
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = call()
        times.append(time.perf_counter() - start)
    return result, times


# -- our side --------------------------------------------------------------------------------------------------
def run_ours(args) -> dict:
    from sctranscoder.circuits import Readout, attribute

    model, transcoders, prompt, token = build(args)
    target = Readout(positions=(len(prompt) - 1,), vectors=demeaned_direction(model, token)[None], constant=0.0,
                     label="logit - mean logit")
    before = rss_mib()
    graph, times = timed(lambda: attribute(model, transcoders, prompt, target, batch_size=args.batch_size,
                                           max_feature_nodes=args.max_feature_nodes, progress=False), args.repeats)
    pruned = graph.prune(args.node_threshold, args.edge_threshold)
    return dict(adjacency=graph.adjacency.numpy(), features=graph.features.numpy(), n_layers=graph.n_layers,
                n_tokens=graph.n_tokens, nodes=pruned.nodes.numpy(), edges=pruned.edges.numpy(),
                times=np.array(times), rss_before=before, peak=peak_rss_mib(), token=token)


# -- circuit-tracer's side -------------------------------------------------------------------------------------
def tokenizer(vocab: int):
    """A word-level tokenizer over ``t0 .. t{vocab-1}`` (ids 0-2 special), so circuit-tracer can decode ids."""
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import WhitespaceSplit
    from transformers import PreTrainedTokenizerFast

    words = {"<bos>": 0, "<eos>": 1, "<pad>": 2, **{f"t{i}": i for i in range(3, vocab)}}
    raw = Tokenizer(WordLevel(words, unk_token="<pad>"))
    raw.pre_tokenizer = WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=raw, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>")


def reference_model(model, transcoders, args, zero_bos: bool):
    from circuit_tracer.replacement_model.replacement_model_transformerlens import TransformerLensReplacementModel
    from circuit_tracer.transcoder.single_layer_transcoder import SingleLayerTranscoder, TranscoderSet
    from transformer_lens import HookedTransformerConfig
    from transformer_lens.pretrained.weight_conversions.llama import convert_llama_weights

    hf = model.config
    cfg = HookedTransformerConfig(
        d_model=hf.hidden_size, d_head=hf.hidden_size // hf.num_attention_heads, n_heads=hf.num_attention_heads,
        d_mlp=hf.intermediate_size, n_layers=hf.num_hidden_layers, n_ctx=hf.max_position_embeddings,
        eps=hf.rms_norm_eps, d_vocab=hf.vocab_size, act_fn=hf.hidden_act, normalization_type="RMS",
        positional_embedding_type="rotary", rotary_adjacent_pairs=False,
        rotary_dim=hf.hidden_size // hf.num_attention_heads, rotary_base=hf.rope_theta, final_rms=True,
        gated_mlp=True, original_architecture="LlamaForCausalLM", device="cpu", dtype=torch.float32,
        model_name="tiny-llama")
    reference = TransformerLensReplacementModel(cfg)
    # set after construction: TransformerLens's set_tokenizer would reload it from the hub with add_bos_token
    reference.tokenizer = tokenizer(hf.vocab_size)
    reference.load_and_process_state_dict(convert_llama_weights(model, cfg), fold_ln=False,
                                          center_writing_weights=False, center_unembed=False,
                                          fold_value_biases=False)
    theirs = {}
    for layer, tc in transcoders.items():
        slt = SingleLayerTranscoder(tc.cfg.d_in, tc.cfg.d_hidden, torch.nn.ReLU(), layer, device=torch.device("cpu"),
                                    dtype=torch.float32)
        with torch.no_grad():  # ours: relu(W_enc s_in (x - b_in) + b_enc) -> s_out W_dec f + b_dec
            slt.W_enc.copy_(tc.W_enc * tc.input_scale)
            slt.b_enc.copy_(tc.b_enc - (tc.W_enc * tc.input_scale) @ tc.b_in)
            slt.W_dec.copy_(tc.W_dec * tc.output_scale)
            slt.b_dec.copy_(tc.b_dec)
        theirs[layer] = slt
    reference._configure_replacement_model(TranscoderSet(theirs, feature_input_hook="mlp.hook_in",
                                                         feature_output_hook="hook_mlp_out"))
    if not zero_bos:
        reference.zero_positions = slice(0, 0)  # keep position 0's features and error, as ours does
    return reference


def run_reference(args) -> dict:
    from circuit_tracer import attribute
    from circuit_tracer.graph import prune_graph

    model, transcoders, prompt, token = build(args)
    reference = reference_model(model, transcoders, args, zero_bos=args.zero_bos)
    with torch.no_grad():
        logits = model(prompt[None]).logits
        gap = (reference(prompt[None]) - logits).abs().max() / logits.abs().max()
    before = rss_mib()
    graph, times = timed(lambda: attribute(prompt, reference, attribution_targets=torch.tensor([token]),
                                           batch_size=args.batch_size, max_feature_nodes=args.max_feature_nodes),
                         args.repeats)
    pruned = prune_graph(graph, args.node_threshold, args.edge_threshold)
    return dict(adjacency=graph.adjacency_matrix.numpy(), features=graph.active_features[graph.selected_features]
                .numpy(), n_layers=reference.cfg.n_layers, n_tokens=len(graph.input_tokens),
                nodes=pruned.node_mask.numpy(), edges=pruned.edge_mask.numpy(), times=np.array(times),
                rss_before=before, peak=peak_rss_mib(), token=token, logits_gap=float(gap))


# -- comparison ------------------------------------------------------------------------------------------------
def node_keys(result) -> list:
    """Both tools order nodes as features, errors (layer-major), tokens, output; keys make the order irrelevant."""
    n_layers, n_tokens = int(result["n_layers"]), int(result["n_tokens"])
    keys = [("feature", *map(int, f)) for f in result["features"]]
    keys += [("error", layer, position) for layer in range(n_layers) for position in range(n_tokens)]
    keys += [("token", position) for position in range(n_tokens)]
    keys += [("output",)]
    assert len(keys) == result["adjacency"].shape[0], (len(keys), result["adjacency"].shape)
    return keys


def adjacency_differences(a_o: np.ndarray, a_t: np.ndarray, prefix: str = "") -> dict:
    """Differences of two adjacency matrices on the same nodes, relative to the reference's scale."""
    a_o, a_t = a_o.astype(np.float64), a_t.astype(np.float64)
    diff = np.abs(a_o - a_t)
    row_scale = np.abs(a_t).max(1)
    rows = row_scale > 0
    big = np.abs(a_t) >= 1e-3 * np.abs(a_t).max()  # entries at least a thousandth of the largest
    return {
        f"{prefix}max_abs_diff_over_max_abs": float(diff.max() / np.abs(a_t).max()),
        f"{prefix}max_row_relative_diff": float((diff[rows].max(1) / row_scale[rows]).max()),
        f"{prefix}max_entry_relative_diff": float((diff[big] / np.abs(a_t[big])).max()),
        f"{prefix}zero_pattern_equal": bool(np.array_equal(a_o != 0, a_t != 0)),
    }


def compare(ours: dict, theirs: dict) -> dict:
    keys_o, keys_t = node_keys(ours), node_keys(theirs)
    index_o, set_t = {k: i for i, k in enumerate(keys_o)}, set(keys_t)
    common = [k for k in keys_t if k in index_o]
    io = np.array([index_o[k] for k in common])
    it = np.array([i for i, k in enumerate(keys_t) if k in index_o])
    row = {"nodes_ours": len(keys_o), "nodes_reference": len(keys_t), "nodes_common": len(common),
           "features_only_ours": sum(k[0] == "feature" and k not in set_t for k in keys_o),
           "features_only_reference": sum(k[0] == "feature" and k not in index_o for k in keys_t)}
    row.update(adjacency_differences(ours["adjacency"][np.ix_(io, io)], theirs["adjacency"][np.ix_(it, it)]))
    if row["features_only_ours"]:  # circuit-tracer zeroed position 0: its errors there are zero, ours are not
        keep = np.array([not (k[0] == "error" and k[2] == 0) for k in common])
        row.update(adjacency_differences(ours["adjacency"][np.ix_(io[keep], io[keep])],
                                         theirs["adjacency"][np.ix_(it[keep], it[keep])],
                                         prefix="less_position_0_errors_"))
    nodes_o, nodes_t = ours["nodes"][io], theirs["nodes"][it]
    edges_o = ours["edges"][np.ix_(io, io)] & nodes_o[:, None] & nodes_o[None, :]
    edges_t = theirs["edges"][np.ix_(it, it)] & nodes_t[:, None] & nodes_t[None, :]
    kinds = np.array([k[0] for k in common])
    row.update({
        "pruned_nodes_ours": int(nodes_o.sum()), "pruned_nodes_reference": int(nodes_t.sum()),
        "pruned_nodes_same": bool(np.array_equal(nodes_o, nodes_t)),
        "pruned_nodes_only_ours": int((nodes_o & ~nodes_t).sum()),
        "pruned_nodes_only_reference": int((nodes_t & ~nodes_o).sum()),
        "pruned_features_ours": int((nodes_o & (kinds == "feature")).sum()),
        "pruned_features_reference": int((nodes_t & (kinds == "feature")).sum()),
        "pruned_edges_ours": int(edges_o.sum()), "pruned_edges_reference": int(edges_t.sum()),
        "pruned_edges_same": bool(np.array_equal(edges_o, edges_t)),
    })
    return row


def run_side(side: str, args, extra: list, folder: str) -> dict:
    """One side in a fresh process; its graph comes back through ``folder/{side}.npz``."""
    path = os.path.join(folder, f"{side}{'-zeroed' if '--zero-bos' in extra else ''}.npz")
    if not (args.reuse and os.path.exists(path)):
        subprocess.run([sys.executable, os.path.abspath(__file__), "--side", side, "--out", path, *extra], check=True)
    with np.load(path) as data:
        return {k: data[k] for k in data.files}


def arguments(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--d-model", type=int, default=64)
    parser.add_argument("--d-hidden", type=int, default=512)
    parser.add_argument("--vocab", type=int, default=128)
    parser.add_argument("--tokens", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-feature-nodes", type=int, default=None,
                        help="a node budget on both sides (default: none, the complete graph)")
    parser.add_argument("--node-threshold", type=float, default=0.8)
    parser.add_argument("--edge-threshold", type=float, default=0.98)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--side", choices=["ours", "reference"], default=None, help=argparse.SUPPRESS)
    parser.add_argument("--zero-bos", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--keep", default=None, help="a folder to keep both sides' graphs in (.npz)")
    parser.add_argument("--reuse", action="store_true", help="compare the graphs already in --keep, run nothing")
    return parser.parse_args(argv)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    args = arguments(argv)
    torch.set_num_threads(args.threads)
    if args.side is not None:
        result = (run_ours if args.side == "ours" else run_reference)(args)
        np.savez(args.out, **result)
        return
    with tempfile.TemporaryDirectory() as scratch:
        folder = args.keep or scratch
        os.makedirs(folder, exist_ok=True)
        ours = run_side("ours", args, argv, folder)
        aligned = run_side("reference", args, argv, folder)
        default = run_side("reference", args, [*argv, "--zero-bos"], folder)
    assert int(ours["token"]) == int(aligned["token"])
    rows = {"aligned (position 0 kept)": compare(ours, aligned),
            "circuit-tracer default (position 0 zeroed)": compare(ours, default)}
    print(f"tiny Llama: {args.layers} layers, d_model {args.d_model}, {args.tokens} tokens, ReLU transcoders "
          f"d_hidden {args.d_hidden}, target logit[{int(ours['token'])}] - mean logit, batch {args.batch_size}, "
          f"{args.threads} thread(s), node budget {args.max_feature_nodes or 'none'}")
    print(f"TransformerLens vs Hugging Face forward, max |logit gap| / max |logit|: {float(aligned['logits_gap']):.1e}")
    for name, row in rows.items():
        print(f"\n== {name} ==")
        width = max(map(len, row))
        for key, value in row.items():
            print(f"  {key:<{width}}  {value:.2e}" if isinstance(value, float) else f"  {key:<{width}}  {value}")
    best_o, best_t = float(ours["times"].min()), float(aligned["times"].min())
    print("\n| side | best time (s) | all times (s) | peak RSS (MiB) | RSS growth in attribute (MiB) |")
    print("|---|---|---|---|---|")
    for name, result in (("ours", ours), ("circuit-tracer 0.5.0", aligned)):
        times = ", ".join(f"{t:.3f}" for t in result["times"])
        print(f"| {name} | {float(result['times'].min()):.3f} | {times} | {float(result['peak']):.0f} | "
              f"{float(result['peak']) - float(result['rss_before']):.0f} |")
    print(f"\ntime ratio ours / circuit-tracer: {best_o / best_t:.2f}")
    print(json.dumps({"ratio": best_o / best_t, **{k: v for k, v in rows.items()}}, default=float))


if __name__ == "__main__":
    main()
