import numpy as np

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
