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
COLUMNS = ["layer", "side", "n_features", "n_listable", "n_enriched", "fraction_enriched", "p_value", "note"]
# The enrichment step sets no least list length (any non-empty list is tested), so this is chosen: a list of fewer
# than 3 genes cannot share 3 genes with a set, the fewest the headlines (headline_sets' min_genes) and the report
# accept to name a pathway. Such features count as firing but not as testable, on every side, so a basis with
# many one- or two-gene lists does not look less enriched only for that.
MIN_LISTABLE_GENES = 3


def _enriched_features(adata, model, transcoder_map, layer, gene_sets, key, n_top, gene_score, test, progress,
                        *, computed: bool = False):
    """(alive features, testable ones, the testable ones with a set enriched beyond spelling) for one layer,
    genes ranked by ``gene_score``; ``computed``: the feature activity is already under ``key``."""
    from ._features import alive_features, feature_activity, feature_genes
    from ._spelling import enrich_beyond_spelling

    if not computed:
        feature_activity(adata, model, transcoder_map, layer, key_added=key, progress=progress)
    adata.uns[key]["gene_score"] = gene_score
    alive = alive_features(adata, key=key)
    if not alive.size:
        return 0, 0, []
    lists = feature_genes(adata, alive, key=key, n_top=n_top).genes  # the lists enrich_beyond_spelling tests
    listable = {int(f) for f, genes in lists.items() if len(genes) >= MIN_LISTABLE_GENES}
    if not listable:
        return int(alive.size), 0, []
    # every alive feature is tested, as the report's enrichment table does (the same null draws); only the
    # testable ones count
    table = enrich_beyond_spelling(adata, gene_sets, model=model, key=key, features=alive, n_top=n_top, **test)
    passed = {int(f) for f in pd.unique(table.loc[table["Beyond spelling"], "List"].astype(str))}
    return int(alive.size), len(listable), sorted(passed & listable)


def _checked_activity_keys(adata, activity_keys: dict, layers) -> dict:
    keys = {int(layer): key for layer, key in activity_keys.items()}
    for layer, key in keys.items():
        if key not in adata.obsm or key not in adata.uns:
            raise KeyError(f"activity_keys: no feature activity under {key!r} for layer {layer}; run "
                           f"sct.tl.feature_activity(adata, model, transcoders, {layer}, key_added={key!r}) first, "
                           "or leave the layer out of activity_keys.")
        if int(adata.uns[key]["layer"]) != layer:
            raise ValueError(f"activity_keys: {key!r} holds layer {adata.uns[key]['layer']}'s activity, not layer "
                             f"{layer}'s.")
    return {layer: key for layer, key in keys.items() if layer in layers}


def _same_pipeline(trained: dict, control: dict, key: str) -> None:
    """The trained side read from ``key`` was made as the controls are, so the comparison is like for like."""
    differ = [name for name in ("pool", "tokens", "n_genes") if trained[name] != control[name]]
    if differ:
        raise ValueError(f"activity_keys: {key!r} was made with {', '.join(f'{n}={trained[n]!r}' for n in differ)}, "
                         f"the controls with {', '.join(f'{n}={control[n]!r}' for n in differ)}; rerun "
                         "feature_activity with feature_controls' settings or leave the layer out of activity_keys.")


def _fisher_greater(trained: tuple[int, int], control: tuple[int, int]) -> float:
    """One-sided Fisher's exact p that the trained features are enriched more often than the control's."""
    from scipy.stats import fisher_exact

    (n_t, e_t), (n_c, e_c) = trained, control
    if n_t == 0 or n_c == 0:
        return float("nan")
    return float(fisher_exact([[e_t, n_t - e_t], [e_c, n_c - e_c]], alternative="greater").pvalue)


def feature_controls(adata, model, transcoders, gene_sets="all", *, layers=None, untrained: bool = True,
                     n_top: int = 25, max_fdr: float = 0.05, n_null: int = 1000, seed: int = 0,
                     gene_score: str = GENE_SCORE, activity_keys: dict | None = None, progress: bool = True,
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
    activity_keys
        ``{layer: key}`` where :func:`feature_activity` already ran on ``adata`` with these transcoders (its
        ``key_added``): those layers' trained side reads it instead of running the model again. It must have
        been made with the settings the controls use (pool, tokens, genes per prompt), or this raises.
    key_added
        ``adata.uns[key_added]`` gets the table.

    Returns
    -------
    One row per layer and side: ``n_features`` (alive features), ``n_listable`` (the alive features whose gene
    list holds at least :data:`MIN_LISTABLE_GENES` genes, so that it can be tested), ``n_enriched`` (testable
    features with a set enriched beyond spelling), ``fraction_enriched`` (``n_enriched / n_listable``, the same
    denominator on every side), ``p_value`` (one-sided Fisher's exact test on those counts that the trained
    features are enriched more often than this control's; empty on the trained rows) and ``note``.
    ``attrs["enriched_features"]`` lists the enriched features of each layer and side (a random direction keeps
    the number of the feature it replaces).
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
    activity_keys = _checked_activity_keys(adata, activity_keys or {}, layers)
    for layer in layers:
        inputs, _ = store.read(layer)
        directions = random_directions(transcoders[layer], torch.as_tensor(inputs).float(), seed=seed + layer)
        random_side = _enriched_features(scratch, model, {layer: directions}, layer, gene_sets, "_control_random",
                                         n_top, gene_score, test, progress)
        trained_key = activity_keys.get(layer, "_control_trained")
        if layer in activity_keys:  # made as the random side just was?
            _same_pipeline(scratch.uns[trained_key], scratch.uns["_control_random"], trained_key)
        counts = {"trained": _enriched_features(scratch, model, transcoders, layer, gene_sets, trained_key, n_top,
                                                gene_score, test, progress, computed=layer in activity_keys),
                  "random_directions": random_side}
        if untrained_model is not None:
            # every cell trains the control: the model's recorded held-out cells may be all of these
            retrained = train_transcoders(scratch, untrained_model, [layer], cfg=transcoders[layer].cfg,
                                          held_out=np.zeros(scratch.n_obs, bool), progress=progress,
                                          key_added="_control_transcoders")
            counts["untrained_model"] = _enriched_features(scratch, untrained_model, retrained, layer, gene_sets,
                                                           "_control_untrained", n_top, gene_score, test, progress)
        for side in SIDES:
            if side not in counts:
                rows.append({"layer": layer, "side": side, "n_features": 0, "n_listable": 0, "n_enriched": 0,
                             "fraction_enriched": np.nan, "p_value": np.nan,
                             "note": "skipped (untrained=False): this control was not run"})
                continue
            n, listable, features = counts[side]
            enriched_features[(layer, side)] = features
            enriched = len(features)
            _, trained_listable, trained_features = counts["trained"]
            p = np.nan if side == "trained" else _fisher_greater((trained_listable, len(trained_features)),
                                                                 (listable, enriched))
            rows.append({"layer": layer, "side": side, "n_features": n, "n_listable": listable, "n_enriched": enriched,
                         "fraction_enriched": enriched / listable if listable else np.nan, "p_value": p, "note": ""})
        logger.info("layer %d: %s", layer, "; ".join(f"{s} {len(e)}/{m} testable of {n}"
                                                    for s, (n, m, e) in counts.items()))
    table = pd.DataFrame(rows, columns=COLUMNS)
    table.attrs["settings"] = {"gene_sets": gene_sets if isinstance(gene_sets, str) else "custom", "n_top": n_top,
                               "max_fdr": max_fdr, "n_null": n_null, "seed": seed, "cells": int(adata.n_obs),
                               "gene_score": gene_score, "min_listable_genes": MIN_LISTABLE_GENES}
    table.attrs["enriched_features"] = {f"layer {layer} {side}": features
                                        for (layer, side), features in enriched_features.items()}
    adata.uns[key_added] = table
    return table


CONTROL_NAMES = {"random_directions": "random directions that fire as often",
                 "untrained_model": "features of transcoders on the same model with re-initialised weights"}


def _share(row, subject: str, *, first: bool = False, then: str = "") -> str:
    """``row``'s enriched share of ``subject`` in words, over its testable features (the first time, with what
    testable means and how many fire); ``then`` joins the parenthesis."""
    n, listable, enriched = int(row.n_features), int(row.n_listable), int(row.n_enriched)
    tail = f"; {then}" if then else ""
    if not n:
        return f"none of {subject} (none fires{tail})"
    if not listable:
        return f"none of {subject} ({n} fire, but none has {MIN_LISTABLE_GENES} genes on its list to test{tail})"
    said = (f"{enriched} of {listable}: those with at least {MIN_LISTABLE_GENES} genes on their list, of {n} that "
            "fire" if first else f"{enriched} of {listable} testable")
    return f"{enriched / listable:.0%} of {subject} ({said}{tail})"


def _require_listable(table: pd.DataFrame) -> None:
    if "n_listable" not in table:
        raise ValueError("the controls table has no n_listable column: it was made before sctranscoder counted "
                         "testable features; run sct.tl.feature_controls again.")


def _p_text(p: float) -> str:
    return f"p = {p:.1g}" if p < 0.01 else f"p = {p:.2f}"


def control_headline(table: pd.DataFrame, layer: int, *, alpha: float = 0.05) -> str:
    """One sentence a biologist can sign: a layer's enriched share of trained features beside each control's.

    ``table`` is :func:`feature_controls`' table. When the trained features do not beat a control at ``alpha``
    (one-sided Fisher's exact test), the sentence says so and what it means for reading this model's features.
    """
    _require_listable(table)
    rows = table[table.layer == layer].set_index("side")
    if "trained" not in rows.index:
        raise ValueError(f"the controls table has no trained row for layer {layer}; its layers: "
                         f"{sorted(table.layer.unique())}.")
    trained = rows.loc["trained"]
    fdr = table.attrs.get("settings", {}).get("max_fdr", 0.05)
    subject = f"layer {layer}'s testable features"
    said = (f"{_share(trained, subject, first=True)} have a gene set "
            f"enriched beyond spelling (FDR <= {fdr})")
    beaten, not_beaten, skipped = [], [], []
    for side, name in CONTROL_NAMES.items():
        if side not in rows.index:
            continue
        row = rows.loc[side]
        if not row.n_features and str(row.note).startswith("skipped"):
            skipped.append(name)
            continue
        text = _share(row, name, then=_p_text(row.p_value))
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
    """A short clause for a headline: the layer's enriched share of testable features beside the random
    directions'."""
    _require_listable(table)
    rows = table[table.layer == layer].set_index("side")
    if not {"trained", "random_directions"} <= set(rows.index):
        return ""
    trained, random = rows.loc["trained"], rows.loc["random_directions"]
    shares = (f"{trained.fraction_enriched:.0%} of layer {layer}'s testable features are enriched beyond spelling "
              f"against {random.fraction_enriched:.0%} of random directions firing as often, "
              f"{_p_text(random.p_value)}")
    if random.p_value < alpha:
        return shares
    return shares + ": no more than chance, so read this as a description of the feature, not as evidence"
