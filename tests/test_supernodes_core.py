"""Supernode building blocks on hand-built cases: token identity, folding, grouping, set effects, controls."""

import networkx as nx
import numpy as np
import pandas as pd
import pytest
import torch
from planted_circuit import SEQUENCE, A, B, C, W, Y, exact_transcoders, planted_model

from sctranscoder import circuits as cc
from sctranscoder import genesets


def test_token_identity_r2_tells_a_token_reader_from_a_context_reader():
    rng = np.random.default_rng(0)
    n_prompts, length = 12, 30
    tokens = rng.integers(0, 15, size=(n_prompts, length))
    per_token = rng.normal(size=15) ** 2
    identity = per_token[tokens] + 0.01 * rng.normal(size=tokens.shape)
    context = np.repeat(rng.normal(size=(n_prompts, 1)), length, 1) + 0.1 * rng.normal(size=tokens.shape)
    constant = np.zeros(tokens.shape)
    values = np.stack([identity.ravel(), context.ravel(), constant.ravel()], 1)
    r2 = cc.token_identity_r2(values, tokens.ravel())
    assert r2[0] > 0.99
    assert r2[1] < 0.2
    assert np.isnan(r2[2])  # nothing to explain


def test_token_identity_ignores_tokens_seen_once():
    # every token once: nothing can be told apart from fitting each position exactly
    r2 = cc.token_identity_r2(np.arange(10.0)[:, None], np.arange(10))
    assert np.isnan(r2[0])


def test_layer0_features_of_a_parallel_residual_model_read_only_their_token():
    """GPT-NeoX's parallel residual: layer 0's MLP reads the embedding alone, so its features are token
    identity (R^2 1); a layer-2 feature reads what attention brought (the planted A and B signals)."""
    model = planted_model(True)
    transcoders = exact_transcoders(model)
    prompts = [SEQUENCE, [5, A, 6, 7, 8, 9, 6, B], [A, 5, 6, C, 7, 8, 9, B], [5, 6, 7, 8, 9, 6, 5, B]]
    values, tokens = cc.feature_activations(model, transcoders, prompts, [(0, 0), (0, 1), (2, 0)])
    r2 = cc.token_identity_r2(values, tokens)
    assert r2[0] == pytest.approx(1.0) and r2[1] == pytest.approx(1.0)
    assert r2[2] < 0.9  # the same token (B last) gives F2_X different values in different prompts


def _circuit_graph():
    graph = nx.DiGraph(n_tokens=4)
    graph.add_node("input:G1", kind="input", layer=-1, position=1, label="G1", positions="1", grouped=True,
                   section="gene", influence=0.5, attribution=0.5)
    graph.add_node("feature:0:7@1", kind="feature", layer=0, feature=7, position=1, label="L0/F7",
                   influence=0.4, attribution=0.4)
    graph.add_node("feature:0:7@2", kind="feature", layer=0, feature=7, position=2, label="L0/F7",
                   influence=0.1, attribution=0.1)
    graph.add_node("feature:1:3@3", kind="feature", layer=1, feature=3, position=3, label="L1/F3",
                   influence=0.3, attribution=0.3)
    graph.add_node("output", kind="output", layer=2, position=3, label="out", influence=1.0, attribution=1.0)
    graph.add_edge("input:G1", "feature:0:7@1", weight=1.0)
    graph.add_edge("feature:0:7@1", "feature:1:3@3", weight=0.6)
    graph.add_edge("feature:0:7@2", "feature:1:3@3", weight=0.2)
    graph.add_edge("feature:1:3@3", "output", weight=0.9)
    return graph


def test_folded_features_join_their_tokens_input_node():
    groups = ["template", "G1", "G2", "template"]
    sections = ["template", "gene", "gene", "template"]
    folded = cc.fold_features(_circuit_graph(), {(0, 7)}, groups, sections)
    assert not any(d["kind"] == "feature" and d["layer"] == 0 for _, d in folded.nodes(data=True))
    assert folded.edges["input:G1", "feature:1:3@3"]["weight"] == pytest.approx(0.6)
    assert folded.edges["input:G2", "feature:1:3@3"]["weight"] == pytest.approx(0.2)  # made for the fold
    assert folded.nodes["input:G1"]["folded"] == "L0/F7"
    assert folded.nodes["input:G1"]["attribution"] == pytest.approx(0.9)
    merged = cc.feature_circuit([_circuit_graph()] * 2, {(0, 7)}, [groups] * 2, [sections] * 2, ["c1", "c2"])
    assert merged.nodes["input:G1"]["folded"] == "L0/F7" and "feature:0:7" not in merged
    assert merged.nodes["feature:1:3"]["positions"] == "c1:3;c2:3"
    merged = cc.feature_circuit([_circuit_graph(), _circuit_graph()], (), None, None, ["c1", "c2"])
    assert merged.nodes["feature:0:7"]["positions"] == "c1:1,2;c2:1,2"
    assert merged.nodes["feature:0:7"]["n_positions"] == 2


def test_grouping_caps_the_number_of_modules_and_keeps_clear_groups_together():
    rng = np.random.default_rng(1)
    centres = rng.normal(size=(3, 20))
    profiles = np.concatenate([c + 0.05 * rng.normal(size=(5, 20)) for c in centres])
    labels = cc.cluster_profiles(profiles, max_groups=3)
    assert len(set(labels)) == 3
    assert all(len(set(labels[i * 5:(i + 1) * 5])) == 1 for i in range(3))
    assert len(set(cc.cluster_profiles(rng.normal(size=(40, 6)), max_groups=8))) <= 8


def _planted_graph():
    model = planted_model(True)
    transcoders = exact_transcoders(model)
    answers = [[Y], [W]]
    target, fed, _ = cc.answer_logprob(model, SEQUENCE, answers, 0)
    graph = cc.attribute(model, transcoders, torch.tensor(fed), target, max_feature_nodes=None, progress=False)
    return model, transcoders, answers, graph


def test_predicted_drop_of_a_set_counts_shared_paths_once():
    *_, graph = _planted_graph()
    last, pos_a, pos_b = len(SEQUENCE) - 1, SEQUENCE.index(A), SEQUENCE.index(B)
    x = [(2, 0, last)]
    both = [(0, 0, pos_a), (2, 0, last)]
    # F0_A reaches the output only through F2_X: with F2_X off too, the pair drops what F2_X alone drops
    assert cc.predicted_drop(graph, both) == pytest.approx(cc.predicted_drop(graph, x), rel=1e-5)
    signed = graph.signed_attribution()
    a_node = [tuple(r) for r in graph.features.tolist()].index((0, pos_a, 0))
    assert cc.predicted_drop(graph, [(0, 0, pos_a)]) == pytest.approx(float(signed[a_node]), rel=1e-5)
    assert cc.predicted_drop(graph, [(0, 1, pos_b), (0, 0, pos_a)]) > cc.predicted_drop(graph, [(0, 0, pos_a)])
    assert cc.predicted_drop(graph, []) == 0.0


def test_predicted_and_measured_set_effects_agree_in_sign_and_rank():
    model, transcoders, answers, graph = _planted_graph()
    last, pos_a, pos_b, pos_c = len(SEQUENCE) - 1, SEQUENCE.index(A), SEQUENCE.index(B), SEQUENCE.index(C)
    sets = {"X": [(2, 0, last)], "A": [(0, 0, pos_a)], "AB": [(0, 0, pos_a), (0, 1, pos_b)],
            "Z": [(2, 1, last)], "C": [(0, 2, pos_c)]}
    predicted = {k: cc.predicted_drop(graph, v) for k, v in sets.items()}
    for freeze in (True, False):
        measured = cc.measured_drops(model, transcoders, SEQUENCE, answers, 0, sets, freeze_attention=freeze)
        for key in sets:
            assert np.sign(measured[key]) == np.sign(predicted[key]), (key, measured, predicted)
        assert cc.spearman([predicted[k] for k in sets], [measured[k] for k in sets]) > 0.85
    # linear: F0_A and F0_B together predict more than F2_X's value (its bias is no node), where ReLU stops
    assert predicted["Z"] < 0 < predicted["A"] < predicted["AB"]


def test_expression_matched_control_has_its_floor_and_tells_a_program_from_chance():
    rng = np.random.default_rng(0)
    background = [f"G{i}" for i in range(600)]
    expression = pd.Series(rng.lognormal(size=600), index=background)
    program = background[:12]
    sets = {"lib": {"PROGRAM": program, **{f"S{i}": list(rng.choice(background, 20, replace=False))
                                          for i in range(30)}}}
    lists = {"planted": program[:8], "random": list(rng.choice(background[100:], 8, replace=False))}
    null = genesets.expression_matched_lists(program[:8], expression, 50, seed=1)
    ranks = expression.rank()
    for drawn in null[:5]:  # each random gene sits in the rank bin of the gene it replaces (20 bins of 30)
        assert sorted((ranks[drawn] - 1) // 30) == sorted((ranks[program[:8]] - 1) // 30)
    table = genesets.expression_matched_p(lists, sets, background, expression, n_null=199, seed=0)
    assert table.loc["planted", "control_p"] == pytest.approx(1 / 200)  # the floor: no random list does as well
    assert table.loc["random", "control_p"] > 0.05
    assert (table.control_p >= 1 / 200).all()


def test_modules_named_by_one_set_show_the_genes_that_tell_them_apart():
    from sctranscoder.tl._circuit_supernodes import _told_apart

    named = ["CD8 TEM", "CD8 TEM", "B cell", "CD8 TEM", "top genes: A, B", "top genes: A, B"]
    lists = [["GZMK", "GZMH", "NKG7", "KLRG1", "GZMB"], ["GZMH", "GZMK", "NKG7", "CTSW", "GZMB"],
             ["CD79A", "MS4A1"], ["GIMAP7", "GNLY", "GZMH"], ["A", "B", "C"], ["A", "B", "C"]]
    assert _told_apart(named, lists) == [
        "CD8 TEM (KLRG1, GZMB)", "CD8 TEM (CTSW, GZMB)", "B cell", "CD8 TEM (GIMAP7, GNLY)",
        "top genes: A, B", "top genes: A, B (2)"]
