"""Feature meanings beside their randomized controls: the trained features, random encoder directions that fire
as often, and transcoders trained on the same architecture with re-initialised weights, all through the same
feature-to-gene method, gene background, spelling null and FDR."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from ._features import GENE_SCORE

logger = logging.getLogger(__name__)

SIDES = ("trained", "random_directions", "untrained_model")
COLUMNS = ["layer", "side", "n_features", "n_enriched", "fraction_enriched", "p_value", "note"]


def _enriched_features(adata, model, transcoder_map, layer, gene_sets, key, n_top, gene_score, test, progress):
    """(alive features, the features with a set enriched beyond spelling) for one layer, genes ranked by
    ``gene_score``."""
    from ._features import alive_features, feature_activity
    from ._spelling import enrich_beyond_spelling

    feature_activity(adata, model, transcoder_map, layer, key_added=key, progress=progress)
    adata.uns[key]["gene_score"] = gene_score
    alive = alive_features(adata, key=key)
    if not alive.size:
        return 0, []
    try:
        table = enrich_beyond_spelling(adata, gene_sets, model=model, key=key, features=alive, n_top=n_top, **test)
    except ValueError:  # no feature has a gene above the cut
        return int(alive.size), []
    return int(alive.size), sorted(int(f) for f in pd.unique(table.loc[table["Beyond spelling"], "List"].astype(str)))


def _fisher_greater(trained: tuple[int, int], control: tuple[int, int]) -> float:
    """One-sided Fisher's exact p that the trained features are enriched more often than the control's."""
    from scipy.stats import fisher_exact

    (n_t, e_t), (n_c, e_c) = trained, control
    if n_t == 0 or n_c == 0:
        return float("nan")
    return float(fisher_exact([[e_t, n_t - e_t], [e_c, n_c - e_c]], alternative="greater").pvalue)


def feature_controls(adata, model, transcoders, gene_sets="all", *, layers=None, untrained: bool = True,
                     n_top: int = 25, max_fdr: float = 0.05, n_null: int = 1000, seed: int = 0,
                     gene_score: str = GENE_SCORE, progress: bool = True,
                     key_added: str = "feature_controls") -> pd.DataFrame:
    """How often trained transcoder features are enriched in gene sets, beside randomized controls.

    Each side runs through exactly the same pipeline: feature activity over ``adata``'s cells
    (:func:`feature_activity`), each alive feature's top ``n_top`` genes, and enrichment beyond spelling
    (:func:`enrich_beyond_spelling`: BH FDR and a null of random lists with the same gene-name families) against
    the genes the features can see. The sides:

    - ``trained``: the transcoders as given;
    - ``random_directions``: their encoders replaced by random directions, each firing on as many of these
      cells' gene tokens as the trained feature it replaces (:func:`sctranscoder.tc.random_directions`);
    - ``untrained_model``: transcoders trained with each layer's settings on the same cells through the same
      architecture and tokenizer with re-initialised weights (:func:`sctranscoder.models.reinitialized`).

    Parameters
    ----------
    adata
        Cells the features are read on.
    model
        The :class:`sctranscoder.models.C2SModel` the transcoders were trained on.
    transcoders
        ``{layer: Transcoder}``.
    gene_sets
        Libraries to test (as :func:`sctranscoder.genesets.enrich` takes them).
    layers
        Layers to measure (default: every layer of ``transcoders``).
    untrained
        Also run the untrained-model side (it trains a transcoder per layer); ``False`` skips it, and its rows
        then say so.
    n_top, max_fdr, n_null
        Genes per feature, the FDR and the spelling null's lists (``n_null`` lists give p-values down to
        ``1 / (n_null + 1)``).
    seed
        Seed of the random directions, the re-initialisation and the null.
    gene_score
        What ranks each feature's genes, on every side: ``"activity"`` or ``"contrast"`` (:func:`feature_genes`).
    key_added
        ``adata.uns[key_added]`` gets the table.

    Returns
    -------
    One row per layer and side: ``n_features`` (alive features), ``n_enriched`` (with a set enriched beyond
    spelling), ``fraction_enriched``, ``p_value`` (one-sided Fisher's exact test that the trained features are
    enriched more often than this control's; empty on the trained rows) and ``note``. ``attrs["enriched_features"]``
    lists the enriched features of each layer and side (a random direction keeps the number of the feature
    it replaces).
    """
    import torch

    from ..models import reinitialized
    from ..tc import random_directions
    from ._harvest import harvest
    from ._transcoders import train_transcoders

    layers = sorted(transcoders) if layers is None else [int(layer) for layer in layers]
    missing = [layer for layer in layers if layer not in transcoders]
    if missing:
        raise ValueError(f"layers {missing} have no transcoder; transcoders cover {sorted(transcoders)}.")
    test = {"max_fdr": max_fdr, "n_null": n_null, "seed": seed}
    scratch = adata.copy()  # feature activity of the controls never lands in the user's AnnData
    untrained_model = reinitialized(model, seed=seed) if untrained else None
    rows, enriched_features = [], {}
    # the MLP inputs the random directions are calibrated on: one pass of the model for every layer
    store = harvest(scratch, model, layers, None, dtype="float32", only_genes=True, progress=False)
    for layer in layers:
        counts = {"trained": _enriched_features(scratch, model, transcoders, layer, gene_sets,
                                                "_control_trained", n_top, gene_score, test, progress)}
        inputs, _ = store.read(layer)
        directions = random_directions(transcoders[layer], torch.as_tensor(inputs).float(), seed=seed + layer)
        counts["random_directions"] = _enriched_features(scratch, model, {layer: directions}, layer, gene_sets,
                                                         "_control_random", n_top, gene_score, test, progress)
        if untrained_model is not None:
            # every cell trains the control: the model's recorded held-out cells may be all of these
            retrained = train_transcoders(scratch, untrained_model, [layer], cfg=transcoders[layer].cfg,
                                          held_out=np.zeros(scratch.n_obs, bool), progress=progress,
                                          key_added="_control_transcoders")
            counts["untrained_model"] = _enriched_features(scratch, untrained_model, retrained, layer, gene_sets,
                                                           "_control_untrained", n_top, gene_score, test, progress)
        for side in SIDES:
            if side not in counts:
                rows.append({"layer": layer, "side": side, "n_features": 0, "n_enriched": 0,
                             "fraction_enriched": np.nan, "p_value": np.nan,
                             "note": "skipped (untrained=False): this control was not run"})
                continue
            n, features = counts[side]
            enriched_features[(layer, side)] = features
            enriched = len(features)
            p = np.nan if side == "trained" else _fisher_greater((counts["trained"][0], len(counts["trained"][1])),
                                                                 (n, enriched))
            rows.append({"layer": layer, "side": side, "n_features": n, "n_enriched": enriched,
                         "fraction_enriched": enriched / n if n else np.nan, "p_value": p, "note": ""})
        logger.info("layer %d: %s", layer, "; ".join(f"{s} {len(e)}/{n}" for s, (n, e) in counts.items()))
    table = pd.DataFrame(rows, columns=COLUMNS)
    table.attrs["settings"] = {"gene_sets": gene_sets if isinstance(gene_sets, str) else "custom", "n_top": n_top,
                               "max_fdr": max_fdr, "n_null": n_null, "seed": seed, "cells": int(adata.n_obs),
                               "gene_score": gene_score}
    table.attrs["enriched_features"] = {f"layer {layer} {side}": features
                                        for (layer, side), features in enriched_features.items()}
    adata.uns[key_added] = table
    return table


CONTROL_NAMES = {"random_directions": "random directions that fire as often",
                 "untrained_model": "features of transcoders on the same model with re-initialised weights"}


def _share(n_enriched: int, n_features: int) -> str:
    return f"{n_enriched / n_features:.0%} ({n_enriched} of {n_features})" if n_features else "none (no feature fires)"


def _p_text(p: float) -> str:
    return f"p = {p:.1g}" if p < 0.01 else f"p = {p:.2f}"


def control_headline(table: pd.DataFrame, layer: int, *, alpha: float = 0.05) -> str:
    """One sentence a biologist can sign: a layer's enriched share of trained features beside each control's.

    ``table`` is :func:`feature_controls`' table. When the trained features do not beat a control at ``alpha``
    (one-sided Fisher's exact test), the sentence says so and what it means for reading this model's features.
    """
    rows = table[table.layer == layer].set_index("side")
    if "trained" not in rows.index:
        raise ValueError(f"the controls table has no trained row for layer {layer}; its layers: "
                         f"{sorted(table.layer.unique())}.")
    trained = rows.loc["trained"]
    fdr = table.attrs.get("settings", {}).get("max_fdr", 0.05)
    said = (f"{_share(int(trained.n_enriched), int(trained.n_features))} of layer {layer}'s features have a gene set "
            f"enriched beyond spelling (FDR <= {fdr})")
    beaten, not_beaten, skipped = [], [], []
    for side, name in CONTROL_NAMES.items():
        if side not in rows.index:
            continue
        row = rows.loc[side]
        if not row.n_features and str(row.note).startswith("skipped"):
            skipped.append(name)
            continue
        text = f"{_share(int(row.n_enriched), int(row.n_features))} of {name} ({_p_text(row.p_value)})"
        (beaten if row.p_value < alpha else not_beaten).append(text)
    if beaten:
        said += ", against " + " and ".join(beaten)
    if not_beaten:
        said += ("; so are " if not beaten else "; but so are ") + " and ".join(not_beaten)
        said += (". The trained features are not enriched more often than this control: on this model their "
                 "gene lists describe where they fire, and are not by themselves evidence of biology")
    said += "."
    if skipped:
        said += f" Not run here: {' and '.join(skipped)}."
    return said


def control_clause(table: pd.DataFrame, layer: int, *, alpha: float = 0.05) -> str:
    """A short clause for a headline: the layer's enriched share of features beside the random directions'."""
    rows = table[table.layer == layer].set_index("side")
    if not {"trained", "random_directions"} <= set(rows.index):
        return ""
    trained, random = rows.loc["trained"], rows.loc["random_directions"]
    shares = (f"{trained.fraction_enriched:.0%} of layer {layer}'s features are enriched beyond spelling against "
              f"{random.fraction_enriched:.0%} of random directions firing as often, {_p_text(random.p_value)}")
    if random.p_value < alpha:
        return shares
    return shares + ": no more than chance, so read this as a description of the feature, not as evidence"
