"""Expression-matched random gene lists: the control of a circuit's (or any cell-type-derived) gene list.

A circuit's genes are genes the cell type expresses highly, and highly expressed genes crowd into some sets
(ribosome, MHC class II, oxidative phosphorylation) whatever the model does. A random list whose genes match
the list's genes in expression in that cell type reaches those sets as easily; a list that beats such lists
says more than "these genes are expressed here".
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ._gmt import normalize_genes
from ._spelling import best_p_per_library

N_BINS = 20  # expression quantile bins a random gene is drawn from; more bins match closer but draw from fewer


def expression_bins(expression: pd.Series, n_bins: int = N_BINS) -> pd.Series:
    """Each gene's expression quantile bin (0: lowest) from its mean expression in the cell type."""
    ranks = expression.rank(method="first")
    return pd.Series(np.minimum((ranks.to_numpy() - 1) * n_bins // len(ranks), n_bins - 1).astype(int),
                     index=expression.index)


def expression_matched_lists(genes, expression: pd.Series, n: int, rng, n_bins: int = N_BINS) -> list[list[str]]:
    """``n`` random lists, each gene replaced by a random gene of the same expression bin (never a gene of the
    list, no gene twice in a list). ``expression``: mean expression in the cell type, by background gene."""
    bins = expression_bins(expression, n_bins)
    genes = [g for g in normalize_genes(genes) if g in bins.index]
    listed = set(genes)
    pools = {b: np.asarray([g for g in members if g not in listed], dtype=object)
             for b, members in bins.groupby(bins.values).groups.items()}
    need = pd.Series([bins[g] for g in genes]).value_counts()
    short = {int(b): (int(c), len(pools.get(b, []))) for b, c in need.items() if len(pools.get(b, [])) < c}
    if short:
        raise ValueError(f"Too few background genes to match the list's expression: bins {short} "
                         "(needed, available); use a larger background or fewer genes per list.")
    out = []
    for _ in range(n):
        drawn: list[str] = []
        for b, count in need.items():
            drawn.extend(rng.choice(pools[b], int(count), replace=False))
        out.append([str(g) for g in drawn])
    return out


def expression_null_p(table: pd.DataFrame, gene_lists: dict, expression: dict, background, gene_sets, *,
                      n_null: int = 1000, min_set_size: int = 3, seed: int = 0) -> pd.Series:
    """Empirical p-value of every row of an enrichment table against ``n_null`` expression-matched random lists:
    ``(1 + #{random lists whose best p over every tested set <= the row's p}) / (1 + n_null)``.

    Scoring each random list by its best set pays for picking the best of the sets.

    Parameters
    ----------
    table
        :func:`sctranscoder.genesets.enrich`'s table for ``gene_lists``.
    expression
        ``{list name: pd.Series}``: mean expression of every background gene in that list's cell type.
    """
    rng = np.random.default_rng(seed)
    background = normalize_genes(background)
    out = np.ones(len(table))
    names = table["List"].astype(str).to_numpy()
    p = table["P-value"].to_numpy()
    for name, genes in gene_lists.items():
        rows = np.flatnonzero(names == str(name))
        if not rows.size:
            continue
        level = expression[name].copy()
        level.index = normalize_genes(level.index)
        level = level[~level.index.duplicated()].reindex(background).fillna(0.0)
        null = expression_matched_lists(genes, level, n_null, rng)
        best = best_p_per_library({i: g for i, g in enumerate(null)}, gene_sets, background,
                                  min_set_size=min_set_size).min(axis=1).to_numpy()
        best.sort()
        out[rows] = (1 + np.searchsorted(best, p[rows] * (1 + 1e-9), side="right")) / (1 + n_null)
    return pd.Series(out, index=table.index, name="Expression-matched P-value")
