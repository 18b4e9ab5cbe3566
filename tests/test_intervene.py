"""Feature interventions in the replacement model, checked on the planted circuit and the default model."""

import copy

import networkx as nx
import numpy as np
import pytest
import torch
from planted_circuit import HIDDEN, SEQUENCE, W, Y, exact_transcoders, planted_model

import sctranscoder as sct
from sctranscoder.circuits import Intervention, Target, intervene
from sctranscoder.tc import Transcoder, TranscoderConfig

CANDIDATES = [[Y], [W], [Y, W]]


def _without_unit(model, layer, unit, factor=0.0):
    """The model with one MLP unit's output scaled (removed): what scaling its feature everywhere must equal."""
    changed = copy.deepcopy(model)
    with torch.no_grad():
        changed.gpt_neox.layers[layer].mlp.dense_4h_to_h.weight[:, unit] *= factor
    return changed


def _real(model, ids=SEQUENCE):
    """The real model's Y logit at the last prompt token and its candidates' normalized log-likelihoods."""
    scores = []
    for answer in CANDIDATES:
        full = torch.tensor(ids + answer)[None]
        with torch.no_grad():
            logp = torch.log_softmax(model(full).logits[0].float(), -1)
        scores.append(sum(float(logp[len(ids) - 1 + j, t]) for j, t in enumerate(answer)))
        with torch.no_grad():
            logit = float(model(torch.tensor(ids)[None]).logits[0, -1, Y])
    scores = np.array(scores)
    return logit, scores - np.log(np.exp(scores).sum())


@pytest.mark.parametrize("parallel", [True, False])
def test_switching_a_planted_feature_off_removes_exactly_its_effect(parallel):
    model = planted_model(parallel)
    transcoders = exact_transcoders(model)
    ids, target = torch.tensor(SEQUENCE), Target.logit(Y)
    # layer 0: F0_A, F0_B (the circuit), F0_C (the distractor); layer 2: F2_X (writes Y), F2_Z (writes W)
    for layer, unit in [(0, 0), (0, 1), (0, 2), (2, 0), (2, 1)]:
        result = intervene(model, transcoders, ids, [Intervention.off(layer, unit)], target=target,
                           answer_ids=CANDIDATES)
        logit, log_probs = _real(_without_unit(model, layer, unit))
        assert result.target == pytest.approx(logit, abs=1e-5)
        np.testing.assert_allclose(result.log_probs, log_probs, atol=1e-5)
    # unchanged, the replacement model is the model
    logit, log_probs = _real(model)
    assert result.target_clean == pytest.approx(logit, abs=1e-5)
    np.testing.assert_allclose(result.log_probs_clean, log_probs, atol=1e-5)
    # F2_X carries all of Y's logit at the last position: off there, the logit is 0 (Y's unembedding reads only it)
    only_last = intervene(model, transcoders, ids, Intervention.off(2, 0, position=-1), target=target)
    if parallel:
        assert abs(only_last.target) < 1e-6 and only_last.target_clean > 1.0


@pytest.mark.parametrize("freeze", [False, True])
def test_scale_one_changes_nothing(freeze):
    model = planted_model(True)
    transcoders = exact_transcoders(model)
    changes = [Intervention(layer, unit, scale=1.0) for layer in range(3) for unit in range(HIDDEN)]
    result = intervene(model, transcoders, torch.tensor(SEQUENCE), changes, target=Target.logit(Y),
                       answer_ids=CANDIDATES, freeze_attention=freeze)
    assert result.target == result.target_clean
    np.testing.assert_array_equal(result.log_probs, result.log_probs_clean)


def test_keep_only_and_scaling():
    model = planted_model(True)
    transcoders = exact_transcoders(model)
    ids, target = torch.tensor(SEQUENCE), Target.logit(Y)
    nothing = intervene(model, transcoders, ids, target=target, keep_only=[])
    silent = copy.deepcopy(model)
    with torch.no_grad():
        for block in silent.gpt_neox.layers:
            block.mlp.dense_4h_to_h.weight.zero_()
    assert nothing.target == pytest.approx(_real(silent)[0], abs=1e-6)
    last = len(SEQUENCE) - 1
    circuit = [(0, 0, SEQUENCE.index(1)), (0, 1, SEQUENCE.index(2)), (2, 0, last)]
    kept = intervene(model, transcoders, ids, target=target, keep_only=circuit)
    assert kept.target > 1.0  # the planted circuit alone writes Y's logit
    doubled = intervene(model, transcoders, ids, Intervention(0, 0, scale=2.0), target=target,
                        answer_ids=CANDIDATES)
    logit, log_probs = _real(_without_unit(model, 0, 0, 2.0))
    assert doubled.target == pytest.approx(logit, abs=1e-5) and doubled.target > doubled.target_clean
    np.testing.assert_allclose(doubled.log_probs, log_probs, atol=1e-5)


def test_frozen_attention_holds_patterns():
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    torch.manual_seed(0)
    config = GPTNeoXConfig(vocab_size=40, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                           intermediate_size=64, max_position_embeddings=64, use_parallel_residual=True)
    model = GPTNeoXForCausalLM(config).eval()
    transcoders = {layer: Transcoder(TranscoderConfig(d_in=32, d_out=32, d_hidden=16, activation="relu",
                                                      seed=layer)).eval() for layer in range(2)}
    ids = torch.arange(3, 15)
    feature = int(transcoders[0].encode(_mlp_input(model, ids))[2].argmax())  # one that fires at position 2
    change = [Intervention(0, feature, position=2, value=5.0)]
    free = intervene(model, transcoders, ids, change, target=Target.logit(7))
    frozen = intervene(model, transcoders, ids, change, target=Target.logit(7), freeze_attention=True)
    assert frozen.target_clean == pytest.approx(free.target_clean, abs=1e-5)
    assert abs(frozen.target - free.target) > 1e-6  # layer 1's attention would have moved
    with pytest.raises(KeyError, match="No transcoder for layer 5"):
        intervene(model, transcoders, ids, Intervention.off(5, 0))
    with pytest.raises(IndexError, match="out of range"):
        intervene(model, transcoders, ids, Intervention.off(0, 99))
    with pytest.raises(ValueError, match="exactly one of"):
        Intervention(0, 1, scale=0.5, value=1.0)


def test_frozen_attention_runs_the_prompt_once_and_scores_as_the_full_batch():
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    from sctranscoder.circuits import ReplacementModel

    torch.manual_seed(0)
    config = GPTNeoXConfig(vocab_size=40, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                           intermediate_size=64, max_position_embeddings=64, use_parallel_residual=True,
                           initializer_range=0.5)  # sharp attention: patterns that can move
    model = GPTNeoXForCausalLM(config).eval()
    transcoders = {layer: Transcoder(TranscoderConfig(d_in=32, d_out=32, d_hidden=16, activation="relu",
                                                      seed=layer)).eval() for layer in range(2)}
    ids, answers = torch.arange(3, 15), [[20, 21], [22], [20, 23, 24]]
    feature = int(transcoders[0].encode(_mlp_input(model, ids))[2].argmax())
    changes = [Intervention(0, feature, position=2, value=5.0), Intervention(1, 3, position=11, value=2.0),
               Intervention(1, 4, position=12, value=1.0)]  # the last on the answers' first token
    frozen = ReplacementModel(model, transcoders, ids, answer_ids=answers, freeze_attention=True)
    once = frozen.run(changes)[1]
    assert frozen.cached_patterns  # the prompt-once layout was recorded and replayed
    frozen._shared_prompt = lambda *a: False  # the full batch, every row its own prompt
    np.testing.assert_allclose(once, frozen.run(changes)[1], atol=1e-5)
    free = ReplacementModel(model, transcoders, ids, answer_ids=answers).run(changes)[1]
    assert np.abs(free - once).max() > 1e-3  # frozen: later attention did not move
    # one model built frozen also patches with attention free, as a model built free does
    np.testing.assert_allclose(ReplacementModel(model, transcoders, ids, answer_ids=answers, freeze_attention=True
                                                ).run(changes, free_attention=True)[1], free, atol=1e-5)


def _mlp_input(model, ids):
    with torch.no_grad(), sct.harvest.MLPCapture(model, [0]) as capture:
        model(ids[None])
    return capture.inputs[0][0].float()


@pytest.fixture(scope="module")
def default_setup():
    model = sct.models.default()
    d = model.model.config.hidden_size
    transcoders = {layer: Transcoder(TranscoderConfig(d_in=d, d_out=d, d_hidden=128, activation="topk", k=8,
                                                      seed=layer)).eval() for layer in range(3)}
    return model, sct.datasets.pbmc68k_reduced(), transcoders


def test_perturb_features_over_cells(default_setup):
    model, adata, transcoders = default_setup
    adata = adata[[300, 4]].copy()
    cells = [1]
    sct.tl.predict_cell_types(adata, model, progress=False)
    probabilities = sct.get.prediction_probabilities(adata).iloc[cells]
    features = [(1, f) for f in range(0, 128, 2)]
    same = sct.tl.perturb_features(adata, model, transcoders, features, scale=1.0, cells=cells, progress=False)
    assert same.shape == (1, len(model.labels)) and list(same.columns) == model.labels
    assert (same.to_numpy() == 0).all()
    np.testing.assert_allclose(same.attrs["before"].to_numpy(), probabilities.to_numpy(), atol=1e-5)
    off = sct.tl.perturb_features(adata, model, transcoders, features, scale=0.0, cells=cells, progress=False)
    assert np.abs(off.to_numpy()).max() > 1e-4
    np.testing.assert_allclose(off.sum(axis=1), 0, atol=1e-6)  # probabilities move between candidates
    with pytest.raises(ValueError, match="layer, index"):
        sct.tl.perturb_features(adata, model, transcoders, [(1,)], cells=cells, progress=False)


def test_attention_mask_gradients_match_finite_differences():
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    from sctranscoder.circuits._masking import _KeyBias

    torch.manual_seed(1)
    config = GPTNeoXConfig(vocab_size=40, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                           intermediate_size=64, max_position_embeddings=64, use_parallel_residual=True)
    model = GPTNeoXForCausalLM(config).eval()
    model.set_attn_implementation("eager")
    ids = list(range(3, 15))
    groups = [None, "a", "a", "b", None, "c", "c", "c", None, "b", None, None]
    answers = [[20, 21], [22], [20, 23]]
    gradients = sct.circuits.attention_mask_gradients(model, torch.tensor(ids), groups, answers, 0)
    assert set(gradients) == {"a", "b", "c"}

    def target(bias):
        batch = torch.tensor([ids + a + [0] * (2 - len(a)) for a in answers])
        with torch.no_grad(), _KeyBias(bias):
            logp = torch.log_softmax(model(batch).logits.double(), -1)
        scores = torch.stack([sum(logp[r, len(ids) - 1 + j, t] for j, t in enumerate(a)) for r, a in enumerate(answers)])
        return float(scores[0] - torch.logsumexp(scores, 0))

    step = 1e-3
    for group, gradient in gradients.items():
        bias = torch.tensor([step if g == group else 0.0 for g in groups])
        estimate = (target(bias) - target(-bias)) / (2 * step)
        assert gradient == pytest.approx(estimate, rel=2e-2, abs=1e-5)
    with pytest.raises(ValueError, match="groups has"):
        sct.circuits.attention_mask_gradients(model, torch.tensor(ids), groups[:3], answers, 0)


def test_a_grown_circuit_is_perturbed_with_every_feature_it_holds():
    """Features over the node budget carry the call too: a grown circuit hands all of them over, not only the
    drawn graph's nodes."""
    from types import SimpleNamespace

    from sctranscoder.tl._perturb import feature_list

    graph = nx.DiGraph()
    graph.add_node("f", kind="feature", layer=0, feature=5)
    grown = SimpleNamespace(graph=graph, circuit_features=[[(0, 5, 3), (2, 9, 7)], [(0, 5, 1), (1, 4, 2)]])
    assert feature_list(grown) == [(0, 5), (1, 4), (2, 9)]
    assert feature_list(SimpleNamespace(graph=graph, circuit_features=[])) == [(0, 5)]
