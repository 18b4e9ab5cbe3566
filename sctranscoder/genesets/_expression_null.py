"""Expression-matched random gene lists: the control for any gene list drawn from a cell type's top genes.

A circuit's genes (or a supernode's) are genes the cell type expresses highly, and highly expressed genes
crowd into some sets (ribosome, MHC class II, oxidative phosphorylation, the type's own marker sets) whatever
the model does. Each gene of the list is replaced by a random background gene from the same expression-rank
bin (quantiles of mean expression in the cells the list comes from; never a gene of the list, no gene twice),
and each random list is scored by its best p-value over every set of every library, as the real list is, so
picking the best set is paid for. The control p-value is ``(1 + #{random lists at least as good}) /
(1 + n_null)``; its floor is ``1 / (1 + n_null)``.
"""

from __future__ import annotations

import warnings

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


def _bin_pools(genes: list, expression: pd.Series, n_bins: int):
    """Per bin: the background genes outside the list, and how many the list needs; ``None`` when a bin is short."""
    bins = expression_bins(expression, n_bins)
    listed = set(genes)
    pools = {b: np.asarray([g for g in members if g not in listed], dtype=object)
             for b, members in bins.groupby(bins.values).groups.items()}
    need = pd.Series([bins[g] for g in genes]).value_counts()
    if any(len(pools.get(b, [])) < c for b, c in need.items()):
        return None
    return pools, need


def expression_matched_lists(genes, expression: pd.Series, n: int, *, n_bins: int = N_BINS, seed: int = 0,
                             rng=None) -> list[list[str]]:
    """``n`` random lists, each gene replaced by a random gene of the same expression bin.

    ``expression``: mean expression in the cell type, by background gene (genes outside it are dropped from
    the list). Where the background is too small to fill a bin without repeats, the bins are halved until it
    is (with a warning naming the bins used); ``rng`` overrides ``seed``.
    """
    expression = expression[~expression.index.duplicated()]
    genes = [g for g in dict.fromkeys(normalize_genes(genes)) if g in expression.index]
    if len(genes) > len(expression) - len(genes):
        raise ValueError(f"The list has {len(genes)} of the background's {len(expression)} genes: too few others "
                         "to draw random lists from; use a larger background or fewer genes per list.")
    bins, found = n_bins, _bin_pools(genes, expression, n_bins)
    while found is None:
        bins = max(1, bins // 2)
        found = _bin_pools(genes, expression, bins)
    if bins < n_bins:
        warnings.warn(f"The background of {len(expression)} genes is too small to match {len(genes)} genes in "
                      f"{n_bins} expression bins; matched in {bins} instead.", UserWarning, stacklevel=2)
    pools, need = found
    rng = rng if rng is not None else np.random.default_rng(seed)
    # every list at once: ``count`` genes of a bin without replacement are the smallest of uniform keys
    drawn = [pools[b][np.argsort(rng.random((n, len(pools[b]))), axis=1)[:, :int(count)]] for b, count in need.items()]
    return np.concatenate(drawn, axis=1).astype(str).tolist() if drawn else [[] for _ in range(n)]


def _null_best_p(genes, expression: pd.Series, background: list, gene_sets, n_null: int, min_set_size: int,
                 rng) -> np.ndarray:
    """The best p-value over every set of ``n_null`` expression-matched random lists, sorted."""
    level = expression.copy()
    level.index = normalize_genes(level.index)
    level = level[~level.index.duplicated()].reindex(background).fillna(0.0)
    null = expression_matched_lists(genes, level, n_null, rng=rng)
    best = best_p_per_library(dict(enumerate(null)), gene_sets, background,
                              min_set_size=min_set_size).min(axis=1).to_numpy()
    return np.sort(best)


def _share_at_least_as_good(best_sorted: np.ndarray, p) -> np.ndarray:
    """``(1 + #{random best p <= p}) / (1 + n_null)``."""
    return (1 + np.searchsorted(best_sorted, np.asarray(p) * (1 + 1e-9), side="right")) / (1 + len(best_sorted))


def expression_null_p(table: pd.DataFrame, gene_lists: dict, expression: dict, background, gene_sets, *,
                      n_null: int = 1000, min_set_size: int = 3, seed: int = 0) -> pd.Series:
    """Every row of an enrichment table against ``n_null`` expression-matched random lists of its list.

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
    for name, genes in gene_lists.items():
        rows = np.flatnonzero(names == str(name))
        if rows.size:
            best = _null_best_p(genes, expression[name], background, gene_sets, n_null, min_set_size, rng)
            out[rows] = _share_at_least_as_good(best, table["P-value"].to_numpy()[rows])
    return pd.Series(out, index=table.index, name="Expression-matched P-value")


def expression_matched_p(gene_lists: dict, gene_sets, background, expression: pd.Series, *, n_null: int = 1000,
                         min_set_size: int = 3, seed: int = 0) -> pd.DataFrame:
    """Per list: its best p-value over every set of ``gene_sets`` (``best_p``) and the share of ``n_null``
    expression-matched random lists reaching a best p at least as small (``control_p``); indexed by list name.
    ``expression``: mean expression per background gene in the cells the lists come from."""
    background = normalize_genes(background)
    known = set(background)
    lists = {str(k): [g for g in normalize_genes(v) if g in known] for k, v in gene_lists.items()}
    observed = best_p_per_library(lists, gene_sets, background, min_set_size=min_set_size).min(axis=1)
    rows = []
    for i, (name, genes) in enumerate(lists.items()):
        if not genes:
            rows.append({"best_p": 1.0, "control_p": 1.0})
            continue
        best = _null_best_p(genes, expression, background, gene_sets, n_null, min_set_size,
                            np.random.default_rng(seed + i))
        p = float(observed[name])
        rows.append({"best_p": p, "control_p": float(_share_at_least_as_good(best, p))})
    return pd.DataFrame(rows, index=pd.Index(list(lists), name="List"))
