"""Circuits grown until their features alone carry the call, checked by rerunning the experiment."""

import numpy as np
import pytest
import torch
from tiny_models import tiny_model

from sctranscoder.circuits import FeatureShare, answer_logprob, attribute, grow_circuit, to_networkx
from sctranscoder.tc import Transcoder, TranscoderConfig

PROMPT = list(range(5, 21))
ANSWERS = [[30, 31, 3], [30, 32, 3], [33, 3], [34, 3]]


def _traced(tokenizer, layers: int, seed: int):
    """A tiny GPT-NeoX with random TopK transcoders, its call's log-odds traced with a node budget of 6."""
    model = tiny_model("gpt_neox", tokenizer, seed=seed, layers=layers)
    d = model.config.hidden_size
    transcoders = {layer: Transcoder(TranscoderConfig(d_in=d, d_out=d, d_hidden=128, activation="topk", k=16,
                                                      seed=layer + 10 * seed)).eval() for layer in range(layers)}
    target, fed, _ = answer_logprob(model, PROMPT, ANSWERS, 0)
    graph = attribute(model, transcoders, torch.tensor(fed), target, max_feature_nodes=6, batch_size=4)
    return model, transcoders, graph


@pytest.fixture(scope="module")
def traced(tokenizer):
    return _traced(tokenizer, 2, 1)


def test_grown_circuit_carries_the_share_it_reports(traced):
    model, transcoders, graph = traced
    share = FeatureShare(model, transcoders, PROMPT, ANSWERS, 0)
    assert share([]) == pytest.approx(0.0, abs=1e-9)  # nothing on: the baseline itself
    grown = grow_circuit(graph, share, 0.8)
    assert grown.reached and grown.share >= 0.8
    # the share is what a fresh experiment on the returned features gives
    again = FeatureShare(model, transcoders, PROMPT, ANSWERS, 0)(grown.features)
    assert again == pytest.approx(grown.share, rel=1e-5, abs=1e-6)
    # the standard circuit did not carry it; the grown one contains it, and reaches past the node budget
    assert grown.share_pruned < 0.8 and len(grown.features) > grown.n_pruned
    standard = graph.prune().nodes[: graph.n_features]
    assert bool((grown.include | ~standard).all())
    assert grown.n_over_budget == len(grown.features) - int(grown.include.sum()) > 0
    # the drawn graph holds exactly the circuit's feature nodes, and scores the grown circuit beside the standard
    drawn = to_networkx(graph, include=grown.include)
    assert sum(d["kind"] == "feature" for _, d in drawn.nodes(data=True)) == int(grown.include.sum())
    assert 0 <= drawn.graph["replacement_grown"] <= 1 and 0 <= drawn.graph["completeness_grown"] <= 1
    # a smaller set in the same order falls short (the size is the smallest to within the tolerance)
    fewer = len(grown.features) - max(2, int(0.02 * len(grown.features)) + 1)
    assert share(grown.features[:fewer]) < 0.8


def test_every_traced_feature_is_the_model_and_a_share_out_of_reach_keeps_the_standard_circuit(traced):
    model, transcoders, graph = traced
    share = FeatureShare(model, transcoders, PROMPT, ANSWERS, 0)
    # every active feature of the traced sequence on (the rest are 0 anyway): the model itself
    everything = share([(layer, index, position) for layer, position, index in graph.active.tolist()])
    assert everything == pytest.approx(1.0, abs=1e-4)
    capped = grow_circuit(graph, lambda features: min(share(features), 0.5), 0.8)  # a measure that never reaches it
    assert not capped.reached and capped.share == capped.share_pruned <= 0.5
    assert capped.share_all == pytest.approx(0.5)
    assert len(capped.features) == capped.n_pruned and capped.n_over_budget == 0
    assert bool((capped.include == graph.prune().nodes[: graph.n_features]).all())
    with pytest.raises(ValueError, match="min_share"):
        grow_circuit(graph, share, 1.5)
    with pytest.raises(IndexError, match="candidates"):
        FeatureShare(model, transcoders, PROMPT, ANSWERS, 7)
    with pytest.raises(ValueError, match="scope has 2 entries"):
        share.replacement.run(keep_only=[], scope=[3, 4])


@pytest.mark.parametrize("arch", ["gpt_neox", "llama"])
def test_prompt_run_once_gives_the_full_pass(arch, tokenizer, monkeypatch):
    """Candidate rows share the prompt: running it once and repeating its keys and values changes no score."""
    from sctranscoder.circuits import Intervention, ReplacementModel

    model = tiny_model(arch, tokenizer, seed=2)
    d = model.config.hidden_size
    transcoders = {layer: Transcoder(TranscoderConfig(d_in=d, d_out=d, d_hidden=64, activation="topk", k=6,
                                                      seed=layer)).eval() for layer in range(2)}
    replacement = ReplacementModel(model, transcoders, PROMPT, answer_ids=ANSWERS)
    keep = [(0, 3, 4), (1, 5, 17), (0, 9, 16), (1, 2, 2)]
    runs = [dict(), dict(keep_only=keep, scope=[18, 17, 16, 16]), dict(keep_only=[], scope=[18, 17, 16, 16]),
            dict(interventions=[Intervention(1, 5, 17, scale=3.0), Intervention.off(0, 3)])]
    once = [replacement.run(**options)[1] for options in runs]
    monkeypatch.setattr(ReplacementModel, "_shared_prompt", lambda self, kept, changes: False)
    full = [replacement.run(**options)[1] for options in runs]
    for a, b in zip(once, full):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    assert not np.allclose(full[0], full[1])  # the ablations do change the scores


def test_the_circuit_core_calls_the_raw_module_lm_and_token_answers_answer_ids(traced):
    # `model` is a C2SModel at the AnnData layer; the core's old keywords keep working for one release
    model, transcoders, _ = traced
    new = FeatureShare(lm=model, transcoders=transcoders, prompt_ids=PROMPT, answer_ids=ANSWERS, index=0)
    with pytest.warns(DeprecationWarning, match=r"model=\.\.\.\) is now lm="):
        old = FeatureShare(model=model, transcoders=transcoders, prompt_ids=PROMPT, answer_ids=ANSWERS, index=0)
    assert old.everything == pytest.approx(new.everything)
    with pytest.warns(DeprecationWarning, match=r"candidates=\.\.\.\) is now answer_ids="):
        target, fed, info = answer_logprob(model, PROMPT, ANSWERS, 0)
        from sctranscoder.circuits import intervene

        result = intervene(model, transcoders, PROMPT, candidates=ANSWERS)
    assert result.probabilities_clean.shape == (len(ANSWERS),)
