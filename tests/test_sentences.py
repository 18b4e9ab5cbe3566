import anndata as ad
import numpy as np
import pytest
from conftest import make_adata, make_counts
from reference import c2s_rankings, rankings_of, stable_rankings
from scipy import sparse

import sctranscoder as sct


@pytest.mark.parametrize("fmt", ["dense", "csr", "csc"])
@pytest.mark.parametrize("n_genes", [None, 1, 7])
def test_stable_matches_reference(fmt, n_genes):
    dense = make_counts(seed=1)
    adata = make_adata(dense, fmt)
    sct.pp.cell_sentences(adata, n_genes=n_genes, tie_break="stable", chunk_size=17, progress=False)
    assert rankings_of(adata) == stable_rankings(dense, n_genes)


@pytest.mark.parametrize("n_genes", [None, 5])
def test_c2s_matches_reference_across_chunks(n_genes):
    dense = make_counts(n_cells=200, seed=2)
    adata = make_adata(dense)
    sct.pp.cell_sentences(adata, n_genes=n_genes, tie_break="c2s", chunk_size=23, progress=False)
    assert rankings_of(adata) == c2s_rankings(dense, seed=42, n_genes=n_genes)


def test_c2s_seed_is_used():
    dense = make_counts(seed=3)
    adata = make_adata(dense)
    sct.pp.cell_sentences(adata, tie_break="c2s", seed=7, progress=False)
    assert rankings_of(adata) == c2s_rankings(dense, seed=7)
    assert rankings_of(adata) != c2s_rankings(dense, seed=42)


def _assert_valid_ranking(dense, rankings):
    for row, genes in zip(np.asarray(dense), rankings):
        assert sorted(genes) == list(np.flatnonzero(row))
        values = row[genes]
        assert np.all(np.diff(values) <= 0)


def test_random_is_valid_reproducible_and_chunk_independent():
    dense = make_counts(n_cells=150, seed=4)
    a, b, c = (make_adata(dense) for _ in range(3))
    sct.pp.cell_sentences(a, tie_break="random", seed=1, chunk_size=1000, progress=False)
    sct.pp.cell_sentences(b, tie_break="random", seed=1, chunk_size=11, progress=False)
    sct.pp.cell_sentences(c, tie_break="random", seed=2, progress=False)
    _assert_valid_ranking(dense, rankings_of(a))
    assert rankings_of(a) == rankings_of(b)
    assert rankings_of(a) != rankings_of(c)


def test_random_ties_are_shuffled_uniformly():
    # every gene ties in every cell: the first gene should be uniform over genes
    dense = np.ones((4000, 8), np.float32)
    adata = make_adata(dense)
    sct.pp.cell_sentences(adata, tie_break="random", progress=False)
    first = np.array([r[0] for r in rankings_of(adata)])
    counts = np.bincount(first, minlength=8)
    expected = dense.shape[0] / 8
    chi2 = ((counts - expected) ** 2 / expected).sum()
    assert chi2 < 30, counts  # 7 degrees of freedom: p < 1e-4 beyond 30
    assert len({tuple(r) for r in rankings_of(adata)}) > 3000


def test_explicit_zeros_are_dropped():
    dense = make_counts(seed=5)
    matrix = sparse.csr_matrix(dense)
    rows, cols = np.nonzero(dense == 0)
    with_zeros = sparse.csr_matrix(
        (np.concatenate([matrix.data, np.zeros(rows.size, np.float32)]),
         (np.concatenate([matrix.nonzero()[0], rows]), np.concatenate([matrix.nonzero()[1], cols]))),
        shape=dense.shape,
    )
    assert with_zeros.nnz == dense.size
    adata = make_adata(dense)
    adata.X = with_zeros
    sct.pp.cell_sentences(adata, tie_break="stable", progress=False)
    assert rankings_of(adata) == stable_rankings(dense)


def test_unsorted_csr_indices_stable_is_gene_order():
    dense = make_counts(seed=6)
    matrix = sparse.csr_matrix(dense)
    rng = np.random.default_rng(0)
    for i in range(matrix.shape[0]):  # shuffle the stored order inside every row
        lo, hi = matrix.indptr[i], matrix.indptr[i + 1]
        p = rng.permutation(hi - lo) + lo
        matrix.indices[lo:hi], matrix.data[lo:hi] = matrix.indices[p], matrix.data[p]
    matrix.has_sorted_indices = False
    adata = make_adata(dense)
    adata.X = matrix
    sct.pp.cell_sentences(adata, tie_break="stable", progress=False)
    assert rankings_of(adata) == stable_rankings(dense)


@pytest.mark.parametrize("dtype", [np.float64, np.int32, np.int64, np.uint16])
def test_value_dtypes(dtype):
    dense = make_counts(seed=8).astype(dtype)
    adata = make_adata(dense)
    sct.pp.cell_sentences(adata, tie_break="stable", progress=False)
    assert rankings_of(adata) == stable_rankings(dense)


def test_float64_values_that_float32_would_merge():
    dense = np.array([[1.0, 1.0 + 1e-12, 0.0, 1.0 + 2e-12], [3.0, 2.0, 1.0, 0.5]])
    adata = make_adata(dense)
    sct.pp.cell_sentences(adata, tie_break="stable", progress=False)
    assert rankings_of(adata) == [[3, 1, 0], [0, 1, 2, 3]]


def test_backed_h5ad(tmp_path):
    dense = make_counts(n_cells=90, seed=9)
    make_adata(dense).write_h5ad(tmp_path / "x.h5ad")
    backed = ad.read_h5ad(tmp_path / "x.h5ad", backed="r")
    sct.pp.cell_sentences(backed, tie_break="c2s", chunk_size=13, progress=False)
    assert rankings_of(backed) == c2s_rankings(dense)


def test_backed_dense_h5ad(tmp_path):
    dense = make_counts(n_cells=40, seed=10)
    make_adata(dense, "dense").write_h5ad(tmp_path / "d.h5ad")
    backed = ad.read_h5ad(tmp_path / "d.h5ad", backed="r")
    sct.pp.cell_sentences(backed, tie_break="stable", chunk_size=9, progress=False)
    assert rankings_of(backed) == stable_rankings(dense)


def test_storage_is_compact_and_follows_subsetting(counts_adata):
    sct.pp.cell_sentences(counts_adata, progress=False)
    ranks = counts_adata.obsm["c2s_ranks"]
    assert sparse.issparse(ranks) and ranks.dtype.kind == "u"
    params = counts_adata.uns["c2s"]
    assert params["tie_break"] == "random" and params["seed"] == 42 and params["n_genes"] == -1
    assert list(params["genes"][:2]) == ["GENE0", "GENE1"]
    full = sct.get.sentences(counts_adata)
    subset = counts_adata[[5, 2, 9]].copy()
    assert sct.get.sentences(subset) == [full[5], full[2], full[9]]


def test_h5ad_round_trip(counts_adata, tmp_path):
    sct.pp.cell_sentences(counts_adata, progress=False)
    counts_adata.write_h5ad(tmp_path / "s.h5ad")
    back = ad.read_h5ad(tmp_path / "s.h5ad")
    assert sct.get.sentences(back) == sct.get.sentences(counts_adata)


def test_get_sentences_strings(counts_adata):
    sct.pp.cell_sentences(counts_adata, tie_break="stable", progress=False)
    dense = counts_adata.X.toarray()
    expected = [",".join(f"GENE{g}" for g in genes[:3]) for genes in stable_rankings(dense)]
    assert sct.get.sentences(counts_adata, n_genes=3, delimiter=",") == expected


def test_options(pbmc):
    sct.pp.cell_sentences(pbmc, uppercase=False, n_genes=3, tie_break="stable", progress=False)
    assert sct.get.sentences(pbmc)[0] == "FTL CD74 AIF1"  # raw is used by default
    pbmc.var["symbol"] = [f"sym_{g}" for g in pbmc.var_names]
    pbmc.raw.var["symbol"] = [f"sym_{g}" for g in pbmc.raw.var_names]
    copy = sct.pp.cell_sentences(pbmc, gene_symbols="symbol", n_genes=2, tie_break="stable",
                                 progress=False, copy=True)
    assert sct.get.sentences(copy)[0] == "SYM_FTL SYM_CD74"
    assert sct.get.sentences(pbmc)[0] == "FTL CD74 AIF1"  # copy=True left the original alone


def test_layer(counts_adata):
    counts_adata.layers["counts"] = counts_adata.X.copy()
    counts_adata.X = counts_adata.X * -1.0
    sct.pp.cell_sentences(counts_adata, layer="counts", tie_break="stable", progress=False)
    assert rankings_of(counts_adata) == stable_rankings(counts_adata.layers["counts"].toarray())
    assert counts_adata.uns["c2s"]["source"] == "adata.layers['counts']"


def test_duplicate_entries_are_summed():
    # non-canonical CSR: gene 1 stored twice in cell 0 (1 + 3 = 4 beats gene 0's 2)
    matrix = sparse.csr_matrix((np.array([2.0, 1.0, 3.0, 5.0], np.float32), np.array([0, 1, 1, 2]),
                                np.array([0, 3, 4])), shape=(2, 3))
    adata = make_adata(np.zeros((2, 3), np.float32))
    adata.X = matrix
    sct.pp.cell_sentences(adata, tie_break="stable", progress=False)
    assert sct.get.sentences(adata) == ["GENE1 GENE0", "GENE2"]


@pytest.mark.parametrize("tie_break", ["stable", "c2s"])
def test_negative_zero_is_a_zero(tie_break):
    # every entry stored, the zeros as -0.0 (sign bit set): they must be dropped, not ranked
    dense = make_counts(seed=11)
    rows, cols = np.indices(dense.shape)
    full = sparse.csr_matrix((np.where(dense == 0, -0.0, dense).ravel(), (rows.ravel(), cols.ravel())),
                             shape=dense.shape)
    assert (np.signbit(full.data) & (full.data == 0)).any()
    adata = make_adata(dense)
    adata.X = full
    for n_genes in (None, 3):
        sct.pp.cell_sentences(adata, tie_break=tie_break, n_genes=n_genes, progress=False)
        expected = stable_rankings(dense, n_genes) if tie_break == "stable" else c2s_rankings(full, n_genes=n_genes)
        assert rankings_of(adata) == expected


def test_sentences_do_not_rely_on_stored_order(counts_adata):
    sct.pp.cell_sentences(counts_adata, progress=False)
    expected = sct.get.sentences(counts_adata, n_genes=4)
    ranks = counts_adata.obsm["c2s_ranks"]
    rng = np.random.default_rng(0)
    for i in range(ranks.shape[0]):  # shuffle each row's stored entries, keeping (gene, rank) pairs
        lo, hi = ranks.indptr[i], ranks.indptr[i + 1]
        p = rng.permutation(hi - lo) + lo
        ranks.indices[lo:hi], ranks.data[lo:hi] = ranks.indices[p], ranks.data[p]
    assert sct.get.sentences(counts_adata, n_genes=4) == expected
    with pytest.raises(ValueError, match="n_genes=0"):
        sct.get.sentences(counts_adata, n_genes=0)


# -- random ties keyed on the cell's name -------------------------------------------------------------------------
@pytest.mark.parametrize("n_genes", [None, 6])
def test_random_ties_give_a_cell_the_same_sentence_in_any_subset_or_order(n_genes):
    """Ties keyed on obs names: a cell's sentence does not depend on the cells ranked with it (rows did)."""
    dense = make_counts(n_cells=300, n_genes=40, seed=13, rate=1.0)  # integer counts: ties in every cell
    full = make_adata(dense)
    sct.pp.cell_sentences(full, n_genes=n_genes, tie_break="random", seed=5, progress=False)
    expected = dict(zip(full.obs_names, rankings_of(full)))
    rng = np.random.default_rng(0)
    third = np.sort(rng.choice(300, 100, replace=False))
    shuffled = rng.permutation(300)
    for rows in (third, shuffled, third[::-1], np.array([299])):
        part = full[rows].copy()
        del part.obsm["c2s_ranks"], part.uns["c2s"]
        sct.pp.cell_sentences(part, n_genes=n_genes, tie_break="random", seed=5, chunk_size=7, progress=False)
        assert rankings_of(part) == [expected[name] for name in part.obs_names]
    assert full.uns["c2s"]["tie_key"] == "name"


def test_row_keyed_ties_reproduce_sentences_made_before_name_keys():
    """tie_key="row" gives exactly the sentences of the row-keyed kernel (recorded from it), which subsets change."""
    import hashlib

    small = make_adata(make_counts(n_cells=5, n_genes=10, seed=11, rate=1.0))
    sct.pp.cell_sentences(small, tie_break="random", seed=42, tie_key="row", progress=False)
    assert rankings_of(small) == [[6, 7, 1, 4], [1, 8, 5, 0, 4, 6, 9, 2], [4, 8, 0], [9, 6, 1, 7], [8, 0, 9, 5, 4]]
    assert small.uns["c2s"]["tie_key"] == "row"
    larger = make_adata(make_counts(n_cells=300, seed=12))
    sct.pp.cell_sentences(larger, tie_break="random", seed=3, n_genes=20, chunk_size=70, tie_key="row",
                          progress=False)
    digest = hashlib.sha256(repr(rankings_of(larger)).encode()).hexdigest()
    assert digest == "5d83114c8b7a10e6d2e6d909095d19a16bb683ccebafcf640bcab5199e6514ad"
    sct.pp.cell_sentences(small, tie_break="random", seed=42, progress=False)  # name keys: another draw
    assert rankings_of(small) != [[6, 7, 1, 4], [1, 8, 5, 0, 4, 6, 9, 2], [4, 8, 0], [9, 6, 1, 7], [8, 0, 9, 5, 4]]


def test_name_tie_keys_are_fixed_numbers():
    """FNV-1a 64 of the UTF-8 bytes, then splitmix64's finaliser: the same in every process and platform."""
    from sctranscoder.pp._sentences import name_tie_keys

    keys = name_tie_keys(["cell0", "AAACATACAACCAC-1", "é", ""])
    assert keys.dtype == np.uint64
    assert keys.tolist() == [16862856897786056264, 8752117077207372818, 7936488146098753722, 14087677454934409008]


def test_write_sentences_keys_ties_as_cell_sentences(tmp_path):
    import pandas as pd

    adata = make_adata(make_counts(n_cells=40, seed=14))
    for tie_key in ("name", "row"):
        path = sct.pp.write_sentences(adata, tmp_path / f"{tie_key}.parquet", tie_key=tie_key, seed=2, progress=False)
        sct.pp.cell_sentences(adata, tie_key=tie_key, seed=2, progress=False)
        assert pd.read_parquet(path).cell_sentence.tolist() == sct.get.sentences(adata)


def test_unknown_tie_key_is_refused(counts_adata):
    with pytest.raises(ValueError, match="tie_key='obs'"):
        sct.pp.cell_sentences(counts_adata, tie_key="obs", progress=False)
