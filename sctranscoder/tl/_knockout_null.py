"""A knockout's own null: random genes knocked out at the same sentence positions, in the same cells.

Removing any gene moves every gene below it up one place, so every knockout moves
the call a little. A gene's knockout effect means something only beside the
effect of knocking out a random gene at the same position of the same cell. For
each tested gene in each cell, ``n_draws`` genes are drawn (seeded) from the
positions nearest the gene's own that hold no tested gene; they are scored in
the same passes as the real knockouts. Per gene, the statistic is its mean effect
over the cells whose sentence holds it, against the mean effect of one random
rank-matched gene per cell.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

NULL_COLUMNS = ["gene", "n_cells", "mean_rank", "effect", "ci_low", "ci_high", "null_mean", "null_sd", "z",
                "p_value", "fdr", "passes"]
"""The per-gene columns :func:`null_test` returns (and the circuits' measured tables carry)."""


def null_positions(n_positions: int, rank_index: int, tested: np.ndarray, n_draws: int,
                   rng: np.random.Generator) -> np.ndarray:
    """Sentence positions (0-based) for the null of the gene at ``rank_index``: ``n_draws`` drawn at random
    from the ``2 * n_draws`` positions nearest it that are not ``tested`` (a boolean mask over positions)."""
    free = np.flatnonzero(~tested)
    if free.size == 0:
        return free
    distance = np.abs(free - rank_index) + rng.random(free.size) * 0.5  # ties between sides broken at random
    nearest = free[np.argsort(distance, kind="stable")[: 2 * n_draws]]
    return np.sort(rng.choice(nearest, size=min(n_draws, nearest.size), replace=False))


def plan_null(sentences, tested_genes, n_draws: int, seed: int, *, every_gene: bool = False) -> list[dict]:
    """Per cell, ``{tested gene: array of null genes}`` (gene indices) for the tested genes in its sentence.

    ``tested_genes``: one gene-index array for every cell (a list), or ``None`` with ``every_gene``: each
    sentence's genes are all tested, so a gene's null is drawn from the other genes nearest it (a real effect
    among them makes the null stricter, not looser).
    """
    if n_draws < 2:
        raise ValueError(f"n_draws={n_draws}: the null needs at least 2 random knockouts per gene and cell "
                         "to have a spread.")
    rng = np.random.default_rng(seed)
    plans = []
    for i, sentence in enumerate(sentences):
        sentence = np.asarray(sentence, np.int64)
        wanted = sentence if every_gene else np.asarray(tested_genes[i], np.int64)
        tested = np.zeros(sentence.size, bool) if every_gene else np.isin(sentence, wanted)
        plan = {}
        for gene in wanted:
            where = np.flatnonzero(sentence == gene)
            if where.size == 0:
                continue  # not in this cell's sentence: no knockout, no null
            mask = tested.copy()
            mask[where[0]] = True
            plan[int(gene)] = sentence[null_positions(sentence.size, int(where[0]), mask, n_draws, rng)]
        plans.append(plan)
    return plans


def _bh(p: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (NaN stays NaN, not counted as a test)."""
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    if ok.size == 0:
        return out
    order = ok[np.argsort(p[ok])]
    ranked = p[order] * ok.size / np.arange(1, ok.size + 1)
    out[order] = np.minimum(1.0, np.minimum.accumulate(ranked[::-1])[::-1])
    return out


def null_test(real: pd.DataFrame, null: pd.DataFrame, *, max_fdr: float = 0.05, min_cells: int = 3,
              confidence: float = 0.95) -> pd.DataFrame:
    """Each tested gene's knockout effect against its rank-matched random knockouts in the same cells.

    Parameters
    ----------
    real
        One row per cell and tested gene in its sentence: ``cell``, ``gene``, ``rank``, ``effect`` (the drop
        in the label's log-odds when the gene is knocked out).
    null
        One row per cell, tested gene and null draw: ``cell``, ``gene`` (the tested gene), ``effect`` (the
        drop when the null gene is knocked out instead).
    max_fdr, min_cells
        A gene passes where its effect is positive, above the null, at Benjamini-Hochberg FDR < ``max_fdr``
        over the genes tested, and its sentence holds it in at least ``min_cells`` cells.
    confidence
        Of the interval over cells (Student's t on the per-cell effects).

    Returns
    -------
    One row per gene (:data:`NULL_COLUMNS`), strongest z first: ``n_cells`` (cells whose sentence holds it),
    ``mean_rank``, ``effect`` (mean over those cells), ``ci_low`` / ``ci_high`` (its interval over cells; NaN
    with one cell), ``null_mean`` / ``null_sd`` (mean and standard deviation of the mean effect of one random
    gene per cell at the same positions), ``z`` ((effect - null_mean) / null_sd), ``p_value`` (one-sided, t with
    the null draws' degrees of freedom), ``fdr`` and ``passes``.
    """
    import scipy.stats

    if not 0 < max_fdr <= 1:
        raise ValueError(f"max_fdr={max_fdr} must be in (0, 1].")
    if real.empty:
        return pd.DataFrame(columns=NULL_COLUMNS)
    per_cell_null = null.groupby(["gene", "cell"], sort=False).effect.agg(["mean", "var", "count"]).reset_index()
    rows = []
    for gene, own in real.groupby("gene", sort=False):
        drawn = per_cell_null[per_cell_null.gene == gene].set_index("cell").reindex(own.cell)
        n = len(own)
        effect = float(own.effect.mean())
        if n > 1:
            half = scipy.stats.t.ppf(0.5 + confidence / 2, n - 1) * own.effect.std(ddof=1) / np.sqrt(n)
        else:
            half = np.nan
        have = drawn["count"].to_numpy() >= 2
        null_mean = float(drawn["mean"].to_numpy()[have].mean()) if have.any() else np.nan
        null_sd = float(np.sqrt(drawn["var"].to_numpy()[have].sum()) / have.sum()) if have.any() else np.nan
        dof = float((drawn["count"].to_numpy()[have] - 1).sum())
        if not have.any():
            z = p = np.nan
        elif null_sd > 0:
            z = (effect - null_mean) / null_sd
            p = float(scipy.stats.t.sf(z, dof))
        else:  # every random knockout moved the call by exactly the same: any excess is beyond it
            z = np.inf if effect > null_mean else 0.0 if effect == null_mean else -np.inf
            p = 0.0 if effect > null_mean else 1.0
        rows.append({"gene": gene, "n_cells": n, "mean_rank": float(own["rank"].mean()), "effect": effect,
                     "ci_low": effect - half, "ci_high": effect + half, "null_mean": null_mean, "null_sd": null_sd,
                     "z": z, "p_value": p})
    table = pd.DataFrame(rows)
    table["fdr"] = _bh(table.p_value.to_numpy(float))
    table["passes"] = ((table.fdr < max_fdr) & (table.effect > 0) & (table.effect > table.null_mean)
                       & (table.n_cells >= min_cells))
    table = table.sort_values(["passes", "z", "effect"], ascending=False, ignore_index=True)
    table.attrs.update(max_fdr=max_fdr, min_cells=min_cells, confidence=confidence,
                       n_cells=int(real.cell.nunique()))
    return table[NULL_COLUMNS]


def split_null(table: pd.DataFrame, plans: list[dict], tested, names, obs_names, effect_column: str):
    """From one scored knockout table (tested and null genes together), the tested genes' rows and the
    ``(real, null)`` frames :func:`null_test` reads. ``tested``: per cell, the tested gene indices."""
    effect = -table[effect_column].to_numpy(float)
    lookup = {(c, g): (e, r, s) for c, g, e, r, s in zip(table.cell, table.gene, effect, table["rank"],
                                                        table.in_sentence)}
    real, null = [], []
    for i, plan in enumerate(plans):
        cell = str(obs_names[i])
        for gene, drawn in plan.items():
            e, rank, _ = lookup[(cell, str(names[gene]))]
            real.append({"cell": cell, "gene": str(names[gene]), "rank": rank, "effect": e})
            null += [{"cell": cell, "gene": str(names[gene]), "null_gene": str(names[h]),
                      "null_rank": lookup[(cell, str(names[h]))][1], "effect": lookup[(cell, str(names[h]))][0]}
                     for h in drawn]
    keep = np.zeros(len(table), bool)
    wanted = {(str(obs_names[i]), str(names[g])) for i, genes in enumerate(tested) for g in genes}
    keep[[k for k, key in enumerate(zip(table.cell, table.gene)) if key in wanted]] = True
    columns_real = ["cell", "gene", "rank", "effect"]
    columns_null = ["cell", "gene", "null_gene", "null_rank", "effect"]
    return (table[keep].reset_index(drop=True), pd.DataFrame(real, columns=columns_real),
            pd.DataFrame(null, columns=columns_null))


def warn_few_cells(n_cells: int, min_cells: int, where: str) -> None:
    """A stated warning when there are too few cells for any gene to pass ``min_cells``."""
    if n_cells < min_cells:
        warnings.warn(f"{where}: knockouts in {n_cells} cell{'s' if n_cells != 1 else ''}, fewer than "
                      f"min_cells={min_cells}, so no gene can pass its rank-matched null; use more cells.",
                      UserWarning, stacklevel=3)
