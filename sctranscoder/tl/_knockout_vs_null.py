"""Knockouts scored beside their rank-matched null, in the same scoring passes; and the per-gene test."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ._knockout_null import null_test, plan_null, split_null, warn_few_cells

DEFAULT_DRAWS = 4
"""Random rank-matched knockouts per tested gene and cell."""


def score_with_null(adata, model, rows, encoded, genes, label, candidates, *, n_draws: int = DEFAULT_DRAWS,
                    seed: int = 0, max_fdr: float = 0.05, min_cells: int = 3, batch_size: int = 64,
                    progress: bool = True):
    """Knock out ``genes`` (indices; ``None``: every sentence gene) in cells ``rows`` together with their
    rank-matched null genes, in the same batched passes.

    Returns ``(table, tested, draws)``: :func:`knockout_genes`' table for the tested genes only (its
    ``attrs`` count the null's prompts too), :func:`null_test`'s per-gene table on the drop in the label's
    log-odds, and the null's draws (``cell``, ``gene`` tested, ``null_gene``, ``null_rank``, ``effect``).
    """
    from ._knockout import score_knockouts

    sentences = [np.asarray(s, np.int64) for s in encoded.span_ids]
    every_gene = genes is None
    tested = sentences if every_gene else [np.asarray(genes, np.int64)] * len(sentences)
    plans = plan_null(sentences, None if every_gene else tested, n_draws, seed, every_gene=every_gene)
    knocked = []
    for own, plan in zip(tested, plans):
        drawn = [g for genes_drawn in plan.values() for g in genes_drawn.tolist()]
        knocked.append(np.asarray(list(dict.fromkeys(own.tolist() + drawn)), np.int64))
    table = score_knockouts(adata, model, rows, encoded, encoded.settings, knocked, "zero", label, candidates,
                            batch_size=batch_size, progress=progress)
    names = np.asarray(encoded.genes, dtype=object)
    kept, real, null = split_null(table, plans, tested, names, encoded.obs_names, "delta_logodds")
    kept.attrs.update(table.attrs)
    result = null_test(real, null, max_fdr=max_fdr, min_cells=min_cells)
    result.attrs.update(n_draws=n_draws, seed=seed, n_cells=len(rows))
    return kept, result, null


def knockout_test(adata, model, genes=None, *, cells=None, n_draws: int = DEFAULT_DRAWS, seed: int = 0,
                  max_fdr: float = 0.05, min_cells: int = 3, label_key: str | None = None, label: str | None = None,
                  candidates=None, encoded=None, batch_size: int = 64, progress: bool = True) -> pd.DataFrame:
    """Knock genes out and test each against random knockouts at the same sentence positions, in the same cells.

    Removing any gene moves every gene below it up one place, so every knockout moves
    the call a little. For each tested gene in each cell, ``n_draws`` genes that are not
    tested are drawn (seeded) from the positions nearest the gene's own and knocked out
    instead, in the same scoring passes. A gene passes where its mean effect over the
    cells whose sentence holds it is positive and beyond that null at FDR < ``max_fdr``.

    Parameters
    ----------
    adata, model, cells, label_key, label, candidates, encoded, batch_size
        As :func:`knockout_genes` (``mode="zero"``); ``label`` may not be ``"all"``.
    genes
        Gene names to test. ``None``: every gene of each cell's sentence (then a gene's null
        is drawn from the other genes nearest it, which all are tested too).
    n_draws
        Random rank-matched knockouts per tested gene and cell (at least 2).
    seed
        Seed of the draws.
    max_fdr, min_cells
        A gene passes at Benjamini-Hochberg FDR < ``max_fdr`` with a positive effect above the null,
        in at least ``min_cells`` cells.

    Returns
    -------
    One row per gene tested in at least one cell's sentence: ``gene``, ``n_cells``,
    ``mean_rank``, ``effect`` (mean drop in the label's log-odds over those cells),
    ``ci_low`` / ``ci_high`` (95% t interval over cells), ``null_mean`` / ``null_sd``
    (of the mean drop when a random gene at the same positions is knocked out instead),
    ``z``, ``p_value``, ``fdr``, ``passes``; passing genes first, by z. ``attrs``:
    ``n_cells``, ``n_draws``, ``seed``, ``max_fdr``, ``min_cells``, ``n_prompts``, ``message``
    (a sentence saying so when no gene passes).

    Raises
    ------
    ValueError
        With fewer than 2 cells: there is no interval over cells.
    """
    from ._knockout import _prepare

    if label == "all":
        raise ValueError("label='all' reports every candidate; the null test needs one label per cell.")
    rows, encoded, per_cell_genes, reported, candidates = _prepare(adata, model, genes, cells, label_key, label,
                                                                   candidates, encoded)
    if len(rows) < 2:
        raise ValueError(f"knockout_test needs at least 2 cells for an interval over cells (got {len(rows)}); "
                         f"pass more cells (at least min_cells={min_cells} for a gene to pass).")
    warn_few_cells(len(rows), min_cells, "knockout_test")
    table, result, _ = score_with_null(adata, model, rows, encoded, per_cell_genes, reported, candidates,
                                       n_draws=n_draws, seed=seed, max_fdr=max_fdr, min_cells=min_cells,
                                       batch_size=batch_size, progress=progress)
    result.attrs.update(n_prompts=table.attrs.get("n_prompts", 0), n_passes=table.attrs.get("n_passes", 0),
                        message=no_pass_message(result, len(rows)))
    return result


def no_pass_message(result: pd.DataFrame, n_cells: int, what: str = "the call") -> str:
    """The sentence a reader gets when no gene passes its null (empty when some do)."""
    if len(result) and result.passes.any():
        return ""
    return (f"No gene's knockout moved {what} more than knocking out a random gene at the same rank in these "
            f"{n_cells} cells.")
