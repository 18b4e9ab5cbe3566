"""Gene-set enrichment of features and circuits (adapters over :mod:`sctranscoder.genesets`)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..genesets import gene_names
from ._features import FEATURES_KEY, _activity, feature_background, feature_genes, gene_scores


def enrich_features(
    adata,
    gene_sets="all",
    *,
    key: str = FEATURES_KEY,
    features=None,
    n_top: int = 25,
    threshold: float | None = None,
    min_occurrences: int = 3,
    background=None,
    max_fdr: float | None = None,
    min_set_size: int = 3,
    fdr_over: str = "tested",
    key_added: str | None = None,
) -> pd.DataFrame:
    """Enrichment of every feature's top genes (see :func:`feature_genes`) in gene-set libraries, all at once.

    Parameters
    ----------
    gene_sets
        A bundled library, ``"all"`` (every bundled one), a GMT path, a dict, or a list
        (see :func:`sctranscoder.genesets.enrich`).
    features, n_top, threshold, min_occurrences
        Which features, and how their gene lists are cut.
    background
        Default: the genes that occurred at least ``min_occurrences`` times in the
        harvested sentences (the genes a feature could have picked), never the genome.
    max_fdr
        Keep rows with an adjusted p-value at most this.
    min_set_size, fdr_over
        Which sets are tested and which count in the FDR (see
        :func:`sctranscoder.genesets.enrich`). The defaults here are stricter than gseapy's:
        sets with at least 3 genes the model sees, BH over every tested set. With gseapy's
        choice (``min_set_size=1, fdr_over="overlapping"``) random lists the sizes of the
        features' (up to 25 genes) over the default model's 765 genes come out enriched at FDR < 0.05 42-54% of the time; with these, 5-7%
        (``benchmarks/feature_enrichment.py``).
    key_added
        Also store the table in ``adata.uns[key_added]``.

    Returns
    -------
    :func:`sctranscoder.genesets.enrich`'s table; ``List`` is the feature index as a string.
    """
    from .. import genesets

    table = feature_genes(adata, features, key=key, n_top=n_top, threshold=threshold,
                          min_occurrences=min_occurrences)
    lists = {str(f): genes for f, genes in table.genes.items() if genes}
    if not lists:
        raise ValueError("No feature has any gene above the cut; check the feature activity (alive features?).")
    if background is None:
        background = feature_background(adata, key=key, min_occurrences=min_occurrences)
    result = genesets.enrich(lists, gene_sets, background, max_fdr=max_fdr, min_set_size=min_set_size,
                             fdr_over=fdr_over)
    if key_added is not None:
        adata.uns[key_added] = result
    return result


def enriched_fraction(enrichment: pd.DataFrame, n_features: int, max_fdr: float = 0.05) -> float:
    """Fraction of ``n_features`` features with at least one term at adjusted p-value <= ``max_fdr``."""
    if n_features <= 0:
        raise ValueError("n_features must be positive.")
    hits = enrichment.loc[enrichment["Adjusted P-value"] <= max_fdr, "List"]
    return float(pd.unique(hits.astype(str)).size / n_features)


def _circuit_lists(genes_or_graph, n_top):
    """A circuit's ranked input genes as ``{name: [genes]}``.

    Accepts one gene list or ``{name: gene list}`` (e.g. ``{cell_type: ranked input genes}`` from the
    circuit code), a gene list being anything :func:`sctranscoder.genesets.gene_names` reads (a list, a
    Series of scores by gene, a ranked table with a gene column), or any object with an ``input_genes()``
    method returning one of these.
    """
    if hasattr(genes_or_graph, "input_genes") and callable(genes_or_graph.input_genes):
        genes_or_graph = genes_or_graph.input_genes()
    if isinstance(genes_or_graph, (list, tuple, np.ndarray, pd.Index, pd.Series, pd.DataFrame)):
        genes_or_graph = {"circuit": genes_or_graph}
    if not isinstance(genes_or_graph, dict) or not genes_or_graph:
        raise TypeError("Pass a circuit's input genes as a list, {name: [genes]}, {name: scores by gene} or an "
                        f"object with input_genes(); got {type(genes_or_graph).__name__}.")
    lists = {}
    for name, genes in genes_or_graph.items():
        genes = [str(g) for g in gene_names(genes)]
        lists[str(name)] = genes[:n_top] if n_top is not None else genes
    return lists


def enrich_circuit(
    genes_or_graph,
    gene_sets="all",
    *,
    background=None,
    adata=None,
    model=None,
    n_top: int | None = 25,
    max_fdr: float | None = None,
    min_set_size: int = 3,
    fdr_over: str = "tested",
    label_key: str | None = None,
    n_null: int = 1000,
    n_markers: int = 25,
    seed: int = 0,
) -> pd.DataFrame:
    """Enrichment of a circuit's input genes (e.g. ``{cell_type: ranked input genes}``) in gene-set libraries.

    Parameters
    ----------
    genes_or_graph
        See :func:`_circuit_lists`: a list, ``{name: [genes]}``, ``{name: scores}`` or an
        object with ``input_genes()``.
    background
        The genes the model can see; default :func:`visible_genes` of ``adata`` and ``model``.
    n_top
        Keep each list's first genes (None: all).
    max_fdr, min_set_size, fdr_over
        As for :func:`enrich_features` (stricter than gseapy by default).
    label_key
        With ``adata``: the obs column of cell types the lists are named after. Each row then gets its controls:
        ``Expression-matched P-value`` (against ``n_null`` random lists whose genes match the circuit's genes in
        expression in that cell type), ``DE markers FDR`` (the same set on the type's top ``n_markers`` genes by
        scanpy's ``rank_genes_groups``) and ``DE marker overlap`` (see
        :func:`sctranscoder.tl._circuit_controls.add_circuit_controls`).
    seed
        Seed of the random lists.

    Returns
    -------
    :func:`sctranscoder.genesets.enrich`'s table, ``List`` the circuit (cell type) name.
    """
    from .. import genesets
    from ._features import visible_genes

    lists = _circuit_lists(genes_or_graph, n_top)
    if background is None:
        if adata is None:
            raise ValueError("Pass background=<genes the model can see>, or adata (and model) to compute them.")
        background = visible_genes(adata, model)
    table = genesets.enrich(lists, gene_sets, background, max_fdr=max_fdr, min_set_size=min_set_size,
                            fdr_over=fdr_over)
    if label_key is None:
        return table
    if adata is None:
        raise ValueError("label_key draws each circuit's controls from its cell type's cells: pass adata too.")
    from ._circuit_controls import add_circuit_controls

    return add_circuit_controls(table, lists, adata, label_key, background, gene_sets, model=model, n_null=n_null,
                                n_markers=n_markers, min_set_size=min_set_size, seed=seed)


def prerank_feature(
    adata,
    feature: int,
    gene_sets="hallmark",
    *,
    key: str = FEATURES_KEY,
    min_occurrences: int = 3,
    permutations: int = 1000,
    seed: int = 0,
) -> pd.DataFrame:
    """Preranked GSEA of one feature's full gene ranking (its gene score, see :func:`feature_genes`), through
    gseapy."""
    from .. import genesets

    _, info = _activity(adata, key)
    counts = np.asarray(info["gene_occurrences"])
    usable = counts >= min_occurrences
    activity = gene_scores(info)[usable, int(feature)]
    ranking = pd.Series(activity, index=np.asarray(info["genes"], dtype=object)[usable])
    return genesets.prerank(ranking, gene_sets, permutations=permutations, seed=seed)
