"""Feature cards: everything a biologist needs to name a transcoder feature, and a one-line label built from it."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .._obs import require_obs_column
from ._features import FEATURES_KEY, _activity, alive_features, feature_genes, feature_specificity

SHOWN_TYPES = 3  # cell types on a card, by AUROC
SMALL_GROUP = 10  # labels with fewer cells: AUROC 1.0 and 2/3 overlaps come easily; marked, never headlined


def _label(card: dict) -> str:
    """One line from the card's own numbers (no language model)."""
    where = (f"{card['top_label']} (AUROC {card['auroc']:.2f})" if card["auroc"] >= 0.7
             else "no cell type (AUROC < 0.7)")
    if card["small_group"]:
        where = f"{card['top_label']}, a small group of {card['label_cells']} cells"
    if card["best_sets"]:
        caveat = " (its layer's features are not enriched more often than random directions)" if card.get(
            "control_beaten") is False else ""
        return f"{card['best_sets'][0]}{caveat} · {where}"
    if card["spelling_score"] >= 0.4 and card["family"]:
        return f"spells {card['family']}* ({card['family_genes']} of its top {card['n_top']} genes) · {where}"
    genes = ", ".join(card["top_genes"][:3]) or "no genes"
    return f"{genes} · {where}"


def feature_cards(adata, features=None, *, label_key: str, key: str = FEATURES_KEY, model=None, transcoders=None,
                  enrichment: pd.DataFrame | None = None, gene_sets="all", n_genes: int = 10, n_top: int = 25,
                  n_cells: int = 5, min_occurrences: int = 3, families: pd.Series | None = None,
                  controls: pd.DataFrame | None = None, **test) -> pd.DataFrame:
    """A card per feature: its genes, cell types and cells, specificity, gene sets beyond spelling, the genes
    whose tokens drive it directly, its spelling score, and a one-line automatic label.

    Parameters
    ----------
    adata
        Cells with feature activity under ``key`` (:func:`feature_activity`) and labels in ``obs[label_key]``.
    features
        Feature indices (default: the alive ones).
    model, transcoders
        Optional: the C2S model and ``{layer: Transcoder}``; with them the name families include the
        tokenizer's leading subwords, and the cards get de-embedding genes and ``token_identity_r``.
    enrichment
        :func:`enrich_beyond_spelling`'s table for these features; computed (against ``gene_sets``) when None.
        Pass ``gene_sets=None`` to skip enrichment.
    n_genes, n_top
        Genes shown on a card; genes per feature list for enrichment and the family share.
    n_cells
        Cells shown (by activity); the card's three best cell types by AUROC are always shown.
    controls
        :func:`feature_controls`' table: every card then carries its layer's enriched share beside the random
        directions' (``layer_control``), and a set-named label says when the layer does not beat them.
    test
        Settings of the enrichment test beyond spelling (``n_null=200``, ``seed=0``, ...), as
        :func:`enrich_beyond_spelling` takes them.

    Returns
    -------
    One row per feature (index ``feature``): ``label``, ``top_genes`` (per-gene activity, pooled over every
    occurrence of the gene), ``top_cell_types`` (``"type (AUROC)"``), ``top_label``, ``auroc``, ``label_cells``,
    ``small_group`` (fewer than 10 cells carry its top label), ``top_cells``, ``n_cells_active``, ``best_sets``
    (headline sets beyond spelling, see :func:`headline_sets`), ``de_embedding_genes``, ``family``,
    ``family_genes`` (of the top ``n_top``), ``family_share``, ``token_identity_r``, ``spelling_score``,
    ``layer_control`` (the layer's control sentence; empty without ``controls``).
    """
    from ..genesets import headline_sets
    from ._spelling import enrich_beyond_spelling, gene_families, spelling_scores

    cells, info = _activity(adata, key)
    require_obs_column(adata, label_key)
    features = alive_features(adata, key=key) if features is None else np.asarray(features, dtype=np.int64)
    features = np.asarray([int(f) for f in features], dtype=np.int64)
    if features.size == 0:
        raise ValueError("No features to describe (none alive under this key?).")
    if families is None:
        families = gene_families(adata, model, key=key)
    genes = feature_genes(adata, features, key=key, n_top=n_top, min_occurrences=min_occurrences)
    spec = feature_specificity(adata, label_key, key=key, features=features)
    spelling = spelling_scores(adata, model, transcoders, key=key, features=features, n_top=n_top,
                               min_occurrences=min_occurrences, families=families)
    if enrichment is None and gene_sets is not None:
        enrichment = enrich_beyond_spelling(adata, gene_sets, key=key, features=features, n_top=n_top,
                                            min_occurrences=min_occurrences, families=families, **test)
    heads = headline_sets(enrichment, families=families, n=None) if enrichment is not None else None
    direct = None
    if model is not None and transcoders is not None:
        from ._de_embedding import gene_de_embedding

        usable = [g for g, c in zip(info["genes"], info["gene_occurrences"]) if c >= min_occurrences]
        direct = gene_de_embedding(model, transcoders, int(info["layer"]), usable)
    layer = int(info["layer"])
    control_text, control_beaten = "", None
    if controls is not None and layer in set(controls.layer):
        from ._controls import control_headline

        control_text = control_headline(controls, layer)
        random = controls[(controls.layer == layer) & (controls.side == "random_directions")]
        control_beaten = bool(len(random)) and bool(random.p_value.iloc[0] < 0.05)
    names = np.asarray(adata.obs_names)
    label_counts = adata.obs[label_key].astype(str).value_counts()
    rows = []
    for feature in features:
        mine = spec[spec.feature == feature].sort_values("auroc", ascending=False)
        top = mine.iloc[0]
        activity = cells[:, feature]
        order = np.argsort(-activity)[:n_cells]
        sets = []
        if heads is not None and len(heads):
            good = heads[(heads.List.astype(str) == str(feature)) & (heads["One family"] == "") & ~heads["Disease term"]]
            sets = good.Headline.tolist()[:3]
        card = {"feature": int(feature), "top_genes": genes.genes.get(feature, [])[:n_genes],
                "top_cell_types": [f"{r.label} ({r.auroc:.2f})" for r in mine.head(SHOWN_TYPES).itertuples()],
                "top_label": str(top.label), "auroc": float(top.auroc), "label_cells": int(label_counts[top.label]),
                "small_group": bool(label_counts[top.label] < SMALL_GROUP),
                "top_cells": [str(names[i]) for i in order if activity[i] > 0],
                "n_cells_active": int((activity > 0).sum()), "best_sets": sets,
                "de_embedding_genes": (list(direct.loc[feature].nlargest(n_genes).index) if direct is not None
                                       else []),
                **spelling.loc[feature].to_dict(), "n_top": n_top, "control_beaten": control_beaten}
        card["label"] = _label(card)
        card["layer_control"] = control_text
        rows.append(card)
    table = pd.DataFrame(rows).set_index("feature")
    first = ["label", "top_genes", "top_cell_types", "top_label", "auroc", "label_cells", "small_group", "top_cells",
             "n_cells_active", "best_sets", "de_embedding_genes", "family", "family_genes", "family_share",
             "token_identity_r", "spelling_score", "layer_control"]
    return table[first]
