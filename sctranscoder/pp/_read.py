"""Cell sentences read back from the stored rankings: gene indices, gene names, sentences as strings."""

from __future__ import annotations

import numpy as np

from . import _ranking
from ._sentences import PARAMS_KEY, RANKS_KEY

_ROWS_PER_BLOCK = 2048

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
    if n_genes is not None and (not isinstance(n_genes, (int, np.integer)) or n_genes < 1):
        raise ValueError(f"n_genes={n_genes!r} must be a positive integer, or None for every stored gene.")
    ranks = adata.obsm[RANKS_KEY].tocsr()
    indptr = ranks.indptr.astype(np.int64)
    counts = np.diff(indptr) if n_genes is None else np.minimum(np.diff(indptr), n_genes)
    out_ptr = np.zeros_like(indptr)
    np.cumsum(counts, out=out_ptr[1:])
    return out_ptr, _ranking.order_by_rank(indptr, ranks.indices, ranks.data, out_ptr)


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


def encode_names(genes) -> tuple[np.ndarray, np.ndarray]:
    """Gene names as one UTF-8 byte buffer with offsets."""
    encoded = [str(g).encode("utf-8") for g in genes]
    offsets = np.zeros(len(encoded) + 1, np.int64)
    np.cumsum([len(e) for e in encoded], out=offsets[1:])
    return np.frombuffer(b"".join(encoded), np.uint8), offsets


def join_sentences_arrow(indptr, ordered, encoded_names, delimiter: str = " "):
    """Sentences as an Arrow string array, built from one UTF-8 buffer (no Python strings).

    ``encoded_names`` is :func:`encode_names` of the gene list, computed once by the caller.
    """
    import pyarrow as pa

    name_bytes, name_offsets = encoded_names
    sep = np.frombuffer(delimiter.encode("utf-8"), np.uint8)
    buffer, offsets = _ranking.join_names(np.asarray(indptr, np.int64), ordered, name_bytes, name_offsets, sep)
    return pa.LargeStringArray.from_buffers(offsets.size - 1, pa.py_buffer(offsets), pa.py_buffer(buffer))


def join_sentences(indptr, ordered, genes, delimiter: str = " ") -> list[str]:
    """Join gene names row by row: compiled joins of row blocks (a small buffer, reused), one decode per sentence."""
    name_bytes, name_offsets = encode_names(genes)
    sep = np.frombuffer(delimiter.encode("utf-8"), np.uint8)
    indptr = np.asarray(indptr, np.int64)
    out: list[str] = []
    for start in range(0, indptr.size - 1, _ROWS_PER_BLOCK):
        stop = min(start + _ROWS_PER_BLOCK, indptr.size - 1)
        lo = indptr[start]
        buffer, offsets = _ranking.join_names(indptr[start : stop + 1] - lo, ordered[lo : indptr[stop]],
                                              name_bytes, name_offsets, sep)
        view = memoryview(buffer)
        bounds = offsets.tolist()
        out.extend(str(view[a:b], "utf-8") for a, b in zip(bounds[:-1], bounds[1:]))
    return out
