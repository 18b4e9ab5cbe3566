"""A tiny GPT-NeoX whose weights are set by hand so that a known circuit computes one logit.

Tokens A and B (at positions 1 and 4) switch on layer-0 features F0_A and F0_B;
attention head 0 of layer 1 (uniform attention) carries their outputs to the
last position, where layer-2 feature F2_X reads them and writes the logit of
token Y. Token C drives a distractor path (F0_C -> head -> F2_Z -> logit of W)
that does not touch Y's logit. With sequential blocks, layer 1's MLP also reads
layer 1's attention, so feature F1_Q (reading A's signal) joins the circuit; with
GPT-NeoX's parallel residual it cannot, and stays silent.

Every vector written to the residual stream is ``onehot(i) - onehot(SINK)`` (zero
mean, so LayerNorm's centring is exact) and every read is a plain one-hot; the
MLPs are ReLU MLPs that ReLU transcoders reproduce exactly.
"""

import torch
from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

from sctranscoder.tc import Transcoder, TranscoderConfig

D, HIDDEN, HEAD_SIZE, SINK = 48, 8, 12, 47
A, B, C, Y, W = 1, 2, 3, 10, 11
SEQUENCE = [5, A, 6, C, B, 7, 8, 9]
U = {A: 16, B: 17, C: 18}      # layer-0 feature outputs
V = {A: 24, B: 25, C: 26}      # what head 1.0 writes at later positions
OUT = {Y: 40, W: 41}           # unembedding directions


def _write(i: int, gain: float = 1.0):
    vector = torch.zeros(D)
    vector[i], vector[SINK] = gain, -gain
    return vector


def planted_model(parallel: bool):
    config = GPTNeoXConfig(vocab_size=16, hidden_size=D, num_hidden_layers=3, num_attention_heads=4,
                           intermediate_size=HIDDEN, hidden_act="relu", use_parallel_residual=parallel,
                           max_position_embeddings=32, bos_token_id=0, eos_token_id=0, pad_token_id=0)
    config.tie_word_embeddings = False
    model = GPTNeoXForCausalLM(config).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.zero_()
        for name, module in model.named_modules():
            if isinstance(module, torch.nn.LayerNorm):
                module.weight.fill_(1.0)
        base = model.gpt_neox
        for token in range(16):
            base.embed_in.weight[token] = _write(token)
        layers = base.layers
        # layer 0: one feature per planted token
        for unit, token in enumerate((A, B, C)):
            layers[0].mlp.dense_h_to_4h.weight[unit, token] = 1.0
            layers[0].mlp.dense_h_to_4h.bias[unit] = -2.0
            layers[0].mlp.dense_4h_to_h.weight[:, unit] = _write(U[token], 2.0)
        # layer 1, head 0: uniform attention (queries and keys zero) copying U[t] to V[t]
        for slot, token in enumerate((A, B, C)):
            layers[1].attention.query_key_value.weight[2 * HEAD_SIZE + slot, U[token]] = 1.0  # head 0's values
            layers[1].attention.dense.weight[:, slot] = _write(V[token], 6.0)
        # layer 1's MLP reads A's signal after layer 1's attention: only sequential blocks let it
        layers[1].mlp.dense_h_to_4h.weight[0, V[A]] = 1.0
        layers[1].mlp.dense_h_to_4h.bias[0] = -0.5
        layers[1].mlp.dense_4h_to_h.weight[:, 0] = _write(OUT[Y], 1.0)
        # layer 2: F2_X reads A's and B's signals and writes Y; F2_Z reads C's and writes W
        layers[2].mlp.dense_h_to_4h.weight[0, V[A]] = 1.0
        layers[2].mlp.dense_h_to_4h.weight[0, V[B]] = 1.0
        layers[2].mlp.dense_h_to_4h.bias[0] = -0.5
        layers[2].mlp.dense_4h_to_h.weight[:, 0] = _write(OUT[Y], 2.0)
        layers[2].mlp.dense_h_to_4h.weight[1, V[C]] = 1.0
        layers[2].mlp.dense_h_to_4h.bias[1] = -0.5
        layers[2].mlp.dense_4h_to_h.weight[:, 1] = _write(OUT[W], 2.0)
        model.get_output_embeddings().weight[Y, OUT[Y]] = 1.0
        model.get_output_embeddings().weight[W, OUT[W]] = 1.0
    return model


def exact_transcoders(model) -> dict:
    """ReLU transcoders equal to each layer's MLP."""
    transcoders = {}
    for layer, block in enumerate(model.gpt_neox.layers):
        cfg = TranscoderConfig(d_in=D, d_out=D, d_hidden=HIDDEN, activation="relu")
        tc = Transcoder(cfg).eval()
        with torch.no_grad():
            tc.W_enc.copy_(block.mlp.dense_h_to_4h.weight)
            tc.b_enc.copy_(block.mlp.dense_h_to_4h.bias)
            tc.W_dec.copy_(block.mlp.dense_4h_to_h.weight.T)
            tc.b_dec.copy_(block.mlp.dense_4h_to_h.bias)
        transcoders[layer] = tc
    return transcoders


def planted_graph(parallel: bool):
    """The planted nodes and edges, named as :func:`sctranscoder.circuits.trace` names them."""
    last = len(SEQUENCE) - 1
    pos_a, pos_b = SEQUENCE.index(A), SEQUENCE.index(B)
    f0a, f0b = f"feature:0:0@{pos_a}", f"feature:0:1@{pos_b}"
    f2x = f"feature:2:0@{last}"
    head = f"head:1:0@{last}>{f2x}"  # heads are named by the node they write to
    edges = {(f"input:{pos_a}", f0a), (f"input:{pos_b}", f0b), (f0a, head), (f0b, head), (head, f2x),
             (f2x, "output")}
    if not parallel:
        f1q = f"feature:1:0@{last}"
        head_q = f"head:1:0@{last}>{f1q}"
        edges |= {(f0a, head_q), (head_q, f1q), (f1q, "output")}
    nodes = {n for edge in edges for n in edge}
    return nodes, edges
