"""The parts most likely to break at real C2S shape, on tiny models: gene spans under a ~50k-vocabulary
byte-level BPE trained as Pythia's was (English text, where gene names are rare), prompts at the context length,
and Gemma-2's soft-capping and post-norms in harvest and circuits."""

import sysconfig
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, Gemma2Config, GPT2Config, GPTNeoXConfig

import sctranscoder as sct
from sctranscoder import harvest
from sctranscoder.circuits import LinearizedModel, Target, trace
from sctranscoder.tc import Transcoder, TranscoderConfig


def english_text(limit=9_000_000):
    """English prose and code: the Python standard library's sources (no download)."""
    texts, size = [], 0
    for path in sorted(Path(sysconfig.get_paths()["stdlib"]).rglob("*.py")):
        try:
            texts.append(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, OSError):
            continue
        size += len(texts[-1])
        if size >= limit:
            break
    return texts


@pytest.fixture(scope="module")
def big_bpe(pbmc_template):
    """A byte-level BPE of about 50k tokens, learned mostly on English: gene names appear once each, so most are
    split into several subwords, as in Pythia's tokenizer."""
    genes = list(pbmc_template.raw.var_names) if pbmc_template.raw is not None else list(pbmc_template.var_names)
    texts = english_text() + [" ".join(genes[i : i + 40]) for i in range(0, len(genes), 40)]
    return sct.models.train_tokenizer(texts, kind="byte_bpe", vocab_size=50_000)


def c2s(tokenizer, arch="gpt2", positions=2048):
    torch.manual_seed(0)
    ids = {"vocab_size": len(tokenizer), "bos_token_id": tokenizer.bos_token_id,
           "eos_token_id": tokenizer.eos_token_id, "pad_token_id": tokenizer.pad_token_id}
    config = GPT2Config(n_embd=16, n_layer=1, n_head=2, n_positions=positions, **ids)
    return sct.models.C2SModel(AutoModelForCausalLM.from_config(config).eval(), tokenizer, "tiny", {})


def test_gene_spans_of_200_gene_prompts_under_a_50k_bpe(big_bpe, pbmc_template):
    assert len(big_bpe) > 45_000
    cells = pbmc_template[:12].copy()
    encoded = sct.tl.encode_cells(cells, c2s(big_bpe), n_genes=200, label_key="bulk_labels", progress=False)
    several = 0
    for i in range(len(encoded)):
        ids, token_gene = encoded.input_ids[i], encoded.token_gene[i]
        genes = encoded.genes[encoded.span_ids[i]]
        assert 150 < len(genes) <= 200  # pbmc68k_reduced's 765 genes: a few cells express fewer than 200
        assert set(np.unique(token_gene[token_gene >= 0])) == set(range(len(genes)))
        for g, gene in enumerate(genes):
            tokens = np.flatnonzero(token_gene == g)
            assert (np.diff(tokens) == 1).all()  # one contiguous span per gene
            assert big_bpe.decode(ids[tokens]).strip() == gene
            several += tokens.size > 1
    assert several > 0.3 * sum(len(s) for s in encoded.span_ids)  # most gene names are several tokens, as in Pythia's vocabulary
    assert 350 < np.mean([len(ids) for ids in encoded.input_ids]) < 1200


def test_prompts_longer_than_the_context_are_refused_with_the_genes_that_fit(big_bpe, pbmc_template, caplog):
    cells = pbmc_template[:6].copy()
    longest = max(len(ids) for ids in sct.tl.encode_cells(cells, c2s(big_bpe), n_genes=200,
                                                          progress=False).input_ids)
    at_limit = c2s(big_bpe, positions=longest)  # GPT-2's learned positions: one more token would be an index error
    encoded = sct.tl.encode_cells(cells, at_limit, n_genes=200, progress=False)
    store = sct.tl.harvest(cells, at_limit, encoded=encoded, dtype="float32", progress=False)
    assert len(store) == sum(len(ids) for ids in encoded.input_ids)
    short = c2s(big_bpe, positions=longest - 1)
    with pytest.raises(ValueError, match="longer than the model's context of.*learned positions stop") as error:
        sct.tl.encode_cells(cells, short, n_genes=200, progress=False)
    fits = int(str(error.value).split("pass n_genes=")[1].split()[0])
    assert 150 < fits < 200
    encoded = sct.tl.encode_cells(cells, short, n_genes=fits, progress=False)  # the advice works
    assert max(len(ids) for ids in encoded.input_ids) <= longest - 1
    # rotary positions (GPT-NeoX) run past the context: a warning with the same advice, not an error
    torch.manual_seed(0)
    neox = GPTNeoXConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                         vocab_size=len(big_bpe), max_position_embeddings=longest - 1)
    rotary = sct.models.C2SModel(AutoModelForCausalLM.from_config(neox).eval(), big_bpe, "rotary", {})
    with caplog.at_level("WARNING", logger="sctranscoder.prompt._context"):
        encoded = sct.tl.encode_cells(cells, rotary, n_genes=200, progress=False)
    assert f"pass n_genes={fits} or fewer" in caplog.text and "rotary positions run past it" in caplog.text
    assert max(len(ids) for ids in encoded.input_ids) == longest


@pytest.fixture(scope="module")
def capped_gemma(tokenizer):
    """A tiny Gemma-2 whose soft-caps bite (attention scores and logits far past the caps), with post-norms."""
    torch.manual_seed(0)
    config = Gemma2Config(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                          head_dim=16, intermediate_size=128, vocab_size=len(tokenizer), max_position_embeddings=256,
                          attn_logit_softcapping=1.0, final_logit_softcapping=2.0, query_pre_attn_scalar=16,
                          sliding_window=8, pad_token_id=tokenizer.pad_token_id)
    config._attn_implementation = "eager"
    model = AutoModelForCausalLM.from_config(config).eval()
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.q_proj.weight.mul_(6)
            layer.self_attn.k_proj.weight.mul_(6)
            layer.post_feedforward_layernorm.weight.fill_(1.5)  # a post-norm that is not the identity
        model.lm_head.weight.mul_(20)
    return model


def test_gemma2_caps_bite_and_harvest_reads_the_post_normed_mlp(capped_gemma):
    model = capped_gemma
    ids = torch.randint(5, model.config.vocab_size, (2, 20), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        logits = model(ids).logits
        for layer in model.model.layers:
            layer.self_attn.attn_logit_softcapping = None
        uncapped = model(ids).logits
        for layer in model.model.layers:
            layer.self_attn.attn_logit_softcapping = 1.0
    assert logits.abs().max() <= 2.0 and not torch.allclose(logits, uncapped, atol=1e-2)  # both caps bite
    store = harvest.MemoryStore([0, 1], {0: 64, 1: 64}, {0: 64, 1: 64}, dtype="float32")
    harvest.harvest(model, lambda a, b: harvest.Documents([row.numpy() for row in ids[a:b]]), 2, store,
                    dtype="float32", drop_special=False, progress=False)
    sites = harvest.mlp_sites(model)
    for layer in (0, 1):
        x, y = store.read(layer)
        block = sites[layer].block
        with torch.no_grad():  # "the MLP" a Gemma-2 transcoder replaces ends with its post-feedforward norm
            assert torch.allclose(block.post_feedforward_layernorm(block.mlp(x)), y, atol=1e-5)
            assert not torch.allclose(block.mlp(x), y, atol=1e-2)
    with torch.no_grad(), harvest.replace_mlp(model, {layer: sites[layer] for layer in (0, 1)}):
        assert torch.equal(model(ids).logits, logits)


def test_gemma2_circuits_are_exact_under_biting_caps(capped_gemma):
    model = capped_gemma
    d = model.config.hidden_size
    with torch.no_grad():
        saved = {n: p.clone() for n, p in model.named_parameters() if n.endswith("bias")}
    transcoders = {layer: Transcoder(TranscoderConfig(d_in=d, d_out=d, d_hidden=64, activation="relu",
                                                      seed=layer)).eval() for layer in range(2)}
    ids = torch.randint(5, model.config.vocab_size, (14,), generator=torch.Generator().manual_seed(2))
    linear = LinearizedModel(model, transcoders, ids)
    with torch.no_grad():
        capped = model(ids[None]).logits[0, -1, 7]
    cap = model.config.final_logit_softcapping
    logit = Target.logit(7).scalar(linear)
    # the target is the logit before the final cap, which the model's capped logit pins down exactly
    assert float(cap * torch.tanh(logit.detach() / cap)) == pytest.approx(float(capped), abs=1e-4)
    attribution = linear.attribute(logit)
    # frozen (capped) attention patterns and norm scales: attributions sum to the value, nothing left to bias
    assert attribution.total_abs() > 1e-3
    assert abs(attribution.bias) < 1e-3 * max(1.0, attribution.total_abs())
    graph = trace(model, transcoders, ids, Target.logit(7), max_nodes=6)
    assert graph.number_of_nodes() > 1 and any(d["kind"] == "feature" for _, d in graph.nodes(data=True))
    assert not saved or all(torch.equal(p, saved[n]) for n, p in model.named_parameters() if n in saved)


def test_gemma2_circuits_on_bf16_weights_match_float32(capped_gemma):
    """A bf16 model is traced as it is (no float32 copy): its attribution graph, accumulated in float32, has
    the features and edges of the float32 model's to within bf16's rounding."""
    import copy

    from sctranscoder.circuits import attribute

    d = capped_gemma.config.hidden_size
    transcoders = {layer: Transcoder(TranscoderConfig(d_in=d, d_out=d, d_hidden=32, activation="relu",
                                                      seed=layer)).eval() for layer in range(2)}
    ids = torch.randint(5, capped_gemma.config.vocab_size, (10,), generator=torch.Generator().manual_seed(2))
    bf16 = copy.deepcopy(capped_gemma).to(torch.bfloat16)
    graphs = [attribute(m, transcoders, ids, Target.logit(7), max_feature_nodes=None, batch_size=32,
                        progress=False) for m in (capped_gemma, bf16)]
    assert next(bf16.parameters()).dtype == torch.bfloat16  # traced in place, not converted
    assert graphs[1].adjacency.dtype == torch.float32
    assert graphs[1].value == pytest.approx(graphs[0].value, rel=0.02, abs=0.02)
    # a feature at the edge of firing may flip under bf16 rounding; all others are the same nodes
    index = [{tuple(f): i for i, f in enumerate(g.features.tolist())} for g in graphs]
    common = sorted(set(index[0]) & set(index[1]))
    assert len(common) >= 0.97 * max(map(len, index))
    rows = [g.adjacency[[ix[f] for f in common]][:, [ix[f] for f in common]] for g, ix in zip(graphs, index)]
    outputs = [g.adjacency[-1, [ix[f] for f in common]] for g, ix in zip(graphs, index)]
    for full, half in (rows, outputs):
        gap = float((full - half).abs().max() / full.abs().max())
        assert 0 < gap < 0.05  # bf16 did run (not a float32 copy), and rounding moved no edge by much
