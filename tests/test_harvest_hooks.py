"""MLP hooks on tiny configs of every supported architecture family, causal LMs and BERT-style encoders."""

import pytest
import torch
from tiny_models import ARCHITECTURES, ENCODERS, tiny_model
from transformers import AutoModelForCausalLM, OPTConfig

from sctranscoder.harvest import MLPCapture, mlp_sites, replace_mlp


@pytest.fixture(scope="module")
def ids(tokenizer):
    torch.manual_seed(1)
    return torch.randint(0, len(tokenizer), (3, 17))


@pytest.fixture(scope="module", params=ARCHITECTURES + ENCODERS)
def model(request, tokenizer):
    return tiny_model(request.param, tokenizer, layers=3)


def final(output):
    """What the model ends with: a causal LM's logits, an encoder's last hidden states."""
    return output.logits if hasattr(output, "logits") else output.last_hidden_state


def test_captured_input_through_the_mlp_gives_the_captured_output(model, ids):
    block_inputs = {}
    sites = mlp_sites(model)
    handles = [site.block.register_forward_pre_hook(
        lambda m, args, kwargs, layer=layer: block_inputs.__setitem__(layer, args[0] if args else
                                                                       kwargs["hidden_states"]), with_kwargs=True)
        for layer, site in sites.items()]
    try:
        with MLPCapture(model) as capture, torch.no_grad():
            model(ids)
    finally:
        for handle in handles:
            handle.remove()
    assert capture.layers == [0, 1, 2]
    with torch.no_grad():
        for layer, site in sites.items():
            assert capture.inputs[layer].shape == (*ids.shape, model.config.hidden_size)
            assert torch.equal(site(capture.inputs[layer]), capture.outputs[layer])
            # parallel residual: the MLP reads the block input through its norm; sequential: it does not
            reads_block_input = torch.allclose(site.norm(block_inputs[layer]), capture.inputs[layer], atol=1e-6)
            assert reads_block_input == site.parallel_residual
    assert site.parallel_residual == bool(getattr(model.config, "use_parallel_residual", False))


def test_replacing_mlp_outputs_by_stored_values_reproduces_the_logits(model, ids):
    with torch.no_grad():
        with MLPCapture(model) as capture:
            clean = final(model(ids))
        with replace_mlp(model, dict(capture.outputs)):
            assert torch.equal(final(model(ids)), clean)
        sites = mlp_sites(model)
        with replace_mlp(model, {layer: site for layer, site in sites.items()}):
            assert torch.equal(final(model(ids)), clean)
        with replace_mlp(model, {-1: torch.zeros_like(capture.outputs[2])}):
            ablated = final(model(ids))
        assert not torch.allclose(ablated, clean)  # the hook is live
        assert torch.equal(final(model(ids)), clean)  # and gone afterwards


def test_bert_mlp_is_the_two_dense_layers_before_the_residual_add(tokenizer, ids):
    """The captured output is output.dense(gelu(intermediate.dense(x))), not the LayerNorm'd block output;
    a base model and one with a head find the same blocks."""
    from transformers import BertForMaskedLM

    model = tiny_model("bert", tokenizer, layers=2)
    layer = model.encoder.layer[1]
    with torch.no_grad(), MLPCapture(model, [1]) as capture:
        out = model(ids, output_hidden_states=True)
    x = capture.inputs[1]
    expected = layer.output.dense(torch.nn.functional.gelu(layer.intermediate.dense(x)))
    assert torch.allclose(capture.outputs[1], expected, atol=1e-6)
    # the block output is LayerNorm(mlp + attention output): the residual is added after the capture point
    assert torch.allclose(layer.output.LayerNorm(capture.outputs[1] + x), out.hidden_states[2], atol=1e-5)
    headed = BertForMaskedLM(model.config).eval()
    assert mlp_sites(headed)[1].block is headed.bert.encoder.layer[1]


def test_replacement_of_the_wrong_shape_is_refused(model, ids):
    with torch.no_grad(), replace_mlp(model, {0: torch.zeros(1, 2, 3)}):
        with pytest.raises(ValueError, match="Replacement for layer 0 has shape"):
            model(ids)


def test_unsupported_architecture_and_missing_layers(tokenizer):
    opt = AutoModelForCausalLM.from_config(OPTConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1,
                                                     ffn_dim=32, num_attention_heads=2, word_embed_proj_dim=16))
    with pytest.raises(ValueError, match="'opt' is not supported.*gemma2, gpt2, gpt_neox"):
        MLPCapture(opt)
    model = tiny_model("gpt2", tokenizer)
    with pytest.raises(IndexError, match="Layer 5 does not exist; the model has layers 0..1"):
        mlp_sites(model, [5])
    assert list(mlp_sites(model, [-1])) == [1]


def test_replacing_only_chosen_positions_keeps_the_others(model, ids):
    where = torch.zeros(ids.shape, dtype=torch.bool)
    where[:, 5:] = True
    with torch.no_grad():
        with MLPCapture(model) as clean:
            model(ids)
        last = clean.layers[-1]
        with replace_mlp(model, {last: torch.zeros_like(clean.outputs[last])}, where=lambda: where), \
                MLPCapture(model, [last]) as spliced:
            model(ids)
        out = spliced.outputs[last]
        assert torch.equal(out[:, :5], clean.outputs[last][:, :5])  # kept: the MLP's own output
        assert not out[:, 5:].any()  # chosen: replaced
        with pytest.raises(ValueError, match="positions mask has shape"), \
                replace_mlp(model, {last: lambda x: x}, where=torch.ones(2, 2, dtype=torch.bool)):
            model(ids)
