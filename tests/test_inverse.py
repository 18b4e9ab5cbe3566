import numpy as np
import pytest
from conftest import make_adata

import sctranscoder as sct


def test_recovers_a_planted_line():
    # expression exactly 5 - 2 * log10(1 + rank), with distinct values so ranks are unambiguous
    rng = np.random.default_rng(0)
    n_cells, n_genes = 50, 30
    dense = np.zeros((n_cells, n_genes))
    for i in range(n_cells):
        order = rng.permutation(n_genes)[:20]
        dense[i, order] = 5 - 2 * np.log10(1 + np.arange(20))
    adata = make_adata(dense)
    sct.pp.cell_sentences(adata, progress=False)
    sct.pp.fit_rank_expression(adata)
    fit = adata.uns["c2s_rank_fit"]
    assert fit["slope"] == pytest.approx(-2, abs=1e-9)
    assert fit["intercept"] == pytest.approx(5, abs=1e-9)
    assert fit["r_squared"] == pytest.approx(1) and fit["n_points"] == 50 * 20
    rebuilt = sct.pp.reconstruct_expression(sct.get.sentences(adata), adata=adata)
    np.testing.assert_allclose(rebuilt, dense, atol=1e-5)


def test_pbmc_fit_and_reconstruction(pbmc):
    sct.pp.cell_sentences(pbmc, progress=False)
    fit = sct.pp.fit_rank_expression(pbmc, inplace=False)
    assert "c2s_rank_fit" not in pbmc.uns
    # log-normalized PBMC expression falls with log rank; measured: slope -1.55, r^2 0.91
    assert -2.0 < fit["slope"] < -1.0 and fit["r_squared"] > 0.85
    assert fit["pearson_r"] > 0.9 and fit["spearman_r"] > 0.85
    rebuilt = sct.pp.reconstruct_expression(sct.get.sentences(pbmc), fit=fit, genes=pbmc.uns["c2s"]["genes"])
    true = pbmc.raw.X.toarray()
    expressed = true > 0
    assert np.array_equal(rebuilt != 0, expressed)
    assert np.corrcoef(rebuilt[expressed], true[expressed])[0, 1] > 0.9


def test_unknown_genes_are_reported(pbmc):
    sct.pp.cell_sentences(pbmc, n_genes=5, progress=False)
    sct.pp.fit_rank_expression(pbmc)
    sentence = "FTL NOTAGENE CD74 MADEUP"
    with pytest.warns(UserWarning, match=r"2 words in 1 sentences are not known genes \('NOTAGENE' x1, 'MADEUP' x1\)"):
        values = sct.pp.reconstruct_expression(sentence, adata=pbmc)
    genes = list(pbmc.uns["c2s"]["genes"])
    fit = pbmc.uns["c2s_rank_fit"]
    assert values[genes.index("CD74")] == pytest.approx(fit["intercept"] + fit["slope"] * np.log10(3))
    with pytest.raises(ValueError, match="not known genes"):
        sct.pp.reconstruct_expression(sentence, adata=pbmc, on_unknown="raise")
    _, unknown = sct.pp.reconstruct_expression([sentence, "FTL"], adata=pbmc, on_unknown="ignore", return_unknown=True)
    assert unknown == [["NOTAGENE", "MADEUP"], []]


def test_first_occurrence_wins_and_empty_sentence(pbmc):
    fit = {"slope": -1.0, "intercept": 3.0}
    values = sct.pp.reconstruct_expression(["B A B", ""], fit=fit, genes=["A", "B", "C"])
    assert values[0].tolist() == pytest.approx([3 - np.log10(2), 3.0, 0.0])
    assert values[1].tolist() == [0, 0, 0]


def test_fit_needs_sentences(counts_adata):
    with pytest.raises(KeyError, match="cell_sentences"):
        sct.pp.fit_rank_expression(counts_adata)
    with pytest.raises(KeyError, match="fit_rank_expression"):
        sct.pp.reconstruct_expression("A", adata=counts_adata)
