"""Slow, obviously right cell-sentence rankings to test the compiled kernels against."""

import numpy as np
from scipy import sparse
from sklearn.utils import shuffle


def stable_rankings(dense, n_genes=None):
    """Genes with non-zero value, by descending value, ties in gene order."""
    out = []
    for row in np.asarray(dense):
        genes = [g for g in range(row.size) if row[g] != 0]
        genes.sort(key=lambda g: (-float(row[g]), g))
        out.append(genes[:n_genes] if n_genes else genes)
    return out


def c2s_rankings(matrix, seed=42, n_genes=None):
    """cell2sentence 1.2.0's generate_sentences, as integer gene indices, zeros removed."""
    mat = sparse.csr_matrix(matrix, copy=True)
    mat.sum_duplicates()  # cell2sentence's vocabulary step (X > 0) sorts the matrix in place
    state = np.random.RandomState(seed)
    out = []
    for i in range(mat.shape[0]):
        cols = mat.indices[mat.indptr[i] : mat.indptr[i + 1]]
        vals = mat.data[mat.indptr[i] : mat.indptr[i + 1]]
        cols, vals = shuffle(cols, vals, random_state=state)
        order = np.argsort(-vals, kind="stable")
        genes = [int(cols[j]) for j in order if vals[j] != 0]
        out.append(genes[:n_genes] if n_genes else genes)
    return out


def rankings_of(adata):
    indptr, genes = __import__("sctranscoder").get.ranked_genes(adata)
    return [genes[indptr[i] : indptr[i + 1]].tolist() for i in range(indptr.size - 1)]
