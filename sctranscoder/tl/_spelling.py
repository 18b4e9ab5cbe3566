"""Spelling, not biology: how much of a feature's gene profile its gene names explain, and enrichment against
a null that keeps the names' family structure (adapters over :mod:`sctranscoder.genesets._spelling`)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ._features import FEATURES_KEY, _activity, feature_background, feature_genes, gene_scores


def leading_subwords(tokenizer, genes) -> dict:
    """``{gene: its leading subword}`` as the tokenizer spells it inside a sentence: the first token, joined
    with the next ones until it holds two characters (`` S`` + ``100`` for S100A8: one letter says nothing)."""
    from ._de_embedding import gene_tokens

    out = {}
    for gene, ids in gene_tokens(tokenizer, list(genes)).items():
        text, i = "", 0
        while i < len(ids) and len(text.strip()) < 2:
            text += tokenizer.decode([ids[i]])
            i += 1
        out[gene.upper()] = text.strip().upper()
    return out


def gene_families(adata=None, model=None, *, genes=None, key: str = FEATURES_KEY) -> pd.Series:
    """Every gene's name family (:func:`sctranscoder.genesets.name_families`): shared name stems and, with a
    C2S ``model``, shared leading subword tokens of its tokenizer. ``genes`` default: the genes of the feature
    activity under ``key``. (Formerly ``sct.tl.name_families``, a name the gene-list function of
    :mod:`sctranscoder.genesets` keeps.)"""
    from .. import genesets

    if genes is None:
        if adata is None:
            raise ValueError("Pass genes=<gene names> or an adata with feature activity.")
        genes = feature_background(adata, key=key)
    genes = [str(g).upper() for g in genes]
    leading = leading_subwords(model.tokenizer, genes) if model is not None else None
    return genesets.name_families(genes, leading)


def spelling_scores(adata, model=None, transcoders=None, *, key: str = FEATURES_KEY, features=None, n_top: int = 25,
                    min_occurrences: int = 3, families: pd.Series | None = None) -> pd.DataFrame:
    """Per feature, how much of its gene profile its gene names explain.

    - ``family_share``: share of its top ``n_top`` genes that share a name family (a stem or a leading
      subword token) with another of its top genes; ``family`` / ``family_genes``: the largest such family.
    - ``token_identity_r`` (with ``model`` and ``transcoders``): Spearman correlation, over the genes, of its
      per-gene activity in context (mean over the gene's occurrences in the cells' sentences) with what the
      gene's tokens alone give it through the residual stream (de-embedding, no attention, no context):
      near 1, token identity predicts where it fires; near 0, the cell context does.
    - ``spelling_score``: the larger of the two (a feature is spelling when either says so).
    """
    from scipy.stats import spearmanr

    from .. import genesets

    _, info = _activity(adata, key)
    table = feature_genes(adata, features, key=key, n_top=n_top, min_occurrences=min_occurrences)
    if families is None:
        families = gene_families(adata, model, key=key)
    out = pd.DataFrame(index=table.index)
    out["family_share"] = [genesets.family_share(g, families) for g in table.genes]
    largest = [genesets.largest_family(g, families) for g in table.genes]
    out["family"] = [name if count >= 2 else "" for name, count in largest]
    out["family_genes"] = [count if count >= 2 else 0 for _, count in largest]
    out["token_identity_r"] = np.nan
    if model is not None and transcoders is not None:
        from ._de_embedding import gene_de_embedding

        counts = np.asarray(info["gene_occurrences"])
        genes = np.asarray(info["genes"], dtype=object)[counts >= min_occurrences]
        activity = gene_scores(info)[counts >= min_occurrences]
        direct = gene_de_embedding(model, transcoders, int(info["layer"]), list(genes))
        present = [i for i, g in enumerate(genes) if g in set(direct.columns)]
        direct = direct[[genes[i] for i in present]].to_numpy()
        activity = activity[present]
        r = []
        for feature in table.index:
            a, d = activity[:, feature], direct[feature]
            r.append(float(spearmanr(a, d).statistic) if a.std() > 0 and d.std() > 0 else 0.0)
        out["token_identity_r"] = r
    out["spelling_score"] = np.fmax(out.family_share, out.token_identity_r.clip(lower=0).fillna(0))
    return out


def enrich_beyond_spelling(adata, gene_sets="all", *, model=None, key: str = FEATURES_KEY, features=None,
                           n_top: int = 25, min_occurrences: int = 3, background=None, families=None,
                           key_added: str | None = None, **test) -> pd.DataFrame:
    """:func:`enrich_features` with a second test that keeps spelling: each row's ``Matched P-value`` is the
    empirical p of its hypergeometric p against ``n_null`` random gene lists with the feature's name-family
    structure (same list size, same number of genes sharing a family; see
    :func:`sctranscoder.genesets.matched_null_p`), and ``Beyond spelling`` says it passes both
    (``Adjusted P-value <= max_fdr`` and ``Matched P-value <= max_matched_p``).

    ``test``: the test's settings, as :func:`sctranscoder.genesets.enrich_matched` takes them (``n_null=200``,
    ``max_fdr=0.05``, ``max_matched_p=0.05``, ``min_set_size=3``, ``seed=0``).

    The families come from name stems and, with ``model``, its tokenizer's leading subwords. The table keeps
    every tested row (filter on ``Beyond spelling``); its ``attrs["enrich"]`` records the settings.
    """
    from .. import genesets

    lists = {str(f): g for f, g in feature_genes(adata, features, key=key, n_top=n_top,
                                                  min_occurrences=min_occurrences).genes.items() if g}
    if not lists:
        raise ValueError("No feature has any gene above the cut; check the feature activity (alive features?).")
    if background is None:
        background = feature_background(adata, key=key, min_occurrences=min_occurrences)
    if families is None:
        families = gene_families(model=model, genes=background)
    table = genesets.enrich_matched(lists, gene_sets, background, families, **test)
    table.attrs["enrich"]["name_families"] = "name stems" + (" and leading subword tokens" if model else "")
    if key_added is not None:
        adata.uns[key_added] = table
    return table


def beyond_spelling_fraction(table: pd.DataFrame, n_features: int) -> float:
    """Fraction of ``n_features`` features with at least one set enriched beyond spelling."""
    if n_features <= 0:
        raise ValueError("n_features must be positive.")
    return float(pd.unique(table.loc[table["Beyond spelling"], "List"].astype(str)).size / n_features)


def name_families(adata=None, model=None, *, genes=None, key: str = FEATURES_KEY) -> pd.Series:
    """Deprecated name of :func:`gene_families` (one name, one contract: :func:`sctranscoder.genesets.name_families`
    takes gene names and leading tokens)."""
    import warnings

    warnings.warn("sct.tl.name_families is now sct.tl.gene_families (sct.genesets.name_families takes gene lists); "
                  "the old name will be removed in the next release.", DeprecationWarning, stacklevel=2)
    return gene_families(adata, model, genes=genes, key=key)
