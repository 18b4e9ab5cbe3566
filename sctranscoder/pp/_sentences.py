"""AnnData expression to cell2sentence rankings (genes by descending expression)."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from scipy import sparse

from .._progress import progress_bar
from . import _ranking
from ._matrix import (
    ExpressionSource,
    check_values,
    iter_csr_chunks,
    select_expression,
    value_codes,
)

logger = logging.getLogger(__name__)

TIE_BREAKS = {"stable": 0, "random": 1, "c2s": 2}
TIE_KEYS = ("name", "row")
"""What seeds a cell's random tie-break: its obs name (a cell keeps its sentence in any subset) or its row."""
TIE_KEY = "name"
LEGACY_TIE_KEY = "row"
"""The tie key of sentences and models recorded before ``tie_key`` existed (their ties were keyed on rows)."""
RANKS_KEY = "c2s_ranks"
PARAMS_KEY = "c2s"
DEFAULT_CHUNK_SIZE = 8192


@dataclass
class RankedChunk:
    """Cells ``start:stop``: their kept genes, best first, as CSR-style arrays."""

    start: int
    stop: int
    indptr: np.ndarray
    genes: np.ndarray
    ranks: np.ndarray
    n_expressed: np.ndarray


class _C2SStream:
    """The MT19937 stream cell2sentence shuffles with, carried across chunks."""

    def __init__(self, seed: int):
        self._state = np.random.RandomState(seed)
        self._pending = np.empty(0, np.uint32)

    def permutations(self, indptr: np.ndarray) -> np.ndarray:
        need = int(indptr[-1]) * 2 + 1024  # rejection sampling draws < 2 per step on average
        while True:
            if self._pending.size < need:
                fresh = self._state.randint(0, 2**32, size=need - self._pending.size, dtype=np.uint32)
                self._pending = np.concatenate([self._pending, fresh])
            perms, used = _ranking.c2s_permutations(indptr, self._pending, 0)
            if used >= 0:
                self._pending = self._pending[used:]
                return perms
            need *= 2


def _check_options(n_genes, tie_break, chunk_size, tie_key=TIE_KEY):
    if tie_break not in TIE_BREAKS:
        raise ValueError(f"tie_break={tie_break!r} is not one of {sorted(TIE_BREAKS)}.")
    if tie_key not in TIE_KEYS:
        raise ValueError(f"tie_key={tie_key!r} is not one of {list(TIE_KEYS)}.")
    if n_genes is not None and (not isinstance(n_genes, (int, np.integer)) or n_genes < 1):
        raise ValueError(f"n_genes={n_genes!r} must be a positive integer, or None for all expressed genes.")
    if not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1:
        raise ValueError(f"chunk_size={chunk_size!r} must be a positive integer.")


def name_tie_keys(names) -> np.ndarray:
    """The 64-bit random tie-break key of each cell name (stable across processes and platforms)."""
    import pyarrow as pa

    names = np.asarray(names, dtype=object)
    try:
        array = pa.array(names, type=pa.large_string())
    except (pa.ArrowTypeError, pa.ArrowInvalid):  # names that are not all strings: their str()
        array = pa.array([str(n) for n in names], type=pa.large_string())
    offsets = np.frombuffer(array.buffers()[1], np.int64)[array.offset : array.offset + len(array) + 1]
    data = array.buffers()[2]
    data = np.frombuffer(data, np.uint8) if data is not None else np.zeros(0, np.uint8)
    return _ranking.name_keys(data, np.ascontiguousarray(offsets))


def tie_keys(obs_names, rows, tie_key: str = TIE_KEY) -> np.ndarray:
    """The random tie-break keys (uint64) of the cells at positions ``rows`` of ``obs_names``."""
    rows = np.asarray(rows, np.int64)
    if tie_key == "row":
        return rows.astype(np.uint64)
    return name_tie_keys(np.asarray(obs_names)[rows])


def rank_chunks(
    source: ExpressionSource,
    *,
    n_genes: int | None = None,
    tie_break: str = "random",
    seed: int = 42,
    tie_key: str = TIE_KEY,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    progress: bool = True,
    out: tuple[np.ndarray, np.ndarray] | None = None,
) -> Iterator[RankedChunk]:
    """Rank the genes of every cell, one chunk of cells at a time.

    ``out``: preallocated ``(genes, ranks)`` arrays large enough for every kept
    gene; chunks are then written into them back to back (no copies to join
    later). Otherwise each chunk gets arrays of its own. ``tie_key``: what seeds each
    cell's random tie-break (``"name"``: its obs name; ``"row"``: its row, as before).
    """
    _check_options(n_genes, tie_break, chunk_size, tie_key)
    mode = TIE_BREAKS[tie_break]
    stream = _C2SStream(seed) if tie_break == "c2s" else None
    no_perms = np.empty(0, np.int64)
    no_keys = np.zeros(0, np.uint64)
    limit = -1 if n_genes is None else int(n_genes)
    rank_dtype = rank_dtype_for(len(source.genes))
    offset = 0
    with progress_bar(total=source.n_obs, unit="cells", desc="cell sentences", enabled=progress) as bar:
        for chunk in iter_csr_chunks(source.matrix, chunk_size):
            codes, n_expressed = _codes_and_counts(chunk, source)
            kept = n_expressed if limit < 0 else np.minimum(n_expressed, limit)
            out_ptr = np.zeros(kept.size + 1, np.int64)
            np.cumsum(kept, out=out_ptr[1:])
            total = int(out_ptr[-1])
            if out is None:
                genes, ranks = np.empty(total, np.int32), np.empty(total, rank_dtype)
            else:
                genes, ranks = out[0][offset : offset + total], out[1][offset : offset + total]
                offset += total
            perms = stream.permutations(chunk.indptr) if stream is not None else no_perms
            keys = (tie_keys(source.obs_names, np.arange(chunk.start, chunk.stop), tie_key)
                    if tie_break == "random" else no_keys)
            _ranking.rank_rows(chunk.indptr, chunk.indices, codes, mode, perms, seed, keys, out_ptr, genes, ranks)
            bar.update(chunk.stop - chunk.start)
            yield RankedChunk(chunk.start, chunk.stop, out_ptr, genes, ranks, n_expressed)


def rank_dtype_for(n_vars: int):
    return np.uint16 if n_vars < np.iinfo(np.uint16).max else np.uint32


def _codes_and_counts(chunk, source: ExpressionSource):
    """Checked value codes and expressed-gene counts of a chunk (float32 in one fused pass)."""
    if chunk.data.dtype == np.float32:
        bits = chunk.data.view(np.uint32)  # the kernels mask the sign bit: no copy needed
        n_expressed, non_finite, negative = _ranking.scan_float32(chunk.indptr, bits)
        if non_finite or negative:
            check_values(chunk, source.obs_names, source.description)  # raises, naming the cells
        return bits, n_expressed
    check_values(chunk, source.obs_names, source.description)
    codes = value_codes(chunk.data)
    return codes, _ranking.count_expressed(chunk.indptr, codes)


def warn_empty(n_empty: int, n_obs: int) -> None:
    if n_empty:
        warnings.warn(
            f"{n_empty} of {n_obs} cells express no gene and get empty sentences; "
            "filter them first (sc.pp.filter_cells(adata, min_genes=1)) if that is not intended.",
            stacklevel=3,
        )


def cell_sentences(
    adata,
    *,
    n_genes: int | None = None,
    layer: str | None = None,
    use_raw: bool | None = None,
    gene_symbols: str | None = None,
    tie_break: str = "random",
    seed: int = 42,
    tie_key: str = TIE_KEY,
    uppercase: bool = True,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    progress: bool = True,
    copy: bool = False,
):
    """Rank each cell's genes by descending expression (cell2sentence's cell sentences).

    Zeros, implicit or explicitly stored, are dropped. The ranking is stored
    compactly: ``adata.obsm['c2s_ranks']`` is a CSR matrix (cells x genes of the
    source matrix) whose stored entries are the kept genes, with the 1-based rank
    as value, in rank order; ``adata.uns['c2s']`` records the parameters and the
    gene names. Strings come on demand from :func:`sctranscoder.get.sentences`.

    Parameters
    ----------
    adata
        Annotated data matrix, in memory or backed.
    n_genes
        Keep the top ``n_genes`` of each cell; ``None`` keeps every expressed gene.
    layer
        Use ``adata.layers[layer]`` instead of ``adata.X``.
    use_raw
        Use ``adata.raw``. ``None``: use it when present and no layer is given.
    gene_symbols
        Column of ``var`` holding the gene names to write; default ``var_names``.
    tie_break
        Order of genes with equal expression: ``"random"`` (seeded, per cell),
        ``"stable"`` (gene order), or ``"c2s"`` (byte-identical to cell2sentence
        1.2.0's ``CSData.adata_to_arrow``, whose shuffle always uses seed 42 and runs
        over the cells in order, so a cell's sentence depends on the cells before it;
        cell2sentence keeps explicitly stored zeros at the end of a sentence,
        here they are dropped like every other zero).
    seed
        Seed of the random tie-break.
    tie_key
        What else seeds a cell's random tie-break: ``"name"``, its obs name, so a cell
        gets the same sentence in any subset or order of cells; or ``"row"``, its
        row, as sentences made before ``tie_key`` existed (models trained on those
        read such sentences; their prompt settings say so).
    uppercase
        Uppercase gene names, as cell2sentence does.
    chunk_size
        Cells per chunk; bounds the working memory.
    progress
        Show a progress bar.
    copy
        Return a modified copy instead of writing into ``adata``.

    Returns
    -------
    ``None``, or a copy of ``adata`` when ``copy=True``; sets ``adata.obsm['c2s_ranks']``
    and ``adata.uns['c2s']``.
    """
    adata = adata.copy() if copy else adata
    source = select_expression(adata, layer=layer, use_raw=use_raw, gene_symbols=gene_symbols, uppercase=uppercase)
    out = _preallocate(source.matrix, n_genes, len(source.genes))
    chunks = rank_chunks(source, n_genes=n_genes, tie_break=tie_break, seed=seed, tie_key=tie_key,
                         chunk_size=chunk_size, progress=progress, out=out)
    ranks, n_empty = _collect(chunks, source.n_obs, len(source.genes), out)
    warn_empty(n_empty, source.n_obs)
    adata.obsm[RANKS_KEY] = ranks
    adata.uns[PARAMS_KEY] = {
        "genes": np.asarray(source.genes, dtype=str),
        "source": source.description,
        "layer": source.layer or "",
        "use_raw": source.use_raw,
        "n_genes": -1 if n_genes is None else int(n_genes),
        "tie_break": tie_break,
        "seed": int(seed),
        "tie_key": tie_key,
        "uppercase": bool(uppercase),
        "gene_symbols": "" if gene_symbols is None else gene_symbols,
        "n_empty_cells": n_empty,
    }
    logger.info("ranked %d cells from %s (%d genes kept in all)", source.n_obs, source.description, ranks.nnz)
    return adata if copy else None


def _collect(chunks, n_obs: int, n_vars: int, out) -> tuple[sparse.csr_matrix, int]:
    """One CSR of 1-based ranks from the ranked chunks (written into ``out`` when given), and the
    number of empty cells."""
    counts, pieces, n_empty = [], [], 0
    for chunk in chunks:
        counts.append(np.diff(chunk.indptr))
        n_empty += int((chunk.n_expressed == 0).sum())
        if out is None:
            pieces.append((chunk.genes, chunk.ranks))
    indptr = np.zeros(n_obs + 1, np.int64)
    if counts:
        np.cumsum(np.concatenate(counts), out=indptr[1:])
    used = int(indptr[-1])
    if out is None:
        genes = np.concatenate([g for g, _ in pieces]) if pieces else np.zeros(0, np.int32)
        ranks = np.concatenate([r for _, r in pieces]) if pieces else np.zeros(0, rank_dtype_for(n_vars))
    elif used == out[0].size:
        genes, ranks = out
    else:  # explicitly stored zeros left the bound loose
        genes, ranks = out[0][:used].copy(), out[1][:used].copy()
    if used < np.iinfo(np.int32).max:
        indptr = indptr.astype(np.int32)
    return sparse.csr_matrix((ranks, genes, indptr), shape=(n_obs, n_vars)), n_empty


def _stored_per_row(matrix) -> np.ndarray | None:
    """Stored entries per row, read from the index alone (None when not CSR-like)."""
    if sparse.issparse(matrix):
        return np.diff(matrix.indptr) if matrix.format == "csr" else matrix.getnnz(axis=1)
    group = getattr(matrix, "group", None)
    if getattr(matrix, "format", None) == "csr" and group is not None and "indptr" in group:
        return np.diff(group["indptr"][:])
    return None


def _preallocate(matrix, n_genes, n_vars):
    """Output arrays sized by an upper bound on the kept genes, or None when unknown."""
    stored = _stored_per_row(matrix)
    if stored is None:
        return None
    bound = int(np.minimum(stored, n_genes).sum() if n_genes is not None else stored.sum())
    return np.empty(bound, np.int32), np.empty(bound, rank_dtype_for(n_vars))
