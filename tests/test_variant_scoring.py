"""Knockout prompts scored with their unchanged start run once equal every prompt scored whole."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from tiny_models import ARCHITECTURES, tiny_model

import sctranscoder as sct
from sctranscoder.circuits import shared_prefix_length
from sctranscoder.models import score_candidates, score_variants
from sctranscoder.models._variant_scoring import _plan_batches


def test_variants_score_as_each_prompt_whole():
    from sctranscoder.pp import knockout_sentences, prompt_text
    from sctranscoder.prompt import resolve_cells

    model = sct.models.default()
    adata = sct.datasets.pbmc68k_reduced()
    for row in range(20):  # a cell with more expressed genes than its sentence holds: the gene count stays
        encoded = resolve_cells(adata, model, None, rows=[row], progress=False)
        sentence = np.asarray(encoded.span_ids[0], np.int64)
        genes = sentence[[0, 1, 5, 40, 90, 150, -1]]  # knockouts near the start, the middle and the end
        variants = knockout_sentences(adata, encoded.settings, [row], [sentence], genes, "zero")[0]
        names = np.asarray(encoded.genes, dtype=object)
        texts = [prompt_text(encoded.settings, names[v].tolist()) for v in variants if v is not None]
        ids = model.tokenizer(texts, add_special_tokens=False)["input_ids"]
        base = [int(t) for t in encoded.prompt_ids()[0]]
        starts = [shared_prefix_length(base, v) for v in ids]
        if max(starts) > len(base) // 2:
            break
    assert min(starts) > 0 and max(starts) > len(base) // 2  # the knockouts leave the base at many places
    candidates = list(model.labels)
    whole = score_candidates(model, [base, *ids], candidates, batch_size=64, progress=False)
    for batch_size in (64, 2):
        scores, passes = score_variants(model, base, ids, candidates, batch_size=batch_size)
        np.testing.assert_allclose(scores, whole, atol=1e-4, rtol=0)
        assert passes >= 1 + -(-len(ids) // batch_size)
    same, _ = score_variants(model, base, [base], candidates)  # nothing changed: every token shared
    np.testing.assert_allclose(same[1], whole[0], atol=1e-4, rtol=0)


def test_batches_cover_every_variant_once_in_order_of_where_it_leaves():
    rng = np.random.default_rng(0)
    starts = rng.integers(0, 500, 300)
    lengths = starts + rng.integers(1, 100, 300)
    batches = _plan_batches(starts, lengths, 16)
    assert sorted(np.concatenate(batches).tolist()) == list(range(300))
    assert max(len(b) for b in batches) <= 16
    firsts = [starts[b].min() for b in batches]
    assert firsts == sorted(firsts) and all(starts[b[0]] == starts[b].min() for b in batches)
    # the plan runs fewer tokens than the same rows in order of length, whole
    planned = sum(len(b) * (lengths[b].max() - starts[b].min()) for b in batches)
    assert planned < 0.8 * lengths.sum()


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_every_architecture_scores_variants_as_whole_prompts(arch):
    base_model = sct.models.default()
    lm = tiny_model(arch, base_model.tokenizer, layers=2)
    model = SimpleNamespace(tokenizer=base_model.tokenizer, model=lm, device=torch.device("cpu"))
    rng = np.random.default_rng(1)
    base = rng.integers(10, len(base_model.tokenizer) - 1, 60).tolist()
    variants = [base[:k] + base[k + 1:] for k in (0, 3, 20, 21, 45, 59)] + [base[:30] + [11, 12] + base[32:]]
    candidates = list(base_model.labels)
    whole = score_candidates(model, [base, *variants], candidates, batch_size=8, progress=False)
    scores, _ = score_variants(model, base, variants, candidates, batch_size=3)
    np.testing.assert_allclose(scores, whole, atol=1e-4, rtol=0)
