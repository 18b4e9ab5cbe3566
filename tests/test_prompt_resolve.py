"""One way to resolve cells: prompt settings passed next to ``encoded`` apply when they are its own, and are an
error naming the conflict and the fix otherwise (never silently dropped), in every ``sct.tl`` function."""

import numpy as np
import pytest

import sctranscoder as sct


@pytest.fixture(scope="module")
def model():
    return sct.models.default()


@pytest.fixture(scope="module")
def transcoders(model):
    d = model.model.config.hidden_size
    return {0: sct.tc.Transcoder(sct.tc.TranscoderConfig(d_in=d, d_out=d, d_hidden=32, activation="topk", k=4)).eval()}


@pytest.fixture
def cells(pbmc_template, model):
    held = pbmc_template.obs_names.isin(model.metadata["held_out_cells"])
    b_cells = pbmc_template[held & (pbmc_template.obs.bulk_labels == "CD19+ B").to_numpy()][:2]
    return b_cells.copy()


@pytest.fixture
def encoded(cells, model):
    return sct.tl.encode_cells(cells, model, n_genes=60, progress=False)


CALLS = {
    "predict_cell_types": lambda c, m, t, **kw: sct.tl.predict_cell_types(c, m, progress=False, **kw),
    "harvest": lambda c, m, t, **kw: sct.tl.harvest(c, m, [0], progress=False, **kw),
    "feature_activity": lambda c, m, t, **kw: sct.tl.feature_activity(c, m, t, 0, progress=False, inplace=False,
                                                                      **kw),
    "cell_type_circuit": lambda c, m, t, **kw: sct.tl.cell_type_circuit(c, m, t, "CD19+ B", n_cells=1,
                                                                        method="greedy", max_nodes=1,
                                                                        progress=False, **kw),
}


@pytest.mark.parametrize("call", list(CALLS))
def test_a_setting_that_differs_from_the_encodings_is_an_error_naming_it_and_the_fix(call, cells, model,
                                                                                   transcoders, encoded):
    with pytest.raises(ValueError) as error:
        CALLS[call](cells, model, transcoders, encoded=encoded, n_genes=100)
    message = str(error.value)
    assert "n_genes=100 (encoded: 60)" in message and "sct.tl.encode_cells(adata, model, n_genes=100)" in message


@pytest.mark.parametrize("call", list(CALLS))
def test_a_setting_equal_to_the_encodings_applies(call, cells, model, transcoders, encoded):
    CALLS[call](cells, model, transcoders, encoded=encoded, n_genes=60)  # no error: it is the encoding's


def test_the_organism_too(cells, model, encoded):
    with pytest.raises(ValueError, match=r"organism='Mus musculus' \(encoded: 'Homo sapiens'\)"):
        sct.tl.predict_cell_types(cells, model, encoded=encoded, organism="Mus musculus", progress=False)


def test_the_knockout_and_validation_paths_resolve_through_the_same_helper(cells, model, encoded):
    table = sct.tl.knockout_genes(cells, model, genes=[str(encoded.genes[encoded.span_ids[0][0]])],
                                  cells=[0], encoded=encoded, progress=False)
    assert len(table) == 1
    mine = sct.prompt.resolve_cells(cells, model, encoded, rows=np.array([1]))
    assert list(mine.obs_names) == [cells.obs_names[1]] and mine.settings.n_genes == 60


def test_the_tl_names_are_the_prompt_packages():
    assert sct.tl.encode_cells is sct.prompt.encode_cells
    assert sct.tl.EncodedCells is sct.prompt.EncodedCells
    assert sct.tl.prompt_settings is sct.prompt.prompt_settings
