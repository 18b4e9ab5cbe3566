"""The general LLM path on text with tiny causal LMs: harvest rows, tokenization rules, transcoders trained
from the store, CE recovered, top activations and the map back to input tokens."""

import re

import numpy as np
import pytest
import torch
from tiny_models import tiny_model

import sctranscoder as sct
from sctranscoder.harvest import MLPCapture


@pytest.fixture(scope="module")
def texts():
    from pydoc_data.topics import topics

    paragraphs = [" ".join(p.split()) for key in sorted(topics) for p in re.split(r"\n\s*\n", topics[key])]
    return [p for p in paragraphs if len(p) >= 40][:48]


@pytest.fixture(scope="module")
def neox(tokenizer):
    return tiny_model("gpt_neox", tokenizer, layers=2)


def test_rows_are_each_texts_mlp_activations_without_bos_or_padding(neox, tokenizer, texts):
    store = sct.llm.harvest(neox, tokenizer, texts[:10], max_length=24, batch_size=4, chunk_size=4,
                            dtype="float32", progress=False)
    meta = store.metadata()
    x, y = store.read(1)
    for doc in (0, 5, 9):
        ids = [tokenizer.bos_token_id] + tokenizer(texts[doc], add_special_tokens=False)["input_ids"][:23]
        with MLPCapture(neox, [1]) as capture, torch.no_grad():
            neox(torch.tensor([ids]))
        rows = np.flatnonzero(meta["document"] == doc)
        assert np.array_equal(meta["position"][rows], np.arange(1, 24))  # BOS dropped, truncated, no padding
        assert np.array_equal(meta["token_id"][rows], ids[1:])
        assert torch.allclose(x[rows], capture.inputs[1][0, 1:], atol=1e-5)
        assert torch.allclose(y[rows], capture.outputs[1][0, 1:], atol=1e-5)
    assert (meta["gene"] == -1).all() and (meta["gene_id"] == -1).all() and not meta["last_of_gene"].any()
    assert store.info["prepend_bos"] and store.info["kind"] == "text" and store.n_shards == 3
    # the token table of a document lines up with its store rows
    table = sct.llm.document_tokens(tokenizer, texts[:10], 5, model=neox, max_length=24)
    rows = np.flatnonzero(meta["document"] == 5)
    assert table.special.tolist() == [True] + [False] * 23 and table.token.iloc[0] == "<|bos|>"
    assert np.array_equal(table.token_id.to_numpy()[meta["position"][rows]], meta["token_id"][rows])
    assert "".join(table.token.iloc[1:]) == tokenizer.decode(meta["token_id"][rows])


def test_a_dataset_column_gives_the_same_store_as_a_list(neox, tokenizer, texts, tmp_path):
    from datasets import Dataset

    listed = sct.llm.harvest(neox, tokenizer, texts[:6], [0], max_length=16, prepend_bos=False, progress=False)
    dataset = Dataset.from_dict({"body": texts[:6], "n": list(range(6))})
    stored = sct.llm.harvest(neox, tokenizer, dataset, [0], tmp_path / "acts", text_column="body", max_length=16,
                             prepend_bos=False, chunk_size=4, progress=False)
    assert stored.complete and stored.info["text_column"] == "body"
    assert torch.equal(listed.read(0)[1], stored.read(0)[1])
    meta = stored.metadata()
    assert meta["position"][0] == 0  # without a BOS the first text token is position 0
    with pytest.raises(KeyError, match="text_column='text' is not a column of the dataset; it has"):
        sct.llm.harvest(neox, tokenizer, dataset, max_length=16, progress=False)


def test_bad_texts_and_lengths_are_refused(neox, tokenizer, texts):
    with pytest.raises(TypeError, match="texts is one string"):
        sct.llm.harvest(neox, tokenizer, texts[0], progress=False)
    with pytest.raises(ValueError, match="Text 1 is empty"):
        sct.llm.harvest(neox, tokenizer, [texts[0], ""], progress=False)
    with pytest.raises(TypeError, match="Text 1 is a int"):
        sct.llm.harvest(neox, tokenizer, [texts[0], 3], progress=False)
    with pytest.raises(ValueError, match="longer than the model's context"):
        sct.llm.harvest(neox, tokenizer, texts, max_length=4096, progress=False)
    with pytest.raises(ValueError, match="fewer than one batch"):
        store = sct.llm.harvest(neox, tokenizer, texts[:2], max_length=8, progress=False)
        sct.llm.train_transcoders(store, batch_size=4096, progress=False)


def _hf_cross_entropy(model, tokenizer, texts, max_length):
    """Token-weighted next-token loss from the model's own loss, one text at a time."""
    total, count = 0.0, 0
    with torch.no_grad():
        for text in texts:
            ids = [tokenizer.bos_token_id] + tokenizer(text, add_special_tokens=False)["input_ids"][: max_length - 1]
            ids = torch.tensor([ids])
            total += float(model(ids, labels=ids).loss) * (ids.shape[1] - 1)
            count += ids.shape[1] - 1
    return total / count


@pytest.mark.parametrize("arch", ["gpt_neox", "llama", "gemma2"])
def test_harvest_train_evaluate_gives_ce_recovered(arch, tokenizer, texts, tmp_path):
    model = tiny_model(arch, tokenizer, layers=2)
    train, held_out = texts[:40], texts[40:]
    store = sct.llm.harvest(model, tokenizer, train, max_length=32, progress=False)
    transcoders = sct.llm.train_transcoders(store, out_dir=tmp_path / "tc", d_hidden=128, k=8, batch_size=256,
                                            n_tokens=40_000, warmup_steps=10, learning_rate=2e-3, progress=False)
    assert sorted(transcoders) == [0, 1] and (tmp_path / "tc" / "layer1" / "config.json").is_file()
    table = sct.llm.evaluate(model, tokenizer, transcoders, held_out, max_length=32)
    assert list(table.index) == ["0", "1", "all"]
    assert table.loc["all", "ce_clean"] == pytest.approx(_hf_cross_entropy(model, tokenizer, held_out, 32), rel=1e-4)
    for key in ("0", "1"):
        assert table.loc[key, "fvu"] < 0.8 and table.loc[key, "l0"] <= 8
    # random tiny models barely use their MLPs, so CE recovered is computed but says little here: the spliced
    # loss must stay close to the clean one, and the recovered fractions must follow from the losses
    assert abs(table.loc["all", "ce"] - table.loc["all", "ce_clean"]) < 0.02
    for key in ("0", "1", "all"):
        row = table.loc[key]
        gap = row.ce_mean - row.ce_clean
        assert np.isnan(row.recovered_mean) if gap <= 0 else row.recovered_mean == pytest.approx(
            (row.ce_mean - row.ce) / gap)


def test_top_activations_are_the_features_largest_with_their_tokens(neox, tokenizer, texts):
    store = sct.llm.harvest(neox, tokenizer, texts[:20], [1], max_length=32, dtype="float32", progress=False)
    transcoder, = sct.llm.train_transcoders(store, d_hidden=64, k=4, batch_size=128, n_tokens=20_000,
                                            progress=False).values()
    x, _ = store.read(1)
    with torch.no_grad():
        acts = transcoder.encode(x)
    feature = int(acts.gt(0).sum(0).argmax())  # a feature that fires often
    top = sct.llm.top_activations(transcoder, store, feature, k=5, tokenizer=tokenizer, window=3)
    meta = store.metadata()
    expected = torch.sort(acts[:, feature], descending=True).values[:5].numpy()
    assert np.allclose(top.activation, expected, atol=1e-5)
    for row in top.itertuples():
        index = np.flatnonzero((meta["document"] == row.document) & (meta["position"] == row.position))[0]
        assert row.token_id == meta["token_id"][index] and row.token == tokenizer.decode([row.token_id])
        assert f"⟦{row.token}⟧" in row.context
    # from texts, harvested on the fly: the same answer
    again = sct.llm.top_activations(transcoder, texts[:20], feature, k=5, tokenizer=tokenizer, model=neox,
                                    max_length=32, window=3)
    assert again[["document", "position", "token"]].equals(top[["document", "position", "token"]])
    with pytest.raises(ValueError, match="pass model="):
        sct.llm.top_activations(transcoder, texts[:3], feature, tokenizer=tokenizer)


def test_text_circuit_maps_back_to_input_tokens(neox, tokenizer, texts):
    import torch

    from sctranscoder.tc import Transcoder, TranscoderConfig

    d = neox.config.hidden_size
    transcoders = {layer: Transcoder(TranscoderConfig(d_in=d, d_out=d, d_hidden=32, activation="relu", seed=layer)).eval()
                   for layer in range(2)}
    graph = sct.llm.trace(neox, tokenizer, transcoders, texts[0], max_nodes=10, node_threshold=0.0)
    tokens = sct.llm.document_tokens(tokenizer, texts[:1], 0, model=neox)
    with torch.no_grad():
        logits = neox(torch.as_tensor(tokens.token_id.to_numpy())[None]).logits[0, -1]
    assert graph.graph["value"] == pytest.approx(float(logits.max()), abs=1e-4)  # the model's top guess
    inputs = {d["position"]: d["label"] for _, d in graph.nodes(data=True) if d["kind"] == "input"}
    assert inputs and all(label == tokens.token[p] for p, label in inputs.items())
    word = tokenizer.decode([int(tokens.token_id.iloc[-1])])
    with pytest.raises(ValueError, match="pass one token"):
        sct.llm.trace(neox, tokenizer, transcoders, texts[0], token=word + word + " xyzzy")
