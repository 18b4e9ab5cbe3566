"""Cell sentences as strings, built on demand from the stored rankings."""

from __future__ import annotations

import numpy as np

from ..pp import _ranking
from ..pp._sentences import PARAMS_KEY, RANKS_KEY

_ROWS_PER_BLOCK = 4096


def _require_sentences(adata) -> None:
    if RANKS_KEY not in adata.obsm or PARAMS_KEY not in adata.uns:
        raise KeyError(
            f"adata has no cell sentences (adata.obsm[{RANKS_KEY!r}] / adata.uns[{PARAMS_KEY!r}]); "
            "run sct.pp.cell_sentences(adata) first."
        )


def stored_genes(adata) -> np.ndarray:
    """The gene names the stored rankings index (as written in sentences)."""
    _require_sentences(adata)
    return np.asarray(adata.uns[PARAMS_KEY]["genes"], dtype=object)


def ranked_genes(adata, n_genes: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Each cell's genes, best first, as CSR-style ``(indptr, gene_indices)``.

    ``gene_indices`` index ``adata.uns['c2s']['genes']``. ``n_genes`` truncates
    every cell to its top genes.
    """
    _require_sentences(adata)
    ranks = adata.obsm[RANKS_KEY].tocsr()
    indptr = ranks.indptr.astype(np.int64)
    ordered = _ranking.order_by_rank(indptr, ranks.indices, ranks.data)
    if n_genes is None:
        return indptr, ordered
    if n_genes < 1:
        raise ValueError(f"n_genes={n_genes!r} must be a positive integer, or None for every stored gene.")
    counts = np.minimum(np.diff(indptr), n_genes)
    keep = np.arange(ordered.size) - np.repeat(indptr[:-1], np.diff(indptr)) < np.repeat(counts, np.diff(indptr))
    new_indptr = np.zeros_like(indptr)
    np.cumsum(counts, out=new_indptr[1:])
    return new_indptr, ordered[keep]


def sentences(adata, n_genes: int | None = None, delimiter: str = " ") -> list[str]:
    """Cell sentences as strings, one per cell in ``adata.obs_names`` order.

    Parameters
    ----------
    adata
        AnnData on which :func:`sctranscoder.pp.cell_sentences` ran.
    n_genes
        Keep the top ``n_genes`` of each cell (``None``: every stored gene).
    delimiter
        Written between gene names.

    Returns
    -------
    One string per cell.
    """
    indptr, ordered = ranked_genes(adata, n_genes)
    return join_sentences(indptr, ordered, stored_genes(adata), delimiter)


def join_sentences(indptr: np.ndarray, ordered: np.ndarray, genes: np.ndarray, delimiter: str = " ") -> list[str]:
    """Join gene names row by row (blocks bound the temporary list of names)."""
    out: list[str] = []
    n = indptr.size - 1
    join = delimiter.join
    for start in range(0, n, _ROWS_PER_BLOCK):
        stop = min(start + _ROWS_PER_BLOCK, n)
        lo = indptr[start]
        names = genes[ordered[lo : indptr[stop]]].tolist()
        bounds = (indptr[start : stop + 1] - lo).tolist()
        out.extend(join(names[a:b]) for a, b in zip(bounds[:-1], bounds[1:]))
    return out
