"""Complete attribution graphs: exact rows, circuit-tracer's pruning and scores, the planted circuit, JSON export."""

import json

import pytest
import torch
from planted_circuit import SEQUENCE, A, B, Y, exact_transcoders, planted_graph, planted_model
from test_circuits import _bias_free

from sctranscoder.circuits import AttributionGraph, Target, answer_logprob, attribute, to_circuit_tracer, to_networkx
from sctranscoder.circuits._influence import graph_scores, prune_masks


def _contracted(edges):
    """The planted edges with heads folded into the edge they carry (complete graphs have no head nodes)."""
    into_head = {}
    for a, b in edges:
        if b.startswith("head:"):
            into_head.setdefault(b, []).append(a)
    out = set()
    for a, b in edges:
        if b.startswith("head:"):
            continue
        for source in into_head.get(a, [a]):
            out.add((source, b))
    return out


@pytest.mark.parametrize("parallel", [True, False], ids=["parallel", "sequential"])
def test_planted_circuit_scores_one_and_is_recovered(parallel):
    model = planted_model(parallel)
    graph = attribute(model, exact_transcoders(model), torch.tensor(SEQUENCE), Target.logit(Y), batch_size=4)
    # the transcoders are exact: nothing is left to errors, in the whole graph
    scores = graph.scores()
    assert scores["replacement"] == pytest.approx(1.0, abs=1e-6)
    assert scores["completeness"] == pytest.approx(1.0, abs=1e-6)
    # pruned: with the defaults the parallel circuit is kept whole; on sequential blocks F1_Q carries
    # 19% of the influence, so the default node threshold (0.8) drops it and the scores say so
    threshold = 0.8 if parallel else 0.95
    pruned_scores = graph.scores(node_threshold=threshold)
    assert pruned_scores["replacement_pruned"] == pytest.approx(1.0, abs=1e-6)
    assert pruned_scores["completeness_pruned"] == pytest.approx(1.0, abs=1e-6)
    if not parallel:
        assert graph.scores()["replacement_pruned"] < 0.95
    found = to_networkx(graph, node_threshold=threshold)
    nodes, edges = planted_graph(parallel)
    planted_edges = _contracted(edges)
    planted_nodes = {n for edge in planted_edges for n in edge}
    found_edges = set(found.edges)
    found_nodes = {n for edge in found_edges for n in edge}
    hits = len(found_nodes & planted_nodes)
    assert hits / len(found_nodes) >= 0.9 and hits / len(planted_nodes) >= 0.9, found_nodes ^ planted_nodes
    hits = len(found_edges & planted_edges)
    assert hits / len(found_edges) >= 0.9 and hits / len(planted_edges) >= 0.9, found_edges ^ planted_edges
    # signed contributions over all paths: the two planted tokens carry the logit
    position = {t: SEQUENCE.index(t) for t in (A, B)}
    assert found.nodes[f"input:{position[A]}"]["attribution"] > 0
    assert found.nodes[f"input:{position[B]}"]["attribution"] > 0


@pytest.mark.parametrize("arch", ["gpt_neox", "llama"])
def test_rows_sum_to_the_values_they_split(arch, tokenizer):
    model, transcoders = _bias_free(arch, tokenizer)
    ids = torch.randint(5, len(tokenizer), (10,), generator=torch.Generator().manual_seed(3))
    graph = attribute(model, transcoders, ids, Target.logit(7), max_feature_nodes=None, batch_size=256)
    assert graph.n_features == graph.n_active > 0
    # no biases anywhere: every row is an exact split of its node's value
    rows = graph.adjacency.sum(1)
    torch.testing.assert_close(rows[: graph.n_features], graph.pre_activations, rtol=1e-3, atol=1e-4)
    assert float(rows[-1]) == pytest.approx(graph.value, rel=1e-3, abs=1e-4)
    # a budget keeps the most influential features first, and the rows it keeps are the same rows
    small = attribute(model, transcoders, ids, Target.logit(7), max_feature_nodes=8, batch_size=4)
    assert small.n_features == 8
    full = {tuple(f): i for i, f in enumerate(graph.features.tolist())}
    for i, feature in enumerate(small.features.tolist()):
        j = full[tuple(feature)]
        assert float(small.pre_activations[i]) == pytest.approx(float(graph.pre_activations[j]), rel=1e-4, abs=1e-5)
        start_small, start_full = small.error_index(0, 0), graph.error_index(0, 0)
        torch.testing.assert_close(small.adjacency[i, start_small:-1], graph.adjacency[j, start_full:-1],
                                   rtol=1e-4, atol=1e-5)


def test_scores_follow_circuit_tracers_formulas():
    """A hand-made graph: feature f reads token t (weight 3) and error e (weight 1); the output reads f (2)
    and e directly (2). Node order: features, errors, tokens, output."""
    adjacency = torch.zeros(4, 4)
    adjacency[0, 2], adjacency[0, 1] = 3.0, 1.0     # f <- t, f <- e
    adjacency[3, 0], adjacency[3, 1] = 2.0, -2.0    # out <- f, out <- e
    weights = torch.tensor([0.0, 0.0, 0.0, 1.0])
    tokens, errors = torch.tensor([False, False, True, False]), torch.tensor([False, True, False, False])
    replacement, completeness = graph_scores(adjacency, weights, tokens, errors)
    # influence: f 0.5, e 0.5 + 0.5 * 0.25, t 0.5 * 0.75
    assert replacement == pytest.approx(0.375 / (0.375 + 0.625))
    # non-error share of inputs: f 0.75, out 0.5, leaves 1; weighted by influence + output weight
    expected = (0.75 * 0.5 + 1 * 0.625 + 1 * 0.375 + 0.5 * 1.0) / (0.5 + 0.625 + 0.375 + 1.0)
    assert completeness == pytest.approx(expected)
    pruned = prune_masks(adjacency, weights, 1, torch.tensor([False, False, True, True]), 0.5, 0.98)
    assert bool(pruned.nodes[3]) and bool(pruned.nodes[2])
    with pytest.raises(ValueError, match="node_threshold"):
        prune_masks(adjacency, weights, 1, torch.tensor([False, False, True, True]), 1.5)


def test_log_odds_target_is_the_call_and_its_linearization(tokenizer):
    model, _ = _bias_free("gpt_neox", tokenizer)
    prompt = list(range(5, 17))
    answers = [[20, 21, 3], [20, 22, 3], [25, 3]]
    target, fed, info = answer_logprob(model, prompt, answers, 0)
    assert fed == prompt + [20, 21]
    with torch.no_grad():
        logp = torch.log_softmax(model(torch.tensor([prompt + [20, 21, 3]])).logits[0].float(), -1)
    start = len(prompt) - 1
    scores = []
    for answer in answers:
        with torch.no_grad():
            lp = torch.log_softmax(model(torch.tensor([prompt + answer])).logits[0].float(), -1)
        scores.append(sum(float(lp[start + t, tok]) for t, tok in enumerate(answer)))
    scores = torch.tensor(scores, dtype=torch.float64)
    q = torch.softmax(scores, 0)
    assert info["probabilities"] == pytest.approx(q.numpy(), rel=1e-4)
    assert info["logodds"] == pytest.approx(float(torch.log(q[0] / (1 - q[0]))), rel=1e-4, abs=1e-5)
    assert logp.shape[0] == len(prompt) + 3
    # the linearized target equals the value at this input, and moves with it to first order
    graph = attribute(model, {}, torch.tensor(fed), target, max_feature_nodes=None)
    assert graph.value == pytest.approx(info["logodds"], rel=1e-4, abs=1e-5)
    with pytest.raises(ValueError, match="kind"):
        answer_logprob(model, prompt, answers, 0, kind="odds")


def test_circuit_tracer_json_has_what_its_frontend_reads():
    model = planted_model(True)
    graph = attribute(model, exact_transcoders(model), torch.tensor(SEQUENCE), Target.logit(Y, label="Y"))
    data = json.loads(json.dumps(to_circuit_tracer(graph, probability=0.5, output_token=Y)))
    assert set(data) == {"metadata", "qParams", "nodes", "links"}
    meta = data["metadata"]
    for key in ("slug", "scan", "transcoder_list", "prompt_tokens", "prompt"):
        assert key in meta
    assert len(meta["prompt_tokens"]) == len(SEQUENCE)
    assert set(data["qParams"]) == {"pinnedIds", "supernodes", "linkType", "clickedId", "sg_pos"}
    required = {"node_id": str, "feature": int, "layer": str, "ctx_idx": int, "feature_type": str, "jsNodeId": str,
                "clerp": str, "token_prob": float, "is_target_logit": bool, "run_idx": int, "reverse_ctx_idx": int}
    types = {"cross layer transcoder", "mlp reconstruction error", "embedding", "logit"}
    for node in data["nodes"]:
        for key, kind in required.items():
            assert isinstance(node[key], kind), (key, node)
        assert node["feature_type"] in types
    ids = [n["node_id"] for n in data["nodes"]]
    assert len(ids) == len(set(ids))
    assert f"0_0_{SEQUENCE.index(A)}" in ids and f"E_{A}_{SEQUENCE.index(A)}" in ids  # feature, embedding ids
    (logit,) = [n for n in data["nodes"] if n["feature_type"] == "logit"]
    assert logit["node_id"] == f"4_{Y}_{len(SEQUENCE) - 1}" and logit["is_target_logit"]
    assert float(logit["clerp"].split("(p=")[1].split(")")[0]) == pytest.approx(0.5)  # the frontend parses this
    assert all(link["source"] in ids and link["target"] in ids for link in data["links"])
    assert {"replacement", "completeness"} <= set(meta["info"])


def test_bad_arguments_are_named():
    model = planted_model(True)
    with pytest.raises(ValueError, match="groups has 2 entries"):
        attribute(model, exact_transcoders(model), torch.tensor(SEQUENCE), Target.logit(Y), groups=[None, None])
    with pytest.raises(ValueError, match="batch_size"):
        attribute(model, exact_transcoders(model), torch.tensor(SEQUENCE), Target.logit(Y), batch_size=0)
    assert AttributionGraph.__doc__
