"""The C2S inverse transform: expression as a linear function of log10(1 + rank)."""

from __future__ import annotations

import warnings
from collections import Counter

import numpy as np
from scipy import stats

from ._matrix import select_expression
from ._sentences import PARAMS_KEY, RANKS_KEY

FIT_KEY = "c2s_rank_fit"


def rank_expression_points(adata, n_cells: int = 1024, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(log10(1 + rank), expression)`` for every ranked gene of a sample of cells.

    Rank is 0 for a cell's most expressed gene, as in cell2sentence.
    """
    if RANKS_KEY not in adata.obsm or PARAMS_KEY not in adata.uns:
        raise KeyError("adata has no cell sentences; run sct.pp.cell_sentences(adata) first.")
    params = adata.uns[PARAMS_KEY]
    source = select_expression(
        adata,
        layer=params["layer"] or None,
        use_raw=bool(params["use_raw"]),
        gene_symbols=params["gene_symbols"] or None,
        uppercase=bool(params["uppercase"]),
    )
    rng = np.random.default_rng(seed)
    n = min(n_cells, adata.n_obs)
    rows = np.sort(rng.choice(adata.n_obs, size=n, replace=False))
    ranks = adata.obsm[RANKS_KEY][rows].tocoo()
    block = source.matrix[rows]
    values = np.asarray(block[ranks.row, ranks.col]).ravel().astype(np.float64)
    return np.log10(ranks.data.astype(np.float64)), values


def fit_rank_expression(
    adata,
    *,
    n_cells: int = 1024,
    max_log_rank: float = 3.0,
    seed: int = 0,
    key_added: str = FIT_KEY,
    inplace: bool = True,
):
    """Fit expression = slope * log10(1 + rank) + intercept on a sample of cells.

    As in cell2sentence, the line is fitted on genes with ``log10(1 + rank) <
    max_log_rank`` (the top 999 genes at the default 3), and its quality is
    reported on every ranked gene of the sampled cells.

    Parameters
    ----------
    adata
        AnnData on which :func:`sctranscoder.pp.cell_sentences` ran; the values
        come from the same matrix the sentences were built from.
    n_cells
        Number of cells sampled for the fit.
    max_log_rank
        Only genes below this log10(1 + rank) enter the fit.
    seed
        Seed of the cell sample.
    key_added
        ``adata.uns`` key the fit is stored under.
    inplace
        Store the fit in ``adata.uns[key_added]``; otherwise return it.

    Returns
    -------
    ``None``, or with ``inplace=False`` a dict with ``slope``, ``intercept``,
    ``r_squared``, ``pearson_r``, ``spearman_r``, ``n_cells``, ``n_points``.
    """
    x, y = rank_expression_points(adata, n_cells=n_cells, seed=seed)
    in_fit = x < max_log_rank
    if in_fit.sum() < 2 or np.ptp(x[in_fit]) == 0:
        raise ValueError("Too few ranked genes to fit; sample more cells (n_cells) or keep more genes per cell.")
    line = stats.linregress(x[in_fit], y[in_fit])
    predicted = line.intercept + line.slope * x
    residual = np.sum((y - predicted) ** 2)
    total = np.sum((y - y.mean()) ** 2)
    fit = {
        "slope": float(line.slope),
        "intercept": float(line.intercept),
        "r_squared": float(1 - residual / total) if total > 0 else float("nan"),
        "pearson_r": float(stats.pearsonr(y, predicted)[0]),
        "spearman_r": float(stats.spearmanr(y, predicted)[0]),
        "n_cells": int(min(n_cells, adata.n_obs)),
        "n_points": int(y.size),
        "max_log_rank": float(max_log_rank),
        "seed": int(seed),
    }
    if not inplace:
        return fit
    adata.uns[key_added] = fit
    return None


def reconstruct_expression(
    sentences,
    *,
    adata=None,
    fit: dict | None = None,
    genes=None,
    delimiter: str = " ",
    on_unknown: str = "warn",
    key: str = FIT_KEY,
    return_unknown: bool = False,
):
    """Expression vectors from cell sentences, through a fitted rank-expression line.

    The gene at 0-based position ``r`` gets ``intercept + slope * log10(1 + r)``;
    genes absent from the sentence get 0. A gene named twice keeps its first
    position.

    Parameters
    ----------
    sentences
        One sentence string, or a list of them.
    adata
        Where the fit (``adata.uns[key]``) and the gene list
        (``adata.uns['c2s']['genes']``) come from, unless given explicitly.
    fit
        A fit as returned by :func:`fit_rank_expression` with ``inplace=False``.
    genes
        Column order of the output.
    delimiter
        Separator between gene names.
    on_unknown
        Words that are not in ``genes``: ``"warn"`` (default, naming them),
        ``"raise"``, or ``"ignore"`` (use ``return_unknown`` to see them).
    return_unknown
        Also return, per sentence, the list of unknown words.

    Returns
    -------
    ``float32`` array of shape ``(n_sentences, n_genes)``; with
    ``return_unknown``, a tuple ``(array, unknown_per_sentence)``.
    """
    if on_unknown not in ("warn", "raise", "ignore"):
        raise ValueError(f"on_unknown={on_unknown!r} must be 'warn', 'raise' or 'ignore'.")
    if fit is None:
        if adata is None or key not in adata.uns:
            raise KeyError(f"No fit given: pass fit=... or an adata with uns[{key!r}] (sct.pp.fit_rank_expression).")
        fit = adata.uns[key]
    if genes is None:
        if adata is None or PARAMS_KEY not in adata.uns:
            raise KeyError("No genes given: pass genes=... or an adata on which sct.pp.cell_sentences ran.")
        genes = adata.uns[PARAMS_KEY]["genes"]
    single = isinstance(sentences, str)
    sentences = [sentences] if single else list(sentences)
    column = {str(g): i for i, g in enumerate(genes)}
    out = np.zeros((len(sentences), len(column)), np.float32)
    unknown: list[list[str]] = []
    for row, sentence in enumerate(sentences):
        words = sentence.split(delimiter) if sentence else []
        value = fit["intercept"] + fit["slope"] * np.log10(1 + np.arange(len(words)))
        missing = []
        for position in range(len(words) - 1, -1, -1):  # backwards so the first occurrence wins
            j = column.get(words[position])
            if j is None:
                missing.append(words[position])
            else:
                out[row, j] = value[position]
        unknown.append(missing[::-1])
    counts = Counter(w for m in unknown for w in m)
    if counts and on_unknown != "ignore":
        shown = ", ".join(f"{w!r} x{c}" for w, c in counts.most_common(5))
        message = (f"{sum(counts.values())} words in {sum(1 for m in unknown if m)} sentences are not known genes "
                   f"({shown}{', ...' if len(counts) > 5 else ''}); they get no value.")
        if on_unknown == "raise":
            raise ValueError(message)
        warnings.warn(message, stacklevel=2)
    result = out[0] if single else out
    if return_unknown:
        return result, (unknown[0] if single else unknown)
    return result
