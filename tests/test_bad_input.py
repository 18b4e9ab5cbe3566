import anndata as ad
import numpy as np
import pytest
from conftest import make_adata, make_counts

import sctranscoder as sct


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_values_name_the_cells(bad):
    dense = make_counts(seed=1)
    dense[3, 4] = bad
    dense[17, 0] = bad
    adata = make_adata(dense)
    with pytest.raises(ValueError, match=r"NaN or infinite.*'cell3', 'cell17'"):
        sct.pp.cell_sentences(adata, progress=False)


def test_negative_values_suggest_raw(pbmc):
    with pytest.raises(ValueError, match=r"negative values in cells .*\(700 in all\)") as error:
        sct.pp.cell_sentences(pbmc, use_raw=False, progress=False)
    message = str(error.value)
    # Python keywords; a counts layer is not called log-normalized
    assert "use non-negative data: use_raw=True (scanpy keeps log-normalized values in adata.raw) or " \
           "layer='counts' (raw counts;" in message
    assert "--" not in message and "log-normalized layer" not in message


def test_negative_values_in_a_later_chunk(counts_adata):
    counts_adata.X = counts_adata.X.toarray()
    counts_adata.X[100, 2] = -1
    with pytest.raises(ValueError, match=r"negative values in cells 'cell100'"):
        sct.pp.cell_sentences(counts_adata, chunk_size=10, progress=False)


def test_duplicate_gene_names():
    adata = make_adata(make_counts(n_genes=5))
    adata.var_names = ["A", "B", "A", "C", "B"]
    with pytest.raises(ValueError, match=r"Duplicate gene names in adata.var_names: 'A', 'B'.*var_names_make_unique"):
        sct.pp.cell_sentences(adata, progress=False)


def test_names_that_collide_after_uppercasing():
    adata = make_adata(make_counts(n_genes=4, rate=5))
    adata.var_names = ["Actb", "ACTB", "Gapdh", "Cd4"]
    with pytest.raises(ValueError, match=r"collide after uppercasing.*'Actb / ACTB'.*uppercase=False"):
        sct.pp.cell_sentences(adata, progress=False)
    sct.pp.cell_sentences(adata, uppercase=False, progress=False)
    assert list(adata.uns["c2s"]["genes"]) == ["Actb", "ACTB", "Gapdh", "Cd4"]


def test_missing_gene_symbols_column(counts_adata):
    counts_adata.var["ensembl"] = "x"
    with pytest.raises(KeyError, match=r"gene_symbols='symbol' is not a column of adata.var \(columns: \['ensembl'\]\)"):
        sct.pp.cell_sentences(counts_adata, gene_symbols="symbol", progress=False)


def test_duplicate_gene_symbols(counts_adata):
    counts_adata.var["symbol"] = ["X"] * counts_adata.n_vars
    with pytest.raises(ValueError, match=r"Duplicate gene names in adata.var\['symbol'\]"):
        sct.pp.cell_sentences(counts_adata, gene_symbols="symbol", progress=False)


def test_empty_cells_warn_once_with_count():
    dense = make_counts(seed=2)
    dense[[0, 7, 8]] = 0
    adata = make_adata(dense)
    with pytest.warns(UserWarning, match="3 of 120 cells express no gene") as record:
        sct.pp.cell_sentences(adata, chunk_size=5, progress=False)
    assert len([w for w in record if "express no gene" in str(w.message)]) == 1
    s = sct.get.sentences(adata)
    assert s[0] == s[7] == s[8] == "" and s[1] != ""


@pytest.mark.parametrize("kwargs, match", [
    ({"tie_break": "lexical"}, "tie_break='lexical' is not one of"),
    ({"n_genes": 0}, "n_genes=0 must be a positive integer"),
    ({"n_genes": 2.5}, "n_genes=2.5 must be a positive integer"),
    ({"chunk_size": 0}, "chunk_size=0 must be a positive integer"),
    ({"use_raw": True}, "use_raw=True but adata.raw is None"),
    ({"layer": "counts", "use_raw": True}, "either layer"),
])
def test_bad_arguments(counts_adata, kwargs, match):
    with pytest.raises(ValueError, match=match):
        sct.pp.cell_sentences(counts_adata, progress=False, **kwargs)


def test_missing_layer(counts_adata):
    with pytest.raises(KeyError, match=r"layer='counts' is not in adata.layers"):
        sct.pp.cell_sentences(counts_adata, layer="counts", progress=False)


def test_backed_csc_is_refused_with_the_fix(tmp_path):
    adata = make_adata(make_counts(), "csc")
    adata.write_h5ad(tmp_path / "csc.h5ad")
    backed = ad.read_h5ad(tmp_path / "csc.h5ad", backed="r")
    with pytest.raises(ValueError, match="stored as CSC.*tocsr"):
        sct.pp.cell_sentences(backed, progress=False)


def test_sentences_before_ranking(counts_adata):
    with pytest.raises(KeyError, match=r"run sct.pp.cell_sentences\(adata\) first"):
        sct.get.sentences(counts_adata)
