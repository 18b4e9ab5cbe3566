"""In-silico gene knockouts: sentences rebuilt exactly, every candidate re-scored as predict_cell_types scores it."""

import dataclasses

import numpy as np
import pytest
import scipy.stats
from conftest import make_adata, make_counts

import sctranscoder as sct
from sctranscoder.get._sentences import ranked_genes
from sctranscoder.pp import PromptSettings, knockout_sentences


def _sentences(adata, n_genes):
    indptr, ordered = ranked_genes(adata, n_genes)
    return [ordered[indptr[i]:indptr[i + 1]].astype(np.int64) for i in range(adata.n_obs)]


@pytest.mark.parametrize("tie_break,fmt", [("random", "csr"), ("random", "dense"), ("c2s", "csr"), ("stable", "csc")])
def test_zero_knockout_is_the_full_ranking_without_the_gene(tie_break, fmt):
    """Expression set to 0 and re-ranked: the gene leaves, no other gene changes place (ties included)."""
    adata = make_adata(make_counts(n_cells=60, n_genes=40, rate=0.8), fmt)
    settings = PromptSettings(n_genes=8, tie_break=tie_break, seed=3)
    full = adata.copy()
    sct.pp.cell_sentences(full, tie_break=tie_break, seed=3, progress=False)  # every expressed gene
    sct.pp.cell_sentences(adata, progress=False, **settings.sentence_options())
    rows = np.array([0, 17, 59])
    stored, everything = _sentences(adata, 8), _sentences(full, None)
    genes = np.arange(40)
    variants = knockout_sentences(adata, settings, rows, [stored[r] for r in rows], genes, "zero")
    for row, cell in zip(rows, variants):
        for gene, variant in zip(genes, cell):
            expected = everything[row][everything[row] != gene][:8]
            if np.array_equal(expected, stored[row]):
                assert variant is None  # not expressed, or below the cut: the sentence does not change
            else:
                np.testing.assert_array_equal(variant, expected)
    removed = knockout_sentences(adata, settings, rows, [stored[r] for r in rows], genes, "remove")
    for row, cell in zip(rows, removed):
        for gene, variant in zip(genes, cell):
            if gene in stored[row]:
                np.testing.assert_array_equal(variant, stored[row][stored[row] != gene])
            else:
                assert variant is None


def test_row_keyed_sentences_made_before_subsetting_are_refused():
    adata = make_adata(make_counts(n_cells=60, n_genes=40, rate=0.8))
    sct.pp.cell_sentences(adata, n_genes=8, tie_key="row", progress=False)  # as models before name keys read them
    subset = adata[[20, 40]].copy()  # keeps the sentences made at rows 20 and 40
    settings = PromptSettings(n_genes=8, tie_key="row")
    with pytest.raises(ValueError, match="tie_key='row'.*made before adata was subset"):
        knockout_sentences(subset, settings, np.array([0, 1]), _sentences(subset, 8), np.arange(40), "zero")


def test_name_keyed_sentences_knock_out_the_same_in_a_subset():
    """Ties keyed on cell names: a subset (reordered) re-ranks each cell exactly as the whole data set does."""
    adata = make_adata(make_counts(n_cells=60, n_genes=40, rate=0.8))
    settings = PromptSettings(n_genes=8)
    sct.pp.cell_sentences(adata, progress=False, **settings.sentence_options())
    rows, genes = np.array([40, 20, 7]), np.arange(40)
    whole = knockout_sentences(adata, settings, rows, [_sentences(adata, 8)[r] for r in rows], genes, "zero")
    subset = adata[rows].copy()  # keeps the sentences made on the whole data set
    alone = knockout_sentences(subset, settings, np.arange(3), _sentences(subset, 8), genes, "zero")
    for cell_whole, cell_alone in zip(whole, alone):
        for a, b in zip(cell_whole, cell_alone):
            assert (a is None and b is None) or np.array_equal(a, b)
    assert sum(v is not None for cell in alone for v in cell) > 3 * 8 - 1  # each sentence gene changes it


@pytest.fixture(scope="module")
def scored():
    """Knockouts in two cells (not the first rows) of a 24-cell AnnData, and predict_cell_types on all 24."""
    model = sct.models.default()
    adata = sct.datasets.pbmc68k_reduced()[:24].copy()
    sct.tl.predict_cell_types(adata, model, progress=False)
    n_genes = model.metadata["n_genes"]
    sentences = _sentences(adata, n_genes)
    names = sct.get._sentences.stored_genes(adata)
    first, deep = names[sentences[7][0]], names[sentences[19][150]]
    rows = adata.raw.X[[7, 19]]
    rows = rows.toarray() if hasattr(rows, "toarray") else np.asarray(rows)
    absent = names[int(np.flatnonzero((rows == 0).all(axis=0))[0])]  # expressed in neither cell
    table = sct.tl.knockout_genes(adata, model, [first, deep, absent.lower()], cells=[7, 19], progress=False)
    return model, adata, table, (first, deep, absent)


def test_unknocked_score_is_predict_cell_types_score(scored):
    model, adata, table, (first, deep, absent) = scored
    probabilities = sct.get.prediction_probabilities(adata)
    assert len(table) == 6 and table.attrs["mode"] == "zero"
    for row in table.itertuples():
        assert row.label == adata.obs.bulk_labels[row.cell]
        assert row.logp_before == pytest.approx(np.log(probabilities.loc[row.cell, row.label]), abs=1e-4)
        assert row.call_before == adata.obs.c2s_prediction[row.cell]
    missing = table[table.gene == absent]
    assert not missing.in_sentence.any() and not missing.changed.any() and (missing.delta_logp == 0).all()
    hit = table[(table.gene == first) & (table.cell == adata.obs_names[7])].iloc[0]
    assert hit.in_sentence and hit["rank"] == 1 and hit.changed and hit.delta_logp != 0
    np.testing.assert_allclose(table.delta_logp, table.logp_after - table.logp_before)
    assert table.attrs["n_passes"] == 4  # per cell: its own prompt, then its knockouts in one batch


def test_knockout_errors_name_the_problem(scored):
    model, adata, _, (first, _, _) = scored
    with pytest.raises(KeyError, match="CD79AA"):
        sct.tl.knockout_genes(adata, model, ["CD79AA"], cells=[0], progress=False)
    with pytest.raises(KeyError, match="not in adata.obs_names"):
        sct.tl.knockout_genes(adata, model, [first], cells=["no-such-cell"], progress=False)
    with pytest.raises(ValueError, match="not among the candidate labels"):
        sct.tl.knockout_genes(adata, model, [first], cells=[0], label="Neuron", progress=False)
    with pytest.raises(ValueError, match="mode="):
        sct.tl.knockout_genes(adata, model, [first], cells=[0], mode="delete", progress=False)


def test_validate_circuit_against_knockouts(scored):
    from sctranscoder.tc import Transcoder, TranscoderConfig

    model, adata, _, _ = scored
    d = model.model.config.hidden_size
    transcoders = {layer: Transcoder(TranscoderConfig(d_in=d, d_out=d, d_hidden=128, activation="topk", k=8,
                                                      seed=layer)).eval() for layer in range(3)}
    cell_type = adata.obs.bulk_labels.value_counts().index[0]
    result = sct.tl.cell_type_circuit(adata, model, transcoders, cell_type, n_cells=2, n_genes=20, max_nodes=4, threshold=0.0005,
                                      rank_genes_by="knockout", progress=False)
    validation = result.validation
    assert validation is not None and validation["n_cells"] == 2 and validation["ablation"] == "zero"
    checked = validation["genes"]
    assert 0 < len(checked) == min(10, len(result.genes)) and checked.attribution.abs().is_monotonic_decreasing
    # the measured effects are knockout_genes' (n_genes=20 prompts), averaged over the traced cells
    rows = [adata.obs_names.get_loc(c) for c in result.cells]
    encoded = sct.tl.encode_cells(adata, model, n_genes=20, progress=False)
    direct = sct.tl.knockout_genes(adata, model, list(checked.gene), cells=rows, label=cell_type, encoded=encoded,
                                   progress=False)
    expected = -direct.groupby("gene").delta_logp.sum() / 2
    np.testing.assert_allclose(checked.knockout_effect, expected[checked.gene].to_numpy(), atol=1e-5)  # batched otherwise: rounding
    assert validation["spearman"] == pytest.approx(
        scipy.stats.spearmanr(checked.attribution, checked.knockout_effect)[0], nan_ok=True)
    measured = result.genes_by_knockout
    assert measured.knockout_effect.is_monotonic_decreasing and set(checked.gene) <= set(measured.gene)
    assert (measured.n_cells > 0).all()  # every gene of the traced sentences, and only those
    assert len(validation["feature_share_cells"]) == 2
    gradient = validation["gradient"]  # the real-model attribution, checked against the same knockouts
    assert len(gradient["genes"]) == 10 and gradient["genes"].attribution.abs().is_monotonic_decreasing
    assert set(gradient["genes"].gene) <= set(measured.gene) and "gradient" in measured
    html = sct.report.render_html(sct.report.ReportContent(cell_types=[
        sct.report.CellTypeSection(cell_type, input_genes=result.genes, validation=validation)]))
    assert "Attributed against measured" in html and "Genes whose knockout passes a random gene at the same rank" in html
    # every gene was set against random genes knocked out at the same ranks of the same cells
    null = validation["knockout_null"]
    assert validation["n_cells_knockout"] == 2 and (null.n_cells <= 2).all() and not null.passes.any()  # 2 < 3 cells
    assert {"effect", "z", "fdr", "passes"} <= set(measured) and validation["message"].startswith("No gene's")
    with pytest.raises(ValueError, match="rank_genes_by"):
        sct.tl.cell_type_circuit(adata, model, transcoders, cell_type, rank_genes_by="magic", progress=False)


def test_knockouts_on_a_subset_match_the_whole_data_set(scored):
    """With ties keyed on cell names, a subset carrying its sentences needs no rebuild and scores the same
    knockouts as the whole data set."""
    model, adata, _, (first, deep, absent) = scored
    prompt = {**model.metadata["prompt"], "tie_key": "name"}  # a model trained on name-keyed sentences
    model = dataclasses.replace(model, metadata={**model.metadata, "prompt": prompt}, name_or_path="name-keyed")
    adata = adata.copy()
    del adata.obsm["c2s_ranks"], adata.uns["c2s"]
    table = sct.tl.knockout_genes(adata, model, [first, deep, absent.lower()], cells=[7, 19], progress=False)
    assert adata.uns["c2s"]["tie_key"] == "name"
    subset = adata[[19, 3, 7]].copy()  # sentences made on all 24 cells come along
    again = sct.tl.knockout_genes(subset, model, [first, deep, absent.lower()], cells=[0, 2], progress=False)
    key = ["cell", "gene", "label"]
    merged = table.merge(again, on=key, suffixes=("", "_subset"))
    assert len(merged) == len(table) == 6
    np.testing.assert_allclose(merged.logp_after, merged.logp_after_subset, atol=1e-4)
    np.testing.assert_allclose(merged.logp_before, merged.logp_before_subset, atol=1e-4)
    fresh = adata[[19, 7]].copy()
    del fresh.obsm["c2s_ranks"], fresh.uns["c2s"]  # or sentences made on the subset itself: the same again
    alone = sct.tl.knockout_genes(fresh, model, [first, deep, absent.lower()], progress=False)
    np.testing.assert_allclose(alone.sort_values(key).logp_after, table.sort_values(key).logp_after, atol=1e-4)
