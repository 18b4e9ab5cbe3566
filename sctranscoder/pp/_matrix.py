"""Pick the expression matrix and gene names out of an AnnData, check them, and
read them as CSR row chunks (dense, CSR, CSC and backed h5ad alike)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import sparse

from .._hints import Arg, HintedKeyError, HintedValueError

_EXAMPLES = 5


@dataclass
class ExpressionSource:
    """The matrix cell sentences are built from, with the names of its genes."""

    matrix: Any
    genes: np.ndarray
    obs_names: pd.Index
    description: str
    layer: str | None = None
    use_raw: bool = False

    @property
    def n_obs(self) -> int:
        return self.matrix.shape[0]


@dataclass
class CSRChunk:
    """Rows ``start:stop`` as CSR arrays, with ``indptr[0] == 0``."""

    start: int
    stop: int
    indptr: np.ndarray
    indices: np.ndarray
    data: np.ndarray


def _examples(names) -> str:
    names = list(names)
    shown = ", ".join(repr(str(n)) for n in names[:_EXAMPLES])
    return shown + (f", ... ({len(names)} in all)" if len(names) > _EXAMPLES else "")


def select_expression(adata, *, layer=None, use_raw=None, gene_symbols=None, uppercase=True) -> ExpressionSource:
    """Resolve ``layer`` / ``use_raw`` / ``gene_symbols`` the way scanpy does.

    ``use_raw=None`` means: use ``adata.raw`` when it exists and no layer is given.
    """
    if layer is not None and use_raw:
        raise HintedValueError("Pass either {layer} or {use_raw}, not both.", layer=Arg("layer"),
                               use_raw=Arg("use_raw", True))
    if use_raw is None:
        use_raw = layer is None and adata.raw is not None
    if use_raw:
        if adata.raw is None:
            raise HintedValueError("{use_raw} but adata.raw is None; pass {no_raw} or {layer}.",
                                   use_raw=Arg("use_raw", True), no_raw=Arg("use_raw", False), layer=Arg("layer"))
        matrix, var, description = adata.raw.X, adata.raw.var, "adata.raw.X"
        var_names = adata.raw.var_names
    elif layer is not None:
        if layer not in adata.layers:
            raise HintedKeyError(f"{{layer}} is not in adata.layers (available: {list(adata.layers)}).",
                                 layer=Arg("layer", layer))
        matrix, var, description = adata.layers[layer], adata.var, f"adata.layers[{layer!r}]"
        var_names = adata.var_names
    else:
        matrix, var, description = adata.X, adata.var, "adata.X"
        var_names = adata.var_names

    where = "adata.raw.var" if use_raw else "adata.var"
    if gene_symbols is not None:
        if gene_symbols not in var.columns:
            raise HintedKeyError(
                f"{{gene_symbols}} is not a column of {where} "
                f"(columns: {list(var.columns)}); pass one of them, or leave it out to use var_names.",
                gene_symbols=Arg("gene_symbols", gene_symbols),
            )
        names = var[gene_symbols].astype(str).to_numpy()
        source_of_names = f"{where}[{gene_symbols!r}]"
    else:
        names = np.asarray(var_names.astype(str))
        source_of_names = f"{where}_names"
    genes = np.char.upper(names.astype(str)) if uppercase else names.astype(str)
    _check_gene_names(names, genes, uppercase, source_of_names)
    return ExpressionSource(matrix, genes.astype(object), adata.obs_names, description, layer, bool(use_raw))


def _check_gene_names(names, genes, uppercase, source_of_names) -> None:
    names = pd.Series(names)
    missing = np.flatnonzero(names.isin(["", "nan", "NaN", "None"]).to_numpy())
    if missing.size:
        raise ValueError(
            f"{missing.size} genes have empty or missing names in {source_of_names} "
            f"(positions {missing[:_EXAMPLES].tolist()}); fill them in or choose another gene_symbols column."
        )
    duplicated = names[names.duplicated()].unique()
    if duplicated.size:
        raise ValueError(
            f"Duplicate gene names in {source_of_names}: {_examples(duplicated)}. A sentence would name "
            "two different columns the same way; run adata.var_names_make_unique() or pick a unique "
            "gene_symbols column."
        )
    if uppercase:
        upper = pd.Series(genes)
        clash = upper.duplicated(keep=False).to_numpy()
        if clash.any():
            groups = names[clash].groupby(upper[clash].to_numpy(), sort=False)
            colliding = [" / ".join(group) for _, group in groups]
            raise ValueError(
                f"Gene names collide after uppercasing in {source_of_names}: {_examples(colliding)} "
                "(cell2sentence would silently misalign these). Rename them, or pass uppercase=False."
            )


def iter_csr_chunks(matrix, chunk_size: int) -> Iterator[CSRChunk]:
    """Yield row chunks of ``matrix`` as canonical CSR arrays (sorted indices, no duplicates).

    Canonical rows make the "stable" tie-break gene order and match what
    cell2sentence shuffles (its vocabulary step sorts the matrix in place).
    In-memory canonical CSR is served as views; anything else is copied one
    chunk at a time.
    """
    n_obs = matrix.shape[0]
    if sparse.issparse(matrix) and matrix.format == "csc":
        matrix = matrix.tocsr()  # in memory: one conversion beats a column scan per chunk
    if not sparse.issparse(matrix) and getattr(matrix, "format", None) == "csc":
        raise ValueError(
            "The backed matrix is stored as CSC, so every row chunk would read the whole file. "
            "Rewrite it as CSR once (adata = anndata.read_h5ad(path); adata.X = adata.X.tocsr(); "
            "adata.write_h5ad(path)) and read it backed again."
        )
    views = sparse.issparse(matrix) and matrix.format == "csr" and matrix.has_canonical_format
    for start in range(0, n_obs, chunk_size):
        stop = min(start + chunk_size, n_obs)
        if views:
            lo, hi = matrix.indptr[start], matrix.indptr[stop]
            indptr = matrix.indptr[start : stop + 1].astype(np.int64) - lo
            indices, data = matrix.indices[lo:hi], matrix.data[lo:hi]
        else:
            block = matrix[start:stop]
            block = sparse.csr_matrix(block if sparse.issparse(block) else np.asarray(block), copy=True)
            block.sum_duplicates()
            indptr, indices, data = block.indptr.astype(np.int64), block.indices, block.data
        yield CSRChunk(start, stop, indptr, indices, data)


def check_values(chunk: CSRChunk, obs_names: pd.Index, description: str) -> None:
    """Refuse NaN, infinite and negative values, naming the cells that hold them."""
    data = chunk.data
    if data.dtype.kind in "fc":
        bad = ~np.isfinite(data)
        if bad.any():
            raise ValueError(
                f"{description} holds NaN or infinite values in cells {_cells(chunk, bad, obs_names)}. "
                "Fix or remove these cells (e.g. adata = adata[np.isfinite(...)]) before building sentences."
            )
    if data.dtype.kind in "fci":
        bad = data < 0
        if bad.any():
            # the fix names arguments; the command line re-spells them as its flags
            raise HintedValueError(
                f"{description} holds negative values in cells {_cells(chunk, bad, obs_names)}: it looks "
                "scaled or centred. Cell sentences rank expression, so use non-negative data: "
                "{use_raw} (scanpy keeps log-normalized values in adata.raw) or {layer} (raw counts; "
                "any layer of non-negative values, counts or log-normalized, will do).",
                use_raw=Arg("use_raw", True), layer=Arg("layer", "counts"),
            )


def _cells(chunk: CSRChunk, bad: np.ndarray, obs_names: pd.Index) -> str:
    rows = np.unique(np.searchsorted(chunk.indptr, np.flatnonzero(bad), side="right") - 1)
    return _examples(obs_names[chunk.start + rows])


def value_codes(data: np.ndarray) -> np.ndarray:
    """uint32 codes below 2**31 whose order is the order of the (non-negative) values; 0 exactly for zeros."""
    if data.dtype.kind == "f":
        as32 = data.astype(np.float32)
        if np.array_equal(as32, data):
            return as32.view(np.uint32) & np.uint32(0x7FFFFFFF)  # also maps -0.0 to 0
    elif data.dtype.kind in "iub" and (data.size == 0 or data.max() < 2**31):
        return data.astype(np.uint32)
    # exact fallback for values float32 cannot hold: dense ranks within the chunk
    uniq, inverse = np.unique(data, return_inverse=True)
    codes = inverse.astype(np.uint32).ravel()
    if uniq.size == 0 or uniq[0] != 0:
        codes += np.uint32(1)
    return codes
