"""One forward pass for every layer: the same transcoders as training layer by layer, exact resume, bf16
autocast, and two processes owning different layers."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, GPTNeoXConfig

from sctranscoder import harvest, tc

WORKER = Path(__file__).with_name("tc_live_worker.py")
LIVE = {"buffer_rows": 600, "documents_per_pass": 6}
# a random model on random tokens: far from converged in 40 steps, and not what these tests are about
pytestmark = pytest.mark.filterwarnings("ignore:The transcoder of layer:UserWarning")


def tiny_neox(seed=0):
    torch.manual_seed(seed)
    config = GPTNeoXConfig(hidden_size=32, num_hidden_layers=3, num_attention_heads=4, intermediate_size=128,
                           vocab_size=97, max_position_embeddings=128, use_parallel_residual=True)
    return AutoModelForCausalLM.from_config(config).eval()


def documents(n=40, seed=0):
    rng = np.random.default_rng(seed)
    ids = [rng.integers(1, 97, size=rng.integers(18, 40)) for _ in range(n)]

    def encode(start, stop):
        return harvest.Documents(ids[start:stop])

    return encode, n


def config(**overrides):
    values = {"d_in": 32, "d_out": 32, "d_hidden": 128, "activation": "topk", "k": 8, "batch_size": 64,
              "n_tokens": 64 * 30, "learning_rate": 3e-3, "warmup_steps": 5, "dead_window": 640}
    return tc.TranscoderConfig(**{**values, **overrides})


def same_weights(a, b, atol=0.0):
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values()):
        ok = torch.equal(p, q) if not atol else torch.allclose(p.float(), q.float(), rtol=0, atol=atol)
        assert ok, name


def per_layer(model, encode, n, layers, cfg):
    """Today's live path before the one-pass trainer: a stream, and a forward pass, per layer."""
    return {layer: tc.train(harvest.stream(model, encode, n, layer, batch_size=cfg.batch_size,
                                           buffer_rows=LIVE["buffer_rows"],
                                           documents_per_pass=LIVE["documents_per_pass"], seed=cfg.seed,
                                           max_batches=cfg.n_steps),
                            layer, cfg, progress=False) for layer in layers}


def test_one_pass_trains_the_transcoders_of_training_layer_by_layer():
    model, (encode, n), cfg = tiny_neox(), documents(), config()
    passes = []
    handle = model.gpt_neox.embed_in.register_forward_hook(lambda *_: passes.append(1))
    one = tc.train_live(model, encode, n, None, cfg, precision="float32", progress=False, **LIVE)
    one_pass = len(passes)
    passes.clear()
    each = per_layer(model, encode, n, [0, 1, 2], cfg)
    handle.remove()
    assert sorted(one) == [0, 1, 2]
    assert len(passes) >= 3 * one_pass - 3  # per layer: a forward pass each (less the unread tail of a stream)
    for layer in one:  # the same rows in the same order: the same weights
        same_weights(one[layer], each[layer])
        assert one[layer].metadata["metrics"]["steps"] == cfg.n_steps


def test_one_epoch_runs_each_document_through_the_model_once():
    """Training on one epoch's rows drains the buffer at the end instead of reading the next epoch's documents
    to keep it full (which cost a third more forward passes)."""
    model, (encode, n) = tiny_neox(), documents()
    rows = sum(len(encode(i, i + 1).input_ids[0]) for i in range(n))
    cfg = config(n_tokens=rows // 64 * 64)
    passes = []
    handle = model.gpt_neox.embed_in.register_forward_hook(lambda *_: passes.append(1))
    trained = tc.train_live(model, encode, n, [0, 2], cfg, precision="float32", progress=False, **LIVE)
    handle.remove()
    assert all(t.metadata["metrics"]["steps"] == rows // 64 for t in trained.values())
    assert len(passes) == -(-n // LIVE["documents_per_pass"])


def test_the_live_stream_gives_every_layer_the_same_tokens():
    model, (encode, n) = tiny_neox(), documents()
    batch = next(harvest.stream_layers(model, encode, n, [0, 2], batch_size=64, **LIVE))
    alone = next(harvest.stream(model, encode, n, 2, batch_size=64, **LIVE))
    assert torch.equal(batch[2][0], alone[0]) and torch.equal(batch[2][1], alone[1])
    # the two layers' rows are the same tokens: layer 0's MLP input is the (normed) embedding of those tokens
    assert batch[0][0].shape == batch[2][0].shape == (64, 32)


def test_one_pass_resumes_to_the_weights_of_an_uninterrupted_run(tmp_path):
    model, (encode, n), cfg = tiny_neox(), documents(), config(n_tokens=64 * 50)
    straight = tc.train_live(model, encode, n, [0, 2], cfg, out_dir=tmp_path / "straight", checkpoint_every=10,
                             progress=False, **LIVE)
    tc.train_live(model, encode, n, [0, 2], cfg, out_dir=tmp_path / "resumed", checkpoint_every=10,
                  stop_after=23, progress=False, **LIVE)
    assert (tmp_path / "resumed" / "layer2" / "checkpoint.safetensors").exists()
    # a crash between two layers' checkpoints: layer 0 one checkpoint behind layer 2
    (tmp_path / "resumed" / "layer0" / "checkpoint.safetensors").unlink()
    tc.train_live(model, encode, n, [0], cfg, out_dir=tmp_path / "resumed", checkpoint_every=10, stop_after=10,
                  progress=False, **LIVE)
    passes = []
    handle = model.gpt_neox.embed_in.register_forward_hook(lambda *_: passes.append(1))
    resumed = tc.train_live(model, encode, n, [0, 2], cfg, out_dir=tmp_path / "resumed", checkpoint_every=10,
                            progress=False, **LIVE)
    handle.remove()
    for layer in (0, 2):
        same_weights(resumed[layer], straight[layer])
        assert not (tmp_path / "resumed" / f"layer{layer}" / "checkpoint.safetensors").exists()
    again = tc.train_live(model, encode, n, [0, 2], cfg, out_dir=tmp_path / "resumed", progress=False, **LIVE)
    same_weights(again[2], straight[2])  # finished: loaded, not trained again


def test_bf16_autocast_keeps_float32_weights_and_close_fvu():
    model, (encode, n), cfg = tiny_neox(), documents(), config()
    full = tc.train_live(model, encode, n, [1], cfg, precision="float32", progress=False, **LIVE)[1]
    half = tc.train_live(model, encode, n, [1], cfg, precision="bfloat16", progress=False, **LIVE)[1]
    assert half.W_enc.dtype == torch.float32 and not torch.equal(half.W_enc, full.W_enc)
    fvu_full = full.metadata["metrics"]["final"]["fvu"]
    fvu_half = half.metadata["metrics"]["final"]["fvu"]
    assert abs(fvu_half - fvu_full) < 0.05 + 0.1 * fvu_full
    with pytest.raises(ValueError, match="precision='half' must be"):
        tc.resolve_precision("half", "cpu")
    assert tc.resolve_precision("auto", "cpu") is None


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_owning_layers_train_the_transcoders_of_one(tmp_path):
    # one thread, as torchrun gives each process, so the two runs sum the same way where their inputs agree
    one = subprocess.run([sys.executable, str(WORKER), str(tmp_path / "one")], capture_output=True, text=True,
                         timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert one.returncode == 0, one.stderr
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
                          str(_free_port()), str(WORKER), str(tmp_path / "two")], capture_output=True, text=True,
                         timeout=300)
    assert two.returncode == 0, two.stderr
    # each process runs half of every pass's documents (padded to their own longest) and the owner of a layer
    # trains it on the same rows in the same order. Layer 0 reads embeddings, equal to the bit: so are its
    # weights. Deeper rows differ by ~5e-7 (other padding, other summation order); a TopK choice that flips on
    # such a difference moves some weights by ~1e-3 over 30 steps. Stated tolerance: weights within 1e-2,
    # final FVU within 1e-4.
    for layer in (0, 1, 2):
        two, one = tc.load(tmp_path / "two" / f"layer{layer}"), tc.load(tmp_path / "one" / f"layer{layer}")
        same_weights(two, one, atol=0.0 if layer == 0 else 1e-2)
        assert abs(two.metadata["metrics"]["final"]["fvu"] - one.metadata["metrics"]["final"]["fvu"]) < 1e-4
