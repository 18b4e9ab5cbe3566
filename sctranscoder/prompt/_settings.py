"""Where a model meets an AnnData: the one place every ``sct.tl`` function gets its prompt settings from,
builds or checks the cell sentences, and says when the cells are not what the model knows."""

from __future__ import annotations

import warnings

import numpy as np

from ..pp._sentences import PARAMS_KEY, RANKS_KEY
from ..pp._settings import SETTINGS_KEY, PromptSettings

UNKNOWN_GENE_WARNING = 0.25
"""Warn when more than this share of the genes in the cells' sentences never occurred in the model's training."""


def prompt_settings(adata, model, *, label_key: str | None = None, progress: bool = True,
                    **overrides) -> PromptSettings:
    """The prompt settings for running ``model`` on ``adata``, with ``adata``'s sentences made or checked.

    ``overrides`` that are not ``None`` change single fields of, in this order:
    the settings an earlier call for this model recorded with ``adata``'s
    sentences; the model's recorded settings; for a model that records none (a
    checkpoint not trained by sctranscoder), the settings ``adata``'s sentences were
    made with; the defaults. Sentences made otherwise than the settings say are an
    error naming both (never a silent re-rank). The settings are recorded with the
    sentences. Warns when the cells' genes or labels are largely unknown to the model.
    """
    name = str(getattr(model, "name_or_path", ""))
    recorded = bool(getattr(model, "metadata", None)) and ("n_genes" in model.metadata
                                                           or SETTINGS_KEY in model.metadata)
    earlier = PromptSettings.recorded(adata, name)
    if earlier is not None:
        settings = earlier.updated(**overrides)
    elif recorded:
        settings = PromptSettings.of_model(model).updated(**overrides)
    elif RANKS_KEY in adata.obsm and PARAMS_KEY in adata.uns:
        settings = PromptSettings.of_sentences(adata, **overrides)
    else:
        settings = PromptSettings().updated(**overrides)
    whose = f"the model ({getattr(model, 'name_or_path', 'given')})" if recorded else "this call"
    settings.ensure_sentences(adata, progress=progress, whose=whose, model_name=name)
    warn_unknown_genes(adata, model, settings)
    warn_unknown_labels(adata, model, label_key)
    return settings


def warn_unknown_genes(adata, model, settings: PromptSettings) -> float | None:
    """Warn when the genes in the cells' sentences are largely ones the model never saw in training.

    Returns the unknown share of gene occurrences (``None`` when the model records no gene vocabulary).
    """
    from ..pp._read import ranked_genes, stored_genes

    known = (getattr(model, "metadata", None) or {}).get("genes")
    if not known or adata.n_obs == 0:
        return None
    _, ordered = ranked_genes(adata, settings.n_genes)
    if ordered.size == 0:
        return None
    names = np.asarray(stored_genes(adata), dtype=str)
    vocabulary = {str(g).upper() for g in known}
    known_gene = np.array([name.upper() in vocabulary for name in names])
    counts = np.bincount(ordered, minlength=names.size)
    unknown_share = float(counts[~known_gene].sum() / counts.sum())
    if unknown_share > UNKNOWN_GENE_WARNING:
        missing = names[(~known_gene) & (counts > 0)]
        shown = ", ".join(missing[np.argsort(-counts[(~known_gene) & (counts > 0)])][:8])
        message = (f"{unknown_share:.0%} of the genes in these cells' sentences (top {settings.n_genes}) never "
                   f"occurred in the model's training ({(~known_gene[counts > 0]).sum()} of "
                   f"{(counts > 0).sum()} distinct genes, e.g. {shown}). The model reads them as unfamiliar "
                   "text, so its answers and features say little about these cells. Check that var_names (or "
                   "gene_symbols) hold the same kind of gene symbols, of the same organism, as the model was "
                   "trained on, or train a model on these data (sct.models.train_c2s).")
        warnings.warn(message, UserWarning, stacklevel=3)
    return unknown_share


def warn_unknown_labels(adata, model, label_key: str | None) -> list[str]:
    """Warn when ``adata.obs[label_key]`` holds labels the model cannot answer with; returns them."""
    labels = getattr(model, "labels", None)
    if label_key is None or not labels or label_key not in adata.obs:
        return []
    values = adata.obs[label_key].astype(str)
    unknown = sorted(set(values) - set(labels))
    if unknown:
        n_cells = int(values.isin(unknown).sum())
        message = (f"{len(unknown)} of the {values.nunique()} labels in adata.obs[{label_key!r}] are not among the "
                   f"model's {len(labels)} training labels ({n_cells} of {adata.n_obs} cells): "
                   f"{', '.join(map(repr, unknown[:8]))}{' ...' if len(unknown) > 8 else ''}. The model can only "
                   f"answer with its own labels ({', '.join(map(repr, labels[:5]))}{' ...' if len(labels) > 5 else ''})"
                   "; map your labels onto them, or train a model on these labels (sct.models.train_c2s).")
        warnings.warn(message, UserWarning, stacklevel=3)
    return unknown
