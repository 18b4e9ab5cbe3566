import anndata as ad
import numpy as np
import pytest
from scipy import sparse

import sctranscoder as sct


@pytest.fixture(scope="session")
def pbmc_template():
    return sct.datasets.pbmc68k_reduced()


@pytest.fixture(scope="session")
def tokenizer(pbmc_template):
    """A small byte-level BPE tokenizer learned on pbmc68k sentences and prompts."""
    pbmc = pbmc_template.copy()
    sct.pp.cell_sentences(pbmc, n_genes=30, progress=False)
    texts = sct.get.sentences(pbmc) + list(sct.pp.prompts(pbmc, label_key="bulk_labels").prompt)
    return sct.models.train_tokenizer(texts, kind="byte_bpe", vocab_size=400)


@pytest.fixture
def pbmc(pbmc_template):
    return pbmc_template.copy()


def make_counts(n_cells=120, n_genes=60, seed=0, rate=0.7, dtype=np.float32):
    """Small Poisson counts: many ties, some all-zero genes per cell."""
    rng = np.random.default_rng(seed)
    return rng.poisson(rate, size=(n_cells, n_genes)).astype(dtype)


def make_adata(dense, fmt="csr"):
    matrix = {"dense": dense, "csr": sparse.csr_matrix(dense), "csc": sparse.csc_matrix(dense)}[fmt]
    adata = ad.AnnData(matrix)
    adata.var_names = [f"Gene{i}" for i in range(dense.shape[1])]
    adata.obs_names = [f"cell{i}" for i in range(dense.shape[0])]
    return adata


@pytest.fixture
def counts_adata():
    return make_adata(make_counts())
