"""Cell sentences out of the AnnData: a Hugging Face Dataset, or parquet streamed in chunks."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .._atomic import atomic_path
from ._matrix import select_expression
from ._sentences import DEFAULT_CHUNK_SIZE, TIE_KEY, rank_chunks, warn_empty

logger = logging.getLogger(__name__)
RESERVED_COLUMNS = ("cell_name", "cell_sentence")


def _check_obs_columns(adata, columns) -> list[str]:
    columns = list(columns or [])
    for c in columns:
        if c in RESERVED_COLUMNS:
            raise ValueError(f"obs column {c!r} clashes with a column the output always has; rename it first.")
        if c not in adata.obs:
            raise KeyError(f"{c!r} is not a column of adata.obs (columns: {list(adata.obs.columns)}).")
    return columns


def to_dataset(adata, label_keys=None, *, n_genes: int | None = None, delimiter: str = " "):
    """Cell sentences as a Hugging Face :class:`datasets.Dataset`.

    Parameters
    ----------
    adata
        AnnData on which :func:`sctranscoder.pp.cell_sentences` ran.
    label_keys
        ``adata.obs`` columns copied into the dataset (as strings).
    n_genes
        Genes per sentence (``None``: every stored gene).
    delimiter
        Separator between gene names.

    Returns
    -------
    A ``datasets.Dataset`` with ``cell_name``, ``cell_sentence`` and one column per label key.
    """
    import datasets

    from ._read import sentences

    columns = _check_obs_columns(adata, label_keys)
    data = {"cell_name": adata.obs_names.astype(str).tolist(),
            "cell_sentence": sentences(adata, n_genes=n_genes, delimiter=delimiter)}
    for c in columns:
        data[c] = adata.obs[c].astype(str).tolist()
    return datasets.Dataset.from_dict(data)


def write_sentences(
    adata,
    path,
    *,
    obs_columns=None,
    n_genes: int | None = None,
    layer: str | None = None,
    use_raw: bool | None = None,
    gene_symbols: str | None = None,
    tie_break: str = "random",
    seed: int = 42,
    tie_key: str = TIE_KEY,
    uppercase: bool = True,
    delimiter: str = " ",
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    progress: bool = True,
) -> Path:
    """Stream cell sentences to a parquet file, one chunk of cells at a time.

    Memory stays bounded by ``chunk_size`` whatever the number of cells, so a
    backed h5ad of millions of cells converts without loading its matrix. The
    file is written under a temporary name and renamed when complete, so a
    crash never leaves a truncated file at ``path``.

    Parameters
    ----------
    adata
        An AnnData (in memory or backed), or the path of an ``.h5ad`` file, which
        is opened backed.
    path
        Output parquet file; columns ``cell_name``, ``cell_sentence`` and ``obs_columns``.
    obs_columns
        ``adata.obs`` columns to copy into each row.
    n_genes, layer, use_raw, gene_symbols, tie_break, seed, tie_key, uppercase, chunk_size, progress
        As in :func:`sctranscoder.pp.cell_sentences`.
    delimiter
        Separator between gene names.

    Returns
    -------
    The path written.
    """
    import anndata

    from ._read import encode_names, join_sentences_arrow

    if isinstance(adata, (str, os.PathLike)):
        adata = anndata.read_h5ad(adata, backed="r")
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder; give a file name ending in .parquet.")
    columns = _check_obs_columns(adata, obs_columns)
    source = select_expression(adata, layer=layer, use_raw=use_raw, gene_symbols=gene_symbols, uppercase=uppercase)
    path.parent.mkdir(parents=True, exist_ok=True)
    obs = adata.obs
    schema = pa.schema([("cell_name", pa.string()), ("cell_sentence", pa.large_string())]
                       + [(c, pa.string()) for c in columns])
    encoded_names = encode_names(source.genes)  # once, not per chunk
    n_empty = 0
    with atomic_path(path, prefix=f".{path.name}.") as tmp:
        with pq.ParquetWriter(tmp, schema) as writer:
            for chunk in rank_chunks(source, n_genes=n_genes, tie_break=tie_break, seed=seed, tie_key=tie_key,
                                     chunk_size=chunk_size, progress=progress):
                n_empty += int((chunk.n_expressed == 0).sum())
                rows = slice(chunk.start, chunk.stop)
                batch = {
                    "cell_name": np.asarray(adata.obs_names[rows], dtype=str).tolist(),
                    "cell_sentence": join_sentences_arrow(chunk.indptr, chunk.genes, encoded_names, delimiter),
                }
                for c in columns:
                    batch[c] = obs[c].iloc[rows].astype(str).tolist()
                writer.write_table(pa.table(batch, schema=schema))
    warn_empty(n_empty, source.n_obs)
    logger.info("wrote %d cell sentences to %s", source.n_obs, path)
    return path
