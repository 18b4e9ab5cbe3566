
import numpy as np
import pandas as pd
import pytest
from conftest import make_adata, make_counts

import sctranscoder as sct


def test_to_dataset(pbmc):
    sct.pp.cell_sentences(pbmc, progress=False)
    ds = sct.pp.to_dataset(pbmc, ["bulk_labels", "louvain"], n_genes=10)
    assert ds.column_names == ["cell_name", "cell_sentence", "bulk_labels", "louvain"]
    assert ds.num_rows == 700
    assert ds[0]["cell_name"] == pbmc.obs_names[0]
    assert ds[0]["cell_sentence"] == sct.get.sentences(pbmc, n_genes=10)[0]
    assert ds[3]["bulk_labels"] == str(pbmc.obs.bulk_labels.iloc[3])
    with pytest.raises(KeyError, match="'celltype' is not a column"):
        sct.pp.to_dataset(pbmc, ["celltype"])
    with pytest.raises(ValueError, match="clashes"):
        pbmc.obs["cell_sentence"] = "x"
        sct.pp.to_dataset(pbmc, ["cell_sentence"])


def test_stream_backed_file_to_parquet(tmp_path):
    adata = make_adata(make_counts(n_cells=300, seed=3))
    adata.obs["label"] = np.where(np.arange(300) % 2, "B cell", "T cell")
    adata.write_h5ad(tmp_path / "cells.h5ad")
    out = sct.pp.write_sentences(tmp_path / "cells.h5ad", tmp_path / "out" / "s.parquet", obs_columns=["label"],
                                 n_genes=8, tie_break="c2s", chunk_size=37, progress=False)
    table = pd.read_parquet(out)
    assert list(table.columns) == ["cell_name", "cell_sentence", "label"]
    sct.pp.cell_sentences(adata, n_genes=8, tie_break="c2s", progress=False)
    assert table.cell_sentence.tolist() == sct.get.sentences(adata)
    assert table.cell_name.tolist() == list(adata.obs_names)
    assert table.label.tolist() == adata.obs.label.tolist()
    assert [p.name for p in out.parent.iterdir()] == ["s.parquet"]


def test_failed_stream_leaves_nothing(tmp_path):
    dense = make_counts(n_cells=100, seed=4)
    dense[90, 1] = np.nan  # fails in the last chunk, after earlier chunks were written
    make_adata(dense).write_h5ad(tmp_path / "bad.h5ad")
    with pytest.raises(ValueError, match="'cell90'"):
        sct.pp.write_sentences(tmp_path / "bad.h5ad", tmp_path / "s.parquet", chunk_size=10, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.h5ad"]


def test_stream_in_memory_adata_matches(pbmc, tmp_path):
    path = sct.pp.write_sentences(pbmc, tmp_path / "p.parquet", tie_break="stable", progress=False)
    sct.pp.cell_sentences(pbmc, tie_break="stable", progress=False)
    assert pd.read_parquet(path).cell_sentence.tolist() == sct.get.sentences(pbmc)
    with pytest.raises(IsADirectoryError):
        sct.pp.write_sentences(pbmc, tmp_path, progress=False)
