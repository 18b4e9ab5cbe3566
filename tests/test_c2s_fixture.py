"""tie_break="c2s" against sentences that cell2sentence 1.2.0 really produced
(tests/data/make_c2s_fixture.py made the fixture)."""

import gzip
import json
from pathlib import Path

import anndata as ad
import numpy as np
import pytest
from scipy import sparse

import sctranscoder as sct

FIXTURE = Path(__file__).parent / "data" / "c2s_fixture.json.gz"


@pytest.fixture(scope="module")
def fixture():
    with gzip.open(FIXTURE, "rt") as f:
        return json.load(f)


@pytest.mark.parametrize("chunk_size", [8192, 97])
def test_pbmc_byte_identical(fixture, pbmc, chunk_size):
    sct.pp.cell_sentences(pbmc, use_raw=True, tie_break="c2s", chunk_size=chunk_size, progress=False)
    ours = sct.get.sentences(pbmc)
    assert len(ours) == len(fixture["pbmc68k_raw"]) == 700
    assert ours == fixture["pbmc68k_raw"]


def _synthetic(fixture):
    s = fixture["synthetic"]
    matrix = sparse.csr_matrix((np.array(s["data"], np.float32), s["indices"], s["indptr"]), shape=s["shape"])
    adata = ad.AnnData(matrix)
    adata.var_names = s["genes"]
    return adata, s["sentences"]


def test_synthetic_with_explicit_zeros(fixture):
    adata, expected = _synthetic(fixture)
    matrix = adata.X.copy()
    assert (matrix.data == 0).any(), "the fixture should store explicit zeros"
    with pytest.warns(UserWarning, match="1 of 60 cells express no gene"):
        sct.pp.cell_sentences(adata, tie_break="c2s", chunk_size=7, progress=False)
    ours = sct.get.sentences(adata)
    names = np.char.upper(np.asarray(adata.var_names, dtype=str))
    for i, (mine, theirs) in enumerate(zip(ours, expected)):
        row = matrix.getrow(i)
        if (row.data == 0).any():
            # cell2sentence appends explicitly stored zeros; sentences drop them
            expressed = set(names[row.indices[row.data != 0]])
            theirs = " ".join(g for g in theirs.split(" ") if g in expressed)
        assert mine == theirs, i
    assert ours[5] == ""
