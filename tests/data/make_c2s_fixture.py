"""Make the cell2sentence 1.2.0 fixture the tie_break="c2s" tests compare against.

Run once, in an environment with cell2sentence==1.2.0 installed (pip install
".[bench]"), from the repository root:

    python tests/data/make_c2s_fixture.py

It writes tests/data/c2s_fixture.json.gz: the sentences cell2sentence's
CSData.adata_to_arrow produced, and the synthetic inputs it produced them from.
"""

import gzip
import json
from pathlib import Path

import anndata as ad
import cell2sentence
import numpy as np
import scanpy as sc
from scipy import sparse


def synthetic_counts():
    """Small integer counts with many ties and some explicitly stored zeros."""
    rng = np.random.default_rng(7)
    dense = rng.poisson(0.8, size=(60, 45)).astype(np.float32)
    dense[5] = 0  # an empty cell
    matrix = sparse.csr_matrix(dense)
    # store explicit zeros in a few rows: cell2sentence keeps them, at the end of the sentence
    rows, cols = np.nonzero(dense[:10] == 0)
    with_zeros = sparse.csr_matrix((np.concatenate([matrix.data, np.zeros(rows.size, np.float32)]),
                                    (np.concatenate([matrix.nonzero()[0], rows]),
                                     np.concatenate([matrix.nonzero()[1], cols]))), shape=dense.shape)
    with_zeros.sum_duplicates()
    return with_zeros


def run_c2s(adata):
    arrow, _ = cell2sentence.CSData.adata_to_arrow(adata, random_state=42)
    return list(arrow["cell_sentence"])


def main():
    pbmc = sc.datasets.pbmc68k_reduced()
    pbmc_raw = ad.AnnData(pbmc.raw.X.copy(), obs=pbmc.obs[[]].copy(), var=pbmc.raw.var[[]].copy())
    counts = synthetic_counts()
    genes = [f"Gene{i}-a.{i % 7}" for i in range(counts.shape[1])]
    synthetic = ad.AnnData(counts, var={"n": np.arange(counts.shape[1])})
    synthetic.var_names = genes
    synthetic.obs_names = [f"cell{i}" for i in range(counts.shape[0])]
    fixture = {
        "cell2sentence_version": cell2sentence.__version__ if hasattr(cell2sentence, "__version__") else "1.2.0",
        "pbmc68k_raw": run_c2s(pbmc_raw),
        "synthetic": {
            "indptr": counts.indptr.tolist(),
            "indices": counts.indices.tolist(),
            "data": counts.data.tolist(),
            "shape": list(counts.shape),
            "genes": genes,
            "sentences": run_c2s(synthetic),
        },
    }
    out = Path(__file__).with_name("c2s_fixture.json.gz")
    with gzip.open(out, "wt") as f:
        json.dump(fixture, f)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
