"""One prompt spine: settings read from the model, checked against the sentences, cells tokenized once."""

import warnings
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

import sctranscoder as sct


@pytest.fixture(scope="module")
def model():
    return sct.models.default()


@pytest.fixture
def cells(pbmc_template, model):
    held = pbmc_template.obs_names.isin(model.metadata["held_out_cells"])
    return pbmc_template[held][:12].copy()


def test_settings_come_from_the_model_and_are_recorded_with_the_sentences(cells, model):
    settings = sct.pp.PromptSettings.of_model(model)
    assert (settings.n_genes, settings.tie_break, settings.seed) == (model.metadata["n_genes"], "random",
                                                                    model.metadata["seed"])
    sct.tl.predict_cell_types(cells, model, progress=False)
    params = cells.uns["c2s"]
    assert params["n_genes"] == settings.n_genes and params["seed"] == settings.seed  # built with the model's
    assert sct.pp.PromptSettings.recorded(cells, model.name_or_path) == settings
    assert sct.pp.PromptSettings.recorded(cells, "another/model") is None
    assert sct.pp.PromptSettings.from_dict(settings.to_dict()) == settings


@pytest.mark.parametrize("made_with, named", [({"n_genes": 50, "seed": 0}, "n_genes=50"),
                                              ({"n_genes": 200, "tie_break": "stable"}, "tie_break='stable'"),
                                              ({"n_genes": 200, "seed": 42}, "seed=42")])
def test_sentences_made_otherwise_are_an_error_naming_both_and_the_fix(cells, model, made_with, named):
    sct.pp.cell_sentences(cells, progress=False, **made_with)
    with pytest.raises(ValueError) as error:
        sct.tl.predict_cell_types(cells, model, progress=False)
    message = str(error.value)
    assert named in message and "sct.pp.cell_sentences(adata, n_genes=200, tie_break='random', seed=0" in message
    assert "c2s_prediction" not in cells.obs  # nothing was re-ranked or predicted silently


def test_more_genes_in_the_sentences_than_the_model_reads_is_fine(cells, model):
    tie_key = sct.pp.PromptSettings.of_model(model).tie_key
    sct.pp.cell_sentences(cells, n_genes=None, tie_break="random", seed=0, tie_key=tie_key, progress=False)
    sct.tl.predict_cell_types(cells, model, progress=False)
    same = cells.copy()
    del same.obsm["c2s_ranks"], same.uns["c2s"]
    sct.tl.predict_cell_types(same, model, progress=False)
    assert (same.obs.c2s_prediction == cells.obs.c2s_prediction).all()


def test_explicit_settings_override_and_are_read_back(cells, model):
    sct.tl.predict_cell_types(cells, model, n_genes=40, progress=False)
    assert cells.uns["c2s"]["n_genes"] == 40
    assert sct.tl.prompt_settings(cells, model, progress=False).n_genes == 40  # read back, not 200
    assert len(sct.tl.visible_genes(cells, model)) <= 12 * 40


def test_cells_are_tokenized_once_per_task(cells, model, monkeypatch):
    transcoders = {0: sct.tc.Transcoder(sct.tc.TranscoderConfig(d_in=128, d_out=128, d_hidden=64, k=4))}
    calls = []
    tokenizer_class = type(model.tokenizer)
    original = tokenizer_class.__call__

    def counting(self, text, *args, **kwargs):
        texts = [text] if isinstance(text, str) else list(text)
        calls.append(sum("Cell sentence:" in t for t in texts))
        return original(self, text, *args, **kwargs)

    monkeypatch.setattr(tokenizer_class, "__call__", counting)
    sct.tl.evaluate_transcoders(cells, model, transcoders, cells=np.ones(cells.n_obs, bool), label_key="bulk_labels",
                                progress=False)
    assert sum(calls) == cells.n_obs  # every prompt once: harvest, losses and the accuracies reuse them
    calls.clear()
    encoded = sct.tl.encode_cells(cells, model, progress=False)
    assert sum(calls) == cells.n_obs
    sct.tl.predict_cell_types(cells, model, encoded=encoded, progress=False)
    sct.tl.harvest(cells, model, [0], encoded=encoded, progress=False)
    sct.tl.feature_activity(cells, model, transcoders, 0, encoded=encoded, progress=False)
    assert sum(calls) == cells.n_obs


def test_encoded_cells_are_what_the_prompts_tokenize_to(cells, model):
    encoded = sct.tl.encode_cells(cells, model, label_key="bulk_labels", progress=False)
    table = sct.pp.prompts(cells, label_key="bulk_labels", **encoded.settings.prompt_options())
    tok = model.tokenizer
    for i in (0, 5, 11):
        prompt = tok(table.prompt.iloc[i], add_special_tokens=False)["input_ids"]
        answer = tok(table.response.iloc[i], add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        assert encoded.input_ids[i].tolist() == prompt + answer
        assert encoded.prompt_ids()[i].tolist() == prompt
        assert encoded.answer_masks()[i].sum() == len(answer)
    picked = encoded.subset([3, 1])
    assert list(picked.obs_names) == [cells.obs_names[3], cells.obs_names[1]]
    assert picked.input_ids[1] is encoded.input_ids[1]
    with pytest.raises(ValueError, match="not adata's"):
        sct.tl.predict_cell_types(cells[:5].copy(), model, encoded=encoded, progress=False)
    with pytest.raises(ValueError, match="label_key='bulk_labels'"):
        sct.tl.harvest(cells, model, [0], label_key="bulk_labels",
                       encoded=sct.tl.encode_cells(cells, model, progress=False), progress=False)


def test_warns_when_genes_are_unknown_to_the_model(cells, model):
    knows = replace(model, metadata={**model.metadata, "genes": list(cells.raw.var_names[:300])})
    renamed = cells.raw.to_adata()
    renamed.var_names = [f"ENSG{i:08d}" for i in range(renamed.n_vars)]  # Ensembl-like ids, not symbols
    with pytest.warns(UserWarning, match=r"100% of the genes in these cells' sentences .* never occurred"):
        sct.tl.predict_cell_types(renamed, knows, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        full = replace(model, metadata={**model.metadata, "genes": list(cells.raw.var_names)})
        sct.tl.predict_cell_types(cells.copy(), full, progress=False)  # known genes: silent


def test_warns_when_labels_are_not_the_models(cells, model):
    other = cells.copy()
    other.obs["bulk_labels"] = ["T cell"] * 6 + list(other.obs.bulk_labels.astype(str)[6:])
    with pytest.warns(UserWarning, match=r"1 of the .* labels in adata.obs\['bulk_labels'\] are not among the "
                                         r"model's 10 training labels \(6 of 12 cells\): 'T cell'"):
        sct.tl.harvest(other, model, [0], label_key="bulk_labels", progress=False)
    with pytest.warns(UserWarning, match="'T cell'"):
        sct.tl.predict_cell_types(other, model, progress=False)


def test_the_recorded_settings_survive_write_h5ad(cells, model, tmp_path):
    import anndata as ad

    sct.tl.predict_cell_types(cells, model, n_genes=60, progress=False)
    with warnings.catch_warnings():  # labels such as "CD4+/CD25 T Reg" must not become store keys
        warnings.simplefilter("error", FutureWarning)
        cells.write_h5ad(tmp_path / "cells.h5ad")
    cells.write_zarr(tmp_path / "cells.zarr")
    back = ad.read_h5ad(tmp_path / "cells.h5ad")
    pd.testing.assert_frame_equal(sct.get.prediction_probabilities(back), sct.get.prediction_probabilities(cells))
    assert sct.pp.PromptSettings.recorded(back, model.name_or_path) == \
        sct.pp.PromptSettings.of_model(model).updated(n_genes=60)
    sct.tl.predict_cell_types(back, model, progress=False)  # read back: 60 genes, no error, the same calls
    assert (back.obs.c2s_prediction == cells.obs.c2s_prediction).all()


# -- the tie key: name-keyed ties for new models and sentences, row-keyed for those recorded before ----------------
def _with_tie_key(model, tie_key):
    """The model as if its sctranscoder.json recorded ``tie_key`` (``None``: recorded before the key existed)."""
    prompt = {k: v for k, v in model.metadata["prompt"].items() if k != "tie_key"}
    if tie_key is not None:
        prompt["tie_key"] = tie_key
    return replace(model, metadata={**model.metadata, "prompt": prompt}, name_or_path=f"{model.name_or_path}-{tie_key}")


def test_models_and_sentences_recorded_before_the_tie_key_read_as_row_keyed(model):
    assert sct.pp.PromptSettings.of_model(_with_tie_key(model, None)).tie_key == "row"
    assert sct.pp.PromptSettings.of_model(_with_tie_key(model, "name")).tie_key == "name"
    flat = {k: model.metadata[k] for k in ("n_genes", "organism", "template", "tie_break", "seed")}
    assert sct.pp.PromptSettings.of_model(replace(model, metadata=flat)).tie_key == "row"  # oldest layout
    assert sct.pp.PromptSettings.of_model(replace(model, metadata={})).tie_key == "name"  # not sctranscoder's
    assert sct.pp.PromptSettings().tie_key == "name"


@pytest.mark.parametrize("tie_key", [None, "row", "name"])
def test_a_model_reads_sentences_keyed_as_it_was_trained(cells, model, tie_key):
    """Each model builds its own kind of sentences; a subset then gives the same ones only with name keys."""
    keyed = _with_tie_key(model, tie_key)
    expected_key = tie_key or "row"
    sct.tl.predict_cell_types(cells, keyed, progress=False)
    assert cells.uns["c2s"]["tie_key"] == expected_key
    settings = sct.pp.PromptSettings.of_model(keyed)
    reference = cells.copy()
    sct.pp.cell_sentences(reference, progress=False, **settings.sentence_options())
    assert sct.get.sentences(reference) == sct.get.sentences(cells)
    part = cells[[5, 2, 9]].copy()
    del part.obsm["c2s_ranks"], part.uns["c2s"]
    sct.tl.predict_cell_types(part, keyed, progress=False)
    same = sct.get.sentences(part) == [sct.get.sentences(cells)[i] for i in (5, 2, 9)]
    assert same == (expected_key == "name")


def test_sentences_keyed_otherwise_than_the_model_are_an_error_naming_the_fix(cells, model):
    old = _with_tie_key(model, None)
    sct.pp.cell_sentences(cells, n_genes=200, seed=model.metadata["seed"], progress=False)  # name keys
    with pytest.raises(ValueError, match=r"tie_key='name'.*tie_key='row'.*tie_key='row'"):
        sct.tl.predict_cell_types(cells, old, progress=False)
    sct.pp.cell_sentences(cells, n_genes=200, seed=model.metadata["seed"], tie_key="row", progress=False)
    with pytest.raises(ValueError, match=r"tie_key='row'.*tie_key='name'"):
        sct.tl.predict_cell_types(cells, _with_tie_key(model, "name"), progress=False)
    sct.tl.predict_cell_types(cells, old, progress=False)  # the old model reads its own kind


def test_sentences_recorded_before_the_tie_key_read_as_row_keyed(cells):
    sct.pp.cell_sentences(cells, n_genes=30, progress=False)
    del cells.uns["c2s"]["tie_key"]
    assert sct.pp.PromptSettings.of_sentences(cells).tie_key == "row"
    assert "tie_key" in sct.pp.PromptSettings(n_genes=30).sentence_mismatches(cells)
    assert not sct.pp.PromptSettings(n_genes=30, tie_key="row").sentence_mismatches(cells)
