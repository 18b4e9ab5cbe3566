import numpy as np
import pytest

import sctranscoder as sct


def test_pbmc68k_reduced(pbmc):
    assert pbmc.shape == (700, 765)
    assert pbmc.raw is not None and pbmc.raw.shape == (700, 765)
    raw = pbmc.raw.X
    assert raw.min() >= 0 and np.isfinite(raw.data).all()
    assert pbmc.obs.bulk_labels.nunique() == 10
    assert "louvain" in pbmc.obs
    assert sct.datasets.pbmc68k_reduced() is not sct.datasets.pbmc68k_reduced()


def test_namespaces():
    for name in ["pp", "tl", "pl", "get", "datasets"]:
        assert hasattr(sct, name)


def test_simulated_is_balanced_sparse_and_seeded():
    adata = sct.datasets.simulated(n_cells=120, n_types=4, n_genes=300, seed=3)
    assert adata.shape == (120, 300)
    assert (adata.obs.cell_type.value_counts() == 30).all()
    density = (adata.layers["counts"] > 0).mean()
    assert 0.1 < density < 0.6  # dropout: many zeros, as in droplet data
    assert np.allclose(np.expm1(adata.X).sum(axis=1), 1e4, rtol=1e-4)
    again = sct.datasets.simulated(n_cells=120, n_types=4, n_genes=300, seed=3)
    assert (adata.layers["counts"] != again.layers["counts"]).nnz == 0
    markers = adata.uns["markers"]["type 1"]
    by_type = adata[:, markers].layers["counts"].mean(axis=0)
    assert np.asarray(adata[adata.obs.cell_type == "type 1", markers].layers["counts"].mean(axis=0)).mean() \
        > 1.5 * np.asarray(by_type).mean()
    with pytest.raises(ValueError, match="n_genes"):
        sct.datasets.simulated(n_genes=50)
