import numpy as np
import pytest
import torch
from test_models_train import train  # noqa: F401  (shared tiny training recipe)

import sctranscoder as sct


@pytest.fixture(scope="module")
def model_and_cells(pbmc_template, tmp_path_factory):
    pbmc = pbmc_template.copy()
    keep = []
    for label in ["CD14+ Monocyte", "CD19+ B", "CD56+ NK"]:
        keep += list(np.flatnonzero(pbmc.obs.bulk_labels == label)[:10])
    cells = pbmc[sorted(keep)].copy()
    model = train(cells, tmp_path_factory.mktemp("predict"), epochs=1)
    return model, cells


def naive_scores(model, prompt, candidates):
    """Full forward of prompt + answer for every candidate: slow, obviously right."""
    tok = model.tokenizer
    out = []
    for c in candidates:
        p = tok(prompt, add_special_tokens=False)["input_ids"]
        a = tok(f"{c}.", add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        ids = torch.tensor([p + a])
        with torch.no_grad():
            logp = torch.log_softmax(model.model(ids).logits[0].float(), dim=-1)
        out.append(sum(logp[len(p) - 1 + t, a[t]].item() for t in range(len(a))))
    return np.array(out)


def test_cached_scoring_equals_full_forward(model_and_cells):
    from sctranscoder.models import score_candidates

    model, cells = model_and_cells
    cells = cells.copy()  # the fixture's cells keep no sentences: predict_cell_types makes the model's own
    sct.pp.cell_sentences(cells, n_genes=12, progress=False)
    prompts = list(sct.pp.prompts(cells, n_genes=12, template=0).prompt)[:7]
    candidates = model.labels + ["CD4+/CD45RA+/CD25- Naive T"]  # answers of different lengths
    batched = score_candidates(model, prompts, candidates, batch_size=3, progress=False)
    for i, prompt in enumerate(prompts):
        np.testing.assert_allclose(batched[i], naive_scores(model, prompt, candidates), rtol=1e-4, atol=1e-4)


def test_predict_score_mode(model_and_cells):
    model, cells = model_and_cells
    cells = cells.copy()
    sct.tl.predict_cell_types(cells, model, progress=False, batch_size=8)
    probabilities = sct.get.prediction_probabilities(cells)
    assert list(probabilities.columns) == model.labels
    np.testing.assert_allclose(probabilities.to_numpy().sum(axis=1), 1, rtol=1e-6)
    assert (cells.obs.c2s_prediction.astype(str) == probabilities.idxmax(axis=1)).all()
    sct.tl.predict_cell_types(cells, model, candidates=["CD19+ B", "CD56+ NK"], key_added="two", progress=False)
    assert set(cells.obs.two.unique()) <= {"CD19+ B", "CD56+ NK"}


def test_predict_generate_mode(model_and_cells):
    model, cells = model_and_cells
    cells = cells.copy()
    sct.tl.predict_cell_types(cells, model, mode="generate", progress=False, batch_size=8)
    assert cells.obs.c2s_prediction.notna().all()
    assert all("\n" not in str(p) for p in cells.obs.c2s_prediction)


def test_parse_answer():
    from sctranscoder.models import parse_answer

    assert parse_answer(" CD19+ B.") == "CD19+ B"
    assert parse_answer("CD56+ NK.\nextra text") == "CD56+ NK"
    assert parse_answer("Dendritic. More words.") == "Dendritic"
    assert parse_answer("CD4+/CD45RO+ Memory") == "CD4+/CD45RO+ Memory"


def test_predict_errors(model_and_cells):
    model, cells = model_and_cells
    with pytest.raises(ValueError, match="mode='vote'"):
        sct.tl.predict_cell_types(cells.copy(), model, mode="vote")
    bare = sct.models.C2SModel(model.model, model.tokenizer, "bare", {})
    with pytest.raises(ValueError, match="pass candidates"):
        sct.tl.predict_cell_types(cells.copy(), bare, n_genes=12, progress=False)


@pytest.mark.parametrize("arch", ["gpt_neox", "gpt_neox_sequential", "gpt2", "llama", "qwen2", "gemma2"])
def test_batched_paths_equal_one_prompt_at_a_time(model_and_cells, arch):
    """Right-padded batches, one pass for all candidates and the own greedy loop equal plain forwards and
    transformers' generate, one prompt at a time, on every architecture (random tiny weights)."""
    from tiny_models import tiny_model

    from sctranscoder.models import score_candidates

    trained, cells = model_and_cells
    cells = cells.copy()
    tok = trained.tokenizer
    model = sct.models.C2SModel(tiny_model(arch, tok, positions=1024), tok, arch, {})
    sct.pp.cell_sentences(cells, n_genes=12, progress=False)
    table = sct.pp.prompts(cells, n_genes=12, template=0)
    prompts = [p[: len(p) - 7 * i] for i, p in enumerate(table.prompt[:5])]  # different lengths
    candidates = trained.labels + ["CD4+/CD45RA+/CD25- Naive T"]
    batched = score_candidates(model, prompts, candidates, batch_size=3, progress=False)
    for i, prompt in enumerate(prompts):
        np.testing.assert_allclose(batched[i], naive_scores(model, prompt, candidates), rtol=1e-4, atol=1e-4)
    assert_generation_equals_transformers(model, prompts, candidates)


def assert_generation_equals_transformers(model, prompts, candidates, max_new_tokens=6):
    """Our greedy answers, step by step and read off the candidates' trie, equal transformers' generate."""
    from sctranscoder.models import generate_answers, parse_answer

    tok = model.tokenizer
    stepwise = generate_answers(model, prompts, batch_size=3, max_new_tokens=max_new_tokens, progress=False)
    with_trie = generate_answers(model, prompts, batch_size=3, max_new_tokens=max_new_tokens, candidates=candidates,
                                 progress=False)
    for prompt, answer, fast in zip(prompts, stepwise, with_trie):
        ids = tok(prompt, add_special_tokens=False, return_tensors="pt")
        with torch.no_grad():
            out = model.model.generate(**ids, max_new_tokens=max_new_tokens, do_sample=False,
                                       pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
        text = tok.decode(out[0, ids["input_ids"].shape[1] :], skip_special_tokens=True)
        assert answer == fast == parse_answer(text)


def test_trained_model_answers_are_read_off_the_trie(pbmc_template, monkeypatch):
    """The default model mostly answers with its labels, which need no step-by-step decoding; greedy answers
    that leave the trie go on from where they left it, and all equal transformers' generate."""
    from sctranscoder.models import _scoring

    model = sct.models.default()
    cells = pbmc_template[pbmc_template.obs_names.isin(model.metadata["held_out_cells"])][::12].copy()
    n_genes = model.metadata["n_genes"]
    sct.pp.cell_sentences(cells, n_genes=n_genes, progress=False)
    prompts = list(sct.pp.prompts(cells, n_genes=n_genes, template=0).prompt)
    assert_generation_equals_transformers(model, prompts, model.labels, max_new_tokens=24)
    calls = []
    model.model.register_forward_hook(lambda *args: calls.append(1))
    read_off = 0
    for prompt in prompts:
        calls.clear()
        answer = _scoring.generate_answers(model, [prompt], candidates=model.labels, max_new_tokens=24,
                                           progress=False)[0]
        # a label is read off the trie: the prompt pass and the trie pass, no greedy step
        assert (len(calls) == 2) == (answer in model.labels), (answer, len(calls))
        read_off += answer in model.labels
    assert read_off >= len(prompts) // 2


def test_answer_trie_shares_leading_tokens():
    from sctranscoder.models._answer_trie import AnswerTrie

    trie = AnswerTrie.build([[5, 6, 7, 1], [5, 6, 8, 1], [9, 1]])
    assert trie.firsts == [5, 5, 9]
    # nodes feed 5 | 5,6 | 5,6,7 | 5,6,8 | 9
    assert trie.feed == [5, 6, 7, 8, 9] and trie.depth == [1, 2, 3, 3, 1] and trie.parent == [-1, 0, 1, 1, -1]
    assert trie.steps == [(0, 0, 6), (0, 1, 7), (0, 2, 1), (1, 0, 6), (1, 1, 8), (1, 3, 1), (2, 4, 1)]
    assert trie.roots == {5: 0, 9: 4} and trie.children[1] == {7: 2, 8: 3}
    sees = trie.sees().int().tolist()
    assert sees == [[1, 0, 0, 0, 0], [1, 1, 0, 0, 0], [1, 1, 1, 0, 0], [1, 1, 0, 1, 0], [0, 0, 0, 0, 1]]
