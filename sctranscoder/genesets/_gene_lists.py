"""Whatever a user holds as a gene list (a list, a ranked table, scores by gene) as a list of gene names."""

from __future__ import annotations

import numpy as np
import pandas as pd

GENE_COLUMNS = ("gene", "genes", "Gene", "names", "symbol", "gene_symbol", "gene_name", "feature_name")
"""Columns read as gene names from a table, in this order (``names`` is scanpy's ``rank_genes_groups_df``)."""


def gene_names(genes) -> list:
    """The gene names in ``genes``, in its order.

    Accepts a list, tuple, array or ``pd.Index`` of names; a ``pd.Series`` of names, or of scores indexed by
    gene (then strongest first); or a ``pd.DataFrame`` with a gene column (one of :data:`GENE_COLUMNS`, in row
    order, as ranked tables come). A table without one is an error that names its columns, never an
    iteration over its column names.
    """
    if isinstance(genes, str):
        raise TypeError(f"Expected a list of gene symbols, got the string {genes[:40]!r}; wrap it in a list.")
    if isinstance(genes, pd.DataFrame):
        column = next((c for c in GENE_COLUMNS if c in genes.columns), None)
        if column is None:
            raise ValueError(f"This table has no gene column ({', '.join(GENE_COLUMNS[:4])}, ...); its columns are "
                             f"{list(map(str, genes.columns))}. Pass table['<column of gene names>'] instead.")
        return list(genes[column])
    if isinstance(genes, pd.Series):
        if pd.api.types.is_numeric_dtype(genes.dtype) and not pd.api.types.is_numeric_dtype(genes.index.dtype):
            return list(genes.sort_values(ascending=False, kind="stable").index)  # scores by gene
        return list(genes)
    if isinstance(genes, (list, tuple, np.ndarray, pd.Index)) or hasattr(genes, "__iter__"):
        return list(genes)
    raise TypeError(f"Expected gene names (a list, a Series or a table with a gene column), not {type(genes).__name__}.")
