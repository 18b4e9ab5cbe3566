"""Circuits: exact attribution on every architecture, and a planted circuit recovered on both block layouts."""

import pytest
import torch
from planted_circuit import SEQUENCE, A, B, C, W, Y, exact_transcoders, planted_graph, planted_model
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
        assert float(logit.detach()) == pytest.approx(float(logits[7]), abs=1e-4)
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


def test_faithfulness_matches_ablations_on_the_planted_circuit():
    from sctranscoder.circuits import faithfulness

    model = planted_model(True)
    transcoders = exact_transcoders(model)
    ids, target = torch.tensor(SEQUENCE), Target.logit(Y)
    graph = trace(model, transcoders, ids, target, max_nodes=30)
    result = faithfulness(graph, model, transcoders, ids, target)
    # switching off F2_X, the only feature writing Y, removes exactly its attribution
    last_feature = result["features"].index((2, len(SEQUENCE) - 1, 0))
    assert result["measured"][last_feature] == pytest.approx(result["predicted"][last_feature], rel=1e-4)
    assert result["correlation"] > 0.9
    assert result["target_value"] == pytest.approx(graph.graph["value"], rel=1e-5)
    # the circuit's features alone give the target at least what all features give (LayerNorm rescales it)
    assert result["circuit_fraction"] >= 1.0


def test_virtual_weights_are_the_residual_path_of_an_edge(tokenizer):
    """With attention switched off and adjacent layers, an edge is activation x virtual weight x norm scale."""
    from sctranscoder.circuits import virtual_weights

    model, transcoders = _bias_free("gpt_neox_sequential", tokenizer)
    with torch.no_grad():
        for block in model.gpt_neox.layers:
            block.attention.dense.weight.zero_()
    ids = torch.arange(5, 15)
    linear = LinearizedModel(model, transcoders, ids)
    weights = virtual_weights(model, transcoders, 0, 1)
    position = 6
    active = torch.nonzero(linear.activations[0][position]).flatten()
    downstream = int(torch.nonzero(linear.activations[1][position]).flatten()[0])
    attribution = linear.attribute(linear.feature_value(1, position, downstream))
    norm = model.gpt_neox.layers[1].post_attention_layernorm
    inputs = {}
    handle = norm.register_forward_pre_hook(lambda m, a: inputs.__setitem__("x", a[0][0, position]))
    with torch.no_grad():
        model(ids[None])
    handle.remove()
    x = inputs["x"]
    scale = torch.rsqrt((x - x.mean()).pow(2).mean() + norm.eps)
    expected = linear.activations[0][position, active] * weights[downstream, active] * scale
    torch.testing.assert_close(attribution.features[0][position, active], expected, rtol=1e-4, atol=1e-6)


def test_de_embedding_ranks_the_planted_token_first():
    from sctranscoder.circuits import de_embedding, top_groups

    model = planted_model(True)
    transcoders = exact_transcoders(model)
    scores, names = de_embedding(model, transcoders[0], 0)
    assert int(scores[0].argmax()) == A and int(scores[1].argmax()) == B
    grouped, group_names = de_embedding(model, transcoders[0], 0, {"A or C": [A, C], "B": [B]}, aggregate="max")
    assert top_groups(grouped, group_names, feature=0, n=1)[0][0] == "A or C"
    with pytest.raises(ValueError, match="aggregate"):
        de_embedding(model, transcoders[0], 0, {"B": [B]}, aggregate="median")


def test_graphs_merge_and_round_trip(tmp_path):
    import networkx as nx

    from sctranscoder.circuits import merge, read_json, write_graphml, write_json

    model = planted_model(False)
    transcoders = exact_transcoders(model)
    graph = trace(model, transcoders, torch.tensor(SEQUENCE), Target.logit(Y))
    merged = merge([graph, graph])
    assert "head:1:0" in merged and merged.nodes["head:1:0"]["count"] == 2
    # the two per-reader head nodes fold into one, with their attributions added
    heads = [d["attribution"] for n, d in graph.nodes(data=True) if d["kind"] == "head"]
    assert merged.nodes["head:1:0"]["attribution"] == pytest.approx(sum(heads))
    write_json(graph, tmp_path / "c.json")
    again = read_json(tmp_path / "c.json")
    assert set(again.nodes) == set(graph.nodes) and set(again.edges) == set(graph.edges)
    write_graphml(merged, tmp_path / "c.graphml")
    loaded = nx.read_graphml(tmp_path / "c.graphml")
    assert loaded.number_of_edges() == merged.number_of_edges()
    assert not list(tmp_path.glob(".tmp-*"))


def test_plot_draws_every_node(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import sctranscoder as sct

    model = planted_model(True)
    graph = trace(model, exact_transcoders(model), torch.tensor(SEQUENCE), Target.logit(Y),
                  labels=[f"tok{t}" for t in SEQUENCE])
    ax = sct.pl.circuit(graph, save=tmp_path / "circuit.png", show=False)
    assert len(ax.collections) == graph.number_of_nodes()
    assert {"tok1", "tok2"} <= {t.get_text() for t in ax.texts}
    assert (tmp_path / "circuit.png").stat().st_size > 1000
