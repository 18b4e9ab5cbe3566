"""A circuit's enrichment beside its controls: expression-matched random lists and the type's DE markers."""

import numpy as np
import pandas as pd
import pytest

import sctranscoder as sct
from sctranscoder.genesets import expression_matched_lists
from sctranscoder.genesets._expression_null import expression_bins

LABEL = "CD19+ B"


@pytest.fixture(scope="module")
def cells(pbmc_template):
    adata = pbmc_template.copy()
    sct.pp.cell_sentences(adata, n_genes=100, progress=False)
    return adata


@pytest.fixture(scope="module")
def expression(cells):
    from sctranscoder.tl._circuit_controls import type_expression

    background = sct.tl.visible_genes(cells)
    level = type_expression(cells, "bulk_labels", [LABEL])[LABEL]
    level.index = level.index.str.upper()
    return level[~level.index.duplicated()].reindex(background).fillna(0.0)


def test_matched_lists_keep_each_genes_expression_bin_and_leave_the_list_out(expression):
    genes = list(expression.nlargest(40).index[::4])
    lists = expression_matched_lists(genes, expression, 50, rng=np.random.default_rng(0))
    bins = expression_bins(expression)
    want = sorted(bins[genes])
    for drawn in lists:
        assert sorted(bins[drawn]) == want
        assert not set(drawn) & set(genes) and len(set(drawn)) == len(drawn)
    again = expression_matched_lists(genes, expression, 50, rng=np.random.default_rng(0))
    assert again == lists


def test_a_small_background_is_matched_in_fewer_bins_with_a_warning(expression):
    small = expression.nlargest(60)  # the list holds most of the top bins: 20 bins cannot be filled
    genes = list(small.index[:12])  # fills the top bin at 20, 10 and 5 bins; 2 bins of 30 have room
    with pytest.warns(UserWarning, match="matched in 2 instead"):
        lists = expression_matched_lists(genes, small, 10, seed=0)
    halves = expression_bins(small, 2)
    for drawn in lists:
        assert sorted(halves[drawn]) == sorted(halves[genes]) and not set(drawn) & set(genes)
    with pytest.raises(ValueError, match="too few others"):
        expression_matched_lists(list(small.index[:40]), small, 10)


def test_a_set_of_highly_expressed_genes_is_not_credited_to_a_circuit(cells, expression):
    """A list of genes B cells express highly hits a set of highly expressed genes (FDR passes), but random
    genes as highly expressed hit it as often; a list of planted mid-expression genes beats its control."""
    ranked = list(expression.sort_values(ascending=False).index)
    high, middle = ranked[:60], ranked[200:230]
    gene_sets = {"test": {"highly expressed": high[::2], "planted program": middle[:20]}}
    lists = {LABEL: high[1:30:2][:8] + high[0:16:2]}  # 16 highly expressed genes, half of them in the set
    table = sct.tl.enrich_circuit(lists, gene_sets, adata=cells, label_key="bulk_labels", n_null=300, n_top=None)
    row = table.set_index("Term").loc["highly expressed"]
    assert row["Adjusted P-value"] < 0.05  # the hypergeometric test alone would headline it
    assert row["Expression-matched P-value"] > 0.05
    planted = {LABEL: middle[:12]}
    table = sct.tl.enrich_circuit(planted, gene_sets, adata=cells, label_key="bulk_labels", n_null=300, n_top=None)
    row = table.set_index("Term").loc["planted program"]
    assert row["Adjusted P-value"] < 0.05 and row["Expression-matched P-value"] < 0.01
    assert row["Expression-matched P-value"] >= 1 / 301  # the floor its null lists allow


def test_de_markers_come_beside_the_circuit(cells):
    lists = {LABEL: ["CD79A", "CD79B", "MS4A1", "TCL1A", "BANK1", "CD74", "HLA-DRA", "CD37"]}
    table = sct.tl.enrich_circuit(lists, "immune_markers", adata=cells, label_key="bulk_labels", n_null=200)
    markers = table.attrs["de_markers"][LABEL]
    assert len(markers) == 25 and "CD79A" in markers
    b_row = table[table.Term == "B cell"].iloc[0]
    shared = len(set(lists[LABEL]) & set(markers))
    assert b_row["DE marker overlap"] == f"{shared}/25" and b_row["DE markers FDR"] < 0.05


def test_lists_must_be_named_after_cell_types(cells):
    with pytest.raises(ValueError, match="are not labels of adata.obs"):
        sct.tl.enrich_circuit({"B cells": ["CD79A", "CD79B", "MS4A1"]}, "immune_markers", adata=cells,
                              label_key="bulk_labels")
    with pytest.raises(ValueError, match="pass adata too"):
        sct.tl.enrich_circuit({LABEL: ["CD79A"]}, "immune_markers", background=["CD79A"], label_key="bulk_labels")


def test_control_headline_says_when_features_do_not_beat_random_directions():
    from sctranscoder.tl._controls import COLUMNS

    def table(random_enriched, p):
        # 250 trained features fire and 200 have a list long enough to test; 40 random directions have not
        frame = pd.DataFrame([[1, "trained", 250, 200, 30, 0.15, np.nan, ""],
                              [1, "random_directions", 250, 210, random_enriched, random_enriched / 210, p, ""],
                              [1, "untrained_model", 0, 0, 0, np.nan, np.nan, "skipped (untrained=False): not run"]],
                             columns=COLUMNS)
        frame.attrs["settings"] = {"max_fdr": 0.05}
        return frame

    beaten = sct.tl.control_headline(table(4, 1e-6), 1)
    assert "15% of layer 1's testable features (30 of 200: those with at least 3 genes on their list, of 250 " \
        "that fire)" in beaten
    assert "against 2% of random directions that fire as often (4 of 210 testable; p = 1e-06)" in beaten
    assert "not enriched more often" not in beaten and "Not run here" in beaten
    tied = sct.tl.control_headline(table(28, 0.4), 1)
    assert "; so are 13% of random directions that fire as often (28 of 210 testable; p = 0.40)" in tied
    assert "not enriched more often" in tied
    clause = sct.tl.control_clause(table(28, 0.4), 1)
    assert "15% of layer 1's testable features" in clause and "no more than chance" in clause
    with pytest.raises(ValueError, match="no n_listable column"):  # an older table: another denominator
        sct.tl.control_headline(table(4, 1e-6).drop(columns="n_listable"), 1)
    with pytest.raises(ValueError, match="no trained row for layer 3"):
        sct.tl.control_headline(table(4, 1e-6), 3)
