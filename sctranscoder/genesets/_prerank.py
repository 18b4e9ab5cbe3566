"""Rank-based enrichment: preranked GSEA (through gseapy) of a full gene ranking, e.g. one feature's."""

from __future__ import annotations

import pandas as pd

from ._gmt import normalize_genes
from ._library import resolve

PRERANK_COLUMNS = ["Gene_set", "Term", "ES", "NES", "NOM p-val", "FDR q-val", "FWER p-val", "Tag %", "Gene %",
                   "Lead_genes"]


def prerank(ranking, gene_sets, background=None, *, permutations: int = 1000, min_size: int = 5,
            max_size: int = 500, seed: int = 0, threads: int = 1) -> pd.DataFrame:
    """Preranked GSEA of one gene ranking against each library (gseapy.prerank, offline).

    Parameters
    ----------
    ranking
        ``pd.Series`` of scores indexed by gene (higher = more associated), e.g. a
        feature's activation per gene; genes are uppercased (duplicates: the higher score kept).
    gene_sets
        As for :func:`enrich`.
    background
        If given, the ranking is cut to these genes (the model-visible ones).
    permutations
        Gene-set permutations for the p-values (the smallest p is about 1/permutations).
    min_size, max_size
        Sets are tested when this many of their genes are in the ranking (gseapy's filter).

    Returns
    -------
    gseapy's ``res2d`` columns (``Term``, ``ES``, ``NES``, ``NOM p-val``, ``FDR q-val``,
    ``FWER p-val``, ``Tag %``, ``Gene %``, ``Lead_genes``) with ``Gene_set`` the library, sorted by NES
    within each library; the FDR is gseapy's, within each library.
    """
    import gseapy

    if not isinstance(ranking, pd.Series):
        raise TypeError("ranking must be a pandas Series of scores indexed by gene symbol.")
    scores = pd.Series(ranking.to_numpy(dtype=float), index=[str(g).strip().upper() for g in ranking.index])
    scores = scores[~scores.isna()]
    if background is not None:
        scores = scores[scores.index.isin(normalize_genes(background))]
    scores = scores.groupby(level=0).max().sort_values(ascending=False)
    if len(scores) < 2:
        raise ValueError("The ranking holds fewer than two genes (after cutting it to the background).")
    frames = []
    for library, sets in resolve(gene_sets).items():
        testable = {t: g for t, g in sets.items() if min_size <= len(scores.index.intersection(g)) <= max_size}
        if not testable:
            continue
        result = gseapy.prerank(rnk=scores, gene_sets=testable, permutation_num=permutations, min_size=min_size,
                                max_size=max_size, seed=seed, threads=threads, outdir=None, no_plot=True,
                                verbose=False).res2d
        frames.append(result.drop(columns=["Name"], errors="ignore").assign(Gene_set=library))
    if not frames:
        return pd.DataFrame(columns=PRERANK_COLUMNS)
    table = pd.concat(frames, ignore_index=True)
    for column in ("ES", "NES", "NOM p-val", "FDR q-val", "FWER p-val"):
        table[column] = table[column].astype(float)
    table = table.sort_values(["Gene_set", "NES"], ascending=[True, False], kind="stable")
    return table[PRERANK_COLUMNS].reset_index(drop=True)
