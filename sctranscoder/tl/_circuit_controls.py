"""A circuit's gene-set enrichment beside its controls: expression-matched random gene lists, and the cell
type's own differentially expressed genes (what the circuit adds beyond differential expression)."""

from __future__ import annotations

import numpy as np
import pandas as pd

N_NULL = 1000  # random lists per circuit: p-values down to 1/1001, below the 0.01 a headline needs


def _expression_source(adata, model=None):
    """The matrix sentences are made from: the model's prompt settings' (raw, a layer or X), else scanpy's."""
    from ..pp._matrix import select_expression
    from ..prompt import prompt_settings

    settings = prompt_settings(adata, model, progress=False) if model is not None else None
    return select_expression(adata, layer=getattr(settings, "layer", None), use_raw=getattr(settings, "use_raw", None))


def type_expression(adata, label_key: str, labels, model=None) -> dict[str, pd.Series]:
    """``{label: mean expression of every gene in that label's cells}``, from the matrix sentences are made from
    (the model's prompt settings: raw, a layer or X)."""
    source = _expression_source(adata, model)
    values = adata.obs[label_key].astype(str).to_numpy()
    out = {}
    for label in labels:
        rows = np.flatnonzero(values == str(label))
        mean = np.asarray(source.matrix[rows].mean(axis=0)).ravel()
        out[str(label)] = pd.Series(mean, index=np.asarray(source.genes).astype(str))
    return out


def de_markers(adata, label_key: str, labels, background, n_markers: int, model=None) -> dict[str, list[str]]:
    """The top ``n_markers`` genes of each label by scanpy's ``rank_genes_groups`` (Wilcoxon, the label against
    every other cell), among the genes the model can see, on the matrix sentences are made from."""
    import anndata as ad
    import scanpy as sc

    source = _expression_source(adata, model)
    cells = ad.AnnData(X=source.matrix, obs=adata.obs[[label_key]].astype(str).astype("category"))
    cells.var_names = [str(g).upper() for g in source.genes]
    cells = cells[:, ~cells.var_names.duplicated()]
    cells = cells[:, cells.var_names.isin(set(background))].copy()
    sizes = cells.obs[label_key].value_counts()
    groups = [str(label) for label in labels if sizes.get(str(label), 0) >= 2]  # a lone cell has no spread
    if not groups or len(sizes) < 2:
        return {}
    sc.tl.rank_genes_groups(cells, label_key, groups=groups, method="wilcoxon", use_raw=False)
    names = pd.DataFrame(cells.uns["rank_genes_groups"]["names"])
    return {str(label): [str(g) for g in names[str(label)].head(n_markers)] for label in labels
            if str(label) in names.columns}


def add_circuit_controls(table: pd.DataFrame, lists: dict, adata, label_key: str, background, gene_sets, *,
                         model=None, n_null: int = N_NULL, n_markers: int = 25, min_set_size: int = 3,
                         seed: int = 0) -> pd.DataFrame:
    """``table`` (enrich's, ``List`` = cell type) with each row's expression-matched p-value and what the cell
    type's DE markers give for the same set.

    Added columns: ``Expression-matched P-value`` (against ``n_null`` random lists matched in expression in that
    cell type, :func:`sctranscoder.genesets.expression_null_p`), ``DE markers FDR`` (the same set tested on the
    type's top ``n_markers`` DE genes; 1 where they miss it) and ``DE marker overlap`` (circuit genes among those
    markers). ``attrs["de_markers"]``: the markers of each list.
    """
    from .. import genesets
    from ..genesets._expression_null import expression_null_p

    labels = set(adata.obs[label_key].astype(str))
    unknown = [name for name in lists if str(name) not in labels]
    if unknown:
        raise ValueError(f"circuit lists {unknown[:5]} are not labels of adata.obs[{label_key!r}] (labels: "
                         f"{sorted(labels)[:8]}); name each list after its cell type to draw its controls.")
    table = table.copy()
    if not len(table):
        for column in ("Expression-matched P-value", "DE markers FDR", "DE marker overlap"):
            table[column] = pd.Series(dtype=float)
        return table
    expression = type_expression(adata, label_key, lists, model)
    table["Expression-matched P-value"] = expression_null_p(
        table, lists, expression, background, gene_sets, n_null=n_null, min_set_size=min_set_size,
        seed=seed).to_numpy()
    markers = de_markers(adata, label_key, lists, background, n_markers, model)
    marker_table = genesets.enrich(markers, gene_sets, background, min_set_size=min_set_size)
    marker_fdr = {(str(lst), lib, term): q for lst, lib, term, q in zip(
        marker_table.List.astype(str), marker_table.Gene_set, marker_table.Term, marker_table["Adjusted P-value"])}
    table["DE markers FDR"] = [marker_fdr.get((str(lst), lib, term), 1.0) for lst, lib, term in
                               zip(table.List.astype(str), table.Gene_set, table.Term)]
    circuit_genes = {str(k): {g.upper() for g in v} for k, v in lists.items()}
    overlap = {name: len(circuit_genes[name] & set(genes)) for name, genes in markers.items()}
    table["DE marker overlap"] = [f"{overlap.get(str(lst), 0)}/{len(markers.get(str(lst), []))}"
                                  for lst in table.List.astype(str)]
    table.attrs["de_markers"] = markers
    table.attrs["controls"] = {"n_null": n_null, "n_markers": n_markers, "seed": seed}
    return table
