"""Circuits: exact attribution on every architecture, and a planted circuit recovered on both block layouts."""

import pytest
import torch
from planted_circuit import A, B, C, SEQUENCE, W, Y, exact_transcoders, planted_graph, planted_model
from tiny_models import ARCHITECTURES, tiny_model

from sctranscoder.circuits import LinearizedModel, Target, trace
from sctranscoder.tc import Transcoder, TranscoderConfig


def _bias_free(arch, tokenizer, d_hidden=64):
    """A tiny model and random ReLU transcoders with every bias zero, so attributions must sum to the value."""
    model = tiny_model(arch, tokenizer)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith("bias"):
                parameter.zero_()
    d = model.config.hidden_size
    transcoders = {layer: Transcoder(TranscoderConfig(d_in=d, d_out=d, d_hidden=d_hidden, activation="relu",
                                                      seed=layer)).eval() for layer in range(2)}
    return model, transcoders


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_attributions_are_complete(arch, tokenizer):
    model, transcoders = _bias_free(arch, tokenizer)
    ids = torch.randint(5, len(tokenizer), (12,), generator=torch.Generator().manual_seed(1))
    linear = LinearizedModel(model, transcoders, ids)
    with torch.no_grad():
        logits = model(ids[None]).logits[0, -1]
    softcap = getattr(model.config, "final_logit_softcapping", None)
    logit = Target.logit(7).scalar(linear)
    if softcap is None:  # the linearized model reproduces the real logit
        assert float(logit) == pytest.approx(float(logits[7]), abs=1e-4)
    for scalar in (logit, Target.of_feature(1, 3, position=5).scalar(linear)):
        attribution = linear.attribute(scalar)
        assert abs(attribution.bias) < 1e-4 * max(1.0, attribution.total_abs())
        assert attribution.total_abs() > 1e-3


@pytest.mark.parametrize("arch", ["gpt_neox", "gpt_neox_sequential", "llama"])
def test_mlp_reads_same_layer_attention_only_in_sequential_blocks(arch, tokenizer):
    model, transcoders = _bias_free(arch, tokenizer)
    linear = LinearizedModel(model, transcoders, torch.arange(5, 15))
    attribution = linear.attribute(linear.feature_value(1, 9, 0))
    same_layer = float(attribution.heads[1].abs().sum())
    earlier = float(attribution.heads[0].abs().sum())
    assert earlier > 1e-4
    if arch == "gpt_neox":
        assert same_layer == 0.0
    else:
        assert same_layer > 1e-4


def _scores(found, planted):
    hits = len(found & planted)
    return hits / max(len(found), 1), hits / len(planted)


@pytest.mark.parametrize("parallel", [True, False], ids=["parallel", "sequential"])
def test_planted_circuit_is_recovered(parallel):
    model = planted_model(parallel)
    graph = trace(model, exact_transcoders(model), torch.tensor(SEQUENCE), Target.logit(Y), max_nodes=30)
    nodes, edges = planted_graph(parallel)
    kinds = {"input", "feature", "head", "output"}
    found_nodes = {n for n, d in graph.nodes(data=True) if d["kind"] in kinds}
    found_edges = {(a, b) for a, b in graph.edges if a in found_nodes and b in found_nodes}
    node_precision, node_recall = _scores(found_nodes, nodes)
    edge_precision, edge_recall = _scores(found_edges, edges)
    assert min(node_precision, node_recall, edge_precision, edge_recall) >= 0.9, (found_nodes ^ nodes, found_edges ^ edges)
    # the transcoders are exact, so nothing is left to error nodes, and the distractor path is absent
    assert graph.graph["share_error"] == 0.0
    assert not any(graph.nodes[n].get("feature") == 2 and graph.nodes[n]["layer"] == 0 for n in graph)
    # signed attributions over the inputs and the bias add up to the logit
    total = sum(d["attribution"] for n, d in graph.nodes(data=True) if d["kind"] in ("input", "bias"))
    assert total == pytest.approx(graph.graph["value"], rel=1e-4)


def test_logit_difference_brings_in_the_contrast_path():
    model = planted_model(True)
    graph = trace(model, exact_transcoders(model), torch.tensor(SEQUENCE), Target.logit_difference(Y, [W]),
                  max_nodes=30)
    position = {token: SEQUENCE.index(token) for token in (A, B, C)}
    assert graph.nodes[f"feature:0:2@{position[C]}"]["attribution"] < 0  # C's path pushes towards W
    assert graph.nodes[f"feature:0:0@{position[A]}"]["attribution"] > 0


def test_inputs_of_a_group_merge(tokenizer):
    model = planted_model(True)
    groups = [None, "AB", None, None, "AB", None, None, None]
    graph = trace(model, exact_transcoders(model), torch.tensor(SEQUENCE), Target.logit(Y), groups=groups)
    assert graph.nodes["input:AB"]["positions"] == "1,4"
    assert graph.nodes["input:AB"]["label"] == "AB"


def test_bad_inputs_are_named():
    model = planted_model(True)
    with pytest.raises(ValueError, match="groups has 3 entries"):
        trace(model, exact_transcoders(model), torch.tensor(SEQUENCE), Target.logit(Y), groups=[None] * 3)
    with pytest.raises(IndexError, match="layers 0..2"):
        trace(model, {5: exact_transcoders(model)[0]}, torch.tensor(SEQUENCE), Target.logit(Y))
    with pytest.raises(ValueError, match="contrast token"):
        Target.logit_difference(Y, [Y])
