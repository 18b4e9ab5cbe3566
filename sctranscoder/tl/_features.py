"""Transcoder features on cells and genes: per-cell activity, per-gene activity, each feature's genes
and the cell types it fires in."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .._obs import require_obs_column

FEATURES_KEY = "features"
GENE_SCORES = ("contrast", "activity")
GENE_SCORE = "activity"


def visible_genes(adata, model=None, *, n_genes: int | None = None) -> list[str]:
    """The genes a C2S model can see on these cells: those in at least one cell's sentence (its top
    ``n_genes``, default: the model's prompt setting), uppercased as in the sentences.

    This is the background for enrichment: a gene the model never reads cannot be in a feature's list.
    """
    from ..pp import PromptSettings
    from ..pp._read import ranked_genes, stored_genes
    from ..pp._sentences import RANKS_KEY
    from ..prompt import prompt_settings

    if model is not None:
        n_genes = prompt_settings(adata, model, n_genes=n_genes, progress=False).n_genes
    elif RANKS_KEY not in adata.obsm:  # no model: the default settings' sentences
        PromptSettings().updated(n_genes=n_genes).ensure_sentences(adata, progress=False)
    _, ordered = ranked_genes(adata, n_genes)
    names = stored_genes(adata)
    return [str(names[i]).upper() for i in np.unique(ordered)]


def _pick_transcoder(transcoders, layer):
    if isinstance(transcoders, dict):
        if layer is None:
            if len(transcoders) != 1:
                raise ValueError(f"transcoders covers layers {sorted(transcoders)}; pass layer=<one of them>.")
            layer = next(iter(transcoders))
        if layer not in transcoders:
            raise KeyError(f"No transcoder for layer {layer}; transcoders covers layers {sorted(transcoders)}.")
        return transcoders[layer], int(layer)
    if layer is None:
        raise ValueError("Pass layer=<the layer this transcoder replaces>.")
    return transcoders, int(layer)


def feature_activity(
    adata,
    model,
    transcoders,
    layer: int | None = None,
    *,
    pool: str = "max",
    tokens: str = "genes",
    n_genes: int | None = None,
    encoded=None,
    key_added: str = FEATURES_KEY,
    batch_size: int = 16,
    cells_per_pass: int = 256,
    rows_per_encode: int = 8192,
    progress: bool = True,
    inplace: bool = True,
):
    """Transcoder feature activity per cell and per gene.

    Runs the C2S model over every cell's prompt, encodes each token's MLP input at
    ``layer`` with the transcoder, and pools:

    - per cell: ``pool`` (``"max"`` or ``"mean"``) of each feature over the cell's
      tokens (``tokens="genes"``: its gene tokens; ``"all"``: every prompt token);
    - per gene: each occurrence of a gene in a sentence is the max over its tokens;
      a gene's activity is the mean over all its occurrences (so a gene that occurs in
      many cells is not favoured over a rare one), with the number of occurrences kept;
      its contrast is the same mean of each occurrence minus its cell's mean over its genes.

    Parameters
    ----------
    adata
        Cells; cell sentences are computed when missing.
    model
        A :class:`sctranscoder.models.C2SModel`.
    transcoders
        ``{layer: Transcoder}`` (as from :func:`train_transcoders`) or one transcoder.
    layer
        The layer to read (needed when ``transcoders`` covers several).
    pool, tokens
        How the per-cell activity is pooled, and over which tokens.
    n_genes
        Genes per prompt (default: the model's setting).
    encoded
        ``adata``'s cells already tokenized (:func:`sctranscoder.tl.encode_cells`); default: each pass of
        ``cells_per_pass`` cells is tokenized once, here.
    key_added
        ``adata.obsm[key_added]``: cells x features; ``adata.uns[key_added]``: the
        settings, ``genes``, ``gene_activity`` and ``gene_contrast`` (genes x features), ``gene_occurrences``,
        and ``gene_score``: which of the two ranks each feature's genes downstream (:func:`feature_genes`, and
        with it enrichment, cards and controls; ``"activity"``, set it to ``"contrast"`` to rank by it).
    batch_size, cells_per_pass, rows_per_encode
        Prompts per forward pass, cells harvested at a time, tokens encoded at a time
        (memory: ``rows_per_encode x n_features`` floats).
    inplace
        Write into ``adata``; either way the result is returned (``{"cells": cells x features, "uns": ...}``).
    """
    import torch

    from ..prompt import resolve_cells, resolve_settings
    from ..tc import ActivityPool
    from ._harvest import harvest

    if pool not in ("max", "mean"):
        raise ValueError(f"pool={pool!r} must be 'max' or 'mean'.")
    if tokens not in ("genes", "all"):
        raise ValueError(f"tokens={tokens!r} must be 'genes' or 'all'.")
    transcoder, layer = _pick_transcoder(transcoders, layer)
    settings = resolve_settings(adata, model, encoded, progress=progress, n_genes=n_genes)
    n_genes = settings.n_genes
    d_hidden = int(transcoder.cfg.d_hidden)
    activity, genes = None, None
    transcoder.eval()
    iterator = range(0, adata.n_obs, cells_per_pass)
    if progress:
        from .._progress import progress_bar

        iterator = progress_bar(iterator, desc=f"feature activity, layer {layer}", unit="passes")
    for start in iterator:
        stop = min(start + cells_per_pass, adata.n_obs)
        chunk = resolve_cells(adata, model, encoded, rows=np.arange(start, stop), settings=settings, progress=False)
        store = harvest(adata[start:stop], model, [layer], None, encoded=chunk, batch_size=batch_size,
                        dtype="float32", only_genes=tokens == "genes", progress=False)
        if genes is None:
            genes = list(store.info["genes"])
            activity = ActivityPool(adata.n_obs, len(genes), d_hidden)
        mlp_in, _ = store.read(layer)
        meta = store.metadata()
        # an occurrence is one gene in one cell's sentence; its tokens are contiguous rows
        activity.add(transcoder, mlp_in, torch.from_numpy(meta["document"].astype(np.int64)) + start,
                     torch.from_numpy(meta["gene"].astype(np.int64)), torch.from_numpy(meta["gene_id"].astype(np.int64)),
                     max_spans=n_genes, rows_per_encode=rows_per_encode)
    result = {
        "cells": activity.documents(pool),
        "uns": {"layer": layer, "pool": pool, "tokens": tokens, "n_genes": int(n_genes), "d_hidden": d_hidden,
                "activation": transcoder.cfg.activation, "genes": [str(g).upper() for g in genes],
                "gene_activity": activity.names(), "gene_contrast": activity.name_contrast(),
                "gene_score": GENE_SCORE, "gene_occurrences": activity.occurrences(),
                "cell_tokens": activity.document_tokens()},
    }
    if not inplace:
        return result
    adata.obsm[key_added] = result["cells"]
    adata.uns[key_added] = result["uns"]
    return result


def _activity(adata, key: str):
    if key not in adata.obsm or key not in adata.uns:
        raise KeyError(f"No feature activity under {key!r}; run sct.tl.feature_activity(adata, model, transcoders, "
                       f"layer, key_added={key!r}) first.")
    return np.asarray(adata.obsm[key]), adata.uns[key]


def features_to_obs(adata, features, *, key: str = FEATURES_KEY, prefix: str = "feature_") -> list[str]:
    """Copy chosen features' per-cell activity into ``adata.obs`` columns (``feature_12``...), so scanpy
    can colour by them: ``sc.pl.umap(adata, color=sct.tl.features_to_obs(adata, [12, 40]))``."""
    cells, _ = _activity(adata, key)
    columns = []
    for feature in np.atleast_1d(features):
        feature = int(feature)
        if not 0 <= feature < cells.shape[1]:
            raise IndexError(f"Feature {feature} is out of range; there are {cells.shape[1]} features.")
        adata.obs[f"{prefix}{feature}"] = cells[:, feature]
        columns.append(f"{prefix}{feature}")
    return columns


def alive_features(adata, *, key: str = FEATURES_KEY) -> np.ndarray:
    """Features that fire (activity > 0) in at least one cell."""
    cells, _ = _activity(adata, key)
    return np.flatnonzero((cells > 0).any(axis=0))


def feature_specificity(adata, label_key: str, *, key: str = FEATURES_KEY, features=None) -> pd.DataFrame:
    """How specific each feature's per-cell activity is to each label: one row per (feature, label) with
    the mean inside and outside the label, their difference, Cohen's d (pooled standard deviation),
    the AUROC of the activity for telling the label's cells from the rest, and the fraction of the
    label's cells where the feature fires."""
    from scipy.stats import rankdata

    cells, _ = _activity(adata, key)
    require_obs_column(adata, label_key)
    features = np.arange(cells.shape[1]) if features is None else np.asarray(features, dtype=np.int64)
    values = cells[:, features].astype(np.float64)
    labels = adata.obs[label_key].astype(str).to_numpy()
    ranks = rankdata(values, axis=0)  # ties get mid-ranks, as the Mann-Whitney AUROC needs
    rows = []
    for label in pd.unique(labels):
        inside = labels == label
        n_in, n_out = int(inside.sum()), int((~inside).sum())
        if n_out == 0:
            raise ValueError(f"Every cell has the label {label!r}; specificity needs at least two labels.")
        mean_in, mean_out = values[inside].mean(0), values[~inside].mean(0)
        var_in = values[inside].var(0, ddof=1) if n_in > 1 else np.zeros(len(features))
        var_out = values[~inside].var(0, ddof=1) if n_out > 1 else np.zeros(len(features))
        pooled = np.sqrt(((n_in - 1) * var_in + (n_out - 1) * var_out) / max(n_in + n_out - 2, 1))
        with np.errstate(divide="ignore", invalid="ignore"):
            cohens_d = np.where(pooled > 0, (mean_in - mean_out) / pooled, 0.0)
        auroc = (ranks[inside].sum(0) - n_in * (n_in + 1) / 2) / (n_in * n_out)
        rows.append(pd.DataFrame({"feature": features, "label": label, "n_cells": n_in, "mean_in": mean_in,
                                  "mean_out": mean_out, "mean_difference": mean_in - mean_out,
                                  "cohens_d": cohens_d, "auroc": auroc,
                                  "fraction_active": (values[inside] > 0).mean(0)}))
    return pd.concat(rows, ignore_index=True)


def feature_genes(
    adata,
    features=None,
    *,
    key: str = FEATURES_KEY,
    n_top: int = 25,
    threshold: float | None = None,
    min_occurrences: int = 3,
    label_key: str | None = None,
    score: str | None = None,
) -> pd.DataFrame:
    """Each feature's genes and, with ``label_key``, the cell type it is most specific to.

    Parameters
    ----------
    features
        Feature indices (default: the alive ones, see :func:`alive_features`).
    n_top
        Genes kept per feature, by the gene score (positive scores only).
    threshold
        Instead keep every gene whose activity is at least this fraction of the
        feature's highest gene activity (still at most ``n_top`` when both are given).
    min_occurrences
        Genes seen fewer times in the sentences are left out (their mean is noise).
    label_key
        ``adata.obs`` column: adds ``top_label`` (highest AUROC), its ``auroc``,
        ``cohens_d``, ``mean_difference`` and ``fraction_active``.
    score
        ``"activity"`` (mean activity over the gene's occurrences) or ``"contrast"`` (the same minus each
        occurrence's cell mean over its genes: what sets the gene apart within its cell); default: the
        activity's ``gene_score`` (:func:`feature_activity`).

    Returns
    -------
    One row per feature (index ``feature``): ``genes`` (list, best first),
    ``gene_scores`` (their activities), ``n_cells_active``, ``max_cell_activity``
    and the label columns.
    """
    cells, info = _activity(adata, key)
    features = alive_features(adata, key=key) if features is None else np.asarray(features, dtype=np.int64)
    ranking = gene_scores(info, score)
    counts = np.asarray(info["gene_occurrences"])
    names = np.asarray(info["genes"], dtype=object)
    usable = counts >= min_occurrences
    rows = []
    for feature in features:
        scores = np.where(usable, ranking[:, feature], 0.0)
        order = np.argsort(-scores, kind="stable")
        order = order[scores[order] > 0]
        if threshold is not None and order.size:
            order = order[scores[order] >= threshold * scores[order[0]]]
        order = order[:n_top] if n_top is not None else order
        rows.append({"feature": int(feature), "genes": list(names[order]),
                     "gene_scores": [float(s) for s in scores[order]],
                     "n_cells_active": int((cells[:, feature] > 0).sum()),
                     "max_cell_activity": float(cells[:, feature].max(initial=0.0))})
    table = pd.DataFrame(rows, columns=["feature", "genes", "gene_scores", "n_cells_active", "max_cell_activity"])
    table = table.set_index("feature")
    if label_key is not None and len(table):
        spec = feature_specificity(adata, label_key, key=key, features=features)
        best = spec.loc[spec.groupby("feature")["auroc"].idxmax()].set_index("feature")
        table = table.join(best[["label", "auroc", "cohens_d", "mean_difference", "fraction_active"]]
                           .rename(columns={"label": "top_label"}))
    return table


def gene_scores(info: dict, score: str | None = None) -> np.ndarray:
    """Genes x features: the score that ranks each feature's genes (``score`` or the activity's own setting)."""
    score = score or info.get("gene_score", "activity")
    if score not in GENE_SCORES:
        raise ValueError(f"score={score!r} must be one of {GENE_SCORES}.")
    if score == "contrast":
        if "gene_contrast" not in info:
            raise KeyError("This feature activity has no gene contrast (computed by an older version); run "
                           "sct.tl.feature_activity again.")
        return np.asarray(info["gene_contrast"])
    return np.asarray(info["gene_activity"])


def feature_background(adata, *, key: str = FEATURES_KEY, min_occurrences: int = 1) -> list[str]:
    """The genes that occurred in the harvested sentences: the background of the features' gene lists."""
    _, info = _activity(adata, key)
    counts = np.asarray(info["gene_occurrences"])
    return [g for g, c in zip(info["genes"], counts) if c >= min_occurrences]
