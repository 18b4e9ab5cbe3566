"""A control for naming a gene list by its best gene set: random lists with the same expression levels.

Highly expressed genes of a cell type sit in its marker sets, so any list drawn from the top of a cell's
sentence looks enriched in something. The null keeps that: each gene of the list is replaced by a random
background gene from the same expression-rank bin (quantiles of mean expression in the cells the list comes
from), and each random list is scored by its best p-value over every set of every library, as the real list
is. The control p-value is ``(1 + #{random lists at least as good}) / (1 + n_null)``; its floor is
``1 / (1 + n_null)``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ._gmt import normalize_genes


def expression_matched_lists(genes, expression: pd.Series, n_null: int, *, n_bins: int = 20, seed: int = 0) -> list:
    """``n_null`` random lists of ``len(genes)`` distinct genes, each drawn from the expression-rank bin of the gene
    it replaces (``expression``: mean expression per background gene)."""
    expression = expression[~expression.index.duplicated()]
    ranks = expression.rank(method="first").to_numpy()
    bins = pd.Series(np.minimum((ranks - 1) * n_bins // len(ranks), n_bins - 1).astype(int), index=expression.index)
    members = {b: np.asarray(idx, dtype=object) for b, idx in bins.groupby(bins).groups.items()}
    wanted = [bins[g] for g in genes if g in bins.index]
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n_null):
        chosen: list = []
        for b in wanted:
            pool = members[b]
            for _ in range(8):  # redraw a gene already in the list (bins hold many genes)
                pick = pool[rng.integers(len(pool))]
                if pick not in chosen:
                    break
            chosen.append(pick)
        out.append([str(g) for g in chosen])
    return out


def expression_matched_p(gene_lists: dict, gene_sets, background, expression: pd.Series, *, n_null: int = 1000,
                         min_set_size: int = 3, n_bins: int = 20, seed: int = 0) -> pd.DataFrame:
    """Per list: its best p-value over every set of ``gene_sets`` and the share of ``n_null`` expression-matched
    random lists (:func:`expression_matched_lists`) that reach a best p at least as small.

    Returns a frame indexed by list name with ``best_p`` and ``control_p`` (``(1 + count) / (1 + n_null)``).
    """
    from ._spelling import best_p_per_library

    background = normalize_genes(background)
    expression = expression.copy()
    expression.index = normalize_genes(expression.index)
    expression = expression.reindex(background).fillna(0.0)
    names = [str(k) for k in gene_lists]
    lists = {str(k): [g for g in normalize_genes(v) if g in set(background)] for k, v in gene_lists.items()}
    observed = best_p_per_library(lists, gene_sets, background, min_set_size=min_set_size).min(axis=1)
    rows = []
    for i, name in enumerate(names):
        if not lists[name]:
            rows.append({"best_p": 1.0, "control_p": 1.0})
            continue
        null = expression_matched_lists(lists[name], expression, n_null, n_bins=n_bins, seed=seed + i)
        best = best_p_per_library(dict(enumerate(null)), gene_sets, background,
                                  min_set_size=min_set_size).min(axis=1).to_numpy()
        p = float(observed[name])
        rows.append({"best_p": p, "control_p": (1 + int((best <= p * (1 + 1e-9)).sum())) / (1 + n_null)})
    return pd.DataFrame(rows, index=pd.Index(names, name="List"))
